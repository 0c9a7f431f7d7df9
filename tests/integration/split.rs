//! `query.split_interval`: a profile query over a range longer than the interval runs one
//! partial aggregate per aligned interval and merges them, and every answer equals the whole
//! query's (flame graph, series, merged pprof, render), from heads and from blocks.

use serde_json::{Value, json};

use super::support::{Hearth, at_time, fixture, now_nanos};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const SELECTOR: &str = r#"{service_name="split.app"}"#;
const MINUTE: i64 = 60_000_000_000;

/// The same profiles, every 37 minutes over about five hours, to both servers.
pub(crate) fn push_both(servers: &[&Hearth]) -> (i64, i64) {
    let pprof = fixture("captures/extracted/py-005.s1.r0.pb");
    let base = now_nanos() / (60 * MINUTE) * (60 * MINUTE) - 6 * 60 * MINUTE;
    for i in 0..8 {
        let at = base + 7 * MINUTE + i * 37 * MINUTE;
        let env = if i % 2 == 0 { "a" } else { "b" };
        for server in servers {
            let pushed = server.push(
                None,
                &[
                    ("__name__", "process_cpu"),
                    ("service_name", "split.app"),
                    ("env", env),
                ],
                &at_time(&pprof, at),
            );
            assert_eq!(pushed.status(), 200);
        }
    }
    (base / 1_000_000, (base + 6 * 60 * MINUTE) / 1_000_000)
}

fn answers(server: &Hearth, range: (i64, i64)) -> Vec<Value> {
    answers_for(server, range, SELECTOR)
}

/// Every profile query's answer over `start..end` for `CPU` and `selector`.
pub(crate) fn answers_for(server: &Hearth, (start, end): (i64, i64), selector: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for (method, body) in [
        (
            "SelectMergeStacktraces",
            json!({"profileTypeID": CPU, "labelSelector": selector, "start": start, "end": end}),
        ),
        (
            "SelectSeries",
            json!({"profileTypeID": CPU, "labelSelector": selector, "start": start, "end": end,
                   "groupBy": ["env"], "step": 1500.0}),
        ),
        (
            "SelectSeries",
            json!({"profileTypeID": CPU, "labelSelector": selector, "start": start, "end": end,
                   "step": 900.0, "aggregation": "TIME_SERIES_AGGREGATION_TYPE_AVERAGE"}),
        ),
        (
            "SelectMergeProfile",
            json!({"profileTypeID": CPU, "labelSelector": selector, "start": start, "end": end}),
        ),
    ] {
        let (status, answer) =
            server.connect_json(None, &format!("/querier.v1.QuerierService/{method}"), body);
        assert_eq!(status, 200, "{method}: {answer}");
        out.push(answer);
    }
    let collapsed = server
        .get(&format!(
            "/pyroscope/render?query={}&from={start}&until={end}&format=collapsed",
            super::support::urlencode(&format!("{CPU}{selector}"))
        ))
        .text()
        .unwrap();
    let mut lines: Vec<&str> = collapsed.lines().collect();
    lines.sort_unstable();
    out.push(json!(lines));
    out
}

pub(crate) fn metric(server: &Hearth, name: &str) -> f64 {
    let metrics = server.get("/metrics").text().unwrap();
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn split_queries_answer_what_whole_queries_answer() {
    let mut whole = Hearth::start();
    // Rollups off: whole hours would be read from them, not split (see rollups.rs).
    let mut split = Hearth::start_with_config("query:\n  split_interval: 1h\n  rollups: false\n");
    let range = push_both(&[&whole, &split]);

    for phase in ["heads", "blocks"] {
        let expected = answers(&whole, range);
        assert!(
            expected[0]["flamegraph"]["total"].as_str().unwrap() != "0",
            "{phase}: no data"
        );
        assert_eq!(
            expected[1]["series"].as_array().unwrap().len(),
            2,
            "{phase}: one series per env"
        );
        assert_eq!(answers(&split, range), expected, "{phase}");
        if phase == "heads" {
            // Blocks next: a graceful restart flushes the heads.
            whole.stop();
            whole.restart();
            split.stop();
            split.restart();
        }
    }
    // Six hours, cut at every hour: six or seven pieces per query, and the whole server none.
    let queries = metric(&split, "hearth_query_split_queries_total");
    assert!(queries >= 5.0, "{queries} split queries");
    let pieces = metric(&split, "hearth_query_split_pieces_total");
    assert!(
        pieces >= 6.0 * queries,
        "{pieces} pieces of {queries} queries"
    );
    assert_eq!(metric(&whole, "hearth_query_split_queries_total"), 0.0);
}
