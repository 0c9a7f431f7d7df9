//! Blocks in S3: a real S3-compatible server (moto's, from PyPI, in the tests' venv) on loopback.
//! The single binary flushes its heads into the bucket, and a process started with an empty
//! local disk answers the same from the bucket alone. A missing bucket stops start-up with a
//! message naming it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::support::{Hearth, fixture, venv_bin};

/// moto's S3 server on a free loopback port, stopped on drop.
struct S3Server {
    child: Child,
    endpoint: String,
}

impl S3Server {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server runs");
        let endpoint = format!("127.0.0.1:{port}");
        let client = reqwest::blocking::Client::new();
        let started = Instant::now();
        while client.get(format!("http://{endpoint}/")).send().is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not start on {endpoint}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        S3Server { child, endpoint }
    }

    fn create_bucket(&self, bucket: &str) {
        let response = reqwest::blocking::Client::new()
            .put(format!("http://{}/{bucket}", self.endpoint))
            .send()
            .unwrap();
        assert!(
            response.status().is_success(),
            "create bucket: {response:?}"
        );
    }

    /// The keys in `bucket`, from an S3 ListObjectsV2.
    fn keys(&self, bucket: &str) -> Vec<String> {
        let body = reqwest::blocking::get(format!("http://{}/{bucket}?list-type=2", self.endpoint))
            .unwrap()
            .text()
            .unwrap();
        body.split("<Key>")
            .skip(1)
            .filter_map(|part| part.split("</Key>").next())
            .map(str::to_string)
            .collect()
    }

    /// The flags of a process keeping its blocks in `bucket`.
    fn flags(&self, bucket: &str) -> Vec<String> {
        [
            "--storage.backend",
            "s3",
            "--storage.s3.bucket-name",
            bucket,
            "--storage.s3.endpoint",
            &self.endpoint,
            "--storage.s3.region",
            "us-east-1",
            "--storage.s3.access-key-id",
            "test",
            "--storage.s3.secret-access-key",
            "test",
            "--storage.s3.insecure",
            "true",
            "--storage.s3.force-path-style",
            "true",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
