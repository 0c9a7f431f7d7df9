//! What crosses Flight between cluster components: the push action's body and the `DoGet`
//! tickets of an ingester.

use hearth_engine::remote::RemoteScan;
use hearth_sql::RemoteAggregate;
use prost::Message;
use serde::{Deserialize, Serialize};

/// The action that stores replicated profiles on an ingester.
pub const PUSH_ACTION: &str = "hearth.push";

/// Messages between cluster components may carry a whole push.
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// The body of a [`PUSH_ACTION`]: one tenant's profiles as WAL records.
#[derive(Clone, PartialEq, Message)]
pub struct PushRecords {
    #[prost(string, tag = "1")]
    pub tenant: String,
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub records: Vec<bytes::Bytes>,
}

/// A ticket of an ingester's `DoGet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteRequest {
    Scan(RemoteScan),
    Aggregate(RemoteAggregate),
}
