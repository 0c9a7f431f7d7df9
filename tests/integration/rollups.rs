//! Hourly rollups: a flame graph whose selector names only `service_name` reads the rollup
//! trees of its whole hours from blocks, and answers exactly what reading the samples answers,
//! with ragged range edges, heads holding profiles of those hours too, and selectors rollups
//! cannot answer (which read samples).

use super::split::{answers_for, metric, push_both};
use super::support::{Hearth, at_time, fixture};

const MINUTE: i64 = 60_000;
const TREES: &str = "hearth_query_rollup_trees_total";

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
