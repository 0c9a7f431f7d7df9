//! A week-long flame graph (issue 15's figure): `--days` of 10 s profiles for `--services`
//! services x `--pods` pods, pushed to one `all` process as time-shifted copies of the real
//! fixtures (the e2e workload's services, each profile a random subset of its fixture's
//! samples, at most `--max-samples`, scaled), flushed to blocks by a graceful restart and
//! compacted. The flame graph of one service over the whole range, and its CPU per pod by the
//! hour (`SelectSeries`), are then timed reading the blocks' hourly rollups, and again after a
//! restart with `query.rollups: false` (every sample and profile read), in one run, so the
//! ratios hold whatever this machine's speed that day. `--reuse` times them again over the
//! blocks a previous run left. See `benches/README.md`.

#[path = "e2e/client.rs"]
#[allow(dead_code)]
mod client;
#[path = "support/mod.rs"]
mod support;
#[path = "e2e/workload.rs"]
#[allow(dead_code)]
mod workload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use hearth_engine::compression::gzip;
use hearth_proto::pprof::Profile;
use hearth_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
use hearth_proto::querier::v1::{
    SelectMergeStacktracesRequest, SelectMergeStacktracesResponse, SelectSeriesRequest,
    SelectSeriesResponse,
};
use hearth_proto::types::v1::LabelPair;
use prost::Message;
use reqwest::blocking::Client;
use serde_json::{Value, json};

use client::{connect_call_as, percentile};
use support::{counter, rss_mb, start_configured, stop};
use workload::{Rng, Service};

const HOUR_NANOS: i64 = 3_600_000_000_000;
/// One profile every 10 s.
const ROUNDS_PER_HOUR: usize = 360;
/// Profiles per push: ten minutes of one pod (each profile carries its own symbol tables, so
/// an hour of the large ones is past the request size limit).
const ROUNDS_PER_PUSH: usize = 60;
const PUSHES_PER_HOUR: usize = ROUNDS_PER_HOUR / ROUNDS_PER_PUSH;
/// Varied copies of each fixture per service: profile k of a pod is copy `k % VARIANTS`.
const VARIANTS: usize = 16;

struct Flags {
    days: usize,
    services: usize,
    pods: usize,
    max_samples: usize,
    queries: usize,
    raw_queries: usize,
    clients: usize,
    out: PathBuf,
    /// Time the queries over the blocks a previous run left in `out` instead of ingesting.
    reuse: bool,
}

impl Flags {
    fn parse() -> Flags {
        let mut flags = Flags {
            days: 7,
            services: 10,
            pods: 10,
            max_samples: 100,
            queries: 10,
            raw_queries: 3,
            clients: 2,
            out: PathBuf::from("target/bench-long-range"),
            reuse: false,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut number = || -> usize {
                it.next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{flag} takes a whole number"))
            };
            match flag.as_str() {
                "--days" => flags.days = number(),
                "--services" => flags.services = number(),
                "--pods" => flags.pods = number(),
                "--max-samples" => flags.max_samples = number(),
                "--queries" => flags.queries = number(),
                "--raw-queries" => flags.raw_queries = number(),
                "--clients" => flags.clients = number(),
                "--out" => flags.out = PathBuf::from(it.next().expect("--out takes a folder")),
                "--reuse" => flags.reuse = true,
                "--bench" => {}
                other => panic!("unknown flag {other}"),
            }
        }
        flags
    }
}

/// `VARIANTS` varied copies of each of a service's fixtures (by series name): a random subset
/// of at most `max_samples` samples with scaled values, as the e2e workload varies them.
fn variants(service: &Service, max_samples: usize, seed: u64) -> Vec<Vec<Profile>> {
    let mut rng = Rng::new(seed);
    service
        .profiles
        .iter()
        .map(|(_, base)| {
            (0..VARIANTS)
                .map(|_| {
                    let keep = 0.6 + 0.3 * rng.unit();
                    let mut p = base.clone();
                    p.sample.retain(|_| rng.unit() < keep);
                    p.sample.truncate(max_samples.min(service.max_samples));
                    for sample in &mut p.sample {
                        let factor = 1 + (rng.next() % 4) as i64;
                        for v in &mut sample.value {
                            *v *= factor;
                        }
                    }
                    p.duration_nanos = 10_000_000_000;
                    prune(&mut p);
                    p
                })
                .collect()
        })
        .collect()
}

/// `profile` with only the locations, functions, mappings and strings its samples use, as an
/// agent sends it (a cut-down copy of a large fixture would otherwise carry all its symbols).
fn prune(profile: &mut Profile) {
    use std::collections::{HashMap, HashSet};
    let locations: HashSet<u64> = profile
        .sample
        .iter()
        .flat_map(|s| s.location_id.iter().copied())
        .collect();
    profile.location.retain(|l| locations.contains(&l.id));
    let functions: HashSet<u64> = profile
        .location
        .iter()
        .flat_map(|l| l.line.iter().map(|line| line.function_id))
        .collect();
    profile.function.retain(|f| functions.contains(&f.id));
    let mappings: HashSet<u64> = profile.location.iter().map(|l| l.mapping_id).collect();
    profile.mapping.retain(|m| mappings.contains(&m.id));

    let old = std::mem::take(&mut profile.string_table);
    let mut table = vec![String::new()];
    let mut index: HashMap<i64, i64> = HashMap::from([(0, 0)]);
    let mut keep = |i: &mut i64| {
        let next = table.len() as i64;
        let new = *index.entry(*i).or_insert_with(|| {
            table.push(old.get(*i as usize).cloned().unwrap_or_default());
            next
        });
        *i = new;
    };
    for t in profile
        .sample_type
        .iter_mut()
        .chain(profile.period_type.as_mut())
    {
        keep(&mut t.r#type);
        keep(&mut t.unit);
    }
    for label in profile.sample.iter_mut().flat_map(|s| s.label.iter_mut()) {
        keep(&mut label.key);
        keep(&mut label.str);
        keep(&mut label.num_unit);
    }
    for f in &mut profile.function {
        keep(&mut f.name);
        keep(&mut f.system_name);
        keep(&mut f.filename);
    }
    for m in &mut profile.mapping {
        keep(&mut m.filename);
        keep(&mut m.build_id);
    }
    for i in profile.comment.iter_mut() {
        keep(i);
    }
    keep(&mut profile.drop_frames);
    keep(&mut profile.keep_frames);
    keep(&mut profile.default_sample_type);
    keep(&mut profile.doc_url);
    profile.string_table = table;
}

/// One push: a pod's profiles of `ROUNDS_PER_PUSH` rounds from round `first` on, every series
/// of its service.
fn push_body(
    service: &Service,
    variants: &[Vec<Profile>],
    pod: usize,
    start: i64,
    first: usize,
) -> Vec<u8> {
    let pod_name = format!("{}-{pod}", service.name);
    let series = service
        .profiles
        .iter()
        .zip(variants)
        .map(|((name, _), copies)| {
            let labels = [
                ("__name__", *name),
                ("service_name", service.name.as_str()),
                ("pod", pod_name.as_str()),
            ];
            RawProfileSeries {
                labels: labels
                    .iter()
                    .map(|(name, value)| LabelPair {
                        name: name.to_string(),
                        value: value.to_string(),
                    })
                    .collect(),
                samples: (first..first + ROUNDS_PER_PUSH)
                    .map(|round| {
                        let mut profile = copies[(round + pod) % VARIANTS].clone();
                        profile.time_nanos = start + round as i64 * 10_000_000_000;
                        RawSample {
                            // Gzipped, as the Go SDK sends each profile.
                            raw_profile: gzip(&profile.encode_to_vec()).into(),
                            id: format!("{pod_name}-{round}"),
                        }
                    })
                    .collect(),
                annotations: vec![],
            }
        })
        .collect();
    PushRequest { series }.encode_to_vec()
}

/// Pushes every (ten minutes, service, pod) from `flags.clients` threads; returns profiles
/// pushed.
fn ingest(flags: &Flags, addr: &str, services: &Arc<Vec<Service>>, start: i64) -> usize {
    let variants: Arc<Vec<Vec<Vec<Profile>>>> = Arc::new(
        services
            .iter()
            .enumerate()
            .map(|(i, s)| variants(s, flags.max_samples, i as u64 + 1))
            .collect(),
    );
    let hours = flags.days * 24;
    let total = hours * PUSHES_PER_HOUR * services.len() * flags.pods;
    let next = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..flags.clients)
        .map(|_| {
            let (next, services, variants, addr) = (
                Arc::clone(&next),
                Arc::clone(services),
                Arc::clone(&variants),
                addr.to_string(),
            );
            let pods = flags.pods;
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(None)
                    .build()
                    .unwrap();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let (push, rest) = (i / (services.len() * pods), i % (services.len() * pods));
                    let (service, pod) = (rest / pods, rest % pods);
                    let body = push_body(
                        &services[service],
                        &variants[service],
                        pod,
                        start,
                        push * ROUNDS_PER_PUSH,
                    );
                    let response = client
                        .post(format!("http://{addr}/push.v1.PusherService/Push"))
                        .header("content-type", "application/proto")
                        .body(body)
                        .send()
                        .expect("push sent");
                    let status = response.status().as_u16();
                    assert_eq!(status, 200, "{}", response.text().unwrap_or_default());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    services.iter().map(|s| s.profiles.len()).sum::<usize>() * flags.pods * hours * ROUNDS_PER_HOUR
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// `call`'s p50 and p99 over `runs` calls after one warm-up, and the server's peak RSS; and
/// its answer, the same every time.
fn time_calls<T: PartialEq + std::fmt::Debug>(
    pid: u32,
    runs: usize,
    call: impl Fn() -> T,
) -> (Value, T) {
    let answer = call();
    let mut ms: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            assert_eq!(call(), answer, "the same answer every time");
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let figures = json!({
        "p50_ms": percentile(&ms, 0.5),
        "p99_ms": percentile(&ms, 0.99),
        "runs": ms.len(),
        "peak_rss_mb": rss_mb(pid),
    });
    (figures, answer)
}

/// What one process on the blocks answers: the flame graph's figures and total, then the
/// series' figures and answer.
struct Answers {
    flame_graph: Value,
    total: i64,
    series: Value,
    points: SelectSeriesResponse,
}

/// Starts a process on `data` with `yaml`, times the flame graph and then the series `runs`
/// times each, and stops it.
fn time_queries(
    data: &Path,
    yaml: &str,
    runs: usize,
    flame_graph: &SelectMergeStacktracesRequest,
    series: &SelectSeriesRequest,
) -> Answers {
    let (child, addr) = start_for_queries(data, yaml);
    let client = Client::builder().timeout(None).build().unwrap();
    fn call<M: Message>(client: &Client, addr: &str, method: &str, request: &M) -> Vec<u8> {
        connect_call_as(client, addr, None, method, request)
            .unwrap_or_else(|(status, body)| panic!("{method}: {status} {body}"))
    }
    let (flame_figures, total) = time_calls(child.id(), runs, || {
        let bytes = call(&client, &addr, "SelectMergeStacktraces", flame_graph);
        let answer = SelectMergeStacktracesResponse::decode(bytes.as_slice()).unwrap();
        answer.flamegraph.map_or(0, |f| f.total)
    });
    let (series_figures, points) = time_calls(child.id(), runs, || {
        let bytes = call(&client, &addr, "SelectSeries", series);
        SelectSeriesResponse::decode(bytes.as_slice()).unwrap()
    });
    stop(child);
    Answers {
        flame_graph: flame_figures,
        total,
        series: series_figures,
        points,
    }
}

/// Starts a fresh process on `data`, pushes the whole workload, flushes it by a graceful
/// stop; returns what was ingested over which range, and how fast.
fn ingest_workload(flags: &Flags, services: &Arc<Vec<Service>>, data: &Path) -> Value {
    let _ = std::fs::remove_dir_all(data);
    std::fs::create_dir_all(data).unwrap();
    // Whole hours ending at the last hour boundary.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let end = now / HOUR_NANOS * HOUR_NANOS;
    let start = end - (flags.days * 24) as i64 * HOUR_NANOS;

    let (child, addr) = start_configured(data, "");
    let began = Instant::now();
    let profiles = ingest(flags, &addr, services, start);
    let ingest_s = began.elapsed().as_secs_f64();
    let flushed = Instant::now();
    stop(child);
    let flush_s = flushed.elapsed().as_secs_f64();
    let compaction_s = settle_compaction(data);
    json!({
        "days": flags.days,
        "services": flags.services,
        "pods": flags.pods,
        "max_samples": flags.max_samples,
        "start_nanos": start,
        "end_nanos": end,
        "profiles": profiles,
        "seconds": ingest_s,
        "profiles_per_second": profiles as f64 / ingest_s,
        "shutdown_flush_seconds": flush_s,
        "compaction_settled_seconds": compaction_s,
    })
}

/// Runs a process on `data` until a compaction cycle finds nothing to merge (the blocks a
/// real deployment would query), so no merge runs while queries are timed; returns the time
/// it took.
fn settle_compaction(data: &Path) -> f64 {
    let began = Instant::now();
    let (child, addr) = start_configured(data, "compactor:\n  compaction_interval: 5s\n");
    let mut seen = (counter(&addr, "hearth_compactor_cycles"), -1.0);
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let cycles = counter(&addr, "hearth_compactor_cycles");
        if cycles > seen.0 {
            let merges = counter(&addr, "hearth_compactor_merges");
            if merges == seen.1 {
                break;
            }
            seen = (cycles, merges);
        }
    }
    stop(child);
    began.elapsed().as_secs_f64()
}

/// Starts a process on `data` that compacts nothing (everything was merged before) and waits
/// for its first compaction cycle, which runs at start.
fn start_for_queries(data: &Path, yaml: &str) -> (std::process::Child, String) {
    let (child, addr) = start_configured(data, yaml);
    while counter(&addr, "hearth_compactor_cycles") < 1.0 {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    (child, addr)
}

fn main() {
    let flags = Flags::parse();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let kinds = workload::kinds(root);
    let services = Arc::new(workload::services(&kinds, flags.services));
    let data = flags.out.join("data");
    let ingested = flags.out.join("ingest.json");
    let ingest = if flags.reuse {
        let text = std::fs::read_to_string(&ingested)
            .unwrap_or_else(|e| panic!("--reuse needs a previous run's {ingested:?}: {e}"));
        serde_json::from_str(&text).expect("ingest.json parses")
    } else {
        let ingest = ingest_workload(&flags, &services, &data);
        std::fs::write(&ingested, ingest.to_string()).unwrap();
        ingest
    };
    let (start, end) = (
        ingest["start_nanos"].as_i64().unwrap(),
        ingest["end_nanos"].as_i64().unwrap(),
    );

    // A CPU service (the first kind is Python CPU): its flame graph, and its CPU per pod by
    // the hour (whole hours on hour boundaries), over the whole range.
    let selector = format!("{{service_name=\"{}\"}}", services[0].name);
    let cpu = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
    let flame_graph = SelectMergeStacktracesRequest {
        profile_type_id: cpu.into(),
        label_selector: selector.clone(),
        start: start / 1_000_000,
        end: end / 1_000_000,
        max_nodes: Some(8192),
        ..Default::default()
    };
    let series = SelectSeriesRequest {
        profile_type_id: cpu.into(),
        label_selector: selector,
        start: start / 1_000_000,
        end: end / 1_000_000,
        group_by: vec!["pod".into()],
        step: 3600.0,
        ..Default::default()
    };
    let rollups = time_queries(&data, "", flags.queries, &flame_graph, &series);
    let samples = time_queries(
        &data,
        "query:\n  rollups: false\n",
        flags.raw_queries,
        &flame_graph,
        &series,
    );
    assert_eq!(
        rollups.total, samples.total,
        "rollups and samples answer the same"
    );
    assert_eq!(
        rollups.points, samples.points,
        "rollups and profiles answer the same"
    );
    let ratio = |slow: &Value, fast: &Value| {
        slow["p50_ms"].as_f64().unwrap() / fast["p50_ms"].as_f64().unwrap().max(1e-9)
    };

    let report = json!({
        "ingest": ingest,
        "blocks_bytes": dir_bytes(&data.join("blocks")),
        "flame_graph_one_service_whole_range": {
            "total": rollups.total,
            "rollups": rollups.flame_graph,
            "samples": samples.flame_graph,
            "samples_over_rollups_p50": ratio(&samples.flame_graph, &rollups.flame_graph),
        },
        "series_one_service_by_pod_hourly_whole_range": {
            "series": rollups.points.series.len(),
            "points": rollups.points.series.iter().map(|s| s.points.len()).sum::<usize>(),
            "rollups": rollups.series,
            "profiles": samples.series,
            "profiles_over_rollups_p50": ratio(&samples.series, &rollups.series),
        },
    });
    let text = serde_json::to_string_pretty(&report).unwrap();
    std::fs::write(flags.out.join("report.json"), &text).unwrap();
    println!("{text}");
}
