//! Hourly rollups: a flame graph whose selector names only `service_name` reads the rollup
//! trees of its whole hours from blocks, and answers exactly what reading the samples answers,
//! with ragged range edges, heads holding profiles of those hours too, and selectors rollups
//! cannot answer (which read samples). `SelectSeries` on a grid of whole hours reads the
//! per-series hourly totals, whatever its selector, and answers what the profiles answer.

use serde_json::{Value, json};

use super::split::{answers_for, metric, push_both};
use super::support::{Hearth, at_time, fixture};

const MINUTE: i64 = 60_000;
const TREES: &str = "hearth_query_rollup_trees_total";
const SERIES_ROWS: &str = "hearth_query_rollup_series_rows_total";

#[test]
fn rollups_answer_what_samples_answer() {
    let mut samples = Hearth::start_with_config("query:\n  rollups: false\n");
    let mut rollups = Hearth::start();
    let (start, end) = push_both(&[&samples, &rollups]);
    // Blocks (with their rollups) from a graceful restart.
    for server in [&mut samples, &mut rollups] {
        server.stop();
        server.restart();
    }
    let compare = |what: &str| {
        // The pushes are at 7 + 37k minutes past `start`: the ragged edges hold profiles.
        for range in [(start, end), (start + 20 * MINUTE, start + 270 * MINUTE)] {
            for selector in [
                r#"{service_name="split.app"}"#,
                r#"{service_name=~"split\\..*"}"#,
            ] {
                let expected = answers_for(&samples, range, selector);
                assert_ne!(
                    expected[0]["flamegraph"]["total"], "0",
                    "{what}: no data in {range:?}"
                );
                let before = metric(&rollups, TREES);
                assert_eq!(
                    answers_for(&rollups, range, selector),
                    expected,
                    "{what}: {selector} over {range:?}"
                );
                assert!(
                    metric(&rollups, TREES) > before,
                    "{what}: {selector} over {range:?} read no rollup"
                );
            }
            // A label rollups do not keep: samples are read, with the same answers.
            let selector = r#"{service_name="split.app", env="a"}"#;
            let before = metric(&rollups, TREES);
            assert_eq!(
                answers_for(&rollups, range, selector),
                answers_for(&samples, range, selector),
                "{what}: {selector}"
            );
            assert_eq!(metric(&rollups, TREES), before, "{what}: {selector}");
        }
    };
    compare("blocks");

    // A late profile of a rolled-up hour lands in the head: the head's samples of those hours
    // are read beside the blocks' rollups.
    let pprof = fixture("captures/extracted/py-005.s1.r0.pb");
    for server in [&samples, &rollups] {
        let pushed = server.push(
            None,
            &[
                ("__name__", "process_cpu"),
                ("service_name", "split.app"),
                ("env", "a"),
            ],
            &at_time(&pprof, (start + 150 * MINUTE) * 1_000_000),
        );
        assert_eq!(pushed.status(), 200);
    }
    compare("blocks and a head");
    assert_eq!(metric(&samples, TREES), 0.0, "rollups: false reads none");
}

#[test]
fn series_rollups_answer_what_profiles_answer() {
    let mut profiles = Hearth::start_with_config("query:\n  rollups: false\n");
    let mut rollups = Hearth::start();
    // Split into hours, as the query-frontend cuts SelectSeries: closed on the right, so each
    // piece holds whole series hours.
    let mut split = Hearth::start_with_config("query:\n  split_interval: 1h\n");
    let (start, end) = push_both(&[&profiles, &rollups, &split]);
    // A series hour is `(end - 1 h, end]` in whole milliseconds, as a SelectSeries bucket:
    // profiles on an hour's edge, within its last millisecond, and one millisecond past it.
    let pprof = fixture("captures/extracted/py-005.s1.r0.pb");
    let edge = (start + 180 * MINUTE) * 1_000_000;
    for at in [edge, edge + 999_999, edge + 1_000_000] {
        for server in [&profiles, &rollups, &split] {
            let labels = [
                ("__name__", "process_cpu"),
                ("service_name", "split.app"),
                ("env", "c"),
            ];
            assert_eq!(
                server.push(None, &labels, &at_time(&pprof, at)).status(),
                200
            );
        }
    }
    for server in [&mut profiles, &mut rollups, &mut split] {
        server.stop();
        server.restart();
    }
    let series = |server: &Hearth, (from, to): (i64, i64), selector: &str, shape: &Value| {
        let mut body = json!({
            "profileTypeID": "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
            "labelSelector": selector,
            "start": from,
            "end": to,
        });
        body.as_object_mut()
            .unwrap()
            .extend(shape.as_object().unwrap().clone());
        let (status, answer) =
            server.connect_json(None, "/querier.v1.QuerierService/SelectSeries", body);
        assert_eq!(status, 200, "{answer}");
        answer
    };
    let app = r#"{service_name="split.app"}"#;
    let average = "TIME_SERIES_AGGREGATION_TYPE_AVERAGE";
    // (range, selector, shape, whether the grid is whole hours on hour boundaries)
    let cases = [
        ((start, end), app, json!({"step": 3600.0}), true),
        (
            (start, end),
            app,
            json!({"step": 3600.0, "groupBy": ["env"]}),
            true,
        ),
        (
            (start, end),
            r#"{service_name="split.app", env="c"}"#,
            json!({"step": 3600.0}),
            true,
        ),
        (
            (start, end - 25 * MINUTE),
            app,
            json!({"step": 7200.0, "aggregation": average}),
            true,
        ),
        (
            (start + 20 * MINUTE, end),
            app,
            json!({"step": 3600.0}),
            false,
        ),
        ((start, end), app, json!({"step": 1500.0}), false),
    ];
    let compare = |what: &str| {
        for (range, selector, shape, whole_hours) in &cases {
            let expected = series(&profiles, *range, selector, shape);
            assert!(
                !expected["series"].as_array().unwrap().is_empty(),
                "{what}: no series for {selector} {shape} over {range:?}"
            );
            for server in [&rollups, &split] {
                let before = metric(server, SERIES_ROWS);
                assert_eq!(
                    &series(server, *range, selector, shape),
                    &expected,
                    "{what}: {selector} {shape} over {range:?}"
                );
                assert_eq!(
                    metric(server, SERIES_ROWS) > before,
                    *whole_hours,
                    "{what}: whether {selector} {shape} over {range:?} read the series rollups"
                );
            }
        }
    };
    compare("blocks");
    // A late profile inside a rolled-up hour lands in the head: it is read beside the rollups.
    for server in [&profiles, &rollups, &split] {
        let labels = [
            ("__name__", "process_cpu"),
            ("service_name", "split.app"),
            ("env", "a"),
        ];
        let at = (start + 150 * MINUTE) * 1_000_000;
        assert_eq!(
            server.push(None, &labels, &at_time(&pprof, at)).status(),
            200
        );
    }
    compare("blocks and a head");
    // The three edge profiles: the first two end the bucket at the edge, the third the next.
    let env_c = series(
        &rollups,
        (start, end),
        r#"{env="c"}"#,
        &json!({"step": 3600.0}),
    );
    let points = env_c["series"][0]["points"].as_array().unwrap();
    let edge_ms = edge / 1_000_000;
    // proto3 JSON writes int64 as a string.
    let time = |p: &Value| match &p["timestamp"] {
        Value::String(s) => s.parse::<i64>().ok(),
        other => other.as_i64(),
    };
    let at = |t: i64| {
        points
            .iter()
            .find(|p| time(p) == Some(t))
            .map(|p| p["value"].as_f64().unwrap())
    };
    let one = at(edge_ms + 3_600_000).expect("a point an hour past the edge");
    assert_eq!(at(edge_ms), Some(2.0 * one), "{points:?}");
    assert_eq!(
        metric(&profiles, SERIES_ROWS),
        0.0,
        "rollups: false reads none"
    );
}
