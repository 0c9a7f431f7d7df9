//! OpenTelemetry profiles (OTLP `v1development`): exports built with the official protos
//! (PyPI `opentelemetry-proto`, sent by grpcio over gRPC and by urllib over OTLP/HTTP in
//! protobuf and JSON) are stored under the series and profile types Pyroscope gives them, and
//! read back as the stacks sent; bad exports are refused with a message naming what is wrong,
//! and nothing of them is stored.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use hearth_proto::otlp::{ProfilesDictionary, ResourceProfiles, Sample, ScopeProfiles, ValueType};
use hearth_proto::otlp_collector::ExportProfilesServiceRequest;
use prost::Message;
use serde_json::{Value, json};

use super::ingest_formats::{collapsed, profile_types};
use super::support::{Hearth, gzip, now_nanos, run_ok, venv_bin};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
/// 100 Hz.
const PERIOD: i64 = 10_000_000;
const SPAN: &str = "0123456789abcdef";
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Sends the export `spec` describes (see `tests/python/otlp_export.py`) with `args`; returns
/// what the server answered.
fn export(spec: &Value, args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.json");
    std::fs::write(&path, spec.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/otlp_export.py");
    let output = run_ok(
        Command::new(venv_bin("python"))
            .arg(script)
            .arg(&path)
            .args(args),
        "otlp_export.py",
    );
    serde_json::from_slice(&output).unwrap()
}

/// One resource with one scope and `profiles`.
fn spec(service: &str, profiles: Value) -> Value {
    json!({"resources": [{
        "attributes": {"service.name": service, "host.name": "node-1",
                       "process.executable.name": "app"},
        "scopes": [{"name": "otel-profiler", "attributes": {"profiler.version": "0.1"},
                    "profiles": profiles}],
    }]})
}

/// A CPU profile as the eBPF profiler sends it: sample counts on a CPU-time period, kernel
/// frames without symbols, a sample counted by its timestamps, one naming another service and
/// one linked to a span.
fn cpu_profile(service: &str) -> Value {
    let now = now_nanos();
    json!([{
        "sample_type": ["samples", "count"], "period_type": ["cpu", "nanoseconds"],
        "period": PERIOD, "time_unix_nano": now, "duration_nano": 10_000_000_000u64,
        "samples": [
            {"stack": ["main", "work", "hot"], "values": [5]},
            {"stack": ["main", "work", "hot"], "values": [2], "attributes": {"thread.name": "worker"}},
            {"stack": ["main", "idle", "[k]schedule"], "timestamps": [now - 3, now - 2, now - 1]},
            {"stack": ["main", "other"], "values": [4], "attributes": {"service.name": format!("{service}-sidecar")}},
            {"stack": ["main", "work"], "values": [1], "link": [TRACE, SPAN]},
        ],
    }])
}

/// `collapsed` with the kernel frame's address left out (the client picks it).
fn stacks(hearth: &Hearth, query: &str) -> BTreeMap<String, i64> {
    collapsed(hearth, query)
        .into_iter()
        .map(|(stack, value)| {
            let stack = match stack.split_once(" 0x") {
                Some((head, _)) => head.to_string(),
                None => stack,
            };
            (stack, value)
        })
        .collect()
}

fn expected_cpu(hearth: &Hearth, service: &str) {
    assert_eq!(profile_types(hearth, service), [CPU], "{service}");
    let want = BTreeMap::from([
        ("main;work;hot".to_string(), 7 * PERIOD),
        ("main;idle;[kernel] vmlinux".to_string(), 3 * PERIOD),
        ("main;work".to_string(), PERIOD),
    ]);
    let query = format!("{CPU}{{service_name=\"{service}\"}}");
    assert_eq!(stacks(hearth, &query), want, "{service}");
    // The sample naming another service is that service's.
    let sidecar = format!("{CPU}{{service_name=\"{service}-sidecar\"}}");
    assert_eq!(
        stacks(hearth, &sidecar).get("main;other"),
        Some(&(4 * PERIOD))
    );
}

/// The total of the samples linked to `span` in `service`'s CPU profile.
fn span_total(hearth: &Hearth, service: &str, span: &str) -> i64 {
    let now = now_nanos() / 1_000_000;
    let (status, body) = hearth.connect_json(
        None,
        "/querier.v1.QuerierService/SelectMergeSpanProfile",
        json!({"profileTypeID": CPU, "labelSelector": format!("{{service_name=\"{service}\"}}"),
               "spanSelector": [span], "start": now - 3_600_000, "end": now + 60_000}),
    );
    assert_eq!(status, 200, "{body}");
    body["flamegraph"]["total"].as_str().map_or_else(
        || body["flamegraph"]["total"].as_i64().unwrap_or(0),
        |t| t.parse().unwrap(),
    )
}

#[test]
fn otlp_exports_over_grpc_and_http_are_stored_as_pyroscope_maps_them() {
    let hearth = Hearth::start();
    let target = hearth.addr.to_string();
    let base = hearth.url("");

    // gRPC (HTTP/2) on the HTTP port.
    let answer = export(
        &spec("otel-grpc", cpu_profile("otel-grpc")),
        &["--transport", "grpc", "--target", &target],
    );
    assert_eq!(answer["ok"], true, "{answer}");
    expected_cpu(&hearth, "otel-grpc");
    assert_eq!(span_total(&hearth, "otel-grpc", SPAN), PERIOD);

    // The series: the resource's and scope's attributes are labels, `.` made `_`; a sample's
    // attributes split series.
    let series = hearth.series(None, &["{service_name=\"otel-grpc\"}"]);
    let has = |name: &str, value: &str| {
        series
            .iter()
            .any(|set| set.iter().any(|(n, v)| n == name && v == value))
    };
    assert!(has("host_name", "node-1"), "{series:?}");
    assert!(has("process_executable_name", "app"), "{series:?}");
    assert!(has("profiler_version", "0.1"), "{series:?}");
    assert!(has("thread_name", "worker"), "{series:?}");
    assert!(!has("service.name", "otel-grpc") && !has("span_id", SPAN));

    // OTLP/HTTP protobuf, gzip, and again over gzip-compressed gRPC.
    let answer = export(
        &spec("otel-http", cpu_profile("otel-http")),
        &["--transport", "http", "--gzip", "--target", &base],
    );
    assert_eq!(answer["ok"], true, "{answer}");
    expected_cpu(&hearth, "otel-http");
    let answer = export(
        &spec("otel-grpc-gzip", cpu_profile("otel-grpc-gzip")),
        &["--transport", "grpc", "--gzip", "--target", &target],
    );
    assert_eq!(answer["ok"], true, "{answer}");
    expected_cpu(&hearth, "otel-grpc-gzip");

    // OTLP/HTTP JSON: ids in hex, as OTLP writes them (the span still selects its sample).
    let answer = export(
        &spec("otel-json", cpu_profile("otel-json")),
        &[
            "--transport",
            "http",
            "--encoding",
            "json",
            "--target",
            &base,
        ],
    );
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["body"], "{}", "{answer}");
    expected_cpu(&hearth, "otel-json");
    assert_eq!(span_total(&hearth, "otel-json", SPAN), PERIOD);

    // Plain HTTP on the gRPC method's path is OTLP/HTTP.
    let answer = export(
        &spec("otel-path", cpu_profile("otel-path")),
        &[
            "--transport",
            "http",
            "--target",
            &base,
            "--path",
            "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export",
        ],
    );
    assert_eq!(answer["ok"], true, "{answer}");
    expected_cpu(&hearth, "otel-path");

    // Other profile types: a period names the profile; off-CPU time without a period is
    // `off_cpu`; no service name is `unknown_service:<executable>`.
    let memory = json!([
        {"sample_type": ["alloc_space", "bytes"], "period_type": ["space", "bytes"],
         "period": 524288, "samples": [{"stack": ["main", "alloc"], "values": [4096]}]},
        {"sample_type": ["off_cpu", "nanoseconds"],
         "samples": [{"stack": ["main", "wait"], "values": [700, 300]}]},
    ]);
    let mut unnamed = spec("", memory);
    unnamed["resources"][0]["attributes"]
        .as_object_mut()
        .unwrap()
        .remove("service.name");
    let answer = export(&unnamed, &["--transport", "grpc", "--target", &target]);
    assert_eq!(answer["ok"], true, "{answer}");
    let service = "unknown_service:app";
    let types = profile_types(&hearth, service);
    assert_eq!(
        types,
        [
            "off_cpu:off_cpu:nanoseconds::",
            "space:alloc_space:bytes:space:bytes"
        ],
        "{types:?}"
    );
    let query = format!("{}{{service_name=\"{service}\"}}", types[1]);
    assert_eq!(
        collapsed(&hearth, &query),
        BTreeMap::from([("main;alloc".to_string(), 4096)])
    );
    let query = format!("{}{{service_name=\"{service}\"}}", types[0]);
    assert_eq!(
        collapsed(&hearth, &query),
        BTreeMap::from([("main;wait".to_string(), 1000)])
    );
}

/// A valid export of one profile for `service`, built here with Hearth's own messages.
fn request(service: &str) -> ExportProfilesServiceRequest {
    use hearth_proto::opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value};
    use hearth_proto::opentelemetry::proto::resource::v1::Resource;
    use hearth_proto::otlp::{Function, Line, Location, Profile, Stack};
    let strings = ["", "samples", "count", "cpu", "nanoseconds", "main"];
    let dictionary = ProfilesDictionary {
        string_table: strings.iter().map(|s| s.to_string()).collect(),
        function_table: vec![
            Function::default(),
            Function {
                name_strindex: 5,
                ..Default::default()
            },
        ],
        location_table: vec![
            Location::default(),
            Location {
                lines: vec![Line {
                    function_index: 1,
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
        stack_table: vec![
            Stack::default(),
            Stack {
                location_indices: vec![1],
            },
        ],
        ..Default::default()
    };
    let profile = Profile {
        sample_type: Some(ValueType {
            type_strindex: 1,
            unit_strindex: 2,
        }),
        period_type: Some(ValueType {
            type_strindex: 3,
            unit_strindex: 4,
        }),
        period: PERIOD,
        samples: vec![Sample {
            stack_index: 1,
            values: vec![1],
            ..Default::default()
        }],
        ..Default::default()
    };
    let attribute = KeyValue {
        key: "service.name".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(service.into())),
        }),
        ..Default::default()
    };
    ExportProfilesServiceRequest {
        resource_profiles: vec![ResourceProfiles {
            resource: Some(Resource {
                attributes: vec![attribute],
                ..Default::default()
            }),
            scope_profiles: vec![ScopeProfiles {
                profiles: vec![profile],
                ..Default::default()
            }],
            ..Default::default()
        }],
        dictionary: Some(dictionary),
    }
}

fn post(hearth: &Hearth, content_type: &str, body: Vec<u8>) -> (u16, String) {
    post_with(hearth, &[("content-type", content_type)], body)
}

fn post_with(hearth: &Hearth, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String) {
    let mut request = hearth.client.post(hearth.url("/v1development/profiles"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.body(body).send().unwrap();
    let status = response.status().as_u16();
    let body = response.bytes().unwrap();
    // Errors are a google.rpc.Status; its message is what a person reads.
    let text = match hearth_proto::google::rpc::Status::decode(body.clone()) {
        Ok(status) if !status.message.is_empty() => status.message,
        _ => String::from_utf8_lossy(&body).to_string(),
    };
    (status, text)
}

#[test]
fn bad_otlp_exports_are_refused_and_nothing_of_them_is_stored() {
    let hearth = Hearth::start();
    let proto = "application/x-protobuf";

    // The request built here is accepted as it is: the refusals below are for what was broken.
    let (status, body) = post(&hearth, proto, request("good").encode_to_vec());
    assert_eq!(status, 200, "{body}");
    assert_eq!(profile_types(&hearth, "good"), [CPU]);

    let (status, body) = post(&hearth, "text/plain", request("x").encode_to_vec());
    assert_eq!(status, 415, "{body}");
    assert!(body.contains("application/x-protobuf"), "{body}");

    let (status, body) = post(&hearth, proto, b"\xff\xff\xff not protobuf".to_vec());
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("not a protobuf ExportProfilesServiceRequest"),
        "{body}"
    );

    let (status, body) = post(
        &hearth,
        "application/json",
        b"{\"resourceProfiles\": 7}".to_vec(),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("ExportProfilesServiceRequest"), "{body}");

    // Out-of-table indices, named; a second, broken profile refuses the first too.
    let mut broken = request("broken");
    let mut bad = broken.resource_profiles[0].scope_profiles[0].profiles[0].clone();
    bad.samples[0].stack_index = 999;
    broken.resource_profiles[0].scope_profiles[0]
        .profiles
        .push(bad);
    let (status, body) = post(&hearth, proto, broken.encode_to_vec());
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("profile 1: sample 0: stack index 999 is outside the stack table (2 rows)"),
        "{body}"
    );
    let mut broken = request("broken");
    broken.dictionary.as_mut().unwrap().location_table[1].lines[0].function_index = 7;
    let gzipped = [("content-type", proto), ("content-encoding", "gzip")];
    let (status, body) = post_with(&hearth, &gzipped, gzip(&broken.encode_to_vec()));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("function index 7"), "{body}");
    let mut broken = request("broken");
    broken.dictionary = None;
    let (status, body) = post(&hearth, proto, broken.encode_to_vec());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("no dictionary"), "{body}");
    let mut broken = request("broken");
    broken.resource_profiles[0].scope_profiles[0].profiles[0].samples[0]
        .values
        .clear();
    let (status, body) = post(&hearth, proto, broken.encode_to_vec());
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("neither values nor timestamps"), "{body}");

    // Over gRPC: INVALID_ARGUMENT with the same message.
    let mut spec = spec("broken", cpu_profile("broken"));
    spec["resources"][0]["scopes"][0]["profiles"][0]["samples"][0]["stack"] = json!([]);
    spec["resources"][0]["scopes"][0]["profiles"][0]["samples"][0]["values"] = json!([]);
    let answer = export(
        &spec,
        &["--transport", "grpc", "--target", &hearth.addr.to_string()],
    );
    assert_eq!(answer["status"], "INVALID_ARGUMENT", "{answer}");
    assert!(
        answer["body"]
            .as_str()
            .unwrap()
            .contains("sample 0: it has neither values nor timestamps"),
        "{answer}"
    );

    assert!(profile_types(&hearth, "broken").is_empty());
    assert!(profile_types(&hearth, "broken-sidecar").is_empty());
    assert_eq!(profile_types(&hearth, "good"), [CPU]);
}
