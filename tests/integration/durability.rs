//! An acknowledged push survives `kill -9` (the WAL), and a graceful restart puts the data in a
//! block that reads back identically.

use super::blocks;
use super::expected::facts;
use super::support::{Hearth, fixture};

const PUSHES: usize = 25;

fn push_all(hearth: &Hearth, first: usize, count: usize) {
    let pprof = fixture("captures/extracted/py-005.s1.r0.pb");
    for i in first..first + count {
        let run = i.to_string();
        let response = hearth.push(
            None,
            &[
                ("__name__", "process_cpu"),
                ("service_name", "durable"),
                ("run", &run),
            ],
            &pprof,
        );
        assert_eq!(response.status().as_u16(), 200, "push {i}");
    }
}

fn runs(hearth: &Hearth) -> Vec<String> {
    let mut runs: Vec<String> = hearth
        .series(None, &[r#"{service_name="durable"}"#])
        .into_iter()
        .map(|set| set.into_iter().find(|(n, _)| n == "run").unwrap().1)
        .collect();
    runs.sort_by_key(|r| r.parse::<usize>().unwrap());
    runs
}

#[test]
fn acknowledged_pushes_survive_kill_9_and_graceful_restarts() {
    let mut hearth = Hearth::start();
    push_all(&hearth, 0, PUSHES);
    let expected: Vec<String> = (0..PUSHES).map(|i| i.to_string()).collect();
    assert_eq!(runs(&hearth), expected);

    // Crash right after the acknowledgements: the WAL brings every push back.
    hearth.kill9();
    assert!(
        blocks::block_dirs(hearth.data_dir(), "anonymous").is_empty(),
        "nothing was flushed"
    );
    hearth.restart();
    assert_eq!(runs(&hearth), expected);
    let before = hearth.series(None, &["{}"]);

    // More pushes, then a crash again: old and new are all there.
    push_all(&hearth, PUSHES, 5);
    hearth.kill9();
    hearth.restart();
    let all: Vec<String> = (0..PUSHES + 5).map(|i| i.to_string()).collect();
    assert_eq!(runs(&hearth), all);

    // Graceful stop: one block holds everything, with the right totals; the WAL is not replayed
    // on top of it (no double counting).
    hearth.stop();
    assert_eq!(blocks::block_dirs(hearth.data_dir(), "anonymous").len(), 1);
    let (stored, _) = blocks::totals(hearth.data_dir(), "anonymous");
    let per_push = facts(&fixture("captures/extracted/py-005.s1.r0.pb")).totals[0];
    let key = (
        "durable".to_string(),
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds".to_string(),
    );
    assert_eq!(stored.get(&key), Some(&(per_push * (PUSHES as i64 + 5))));

    hearth.restart();
    assert_eq!(runs(&hearth), all);
    hearth.stop();
    assert_eq!(
        blocks::block_dirs(hearth.data_dir(), "anonymous").len(),
        1,
        "an idle restart writes no block"
    );
    let (again, _) = blocks::totals(hearth.data_dir(), "anonymous");
    assert_eq!(again, stored);
    hearth.restart();
    let after: Vec<_> = hearth
        .series(None, &["{}"])
        .into_iter()
        .filter(|set| before.contains(set))
        .collect();
    assert_eq!(
        after, before,
        "the first runs read back identically from the block"
    );
}
