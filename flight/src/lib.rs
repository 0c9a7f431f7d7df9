//! hearth-flight: Arrow Flight, for people and for the cluster.
//!
//! It will own the public Arrow Flight SQL server (statements, prepared statements, catalog
//! browsing; tenant from `x-scope-orgid` metadata), Flight between components (ingesters serving
//! head data and partial aggregates), and the `RemoteExecutor` over Flight that queriers use to
//! fan out. The SQL planning stays in `hearth-sql`; this crate only translates between Flight
//! and it. Until the Flight SQL issue lands it holds no code beyond this contract, and
//! `hearth` starts no Flight listener.

pub use hearth_sql::QueryService;
