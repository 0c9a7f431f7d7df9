//! JFR on `/ingest?format=jfr`: a real JVM (the machine's JDK) records a Java program with a
//! hot method, allocations and lock contention (`-XX:StartFlightRecording`); the test sends
//! the file as the Java agent does (plain, and as a multipart form with gzip `jfr` and `labels`
//! fields) and reads back Pyroscope's profile types, the program's hot method, and totals
//! that the JDK's own `jfr` tool counts in the same file. Damaged recordings are refused with
//! a 4xx naming what is wrong, and nothing of them is stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use hearth_ingest::jfr::{Context, LabelsSnapshot};
use prost::Message;

use super::ingest_formats::{collapsed, profile_types};
use super::support::{Hearth, gzip, now_nanos, run_ok};

/// A program whose CPU goes to `Hot.hotLoop`, which allocates in `Hot.allocate` and contends
/// for a lock in `Hot.contend`.
const PROGRAM: &str = r#"
import java.util.ArrayList;
import java.util.List;

public class Hot {
    static final Object LOCK = new Object();
    static volatile long sink;

    static long hotLoop(int n) {
        long s = 0;
        for (int i = 0; i < n; i++) {
            s += (long) i * i % 7;
        }
        return s;
    }

    static List<byte[]> allocate() {
        List<byte[]> out = new ArrayList<>();
        for (int i = 0; i < 64; i++) {
            out.add(new byte[16 * 1024]);
        }
        return out;
    }

    static void contend() {
        synchronized (LOCK) {
            try { Thread.sleep(30); } catch (InterruptedException e) { }
        }
    }

    public static void main(String[] args) throws Exception {
        long end = System.currentTimeMillis() + Long.parseLong(args[0]);
        Thread locker = new Thread(() -> { while (System.currentTimeMillis() < end) contend(); });
        locker.start();
        for (int round = 0; System.currentTimeMillis() < end; round++) {
            sink += hotLoop(2_000_000);
            sink += allocate().size();
            if (round % 20 == 0) contend();
        }
        locker.join();
    }
}
"#;

/// Compiles and runs [`PROGRAM`] for three seconds under JFR's `profile` settings with TLAB
/// allocation events on; returns the recording's path.
fn record(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("Hot.java"), PROGRAM).unwrap();
    run_ok(
        Command::new("javac").arg(dir.join("Hot.java")),
        "javac (a JDK; .ci/run installs one)",
    );
    let recording = dir.join("hot.jfr");
    run_ok(
        Command::new("java")
            .arg(format!(
                "-XX:StartFlightRecording=filename={},settings=profile,dumponexit=true,\
             +jdk.ObjectAllocationInNewTLAB#enabled=true",
                recording.display()
            ))
            .arg("-cp")
            .arg(dir)
            .args(["Hot", "3000"]),
        "java",
    );
    recording
}

/// The JDK's own reading of `event` in the recording: the values of each event with a stack
/// (a sample without frames has nowhere to go in a flame graph, so none is stored).
fn jdk_events(recording: &Path, event: &str) -> Vec<serde_json::Value> {
    let out = run_ok(
        Command::new("jfr")
            .args(["print", "--json", "--events", event])
            .arg(recording),
        "the JDK's jfr tool",
    );
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let events = doc["recording"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    events
        .into_iter()
        .filter(|e| {
            e["values"]["stackTrace"]["frames"]
                .as_array()
                .is_some_and(|frames| !frames.is_empty())
        })
        .collect()
}

fn ingest(hearth: &Hearth, name: &str, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let now = now_nanos() / 1_000_000_000;
    let response = hearth
        .client
        .post(hearth.url(&format!(
            "/ingest?name={name}&format=jfr&sampleRate=100&spyName=javaspy&from={}&until={now}",
            now - 10
        )))
        .header("content-type", content_type)
        .body(body)
        .send()
        .unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

/// A multipart form with `fields` (name, bytes), as the Java agent builds it.
fn form(fields: &[(&str, Vec<u8>)]) -> (String, Vec<u8>) {
    let boundary = "hearth-jfr-boundary";
    let mut body = Vec::new();
    for (name, bytes) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; \
                 filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The function holding the most value as the leaf.
fn hottest_leaf(stacks: &BTreeMap<String, i64>) -> String {
    let mut leaves: BTreeMap<&str, i64> = BTreeMap::new();
    for (stack, value) in stacks {
        *leaves.entry(stack.rsplit(';').next().unwrap()).or_default() += value;
    }
    leaves
        .into_iter()
        .max_by_key(|(_, v)| *v)
        .unwrap()
        .0
        .to_string()
}

#[test]
fn a_real_jvm_recording_goes_in_as_the_java_agent_sends_it() {
    let hearth = Hearth::start();
    let dir = tempfile::tempdir().unwrap();
    let recording = record(dir.path());
    let bytes = std::fs::read(&recording).unwrap();

    let (status, body) = ingest(
        &hearth,
        "java.app{env=test}",
        "application/octet-stream",
        bytes.clone(),
    );
    assert_eq!(status, 200, "{body}");
    let types = profile_types(&hearth, "java.app");
    for expected in [
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
        "memory:alloc_in_new_tlab_objects:count:space:bytes",
        "memory:alloc_in_new_tlab_bytes:bytes:space:bytes",
        "memory:alloc_sample_objects:count:space:bytes",
        "memory:alloc_sample_bytes:bytes:space:bytes",
        "mutex:contentions:count:mutex:count",
        "mutex:delay:nanoseconds:mutex:count",
    ] {
        assert!(
            types.iter().any(|t| t == expected),
            "{expected} not in {types:?}"
        );
    }

    // CPU: the hot method leads, and every execution sample the JDK counts weighs 10 ms.
    let cpu = collapsed(
        &hearth,
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"java.app\"}",
    );
    assert_eq!(hottest_leaf(&cpu), "Hot.hotLoop", "{cpu:?}");
    let samples = jdk_events(&recording, "jdk.ExecutionSample")
        .iter()
        .filter(|e| e["values"]["state"] != "STATE_SLEEPING")
        .count() as i64;
    assert!(samples > 20, "the JVM took {samples} samples");
    assert_eq!(cpu.values().sum::<i64>(), samples * 10_000_000);
    assert!(
        cpu.keys().any(|s| s.starts_with("Hot.main;Hot.hotLoop")),
        "{cpu:?}"
    );

    // Allocations: the bytes of the new TLABs, as the JDK sums them; they happen in allocate.
    let tlabs = jdk_events(&recording, "jdk.ObjectAllocationInNewTLAB");
    let tlab_bytes: i64 = tlabs
        .iter()
        .map(|e| e["values"]["tlabSize"].as_i64().unwrap())
        .sum();
    let alloc = collapsed(
        &hearth,
        "memory:alloc_in_new_tlab_bytes:bytes:space:bytes{service_name=\"java.app\"}",
    );
    assert_eq!(alloc.values().sum::<i64>(), tlab_bytes);
    let objects = collapsed(
        &hearth,
        "memory:alloc_in_new_tlab_objects:count:space:bytes{service_name=\"java.app\"}",
    );
    assert_eq!(objects.values().sum::<i64>(), tlabs.len() as i64);
    assert!(
        alloc.keys().any(|s| s.contains("Hot.allocate")),
        "{alloc:?}"
    );

    // Lock contention: Hot.contend waits; the count is the JDK's.
    let monitors = jdk_events(&recording, "jdk.JavaMonitorEnter");
    let mutex = collapsed(
        &hearth,
        "mutex:contentions:count:mutex:count{service_name=\"java.app\"}",
    );
    assert_eq!(mutex.values().sum::<i64>(), monitors.len() as i64);
    assert!(
        mutex.keys().any(|s| s.ends_with("Hot.contend")),
        "{mutex:?}"
    );

    // The series carry the upload's labels and spy.
    let series = hearth.series(None, &["{service_name=\"java.app\"}"]);
    assert!(
        series
            .iter()
            .all(|set| set.contains(&("env".into(), "test".into())))
    );
    assert!(
        series
            .iter()
            .all(|set| set.contains(&("pyroscope_spy".into(), "javaspy".into())))
    );

    // As the Java agent sends it: a multipart form, the recording gzipped, dynamic labels.
    let labels = LabelsSnapshot {
        contexts: [(
            1,
            Context {
                labels: [(1, 2)].into(),
            },
        )]
        .into(),
        strings: [(1, "thread_kind".to_string()), (2, "worker".to_string())].into(),
    };
    let (content_type, body) = form(&[("jfr", gzip(&bytes)), ("labels", labels.encode_to_vec())]);
    let (status, answer) = ingest(&hearth, "java.form", &content_type, body);
    assert_eq!(status, 200, "{answer}");
    let form_cpu = collapsed(
        &hearth,
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"java.form\"}",
    );
    assert_eq!(form_cpu, cpu);
}

#[test]
fn damaged_recordings_are_refused_and_nothing_of_them_is_stored() {
    let hearth = Hearth::start();
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(record(dir.path())).unwrap();
    let octets = "application/octet-stream";

    let (status, body) = ingest(
        &hearth,
        "java.garbage",
        octets,
        b"not a recording at all, no".repeat(4),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("does not start with the JFR magic"), "{body}");

    let (status, body) = ingest(
        &hearth,
        "java.cut",
        octets,
        bytes[..bytes.len() / 2].to_vec(),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("the jfr body is invalid: chunk 0"), "{body}");

    // The metadata offset pointing at the middle of an event.
    let mut broken = bytes.clone();
    broken[24..32].copy_from_slice(&100i64.to_be_bytes());
    let (status, body) = ingest(&hearth, "java.broken", octets, broken);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("chunk 0"), "{body}");

    let (content_type, body) = form(&[("labels", Vec::new())]);
    let (status, answer) = ingest(&hearth, "java.noform", &content_type, body);
    assert_eq!(status, 422, "{answer}");
    assert!(answer.contains("no 'jfr' field"), "{answer}");

    let (content_type, body) =
        form(&[("jfr", bytes.clone()), ("labels", b"\xff\xff\xff".to_vec())]);
    let (status, answer) = ingest(&hearth, "java.badlabels", &content_type, body);
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer.contains("the labels field is not a LabelsSnapshot"),
        "{answer}"
    );

    for service in [
        "java.garbage",
        "java.cut",
        "java.broken",
        "java.noform",
        "java.badlabels",
    ] {
        assert!(profile_types(&hearth, service).is_empty(), "{service}");
    }
}
