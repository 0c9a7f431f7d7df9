//! Arrow Flight SQL with a real client: `adbc-driver-flightsql` and pandas from PyPI, run by
//! `tests/python/test_flight_sql.py`, which checks every number against the Connect API, plus
//! tenant isolation, errors, the per-query memory bound and the per-tenant query limits.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::support::{Hearth, fixture, venv_bin};

fn python() -> PathBuf {
    venv_bin("python")
}

/// Runs a Python file of the repository; returns its output, failing on a non-zero exit.
fn python_file(path: &str, args: &[String]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    let output = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{path} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

fn run_python(args: &[String]) {
    let stdout = python_file("tests/python/test_flight_sql.py", args);
    assert!(stdout.contains("all checks passed"));
}

#[test]
fn flight_sql_from_python_matches_the_connect_api() {
    let hearth = Hearth::start_with_config(
        "multitenancy_enabled: true\nflight:\n  tokens:\n    token-a: tenant-a\n    token-b: tenant-b\n",
    );
    let cpu = fixture("captures/extracted/py-001.s0.r0.pb");
    let other = fixture("captures/extracted/py-005.s1.r0.pb");
    for (tenant, service, pprof) in [
        ("tenant-a", "python-app", &cpu),
        ("tenant-a", "python-app", &other),
        ("tenant-a", "other-app", &other),
        ("tenant-b", "b-app", &other),
    ] {
        let response = hearth.push(
            Some(tenant),
            &[("__name__", "process_cpu"), ("service_name", service)],
            pprof,
        );
        assert_eq!(response.status().as_u16(), 200);
    }
    run_python(&[
        "--flight".into(),
        hearth.flight_addr.to_string(),
        "--http".into(),
        hearth.addr.to_string(),
    ]);

    // The example script a notebook user would start from works on the same data.
    let out = python_file(
        "examples/profiles_sql.py",
        &[
            "--uri".into(),
            format!("grpc://{}", hearth.flight_addr),
            "--token".into(),
            "token-a".into(),
            "--selector".into(),
            r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="python-app"}"#.into(),
            "--start".into(),
            "1".into(),
            "--end".into(),
            "4102444800000".into(),
        ],
    );
    assert!(
        out.contains("Top functions") && out.contains("fib"),
        "{out}"
    );
}

/// Each code cell's outputs by their MIME types (`error` for a failed cell), keyed by cell id.
fn notebook_outputs(path: &Path) -> Vec<(String, Vec<String>, String)> {
    let notebook: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).expect("a notebook is JSON");
    notebook["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["cell_type"] == "code")
        .map(|cell| {
            let mut kinds = Vec::new();
            let mut text = String::new();
            for output in cell["outputs"].as_array().unwrap() {
                if output["output_type"] == "error" {
                    kinds.push("error".to_string());
                    text.push_str(&output["evalue"].to_string());
                }
                if let Some(data) = output["data"].as_object() {
                    kinds.extend(data.keys().cloned());
                    if let Some(plain) = data.get("text/plain").and_then(|t| t.as_array()) {
                        plain
                            .iter()
                            .for_each(|l| text.push_str(l.as_str().unwrap()));
                    }
                }
            }
            (cell["id"].as_str().unwrap().to_string(), kinds, text)
        })
        .collect()
}

#[test]
fn the_notebook_runs_and_keeps_its_pictures() {
    let hearth = Hearth::start();
    // The README's first steps, over the last hour: `my.app` in dev, and in prod more and more.
    let profile =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cpu.pb.gz")).unwrap();
    let now = super::support::now_nanos() / 1_000_000_000;
    for (step, minutes_ago) in [55, 45, 35, 25, 15, 5].into_iter().enumerate() {
        let at = now - minutes_ago * 60;
        for (env, pushes) in [("dev", 1), ("prod", step + 1)] {
            for k in 0..pushes as i64 {
                let url = hearth.url(&format!(
                    "/ingest?name=my.app%7Benv%3D{env}%7D&format=pprof&from={}&until={}",
                    at + k,
                    at + k + 10
                ));
                let response = hearth
                    .client
                    .post(url)
                    .body(profile.clone())
                    .send()
                    .unwrap();
                assert_eq!(response.status(), 200);
            }
        }
    }

    let notebook = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/profiles.ipynb");
    let dir = tempfile::tempdir().unwrap();
    let executed = dir.path().join("executed.ipynb");
    let run = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/run_notebook.py"))
        .arg(&notebook)
        .arg("--out")
        .arg(&executed)
        .env("HEARTH_FLIGHT", format!("grpc://{}", hearth.flight_addr))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "examples/profiles.ipynb failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let outputs = notebook_outputs(&executed);
    let of = |id: &str| outputs.iter().find(|(cell, _, _)| cell == id).unwrap();
    for (cell, kinds, text) in &outputs {
        assert!(!kinds.contains(&"error".to_string()), "cell {cell}: {text}");
    }
    assert!(of("top").2.contains("time.Now"), "{:?}", of("top"));
    assert!(of("flame").1.contains(&"image/png".to_string()));
    assert!(of("cpu").1.contains(&"image/png".to_string()));
    // polars sums both environments: prod pushed 21 times, dev 6.
    let polars = &of("polars").2;
    assert!(
        polars.contains("dev") && polars.contains("prod") && polars.contains("cpu_seconds"),
        "{polars}"
    );

    // The committed notebook keeps the pictures a reader sees on opening it.
    let committed = notebook_outputs(&notebook);
    for id in ["flame", "cpu"] {
        let (_, kinds, _) = committed.iter().find(|(cell, _, _)| cell == id).unwrap();
        assert!(
            kinds.contains(&"image/png".to_string()),
            "examples/profiles.ipynb has no picture in cell {id}: run it (tests/python/run_notebook.py) and commit the outputs"
        );
    }
}

#[test]
fn flight_sql_queries_are_memory_bounded() {
    let hearth = Hearth::start_with_config("query:\n  max_query_memory_bytes: 65536\n");
    let response = hearth.push(
        None,
        &[("__name__", "process_cpu"), ("service_name", "big")],
        &fixture("pprof/large.cpu"),
    );
    assert_eq!(response.status().as_u16(), 200);
    run_python(&[
        "--flight".into(),
        hearth.flight_addr.to_string(),
        "--memory".into(),
    ]);
}

/// Statements obey the tenant's query limits: `max_query_parallelism` running at once (the
/// next waits), `max_outstanding_requests_per_tenant` queued or running (the next is refused).
#[test]
fn flight_sql_statements_obey_per_tenant_limits() {
    let hearth = Hearth::start_with_config(
        "limits:\n  max_query_parallelism: 1\nquery:\n  max_outstanding_requests_per_tenant: 2\n",
    );
    run_python(&[
        "--flight".into(),
        hearth.flight_addr.to_string(),
        "--admission".into(),
    ]);
}

#[test]
fn flight_sql_tenant_from_x_scope_orgid() {
    let hearth = Hearth::start_with_config("multitenancy_enabled: true\n");
    let pprof = fixture("captures/extracted/py-005.s1.r0.pb");
    for (tenant, service) in [("tenant-a", "python-app"), ("tenant-b", "b-app")] {
        let response = hearth.push(
            Some(tenant),
            &[("__name__", "process_cpu"), ("service_name", service)],
            &pprof,
        );
        assert_eq!(response.status().as_u16(), 200);
    }
    run_python(&[
        "--flight".into(),
        hearth.flight_addr.to_string(),
        "--orgid".into(),
    ]);
}
