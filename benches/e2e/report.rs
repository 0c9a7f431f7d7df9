//! The report: every figure in JSON, and a markdown page with the targets.

use serde_json::{Value, json};

pub(crate) struct Target {
    pub name: &'static str,
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

pub(crate) fn markdown(report: &Value, targets: &[Target]) -> String {
    let r = report;
    let mut out = String::new();
    let f = |v: &Value| -> String {
        match v {
            Value::Number(n) if n.is_f64() => match n.as_f64().unwrap() {
                x if x.abs() >= 10_000.0 => format!("{x:.0}"),
                x if x.abs() < 0.1 && x != 0.0 => format!("{x:.4}"),
                x => format!("{x:.2}"),
            },
            other => other.to_string().trim_matches('"').to_string(),
        }
    };
    out.push_str(&format!(
        "Workload: {} services x {} pods, {} rounds of 10 s profiles ({} min of data), {} pushes, {} client threads, scale {}.\n\n",
        f(&r["workload"]["services"]),
        f(&r["workload"]["pods"]),
        f(&r["workload"]["rounds"]),
        f(&r["workload"]["minutes"]),
        f(&r["workload"]["pushes"]),
        f(&r["workload"]["clients"]),
        f(&r["workload"]["scale"]),
    ));
    out.push_str("## Ingest\n\n| figure | value |\n|---|---|\n");
    for (key, label) in [
        ("mb_per_s", "compressed pprof, MB/s (wall)"),
        (
            "mb_per_s_per_core",
            "compressed pprof, MB/s per server core",
        ),
        ("profiles_per_s", "pushes/s (wall)"),
        ("samples_per_s", "samples/s (wall)"),
        ("samples_per_s_per_core", "samples/s per server core"),
        ("cpu_s_per_mb", "server CPU seconds per MB"),
        (
            "floor_cpu_s_per_mb",
            "floor (gunzip + protobuf decode) CPU seconds per MB",
        ),
        ("cost_vs_floor", "ingest cost as a multiple of the floor"),
        ("p50_ms", "push latency p50, ms (saturated)"),
        ("p99_ms", "push latency p99, ms (saturated)"),
        (
            "half_load_p50_ms",
            "push latency p50, ms, at half the maximum load",
        ),
        (
            "half_load_p99_ms",
            "push latency p99, ms, at half the maximum load",
        ),
        ("peak_rss_mb", "server peak RSS, MB"),
    ] {
        out.push_str(&format!("| {label} | {} |\n", f(&r["ingest"][key])));
    }
    out.push_str("\n## Storage (after flush)\n\n| figure | value |\n|---|---|\n");
    for (key, label) in [
        ("samples", "sample rows"),
        ("bytes_per_sample", "bytes per sample, whole blocks"),
        (
            "samples_bytes_per_sample",
            "bytes per sample, samples.parquet",
        ),
        ("ratio_to_gzipped_input", "blocks / gzipped input"),
    ] {
        out.push_str(&format!("| {label} | {} |\n", f(&r["storage"][key])));
    }
    out.push_str("\n## Queries over the hour, from blocks\n\n| query | samples | p50 ms | p99 ms | samples/s per server core | DuckDB p50 ms | Hearth / DuckDB |\n|---|---|---|---|---|---|---|\n");
    for q in r["queries"].as_array().unwrap() {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            f(&q["name"]),
            f(&q["samples"]),
            f(&q["p50_ms"]),
            f(&q["p99_ms"]),
            f(&q["samples_per_s_per_core"]),
            q.get("duckdb_p50_ms").map(&f).unwrap_or_else(|| "-".into()),
            q.get("ratio_to_duckdb")
                .map(&f)
                .unwrap_or_else(|| "-".into()),
        ));
    }
    out.push_str(&format!(
        "\nServer peak RSS after restart and queries: {} MB.\n",
        f(&r["query_peak_rss_mb"])
    ));
    out.push_str("\n## Targets\n\n| target | goal | measured | met |\n|---|---|---|---|\n");
    for t in targets {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            t.name,
            t.goal,
            t.measured,
            if t.met { "yes" } else { "no" }
        ));
    }
    out
}

pub(crate) fn json_report(report: &Value, targets: &[Target]) -> Value {
    let mut report = report.clone();
    report["targets"] = Value::Array(
        targets
            .iter()
            .map(|t| json!({"name": t.name, "goal": t.goal, "measured": t.measured, "met": t.met}))
            .collect(),
    );
    report
}
