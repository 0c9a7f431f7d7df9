//! The end-to-end benchmark: a real `hearth` on loopback, a realistic workload pushed over HTTP,
//! the floor and a peer measured in the same run, and a JSON + markdown report.
//! See `benches/README.md`.

#[path = "../support/mod.rs"]
mod support;

mod blocks;
mod client;
mod report;
mod workload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_proto::querier::v1::{
    ProfileTypesRequest, SelectMergeStacktracesRequest, SelectSeriesRequest,
};
use hearth_proto::types::v1::LabelValuesRequest;
use serde_json::{Value, json};

use client::{Args, connect_call, percentile, push_all};
use report::Target;
use support::{cpu_seconds, start, status_field, stop};
use workload::{Push, Service};

fn rss_mb(pid: u32) -> f64 {
    status_field(pid, "VmHWM:")
        .trim_end_matches(" kB")
        .trim()
        .parse::<f64>()
        .unwrap_or(0.0)
        / 1024.0
}

fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = std::process::Command::new("bash")
        .arg(root.join("scripts/python-env.sh"))
        .status()
        .unwrap();
    assert!(status.success(), "scripts/python-env.sh failed");
    root.join(".venv/bin/python")
}

/// DuckDB's median milliseconds for the same aggregation on the same files.
fn duckdb(
    blocks: &Path,
    profile_type: &str,
    service: Option<&str>,
    range: (i64, i64),
    runs: usize,
) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/e2e/duckdb_peer.py");
    let mut command = std::process::Command::new(python());
    command
        .arg(script)
        .args([
            "--blocks",
            &blocks.to_string_lossy(),
            "--profile-type",
            profile_type,
        ])
        .args([
            "--start",
            &range.0.to_string(),
            "--end",
            &range.1.to_string(),
            "--runs",
            &runs.to_string(),
        ]);
    if let Some(service) = service {
        command.args(["--service", service]);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "duckdb peer failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn main() {
    let args = Args::parse(60, "target/bench-report");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let kinds = workload::kinds(root);
    let service_count = ((100.0 * args.scale).round() as usize).max(1);
    let pods = 10;
    let rounds = args.minutes * 6;
    let services = Arc::new(workload::services(&kinds, service_count));
    let now_nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let hour = args.minutes as i64 * 60 * 1_000_000_000;
    let start_nanos = (now_nanos - hour) / 10_000_000_000 * 10_000_000_000;
    std::fs::create_dir_all(&args.out).unwrap();
    let data = args.out.join("data");
    let _ = std::fs::remove_dir_all(&data);
    println!(
        "e2e: {service_count} services x {pods} pods x {rounds} rounds, {} clients",
        args.clients
    );

    // The floor, on a sample of the same bodies: gunzip + protobuf decode, one thread.
    let sample: Vec<Push> = (0..service_count * pods * rounds.min(3))
        .map(|i| {
            let per_round = service_count * pods;
            let rest = i % per_round;
            workload::push(
                &services[rest / pods],
                rest % pods,
                i / per_round,
                start_nanos,
            )
        })
        .collect();
    let floor_bytes: usize = sample.iter().map(|p| p.body.len()).sum();
    let floor_started = Instant::now();
    for push in &sample {
        std::hint::black_box(workload::decode_floor(push));
    }
    let floor_cpu_s_per_mb = floor_started.elapsed().as_secs_f64() / (floor_bytes as f64 / 1e6);

    // Ingest at full speed.
    let (child, addr) = start(&data);
    let pid = child.id();
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let (latencies, bytes) = push_all(
        &addr,
        &services,
        pods,
        0..rounds,
        start_nanos,
        args.clients,
        None,
    );
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    let ingest_rss = rss_mb(pid);
    let metrics = reqwest::blocking::get(format!("http://{addr}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    let samples_ingested = metric("hearth_ingest_samples_total");
    println!(
        "  after ingest: head {:.0} MB estimated, {:.0} samples, RSS now {} (peak {ingest_rss:.0} MB)",
        metric("hearth_head_bytes") / 1e6,
        metric("hearth_head_samples"),
        status_field(pid, "VmRSS:")
    );
    stop(child);
    let pushes = latencies.len();
    let mb = bytes as f64 / 1e6;
    let max_rate = pushes as f64 / elapsed;

    // Storage after the flush.
    let tenant_dir = data.join("blocks/anonymous");
    let counts = blocks::sample_counts(&tenant_dir);
    let stored: u64 = counts.values().sum();
    let block_bytes = blocks::dir_bytes(&tenant_dir, "");
    let samples_bytes = blocks::dir_bytes(&tenant_dir, "samples.parquet");

    // Queries over the hour, from blocks.
    let (child, addr) = start(&data);
    let pid = child.id();
    let client = reqwest::blocking::Client::new();
    let range_ms = (
        start_nanos / 1_000_000,
        start_nanos / 1_000_000 + hour / 1_000_000,
    );
    let range_ns = (start_nanos, start_nanos + hour + 1);
    let cpu_type = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    let one = services
        .iter()
        .filter(|s| s.profiles.iter().any(|(n, _)| *n == "process_cpu"))
        .max_by_key(|s| {
            counts
                .get(&(s.name.clone(), cpu_type.to_string()))
                .copied()
                .unwrap_or(0)
        })
        .expect("a cpu service");
    let samples_of = |service: Option<&str>| -> u64 {
        counts
            .iter()
            .filter(|((s, t), _)| t == cpu_type && service.is_none_or(|x| x == s))
            .map(|(_, n)| n)
            .sum()
    };
    let flame = |selector: String| SelectMergeStacktracesRequest {
        profile_type_id: cpu_type.into(),
        label_selector: selector,
        start: range_ms.0,
        end: range_ms.1,
        max_nodes: Some(8192),
        ..Default::default()
    };
    let one_selector = format!("{{service_name=\"{}\"}}", one.name);
    type Call<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, u64, Option<Option<&str>>, Call<'_>)> = vec![
        (
            "flame graph, one service",
            samples_of(Some(&one.name)),
            Some(Some(one.name.as_str())),
            Box::new(|| {
                connect_call(
                    &client,
                    &addr,
                    "SelectMergeStacktraces",
                    &flame(one_selector.clone()),
                );
            }),
        ),
        (
            "flame graph, all services",
            samples_of(None),
            Some(None),
            Box::new(|| {
                connect_call(
                    &client,
                    &addr,
                    "SelectMergeStacktraces",
                    &flame("{}".into()),
                );
            }),
        ),
        (
            "SelectSeries by service, 15 s step",
            0,
            None,
            Box::new(|| {
                let request = SelectSeriesRequest {
                    profile_type_id: cpu_type.into(),
                    label_selector: "{}".into(),
                    start: range_ms.0,
                    end: range_ms.1,
                    step: 15.0,
                    group_by: vec!["service_name".into()],
                    ..Default::default()
                };
                connect_call(&client, &addr, "SelectSeries", &request);
            }),
        ),
        (
            "LabelValues service_name",
            0,
            None,
            Box::new(|| {
                let request = LabelValuesRequest {
                    name: "service_name".into(),
                    start: range_ms.0,
                    end: range_ms.1,
                    ..Default::default()
                };
                connect_call(&client, &addr, "LabelValues", &request);
            }),
        ),
    ];
    connect_call(
        &client,
        &addr,
        "ProfileTypes",
        &ProfileTypesRequest::default(),
    );
    let mut queries = Vec::new();
    for (name, samples, peer, call) in &cases {
        call(); // warm the symbol cache, as a dashboard refresh would
        let mut times = Vec::new();
        let cpu_before = cpu_seconds(pid);
        for _ in 0..args.queries {
            let t = Instant::now();
            call();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let cpu = (cpu_seconds(pid) - cpu_before) / args.queries as f64;
        times.sort_by(|a, b| a.total_cmp(b));
        let mut entry = json!({
            "name": name,
            "samples": samples,
            "p50_ms": percentile(&times, 0.5),
            "p99_ms": percentile(&times, 0.99),
            "server_cpu_s": cpu,
            "samples_per_s_per_core": if cpu > 0.0 { *samples as f64 / cpu } else { 0.0 },
        });
        if let Some(service) = peer {
            let peer = duckdb(&tenant_dir, cpu_type, *service, range_ns, args.queries);
            let duck = peer["p50_ms"].as_f64().unwrap();
            entry["duckdb_p50_ms"] = json!(duck);
            entry["ratio_to_duckdb"] = json!(percentile(&times, 0.5) / duck);
        }
        println!("  {name}: p50 {:.1} ms", percentile(&times, 0.5));
        queries.push(entry);
    }
    let query_rss = rss_mb(pid);

    // Push latency at half the maximum load, for services of their own.
    let latency_services: Arc<Vec<Service>> = Arc::new(
        workload::services(&kinds, service_count)
            .into_iter()
            .map(|mut s| {
                s.name = format!("lat-{}", s.name);
                s
            })
            .collect(),
    );
    let half_rounds = ((max_rate * 0.5 * 20.0) as usize / (service_count * pods)).clamp(1, rounds);
    let interval = Duration::from_secs_f64(args.clients as f64 / (max_rate * 0.5));
    let (half, _) = push_all(
        &addr,
        &latency_services,
        pods,
        0..half_rounds,
        start_nanos,
        args.clients,
        Some(interval),
    );
    stop(child);

    let report = json!({
        "machine": {"cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)},
        "workload": {"scale": args.scale, "services": service_count, "pods": pods, "rounds": rounds,
                     "minutes": args.minutes, "pushes": pushes, "clients": args.clients},
        "ingest": {
            "mb_per_s": mb / elapsed,
            "mb_per_s_per_core": mb / cpu,
            "profiles_per_s": max_rate,
            "samples_per_s": samples_ingested / elapsed,
            "samples_per_s_per_core": samples_ingested / cpu,
            "cpu_s_per_mb": cpu / mb,
            "floor_cpu_s_per_mb": floor_cpu_s_per_mb,
            "cost_vs_floor": (cpu / mb) / floor_cpu_s_per_mb,
            "p50_ms": percentile(&latencies, 0.5),
            "p99_ms": percentile(&latencies, 0.99),
            "half_load_p50_ms": percentile(&half, 0.5),
            "half_load_p99_ms": percentile(&half, 0.99),
            "half_load_pushes": half.len(),
            "peak_rss_mb": ingest_rss,
            "gzipped_bytes": bytes,
            "server_cpu_s": cpu,
            "wall_s": elapsed,
        },
        "storage": {
            "samples": stored,
            "bytes": block_bytes,
            "bytes_per_sample": block_bytes as f64 / stored as f64,
            "samples_bytes_per_sample": samples_bytes as f64 / stored as f64,
            "ratio_to_gzipped_input": block_bytes as f64 / bytes as f64,
        },
        "queries": queries,
        "query_peak_rss_mb": query_rss,
    });
    let ingest = &report["ingest"];
    let q = |i: usize, k: &str| report["queries"][i][k].as_f64().unwrap_or(0.0);
    let targets = vec![
        Target {
            name: "ingest MB/s per core",
            goal: ">= 30".into(),
            measured: format!("{:.1}", ingest["mb_per_s_per_core"].as_f64().unwrap()),
            met: ingest["mb_per_s_per_core"].as_f64().unwrap() >= 30.0,
        },
        Target {
            name: "ingest cost vs floor",
            goal: "<= 2x".into(),
            measured: format!("{:.2}x", ingest["cost_vs_floor"].as_f64().unwrap()),
            met: ingest["cost_vs_floor"].as_f64().unwrap() <= 2.0,
        },
        Target {
            name: "ingested samples/s per core",
            goal: ">= 2 M".into(),
            measured: format!(
                "{:.2} M",
                ingest["samples_per_s_per_core"].as_f64().unwrap() / 1e6
            ),
            met: ingest["samples_per_s_per_core"].as_f64().unwrap() >= 2e6,
        },
        Target {
            name: "flame-graph merge samples/s per core (all services)",
            goal: ">= 50 M".into(),
            measured: format!("{:.1} M", q(1, "samples_per_s_per_core") / 1e6),
            met: q(1, "samples_per_s_per_core") >= 50e6,
        },
        Target {
            name: "flame graph vs DuckDB (all services, p50)",
            goal: "< 1x".into(),
            measured: format!("{:.2}x", q(1, "ratio_to_duckdb")),
            met: q(1, "ratio_to_duckdb") < 1.0,
        },
        Target {
            name: "bytes per sample on disk",
            goal: "<= 3".into(),
            measured: format!(
                "{:.2}",
                report["storage"]["bytes_per_sample"].as_f64().unwrap()
            ),
            met: report["storage"]["bytes_per_sample"].as_f64().unwrap() <= 3.0,
        },
        Target {
            name: "blocks / gzipped input",
            goal: "<= 0.5".into(),
            measured: format!(
                "{:.3}",
                report["storage"]["ratio_to_gzipped_input"]
                    .as_f64()
                    .unwrap()
            ),
            met: report["storage"]["ratio_to_gzipped_input"]
                .as_f64()
                .unwrap()
                <= 0.5,
        },
        Target {
            name: "push p99 at half load",
            goal: "< 50 ms".into(),
            measured: format!("{:.1} ms", ingest["half_load_p99_ms"].as_f64().unwrap()),
            met: ingest["half_load_p99_ms"].as_f64().unwrap() < 50.0,
        },
        Target {
            name: "ingest peak RSS within the head limit",
            goal: "<= 512 MiB".into(),
            measured: format!("{ingest_rss:.0} MiB"),
            met: ingest_rss <= 512.0,
        },
        Target {
            name: "query peak RSS within the query limit",
            goal: "<= 1 GiB".into(),
            measured: format!("{query_rss:.0} MiB"),
            met: query_rss <= 1024.0,
        },
    ];
    /// Where BENCHMARKS.md's hand-kept part (other benches' figures) starts.
    const KEPT_MARKER: &str =
        "<!-- Other benches: kept when --markdown-to rewrites the part above. -->";
    let markdown = report::markdown(&report, &targets);
    std::fs::write(
        args.out.join("report.json"),
        serde_json::to_string_pretty(&report::json_report(&report, &targets)).unwrap(),
    )
    .unwrap();
    std::fs::write(args.out.join("report.md"), &markdown).unwrap();
    if let Some(path) = &args.markdown_to {
        let command = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect::<Vec<_>>()
            .join(" ");
        let page = format!(
            "# Benchmarks\n\nThe latest quick run of the end-to-end harness (`benches/README.md`). Reproduce with:\n\n```sh\ncargo bench --bench e2e -- {command}\n```\n\nMachine: {} cores, the project's 2-core sandbox kind; `bench` profile (release without LTO, 64 codegen units).\n\n{markdown}",
            report["machine"]["cores"]
        );
        // Figures of the other benches (storage, cluster) below the marker are kept.
        let kept = std::fs::read_to_string(path)
            .ok()
            .and_then(|old| old.find(KEPT_MARKER).map(|at| old[at..].to_string()))
            .unwrap_or_default();
        std::fs::write(path, format!("{page}\n{kept}")).unwrap();
    }
    println!("\n{markdown}");
}
