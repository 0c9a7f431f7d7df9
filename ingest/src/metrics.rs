//! Ingest counters, exposed by the binary's `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabel {
    pub endpoint: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Default)]
pub struct IngestMetrics {
    /// Accepted pushes, by endpoint (`push`, `ingest`).
    pub pushes: Family<EndpointLabel, Counter>,
    /// Request-body bytes received, by endpoint.
    pub received_bytes: Family<EndpointLabel, Counter>,
    /// Series profiles stored.
    pub profiles: Counter,
    /// Samples stored (after merging equal stacks).
    pub samples: Counter,
    /// Refused requests, by reason.
    pub errors: Family<ReasonLabel, Counter>,
}

impl IngestMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "hearth_ingest_pushes",
            "Accepted pushes, by endpoint",
            self.pushes.clone(),
        );
        registry.register(
            "hearth_ingest_received_bytes",
            "Request body bytes received, by endpoint",
            self.received_bytes.clone(),
        );
        registry.register(
            "hearth_ingest_profiles",
            "Series profiles stored",
            self.profiles.clone(),
        );
        registry.register(
            "hearth_ingest_samples",
            "Samples stored",
            self.samples.clone(),
        );
        registry.register(
            "hearth_ingest_errors",
            "Refused ingest requests, by reason",
            self.errors.clone(),
        );
    }
}
