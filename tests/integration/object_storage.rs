//! Blocks in S3: a real S3-compatible server (moto's, from PyPI, in the tests' venv) on loopback.
//! The single binary flushes its heads into the bucket, and a process started with an empty
//! local disk answers the same from the bucket alone. A missing bucket stops start-up with a
//! message naming it.

use std::path::Path;
use std::process::Command;

use super::support::{Hearth, S3Server, fixture};

const QUERY: &str = "/pyroscope/render?query=process_cpu:cpu:nanoseconds:cpu:nanoseconds%7Bservice_name%3D%22s3-test%22%7D&from=0&until=now";

/// The flame graph's total and function names, as the render API gives them.
fn flame_graph(hearth: &Hearth) -> (i64, Vec<String>) {
    let response = hearth.get(QUERY);
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&response.text().unwrap()).unwrap();
    let graph = &body["flamebearer"];
    let mut names: Vec<String> = graph["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect();
    names.sort();
    (graph["numTicks"].as_i64().unwrap(), names)
}

#[test]
fn blocks_live_in_s3_and_a_fresh_disk_reads_them_back() {
    let s3 = S3Server::start();
    s3.create_bucket("profiles");
    let mut first = Hearth::start_node("", s3.flags("profiles"), Some("flight sql listening"));
    let pprof = fixture("pprof/large.cpu");
    let labels = [("__name__", "process_cpu"), ("service_name", "s3-test")];
    assert_eq!(first.push(None, &labels, &pprof).status(), 200);
    let before = flame_graph(&first);
    assert!(before.0 > 0, "the pushed profile is visible: {before:?}");
    // A graceful stop flushes the head into the bucket.
    first.stop();
    let keys = s3.keys("profiles");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("anonymous/") && k.ends_with("meta.json")),
        "a block in the bucket: {keys:?}"
    );
    // No block on the local disk: the bucket is the only copy.
    assert!(!first.data_dir().join("blocks").exists());

    // A new process with an empty data directory answers the same from the bucket.
    let second = Hearth::start_node("", s3.flags("profiles"), Some("flight sql listening"));
    assert_eq!(flame_graph(&second), before);
}

#[test]
fn a_missing_bucket_stops_start_up_naming_it() {
    let s3 = S3Server::start();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .current_dir(root)
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args(["--http-addr", "127.0.0.1:0", "--flight-addr", "127.0.0.1:0"])
        .args(s3.flags("no-such-bucket"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("s3 bucket \"no-such-bucket\""), "{stderr}");
}
