//! Query answers equal references computed here from the decoded pprof: flame graphs for every
//! fixture under several selectors, time ranges and `max_nodes` (from heads, then from blocks
//! after a restart); merged pprof equals A + B per stack; the legacy render API agrees.

use std::collections::BTreeMap;

use hearth_proto::pprof::Profile;
use hearth_proto::querier::v1::{
    ProfileFormat, SelectMergeProfileRequest, SelectMergeStacktracesRequest,
    SelectMergeStacktracesResponse,
};
use prost::Message;

use super::expected::facts;
use super::reference::{self, Node, add_profile, sample_label};
use super::support::{Hearth, fixture, gunzip_if_gzip};

pub(crate) const ALL_TIME: (i64, i64) = (1, 4_102_444_800_000);

/// A Connect proto call with Grafana's headers; panics on a non-200 answer.
pub(crate) fn call<Req: Message, Resp: Message + Default>(
    hearth: &Hearth,
    tenant: Option<&str>,
    method: &str,
    request: &Req,
) -> Resp {
    let (status, body) = call_status(hearth, tenant, method, request);
    assert_eq!(status, 200, "{method}: {}", String::from_utf8_lossy(&body));
    Resp::decode(gunzip_if_gzip(&body).as_slice()).unwrap()
}

pub(crate) fn call_status<Req: Message>(
    hearth: &Hearth,
    tenant: Option<&str>,
    method: &str,
    request: &Req,
) -> (u16, Vec<u8>) {
    let mut builder = hearth
        .client
        .post(hearth.url(&format!("/querier.v1.QuerierService/{method}")))
        .header("content-type", "application/proto")
        .header("connect-protocol-version", "1")
        .header("accept-encoding", "gzip")
        .body(request.encode_to_vec());
    if let Some(tenant) = tenant {
        builder = builder.header("X-Scope-OrgID", tenant);
    }
    let response = builder.send().unwrap();
    let status = response.status().as_u16();
    (status, response.bytes().unwrap().to_vec())
}

/// The flame graph of a query, rebuilt into a tree (layout rules checked on the way).
pub(crate) fn flame_graph(
    hearth: &Hearth,
    tenant: Option<&str>,
    profile_type: &str,
    selector: &str,
    range: (i64, i64),
    max_nodes: Option<i64>,
) -> Node {
    let response: SelectMergeStacktracesResponse = call(
        hearth,
        tenant,
        "SelectMergeStacktraces",
        &SelectMergeStacktracesRequest {
            profile_type_id: profile_type.into(),
            label_selector: selector.into(),
            start: range.0,
            end: range.1,
            max_nodes,
            ..Default::default()
        },
    );
    let graph = response.flamegraph.expect("a flame graph");
    let levels: Vec<Vec<i64>> = graph.levels.iter().map(|l| l.values.clone()).collect();
    let tree = reference::decode(&graph.names, &levels);
    assert_eq!(tree.total, graph.total);
    tree
}

struct Case {
    what: String,
    profile_type: String,
    selector: String,
    range: (i64, i64),
    max_nodes: Option<i64>,
    expected: Node,
}

fn check(hearth: &Hearth, cases: &[Case]) {
    for case in cases {
        let shown = case.max_nodes.filter(|&n| n != 0).unwrap_or(8192);
        let got = flame_graph(
            hearth,
            None,
            &case.profile_type,
            &case.selector,
            case.range,
            case.max_nodes,
        );
        assert_eq!(got, case.expected.truncated(shown), "{}", case.what);
    }
}

fn decoded(bytes: &[u8]) -> Profile {
    Profile::decode(gunzip_if_gzip(bytes).as_slice()).unwrap()
}

use super::fixtures::PROFILES as FIXTURES;

#[test]
fn flame_graphs_equal_an_independent_reference_from_heads_and_blocks() {
    let mut hearth = Hearth::start();
    let mut cases = Vec::new();
    let selector_of = |service: &str| format!("{{service_name=\"{service}\"}}");

    for file in FIXTURES {
        let bytes = fixture(file);
        let service = format!("fx-{}", file.rsplit('/').next().unwrap());
        let response = hearth.push(
            None,
            &[("__name__", "fixture"), ("service_name", &service)],
            &bytes,
        );
        assert_eq!(response.status().as_u16(), 200, "{file}");
        let p = decoded(&bytes);
        let f = facts(&bytes);
        for i in 0..p.sample_type.len() {
            let mut expected = Node::default();
            add_profile(&mut expected, &p, i, |_| true);
            for max_nodes in [None, Some(1), Some(16), Some(512)] {
                cases.push(Case {
                    what: format!("{file} type {i} max_nodes {max_nodes:?}"),
                    profile_type: f.profile_type("fixture", i),
                    selector: selector_of(&service),
                    range: ALL_TIME,
                    max_nodes,
                    expected: expected.clone(),
                });
            }
        }
    }

    // Selectors over sample labels that became series labels.
    let labelled = decoded(&fixture("parca/profile-with-labels.pb.gz"));
    let thread = sample_label(&labelled, &labelled.sample[0], "thread_name").unwrap();
    for (op, keep_equal) in [("=", true), ("!=", false)] {
        let mut expected = Node::default();
        add_profile(&mut expected, &labelled, 0, |s| {
            (sample_label(&labelled, s, "thread_name").as_deref() == Some(thread.as_str()))
                == keep_equal
        });
        cases.push(Case {
            what: format!("thread_name{op}{thread}"),
            profile_type: "fixture:samples:count:cpu:nanoseconds".into(),
            selector: format!(
                "{{service_name=\"fx-profile-with-labels.pb.gz\", thread_name{op}\"{thread}\"}}"
            ),
            range: ALL_TIME,
            max_nodes: Some(64),
            expected,
        });
    }

    // A regex across services: every fixture with this profile type, merged.
    let samples_cpu = "fixture:samples:count:cpu:nanoseconds";
    let mut across = Node::default();
    for file in FIXTURES {
        let f = facts(&fixture(file));
        let p = decoded(&fixture(file));
        for i in 0..p.sample_type.len() {
            if f.profile_type("fixture", i) == samples_cpu {
                add_profile(&mut across, &p, i, |_| true);
            }
        }
    }
    assert!(across.total > 0);
    cases.push(Case {
        what: "regex over services".into(),
        profile_type: samples_cpu.into(),
        selector: r#"{service_name=~"fx-.*", service_name!~"fx-large.*"}"#.into(),
        range: ALL_TIME,
        max_nodes: Some(100_000),
        expected: {
            let mut without_large = Node::default();
            for file in FIXTURES.iter().filter(|f| !f.contains("large")) {
                let f = facts(&fixture(file));
                let p = decoded(&fixture(file));
                for i in 0..p.sample_type.len() {
                    if f.profile_type("fixture", i) == samples_cpu {
                        add_profile(&mut without_large, &p, i, |_| true);
                    }
                }
            }
            without_large
        },
    });

    // Time ranges: the same profile at two times.
    let mut timed = decoded(&fixture("pprof/large.cpu"));
    let t1 = 1_800_000_000_000_i64; // ms
    let t2 = t1 + 60_000;
    for t in [t1, t2] {
        timed.time_nanos = t * 1_000_000;
        let response = hearth.push(
            None,
            &[("__name__", "process_cpu"), ("service_name", "timed")],
            &timed.encode_to_vec(),
        );
        assert_eq!(response.status().as_u16(), 200);
    }
    let mut once = Node::default();
    add_profile(&mut once, &timed, 1, |_| true);
    let mut twice = Node::default();
    add_profile(&mut twice, &timed, 1, |_| true);
    add_profile(&mut twice, &timed, 1, |_| true);
    let cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    for (what, range, expected) in [
        ("first only", (t1 - 1000, t1 + 1000), once.clone()),
        ("second only", (t2, t2), once),
        ("both", (t1 - 1000, t2 + 1000), twice),
        ("neither", (t2 + 5000, t2 + 10_000), Node::default()),
    ] {
        cases.push(Case {
            what: format!("time range: {what}"),
            profile_type: cpu.into(),
            selector: selector_of("timed"),
            range,
            max_nodes: Some(2048),
            expected,
        });
    }

    check(&hearth, &cases);
    // Graceful restart: every answer now comes from Parquet blocks, and must not change.
    hearth.stop();
    hearth.restart();
    assert!(hearth.log().contains("flushed head to block"));
    check(&hearth, &cases);
}

/// Per-stack sums of a pprof's first value, keyed by root-first frames.
fn stacks(p: &Profile, value_index: usize) -> BTreeMap<Vec<String>, i64> {
    let mut out = BTreeMap::new();
    for sample in &p.sample {
        *out.entry(reference::frames(p, sample)).or_default() += sample.value[value_index];
    }
    out.retain(|_, v| *v != 0);
    out
}

/// Checks that every reference in a merged profile resolves, as `go tool pprof` requires.
fn assert_valid_pprof(p: &Profile) {
    assert_eq!(p.string_table.first().map(String::as_str), Some(""));
    let strings = p.string_table.len() as i64;
    let unique = |ids: Vec<u64>| {
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "ids are unique");
        assert!(!ids.contains(&0), "ids are non-zero");
    };
    unique(p.mapping.iter().map(|m| m.id).collect());
    unique(p.function.iter().map(|f| f.id).collect());
    unique(p.location.iter().map(|l| l.id).collect());
    for f in &p.function {
        assert!(f.name < strings && f.system_name < strings && f.filename < strings);
    }
    for l in &p.location {
        assert!(l.mapping_id == 0 || p.mapping.iter().any(|m| m.id == l.mapping_id));
        for line in &l.line {
            assert!(p.function.iter().any(|f| f.id == line.function_id));
        }
    }
    for s in &p.sample {
        assert_eq!(s.value.len(), p.sample_type.len());
        for id in &s.location_id {
            assert!(p.location.iter().any(|l| l.id == *id));
        }
    }
    let mut distinct: Vec<&Vec<u64>> = p.sample.iter().map(|s| &s.location_id).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), p.sample.len(), "equal stacks are merged");
}

#[test]
fn merged_pprof_is_a_plus_b_per_stack() {
    let mut hearth = Hearth::start();
    let a = fixture("captures/extracted/py-005.s1.r0.pb");
    let b = fixture("captures/extracted/py-001.s0.r0.pb");
    for (service, bytes) in [("merge-a", &a), ("merge-b", &b)] {
        let response = hearth.push(
            None,
            &[("__name__", "process_cpu"), ("service_name", service)],
            bytes,
        );
        assert_eq!(response.status().as_u16(), 200);
    }
    let mut expected = stacks(&decoded(&a), 0);
    for (stack, value) in stacks(&decoded(&b), 0) {
        *expected.entry(stack).or_default() += value;
    }
    let cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    let check = |hearth: &Hearth| {
        let merged: Profile = call(
            hearth,
            None,
            "SelectMergeProfile",
            &SelectMergeProfileRequest {
                profile_type_id: cpu.into(),
                label_selector: r#"{service_name=~"merge-.*"}"#.into(),
                start: ALL_TIME.0,
                end: ALL_TIME.1,
                ..Default::default()
            },
        );
        assert_valid_pprof(&merged);
        let types: Vec<&str> = merged
            .sample_type
            .iter()
            .flat_map(|t| [t.r#type, t.unit])
            .map(|i| merged.string_table[i as usize].as_str())
            .collect();
        assert_eq!(types, ["cpu", "nanoseconds"]);
        assert_eq!(merged.period, 10_000_000);
        assert_eq!(stacks(&merged, 0), expected);

        // profilecli's path: SelectMergeStacktraces with the pprof format.
        let response: SelectMergeStacktracesResponse = call(
            hearth,
            None,
            "SelectMergeStacktraces",
            &SelectMergeStacktracesRequest {
                profile_type_id: cpu.into(),
                label_selector: r#"{service_name=~"merge-.*"}"#.into(),
                start: ALL_TIME.0,
                end: ALL_TIME.1,
                format: ProfileFormat::Pprof as i32,
                ..Default::default()
            },
        );
        let via_stacktraces = response.pprof.and_then(|p| p.profile).expect("a pprof");
        assert_eq!(stacks(&via_stacktraces, 0), expected);
    };
    check(&hearth);
    hearth.stop();
    hearth.restart();
    check(&hearth);
}

#[test]
fn legacy_render_agrees_with_the_flame_graph_and_series() {
    let hearth = Hearth::start();
    // The fixture's own time is years old; stamp it five minutes ago so `from=now-1h` finds it
    // in a complete timeline bucket (the newest bucket's right edge is `until`, outside).
    let mut p = decoded(&fixture("parca/profile-with-labels.pb.gz"));
    p.time_nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
        - 300_000_000_000;
    let response = hearth.push(
        None,
        &[("__name__", "process_cpu"), ("service_name", "render-app")],
        &p.encode_to_vec(),
    );
    assert_eq!(response.status().as_u16(), 200);
    let mut expected = Node::default();
    add_profile(&mut expected, &p, 0, |_| true);

    let get = |path: &str| -> serde_json::Value {
        let response = hearth.get(path);
        assert_eq!(response.status().as_u16(), 200, "{path}");
        serde_json::from_str(&response.text().unwrap()).unwrap()
    };
    let query = "process_cpu:samples:count:cpu:nanoseconds%7Bservice_name%3D%22render-app%22%7D";
    let body = get(&format!(
        "/pyroscope/render?query={query}&from=now-1h&until=now&groupBy=thread_name"
    ));
    let fb = &body["flamebearer"];
    assert_eq!(fb["numTicks"].as_i64(), Some(expected.total));
    let names: Vec<String> = fb["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    let levels: Vec<Vec<i64>> = fb["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect()
        })
        .collect();
    assert_eq!(reference::decode(&names, &levels), expected.truncated(8192));
    assert_eq!(body["metadata"]["format"], "single");
    assert_eq!(body["metadata"]["units"], "objects");
    assert_eq!(body["metadata"]["name"], "samples");
    // The profile (pushed now) lands in one timeline bucket, summing to the total.
    let timeline = &body["timeline"];
    assert_eq!(timeline["durationDelta"], 15);
    let samples: i64 = timeline["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(samples, expected.total);
    let groups = body["groups"].as_object().unwrap();
    assert_eq!(
        groups.len(),
        p.sample
            .iter()
            .filter_map(|s| sample_label(&p, s, "thread_name"))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );

    let diff = get(&format!(
        "/pyroscope/render-diff?leftQuery={query}&leftFrom=now-1h&leftUntil=now&rightQuery={query}&rightFrom=now-1h&rightUntil=now"
    ));
    assert_eq!(diff["metadata"]["format"], "double");
    assert_eq!(diff["leftTicks"].as_i64(), Some(expected.total));
    assert_eq!(diff["rightTicks"].as_i64(), Some(expected.total));
    assert_eq!(
        diff["flamebearer"]["numTicks"].as_i64(),
        Some(2 * expected.total)
    );

    let types = get("/pyroscope/label-values?label=__name__");
    assert!(types.as_array().unwrap().contains(&serde_json::json!(
        "process_cpu:samples:count:cpu:nanoseconds"
    )));
    let services = get("/pyroscope/label-values?label=service_name");
    assert_eq!(services, serde_json::json!(["render-app"]));
    let response = hearth.get("/pyroscope/render?query=%7B%7D");
    assert_eq!(response.status().as_u16(), 400);
    assert!(
        response
            .text()
            .unwrap()
            .contains("must start with a profile type")
    );
}

#[test]
fn render_exports_pprof_collapsed_and_svg() {
    let hearth = Hearth::start();
    let mut p = decoded(&fixture("parca/profile-with-labels.pb.gz"));
    p.time_nanos = super::support::now_nanos() - 300_000_000_000;
    let response = hearth.push(
        None,
        &[("__name__", "process_cpu"), ("service_name", "export-app")],
        &p.encode_to_vec(),
    );
    assert_eq!(response.status().as_u16(), 200);
    let expected = stacks(&p, 0);
    let query = "process_cpu:samples:count:cpu:nanoseconds%7Bservice_name%3D%22export-app%22%7D";
    let get = |format: &str, range: &str| {
        let response = hearth.get(&format!(
            "/pyroscope/render?query={query}&{range}&format={format}"
        ));
        (
            response.status().as_u16(),
            response.bytes().unwrap().to_vec(),
        )
    };
    let last_hour = "from=now-1h&until=now";

    // pprof: gzipped, valid, every stack with its value.
    let (status, bytes) = get("pprof", last_hour);
    assert_eq!(status, 200);
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "gzipped");
    let merged = decoded(&bytes);
    assert_valid_pprof(&merged);
    assert_eq!(stacks(&merged, 0), expected);

    // Collapsed stacks: the same stacks, as text.
    let (status, text) = get("collapsed", last_hour);
    assert_eq!(status, 200);
    let mut folded: BTreeMap<Vec<String>, i64> = BTreeMap::new();
    for line in String::from_utf8(text).unwrap().lines() {
        let (stack, value) = line.rsplit_once(' ').unwrap();
        let frames = stack.split(';').map(str::to_string).collect();
        *folded.entry(frames).or_default() += value.parse::<i64>().unwrap();
    }
    assert_eq!(folded, expected);

    // SVG: well-formed XML whose titles name the widest frames under the root.
    let (status, svg) = get("svg", last_hour);
    assert_eq!(status, 200);
    let svg = String::from_utf8(svg).unwrap();
    let mut reader = quick_xml::Reader::from_str(&svg);
    let mut root = None;
    let mut titles = Vec::new();
    let mut in_title = false;
    loop {
        match reader.read_event().expect("well-formed SVG") {
            quick_xml::events::Event::Start(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                root.get_or_insert(name.clone());
                in_title = name == "title";
            }
            quick_xml::events::Event::Text(t) if in_title => {
                titles.push(String::from_utf8_lossy(t.as_ref()).into_owned());
            }
            quick_xml::events::Event::Eof => break,
            _ => in_title = false,
        }
    }
    assert_eq!(root.as_deref(), Some("svg"));
    let mut roots: BTreeMap<&str, i64> = BTreeMap::new();
    for (frames, value) in &expected {
        *roots.entry(frames[0].as_str()).or_default() += value;
    }
    let widest = roots.iter().max_by_key(|(_, v)| **v).unwrap().0;
    assert!(
        titles.iter().any(|t| t.starts_with(&format!("{widest} ("))),
        "no title for {widest} among {titles:?}"
    );

    // Bad format and nothing to draw: clear errors.
    let (status, body) = get("png", last_hour);
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("svg, collapsed or pprof"));
    let (status, body) = get("svg", "from=now-3h&until=now-2h");
    assert_eq!(status, 404);
    assert!(String::from_utf8_lossy(&body).contains("no profiles"));
}
