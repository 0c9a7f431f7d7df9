//! Errors of Flight between components and of the Flight SQL server's setup.

use hearth_engine::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An ingester's advertised Flight address is not usable.
    #[error("bad flight address {addr:?} of ingester {node}: {source}")]
    Address {
        node: String,
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// A peer answered with an error, or could not be reached.
    #[error("ingester {node} ({addr}): {message}")]
    Peer {
        node: String,
        addr: String,
        kind: ErrorKind,
        message: String,
    },
    /// A token in `flight.tokens` names a tenant that cannot exist.
    #[error("flight.tokens: tenant {tenant:?}: {source}")]
    TokenTenant {
        tenant: String,
        #[source]
        source: hearth_engine::Error,
    },
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Address { .. } => ErrorKind::Unavailable,
            Error::Peer { kind, .. } => *kind,
            Error::TokenTenant { .. } => ErrorKind::InvalidArgument,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
