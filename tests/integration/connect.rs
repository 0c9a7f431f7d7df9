//! Connect as Grafana's Go client speaks it: binary protobuf, `Connect-Protocol-Version: 1`,
//! `Accept-Encoding: gzip`; the answer has its content type and is gzipped when large.

use hearth_proto::querier::v1::{
    ProfileTypesRequest, ProfileTypesResponse, SeriesRequest, SeriesResponse,
};
use hearth_proto::types::v1::{LabelNamesRequest, LabelNamesResponse};
use prost::Message;

use super::support::{Hearth, fixture, gunzip_if_gzip};

fn call<Req: Message, Resp: Message + Default>(
    hearth: &Hearth,
    method: &str,
    request: &Req,
) -> (Resp, bool) {
    let response = hearth
        .client
        .post(hearth.url(&format!("/querier.v1.QuerierService/{method}")))
        .header("content-type", "application/proto")
        .header("connect-protocol-version", "1")
        .header("accept-encoding", "gzip")
        .body(request.encode_to_vec())
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{method}");
    assert_eq!(response.headers()["content-type"], "application/proto");
    let gzipped = response
        .headers()
        .get("content-encoding")
        .is_some_and(|v| v == "gzip");
    let body = response.bytes().unwrap();
    (
        Resp::decode(gunzip_if_gzip(&body).as_slice()).unwrap(),
        gzipped,
    )
}

#[test]
fn metadata_over_connect_proto() {
    let hearth = Hearth::start();
    let pprof = fixture("parca/profile-with-labels.pb.gz");
    let response = hearth.push(
        None,
        &[("__name__", "process_cpu"), ("service_name", "proto-app")],
        &pprof,
    );
    assert_eq!(response.status().as_u16(), 200);

    // Grafana's health check: a range with no data answers an empty list, not an error.
    let (types, _): (ProfileTypesResponse, _) = call(
        &hearth,
        "ProfileTypes",
        &ProfileTypesRequest {
            start: 1000,
            end: 4000,
        },
    );
    assert!(types.profile_types.is_empty());
    let (types, _): (ProfileTypesResponse, _) =
        call(&hearth, "ProfileTypes", &ProfileTypesRequest::default());
    assert_eq!(types.profile_types.len(), 1);
    assert_eq!(
        types.profile_types[0].id,
        "process_cpu:samples:count:cpu:nanoseconds"
    );
    assert_eq!(types.profile_types[0].sample_type, "samples");

    let (names, _): (LabelNamesResponse, _) = call(
        &hearth,
        "LabelNames",
        &LabelNamesRequest {
            matchers: vec![r#"{service_name="proto-app"}"#.into()],
            ..Default::default()
        },
    );
    assert!(
        names.names.contains(&"thread_name".to_string()),
        "{:?}",
        names.names
    );

    // One series per thread group (6 in this profile): a large answer comes back gzipped.
    let (series, gzipped): (SeriesResponse, _) = call(
        &hearth,
        "Series",
        &SeriesRequest {
            matchers: vec![
                r#"process_cpu:samples:count:cpu:nanoseconds{service_name="proto-app"}"#.into(),
            ],
            ..Default::default()
        },
    );
    assert_eq!(series.labels_set.len(), 6);
    assert!(gzipped);

    // Errors are Connect JSON with the right status.
    let (status, body) = hearth.connect_json(
        None,
        "/querier.v1.QuerierService/Series",
        serde_json::json!({"matchers": ["{service_name=\"x\""]}),
    );
    assert_eq!(status, 400);
    assert_eq!(body["code"], "invalid_argument");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("at position 18: expected ',' or '}'"),
        "{body}"
    );
    let (status, body) = hearth.connect_json(
        None,
        "/querier.v1.QuerierService/NoSuchMethod",
        serde_json::json!({}),
    );
    assert_eq!(status, 404, "{body}");
    let (status, body) = hearth.connect_json(
        None,
        "/querier.v1.QuerierService/LabelNames",
        serde_json::json!({"start": "5000", "end": "4000"}),
    );
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("before start"),
        "{body}"
    );
}
