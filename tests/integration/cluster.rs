//! The cluster as separate processes on loopback: a distributor, three ingesters (replication
//! factor 3) and a querier, their blocks in a real S3 server (no shared folder), checked
//! against a single `all` process given the same pushes. One scenario, in the order: exact answers with no double
//! counting (Connect and Flight SQL), `kill -9` of an ingester while pushing, its restart and
//! WAL replay, a fourth ingester joining, and a distributor without healthy ingesters.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::support::{Hearth, S3Server, at_time, fixture, urlencode};

const PROFILE_TYPE: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

fn udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Nodes of one cluster on loopback: blocks in one bucket of an S3 server (no shared folder),
/// gossip seeded by the first node started.
pub(crate) struct Cluster {
    config: String,
    storage: Vec<String>,
    seed: u16,
    seeded: Cell<bool>,
}

impl Cluster {
    /// A cluster keeping its blocks in `bucket`, with `extra` appended to every node's config.
    ///
    /// Each cluster has its own `cluster_id`: tests run side by side, and a node that takes a
    /// gossip port another test's nodes still send to must not merge the two clusters.
    pub(crate) fn new(s3: &S3Server, bucket: &str, extra: &str) -> Self {
        let seed = udp_port();
        Cluster {
            config: format!(
                "cluster:\n  cluster_id: test-{}-{seed}\n  gossip_interval: 100ms\n  replication_factor: 3\n{extra}",
                std::process::id()
            ),
            storage: s3.flags(bucket),
            seed,
            seeded: Cell::new(false),
        }
    }

    pub(crate) fn start(&self, target: &str, id: &str) -> Hearth {
        self.start_with(target, id, "")
    }

    /// [`Cluster::start`] with `extra` appended to this node's config.
    pub(crate) fn start_with(&self, target: &str, id: &str, extra: &str) -> Hearth {
        let gossip = match self.seeded.replace(true) {
            false => self.seed,
            true => udp_port(),
        };
        let mut args = [
            "--target",
            target,
            "--node-id",
            id,
            "--gossip-addr",
            &format!("127.0.0.1:{gossip}"),
            "--gossip-seeds",
            &format!("127.0.0.1:{}", self.seed),
        ]
        .map(str::to_string)
        .to_vec();
        args.extend(self.storage.iter().cloned());
        let flight = match target {
            "ingester" => Some("ingester flight listening"),
            "querier" => Some("flight sql listening"),
            "query-frontend" => Some("query scheduler flight listening"),
            _ => None,
        };
        Hearth::start_node(&format!("{}{extra}", self.config), args, flight)
    }
}

/// Polls `/ring` of `node` until `ok` holds for its nodes.
pub(crate) fn wait_ring(node: &Hearth, what: &str, ok: impl Fn(&[Value]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ring: Value = serde_json::from_str(&node.get("/ring").text().unwrap()).unwrap();
        let nodes = ring["nodes"].as_array().cloned().unwrap_or_default();
        if ok(&nodes) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {ring}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub(crate) fn active_ingesters(nodes: &[Value]) -> Vec<String> {
    active(nodes, "ingester")
}

/// The ids of the `/ring` nodes running `role` that are active.
pub(crate) fn active(nodes: &[Value], role: &str) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n["roles"][0] == role && n["state"] == "active")
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect()
}

/// The profiles pushed in round `round`: three services, two real Python captures.
pub(crate) type Labels = Vec<(String, String)>;

pub(crate) fn pushes(round: usize) -> Vec<(Labels, Vec<u8>)> {
    let files = [
        "captures/extracted/py-001.s0.r0.pb",
        "captures/extracted/py-005.s1.r0.pb",
    ];
    (0..3)
        .map(|service| {
            let labels = vec![
                ("__name__".to_string(), "process_cpu".to_string()),
                ("service_name".to_string(), format!("svc-{service}")),
                ("pod".to_string(), format!("pod-{}", round % 2)),
                ("round".to_string(), round.to_string()),
            ];
            (labels, fixture(files[(round + service) % files.len()]))
        })
        .collect()
}

pub(crate) fn push(node: &Hearth, labels: &[(String, String)], pprof: &[u8]) -> (u16, String) {
    let labels: Vec<(&str, &str)> = labels
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let response = node.push(None, &labels, pprof);
    (response.status().as_u16(), response.text().unwrap())
}

/// Round `round`'s profiles (see [`pushes`]), stamped at `time_ms` when given, pushed to each of
/// `nodes`; every push must be accepted.
pub(crate) fn push_round(nodes: &[&Hearth], round: usize, time_ms: Option<i64>) {
    for (labels, pprof) in pushes(round) {
        let pprof = match time_ms {
            Some(ms) => at_time(&pprof, ms * 1_000_000),
            None => pprof,
        };
        for node in nodes {
            let (status, body) = push(node, &labels, &pprof);
            assert_eq!(status, 200, "{body}");
        }
    }
}

/// Every Connect query method's answer and the legacy render's, for comparing two deployments.
fn answers(node: &Hearth) -> Vec<(String, Value)> {
    answers_over(node, 1, 4_000_000_000_000)
}

/// [`answers`] over the range `start..=end` (Unix milliseconds).
pub(crate) fn answers_over(node: &Hearth, start: i64, end: i64) -> Vec<(String, Value)> {
    let mut calls = vec![
        ("ProfileTypes", json!({"start": start, "end": end})),
        ("LabelNames", json!({"start": start, "end": end})),
        (
            "LabelValues",
            json!({"name": "service_name", "start": start, "end": end}),
        ),
        (
            "LabelValues",
            json!({"name": "round", "start": start, "end": end}),
        ),
        (
            "Series",
            json!({"matchers": ["{}"], "start": start, "end": end}),
        ),
        // Label matchers are pushed down to the ingesters' postings.
        (
            "LabelValues",
            json!({"name": "pod", "matchers": ["{service_name=\"svc-1\"}"],
                   "start": start, "end": end}),
        ),
        (
            "LabelNames",
            json!({"matchers": ["{service_name=~\"svc-[12]\"}"], "start": start, "end": end}),
        ),
        (
            "Series",
            json!({"matchers": ["{pod=\"pod-0\"}"], "start": start, "end": end}),
        ),
        (
            "SelectSeries",
            json!({"profileTypeID": PROFILE_TYPE, "labelSelector": "{}", "start": start, "end": end,
                   "step": 1_000_000_000.0, "groupBy": ["service_name"]}),
        ),
    ];
    for selector in ["{}", "{service_name=\"svc-1\"}", "{pod=\"pod-0\"}"] {
        calls.push((
            "SelectMergeStacktraces",
            json!({"profile_typeID": PROFILE_TYPE, "label_selector": selector, "start": start,
                   "end": end, "max_nodes": 64}),
        ));
        calls.push((
            "SelectMergeProfile",
            json!({"profile_typeID": PROFILE_TYPE, "label_selector": selector, "start": start,
                   "end": end}),
        ));
    }
    calls
        .into_iter()
        .map(|(method, body)| {
            let (status, answer) = node.connect_json(
                None,
                &format!("/querier.v1.QuerierService/{method}"),
                body.clone(),
            );
            assert_eq!(status, 200, "{method} {body}: {answer}");
            let answer = if method == "SelectMergeProfile" {
                pprof_stacks(&answer)
            } else {
                answer
            };
            (format!("{method} {body}"), answer)
        })
        .chain(
            ["{}", "{service_name=\"svc-1\"}"]
                .into_iter()
                .map(|selector| {
                    // The legacy render API, over a fixed range so both sides draw the same timeline.
                    let query = format!("{PROFILE_TYPE}{selector}");
                    let path = format!(
                        "/pyroscope/render?query={}&from={}&until={}",
                        urlencode(&query),
                        (start / 1000).max(86_400),
                        end / 1000
                    );
                    let response = node.get(&path);
                    assert_eq!(response.status(), 200, "{path}");
                    let answer: Value = serde_json::from_str(&response.text().unwrap()).unwrap();
                    (format!("render {query}"), answer)
                }),
        )
        .collect()
}

/// A merged pprof (protojson) as its value per stack of function names and its period: ids
/// and the order of the tables depend on the merge order, these do not.
fn pprof_stacks(profile: &Value) -> Value {
    let number = |v: &Value| -> i64 {
        v.as_str()
            .map(|s| s.parse().unwrap())
            .or(v.as_i64())
            .unwrap_or(0)
    };
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let strings: Vec<String> = list(&profile["stringTable"])
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let functions: HashMap<i64, String> = list(&profile["function"])
        .iter()
        .map(|f| {
            (
                number(&f["id"]),
                strings[number(&f["name"]) as usize].clone(),
            )
        })
        .collect();
    let locations: HashMap<i64, Vec<String>> = list(&profile["location"])
        .iter()
        .map(|l| {
            let names = list(&l["line"])
                .iter()
                .map(|line| functions[&number(&line["functionId"])].clone())
                .collect();
            (number(&l["id"]), names)
        })
        .collect();
    let mut stacks: BTreeMap<String, i64> = BTreeMap::new();
    for sample in list(&profile["sample"]) {
        let stack: Vec<String> = list(&sample["locationId"])
            .iter()
            .flat_map(|id| locations[&number(id)].clone())
            .collect();
        *stacks.entry(stack.join(";")).or_default() += number(&sample["value"][0]);
    }
    json!({"stacks": stacks, "period": profile["period"], "samples": list(&profile["sample"]).len()})
}

/// Totals through Flight SQL, with the Rust Flight SQL client.
fn sql_totals(node: &Hearth) -> Vec<String> {
    [
        "SELECT count(*) AS profiles, sum(total_value) AS total FROM profiles",
        "SELECT service_name, sum(value) AS total, count(*) AS rows FROM samples GROUP BY service_name ORDER BY service_name",
        "SELECT label(s.labels, 'round') AS round, sum(p.total_value) AS total FROM profiles p \
         JOIN (SELECT DISTINCT series_id, labels FROM series) s ON p.series_id = s.series_id \
         GROUP BY 1 ORDER BY 1",
    ]
    .into_iter()
    .map(|sql| format!("{sql}\n{}", sql_text(node, sql)))
    .collect()
}

/// The answer to `sql` through `node`'s Flight SQL, as a printed table.
pub(crate) fn sql_text(node: &Hearth, sql: &str) -> String {
    use arrow_flight::sql::client::FlightSqlServiceClient;
    use futures::TryStreamExt;
    let addr = node.flight_addr;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = FlightSqlServiceClient::new(channel);
        let info = client.execute(sql.to_string(), None).await.unwrap();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        let batches: Vec<arrow::array::RecordBatch> = client
            .do_get(ticket)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    })
}

pub(crate) fn assert_same(reference: &Hearth, querier: &Hearth, when: &str) {
    let (expected, got) = (answers(reference), answers(querier));
    // The comparison means something only if there is data to count.
    let flame = &expected
        .iter()
        .find(|(c, _)| c.starts_with("SelectMergeStacktraces"))
        .unwrap()
        .1;
    let total: i64 = flame["flamegraph"]["levels"][0]["values"][1]
        .as_str()
        .unwrap_or("0")
        .parse()
        .unwrap();
    assert!(
        total > 0,
        "{when}: the reference flame graph is empty: {flame}"
    );
    for ((call, want), (_, have)) in expected.iter().zip(&got) {
        assert_eq!(want, have, "{when}: {call} differs from a single process");
    }
    assert_eq!(
        sql_totals(reference),
        sql_totals(querier),
        "{when}: Flight SQL"
    );
}

#[test]
fn a_replicated_cluster_answers_like_one_process() {
    let s3 = S3Server::start();
    s3.create_bucket("cluster");
    let cluster = Cluster::new(&s3, "cluster", "");
    let reference = Hearth::start();
    let mut ingesters: Vec<Hearth> = (0..3)
        .map(|i| cluster.start("ingester", &format!("ingester-{i}")))
        .collect();
    let mut distributor = cluster.start("distributor", "distributor");
    let querier = cluster.start("querier", "querier");
    for node in [&distributor, &querier] {
        wait_ring(node, "three active ingesters", |n| {
            active_ingesters(n).len() == 3
        });
    }

    // 1. Every query method answers exactly what one process answers: no double counting.
    for round in 0..4 {
        for (labels, pprof) in pushes(round) {
            let (status, body) = push(&reference, &labels, &pprof);
            assert_eq!(status, 200, "{body}");
            let (status, body) = push(&distributor, &labels, &pprof);
            assert_eq!(status, 200, "{body}");
        }
    }
    assert_same(&reference, &querier, "three ingesters");

    // 2. kill -9 one ingester while pushing: pushes keep succeeding, nothing acknowledged is lost.
    for round in 4..10 {
        if round == 6 {
            ingesters[1].kill9();
        }
        for (labels, pprof) in pushes(round) {
            assert_eq!(push(&reference, &labels, &pprof).0, 200);
            let (status, body) = push(&distributor, &labels, &pprof);
            assert_eq!(status, 200, "round {round} with an ingester killed: {body}");
        }
    }
    wait_ring(&querier, "the killed ingester to be declared dead", |n| {
        active_ingesters(n).len() == 2
    });
    assert_same(&reference, &querier, "one ingester killed");

    // 2b. A second one killed: a profile acknowledged by a quorum of two may be on neither
    // live replica, so the querier refuses a partial answer (503 naming both).
    ingesters[2].kill9();
    wait_ring(
        &querier,
        "the second killed ingester to be declared dead",
        |n| active_ingesters(n).len() == 1,
    );
    let (status, body) = querier.connect_json(
        None,
        "/querier.v1.QuerierService/ProfileTypes",
        json!({"start": 1, "end": 4_000_000_000_000i64}),
    );
    let message = body.to_string();
    assert_eq!(status, 503, "two of three replicas gone: {message}");
    assert!(
        message.contains("ingester-1") && message.contains("ingester-2"),
        "the 503 names the ingesters out of reach: {message}"
    );
    ingesters[2].restart();

    // 3. Restarted, it replays its WAL and rejoins as active; answers stay exact.
    ingesters[1].restart();
    assert!(ingesters[1].log().contains("replayed wal segment"));
    wait_ring(&querier, "the restarted ingester to be active", |n| {
        active_ingesters(n).len() == 3
    });
    assert_same(&reference, &querier, "ingester restarted");

    // 4. A fourth ingester joins the ring, and new series land on it.
    let fourth = cluster.start("ingester", "ingester-3");
    wait_ring(&distributor, "a fourth ingester", |n| {
        active_ingesters(n).len() == 4
    });
    let pprof = fixture("captures/extracted/py-001.s0.r0.pb");
    for service in 0..12 {
        let labels = vec![
            ("__name__".to_string(), "process_cpu".to_string()),
            ("service_name".to_string(), format!("new-{service}")),
        ];
        assert_eq!(push(&reference, &labels, &pprof).0, 200);
        assert_eq!(push(&distributor, &labels, &pprof).0, 200);
    }
    let (_, on_fourth) = fourth.connect_json(
        None,
        "/querier.v1.QuerierService/LabelValues",
        json!({"name": "service_name"}),
    );
    let names = on_fourth["names"].as_array().cloned().unwrap_or_default();
    assert!(
        names
            .iter()
            .any(|n| n.as_str().unwrap().starts_with("new-")),
        "the new ingester holds none of the new services: {on_fourth}"
    );
    assert!(
        names.len() < 12 + 3,
        "with 4 ingesters and RF 3 not every service lands on the new one: {on_fourth}"
    );
    assert_same(&reference, &querier, "four ingesters");

    // 5. No healthy ingester: 503 with a message; pushes succeed again when they are back.
    let mut fourth = fourth;
    for ingester in ingesters.iter_mut().chain(std::iter::once(&mut fourth)) {
        ingester.stop();
    }
    wait_ring(&distributor, "every ingester gone", |n| {
        active_ingesters(n).is_empty()
    });
    let labels = vec![
        ("__name__".to_string(), "process_cpu".to_string()),
        ("service_name".to_string(), "svc-0".to_string()),
    ];
    let (status, body) = push(&distributor, &labels, &pprof);
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("ingester"),
        "the 503 names the problem: {body}"
    );
    for ingester in ingesters.iter_mut() {
        ingester.restart();
    }
    wait_ring(&distributor, "ingesters back", |n| {
        active_ingesters(n).len() == 3
    });
    assert_eq!(push(&reference, &labels, &pprof).0, 200);
    let (status, body) = push(&distributor, &labels, &pprof);
    assert_eq!(status, 200, "{body}");
    // The querier's gossip view catches up too: the fourth ingester, stopped for good, has
    // left it (until then the querier would ask it for its heads).
    wait_ring(&querier, "the fourth ingester to leave", |n| {
        active_ingesters(n).len() == 3 && n.iter().all(|n| n["id"] != "ingester-3")
    });
    // The stopped ingesters flushed their heads to the bucket: the querier now reads
    // blocks of three origins plus the heads, and still counts every profile once.
    assert_same(&reference, &querier, "after flushes and restarts");
    distributor.stop();
}

#[test]
fn a_busy_service_spreads_over_shards_and_answers_stay_exact() {
    let s3 = S3Server::start();
    s3.create_bucket("sharded");
    let cluster = Cluster::new(&s3, "sharded", "limits:\n  shards_per_service: 4\n");
    let reference = Hearth::start();
    let ingesters: Vec<Hearth> = (0..4)
        .map(|i| cluster.start("ingester", &format!("ingester-{i}")))
        .collect();
    let distributor = cluster.start("distributor", "distributor");
    let querier = cluster.start("querier", "querier");
    for node in [&distributor, &querier] {
        wait_ring(node, "four active ingesters", |n| {
            active_ingesters(n).len() == 4
        });
    }
    // One busy service with 16 pods (series), plus the usual rounds.
    let pprof = fixture("captures/extracted/py-001.s0.r0.pb");
    for pod in 0..16 {
        let labels = vec![
            ("__name__".to_string(), "process_cpu".to_string()),
            ("service_name".to_string(), "busy".to_string()),
            ("pod".to_string(), format!("busy-{pod}")),
        ];
        for node in [&reference, &distributor] {
            let (status, body) = push(node, &labels, &pprof);
            assert_eq!(status, 200, "{body}");
        }
    }
    for round in 0..3 {
        for (labels, pprof) in pushes(round) {
            for node in [&reference, &distributor] {
                assert_eq!(push(node, &labels, &pprof).0, 200);
            }
        }
    }
    // The busy service's series are spread: every ingester holds some, none holds all, and
    // each series is on exactly three (one replication set).
    let busy = ["{service_name=\"busy\"}"];
    let all = querier.series(None, &busy);
    let held: Vec<_> = ingesters.iter().map(|i| i.series(None, &busy)).collect();
    assert!(all.len() >= 16, "{all:?}");
    for (i, series) in held.iter().enumerate() {
        assert!(
            !series.is_empty() && series.len() < all.len(),
            "ingester-{i} holds {} of the busy service's {} series",
            series.len(),
            all.len()
        );
    }
    for set in &all {
        let copies = held.iter().filter(|h| h.contains(set)).count();
        assert_eq!(copies, 3, "{set:?} is on {copies} ingesters");
    }
    // Replicas are still counted once, and every stack resolves with its own symbols.
    assert_same(&reference, &querier, "a service over four shards");
    for mut ingester in ingesters {
        ingester.stop();
    }
    wait_ring(&querier, "the stopped ingesters to leave", |n| {
        n.iter().all(|n| n["roles"][0] != "ingester")
    });
    assert_same(&reference, &querier, "the shards flushed to the bucket");
}
