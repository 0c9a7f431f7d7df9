//! Compaction against a real S3 server: a replication-3 cluster (distributor, three ingesters,
//! querier, compactor; no shared folder) and a single process are given the same profiles.
//! Flushed, the cluster's bucket holds every profile three times; compacted, once, while every
//! answer stays the single process's. The compactor is `kill -9`ed at random moments in five
//! trials: nothing is lost or doubled.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::cluster::{Cluster, active_ingesters, assert_same, push, pushes, wait_ring};
use super::support::{Hearth, S3Server, at_time};

/// Compaction settings that act at once: windows of one past hour are closed.
const COMPACTOR: &str =
    "compactor:\n  compaction_interval: 300ms\n  wait_period: 0s\n  deletion_delay: 1s\n";

/// The start of the hour 25 hours ago: every profile goes there, in one closed window.
fn base_nanos() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (now / 3600 - 25) * 3600 * 1_000_000_000
}

/// Pushes round `round` to both deployments, at its own second of the window.
fn push_round(reference: &Hearth, distributor: &Hearth, round: usize) {
    let time = base_nanos() + round as i64 * 10_000_000_000;
    for (labels, pprof) in pushes(round) {
        let pprof = at_time(&pprof, time);
        for node in [reference, distributor] {
            let (status, body) = push(node, &labels, &pprof);
            assert_eq!(status, 200, "{body}");
        }
    }
}

fn flush(node: &Hearth) {
    let response = node
        .client
        .post(node.url("/ingester/flush"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().unwrap());
}

/// The tenant's complete blocks in `bucket` and the bytes of their files.
fn bucket_blocks(s3: &S3Server, bucket: &str) -> (usize, u64) {
    let objects = s3.objects(bucket);
    let folder = |key: &str| key.rsplit_once('/').map(|(dir, _)| dir.to_string());
    let complete: std::collections::HashSet<String> = objects
        .iter()
        .filter(|(key, _)| key.starts_with("anonymous/") && key.ends_with("/meta.json"))
        .filter_map(|(key, _)| folder(key))
        .collect();
    let bytes = objects
        .iter()
        .filter(|(key, _)| key.ends_with(".parquet"))
        .filter(|(key, _)| {
            complete
                .iter()
                .any(|dir| key.starts_with(&format!("{dir}/")))
        })
        .map(|(_, size)| size)
        .sum();
    (complete.len(), bytes)
}

/// Waits until `bucket` holds exactly one block (everything merged, sources deleted).
fn wait_compacted(s3: &S3Server, bucket: &str) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (blocks, bytes) = bucket_blocks(s3, bucket);
        if blocks == 1 {
            return bytes;
        }
        assert!(
            Instant::now() < deadline,
            "{bucket} still holds {blocks} blocks: {:?}",
            s3.objects(bucket)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn compaction_stores_replicas_once_and_survives_kill9() {
    let s3 = S3Server::start();
    s3.create_bucket("single");
    s3.create_bucket("cluster");
    let reference = Hearth::start_node(COMPACTOR, s3.flags("single"), Some("flight sql listening"));
    let cluster = Cluster::new(&s3, "cluster", COMPACTOR);
    let ingesters: Vec<Hearth> = (0..3)
        .map(|i| cluster.start("ingester", &format!("ingester-{i}")))
        .collect();
    let distributor = cluster.start("distributor", "distributor");
    let querier = cluster.start("querier", "querier");
    for node in [&distributor, &querier] {
        wait_ring(node, "three active ingesters", |n| {
            active_ingesters(n).len() == 3
        });
    }

    for round in 0..6 {
        push_round(&reference, &distributor, round);
    }
    for node in ingesters.iter().chain([&reference]) {
        flush(node);
    }
    let (flushed_blocks, flushed_bytes) = bucket_blocks(&s3, "cluster");
    assert_eq!(flushed_blocks, 3, "one block per ingester");
    assert_same(&reference, &querier, "flushed, before compaction");

    // Five trials: more data, then a compactor killed at a random moment of its work.
    let mut compactor = cluster.start("compactor", "compactor");
    compactor.kill9();
    for trial in 0..5 {
        push_round(&reference, &distributor, 6 + trial);
        for node in ingesters.iter().chain([&reference]) {
            flush(node);
        }
        compactor.restart();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        std::thread::sleep(Duration::from_millis(100 + u64::from(nanos % 1500)));
        compactor.kill9();
        assert_same(
            &reference,
            &querier,
            &format!("compactor killed in trial {trial}"),
        );
    }

    // Left to finish: one block, each profile once.
    compactor.restart();
    let single_bytes = wait_compacted(&s3, "single");
    let cluster_bytes = wait_compacted(&s3, "cluster");
    assert_same(&reference, &querier, "compacted");
    let ratio = cluster_bytes as f64 / single_bytes as f64;
    eprintln!(
        "bucket bytes: flushed at replication 3 {flushed_bytes}, compacted {cluster_bytes}, one process {single_bytes} ({ratio:.3}x)"
    );
    assert!(
        ratio <= 1.15,
        "compacted cluster bucket {cluster_bytes} B against {single_bytes} B for one process ({ratio:.2}x); flushed it held {flushed_bytes} B"
    );
    let metrics = compactor.get("/metrics").text().unwrap();
    assert!(metrics.contains("hearth_compactor_merges"), "{metrics}");
}
