//! Ingest throughput over HTTP: starts a real `hearth` on loopback, pushes google/pprof's
//! `large.cpu` (1.2 MB gzipped, 20,430 samples, 2 sample types) through `POST /ingest` from
//! several client threads, and reports profiles/s, MB/s of compressed pprof, MB/s per server
//! core (server CPU time from /proc), then stops it gracefully and reports bytes per sample on
//! disk after the flush.
//!
//! `cargo bench --bench ingest_http` (env: HEARTH_BENCH_SECONDS, default 20;
//! HEARTH_BENCH_CLIENTS, default 4).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hearth_proto::pprof::Profile;
use prost::Message;

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Server CPU seconds (user + system) from /proc/<pid>/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Variants of the profile with distinct times, so blocks hold distinct profiles.
fn variants(raw: &[u8], n: usize) -> Vec<Vec<u8>> {
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(raw).read_to_end_into(&mut decoded);
    let profile = Profile::decode(decoded.as_slice()).unwrap();
    let base = 1_790_000_000_000_000_000i64;
    (0..n)
        .map(|i| {
            let mut p = profile.clone();
            p.time_nanos = base + i as i64 * 10_000_000_000;
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&p.encode_to_vec()).unwrap();
            encoder.finish().unwrap()
        })
        .collect()
}

trait ReadAll {
    fn read_to_end_into(self, out: &mut Vec<u8>);
}

impl<R: std::io::Read> ReadAll for R {
    fn read_to_end_into(mut self, out: &mut Vec<u8>) {
        self.read_to_end(out).unwrap();
    }
}

fn dir_size(dir: &Path, suffix: &str) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            total += dir_size(&path, suffix);
        } else if path.to_string_lossy().ends_with(suffix) {
            total += entry.metadata().unwrap().len();
        }
    }
    total
}

fn main() {
    let seconds = env_or("HEARTH_BENCH_SECONDS", 20);
    let clients = env_or("HEARTH_BENCH_CLIENTS", 4) as usize;
    let raw =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pprof/large.cpu"))
            .unwrap();
    let bodies = Arc::new(variants(&raw, 64));
    let body_len = bodies[0].len();

    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn,hearth::server=info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines.next().expect("hearth starts").unwrap();
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let url = format!("http://{addr}/ingest?name=bench.app&format=pprof");

    let done = Arc::new(AtomicBool::new(false));
    let pushed = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let cpu_before = cpu_seconds(child.id());
    let start = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|w| {
            let (done, pushed, bodies, url, latencies) = (
                done.clone(),
                pushed.clone(),
                bodies.clone(),
                url.clone(),
                latencies.clone(),
            );
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let mut i = w;
                while !done.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let response = client
                        .post(&url)
                        .body(bodies[i % bodies.len()].clone())
                        .send()
                        .unwrap();
                    assert_eq!(
                        response.status().as_u16(),
                        200,
                        "{}",
                        response.text().unwrap()
                    );
                    latencies.lock().push(t.elapsed());
                    pushed.fetch_add(1, Ordering::Relaxed);
                    i += clients;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    done.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(child.id()) - cpu_before;
    let profiles = pushed.load(Ordering::Relaxed) as f64;
    let mb = profiles * body_len as f64 / 1e6;
    let mut latencies = latencies.lock().clone();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e3;

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    let samples_rows: u64 = std::fs::read_dir(dir.path().join("blocks/anonymous"))
        .unwrap()
        .flatten()
        .map(|b| {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(b.path().join("meta.json")).unwrap())
                    .unwrap();
            meta["stats"]["samples"].as_u64().unwrap()
        })
        .sum();
    let blocks_dir = dir.path().join("blocks");
    let samples_bytes = dir_size(&blocks_dir, "samples.parquet");
    let all_bytes = dir_size(&blocks_dir, "");

    println!("ingest_http: {clients} clients, {seconds} s, body {body_len} bytes (gzipped pprof)");
    println!(
        "  pushes                 {profiles:.0} ({:.1} profiles/s)",
        profiles / elapsed
    );
    println!("  compressed pprof       {:.1} MB/s", mb / elapsed);
    println!(
        "  samples (2 types)      {:.2} M/s",
        profiles * 2.0 * 20_430.0 / elapsed / 1e6
    );
    println!(
        "  server CPU             {cpu:.1} s over {elapsed:.1} s ({:.2} cores busy)",
        cpu / elapsed
    );
    println!(
        "  per server core        {:.1} MB/s, {:.1} profiles/s",
        mb / cpu,
        profiles / cpu
    );
    println!(
        "  push latency           p50 {:.1} ms, p99 {:.1} ms",
        pct(0.5),
        pct(0.99)
    );
    println!("  on disk after flush    {samples_rows} sample rows");
    println!(
        "    samples.parquet      {samples_bytes} bytes = {:.2} bytes/sample",
        samples_bytes as f64 / samples_rows as f64
    );
    println!(
        "    whole blocks         {all_bytes} bytes = {:.2} bytes/sample; {:.3}x the gzipped input",
        all_bytes as f64 / samples_rows as f64,
        all_bytes as f64 / (profiles * body_len as f64)
    );
}
