//! The web UI in a real browser: `ui/tests/e2e.mjs` (playwright-core driving Debian's chromium)
//! against this hearth, fed real profiles at known times. What a person should see (the top
//! function, a search's share, the function a diff must mark) is computed here from the
//! decoded fixture with the reference code, not Hearth's; screenshots land in
//! `target/ui-screenshots`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use hearth_proto::pprof::Profile;
use prost::Message;
use serde_json::json;

use super::expected::{decode, facts};
use super::reference::frames;
use super::support::{Hearth, at_time, fixture, now_nanos};

const SECOND: i64 = 1_000_000_000;
const PROFILE_TYPE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const SEARCH: &str = "runtime.";

/// `ui/node_modules`, installed from the lock file when missing (`.ci/run` installs it first).
fn ui_dir() -> &'static Path {
    let ui = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/ui"));
    if !ui.join("node_modules/playwright-core").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(ui)
            .status()
            .expect("npm runs");
        assert!(
            status.success(),
            "npm ci in ui/ failed: is the npm registry reachable?"
        );
    }
    ui
}

/// Per function: (self, total with recursion counted once) over every sample's `index` value.
fn function_values(p: &Profile, index: usize) -> BTreeMap<String, (i64, i64)> {
    let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for sample in &p.sample {
        let value = sample.value[index];
        let stack = frames(p, sample);
        if let Some(leaf) = stack.last() {
            out.entry(leaf.clone()).or_default().0 += value;
        }
        let mut seen: Vec<&String> = stack.iter().collect();
        seen.sort();
        seen.dedup();
        for name in seen {
            out.entry(name.clone()).or_default().1 += value;
        }
    }
    out
}

/// A CPU profile at `time` whose flame graph is wide: every stack of three frames out of 40
/// functions per level, so 40 + 40² + 40³ nodes under the root. Returns it with its node count
/// (the root included).
fn wide_profile(time: i64) -> (Vec<u8>, usize) {
    use hearth_proto::pprof::{Function, Line, Location, Mapping, Sample, ValueType};
    const FANOUT: u64 = 40;
    let mut string_table = vec![String::new(), "cpu".to_string(), "nanoseconds".to_string()];
    let (mut function, mut location) = (Vec::new(), Vec::new());
    for level in 0..3 {
        for i in 0..FANOUT {
            let id = level * FANOUT + i + 1;
            string_table.push(format!("wide.level{level}.f{i}"));
            function.push(Function {
                id,
                name: string_table.len() as i64 - 1,
                ..Default::default()
            });
            location.push(Location {
                id,
                mapping_id: 1,
                line: vec![Line {
                    function_id: id,
                    line: 1,
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
    }
    let mut sample = Vec::new();
    for a in 0..FANOUT {
        for b in 0..FANOUT {
            for c in 0..FANOUT {
                sample.push(Sample {
                    // Leaf first.
                    location_id: vec![2 * FANOUT + c + 1, FANOUT + b + 1, a + 1],
                    value: vec![10_000_000 * (1 + ((a + b + c) % 5) as i64)],
                    ..Default::default()
                });
            }
        }
    }
    let cpu = ValueType { r#type: 1, unit: 2 };
    let profile = Profile {
        sample_type: vec![cpu],
        period_type: Some(cpu),
        period: 10_000_000,
        sample,
        mapping: vec![Mapping {
            id: 1,
            has_functions: true,
            ..Default::default()
        }],
        location,
        function,
        string_table,
        time_nanos: time,
        ..Default::default()
    };
    let nodes = 1 + FANOUT + FANOUT.pow(2) + FANOUT.pow(3);
    (profile.encode_to_vec(), nodes as usize)
}

#[test]
fn the_ui_shows_what_the_profiles_hold() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: install Debian's chromium (`.ci/run` does) or set CHROMIUM"
    );
    let raw = fixture("pprof/large.cpu");
    let p = decode(&raw);
    let index = facts(&raw)
        .sample_types
        .iter()
        .position(|(t, u)| t == "cpu" && u == "nanoseconds")
        .expect("a cpu type");
    let values = function_values(&p, index);
    let mut by_self: Vec<(&String, &(i64, i64))> = values.iter().collect();
    by_self.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
    let top_self = by_self[0].0.clone();
    assert!(by_self[0].1.0 > by_self[1].1.0, "a unique top function");
    let total: i64 = p.sample.iter().map(|s| s.value[index]).sum();
    let matching: i64 = p
        .sample
        .iter()
        .filter(|s| frames(&p, s).iter().any(|f| f.contains(SEARCH)))
        .map(|s| s.value[index])
        .sum();
    // The widest child of the root: the bar the browser clicks to zoom.
    let mut roots: BTreeMap<String, i64> = BTreeMap::new();
    for sample in &p.sample {
        if let Some(first) = frames(&p, sample).first() {
            *roots.entry(first.clone()).or_default() += sample.value[index];
        }
    }
    let zoom_to = roots.iter().max_by_key(|(_, v)| **v).unwrap().0.clone();
    // The diff's comparison: the same profile with its heaviest stack ten times heavier, so
    // that stack's leaf grows most and has a bar wide enough to see.
    let mut by_stack: BTreeMap<Vec<String>, i64> = BTreeMap::new();
    for sample in &p.sample {
        *by_stack.entry(frames(&p, sample)).or_default() += sample.value[index];
    }
    let heaviest = by_stack.iter().max_by_key(|(_, v)| **v).unwrap().0.clone();
    let changed = heaviest.last().unwrap().clone();
    let mut busier = p.clone();
    for sample in &mut busier.sample {
        if frames(&p, sample) == heaviest {
            for v in &mut sample.value {
                *v *= 10;
            }
        }
    }
    let busier = busier.encode_to_vec();

    // A scrape target nothing answers: the Targets view shows it down with the reason.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hearth = Hearth::start_with_config(&format!(
        "scrape_configs:\n  - job_name: ui-dead\n    scrape_interval: 2s\n    static_configs: [{{targets: ['127.0.0.1:{dead}']}}]\n    profiling_config: {{pprof_config: {{process_cpu: {{enabled: false}}, memory: {{enabled: false}}, mutex: {{enabled: false}}, block: {{enabled: false}}}}}}\n"
    ));
    let labels = [("__name__", "process_cpu"), ("service_name", "ui-app")];
    let base = now_nanos() / (60 * SECOND) * (60 * SECOND) - 3 * 3600 * SECOND;
    let points = 5;
    for i in 0..points {
        let at = base + i * 60 * SECOND;
        let response = hearth.push(None, &labels, &at_time(&raw, at));
        assert_eq!(response.status(), 200);
        let response = hearth.push(None, &labels, &at_time(&busier, at + 3600 * SECOND));
        assert_eq!(response.status(), 200);
    }
    let (wide, wide_nodes) = wide_profile(base);
    let response = hearth.push(
        None,
        &[("__name__", "process_cpu"), ("service_name", "ui-wide")],
        &wide,
    );
    assert_eq!(response.status(), 200);
    let ms = |nanos: i64| nanos / 1_000_000;
    let explore = (ms(base - 60 * SECOND), ms(base + points * 60 * SECOND));
    let right = (explore.0 + 3_600_000, explore.1 + 3_600_000);
    let input = json!({
        "url": hearth.url("/"),
        "screenshots": concat!(env!("CARGO_MANIFEST_DIR"), "/target/ui-screenshots"),
        "profileType": PROFILE_TYPE,
        "service": "ui-app",
        "from": explore.0,
        "until": explore.1,
        "maxNodes": 1_048_576,
        "topSelf": top_self,
        "points": points,
        "search": SEARCH,
        "searchShare": format!("{:.2}", 100.0 * matching as f64 / total as f64),
        "zoomTo": zoom_to,
        "diff": {"left": [explore.0, explore.1], "right": [right.0, right.1], "changed": changed},
        "emptyRange": [explore.0 - 7_200_000, explore.0 - 3_600_000],
        "wide": {"service": "ui-wide", "nodes": wide_nodes},
        "targets": {"job": "ui-dead", "url": format!("http://127.0.0.1:{dead}/debug/pprof/goroutine")},
    });
    let output = Command::new("node")
        .arg("tests/e2e.mjs")
        .arg(input.to_string())
        .current_dir(ui_dir())
        .env("CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "UI checks failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        hearth.log()
    );
}
