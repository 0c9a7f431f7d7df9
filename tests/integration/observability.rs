//! Hearth observes itself: every request timed by route and status and logged once, queries
//! timed by API and method, process and build metrics, the Grafana dashboard naming only metrics
//! that exist, and a WAL replay whose progress `/ready` reports (503) on a port open from the
//! start.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{Hearth, fixture};

/// The value of the sample line `series` (name and labels exactly as rendered).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The metric families `/metrics` declares (`# TYPE name kind`).
fn families(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// Every metric name the dashboard's queries use.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/dashboards/hearth.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_string());
        }
    }
    assert!(exprs.len() > 20, "the dashboard has its panels");
    let name = regex::Regex::new(r"\b(?:hearth|process)_[a-z0-9_]+").unwrap();
    exprs
        .iter()
        .flat_map(|e| name.find_iter(e).map(|m| m.as_str().to_string()))
        .collect()
}

#[test]
fn requests_and_queries_are_timed_and_the_dashboard_names_real_metrics() {
    let server = Hearth::start();
    for _ in 0..3 {
        let bad = server.get("/pyroscope/render?query=%7Bbad");
        assert_eq!(bad.status(), 400);
    }
    for _ in 0..2 {
        assert_eq!(server.get("/no/such/route").status(), 404);
    }
    let pprof = fixture("pprof/large.cpu");
    let pushed = server.push(
        None,
        &[("__name__", "process_cpu"), ("service_name", "observed")],
        &pprof,
    );
    assert_eq!(pushed.status(), 200);
    let refused = server.push_body(None, b"not gzip".to_vec());
    assert_eq!(refused.status(), 400);
    let metrics = server.get("/metrics").text().unwrap();

    let count = |series: &str| sample(&metrics, series).unwrap_or_else(|| panic!("no {series}"));
    assert_eq!(
        count(
            r#"hearth_request_duration_seconds_count{method="GET",route="/pyroscope/render",status_code="400"}"#
        ),
        3.0
    );
    assert_eq!(
        count(
            r#"hearth_request_duration_seconds_count{method="GET",route="unmatched",status_code="404"}"#
        ),
        2.0
    );
    assert_eq!(
        count(
            r#"hearth_request_duration_seconds_count{method="POST",route="/push.v1.PusherService/Push",status_code="200"}"#
        ),
        1.0
    );
    assert_eq!(
        count(
            r#"hearth_query_duration_seconds_count{api="render",method="render",outcome="error"}"#
        ),
        3.0
    );
    assert_eq!(
        count(r#"hearth_build_info{version="0.1.0",target="all"}"#),
        1.0
    );
    assert!(count("process_resident_memory_bytes") > 1e6);
    assert!(count("process_open_fds") > 0.0);
    assert!(count("process_cpu_seconds_total") > 0.0);
    assert_eq!(count("hearth_wal_replay_segments_done"), 0.0);

    // One log line per request, with its method, path and status.
    let log = server.log();
    let lines = log
        .lines()
        .filter(|l| l.contains(r#"path="/no/such/route""#) && l.contains("status=404"))
        .count();
    assert_eq!(lines, 2, "{log}");

    // Each metric the dashboard charts is one this binary exports.
    let known = families(&metrics);
    let missing: Vec<String> = dashboard_metrics()
        .into_iter()
        .filter(|name| {
            let family = ["_bucket", "_count", "_sum", "_total", "_info"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name);
            !known.contains(family)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard charts metrics /metrics does not export: {missing:?}"
    );
}

/// Starts `hearth` on `data_dir` and returns it with its HTTP address as soon as the port is
/// open (before start-up is done).
fn spawn_early(
    data_dir: &std::path::Path,
    config: &std::path::Path,
) -> (std::process::Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["--http-addr", "127.0.0.1:0", "--flight-addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (found, addr) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("http port open")
                && let Some(addr) = line.split("addr=").nth(1)
                && let Some(addr) = addr.split_whitespace().next()
            {
                let _ = found.send(addr.parse::<SocketAddr>().unwrap());
            }
        }
    });
    let addr = addr
        .recv_timeout(Duration::from_secs(60))
        .expect("the port opens");
    (child, addr)
}

#[test]
fn ready_answers_503_with_progress_while_the_wal_replays() {
    const PUSHES: usize = 40;
    // Heads large and old enough that nothing is flushed: every push stays in the WAL.
    let config = "head:\n  max_head_bytes: 8589934592\n  max_head_age: 24h\n";
    let mut server = Hearth::start_with_config(config);
    let pprof = fixture("pprof/large.cpu");
    for run in 0..PUSHES {
        let run = run.to_string();
        let pushed = server.push(
            None,
            &[
                ("__name__", "process_cpu"),
                ("service_name", "replayed"),
                ("run", &run),
            ],
            &pprof,
        );
        assert_eq!(pushed.status(), 200);
    }
    server.kill9();

    let config_path = server.data_dir().parent().unwrap().join("hearth.yaml");
    let (mut child, addr) = spawn_early(server.data_dir(), &config_path);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let started = Instant::now();
    let mut progress = Vec::new();
    loop {
        let ready = client.get(format!("http://{addr}/ready")).send().unwrap();
        if ready.status() == 200 {
            break;
        }
        assert_eq!(ready.status(), 503);
        progress.push(ready.text().unwrap());
        assert!(started.elapsed() < Duration::from_secs(300), "never ready");
        std::thread::sleep(Duration::from_millis(5));
    }
    let replaying: Vec<&String> = progress
        .iter()
        .filter(|p| p.contains("replaying the write-ahead log"))
        .collect();
    assert!(
        !replaying.is_empty(),
        "no progress seen during the replay (replay took {:?}): {progress:?}",
        started.elapsed()
    );
    assert!(replaying[0].contains("of 1 segments"), "{replaying:?}");

    // Done: every record applied, none skipped, and the data is back.
    let metrics = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(sample(&metrics, "hearth_wal_replay_segments"), Some(1.0));
    assert_eq!(
        sample(&metrics, "hearth_wal_replay_segments_done"),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "hearth_wal_replay_records_total"),
        Some(PUSHES as f64)
    );
    assert_eq!(
        sample(&metrics, "hearth_wal_replay_skipped_records_total"),
        Some(0.0)
    );
    assert!(sample(&metrics, "hearth_wal_replay_duration_seconds").unwrap() > 0.0);
    let _ = child.kill();
    let _ = child.wait();
}
