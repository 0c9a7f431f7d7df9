//! The command line (`hearth upload`, `hearth query ...`, `hearth export`) against a running
//! server: its answers equal the Connect API's and the render exports, and bad input names what
//! is wrong.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use prost::Message;
use serde_json::{Value, json};

use crate::support::{Hearth, gunzip_if_gzip, urlencode};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const SELECTOR: &str = r#"{service_name="cli.app"}"#;

fn hearth(server: &Hearth, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .env("HEARTH_URL", format!("http://{}", server.addr))
        .env_remove("HEARTH_TENANT")
        .output()
        .expect("runs hearth")
}

/// Stdout of a command that must succeed.
fn ok(server: &Hearth, args: &[&str]) -> Vec<u8> {
    let out = hearth(server, args);
    assert!(
        out.status.success(),
        "hearth {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Collapsed stacks as `stack -> value`, summed.
fn stacks(text: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let (stack, value) = line.rsplit_once(' ').expect("stack value");
        *out.entry(stack.to_string()).or_default() += value.parse::<i64>().unwrap();
    }
    out
}

#[test]
fn cli_answers_equal_the_connect_api() {
    let server = Hearth::start();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cpu.pb.gz");
    let said = ok(
        &server,
        &[
            "upload",
            example,
            "--label",
            "service_name=cli.app",
            "--label",
            "env=dev",
        ],
    );
    assert!(
        String::from_utf8_lossy(&said).contains(r#"service_name="cli.app""#),
        "{}",
        String::from_utf8_lossy(&said)
    );
    // The uploaded file carries no timestamp: the server stamps it now. Both sides get the same
    // absolute range (series points are aligned to it).
    let now_ms = crate::support::now_nanos() / 1_000_000;
    let (start, end) = (now_ms - 3_600_000, now_ms + 60_000);
    let range = [
        "--from".to_string(),
        start.to_string(),
        "--to".to_string(),
        end.to_string(),
    ];
    let with_range = |args: &[&str]| -> Vec<String> {
        args.iter()
            .map(|s| s.to_string())
            .chain(range.iter().cloned())
            .collect()
    };
    let run = |args: &[&str]| {
        let args = with_range(args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&server, &args)
    };
    let parse = |bytes: Vec<u8>| -> Value { serde_json::from_slice(&bytes).unwrap() };

    // Labels.
    let values = String::from_utf8(run(&["query", "labels", "--name", "service_name"])).unwrap();
    assert!(values.lines().any(|l| l == "cli.app"), "{values}");
    let (status, names) = server.connect_json(
        None,
        "/querier.v1.QuerierService/LabelNames",
        json!({"start": start, "end": end}),
    );
    assert_eq!(status, 200);
    let cli_names = parse(run(&["query", "labels", "--output", "json"]));
    assert_eq!(cli_names["names"], names["names"]);

    // The flame graph as Connect's JSON answers it, whole.
    let cli_flame = parse(run(&[
        "query",
        "flamegraph",
        "-q",
        SELECTOR,
        "--output",
        "json",
    ]));
    let (status, flame) = server.connect_json(
        None,
        "/querier.v1.QuerierService/SelectMergeStacktraces",
        json!({"profileTypeID": CPU, "labelSelector": SELECTOR, "start": start, "end": end}),
    );
    assert_eq!(status, 200, "{flame}");
    assert!(
        flame["flamegraph"]["total"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    assert_eq!(cli_flame, flame);

    // Series, points and all.
    let cli_series = parse(run(&[
        "query",
        "series",
        "-q",
        SELECTOR,
        "--group-by",
        "env",
        "--step",
        "60",
        "--output",
        "json",
    ]));
    let (status, series) = server.connect_json(
        None,
        "/querier.v1.QuerierService/SelectSeries",
        json!({"profileTypeID": CPU, "labelSelector": SELECTOR, "start": start, "end": end,
               "groupBy": ["env"], "step": 60.0}),
    );
    assert_eq!(status, 200, "{series}");
    assert_eq!(cli_series, series);
    assert_eq!(series["series"].as_array().unwrap().len(), 1);

    // Collapsed stacks equal the render export of the same selection.
    let cli_collapsed = String::from_utf8(run(&[
        "query",
        "flamegraph",
        "-q",
        SELECTOR,
        "--output",
        "collapsed",
    ]))
    .unwrap();
    let rendered = server
        .get(&format!(
            "/pyroscope/render?query={}&from={}&until={}&format=collapsed",
            urlencode(&format!("{CPU}{SELECTOR}")),
            start,
            end
        ))
        .text()
        .unwrap();
    assert!(!rendered.is_empty());
    assert_eq!(stacks(&cli_collapsed), stacks(&rendered));

    // The table's top function is the one with the largest self value.
    let mut self_by_function: BTreeMap<String, i64> = BTreeMap::new();
    for (stack, value) in stacks(&rendered) {
        let leaf = stack.rsplit(';').next().unwrap().to_string();
        *self_by_function.entry(leaf).or_default() += value;
    }
    let (top, _) = self_by_function.iter().max_by_key(|(_, v)| **v).unwrap();
    let table =
        String::from_utf8(run(&["query", "profile", "-q", SELECTOR, "--top", "3"])).unwrap();
    let first_row = table.lines().nth(1).unwrap();
    assert!(first_row.ends_with(&format!("  {top}")), "{table}");

    // Exports: pprof with the flame graph's total, SVG with the top function's name.
    let dir = tempfile::tempdir().unwrap();
    let pprof_path = dir.path().join("cpu.pb.gz");
    let svg_path = dir.path().join("flame.svg");
    for path in [&pprof_path, &svg_path] {
        run(&[
            "export",
            "-q",
            SELECTOR,
            "--output-file",
            path.to_str().unwrap(),
        ]);
    }
    let profile = hearth_proto::pprof::Profile::decode(
        &gunzip_if_gzip(&std::fs::read(&pprof_path).unwrap())[..],
    )
    .unwrap();
    let total: i64 = profile.sample.iter().map(|s| s.value[0]).sum();
    assert_eq!(
        total.to_string(),
        flame["flamegraph"]["total"].as_str().unwrap()
    );
    let svg = String::from_utf8(std::fs::read(&svg_path).unwrap()).unwrap();
    assert!(
        svg.starts_with("<?xml") && svg.contains(top.as_str()),
        "not the SVG flame graph"
    );
}

#[test]
fn cli_errors_name_the_cause() {
    let server = Hearth::start();
    let bad = hearth(
        &server,
        &[
            "query",
            "flamegraph",
            "-q",
            "{service_name=",
            "--output",
            "json",
        ],
    );
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("invalid_argument"), "{stderr}");

    let missing = hearth(&server, &["upload", "/nonexistent/cpu.pb.gz"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/cpu.pb.gz"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    let label = hearth(&server, &["upload", "Cargo.toml", "--label", "oops"]);
    assert!(String::from_utf8_lossy(&label.stderr).contains("name=value"));

    let help = hearth(&server, &["query", "flamegraph", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("hearth upload examples/cpu.pb.gz"));

    let unreachable = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["query", "labels", "--url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&unreachable.stderr).contains("is hearth running there?"),
        "{}",
        String::from_utf8_lossy(&unreachable.stderr)
    );
    // The server is still up and answers.
    assert_eq!(server.get("/ready").status(), 200);
}
