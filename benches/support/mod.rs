//! What the end-to-end benchmarks share: starting and stopping a real `hearth`, reading its CPU
//! time and memory from /proc, and the `large.cpu` fixture.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use hearth_proto::pprof::Profile;
use prost::Message;

pub(crate) fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Server CPU seconds (user + system) from /proc/<pid>/stat.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    (fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap()) / 100.0
}

/// A line of /proc/<pid>/status, e.g. `VmHWM:`.
pub(crate) fn status_field(pid: u32, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find(|l| l.starts_with(key))
        .map(|l| l[key.len()..].trim().to_string())
        .unwrap_or_default()
}

/// Starts `hearth` on a free loopback port with its data in `data`.
pub(crate) fn start(data: &Path) -> (Child, String) {
    start_with(data, &[])
}

/// Starts `hearth` with `args` on a free loopback HTTP port with its data in `data`; returns
/// the HTTP address.
pub(crate) fn start_with(data: &Path, args: &[&str]) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["--http-addr", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn,hearth::server=info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("hearth starts").unwrap();
        if !line.contains("http server listening") {
            continue;
        }
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// SIGTERM, and waits: heads are flushed to blocks.
pub(crate) fn stop(mut child: Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}

/// google/pprof's `large.cpu`: gzipped bytes and the decoded profile.
pub(crate) fn large_cpu() -> (Vec<u8>, Profile) {
    let raw =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pprof/large.cpu"))
            .unwrap();
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(raw.as_slice())
        .read_to_end(&mut decoded)
        .unwrap();
    let profile = Profile::decode(decoded.as_slice()).unwrap();
    (raw, profile)
}

/// Sample rows in a tenant's blocks, from their meta.json.
pub(crate) fn block_samples(data: &Path, tenant: &str) -> u64 {
    std::fs::read_dir(data.join("blocks").join(tenant))
        .unwrap()
        .flatten()
        .map(|b| {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(b.path().join("meta.json")).unwrap())
                    .unwrap();
            meta["stats"]["samples"].as_u64().unwrap()
        })
        .sum()
}

/// The process's peak RSS (`VmHWM`) in MiB.
pub(crate) fn rss_mb(pid: u32) -> f64 {
    status_field(pid, "VmHWM:")
        .trim_end_matches(" kB")
        .trim()
        .parse::<f64>()
        .unwrap()
        / 1024.0
}

/// Starts `hearth` on `data` with a config file holding `yaml`.
pub(crate) fn start_configured(data: &Path, yaml: &str) -> (std::process::Child, String) {
    std::fs::create_dir_all(data).unwrap();
    let config = data.join("hearth.yaml");
    std::fs::write(&config, yaml).unwrap();
    start_with(
        data,
        &[
            "--config",
            &config.to_string_lossy(),
            "--flight-addr",
            "127.0.0.1:0",
        ],
    )
}

/// The value of the counter `name` (without `_total`) in the process's `/metrics`; 0 when absent.
pub(crate) fn counter(addr: &str, name: &str) -> f64 {
    let text = reqwest::blocking::get(format!("http://{addr}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}_total ")))
        .map_or(0.0, |v| v.parse().unwrap())
}
