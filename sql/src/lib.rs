//! hearth-sql: how Hearth answers questions, and nothing that talks to a network.
//!
//! It owns the label-selector language ([`selector`]), the query service with Pyroscope's
//! `querier.v1` semantics planned on DataFusion over the engine's table providers
//! ([`service`], [`select`]), and the SQL surface (tables, functions, [`surface`]). In a
//! cluster it splits profile queries ([`distributed`]): blocks are aggregated where the query
//! runs and each remote ingester's heads by that ingester (a [`RemoteAggregate`] sent through
//! the [`RemoteExecutor`] trait of [`remote`], answered there by [`QueryService::serve_partial`]).
//! For a query-frontend it cuts queries into jobs ([`job`]), queues them per tenant
//! ([`queue`]) and merges their answers ([`frontend`]); a querier runs each job on its worker
//! slot's own runtime ([`job_runtime`]). Per-tenant admission ([`admission`]) bounds the
//! queries a tenant has outstanding, through the frontend and Flight SQL alike; every query's
//! memory pool draws from one process-wide budget ([`memory`]). On cluster queriers a session's
//! block scans and partial aggregates may run on other queriers ([`stages`]: the seam; the
//! session a querier runs another's stage in is built by [`surface`]). Transports
//! (Connect, HTTP, Flight) call into this crate and translate its answers.
//!
//! Invariant: every plan is built over one tenant's snapshot, so a query can only see that
//! tenant's data.

pub mod admission;
pub mod config;
pub mod distributed;
pub mod error;
pub mod frontend;
pub mod functions;
pub mod job;
pub mod job_runtime;
pub mod memory;
pub mod metrics;
pub mod queue;
pub mod remote;
pub mod render;
pub mod select;
pub mod selector;
pub mod service;
pub mod split;
pub mod stages;
pub mod surface;

pub use config::QueryConfig;
pub use error::{Error, Result};
pub use frontend::{Frontend, JobRunner, Queries};
pub use job::{Job, JobAnswer};
pub use job_runtime::JobRuntimes;
pub use queue::JobQueue;
pub use remote::{Partial, RemoteAggregate, RemoteExecutor};
pub use select::{ProfileSelection, SeriesShape, ValueSeries};
pub use selector::Selector;
pub use service::{CATALOG, SCHEMA};
pub use service::{MillisRange, QueryService};
pub use stages::StageSpreading;
pub use surface::PlannedSql;
