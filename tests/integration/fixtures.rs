//! Every real profile and every recorded client request goes in with the status a Pyroscope
//! server gives; what is stored (series, profile types, per-type totals) equals what the test
//! computes from the decoded pprof; after a graceful restart it reads back from blocks the same.

use std::collections::{BTreeMap, BTreeSet};

use hearth_proto::push::v1::PushRequest;
use prost::Message;

use super::blocks;
use super::expected::{Expectations, facts};
use super::support::{Hearth, fixture, fixtures, gunzip_if_gzip};

/// The profile files, pushed as they are.
pub(crate) const PROFILES: &[&str] = &[
    "pprof/large.cpu",
    "pprof/cppbench.cpu_no_samples_type",
    "pprof/go.nomappings.crash",
    "parca/fgprof.pb.gz",
    "parca/node-profile.pb.gz",
    "parca/profile-with-labels.pb.gz",
    "parca/stripped-cpu.stripped.pprof",
    "captures/extracted/py-001.s0.r0.pb",
    "captures/extracted/py-005.s0.r0.pb",
    "captures/extracted/py-005.s1.r0.pb",
];

/// The profile name Pyroscope derives on `/ingest` for each recorded legacy upload.
fn legacy_name(capture: &str) -> &'static str {
    match capture {
        "py08-001" | "py08-002" => "process_cpu",
        "node-001" | "node04-001" => "wall",
        "node-002" | "node04-002" => "memory",
        other => panic!("no expectation for capture {other}"),
    }
}

struct Capture {
    name: String,
    method: String,
    raw_path: String,
    headers: Vec<(String, String)>,
    query: Vec<(String, String)>,
    body: Vec<u8>,
}

fn captures() -> Vec<Capture> {
    let dir = fixtures().join("captures");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            e.unwrap()
                .file_name()
                .to_str()?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let meta: serde_json::Value =
                serde_json::from_slice(&fixture(&format!("captures/{name}.json"))).unwrap();
            let pairs = |v: &serde_json::Value| -> Vec<(String, String)> {
                v.as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        (
                            p[0].as_str().unwrap().to_string(),
                            p[1].as_str().unwrap().to_string(),
                        )
                    })
                    .collect()
            };
            Capture {
                method: meta["method"].as_str().unwrap().to_string(),
                raw_path: meta["raw_path"].as_str().unwrap().to_string(),
                headers: pairs(&meta["headers"]),
                query: pairs(&meta["query"]),
                body: fixture(&format!("captures/{name}.body")),
                name,
            }
        })
        .collect()
}

/// The `profile` part of a multipart body.
fn multipart_profile(body: &[u8], content_type: &str) -> Vec<u8> {
    let boundary = content_type.split("boundary=").nth(1).unwrap();
    let start = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap();
    let end_marker = format!("\r\n--{boundary}");
    let end = start
        + body[start..]
            .windows(end_marker.len())
            .position(|w| w == end_marker.as_bytes())
            .unwrap();
    body[start..end].to_vec()
}

fn names_of(pairs: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    pairs.into_iter().map(|n| n.replace('.', "_")).collect()
}

/// Replays a capture with its method, path, query and headers.
fn replay(hearth: &Hearth, capture: &Capture) -> u16 {
    let method = reqwest::Method::from_bytes(capture.method.as_bytes()).unwrap();
    let mut request = hearth.client.request(method, hearth.url(&capture.raw_path));
    for (name, value) in &capture.headers {
        if !["host", "content-length", "connection"].contains(&name.to_ascii_lowercase().as_str()) {
            request = request.header(name, value);
        }
    }
    let response = request.body(capture.body.clone()).send().unwrap();
    let status = response.status().as_u16();
    assert_eq!(
        status,
        200,
        "{}: {}",
        capture.name,
        response.text().unwrap()
    );
    status
}

fn expect_capture(expected: &mut Expectations, capture: &Capture) {
    let header = |name: &str| {
        capture
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    if capture.raw_path.starts_with("/push.v1") {
        let request = PushRequest::decode(gunzip_if_gzip(&capture.body).as_slice()).unwrap();
        for series in request.series {
            let label = |name: &str| {
                series
                    .labels
                    .iter()
                    .find(|l| l.name == name)
                    .map(|l| l.value.clone())
            };
            let service = label("service_name").unwrap();
            let name = label("__name__").unwrap();
            let label_names = names_of(series.labels.iter().map(|l| l.name.clone()));
            for sample in &series.samples {
                expected.add(&service, &name, &label_names, &facts(&sample.raw_profile));
            }
        }
        return;
    }
    let query = |key: &str| {
        capture
            .query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    };
    let name_param = query("name").unwrap();
    let (app, tags) = match name_param.split_once('{') {
        Some((app, rest)) => (app.to_string(), rest.trim_end_matches('}').to_string()),
        None => (name_param.clone(), String::new()),
    };
    let mut label_names = names_of(
        tags.split(',')
            .filter(|p| !p.is_empty())
            .map(|p| p.split('=').next().unwrap().trim().to_string()),
    );
    label_names
        .extend(["service_name", "__name__", "__delta__", "pyroscope_spy"].map(String::from));
    let content_type = header("content-type").unwrap_or_default();
    let pprof = if query("format").as_deref() == Some("pprof") {
        capture.body.clone()
    } else {
        multipart_profile(&capture.body, content_type)
    };
    expected.add(
        &app,
        legacy_name(&capture.name),
        &label_names,
        &facts(&pprof),
    );
}

#[test]
fn every_fixture_profile_and_capture_is_stored_exactly() {
    let mut hearth = Hearth::start();
    let mut expected = Expectations::default();

    for file in PROFILES {
        let service = format!("fixture-{}", file.rsplit('/').next().unwrap());
        let bytes = fixture(file);
        let response = hearth.push(
            None,
            &[("__name__", "fixture"), ("service_name", &service)],
            &bytes,
        );
        assert_eq!(
            response.status().as_u16(),
            200,
            "{file}: {}",
            response.text().unwrap()
        );
        let label_names = names_of(["__name__".to_string(), "service_name".to_string()]);
        expected.add(&service, "fixture", &label_names, &facts(&bytes));
    }
    for capture in captures() {
        assert_eq!(replay(&hearth, &capture), 200);
        expect_capture(&mut expected, &capture);
    }

    // Profile types: every expected one is listed.
    let (status, body) = hearth.connect_json(
        None,
        "/querier.v1.QuerierService/ProfileTypes",
        serde_json::json!({}),
    );
    assert_eq!(status, 200);
    let listed: BTreeSet<String> = body["profileTypes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["ID"].as_str().unwrap().to_string())
        .collect();
    let wanted: BTreeSet<String> = expected.totals.keys().map(|(_, t)| t.clone()).collect();
    assert_eq!(listed, wanted);

    // Series: as many as label groups x sample types, with the expected profile types.
    let check_series = |hearth: &Hearth| -> BTreeMap<String, Vec<Vec<(String, String)>>> {
        let mut all = BTreeMap::new();
        for (service, series) in &expected.series {
            let sets = hearth.series(None, &[&format!("{{service_name=\"{service}\"}}")]);
            assert_eq!(sets.len(), series.len(), "series of {service}");
            let types: BTreeSet<String> = sets
                .iter()
                .map(|s| {
                    s.iter()
                        .find(|(n, _)| n == "__profile_type__")
                        .unwrap()
                        .1
                        .clone()
                })
                .collect();
            assert_eq!(
                types,
                expected.profile_types(service),
                "profile types of {service}"
            );
            all.insert(service.clone(), sets);
        }
        all
    };
    let from_head = check_series(&hearth);

    // Graceful stop: everything is in a block, with the expected totals on disk.
    hearth.stop();
    let (stored, rows) = blocks::totals(hearth.data_dir(), "anonymous");
    assert!(
        rows > 20_000,
        "large.cpu alone has 20k samples, stored {rows}"
    );
    let wanted: BTreeMap<_, _> = expected
        .totals
        .iter()
        .filter(|(_, t)| **t != 0)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert_eq!(stored, wanted);

    // Restart: the same answers, now from the block.
    hearth.restart();
    assert_eq!(check_series(&hearth), from_head);
}
