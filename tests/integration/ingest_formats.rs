//! The stack formats `/ingest` takes beside pprof: folded stacks and speedscope recorded by a
//! real profiler (py-spy, from PyPI in the tests' venv, sampling a Python program with a hot
//! function), `lines`, and Pyroscope's binary `trie` and `tree` (encoded here, since no agent
//! that sends them installs from a package registry). Each is stored under the profile type
//! Pyroscope gives it and reads back as the stacks sent; malformed bodies get a 4xx naming what
//! is wrong, and nothing of them is stored.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use hearth_proto::pprof::{Function, Line, Location, Profile, Sample, ValueType};
use prost::Message;
use serde_json::json;

use hearth_ingest::formats::encode_nodes as nodes;

use super::support::{Hearth, run_ok, urlencode, venv_bin};

/// A Python program whose time goes to `hot_loop`, with a little in `cold`.
const PROGRAM: &str = "
import time
def hot_loop(n):
    s = 0
    for i in range(n):
        s += i * i
    return s
def cold():
    time.sleep(0.0005)
end = time.time() + 3
while time.time() < end:
    hot_loop(200000)
    cold()
";

/// py-spy's record of [`PROGRAM`] in `format` (`raw` is folded stacks), at 100 Hz.
fn py_spy(dir: &Path, format: &str) -> Vec<u8> {
    let program = dir.join("hot.py");
    std::fs::write(&program, PROGRAM).unwrap();
    let out = dir.join(format!("profile.{format}"));
    run_ok(
        Command::new(venv_bin("py-spy"))
            .args([
                "record",
                "--rate",
                "100",
                "--duration",
                "2",
                "--format",
                format,
            ])
            .arg("--output")
            .arg(&out)
            .arg("--")
            .arg(venv_bin("python"))
            .arg(&program),
        "py-spy (scripts/python-env.sh installs it)",
    );
    std::fs::read(out).unwrap()
}

fn ingest(hearth: &Hearth, query: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let response = reqwest::blocking::Client::new()
        .post(hearth.url(&format!("/ingest?{query}")))
        .header("content-type", content_type)
        .body(body)
        .send()
        .unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

/// The stacks stored for `query` (a profile type and selector) in the last hour, as
/// Pyroscope's collapsed render gives them: stack → value.
pub(crate) fn collapsed(hearth: &Hearth, query: &str) -> BTreeMap<String, i64> {
    let now = super::support::now_nanos() / 1_000_000;
    let text = hearth
        .get(&format!(
            "/pyroscope/render?query={}&from={}&until={}&format=collapsed",
            urlencode(query),
            now - 3_600_000,
            now + 60_000
        ))
        .text()
        .unwrap();
    text.lines()
        .map(|line| {
            let (stack, value) = line.rsplit_once(' ').unwrap();
            (stack.to_string(), value.parse().unwrap())
        })
        .collect()
}

/// The profile type ids stored for a service.
pub(crate) fn profile_types(hearth: &Hearth, service: &str) -> Vec<String> {
    let mut types: Vec<String> = hearth
        .series(None, &[&format!("{{service_name=\"{service}\"}}")])
        .into_iter()
        .filter_map(|labels| {
            labels
                .into_iter()
                .find(|(name, _)| name == "__profile_type__")
                .map(|(_, value)| value)
        })
        .collect();
    types.sort();
    types.dedup();
    types
}

/// The function holding the most value as the leaf (py-spy names frames `function
/// (file:line)`; the lines of one function add up).
fn hottest_leaf(stacks: &BTreeMap<String, i64>) -> String {
    let mut leaves: BTreeMap<&str, i64> = BTreeMap::new();
    for (stack, value) in stacks {
        let leaf = stack.rsplit(';').next().unwrap();
        let function = leaf.split(" (").next().unwrap();
        *leaves.entry(function).or_default() += value;
    }
    let (leaf, _) = leaves.into_iter().max_by_key(|(_, v)| *v).unwrap();
    leaf.to_string()
}

#[test]
fn py_spy_folded_stacks_and_speedscope_go_in_as_pyroscope_takes_them() {
    let hearth = Hearth::start();
    let dir = tempfile::tempdir().unwrap();
    let cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

    // Folded stacks, as a collapsing script uploads them: no format, so `groups`.
    let folded = py_spy(dir.path(), "raw");
    let samples: i64 = String::from_utf8_lossy(&folded)
        .lines()
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<i64>().ok())
        .sum();
    assert!(samples > 50, "py-spy took {samples} samples");
    let (status, body) = ingest(
        &hearth,
        "name=pyfolded.cpu%7Benv%3Dci%7D&sampleRate=100&spyName=pyspy",
        "text/plain",
        folded,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(profile_types(&hearth, "pyfolded"), vec![cpu.to_string()]);
    let stacks = collapsed(
        &hearth,
        &format!("{cpu}{{service_name=\"pyfolded\",env=\"ci\"}}"),
    );
    // Each sample is 10 ms at 100 Hz.
    assert_eq!(stacks.values().sum::<i64>(), samples * 10_000_000);
    assert_eq!(hottest_leaf(&stacks), "hot_loop", "{stacks:?}");

    // The speedscope file py-spy writes: one sampled profile per thread, in seconds.
    let speedscope = py_spy(dir.path(), "speedscope");
    let (status, body) = ingest(
        &hearth,
        "name=pyscope&format=speedscope&spyName=pyspy",
        "application/json",
        speedscope,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(profile_types(&hearth, "pyscope"), vec![cpu.to_string()]);
    let stacks = collapsed(&hearth, &format!("{cpu}{{service_name=\"pyscope\"}}"));
    assert_eq!(hottest_leaf(&stacks), "hot_loop", "{stacks:?}");
    // About two seconds of one thread's time (py-spy's weights are its sampling interval).
    let seconds = stacks.values().sum::<i64>() as f64 / 1e9;
    assert!((1.0..3.0).contains(&seconds), "{seconds} s");
    let threads = hearth.series(None, &[r#"{service_name="pyscope"}"#]);
    assert!(
        threads[0]
            .iter()
            .any(|(n, v)| n == "profile_name" && v.starts_with("Thread")),
        "{threads:?}"
    );
}

fn expect(stacks: &[(&str, i64)]) -> BTreeMap<String, i64> {
    stacks.iter().map(|(s, v)| (s.to_string(), *v)).collect()
}

#[test]
fn lines_trie_and_tree_bodies_read_back_as_their_stacks() {
    let hearth = Hearth::start();
    // `lines`: each line a stack seen once; a goroutine count, no sample rate involved.
    let (status, body) = ingest(
        &hearth,
        "name=lined.goroutines&format=lines",
        "text/plain",
        b"main;serve;accept\nmain;serve;accept\r\nmain;gc\n\n".to_vec(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        profile_types(&hearth, "lined"),
        vec!["goroutine:goroutines:count::".to_string()]
    );
    assert_eq!(
        collapsed(
            &hearth,
            r#"goroutine:goroutines:count::{service_name="lined"}"#
        ),
        expect(&[("main;gc", 1), ("main;serve;accept", 2)])
    );

    // A trie (by content type): fragments concatenate into keys.
    let trie = nodes(&[
        ("", 0, 1),
        ("main;", 0, 2),
        ("alloc", 4096, 0),
        ("parse;read", 1024, 0),
    ]);
    let (status, body) = ingest(
        &hearth,
        "name=tried.alloc_space",
        "binary/octet-stream+trie",
        trie,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        profile_types(&hearth, "tried"),
        vec!["memory:alloc_space:bytes::".to_string()]
    );
    assert_eq!(
        collapsed(
            &hearth,
            r#"memory:alloc_space:bytes::{service_name="tried"}"#
        ),
        expect(&[("main;alloc", 4096), ("main;parse;read", 1024)])
    );

    // A tree (by format), CPU at 50 Hz: 20 ms a sample.
    let tree = nodes(&[
        ("", 0, 1),
        ("main", 1, 2),
        ("work", 3, 0),
        ("idle", 0, 1),
        ("sleep", 2, 0),
    ]);
    let (status, body) = ingest(
        &hearth,
        "name=treed.cpu&format=tree&sampleRate=50",
        "application/octet-stream",
        tree,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        collapsed(
            &hearth,
            r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="treed"}"#
        ),
        expect(&[
            ("main", 20_000_000),
            ("main;idle;sleep", 40_000_000),
            ("main;work", 60_000_000)
        ])
    );
}

#[test]
fn malformed_stack_bodies_are_refused_whole_with_what_is_wrong() {
    let hearth = Hearth::start();
    let truncated = {
        let mut t = nodes(&[("", 0, 1), ("main", 5, 0)]);
        t.pop();
        t
    };
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "name=bad1.cpu",
            "text/plain",
            b"main;work 5
main;idle five
"
            .to_vec(),
            422,
            "line 2: the count",
        ),
        (
            "name=bad2.cpu&format=trie",
            "application/octet-stream",
            truncated.clone(),
            422,
            "the trie body is invalid: the body ends inside",
        ),
        (
            "name=bad3.cpu&format=tree",
            "application/octet-stream",
            Vec::new(),
            422,
            "a tree has at least its root",
        ),
        (
            "name=bad4&format=speedscope",
            "application/json",
            br#"{"$schema": "https://example.com/schema.json", "shared": {"frames": []}}"#.to_vec(),
            422,
            "not the speedscope schema",
        ),
        (
            // The first profile is good, the second names a frame the file does not have.
            "name=bad8&format=speedscope",
            "application/json",
            br#"{"$schema": "https://www.speedscope.app/file-format-schema.json",
                 "shared": {"frames": [{"name": "main"}]},
                 "profiles": [
                   {"type": "sampled", "name": "a", "unit": "none", "samples": [[0]], "weights": [1]},
                   {"type": "sampled", "name": "b", "unit": "none", "samples": [[0, 3]], "weights": [1]}]}"#
                .to_vec(),
            422,
            "profile 1",
        ),
        (
            "name=bad5.app",
            "text/plain",
            b"main;work 5
"
            .to_vec(),
            400,
            "unknown profile type",
        ),
        (
            "name=bad6.cpu&sampleRate=2000000000",
            "text/plain",
            b"main;work 5
"
            .to_vec(),
            400,
            "more than one sample per nanosecond",
        ),
    ];
    for (query, content_type, body, status, message) in cases {
        let (got, text) = ingest(&hearth, query, content_type, body);
        assert_eq!(got, status, "{query}: {text}");
        assert!(text.contains(message), "{query}: {text}");
    }
    let stored = || hearth.series(None, &[r#"{service_name=~"bad.*"}"#]);
    assert!(stored().is_empty(), "nothing of a refused body is stored");
    let (status, text) = ingest(&hearth, "name=bad7.cpu", "text/plain", b"main 1\n".to_vec());
    assert_eq!(status, 200, "{text}");
    assert_eq!(stored().len(), 1, "a good body is");
}

/// A pprof as py-spy based agents send it: sample type `samples` (count), period in
/// milliseconds with no period type.
fn py_spy_pprof() -> Vec<u8> {
    let strings = ["", "samples", "count", "milliseconds", "main", "work"];
    Profile {
        sample_type: vec![ValueType { r#type: 1, unit: 2 }],
        period_type: Some(ValueType { r#type: 0, unit: 3 }),
        period: 10,
        sample: vec![Sample {
            location_id: vec![2, 1],
            value: vec![7],
            label: vec![],
        }],
        location: (1..=2)
            .map(|id| Location {
                id,
                line: vec![Line {
                    function_id: id,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
        function: (1..=2)
            .map(|id| Function {
                id,
                name: 3 + id as i64,
                ..Default::default()
            })
            .collect(),
        string_table: strings.iter().map(|s| s.to_string()).collect(),
        time_nanos: super::support::now_nanos(),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn a_py_spy_pprof_is_named_cpu_as_pyroscope_names_it() {
    let hearth = Hearth::start();
    let (status, body) = ingest(
        &hearth,
        "name=pyagent&format=pprof&spyName=pyspy&sampleRate=100",
        "application/octet-stream",
        py_spy_pprof(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        profile_types(&hearth, "pyagent"),
        vec!["process_cpu:samples:count::milliseconds".to_string()]
    );
    let (status, answer) =
        hearth.connect_json(None, "/querier.v1.QuerierService/ProfileTypes", json!({}));
    assert_eq!(status, 200);
    assert!(
        answer
            .to_string()
            .contains("process_cpu:samples:count::milliseconds")
    );
}
