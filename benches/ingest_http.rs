//! Ingest throughput over HTTP: starts a real `hearth` on loopback, pushes google/pprof's
//! `large.cpu` (1.2 MB gzipped, 20,430 samples, 2 sample types) through `POST /ingest` from
//! several client threads, and reports profiles/s, MB/s of compressed pprof, MB/s per server
//! core (server CPU time from /proc), then stops it gracefully and reports bytes per sample on
//! disk after the flush.
//!
//! `cargo bench --bench ingest_http` (env: HEARTH_BENCH_SECONDS, default 20;
//! HEARTH_BENCH_CLIENTS, default 4).

#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hearth_proto::pprof::Profile;
use prost::Message;
use support::{block_samples, cpu_seconds, env_or, large_cpu, start, stop};

/// Variants of the profile with distinct times, so blocks hold distinct profiles.
fn variants(profile: &Profile, n: usize) -> Vec<Vec<u8>> {
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
    let (_, profile) = large_cpu();
    let bodies = Arc::new(variants(&profile, 64));
    let body_len = bodies[0].len();

    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = start(dir.path());
    let url = format!("http://{addr}/ingest?name=bench.app&format=pprof");

    let done = Arc::new(AtomicBool::new(false));
    let pushed = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let cpu_before = cpu_seconds(child.id());
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|w| {
            let (done, pushed, bodies, url, latencies) = (
                Arc::clone(&done),
                Arc::clone(&pushed),
                Arc::clone(&bodies),
                url.clone(),
                Arc::clone(&latencies),
            );
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let mut i = w;
                while !done.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let body = bodies[i % bodies.len()].clone();
                    let response = client.post(&url).body(body).send().unwrap();
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
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(child.id()) - cpu_before;
    let profiles = pushed.load(Ordering::Relaxed) as f64;
    let mb = profiles * body_len as f64 / 1e6;
    let mut latencies = latencies.lock().clone();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e3;

    stop(child);
    let samples_rows = block_samples(dir.path(), "anonymous");
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
