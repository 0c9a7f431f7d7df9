//! Query errors are Connect errors with the right code and a message naming the problem; the
//! server stays up, also after a query that ran out of memory.

use hearth_proto::querier::v1::{
    ProfileTypesRequest, ProfileTypesResponse, SelectMergeStacktracesRequest, SelectSeriesRequest,
};

use super::query::{ALL_TIME, call, call_status};
use super::support::{Hearth, fixture};

fn error(status_and_body: (u16, Vec<u8>)) -> (u16, String, String) {
    let (status, body) = status_and_body;
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    (
        status,
        json["code"].as_str().unwrap_or_default().to_string(),
        json["message"].as_str().unwrap_or_default().to_string(),
    )
}

fn stacks(
    selector: &str,
    range: (i64, i64),
    max_nodes: Option<i64>,
) -> SelectMergeStacktracesRequest {
    SelectMergeStacktracesRequest {
        profile_type_id: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
        label_selector: selector.into(),
        start: range.0,
        end: range.1,
        max_nodes,
        ..Default::default()
    }
}

#[test]
fn query_errors_have_connect_codes_and_the_server_stays_up() {
    let hearth = Hearth::start_with_config("query:\n  max_query_memory_bytes: 65536\n");
    let response = hearth.push(
        None,
        &[("__name__", "process_cpu"), ("service_name", "big")],
        &fixture("pprof/large.cpu"),
    );
    assert_eq!(response.status().as_u16(), 200);

    // (what, the answer, expected status, code, message fragment)
    type Case<'a> = (&'a str, (u16, Vec<u8>), u16, &'a str, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "bad selector",
            call_status(
                &hearth,
                None,
                "SelectMergeStacktraces",
                &stacks(r#"{service_name="big""#, ALL_TIME, None),
            ),
            400,
            "invalid_argument",
            "expected ',' or '}'",
        ),
        (
            "max_nodes over the limit",
            call_status(
                &hearth,
                None,
                "SelectMergeStacktraces",
                &stacks("{}", ALL_TIME, Some(2_000_000)),
            ),
            400,
            "invalid_argument",
            "max_nodes 2000000 exceeds the limit of 1048576",
        ),
        (
            "negative max_nodes",
            call_status(
                &hearth,
                None,
                "SelectMergeStacktraces",
                &stacks("{}", ALL_TIME, Some(-1)),
            ),
            400,
            "invalid_argument",
            "max_nodes must be positive",
        ),
        (
            "end before start",
            call_status(
                &hearth,
                None,
                "SelectMergeStacktraces",
                &stacks("{}", (5000, 4000), None),
            ),
            400,
            "invalid_argument",
            "end (4000 ms) is before start (5000 ms)",
        ),
        (
            "step too small",
            call_status(
                &hearth,
                None,
                "SelectSeries",
                &SelectSeriesRequest {
                    profile_type_id: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
                    label_selector: "{}".into(),
                    start: ALL_TIME.0,
                    end: ALL_TIME.1,
                    step: 0.0,
                    ..Default::default()
                },
            ),
            400,
            "invalid_argument",
            "step must be at least 0.001 seconds",
        ),
        (
            "unknown method",
            call_status(
                &hearth,
                None,
                "NoSuchMethod",
                &ProfileTypesRequest::default(),
            ),
            404,
            "unimplemented",
            "has no method \"NoSuchMethod\"",
        ),
        (
            "a query over the memory limit",
            call_status(
                &hearth,
                None,
                "SelectMergeStacktraces",
                &stacks("{}", ALL_TIME, None),
            ),
            429,
            "resource_exhausted",
            "memory",
        ),
    ];
    for (what, outcome, status, code, message) in cases {
        let (got_status, got_code, got_message) = error(outcome);
        assert_eq!(got_status, status, "{what}: {got_message}");
        assert_eq!(got_code, code, "{what}: {got_message}");
        assert!(
            got_message.contains(message),
            "{what}: {got_message:?} should contain {message:?}"
        );
    }

    // Still serving.
    assert_eq!(hearth.get("/ready").status().as_u16(), 200);
    let types: ProfileTypesResponse = call(
        &hearth,
        None,
        "ProfileTypes",
        &ProfileTypesRequest::default(),
    );
    assert_eq!(types.profile_types.len(), 2);
}

/// Every query of the process draws from `query.max_total_query_memory_bytes`: a query that
/// fits its own limit but not the process's budget fails naming that key; the server stays up.
#[test]
fn queries_together_stay_within_the_process_memory_budget() {
    let hearth = Hearth::start_with_config("query:\n  max_total_query_memory_bytes: 65536\n");
    let response = hearth.push(
        None,
        &[("__name__", "process_cpu"), ("service_name", "big")],
        &fixture("pprof/large.cpu"),
    );
    assert_eq!(response.status().as_u16(), 200);
    let (status, body) = call_status(
        &hearth,
        None,
        "SelectMergeStacktraces",
        &stacks("{}", ALL_TIME, None),
    );
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("resource_exhausted"), "{body}");
    assert!(
        body.contains("query.max_total_query_memory_bytes"),
        "names the limit: {body}"
    );
    // Still serving.
    let (status, body) = hearth.connect_json(
        None,
        "/querier.v1.QuerierService/LabelNames",
        serde_json::json!({}),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.to_string().contains("service_name"), "{body}");
}
