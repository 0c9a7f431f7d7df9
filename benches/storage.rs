//! Storage, measured: the compactor and reads from object storage. See `benches/README.md`.
//!
//! 1. Compaction: the e2e workload (timestamps in a closed past window) pushed through a
//!    distributor into 3 ingesters (replication factor 3) and into one `all` process
//!    (replication 1); heads flushed; then a `--target compactor` over each bucket, once per
//!    `compactor.max_memory_bytes` setting: MB of blocks merged per CPU second of the
//!    compactor, its peak RSS, and bytes per sample of the bucket before and after.
//! 2. Reads from S3 (moto's server on loopback, from the repository's `.venv`) with a cache
//!    folder, against the same blocks on local disk: flame-graph p50 with cold caches (a fresh
//!    process each time) and warm ones, and bucket GETs per query from `/metrics`.

#[path = "e2e/client.rs"]
mod client;
#[path = "support/mod.rs"]
mod support;
#[path = "e2e/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_proto::querier::v1::SelectMergeStacktracesRequest;
use serde_json::{Value, json};

use client::{Args, connect_call, percentile, push_all};
use support::{counter, cpu_seconds, start_with, status_field, stop};

fn free_udp() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_tcp() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn flush(addr: &str) {
    let response = reqwest::blocking::Client::new()
        .post(format!("http://{addr}/ingester/flush"))
        .send()
        .unwrap();
    assert!(response.status().is_success(), "flush of {addr}");
}

/// Bytes and sample rows of the live blocks of tenant `anonymous` in a filesystem bucket.
fn bucket_figures(blocks: &Path) -> (u64, u64) {
    let dir = blocks.join("anonymous");
    let index_marks: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|b| b.path().join("deletion-mark.json").exists())
        .map(|b| b.file_name().to_string_lossy().to_string())
        .collect();
    let mut metas: Vec<Value> = Vec::new();
    for block in std::fs::read_dir(&dir).unwrap().flatten() {
        let meta = block.path().join("meta.json");
        if meta.exists() && !index_marks.contains(&block.file_name().to_string_lossy().to_string())
        {
            metas.push(serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap());
        }
    }
    let replaced: Vec<String> = metas
        .iter()
        .flat_map(|m| {
            m["compaction"]["sources"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    metas.retain(|m| !replaced.contains(&m["ulid"].as_str().unwrap().to_string()));
    let bytes = metas
        .iter()
        .flat_map(|m| m["files"].as_array().unwrap().clone())
        .map(|f| f["size_bytes"].as_u64().unwrap())
        .sum();
    let samples = metas
        .iter()
        .map(|m| m["stats"]["samples"].as_u64().unwrap())
        .sum();
    (bytes, samples)
}

/// A `--target compactor` process over `blocks` with `max_memory` as its limit.
fn start_compactor(blocks: &Path, data: &Path, max_memory: u64) -> (Child, String) {
    let config = data.join("compactor.yaml");
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(
        &config,
        format!(
            "compactor:\n  compaction_interval: 500ms\n  wait_period: 0s\n  deletion_delay: 1h\n  max_memory_bytes: {max_memory}\n"
        ),
    )
    .unwrap();
    let gossip = format!("127.0.0.1:{}", free_udp());
    start_with(
        data,
        &[
            "--target",
            "compactor",
            "--config",
            &config.to_string_lossy(),
            "--blocks-dir",
            &blocks.to_string_lossy(),
            "--gossip-addr",
            &gossip,
            "--gossip-seeds",
            &gossip,
        ],
    )
}

/// Peak resident MiB of a process.
fn peak_rss_mib(pid: u32) -> f64 {
    let kib = status_field(pid, "VmHWM:");
    kib.trim_end_matches("kB").trim().parse::<f64>().unwrap() / 1024.0
}

/// The compactor over `blocks` until it merged everything: MB/s per CPU second, and its peak
/// RSS above that of a compactor with nothing to merge (what `max_memory_bytes` bounds).
fn compact(blocks: &Path, data: &Path, max_memory: u64) -> Value {
    let empty = data.join("idle-blocks");
    std::fs::create_dir_all(&empty).unwrap();
    let (idle, addr) = start_compactor(&empty, &data.join("idle"), max_memory);
    while counter(&addr, "hearth_compactor_cycles") < 2.0 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let idle_rss = peak_rss_mib(idle.id());
    stop(idle);
    let (child, addr) = start_compactor(blocks, data, max_memory);
    let started = Instant::now();
    // Done when two cycles ran without merging anything new.
    let (mut merges, mut cycles) = (-1.0, 0.0);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let (m, c) = (
            counter(&addr, "hearth_compactor_merges"),
            counter(&addr, "hearth_compactor_cycles"),
        );
        if m == merges && c >= cycles + 2.0 {
            break;
        }
        if m != merges {
            (merges, cycles) = (m, c);
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "compaction did not settle"
        );
    }
    let cpu = cpu_seconds(child.id());
    let rss = peak_rss_mib(child.id());
    let read = counter(&addr, "hearth_compactor_read_bytes");
    let written = counter(&addr, "hearth_compactor_written_bytes");
    stop(child);
    json!({
        "max_memory_bytes": max_memory,
        "merges": merges,
        "read_mb": read / 1e6,
        "written_mb": written / 1e6,
        "cpu_s": cpu,
        "mb_per_cpu_s": read / 1e6 / cpu,
        "peak_rss_mib": rss,
        "idle_rss_mib": idle_rss,
        "merge_rss_mib": rss - idle_rss,
        "limit_mib": (max_memory >> 20),
    })
}

/// The flame graph of every service over the workload's range, timed.
fn flame_ms(addr: &str, start_ms: i64, end_ms: i64) -> f64 {
    let client = reqwest::blocking::Client::new();
    let request = SelectMergeStacktracesRequest {
        profile_type_id: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
        label_selector: "{}".into(),
        start: start_ms,
        end: end_ms,
        max_nodes: Some(8192),
        ..Default::default()
    };
    let t = Instant::now();
    connect_call(&client, addr, "SelectMergeStacktraces", &request);
    t.elapsed().as_secs_f64() * 1000.0
}

/// moto's S3 server from the `.venv` on a free port with bucket `bench`.
fn s3_server(root: &Path) -> (Child, String) {
    let status = Command::new("bash")
        .arg(root.join("scripts/python-env.sh"))
        .status()
        .unwrap();
    assert!(status.success(), "scripts/python-env.sh");
    let endpoint = format!("127.0.0.1:{}", free_tcp());
    let port = endpoint.rsplit(':').next().unwrap().to_string();
    let child = Command::new(root.join(".venv/bin/moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::blocking::Client::new();
    while client.get(format!("http://{endpoint}/")).send().is_err() {
        std::thread::sleep(Duration::from_millis(100));
    }
    client
        .put(format!("http://{endpoint}/bench"))
        .send()
        .unwrap();
    (child, endpoint)
}

fn main() {
    let args = Args::parse(10, "target/bench-storage");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let kinds = workload::kinds(root);
    let service_count = ((100.0 * args.scale).round() as usize).max(1);
    let rounds = args.minutes * 6;
    // A past window, closed for every level: two days ago at 01:00 UTC.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let start_nanos = ((now / 86_400 - 2) * 86_400 + 3_600) * 1_000_000_000;
    let (start_ms, end_ms) = (
        start_nanos / 1_000_000,
        start_nanos / 1_000_000 + rounds as i64 * 10_000,
    );
    let services = Arc::new(workload::services(&kinds, service_count));
    let out = args.out.clone();
    let _ = std::fs::remove_dir_all(&out);
    println!(
        "storage: {service_count} services x 10 pods x {rounds} rounds, {} clients",
        args.clients
    );

    // 1. Replication 3 and replication 1, flushed, then compacted.
    let rf3_blocks = out.join("rf3/blocks");
    let seed = free_udp();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let gossip = if i == 0 { seed } else { free_udp() };
        let (id, gossip, seeds) = (
            format!("ingester-{i}"),
            format!("127.0.0.1:{gossip}"),
            format!("127.0.0.1:{seed}"),
        );
        nodes.push(start_with(
            &out.join("rf3").join(&id),
            &[
                "--target",
                "ingester",
                "--node-id",
                &id,
                "--blocks-dir",
                &rf3_blocks.to_string_lossy(),
                "--flight-addr",
                "127.0.0.1:0",
                "--gossip-addr",
                &gossip,
                "--gossip-seeds",
                &seeds,
            ],
        ));
    }
    let (gossip, seeds) = (
        format!("127.0.0.1:{}", free_udp()),
        format!("127.0.0.1:{seed}"),
    );
    let (distributor, push_addr) = start_with(
        &out.join("rf3/distributor"),
        &[
            "--target",
            "distributor",
            "--node-id",
            "distributor",
            "--blocks-dir",
            &rf3_blocks.to_string_lossy(),
            "--gossip-addr",
            &gossip,
            "--gossip-seeds",
            &seeds,
        ],
    );
    // Distributors refuse pushes until three ingesters are active.
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::blocking::get(format!("http://{push_addr}/ring"))
        .and_then(|r| r.text())
        .map(|t| t.matches("\"state\":\"active\"").count() < 4)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "ingesters did not become active");
        std::thread::sleep(Duration::from_millis(200));
    }
    push_all(
        &push_addr,
        &services,
        10,
        0..rounds,
        start_nanos,
        args.clients,
        None,
    );
    for (_, addr) in &nodes {
        flush(addr);
    }
    stop(distributor);
    for (child, _) in nodes {
        stop(child);
    }
    // The single process's own compactor waits: the bench's compactor measures the merge.
    let single_blocks = out.join("rf1/data/blocks");
    let quiet = out.join("rf1/quiet.yaml");
    std::fs::create_dir_all(out.join("rf1")).unwrap();
    std::fs::write(&quiet, "compactor:\n  compaction_interval: 1000h\n").unwrap();
    let (single, single_addr) = start_with(
        &out.join("rf1/data"),
        &[
            "--flight-addr",
            "127.0.0.1:0",
            "--config",
            &quiet.to_string_lossy(),
        ],
    );
    push_all(
        &single_addr,
        &services,
        10,
        0..rounds,
        start_nanos,
        args.clients,
        None,
    );
    stop(single);

    let before = (bucket_figures(&rf3_blocks), bucket_figures(&single_blocks));
    let mut runs = Vec::new();
    for max_memory in [96u64 << 20, 128 << 20, 512 << 20] {
        // Each setting compacts a fresh copy of the flushed blocks.
        let copy = out.join(format!("rf3-{}m", max_memory >> 20));
        let _ = std::fs::remove_dir_all(&copy);
        copy_dir(&rf3_blocks, &copy.join("blocks"));
        runs.push(compact(
            &copy.join("blocks"),
            &copy.join("compactor"),
            max_memory,
        ));
        println!("{:#}", runs.last().unwrap());
    }
    let rf3_after = bucket_figures(&out.join("rf3-512m/blocks"));
    compact(&single_blocks, &out.join("rf1/compactor"), 512 << 20);
    let rf1_after = bucket_figures(&single_blocks);
    let per_sample = |(bytes, samples): (u64, u64)| bytes as f64 / samples.max(1) as f64;
    let storage = json!({
        "rf3_flushed_bytes_per_sample": per_sample(before.0),
        "rf3_flushed_bytes": before.0.0,
        "rf3_compacted_bytes_per_sample": per_sample(rf3_after),
        "rf3_compacted_bytes": rf3_after.0,
        "rf1_flushed_bytes": before.1.0,
        "rf1_compacted_bytes_per_sample": per_sample(rf1_after),
        "rf1_compacted_bytes": rf1_after.0,
        "rf3_compacted_over_rf1": rf3_after.0 as f64 / rf1_after.0 as f64,
    });
    println!("{storage:#}");

    // 2. Reads: the compacted single-process blocks from local disk and from S3.
    let (mut s3, endpoint) = s3_server(root);
    upload_dir(&endpoint, &single_blocks);
    let s3_flags = |cache: &Path| -> Vec<String> {
        [
            "--storage.backend",
            "s3",
            "--storage.s3.bucket-name",
            "bench",
            "--storage.s3.endpoint",
            &endpoint,
            "--storage.s3.region",
            "us-east-1",
            "--storage.s3.access-key-id",
            "bench",
            "--storage.s3.secret-access-key",
            "bench",
            "--storage.s3.insecure",
            "true",
            "--storage.s3.force-path-style",
            "true",
            "--storage.cache-dir",
            &cache.to_string_lossy(),
            "--flight-addr",
            "127.0.0.1:0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut reads = serde_json::Map::new();
    for (name, s3_backed) in [("local disk", false), ("s3", true)] {
        let data = out.join(format!("read-{}", s3_backed as u8));
        let (mut cold, mut warm, mut cold_gets, mut warm_gets) = (vec![], vec![], vec![], vec![]);
        for _ in 0..args.queries.clamp(1, 5) {
            let flags: Vec<String> = match s3_backed {
                true => s3_flags(&data.join("cache")),
                false => vec![
                    "--blocks-dir".into(),
                    single_blocks.to_string_lossy().to_string(),
                    "--flight-addr".into(),
                    "127.0.0.1:0".into(),
                ],
            };
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            let (child, addr) = start_with(&data, &flags);
            let gets = || counter(&addr, "hearth_object_store_gets");
            let g0 = gets();
            cold.push(flame_ms(&addr, start_ms, end_ms));
            let g1 = gets();
            for _ in 0..3 {
                warm.push(flame_ms(&addr, start_ms, end_ms));
            }
            cold_gets.push(g1 - g0);
            warm_gets.push((gets() - g1) / 3.0);
            stop(child);
        }
        for v in [&mut cold, &mut warm] {
            v.sort_by(|a, b| a.total_cmp(b));
        }
        reads.insert(
            name.into(),
            json!({
                "cold_p50_ms": percentile(&cold, 0.5),
                "warm_p50_ms": percentile(&warm, 0.5),
                "gets_per_cold_query": cold_gets.iter().sum::<f64>() / cold_gets.len() as f64,
                "gets_per_warm_query": warm_gets.iter().sum::<f64>() / warm_gets.len() as f64,
            }),
        );
    }
    let _ = s3.kill();
    let reads = Value::Object(reads);
    println!("{reads:#}");
    let report = json!({
        "workload": {"services": service_count, "pods": 10, "rounds": rounds},
        "compaction": runs,
        "storage": storage,
        "reads": reads,
    });
    let path = out.join("storage.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
    println!("wrote {}", path.display());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Puts every file under `dir` into bucket `bench` at the same relative key.
fn upload_dir(endpoint: &str, dir: &Path) {
    let client = reqwest::blocking::Client::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in std::fs::read_dir(&current).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
                continue;
            }
            let key = entry
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .to_string();
            let response = client
                .put(format!("http://{endpoint}/bench/{key}"))
                .body(std::fs::read(entry.path()).unwrap())
                .send()
                .unwrap();
            assert!(response.status().is_success(), "upload {key}");
        }
    }
}
