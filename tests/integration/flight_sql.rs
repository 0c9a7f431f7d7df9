//! Arrow Flight SQL with a real client: `adbc-driver-flightsql` and pandas from PyPI, run by
//! `tests/python/test_flight_sql.py`, which checks every number against the Connect API, plus
//! tenant isolation, errors and the per-query memory bound.

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
    // The notebook's code cells are valid Python.
    let check = "import json,sys\nnb=json.load(open(sys.argv[1]))\n[compile(''.join(c['source']),'cell','exec') for c in nb['cells'] if c['cell_type']=='code']";
    let notebook = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/profiles.ipynb");
    let status = Command::new(python())
        .args(["-c", check])
        .arg(notebook)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "examples/profiles.ipynb has a cell that does not compile"
    );
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
