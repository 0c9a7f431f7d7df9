//! What crosses Flight between cluster components, as `hearth.cluster.v1` messages
//! (`proto/hearth/cluster/v1/cluster.proto`): the push action's body and the `DoGet` tickets
//! of an ingester.

use hearth_engine::remote::RemoteScan;
use hearth_proto::hearth::cluster::v1 as wire;
use hearth_sql::RemoteAggregate;
use prost::Message;
use tonic::Status;
use wire::ticket::Request;

pub use wire::PushRecords;

/// The action that stores replicated profiles on an ingester.
pub const PUSH_ACTION: &str = "hearth.push";

/// Messages between cluster components may carry a whole push.
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// A ticket of an ingester's `DoGet`.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteRequest {
    Scan(RemoteScan),
    Aggregate(RemoteAggregate),
}

impl RemoteRequest {
    pub fn encode(self) -> Vec<u8> {
        let request = match self {
            RemoteRequest::Scan(scan) => Request::Scan(scan.into()),
            RemoteRequest::Aggregate(aggregate) => Request::Aggregate(aggregate.into()),
        };
        wire::Ticket {
            request: Some(request),
        }
        .encode_to_vec()
    }

    /// A ticket as the ingester receives it; a bad one is `invalid_argument` naming the problem.
    pub fn decode(ticket: &[u8]) -> Result<Self, Status> {
        let ticket = wire::Ticket::decode(ticket)
            .map_err(|e| Status::invalid_argument(format!("bad ticket: {e}")))?;
        match ticket.request {
            Some(Request::Scan(scan)) => RemoteScan::try_from(scan)
                .map(RemoteRequest::Scan)
                .map_err(|e| Status::invalid_argument(format!("bad ticket: {e}"))),
            Some(Request::Aggregate(aggregate)) => RemoteAggregate::try_from(aggregate)
                .map(RemoteRequest::Aggregate)
                .map_err(crate::status::from_query),
            None => Err(Status::invalid_argument(
                "bad ticket: expected a scan or an aggregate request",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use hearth_engine::matcher::{LabelMatcher, MatchOp};
    use hearth_engine::model::TenantId;
    use hearth_engine::schema::TableKind;

    use super::*;

    #[test]
    fn tickets_cross_the_wire_unchanged() {
        let schema = TableKind::Profiles.table_schema();
        let scan = RemoteScan {
            series_ids: Some(vec![3, 4]),
            services: None,
            matchers: vec![
                LabelMatcher::new("service_name", MatchOp::Regex, "api|db").unwrap(),
                LabelMatcher::new("region", MatchOp::NotEqual, "").unwrap(),
            ],
            ..RemoteScan::new(&TenantId::new("t").unwrap(), TableKind::Profiles, &schema)
        };
        let request = RemoteRequest::Scan(scan);
        assert_eq!(
            RemoteRequest::decode(&request.clone().encode()).unwrap(),
            request
        );
        let error = RemoteRequest::decode(b"\xff").unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        let empty = wire::Ticket { request: None }.encode_to_vec();
        assert!(RemoteRequest::decode(&empty).is_err());
        let bad_regex = wire::Ticket {
            request: Some(Request::Scan(wire::ScanRequest {
                matchers: vec![wire::LabelMatcher {
                    name: "pod".into(),
                    op: 2,
                    value: "(".into(),
                }],
                ..Default::default()
            })),
        };
        let error = RemoteRequest::decode(&bad_regex.encode_to_vec()).unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(error.message().contains("pod"), "{}", error.message());
    }
}
