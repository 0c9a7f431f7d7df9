//! hearth-engine: Hearth's storage engine, and nothing that talks to a network.
//!
//! It owns the profile data model (tenants, profile types, series and their fingerprints), the
//! per-service symbol tables, the per-tenant in-memory head made durable by a write-ahead log,
//! immutable Parquet blocks on an `object_store`, and the DataFusion table providers that read
//! heads and blocks as one table each.
//!
//! Data flow: ingest hands the engine a [`ProfileBatch`] → the batch is framed into the WAL and
//! fsynced (group commit) → applied to the tenant's [`Head`] → acknowledged. Heads are flushed to
//! blocks by size or age and on shutdown; a flushed head's WAL segments are then deleted.
//! Queries take a [`TenantSnapshot`] (heads, blocks and, on a querier, remote heads at one
//! instant) from a [`SnapshotSource`] and scan it through the providers in [`table`]; when its
//! sources hold replicas of the same profiles, [`dedupe`] picks one source per profile.
//!
//! The bucket is the source of truth for blocks: a per-tenant bucket index
//! ([`block::index`]) lists them, and [`compact`] merges them (replicas written once, symbols
//! rewritten) and applies retention.
//!
//! Invariants: an acknowledged batch is in the WAL or in a block; no record is both replayed and
//! in a block (blocks name the WAL segments they hold); every read is scoped to one tenant.

pub mod batch;
pub mod block;
pub mod block_cache;
pub mod cluster_reader;
pub mod compact;
pub mod compression;
pub mod db;
pub mod dedupe;
pub mod error;
pub mod flamegraph;
pub mod head;
pub mod limits;
pub mod matcher;
pub mod metrics;
pub mod model;
pub mod pprof;
pub mod pprof_merge;
pub mod remote;
pub mod rollup;
pub mod schema;
pub mod series_index;
pub mod snapshot;
pub mod stack_columns;
pub mod stack_merge;
pub mod store;
pub mod symbol_set;
pub mod symbols;
pub mod table;
#[cfg(feature = "testing")]
pub mod testing;
pub mod time;
pub mod wal;

pub use batch::{ProfileBatch, SeriesProfile};
pub use cluster_reader::{ClusterReader, RemoteDirectory};
pub use compact::{Compactor, CompactorConfig};
pub use db::{Engine, EngineArgs, HeadConfig, HeadsOnly};
pub use error::{Error, ErrorKind, Result};
pub use head::Head;
pub use snapshot::{SnapshotSource, TenantSnapshot};
