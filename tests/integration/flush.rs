//! Heads become blocks on their own when they pass the size or age threshold, and the data stays
//! whole across the move.

use std::time::{Duration, Instant};

use super::blocks;
use super::expected::facts;
use super::support::{Hearth, fixture};

fn wait_for_blocks(hearth: &Hearth, at_least: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = blocks::block_dirs(hearth.data_dir(), "anonymous").len();
        if n >= at_least || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn heads_flush_by_size_and_by_age() {
    let config = "
head:
  max_head_bytes: 2000000
  max_head_age: 2s
  flush_check_interval: 200ms
";
    let mut hearth = Hearth::start_with_config(config);
    let large = fixture("pprof/large.cpu");
    let labels = [("__name__", "process_cpu"), ("service_name", "big")];
    // large.cpu holds about 1 MB in a head: the second push passes the size threshold.
    for _ in 0..3 {
        assert_eq!(hearth.push(None, &labels, &large).status().as_u16(), 200);
    }
    assert!(wait_for_blocks(&hearth, 1) >= 1, "a size flush happened");

    // A small push flushes by age alone.
    let before = blocks::block_dirs(hearth.data_dir(), "anonymous").len();
    let small = fixture("captures/extracted/py-001.s0.r0.pb");
    let response = hearth.push(
        None,
        &[("__name__", "process_cpu"), ("service_name", "small")],
        &small,
    );
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        wait_for_blocks(&hearth, before + 1) > before,
        "an age flush happened"
    );

    // Everything is still there, in blocks, exactly once.
    assert_eq!(hearth.series(None, &[r#"{service_name="big"}"#]).len(), 2);
    hearth.stop();
    let (stored, _) = blocks::totals(hearth.data_dir(), "anonymous");
    let f = facts(&large);
    let cpu = (
        "big".to_string(),
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds".to_string(),
    );
    assert_eq!(stored[&cpu], 3 * f.totals[1]);
    let small_cpu = (
        "small".to_string(),
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds".to_string(),
    );
    assert_eq!(stored[&small_cpu], facts(&small).totals[0]);
}
