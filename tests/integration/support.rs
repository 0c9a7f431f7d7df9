//! Runs the real `hearth` binary on loopback for the tests: start, stop (SIGTERM), kill -9,
//! restart on the same data, and small HTTP/Connect helpers.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};

pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub(crate) fn fixture(path: &str) -> Vec<u8> {
    let path = fixtures().join(path);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// gzip at the default level: some tests need small bodies (a gzip bomb under 64 KiB), which
/// the server's fast level does not give.
pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

pub(crate) fn gunzip_if_gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return bytes.to_vec();
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// `pprof` with its time set to `time` (Unix nanoseconds).
pub(crate) fn at_time(pprof: &[u8], time: i64) -> Vec<u8> {
    use prost::Message;
    let raw = gunzip_if_gzip(pprof);
    let mut profile = hearth_proto::pprof::Profile::decode(raw.as_slice()).unwrap();
    profile.time_nanos = time;
    profile.encode_to_vec()
}

/// Now, Unix nanoseconds.
pub(crate) fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A program of the tests' Python venv (clients, moto's S3 server), created by
/// `scripts/python-env.sh` when missing (`.ci/run` creates it up front).
/// Runs `command` (`what` names the program and how it gets installed) and returns its
/// standard output; fails the test with its standard error when it fails.
pub(crate) fn run_ok(command: &mut Command, what: &str) -> Vec<u8> {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what} does not run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

pub(crate) fn venv_bin(name: &str) -> PathBuf {
    // One test at a time: two scripts creating the venv at once break each other.
    static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _creating = CREATING.lock().unwrap_or_else(|e| e.into_inner());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("bash")
        .arg(root.join("scripts/python-env.sh"))
        .status()
        .expect("bash runs");
    assert!(
        status.success(),
        "scripts/python-env.sh failed: is PyPI reachable?"
    );
    root.join(".venv/bin").join(name)
}

/// A running `hearth` process with its own data directory.
pub(crate) struct Hearth {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub flight_addr: SocketAddr,
    data_dir: PathBuf,
    config: Option<PathBuf>,
    /// Flags after the defaults, and the log message naming the Flight address (none for a
    /// distributor).
    args: Vec<String>,
    flight_message: Option<&'static str>,
    _dir: tempfile::TempDir,
    log: Arc<Mutex<String>>,
    pub client: Client,
}

impl Hearth {
    pub(crate) fn start() -> Self {
        Self::start_with_config("")
    }

    /// Starts with a YAML config (empty for the defaults).
    pub(crate) fn start_with_config(yaml: &str) -> Self {
        Self::start_node(yaml, Vec::new(), Some("flight sql listening"))
    }

    /// Starts with a config, extra flags (e.g. `--target ingester`), and the log message that
    /// names its Flight address (`None` when it serves no Flight).
    pub(crate) fn start_node(
        yaml: &str,
        args: Vec<String>,
        flight_message: Option<&'static str>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = (!yaml.is_empty()).then(|| {
            let path = dir.path().join("hearth.yaml");
            std::fs::write(&path, yaml).unwrap();
            path
        });
        let data_dir = dir.path().join("data");
        let log = Arc::new(Mutex::new(String::new()));
        let (child, addr, flight_addr) =
            spawn(&data_dir, config.as_deref(), &args, flight_message, &log);
        Hearth {
            child: Some(child),
            addr,
            flight_addr,
            data_dir,
            config,
            args,
            flight_message,
            _dir: dir,
            log,
            client: Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    pub(crate) fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, and waits for a clean exit (heads flushed).
    pub(crate) fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = child.wait().unwrap();
        assert!(
            exit.success(),
            "hearth exited with {exit}; log:\n{}",
            self.log()
        );
    }

    /// `kill -9`: no flush, no goodbye.
    /// Sends `signal` (e.g. `STOP`, `CONT`) to the process.
    pub(crate) fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("running");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    pub(crate) fn kill9(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts again on the same data directory (a new port).
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill first");
        let (child, addr, flight_addr) = spawn(
            &self.data_dir,
            self.config.as_deref(),
            &self.args,
            self.flight_message,
            &self.log,
        );
        self.child = Some(child);
        self.addr = addr;
        self.flight_addr = flight_addr;
    }

    pub(crate) fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().unwrap()
    }

    /// A Connect JSON call; returns the status and the JSON body.
    pub(crate) fn connect_json(
        &self,
        tenant: Option<&str>,
        method: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .client
            .post(self.url(method))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(tenant) = tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        let response = request.send().unwrap();
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, json)
    }

    /// `Series` label sets as sorted `name=value` lists, for the matchers given.
    pub(crate) fn series(
        &self,
        tenant: Option<&str>,
        matchers: &[&str],
    ) -> Vec<Vec<(String, String)>> {
        let (status, body) = self.connect_json(
            tenant,
            "/querier.v1.QuerierService/Series",
            serde_json::json!({ "matchers": matchers }),
        );
        assert_eq!(status, 200, "{body}");
        let mut sets: Vec<Vec<(String, String)>> = body["labelsSet"]
            .as_array()
            .map(|sets| {
                sets.iter()
                    .map(|set| {
                        set["labels"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|l| {
                                (
                                    l["name"].as_str().unwrap().to_string(),
                                    l["value"].as_str().unwrap_or_default().to_string(),
                                )
                            })
                            .collect()
                    })
                    .collect()
            })
            .unwrap_or_default();
        sets.sort();
        sets
    }

    /// Pushes a pprof through `push.v1.PusherService/Push` as pyroscope-rs does (proto, gzip).
    pub(crate) fn push(
        &self,
        tenant: Option<&str>,
        labels: &[(&str, &str)],
        pprof: &[u8],
    ) -> Response {
        let request = hearth_engine::testing::push_request(
            labels,
            pprof.to_vec(),
            uuid::Uuid::new_v4().to_string(),
        );
        self.push_body(tenant, gzip(&prost::Message::encode_to_vec(&request)))
    }

    /// Posts a gzipped PushRequest body.
    pub(crate) fn push_body(&self, tenant: Option<&str>, body: Vec<u8>) -> Response {
        let mut request = self
            .client
            .post(self.url("/push.v1.PusherService/Push"))
            .header("content-type", "application/proto")
            .header("content-encoding", "gzip")
            .body(body);
        if let Some(tenant) = tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        request.send().unwrap()
    }
}

impl Drop for Hearth {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The address in a `... listening addr=HOST:PORT` log line with this message.
fn listening(line: &str, message: &str) -> Option<SocketAddr> {
    if !line.contains(message) {
        return None;
    }
    line.split("addr=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn spawn(
    data_dir: &Path,
    config: Option<&Path>,
    args: &[String],
    flight_message: Option<&'static str>,
    log: &Arc<Mutex<String>>,
) -> (Child, SocketAddr, SocketAddr) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hearth"));
    command
        .args([
            "--http-addr",
            "127.0.0.1:0",
            "--flight-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command.args(args);
    let mut child = command.spawn().expect("hearth starts");
    let stderr = child.stderr.take().unwrap();
    let (found, addrs) = mpsc::channel();
    let log = Arc::clone(log);
    std::thread::spawn(move || {
        let mut http = None;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = listening(&line, "http server listening") {
                http = Some(addr);
            }
            match (http, flight_message) {
                (Some(http), Some(message)) => {
                    if let Some(flight) = listening(&line, message) {
                        let _ = found.send((http, flight));
                    }
                }
                (Some(http), None) if line.contains("http server listening") => {
                    let _ = found.send((http, http));
                }
                _ => {}
            }
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    match addrs.recv_timeout(Duration::from_secs(60)) {
        Ok((http, flight)) => (child, http, flight),
        Err(_) => {
            let _ = child.kill();
            panic!("hearth did not start listening");
        }
    }
}

/// moto's S3 server on a free loopback port, stopped on drop.
pub(crate) struct S3Server {
    child: Child,
    pub(crate) endpoint: String,
}

impl S3Server {
    pub(crate) fn start() -> Self {
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

    pub(crate) fn create_bucket(&self, bucket: &str) {
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
    pub(crate) fn keys(&self, bucket: &str) -> Vec<String> {
        self.objects(bucket)
            .into_iter()
            .map(|(key, _)| key)
            .collect()
    }

    /// The keys in `bucket` and their sizes, from S3 ListObjectsV2 (every page).
    pub(crate) fn objects(&self, bucket: &str) -> Vec<(String, u64)> {
        let field = |part: &str, name: &str| -> Option<String> {
            let from = part.find(&format!("<{name}>"))? + name.len() + 2;
            let to = part[from..].find(&format!("</{name}>"))? + from;
            Some(part[from..to].to_string())
        };
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!("http://{}/{bucket}?list-type=2", self.endpoint);
            if let Some(token) = &token {
                url.push_str(&format!("&continuation-token={}", urlencode(token)));
            }
            let body = reqwest::blocking::get(url).unwrap().text().unwrap();
            for part in body.split("<Contents>").skip(1) {
                if let (Some(key), Some(size)) = (field(part, "Key"), field(part, "Size")) {
                    objects.push((key, size.parse().unwrap()));
                }
            }
            token = field(&body, "NextContinuationToken");
            if token.is_none() {
                return objects;
            }
        }
    }

    /// The flags of a process keeping its blocks in `bucket`.
    pub(crate) fn flags(&self, bucket: &str) -> Vec<String> {
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

/// A query-string value with everything but unreserved characters percent-encoded.
pub(crate) fn urlencode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
