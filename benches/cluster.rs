//! The cluster, measured: the e2e workload pushed into a single `all` process, and through a
//! distributor into 1 ingester (replication factor 1) and into 3 ingesters (replication factor
//! 3), each with a querier; then the same queries on the single process and on the querier
//! (ingester heads over Flight, partial aggregates pushed down). Reports ingest throughput, the
//! CPU it costs across every process, and the querier's latency as a multiple of the single
//! process's (its fan-out overhead). See `benches/README.md`.

#[path = "e2e/client.rs"]
mod client;
#[path = "support/mod.rs"]
mod support;
#[path = "e2e/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_proto::querier::v1::{SelectMergeStacktracesRequest, SelectSeriesRequest};
use serde_json::{Value, json};

use client::{Args, connect_call, percentile, push_all};
use support::{cpu_seconds, start, start_with, stop};
use workload::Service;

/// The processes of one layout: where to push, where to query, and every pid to charge.
struct Layout {
    name: String,
    push_addr: String,
    query_addr: String,
    children: Vec<Child>,
}

fn udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn single(dir: &Path) -> Layout {
    let (child, addr) = start(&dir.join("all"));
    Layout {
        name: "all (one process)".into(),
        push_addr: addr.clone(),
        query_addr: addr,
        children: vec![child],
    }
}

/// `ingesters` ingesters (replication factor `min(3, ingesters)`), a distributor and a querier
/// sharing one block folder, once every ingester is active in both their rings.
fn cluster(dir: &Path, ingesters: usize) -> Layout {
    let rf = ingesters.min(3);
    let seed = udp_port();
    let node = |id: &str, target: &str, gossip: u16| -> (Child, String) {
        let (rf, blocks) = (rf.to_string(), dir.join("blocks"));
        let (gossip, seed) = (format!("127.0.0.1:{gossip}"), format!("127.0.0.1:{seed}"));
        let args = [
            "--target",
            target,
            "--node-id",
            id,
            "--replication-factor",
            &rf,
            "--blocks-dir",
            &blocks.to_string_lossy(),
            "--flight-addr",
            "127.0.0.1:0",
            "--gossip-addr",
            &gossip,
            "--gossip-seeds",
            &seed,
        ];
        start_with(&dir.join(id), &args)
    };
    let mut children = Vec::new();
    for i in 0..ingesters {
        let gossip = if i == 0 { seed } else { udp_port() };
        children.push(node(&format!("ingester-{i}"), "ingester", gossip).0);
    }
    let (distributor, push_addr) = node("distributor", "distributor", udp_port());
    let (querier, query_addr) = node("querier", "querier", udp_port());
    children.extend([distributor, querier]);
    for addr in [&push_addr, &query_addr] {
        wait_active(addr, ingesters);
    }
    Layout {
        name: format!("{ingesters} ingester(s), RF {rf}"),
        push_addr,
        query_addr,
        children,
    }
}

fn wait_active(addr: &str, ingesters: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let active = reqwest::blocking::get(format!("http://{addr}/ring"))
            .and_then(|r| r.text())
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .map(|ring| {
                ring["nodes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|n| n["roles"][0] == "ingester" && n["state"] == "active")
                    .count()
            })
            .unwrap_or(0);
        if active == ingesters {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{addr}: {active} of {ingesters} ingesters active"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Workload {
    services: Arc<Vec<Service>>,
    pods: usize,
    rounds: usize,
    start_nanos: i64,
    clients: usize,
    queries: usize,
}

/// Pushes the workload into `layout`, then times the queries; stops the layout.
fn measure(layout: Layout, work: &Workload) -> Value {
    let pids: Vec<u32> = layout.children.iter().map(Child::id).collect();
    let cpu = || pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    let cpu_before = cpu();
    let started = Instant::now();
    let (latencies, bytes) = push_all(
        &layout.push_addr,
        &work.services,
        work.pods,
        0..work.rounds,
        work.start_nanos,
        work.clients,
        None,
    );
    let elapsed = started.elapsed().as_secs_f64();
    let ingest_cpu = cpu() - cpu_before;
    let mb = bytes as f64 / 1e6;

    let range = (
        work.start_nanos / 1_000_000,
        work.start_nanos / 1_000_000 + work.rounds as i64 * 10_000,
    );
    let cpu_type = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    let one = work
        .services
        .iter()
        .find(|s| s.profiles.iter().any(|(n, _)| *n == "process_cpu"))
        .expect("a cpu service");
    let flame = |selector: String| SelectMergeStacktracesRequest {
        profile_type_id: cpu_type.into(),
        label_selector: selector,
        start: range.0,
        end: range.1,
        max_nodes: Some(8192),
        ..Default::default()
    };
    let series = SelectSeriesRequest {
        profile_type_id: cpu_type.into(),
        label_selector: "{}".into(),
        start: range.0,
        end: range.1,
        step: 15.0,
        group_by: vec!["service_name".into()],
        ..Default::default()
    };
    let client = reqwest::blocking::Client::new();
    let addr = &layout.query_addr;
    let one_selector = format!("{{service_name=\"{}\"}}", one.name);
    type Call<'a> = Box<dyn Fn() + 'a>;
    let cases: Vec<(&str, Call<'_>)> = vec![
        (
            "flame graph, one service",
            Box::new(|| {
                connect_call(
                    &client,
                    addr,
                    "SelectMergeStacktraces",
                    &flame(one_selector.clone()),
                );
            }),
        ),
        (
            "flame graph, all services",
            Box::new(|| {
                connect_call(&client, addr, "SelectMergeStacktraces", &flame("{}".into()));
            }),
        ),
        (
            "SelectSeries by service, 15 s step",
            Box::new(|| {
                connect_call(&client, addr, "SelectSeries", &series);
            }),
        ),
    ];
    let mut queries = serde_json::Map::new();
    for (name, call) in &cases {
        call();
        let mut times: Vec<f64> = (0..work.queries)
            .map(|_| {
                let t = Instant::now();
                call();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(|a, b| a.total_cmp(b));
        queries.insert(
            name.to_string(),
            json!({"p50_ms": percentile(&times, 0.5), "p99_ms": percentile(&times, 0.99)}),
        );
    }
    for child in layout.children.into_iter().rev() {
        stop(child);
    }
    let figures = json!({
        "layout": layout.name,
        "pushes": latencies.len(),
        "pushes_per_s": latencies.len() as f64 / elapsed,
        "mb_per_s": mb / elapsed,
        "cpu_s_per_mb_all_processes": ingest_cpu / mb,
        "push_p50_ms": percentile(&latencies, 0.5),
        "push_p99_ms": percentile(&latencies, 0.99),
        "queries": queries,
    });
    println!("{figures:#}");
    figures
}

fn main() {
    let args = Args::parse(10, "target/bench-cluster");
    assert!(args.markdown_to.is_none(), "--markdown-to is e2e's only");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let kinds = workload::kinds(root);
    let service_count = ((100.0 * args.scale).round() as usize).max(1);
    let now_nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let span = args.minutes as i64 * 60 * 1_000_000_000;
    let work = Workload {
        services: Arc::new(workload::services(&kinds, service_count)),
        pods: 10,
        rounds: args.minutes * 6,
        start_nanos: (now_nanos - span) / 10_000_000_000 * 10_000_000_000,
        clients: args.clients,
        queries: args.queries,
    };
    println!(
        "cluster: {service_count} services x {} pods x {} rounds, {} clients, {} queries each",
        work.pods, work.rounds, work.clients, work.queries
    );
    type Start = fn(&Path) -> Layout;
    let layouts: [(&str, Start); 3] = [
        ("all", single),
        ("one", |dir| cluster(dir, 1)),
        ("three", |dir| cluster(dir, 3)),
    ];
    let results: Vec<Value> = layouts
        .iter()
        .map(|(dir, layout)| {
            // Each layout starts from empty data folders (only its own, never `--out` itself).
            let dir = args.out.join(dir);
            let _ = std::fs::remove_dir_all(&dir);
            measure(layout(&dir), &work)
        })
        .collect();

    // The querier's latency as a multiple of the single process's, per query.
    let reference = &results[0]["queries"];
    let overhead: Value = results[1..]
        .iter()
        .map(|r| {
            let ratios: serde_json::Map<String, Value> = r["queries"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(name, q)| {
                    let base = reference[name]["p50_ms"].as_f64().unwrap();
                    (name.clone(), json!(q["p50_ms"].as_f64().unwrap() / base))
                })
                .collect();
            (
                r["layout"].as_str().unwrap().to_string(),
                Value::Object(ratios),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into();
    println!("querier p50 / single-process p50: {overhead:#}");
    let report = json!({"layouts": results, "querier_overhead": overhead});
    std::fs::create_dir_all(&args.out).unwrap();
    let path = args.out.join("cluster.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
    println!("wrote {}", path.display());
}
