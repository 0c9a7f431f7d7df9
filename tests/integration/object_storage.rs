//! Blocks in S3: a real S3-compatible server (moto's, from PyPI, in the tests' venv) on loopback.
//! The single binary flushes its heads into the bucket, and a process started with an empty
//! local disk answers the same from the bucket alone. A missing bucket stops start-up with a
//! message naming it. With the server unreachable (a proxy in front of it refuses), pushes are
//! still acknowledged, a flush fails and keeps its head and WAL, and nothing is lost through a
//! `kill -9` before the server is back.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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

    // A new process with an empty data directory answers the same from the bucket; with a
    // cache folder, asking again reads nothing more from the bucket.
    let mut flags = s3.flags("profiles");
    let cache = tempfile::tempdir().unwrap();
    flags.extend([
        "--storage.cache-dir".to_string(),
        cache.path().join("c").display().to_string(),
    ]);
    let second = Hearth::start_node("", flags, Some("flight sql listening"));
    assert_eq!(flame_graph(&second), before);
    let cold = counter(&second, "hearth_object_store_gets");
    assert!(cold > 0, "the first query read the bucket");
    assert_eq!(flame_graph(&second), before);
    assert_eq!(
        counter(&second, "hearth_object_store_gets"),
        cold,
        "a warm query asks the bucket for nothing"
    );
}

/// A counter's value in `/metrics`.
fn counter(hearth: &Hearth, name: &str) -> u64 {
    let text = hearth.get("/metrics").text().unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}_total ")))
        .unwrap_or_else(|| panic!("{name} in {text}"))
        .parse()
        .unwrap()
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

/// A TCP proxy to the S3 server that can be cut: while down it closes every connection, old
/// and new, as an unreachable bucket would.
struct Outage {
    endpoint: String,
    up: Arc<AtomicBool>,
}

impl Outage {
    fn new(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = listener.local_addr().unwrap().to_string();
        let up = Arc::new(AtomicBool::new(true));
        let (target, flag) = (target.to_string(), Arc::clone(&up));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !flag.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                for (from, to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    let flag = Arc::clone(&flag);
                    std::thread::spawn(move || pipe(from, to, &flag));
                }
            }
        });
        Outage { endpoint, up }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either closes or the proxy goes down.
fn pipe(mut from: TcpStream, mut to: TcpStream, up: &AtomicBool) {
    from.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buffer = [0u8; 64 * 1024];
    loop {
        if !up.load(Ordering::SeqCst) {
            break;
        }
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

/// The process's flame-graph total (0 when it has no data).
fn total(hearth: &Hearth) -> i64 {
    flame_graph(hearth).0
}

#[test]
fn an_unreachable_bucket_loses_nothing_acknowledged() {
    let s3 = S3Server::start();
    s3.create_bucket("profiles");
    let outage = Outage::new(&s3.endpoint);
    let mut flags = s3.flags("profiles");
    let at = flags
        .iter()
        .position(|f| f == "--storage.s3.endpoint")
        .unwrap();
    flags[at + 1] = outage.endpoint.clone();
    let mut hearth = Hearth::start_node(
        "storage:\n  retry_timeout: 2s\n",
        flags,
        Some("flight sql listening"),
    );
    let pprof = fixture("pprof/large.cpu");
    let labels = [("__name__", "process_cpu"), ("service_name", "s3-test")];
    assert_eq!(hearth.push(None, &labels, &pprof).status(), 200);
    let one = total(&hearth);

    // The bucket goes away: pushes are still acknowledged (WAL and head), a flush fails and
    // says so, and queries still see everything.
    outage.set_up(false);
    assert_eq!(hearth.push(None, &labels, &pprof).status(), 200);
    let flush = hearth
        .client
        .post(hearth.url("/ingester/flush"))
        .send()
        .unwrap();
    assert_eq!(flush.status(), 500);
    let message = flush.text().unwrap();
    assert!(message.contains("flush"), "{message}");
    assert_eq!(hearth.push(None, &labels, &pprof).status(), 200);
    assert_eq!(total(&hearth), 3 * one);
    assert!(s3.keys("profiles").is_empty(), "nothing reached the bucket");

    // A crash before the bucket is back: the WAL still holds every acknowledged push.
    hearth.kill9();
    outage.set_up(true);
    hearth.restart();
    assert_eq!(total(&hearth), 3 * one);
    // The next flush succeeds, and the bucket alone answers the same.
    let flush = hearth
        .client
        .post(hearth.url("/ingester/flush"))
        .send()
        .unwrap();
    assert_eq!(flush.status(), 200);
    hearth.stop();
    let fresh = Hearth::start_node("", s3.flags("profiles"), Some("flight sql listening"));
    assert_eq!(total(&fresh), 3 * one);
}
