//! Flight SQL settings.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlightConfig {
    /// The Flight SQL listen address (Arrow Flight over gRPC).
    pub addr: SocketAddr,
    /// Bearer tokens and the tenant each one reads. When any is set, every request needs
    /// `authorization: Bearer <token>`, and the token, not `x-scope-orgid`, picks the tenant.
    pub tokens: BTreeMap<String, String>,
}

impl Default for FlightConfig {
    fn default() -> Self {
        FlightConfig {
            addr: "0.0.0.0:4041".parse().expect("valid address"),
            tokens: BTreeMap::new(),
        }
    }
}
