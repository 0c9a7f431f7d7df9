//! Flame-graph query speed over blocks: pushes google/pprof's `large.cpu` many times (distinct
//! times, one service), restarts `hearth` so everything is read from Parquet blocks, then runs
//! `SelectMergeStacktraces` over all of it and reports latency, samples/s, samples/s per server
//! core and the server's peak memory.
//!
//! `cargo bench --bench query_flamegraph` (env: HEARTH_BENCH_PROFILES, default 500, i.e. about
//! 10 M samples of the cpu type; HEARTH_BENCH_QUERIES, default 5).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use hearth_proto::pprof::Profile;
use hearth_proto::querier::v1::{SelectMergeStacktracesRequest, SelectMergeStacktracesResponse};
use prost::Message;

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn proc_field(pid: u32, file: &str, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
    text.lines()
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len()..].trim().to_string())
        .unwrap_or_default()
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

fn start(data: &Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn,hearth::server=info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("hearth starts").unwrap();
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn stop(mut child: Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}

fn main() {
    let profiles = env_or("HEARTH_BENCH_PROFILES", 500);
    let queries = env_or("HEARTH_BENCH_QUERIES", 5);
    let raw =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pprof/large.cpu"))
            .unwrap();
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(raw.as_slice())
        .read_to_end(&mut decoded)
        .unwrap();
    let base = Profile::decode(decoded.as_slice()).unwrap();
    let t0 = 1_790_000_000_000_000_000i64;

    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = start(dir.path());
    let client = reqwest::blocking::Client::new();
    let ingest_started = Instant::now();
    for i in 0..profiles {
        let mut p = base.clone();
        p.time_nanos = t0 + i as i64 * 10_000_000_000;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&p.encode_to_vec()).unwrap();
        let response = client
            .post(format!("http://{addr}/ingest?name=bench.app&format=pprof"))
            .body(gz.finish().unwrap())
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
    let ingest_seconds = ingest_started.elapsed().as_secs_f64();
    stop(child);
    let samples: u64 = std::fs::read_dir(dir.path().join("blocks/anonymous"))
        .unwrap()
        .flatten()
        .map(|b| {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(b.path().join("meta.json")).unwrap())
                    .unwrap();
            meta["stats"]["samples"].as_u64().unwrap()
        })
        .sum();
    // Both sample types are stored; the query reads the cpu one: half the rows.
    let read = samples / 2;

    let (child, addr) = start(dir.path());
    let request = SelectMergeStacktracesRequest {
        profile_type_id: "process_cpu:cpu:nanoseconds:cpu:nanoseconds".into(),
        label_selector: "{}".into(),
        start: 1,
        end: 4_102_444_800_000,
        max_nodes: Some(8192),
        ..Default::default()
    };
    let mut times = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..queries {
        let cpu_before = cpu_seconds(child.id());
        let started = Instant::now();
        let response = client
            .post(format!(
                "http://{addr}/querier.v1.QuerierService/SelectMergeStacktraces"
            ))
            .header("content-type", "application/proto")
            .body(request.encode_to_vec())
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let graph = SelectMergeStacktracesResponse::decode(response.bytes().unwrap())
            .unwrap()
            .flamegraph
            .unwrap();
        assert!(graph.total > 0);
        times.push(started.elapsed().as_secs_f64());
        cpu.push(cpu_seconds(child.id()) - cpu_before);
    }
    let peak = proc_field(child.id(), "status", "VmHWM:");
    stop(child);

    println!(
        "query_flamegraph: {profiles} pushes of large.cpu in {ingest_seconds:.1} s; {read} cpu samples in blocks"
    );
    for (i, (t, c)) in times.iter().zip(&cpu).enumerate() {
        println!(
            "  query {}: {:.3} s, {:.1} M samples/s, server CPU {:.2} s = {:.1} M samples/s per core",
            i + 1,
            t,
            read as f64 / t / 1e6,
            c,
            read as f64 / c.max(1e-9) / 1e6
        );
    }
    println!("  server peak RSS (restart + queries): {peak}");
}
