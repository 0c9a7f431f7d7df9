//! Retention and runtime overrides on the single binary: a tenant given a 1 h retention in the
//! overrides file (written while the server runs) loses its old blocks from the bucket and its
//! old profiles from the answers, a block partly inside keeps only its recent profiles, another
//! tenant keeps everything, and an ingest limit changed the same way applies to the next push.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

use super::support::{Hearth, at_time, fixture, now_nanos};

const HOUR: i64 = 3600 * 1_000_000_000;
const PROFILE_TYPE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

fn push(hearth: &Hearth, tenant: &str, labels: &[(&str, &str)], time: i64) -> u16 {
    let pprof = at_time(&fixture("pprof/large.cpu"), time);
    hearth.push(Some(tenant), labels, &pprof).status().as_u16()
}

fn flush(hearth: &Hearth) {
    let response = hearth
        .client
        .post(hearth.url("/ingester/flush"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// The tenant's flame graph over the last day.
fn select(hearth: &Hearth, tenant: &str) -> (u16, serde_json::Value) {
    let now_ms = now_nanos() / 1_000_000;
    hearth.connect_json(
        Some(tenant),
        "/querier.v1.QuerierService/SelectMergeStacktraces",
        json!({"profile_typeID": PROFILE_TYPE, "label_selector": "{}",
               "start": now_ms - 24 * 3_600_000, "end": now_ms}),
    )
}

/// The tenant's flame-graph total over the last day.
fn total(hearth: &Hearth, tenant: &str) -> i64 {
    let (status, body) = select(hearth, tenant);
    assert_eq!(status, 200, "{body}");
    body["flamegraph"]["total"]
        .as_str()
        .map_or(0, |t| t.parse().unwrap())
}

/// Complete blocks of a tenant in the filesystem bucket.
fn blocks(data: &Path, tenant: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(data.join("blocks").join(tenant)) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join("meta.json").exists())
        .count()
}

fn wait_for(what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn retention_and_overrides_apply_at_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let overrides = dir.path().join("overrides.yaml");
    std::fs::write(&overrides, "overrides: {}\n").unwrap();
    let hearth = Hearth::start_with_config(&format!(
        "multitenancy_enabled: true\n\
         runtime_config:\n  file: {}\n  period: 200ms\n\
         compactor:\n  compaction_interval: 300ms\n  wait_period: 0s\n  deletion_delay: 1s\n  \
         block_ranges: [1h]\n",
        overrides.display()
    ));
    let labels = [
        ("__name__", "process_cpu"),
        ("service_name", "svc"),
        ("env", "prod"),
    ];
    let now = now_nanos();
    // `short`: one block wholly 3 h old, one block holding a 2 h old and a recent profile
    // (their earliest profiles fall in different hours and the compactor has only hour-long
    // windows, so it never merges them whatever the time of day).
    assert_eq!(push(&hearth, "short", &labels, now - 3 * HOUR), 200);
    flush(&hearth);
    assert_eq!(push(&hearth, "short", &labels, now - 2 * HOUR), 200);
    assert_eq!(
        push(&hearth, "short", &labels, now - 10 * 60 * 1_000_000_000),
        200
    );
    // `long`: the same old profile.
    assert_eq!(push(&hearth, "long", &labels, now - 3 * HOUR), 200);
    flush(&hearth);
    let one = total(&hearth, "long");
    assert!(one > 0);
    assert_eq!(total(&hearth, "short"), 3 * one);
    assert_eq!(blocks(hearth.data_dir(), "short"), 2);

    // The override arrives while the server runs.
    std::fs::write(
        &overrides,
        "overrides:\n  short:\n    retention_period: 1h\n    max_label_names_per_series: 3\n    max_series_per_tenant: 1\n",
    )
    .unwrap();
    wait_for("the override to be loaded", || {
        hearth.log().contains("overrides reloaded")
    });
    // Queries read only the last hour of `short` at once; the compactor deletes its old block.
    assert_eq!(
        total(&hearth, "short"),
        one,
        "only the recent profile is read"
    );
    wait_for("the expired block to leave the bucket", || {
        blocks(hearth.data_dir(), "short") == 1
    });
    assert_eq!(total(&hearth, "short"), one);
    assert_eq!(
        total(&hearth, "long"),
        one,
        "the other tenant keeps its data"
    );
    assert_eq!(blocks(hearth.data_dir(), "long"), 1);

    // The ingest limit too: four label names are now one too many for `short` only.
    let four = [
        ("__name__", "process_cpu"),
        ("service_name", "svc"),
        ("env", "prod"),
        ("pod", "a"),
    ];
    assert_eq!(push(&hearth, "short", &four, now), 400);
    assert_eq!(push(&hearth, "long", &four, now), 200);
    // And the series limit: `short`'s head is empty since the flush, and a push brings two
    // series (two sample types), one more than it may hold.
    let pprof = at_time(&fixture("pprof/large.cpu"), now);
    let refused = hearth.push(Some("short"), &labels, &pprof);
    assert_eq!(refused.status(), 429);
    let message = refused.text().unwrap();
    assert!(message.contains("max_series_per_tenant"), "{message}");

    // A query-length limit for `long`: its day-long query is refused, naming the limit.
    std::fs::write(
        &overrides,
        "overrides:\n  long:\n    max_query_length: 1h\n",
    )
    .unwrap();
    wait_for("the query-length limit", || {
        select(&hearth, "long").0 == 400
    });
    let (_, body) = select(&hearth, "long");
    assert!(body.to_string().contains("exceeds the limit"), "{body}");
    // `short`'s retention went with its override: the block partly inside is read whole
    // again; the deleted one stays deleted.
    assert_eq!(total(&hearth, "short"), 2 * one);
    assert!(
        hearth
            .get("/metrics")
            .text()
            .unwrap()
            .contains("hearth_compactor_deleted_blocks"),
        "compactor metrics are exported"
    );
}
