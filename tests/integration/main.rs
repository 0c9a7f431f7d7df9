//! End-to-end tests of the `hearth` binary: real processes on loopback, real client requests,
//! real profiles. One test binary (see `support` for the process harness).

mod agent;
mod bad_input;
mod blocks;
mod cli;
mod cluster;
mod compaction;
mod connect;
mod durability;
mod expected;
mod fixtures;
mod flight_sql;
mod flush;
mod frontend;
mod grafana;
mod ingest_formats;
mod jfr;
mod label_index;
mod object_storage;
mod observability;
mod otlp;
mod query;
mod query_errors;
mod readme;
mod reference;
mod retention;
mod rollups;
mod scrape;
mod split;
mod stages;
mod support;
mod tenancy;
mod ui;
