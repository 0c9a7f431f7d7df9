//! Protobuf messages Hearth speaks, generated at build time from the `.proto` files beside this
//! crate by prost (binary) and pbjson (protojson: lowerCamel names, int64 as strings).
//!
//! - [`google::v1`]: the pprof `Profile`, under Pyroscope's package name.
//! - [`types::v1`], [`push::v1`], [`querier::v1`]: Pyroscope's Connect API messages.
//! - [`hearth::wal::v1`]: Hearth's own write-ahead-log record.
//! - [`hearth::cluster::v1`]: what Hearth's cluster components send each other over Flight.
//! - [`opentelemetry`]: the OTLP profiles signal (`v1development`), and [`google::rpc`]'s
//!   `Status`, the error body of OTLP/HTTP.
//!
//! This crate holds data types only: no transport, no behaviour.

#![allow(clippy::all, missing_docs)]

pub mod google {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/google.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/google.v1.serde.rs"));
    }

    pub mod rpc {
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
        include!(concat!(env!("OUT_DIR"), "/google.rpc.serde.rs"));
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

pub mod opentelemetry {
    pub mod proto {
        pub mod common {
            pub mod v1 {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.common.v1.rs"
                ));
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.common.v1.serde.rs"
                ));
            }
        }

        pub mod resource {
            pub mod v1 {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.resource.v1.rs"
                ));
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.resource.v1.serde.rs"
                ));
            }
        }

        pub mod profiles {
            pub mod v1development {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.profiles.v1development.rs"
                ));
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.profiles.v1development.serde.rs"
                ));
            }
        }

        pub mod collector {
            pub mod profiles {
                pub mod v1development {
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/opentelemetry.proto.collector.profiles.v1development.rs"
                    ));
                    include!(concat!(
                        env!("OUT_DIR"),
                        "/opentelemetry.proto.collector.profiles.v1development.serde.rs"
                    ));
                }
            }
        }
    }
}

pub use google::v1 as pprof;
pub use opentelemetry::proto::collector::profiles::v1development as otlp_collector;
pub use opentelemetry::proto::profiles::v1development as otlp;
