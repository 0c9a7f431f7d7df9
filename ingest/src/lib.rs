//! hearth-ingest: what agents send, made into what the engine stores.
//!
//! It owns pprof decoding with Pyroscope's normalisation (series per sample type, profile-type
//! labels, sample labels that become series labels, span ids split out, time fixes), the
//! semantics of Pyroscope's two push endpoints (`POST /ingest` and `push.v1.PusherService/Push`)
//! with the stack formats `/ingest` takes beside pprof (folded, trie, tree, speedscope) and JFR
//! recordings (the Java agent's), the
//! OpenTelemetry profiles signal (OTLP) mapped to series as Pyroscope maps it, label validation, and the per-tenant limits (sizes, label rules, rate). The transport (HTTP,
//! Connect framing, `Content-Encoding`) stays in the binary; this crate starts from decoded
//! requests and ends at a [`ProfileSink`]: the engine itself in one process, or the cluster's
//! [`Distributor`] (placement on the ring, replicated writes, quorum).
//!
//! Invariant: a request is checked whole before any of it is stored, and every refusal carries
//! a status kind, a Pyroscope discard reason and a message naming what is wrong.

pub mod delta;
pub mod distributor;
pub mod error;
pub mod formats;
pub mod jfr;
pub mod labels;
pub mod legacy;
pub mod metrics;
pub mod normalize;
pub mod otlp;
mod pprof_strings;
pub mod rate;
pub mod service;
pub mod sink;

pub use distributor::{Distributor, Replicas};
pub use error::{Error, Result};
pub use hearth_engine::limits::Limits;
pub use service::IngestService;
pub use sink::{ProfileSink, PushOutcome};
