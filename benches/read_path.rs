//! The read path under load (issue 15's figures): fairness between tenants through the
//! query-frontend's queue, and the label and series APIs over 100k series. See
//! `benches/README.md`.
//!
//! - **Fairness**: one `all` process with multi-tenancy and a split interval, so a query over
//!   the range is several jobs. Tenant `a` gets the e2e workload, tenant `b` one service of it.
//!   B's light query (a flame graph of its service over the last split interval) is timed idle,
//!   then while `--flooders` threads of A loop over flame graphs of every service over the whole
//!   range; the report gives B's p50 under the flood as a multiple of its idle p50, A's answered
//!   queries and 429s.
//! - **Cardinality**: with the label index and with the series-table scan
//!   (`query.label_index`), a fresh process gets `--series` series (100 services x pods, one
//!   tiny profile each, 1,000 series per push); LabelNames, LabelValues of `service_name`, of
//!   `pod` and of one service's pods, and Series of one service are timed from the heads, then
//!   again from blocks after a restart.

#[path = "e2e/client.rs"]
#[allow(dead_code)]
mod client;
#[path = "support/mod.rs"]
mod support;
#[path = "e2e/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use hearth_engine::compression::gzip;
use hearth_engine::testing::raw_series;
use hearth_proto::pprof::{Function, Line, Location, Profile, Sample, ValueType};
use hearth_proto::push::v1::PushRequest;
use hearth_proto::querier::v1::{SelectMergeStacktracesRequest, SeriesRequest};
use hearth_proto::types::v1::{LabelNamesRequest, LabelValuesRequest};
use prost::Message;
use serde_json::{Value, json};

use client::{connect_call_as, percentile, push_all_as};
use support::{rss_mb, start_configured, stop};

const CPU_TYPE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

struct Flags {
    scale: f64,
    minutes: usize,
    clients: usize,
    queries: usize,
    flooders: usize,
    split_minutes: usize,
    series: usize,
    only: Option<String>,
    out: PathBuf,
}

impl Flags {
    fn parse() -> Flags {
        let mut flags = Flags {
            scale: 0.1,
            minutes: 60,
            clients: 4,
            queries: 20,
            flooders: 8,
            split_minutes: 10,
            series: 100_000,
            only: None,
            out: PathBuf::from("target/bench-read-path"),
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut number = || -> f64 {
                it.next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{flag} takes a number"))
            };
            match flag.as_str() {
                "--scale" => flags.scale = number(),
                "--minutes" => flags.minutes = number() as usize,
                "--clients" => flags.clients = number() as usize,
                "--queries" => flags.queries = number() as usize,
                "--flooders" => flags.flooders = number() as usize,
                "--split-minutes" => flags.split_minutes = number() as usize,
                "--series" => flags.series = number() as usize,
                "--only" => flags.only = it.next(),
                "--out" => flags.out = PathBuf::from(it.next().expect("--out takes a folder")),
                "--bench" => {}
                other => panic!("unknown flag {other}; see benches/README.md"),
            }
        }
        flags
    }
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Milliseconds of `runs` calls after one warm-up, sorted.
fn timed(runs: usize, mut call: impl FnMut()) -> Vec<f64> {
    call();
    let mut ms: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            call();
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    ms
}

fn summary(ms: &[f64]) -> Value {
    json!({ "p50_ms": percentile(ms, 0.5), "p99_ms": percentile(ms, 0.99), "runs": ms.len() })
}

fn fairness(flags: &Flags) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let kinds = workload::kinds(root);
    let count = ((100.0 * flags.scale).round() as usize).max(1);
    let services = Arc::new(workload::services(&kinds, count));
    let rounds = flags.minutes * 6;
    let range = flags.minutes as i64 * 60 * 1_000_000_000;
    let start_nanos = (now_nanos() - range) / 10_000_000_000 * 10_000_000_000;
    let data = flags.out.join("fairness");
    let _ = std::fs::remove_dir_all(&data);
    let (child, addr) = start_configured(
        &data,
        &format!(
            "multitenancy_enabled: true\nquery:\n  split_interval: {}m\n",
            flags.split_minutes
        ),
    );
    let cpu_service = services
        .iter()
        .position(|s| s.profiles.iter().any(|(n, _)| *n == "process_cpu"))
        .expect("a cpu service");
    let light = Arc::new(vec![workload::services(&kinds, count).remove(cpu_service)]);
    println!("fairness: tenant a gets {count} services x 10 pods x {rounds} rounds, b one service");
    push_all_as(
        Some("a"),
        &addr,
        &services,
        10,
        0..rounds,
        start_nanos,
        flags.clients,
        None,
    );
    push_all_as(
        Some("b"),
        &addr,
        &light,
        10,
        0..rounds,
        start_nanos,
        flags.clients,
        None,
    );

    let end_ms = (start_nanos + range) / 1_000_000;
    // B's query is the last whole split interval: one job.
    let split_ms = flags.split_minutes as i64 * 60_000;
    let b_end = end_ms / split_ms * split_ms;
    let b_request = SelectMergeStacktracesRequest {
        profile_type_id: CPU_TYPE.into(),
        label_selector: format!("{{service_name=\"{}\"}}", light[0].name),
        start: b_end - split_ms,
        end: b_end - 1,
        max_nodes: Some(8192),
        ..Default::default()
    };
    let a_request = SelectMergeStacktracesRequest {
        profile_type_id: CPU_TYPE.into(),
        label_selector: "{}".into(),
        start: start_nanos / 1_000_000,
        end: end_ms,
        max_nodes: Some(8192),
        ..Default::default()
    };
    let client = reqwest::blocking::Client::new();
    let b_call = || {
        connect_call_as(
            &client,
            &addr,
            Some("b"),
            "SelectMergeStacktraces",
            &b_request,
        )
        .expect("b's query is answered");
    };
    let idle = timed(flags.queries, b_call);
    let a_idle = timed(3, || {
        connect_call_as(
            &client,
            &addr,
            Some("a"),
            "SelectMergeStacktraces",
            &a_request,
        )
        .expect("a's query is answered");
    });

    let stop_flood = Arc::new(AtomicBool::new(false));
    let (answered, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let flooders: Vec<_> = (0..flags.flooders)
        .map(|_| {
            let (stop_flood, answered, refused) = (
                Arc::clone(&stop_flood),
                Arc::clone(&answered),
                Arc::clone(&refused),
            );
            let (addr, request) = (addr.clone(), a_request.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                while !stop_flood.load(Ordering::Relaxed) {
                    match connect_call_as(
                        &client,
                        &addr,
                        Some("a"),
                        "SelectMergeStacktraces",
                        &request,
                    ) {
                        Ok(_) => answered.fetch_add(1, Ordering::Relaxed),
                        Err((429, _)) => refused.fetch_add(1, Ordering::Relaxed),
                        Err((status, body)) => panic!("a's query: {status} {body}"),
                    };
                }
            })
        })
        .collect();
    // Let the flood fill the queue before B asks.
    let flood_started = Instant::now();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let flooded = timed(flags.queries, b_call);
    let flood_seconds = flood_started.elapsed().as_secs_f64();
    stop_flood.store(true, Ordering::Relaxed);
    for f in flooders {
        f.join().expect("flooder");
    }
    let ratio = percentile(&flooded, 0.5) / percentile(&idle, 0.5);
    let report = json!({
        "services_a": count,
        "rounds": rounds,
        "split_minutes": flags.split_minutes,
        "flooders": flags.flooders,
        "b_idle": summary(&idle),
        "b_under_flood": summary(&flooded),
        "b_p50_ratio": ratio,
        "a_idle": summary(&a_idle),
        "a_answered_per_s": answered.load(Ordering::Relaxed) as f64 / flood_seconds,
        "a_refused_429": refused.load(Ordering::Relaxed),
        "peak_rss_mb": rss_mb(child.id()),
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    stop(child);
    report
}

/// A one-sample CPU profile whose function is `name`.
fn tiny_profile(name: &str, time_nanos: i64, value: i64) -> Vec<u8> {
    Profile {
        sample_type: vec![ValueType { r#type: 1, unit: 2 }],
        sample: vec![Sample {
            location_id: vec![1],
            value: vec![value],
            ..Default::default()
        }],
        location: vec![Location {
            id: 1,
            line: vec![Line {
                function_id: 1,
                ..Default::default()
            }],
            ..Default::default()
        }],
        function: vec![Function {
            id: 1,
            name: 3,
            ..Default::default()
        }],
        string_table: vec!["".into(), "cpu".into(), "nanoseconds".into(), name.into()],
        time_nanos,
        duration_nanos: 10_000_000_000,
        period_type: Some(ValueType { r#type: 1, unit: 2 }),
        period: 10_000_000,
        ..Default::default()
    }
    .encode_to_vec()
}

/// Pushes `flags.series` one-sample series (100 services, a pod each, 3 regions) to `addr`;
/// returns the seconds it took.
fn push_cardinality(flags: &Flags, addr: &str, time: i64) -> f64 {
    let client = reqwest::blocking::Client::new();
    let started = Instant::now();
    for first in (0..flags.series).step_by(1000) {
        let series = (first..(first + 1000).min(flags.series))
            .map(|i| {
                let (service, pod) = (format!("svc-{}", i % 100), format!("pod-{i}"));
                raw_series(
                    &[
                        ("__name__", "process_cpu"),
                        ("service_name", &service),
                        ("pod", &pod),
                        ("region", ["eu", "us", "ap"][i % 3]),
                    ],
                    tiny_profile(&format!("work_{}", i % 500), time, 1 + i as i64 % 7),
                    format!("series-{i}"),
                )
            })
            .collect();
        let response = client
            .post(format!("http://{addr}/push.v1.PusherService/Push"))
            .header("content-type", "application/proto")
            .header("content-encoding", "gzip")
            .body(gzip(&PushRequest { series }.encode_to_vec()))
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "push of {first}..");
    }
    started.elapsed().as_secs_f64()
}

/// Times the label and series calls against `addr` over `start..end` (ms): the first call
/// alone (on a fresh process it reads the blocks' series), then each call `flags.queries`
/// times after a warm-up. Returns the summaries and each call's answer size in bytes.
fn label_calls(flags: &Flags, addr: &str, (start, end): (i64, i64)) -> Value {
    let client = reqwest::blocking::Client::new();
    let send = |method: &str, body: &[u8]| -> usize {
        let response = client
            .post(format!("http://{addr}/querier.v1.QuerierService/{method}"))
            .header("content-type", "application/proto")
            .body(body.to_vec())
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "{method}");
        response.bytes().unwrap().len()
    };
    let names = |matchers: &[&str]| {
        LabelNamesRequest {
            matchers: matchers.iter().map(|m| m.to_string()).collect(),
            start,
            end,
        }
        .encode_to_vec()
    };
    let values = |name: &str, matchers: &[&str]| {
        LabelValuesRequest {
            name: name.into(),
            matchers: matchers.iter().map(|m| m.to_string()).collect(),
            start,
            end,
        }
        .encode_to_vec()
    };
    let one_service = ["{service_name=\"svc-7\"}"];
    let calls: Vec<(&str, &str, Vec<u8>)> = vec![
        ("LabelNames", "LabelNames", names(&[])),
        (
            "LabelValues service_name",
            "LabelValues",
            values("service_name", &[]),
        ),
        ("LabelValues pod", "LabelValues", values("pod", &[])),
        (
            "LabelValues pod of one service",
            "LabelValues",
            values("pod", &one_service),
        ),
        (
            "Series of one service",
            "Series",
            SeriesRequest {
                matchers: one_service.iter().map(|m| m.to_string()).collect(),
                label_names: vec![],
                start,
                end,
            }
            .encode_to_vec(),
        ),
    ];
    let started = Instant::now();
    send(calls[0].1, &calls[0].2);
    let mut report = json!({ "first_call_ms": started.elapsed().as_secs_f64() * 1000.0 });
    for (label, method, body) in &calls {
        let bytes = send(method, body);
        let mut summary = summary(&timed(flags.queries, || {
            send(method, body);
        }));
        summary["answer_bytes"] = json!(bytes);
        report[*label] = summary;
    }
    report
}

/// The label APIs over `flags.series` series, answered from the label index and by scanning
/// the series table, each from heads and then from blocks (after a restart), in one run.
fn cardinality(flags: &Flags) -> Value {
    let time = now_nanos() - 60_000_000_000;
    let range = (time / 1_000_000 - 60_000, time / 1_000_000 + 60_000);
    let mut report = json!({ "series": flags.series });
    for (mode, yaml) in [
        ("index", "query:\n  label_index: true\n"),
        ("scan", "query:\n  label_index: false\n"),
    ] {
        let data = flags.out.join(format!("cardinality-{mode}"));
        let _ = std::fs::remove_dir_all(&data);
        let (child, addr) = start_configured(&data, yaml);
        println!("cardinality ({mode}): {} series", flags.series);
        let push_seconds = push_cardinality(flags, &addr, time);
        let heads = label_calls(flags, &addr, range);
        let heads_rss = rss_mb(child.id());
        stop(child);
        let (child, addr) = start_configured(&data, yaml);
        let blocks = label_calls(flags, &addr, range);
        report[mode] = json!({
            "push_seconds": push_seconds,
            "heads": heads,
            "heads_peak_rss_mb": heads_rss,
            "blocks": blocks,
            "blocks_peak_rss_mb": rss_mb(child.id()),
        });
        stop(child);
    }
    let mut ratios = json!({});
    for place in ["heads", "blocks"] {
        let Some(calls) = report["index"][place].as_object() else {
            continue;
        };
        for (call, summary) in calls {
            if let Some(index) = summary["p50_ms"].as_f64() {
                let scan = report["scan"][place][call]["p50_ms"].as_f64().unwrap();
                ratios[format!("{place}: {call}")] = json!(scan / index);
            }
        }
    }
    report["scan_p50_over_index_p50"] = ratios;
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    report
}

fn main() {
    let flags = Flags::parse();
    std::fs::create_dir_all(&flags.out).unwrap();
    let report = match flags.only.as_deref() {
        Some("cardinality") => json!({ "cardinality": cardinality(&flags) }),
        Some("fairness") => json!({ "fairness": fairness(&flags) }),
        None => json!({
            "fairness": fairness(&flags),
            "cardinality": cardinality(&flags),
        }),
        Some(other) => panic!("--only takes fairness or cardinality, not {other}"),
    };
    let path = flags.out.join("read_path.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
    println!("wrote {}", path.display());
}
