//! Flame-graph query speed over blocks: pushes google/pprof's `large.cpu` many times (distinct
//! times, one service), restarts `hearth` so everything is read from Parquet blocks, then runs
//! `SelectMergeStacktraces` over all of it and reports latency, samples/s, samples/s per server
//! core and the server's peak memory.
//!
//! `cargo bench --bench query_flamegraph` (env: HEARTH_BENCH_PROFILES, default 500, i.e. about
//! 10 M samples of the cpu type; HEARTH_BENCH_QUERIES, default 5).

#[path = "support/mod.rs"]
mod support;

use std::io::Write;
use std::time::Instant;

use hearth_proto::querier::v1::{SelectMergeStacktracesRequest, SelectMergeStacktracesResponse};
use prost::Message;
use support::{block_samples, cpu_seconds, env_or, large_cpu, start, status_field, stop};

fn main() {
    let profiles = env_or("HEARTH_BENCH_PROFILES", 500);
    let queries = env_or("HEARTH_BENCH_QUERIES", 5);
    let (_, base) = large_cpu();
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
    let samples = block_samples(dir.path(), "anonymous");
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
    let peak = status_field(child.id(), "VmHWM:");
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
