//! Protobuf messages Hearth speaks, generated at build time from the `.proto` files beside this
//! crate by prost (binary) and pbjson (protojson: lowerCamel names, int64 as strings).
//!
//! - [`google::v1`]: the pprof `Profile`, under Pyroscope's package name.
//! - [`types::v1`], [`push::v1`], [`querier::v1`]: Pyroscope's Connect API messages.
//! - [`hearth::wal::v1`]: Hearth's own write-ahead-log record.
//! - [`hearth::cluster::v1`]: what Hearth's cluster components send each other over Flight.
//!
//! This crate holds data types only: no transport, no behaviour.

#![allow(clippy::all, missing_docs)]

pub mod google {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/google.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/google.v1.serde.rs"));
    }
}

pub mod types {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/types.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/types.v1.serde.rs"));
    }
}

pub mod push {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/push.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/push.v1.serde.rs"));
    }
}

pub mod querier {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/querier.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/querier.v1.serde.rs"));
    }
}

pub mod hearth {
    pub mod cluster {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/hearth.cluster.v1.rs"));
        }
    }

    pub mod wal {
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/hearth.wal.v1.rs"));
        }
    }
}

pub use google::v1 as pprof;
