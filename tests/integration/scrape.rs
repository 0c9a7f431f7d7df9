//! Pull mode: a real Go program (built here with Debian's `golang-go`) serves `net/http/pprof`
//! under CPU load; Hearth scrapes it and its flame graph shows the program's hot function,
//! its allocations arrive as deltas, and `/targets` says it is up. Targets that refuse
//! connections, hang past the timeout or serve garbage show as down with the reason, and do
//! not disturb the others.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::ingest_formats::{collapsed, profile_types};
use super::support::{Hearth, run_ok};

/// A program whose CPU goes to `main.hotLoop`, which allocates in `main.allocate` and
/// contends for a mutex, serving its profiles on the address in its first argument.
const PROGRAM: &str = r#"
package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"sync"
	"time"
)

var sink []byte
var mu sync.Mutex

func hotLoop(n int) int {
	s := 0
	for i := 0; i < n; i++ {
		s += i * i % 7
	}
	return s
}

func allocate() {
	for i := 0; i < 64; i++ {
		sink = make([]byte, 16*1024)
	}
}

func contend() {
	mu.Lock()
	time.Sleep(time.Millisecond)
	mu.Unlock()
}

func main() {
	runtime.SetMutexProfileFraction(1)
	runtime.SetBlockProfileRate(1)
	go func() {
		for {
			hotLoop(5_000_000)
			allocate()
			contend()
		}
	}()
	go func() {
		for {
			contend()
		}
	}()
	if err := http.ListenAndServe(os.Args[1], nil); err != nil {
		panic(err)
	}
}
"#;

/// Builds [`PROGRAM`] with the machine's Go, its build cache inside the target directory.
fn build_program(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("main.go"), PROGRAM).unwrap();
    let binary = dir.join("hot");
    let cache = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/go-build-cache");
    run_ok(
        Command::new("go")
            .args(["build", "-o"])
            .arg(&binary)
            .arg("main.go")
            .current_dir(dir)
            .env("GOCACHE", &cache)
            .env("GOPATH", dir.join("gopath"))
            .env("GO111MODULE", "off"),
        "go build (Debian's golang-go; .ci/run installs it)",
    );
    binary
}

/// A child process killed when the test ends.
struct Program(Child);

impl Program {
    /// The Go program `binary` serving its profiles on loopback `port`.
    fn serve(binary: &Path, port: u16) -> Self {
        Program(
            Command::new(binary)
                .arg(format!("127.0.0.1:{port}"))
                .spawn()
                .unwrap(),
        )
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port that accepts connections and never answers.
fn hanging_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    port
}

/// A port that answers every request with 200 and a body that is not a profile.
fn garbage_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let body = "this is not a profile";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

fn targets(hearth: &Hearth) -> Vec<Value> {
    let report: Value = serde_json::from_str(&hearth.get("/targets").text().unwrap()).unwrap();
    report["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn target<'a>(all: &'a [Value], job: &str, profile: &str) -> &'a Value {
    all.iter()
        .find(|t| t["job"] == job && t["profile"] == profile)
        .unwrap_or_else(|| panic!("no target {job} {profile} in {all:?}"))
}

/// Waits up to a minute for `ok` to hold of the targets.
fn wait_targets(hearth: &Hearth, what: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all = targets(hearth);
        if ok(&all) {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {all:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_go_program_is_scraped_and_broken_targets_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let binary = build_program(dir.path());
    let port = free_port();
    let _program = Program::serve(&binary, port);
    let dead = free_port();
    let (hang, garbage) = (hanging_server(), garbage_server());
    let only_goroutines = "profiling_config:\n      pprof_config:\n        process_cpu: {enabled: false}\n        memory: {enabled: false}\n        mutex: {enabled: false}\n        block: {enabled: false}";
    let config = format!(
        "scrape_configs:
  - job_name: go-app
    scrape_interval: 3s
    static_configs:
      - targets: ['127.0.0.1:{port}']
        labels: {{env: test}}
  - job_name: dead
    scrape_interval: 2s
    static_configs: [{{targets: ['127.0.0.1:{dead}']}}]
    {only_goroutines}
  - job_name: hang
    scrape_interval: 2s
    scrape_timeout: 1s
    static_configs: [{{targets: ['127.0.0.1:{hang}']}}]
    {only_goroutines}
  - job_name: garbage
    scrape_interval: 2s
    static_configs: [{{targets: ['127.0.0.1:{garbage}']}}]
    {only_goroutines}
"
    );
    let hearth = Hearth::start_with_config(&config);

    // Every profile type of the Go program scraped at least twice (deltas need a baseline).
    let all = wait_targets(&hearth, "the Go program's scrapes", |all| {
        ["process_cpu", "memory", "goroutine", "mutex", "block"]
            .iter()
            .all(|p| {
                let t = target(all, "go-app", p);
                t["health"] == "up" && t["scrapes"].as_u64().unwrap_or(0) >= 2
            })
    });
    let cpu_target = target(&all, "go-app", "process_cpu");
    assert_eq!(
        cpu_target["scrapeUrl"],
        format!("http://127.0.0.1:{port}/debug/pprof/profile?seconds=2")
    );
    assert_eq!(cpu_target["labels"]["service_name"], "go-app");
    assert_eq!(cpu_target["lastError"], "");

    // The flame graph shows the hot function; allocations and goroutines are there too.
    let types = profile_types(&hearth, "go-app");
    for expected in [
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
        "memory:alloc_space:bytes:space:bytes",
        "memory:inuse_space:bytes:space:bytes",
        "goroutines:goroutine:count:goroutine:count",
        "mutex:delay:nanoseconds:contentions:count",
    ] {
        assert!(
            types.iter().any(|t| t == expected),
            "{expected} not in {types:?}"
        );
    }
    let cpu = collapsed(
        &hearth,
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"go-app\",env=\"test\"}",
    );
    let hottest = cpu
        .iter()
        .max_by_key(|(_, v)| **v)
        .map(|(stack, _)| stack.rsplit(';').next().unwrap().to_string())
        .unwrap();
    assert_eq!(hottest, "main.hotLoop", "{cpu:?}");
    let alloc = collapsed(
        &hearth,
        "memory:alloc_space:bytes:space:bytes{service_name=\"go-app\"}",
    );
    assert!(
        alloc.keys().any(|s| s.contains("main.allocate")),
        "{alloc:?}"
    );
    let series = hearth.series(None, &["{service_name=\"go-app\"}"]);
    assert!(series.iter().all(|set| {
        set.contains(&("job".into(), "go-app".into()))
            && set.contains(&("instance".into(), format!("127.0.0.1:{port}")))
    }));

    // The broken targets are down, each with its reason; nothing of theirs is stored.
    let all = wait_targets(&hearth, "the broken targets to be scraped", |all| {
        ["dead", "hang", "garbage"].iter().all(|job| {
            target(all, job, "goroutine")["scrapes"]
                .as_u64()
                .unwrap_or(0)
                >= 1
        })
    });
    let error = |job: &str| {
        let t = target(&all, job, "goroutine");
        assert_eq!(t["health"], "down", "{t}");
        t["lastError"].as_str().unwrap().to_string()
    };
    let refused = error("dead");
    assert!(
        refused.contains("Connection refused") || refused.contains("connect"),
        "{refused}"
    );
    let hung = error("hang");
    assert!(hung.contains("timed out"), "{hung}");
    let junk = error("garbage");
    assert!(
        junk.contains("storing the profile") && junk.contains("pprof"),
        "{junk}"
    );
    for job in ["dead", "hang", "garbage"] {
        assert!(profile_types(&hearth, job).is_empty(), "{job}");
    }
    // And the Go program's scrapes went on meanwhile.
    assert_eq!(
        target(&targets(&hearth), "go-app", "process_cpu")["health"],
        "up"
    );
}

#[test]
fn bad_scrape_configs_are_refused_at_start_up_with_the_reason() {
    for (config, reason) in [
        (
            "scrape_configs:\n  - job_name: a\n    scheme: ftp\n    static_configs: [{targets: ['x:1']}]\n",
            "scheme \"ftp\" is not http or https",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    profiling_config: {pprof_config: {cpu: {enabled: true}}}\n",
            "pprof_config.cpu is not a profile type",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    scrape_interval: 1s\n",
            "scrape_interval 1s is under 2s",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    kubernetes_sd_configs: [{role: node}]\n",
            "kubernetes_sd_configs role \"node\" is not supported (pod is)",
        ),
        (
            "scrape_configs:\n  - job_name: a\n    relabel_configs: [{regex: '(', target_label: x}]\n",
            "relabel regex \"(\" does not compile",
        ),
        (
            "target: ingester\nscrape_configs:\n  - job_name: a\n    static_configs: [{targets: ['x:1']}]\n",
            "scrape_configs are scraped by --target all, distributor or scraper",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hearth.yaml");
        std::fs::write(&path, config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .arg("--config")
            .arg(&path)
            .args(["--data-dir"])
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{config}: started");
        assert!(stderr.contains(reason), "{config}: {stderr}");
    }
}

/// A pod object as the Kubernetes API returns it.
fn pod(namespace: &str, name: &str, version: u32, labels: Value, annotations: Value) -> Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": format!("uid-{name}"),
            "resourceVersion": version.to_string(),
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "nodeName": "node-a",
            "containers": [{
                "name": "app",
                "image": "example/app:1",
                "ports": [{"name": "pprof", "containerPort": 0, "protocol": "TCP"}],
            }],
        },
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    })
}

/// A loopback stand-in for the Kubernetes API: answers the pod list with `list`, and each
/// watch with the events sent on the returned channel (one JSON line each). Records the paths
/// asked for.
struct FakeApi {
    port: u16,
    events: std::sync::mpsc::Sender<Value>,
    paths: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn fake_api(list: Value) -> FakeApi {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (events, received) = std::sync::mpsc::channel::<Value>();
    let received = std::sync::Arc::new(std::sync::Mutex::new(received));
    let paths = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = std::sync::Arc::clone(&paths);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let (list, received, seen) = (
                list.clone(),
                std::sync::Arc::clone(&received),
                std::sync::Arc::clone(&seen),
            );
            std::thread::spawn(move || {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request);
                let path = text
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                seen.lock().unwrap().push(path.clone());
                if path.contains("watch=true") {
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n",
                    );
                    let received = received.lock().unwrap();
                    while let Ok(event) = received.recv() {
                        if stream.write_all(format!("{event}\n").as_bytes()).is_err() {
                            return;
                        }
                    }
                } else {
                    let body = list.to_string();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            });
        }
    });
    FakeApi {
        port,
        events,
        paths,
    }
}

fn jobs_targets(all: &[Value], pod: &str) -> Vec<String> {
    let mut profiles: Vec<String> = all
        .iter()
        .filter(|t| t["labels"]["pod"] == pod)
        .map(|t| t["profile"].as_str().unwrap().to_string())
        .collect();
    profiles.sort();
    profiles
}

#[test]
fn kubernetes_pods_are_discovered_by_watch_and_scraped_by_their_annotations() {
    let dir = tempfile::tempdir().unwrap();
    let binary = build_program(dir.path());
    let port = free_port();
    let _program = Program::serve(&binary, port);
    // Every pod's IP is the loopback, where the real Go program serves its profiles.
    let mut checkout = pod(
        "shop",
        "checkout-1",
        90,
        serde_json::json!({"app": "checkout", "team": "payments"}),
        serde_json::json!({
            "profiles.grafana.com/cpu.scrape": "true",
            "profiles.grafana.com/cpu.port": port.to_string(),
            "profiles.grafana.com/goroutine.scrape": "true",
            "profiles.grafana.com/goroutine.port_name": "pprof",
        }),
    );
    checkout["spec"]["containers"][0]["ports"][0]["containerPort"] = port.into();
    let idle = pod(
        "shop",
        "idle-1",
        91,
        serde_json::json!({"app": "idle"}),
        serde_json::json!({}),
    );
    let system = pod(
        "kube-system",
        "dns-1",
        92,
        serde_json::json!({"app": "dns"}),
        serde_json::json!({"phlare.grafana.com/scrape": "true", "phlare.grafana.com/port": port.to_string()}),
    );
    let api = fake_api(serde_json::json!({
        "apiVersion": "v1",
        "kind": "PodList",
        "metadata": {"resourceVersion": "100"},
        "items": [checkout, idle.clone(), system],
    }));
    let config = format!(
        "scrape_configs:
  - job_name: pods
    scrape_interval: 2s
    kubernetes_sd_configs:
      - api_server: http://127.0.0.1:{}
    relabel_configs:
      - {{source_labels: [__meta_kubernetes_namespace], regex: kube-system, action: drop}}
      - {{source_labels: [__meta_kubernetes_pod_label_app], target_label: app}}
      - {{regex: '__meta_kubernetes_pod_label_(team)', action: labelmap}}
",
        api.port
    );
    let hearth = Hearth::start_with_config(&config);

    // From the list: checkout-1's two annotated types; idle-1 has no annotation, dns-1 is
    // dropped by the relabelling.
    let all = wait_targets(&hearth, "checkout-1's targets to be up", |all| {
        jobs_targets(all, "checkout-1") == ["goroutine", "process_cpu"]
            && all.iter().all(|t| t["health"] == "up")
    });
    assert!(jobs_targets(&all, "idle-1").is_empty() && jobs_targets(&all, "dns-1").is_empty());
    let cpu = target(&all, "pods", "process_cpu");
    assert_eq!(
        cpu["scrapeUrl"],
        format!("http://127.0.0.1:{port}/debug/pprof/profile?seconds=1")
    );
    for (name, value) in [
        ("app", "checkout"),
        ("team", "payments"),
        ("namespace", "shop"),
        ("pod", "checkout-1"),
        ("node", "node-a"),
        ("container", "app"),
        ("service_name", "shop/app"),
        ("job", "pods"),
    ] {
        assert_eq!(cpu["labels"][name], value, "{name}: {cpu}");
    }
    assert!(cpu["labels"].get("__meta_kubernetes_pod_name").is_none());
    let types = profile_types(&hearth, "shop/app");
    assert!(
        types.contains(&"process_cpu:cpu:nanoseconds:cpu:nanoseconds".to_string()),
        "{types:?}"
    );

    // The watch starts from the list's version.
    assert!(
        api.paths
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.starts_with("/api/v1/pods?watch=true") && p.contains("resourceVersion=100")),
        "{:?}",
        api.paths.lock().unwrap()
    );

    // An annotation change: idle-1 asks to be scraped the seeds' way (every default type).
    let mut annotated = idle;
    annotated["metadata"]["resourceVersion"] = "101".into();
    annotated["metadata"]["annotations"] = serde_json::json!({
        "phlare.grafana.com/scrape": "true",
        "phlare.grafana.com/port": port.to_string(),
    });
    api.events
        .send(serde_json::json!({"type": "MODIFIED", "object": annotated}))
        .unwrap();
    wait_targets(&hearth, "idle-1's targets", |all| {
        jobs_targets(all, "idle-1") == ["block", "goroutine", "memory", "mutex", "process_cpu"]
    });

    // A deletion: checkout-1's targets go.
    let mut gone = checkout_pod_for_delete(port);
    gone["metadata"]["resourceVersion"] = "102".into();
    api.events
        .send(serde_json::json!({"type": "DELETED", "object": gone}))
        .unwrap();
    let all = wait_targets(&hearth, "checkout-1's targets to go", |all| {
        jobs_targets(all, "checkout-1").is_empty()
    });
    assert_eq!(jobs_targets(&all, "idle-1").len(), 5);
}

/// checkout-1 as a deletion event carries it (only its identity matters).
fn checkout_pod_for_delete(port: u16) -> Value {
    pod(
        "shop",
        "checkout-1",
        102,
        serde_json::json!({"app": "checkout"}),
        serde_json::json!({"profiles.grafana.com/cpu.port": port.to_string()}),
    )
}

/// The (instance, profile) pairs a process scrapes.
fn scraped(hearth: &Hearth) -> std::collections::BTreeSet<(String, String)> {
    targets(hearth)
        .iter()
        .map(|t| {
            (
                t["instance"].as_str().unwrap().to_string(),
                t["profile"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn scrapers_share_the_targets_and_one_takes_over_when_the_other_goes() {
    use super::cluster::{Cluster, active, wait_ring};
    use super::support::S3Server;

    let dir = tempfile::tempdir().unwrap();
    let binary = build_program(dir.path());
    let ports = [free_port(), free_port()];
    let _programs: Vec<Program> = ports
        .iter()
        .map(|port| Program::serve(&binary, *port))
        .collect();
    // Four instances (two names for each program), five profile types each: 20 targets.
    let instances: Vec<String> = ports
        .iter()
        .flat_map(|p| [format!("127.0.0.1:{p}"), format!("localhost:{p}")])
        .collect();
    let list = instances
        .iter()
        .map(|i| format!("'{i}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let scrape = format!(
        "scrape_configs:\n  - job_name: shared\n    scrape_interval: 3s\n    static_configs: [{{targets: [{list}]}}]\n"
    );
    let s3 = S3Server::start();
    s3.create_bucket("scraped");
    let cluster = Cluster::new(&s3, "scraped", "");
    let _ingesters: Vec<Hearth> = (0..3)
        .map(|i| cluster.start("ingester", &format!("ingester-{i}")))
        .collect();
    let first = cluster.start_with("scraper", "scraper-1", &scrape);
    let mut second = cluster.start_with("scraper", "scraper-2", &scrape);
    for node in [&first, &second] {
        wait_ring(node, "both scrapers and three ingesters", |n| {
            active(n, "scraper").len() == 2 && active(n, "ingester").len() == 3
        });
    }
    // Each target is scraped by exactly one of them, and both have some.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (a, b) = (scraped(&first), scraped(&second));
        if a.len() + b.len() == 20 && a.is_disjoint(&b) && !a.is_empty() && !b.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "targets not shared: {a:?} / {b:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // Their scrapes go through the ring to the ingesters.
    for node in [&first, &second] {
        wait_targets(node, "a scrape stored through the ring", |all| {
            all.iter().any(|t| t["health"] == "up")
        });
    }
    // When one goes, the other scrapes everything.
    second.stop();
    let all = wait_targets(
        &first,
        "the first distributor to take every target",
        |all| all.len() == 20,
    );
    assert_eq!(scraped(&first).len(), 20, "{all:?}");
}
