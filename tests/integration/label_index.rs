//! The label index: LabelNames, LabelValues, Series and ProfileTypes answered from the heads'
//! label postings and the blocks' series indexes give what scanning the series table gives,
//! for every kind of matcher, several selectors at once, and ranges that keep only some series,
//! over heads, blocks, and both.

use serde_json::{Value, json};

use super::split::metric;
use super::support::{Hearth, at_time, fixture, now_nanos, urlencode};

const MINUTE: i64 = 60_000;
const SOURCES: &str = "hearth_query_label_index_sources_total";
const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

/// Twelve series 20 minutes apart, starting at `start` (ms): three services, a pod each, a
/// region on three of every four.
fn push_series(servers: &[&Hearth], start: i64, first: usize) {
    let pprof = fixture("captures/extracted/py-005.s1.r0.pb");
    for i in first..first + 12 {
        let service = format!("idx.{}", ["a", "b", "c"][i % 3]);
        let pod = format!("pod-{i}");
        let region = ["", "eu", "us", "eu"][i % 4];
        let mut labels = vec![
            ("__name__", "process_cpu"),
            ("service_name", service.as_str()),
            ("pod", pod.as_str()),
        ];
        if !region.is_empty() {
            labels.push(("region", region));
        }
        let at = (start + (i - first) as i64 * 20 * MINUTE) * 1_000_000;
        for server in servers {
            let pushed = server.push(None, &labels, &at_time(&pprof, at));
            assert_eq!(pushed.status(), 200);
        }
    }
}

/// Every label API's answer over `start..end` for each of a list of matcher sets.
fn label_answers(server: &Hearth, (start, end): (i64, i64)) -> Vec<Value> {
    let matcher_sets: Vec<Vec<String>> = vec![
        vec![],
        vec![r#"{service_name="idx.a"}"#.into()],
        vec![r#"{service_name="nope"}"#.into()],
        vec![r#"{region=~"eu|us"}"#.into()],
        vec![r#"{region=""}"#.into()],
        vec![r#"{region!="eu"}"#.into()],
        vec![r#"{pod!~"pod-1.*"}"#.into()],
        vec![r#"{service_name=~"idx\\.[ab]", region=~".+"}"#.into()],
        vec![
            r#"{service_name="idx.a"}"#.into(),
            r#"{service_name="idx.b", region="eu"}"#.into(),
        ],
        vec![format!(r#"{CPU}{{service_name=~"idx\\..*"}}"#)],
    ];
    let mut out = Vec::new();
    let mut call = |method: &str, body: Value| {
        let (status, answer) = server.connect_json(
            None,
            &format!("/querier.v1.QuerierService/{method}"),
            body.clone(),
        );
        assert_eq!(status, 200, "{method} {body}: {answer}");
        out.push(json!({"call": method, "body": body, "answer": answer}));
    };
    for matchers in &matcher_sets {
        call(
            "LabelNames",
            json!({"matchers": matchers, "start": start, "end": end}),
        );
        for name in ["service_name", "pod", "region", "absent"] {
            call(
                "LabelValues",
                json!({"name": name, "matchers": matchers, "start": start, "end": end}),
            );
        }
        call(
            "Series",
            json!({"matchers": matchers, "start": start, "end": end}),
        );
        call(
            "Series",
            json!({"matchers": matchers, "labelNames": ["region", "service_name"],
                   "start": start, "end": end}),
        );
    }
    call("ProfileTypes", json!({"start": start, "end": end}));
    let legacy = server
        .get(&format!(
            "/pyroscope/label-values?label=pod&query={}&from={start}&until={end}",
            urlencode(r#"{service_name="idx.b"}"#)
        ))
        .text()
        .unwrap();
    out.push(json!({"call": "label-values", "answer": legacy}));
    out
}

#[test]
fn label_index_answers_what_a_scan_answers() {
    let mut scan = Hearth::start_with_config("query:\n  label_index: false\n");
    let mut index = Hearth::start();
    let start = now_nanos() / 1_000_000 / (60 * MINUTE) * (60 * MINUTE) - 8 * 60 * MINUTE;
    push_series(&[&scan, &index], start, 0);
    let end = start + 4 * 60 * MINUTE;
    compare(&scan, &index, (start, end), "heads", 12);
    // Blocks from a graceful restart.
    for server in [&mut scan, &mut index] {
        server.stop();
        server.restart();
    }
    compare(&scan, &index, (start, end), "blocks", 12);
    // More series in a head beside the blocks, some sharing the blocks' label values.
    push_series(&[&scan, &index], start + 10 * MINUTE, 6);
    compare(&scan, &index, (start, end), "blocks and a head", 18);
    assert_eq!(metric(&scan, SOURCES), 0.0, "label_index: false reads none");
}

/// The index server's label answers equal the scan server's over three ranges; `pods` pods
/// over the whole range.
fn compare(scan: &Hearth, index: &Hearth, (start, end): (i64, i64), what: &str, pods: usize) {
    // Everything; the middle (some series only); and a range before any series.
    for range in [
        (start, end),
        (start + 50 * MINUTE, start + 130 * MINUTE),
        (start - 60 * MINUTE, start - MINUTE),
    ] {
        let expected = label_answers(scan, range);
        let before = metric(index, SOURCES);
        assert_eq!(
            label_answers(index, range),
            expected,
            "{what} over {range:?}"
        );
        if range.0 >= start {
            assert!(
                metric(index, SOURCES) > before,
                "{what} over {range:?}: no index read"
            );
        }
    }
    // The whole range sees every series.
    let all = label_answers(index, (start, end));
    let values = all
        .iter()
        .find(|a| a["call"] == "LabelValues" && a["body"]["name"] == "pod")
        .unwrap();
    assert_eq!(
        values["answer"]["names"].as_array().map(Vec::len),
        Some(pods),
        "{what}: {values}"
    );
}
