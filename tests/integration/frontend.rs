//! The read path as separate processes: a query-frontend (with its scheduler) that cuts each
//! query into hourly jobs, two queriers pulling them, three ingesters at replication 3 and a
//! distributor, blocks in a real S3 server. Every query method and render answer what one
//! process answers; both queriers run jobs; a tenant past its outstanding queries gets 429;
//! a querier killed with jobs in hand has them run by the other; a client that leaves has
//! its jobs cancelled. With a separate query-scheduler, two frontends queue every job in it,
//! and fall back to their own queues when it is gone.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use super::cluster::{Cluster, active, active_ingesters, answers_over, push_round, wait_ring};
use super::support::{Hearth, S3Server, now_nanos};

const HOUR_MS: i64 = 3_600_000;

/// Now, Unix milliseconds.
fn now_ms() -> i64 {
    now_nanos() / 1_000_000
}

/// The sum of a counter (all its label sets) in a node's `/metrics`.
pub(crate) fn counter(node: &Hearth, name: &str, labels: &str) -> f64 {
    let text = node.get("/metrics").text().unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub(crate) fn wait_for(what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_query_frontend_splits_queues_and_answers_like_one_process() {
    let s3 = S3Server::start();
    s3.create_bucket("frontend");
    let cluster = Cluster::new(
        &s3,
        "frontend",
        "query:\n  split_interval: 1h\n  max_outstanding_requests_per_tenant: 3\n  max_concurrent: 2\n",
    );
    let reference = Hearth::start();
    let _ingesters: Vec<Hearth> = (0..3)
        .map(|i| cluster.start("ingester", &format!("ingester-{i}")))
        .collect();
    let distributor = cluster.start("distributor", "distributor");
    let frontend = cluster.start("query-frontend", "frontend");
    let mut queriers: Vec<Hearth> = (0..2)
        .map(|i| cluster.start("querier", &format!("querier-{i}")))
        .collect();
    wait_ring(&distributor, "three active ingesters", |n| {
        active_ingesters(n).len() == 3
    });
    wait_for("both queriers' workers", || {
        counter(&frontend, "hearth_query_scheduler_connected_workers", "") == 4.0
    });

    // Profiles 40 minutes apart over five hours: every hourly job holds some.
    let now = now_ms();
    let first = (now / HOUR_MS - 6) * HOUR_MS + 17_000;
    for round in 0..8 {
        let time = first + round as i64 * 40 * 60_000;
        push_round(&[&reference, &distributor], round, Some(time));
    }
    let (start, end) = (first - 5 * 60_000, now);

    // 1. Every method and render answer what one process answers, split into hourly jobs.
    let expected = answers_over(&reference, start, end);
    let got = answers_over(&frontend, start, end);
    for ((call, want), (_, have)) in expected.iter().zip(&got) {
        assert_eq!(
            want, have,
            "{call} through the frontend differs from one process"
        );
    }
    assert!(
        counter(&frontend, "hearth_query_split_pieces", "") >= 6.0 * 10.0,
        "queries were not split into hourly jobs"
    );
    for querier in &queriers {
        assert!(
            counter(
                querier,
                "hearth_query_duration_seconds_count",
                "api=\"job\""
            ) > 0.0,
            "querier {} ran no job",
            querier.addr
        );
    }

    // 2. Both queriers stopped: queries wait in the queue, and past the tenant's outstanding
    //    queries the next is refused with 429 naming the limit.
    for querier in &queriers {
        querier.signal("STOP");
    }
    let flame = json!({"profile_typeID": "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
                       "label_selector": "{}", "start": start, "end": end, "max_nodes": 64});
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let (addr, body) = (frontend.addr, flame.clone());
            thread::spawn(move || {
                reqwest::blocking::Client::new()
                    .post(format!(
                        "http://{addr}/querier.v1.QuerierService/SelectMergeStacktraces"
                    ))
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .send()
                    .map(|r| (r.status().as_u16(), r.text().unwrap()))
            })
        })
        .collect();
    wait_for("three queued queries", || {
        counter(&frontend, "hearth_query_scheduler_queue_length", "") > 0.0
    });
    thread::sleep(Duration::from_millis(300));
    let (status, refused) = frontend.connect_json(
        None,
        "/querier.v1.QuerierService/SelectMergeStacktraces",
        flame.clone(),
    );
    assert_eq!(status, 429, "{refused}");
    assert!(
        refused
            .to_string()
            .contains("max_outstanding_requests_per_tenant"),
        "the 429 names the limit: {refused}"
    );

    // 3. One querier dies with jobs in hand: the other runs them, and the answers are whole.
    queriers[1].kill9();
    queriers[0].signal("CONT");
    let want = expected
        .iter()
        .find(|(call, _)| call.starts_with("SelectMergeStacktraces") && call.contains("\"{}\""))
        .map(|(_, answer)| answer.clone())
        .unwrap();
    for query in waiting {
        let (status, body) = query.join().unwrap().expect("the query answered");
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer, want, "an answer after a querier died differs");
    }
    assert!(
        counter(&frontend, "hearth_query_scheduler_retried_jobs", "") > 0.0,
        "no job was handed to another querier"
    );

    // 4. A client that gives up: its jobs are dropped from the queue or stopped.
    queriers[0].signal("STOP");
    let gave_up = reqwest::blocking::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap()
        .post(frontend.url("/querier.v1.QuerierService/SelectMergeStacktraces"))
        .header("content-type", "application/json")
        .body(flame.to_string())
        .send();
    assert!(
        gave_up.is_err(),
        "the query answered with every querier stopped"
    );
    queriers[0].signal("CONT");
    wait_for("the abandoned jobs to be cancelled", || {
        counter(&frontend, "hearth_query_scheduler_cancelled_jobs", "") > 0.0
    });
    let (status, answer) = frontend.connect_json(
        None,
        "/querier.v1.QuerierService/SelectMergeStacktraces",
        flame,
    );
    assert_eq!((status, &answer), (200, &want));
}

#[test]
fn query_frontends_share_a_separate_query_scheduler() {
    let s3 = S3Server::start();
    s3.create_bucket("scheduler");
    let cluster = Cluster::new(&s3, "scheduler", "query:\n  split_interval: 1h\n");
    let reference = Hearth::start();
    let _ingesters: Vec<Hearth> = (0..3)
        .map(|i| cluster.start("ingester", &format!("ingester-{i}")))
        .collect();
    let distributor = cluster.start("distributor", "distributor");
    let mut scheduler = cluster.start("query-scheduler", "scheduler");
    let frontends: Vec<Hearth> = (0..2)
        .map(|i| cluster.start("query-frontend", &format!("frontend-{i}")))
        .collect();
    let _querier = cluster.start("querier", "querier");
    wait_ring(&distributor, "three active ingesters", |n| {
        active_ingesters(n).len() == 3
    });
    // The querier's workers pull from the scheduler and from both frontends.
    for node in std::iter::once(&scheduler).chain(&frontends) {
        wait_for("the querier's workers", || {
            counter(node, "hearth_query_scheduler_connected_workers", "") >= 1.0
        });
    }
    for frontend in &frontends {
        wait_ring(frontend, "the scheduler in gossip", |n| {
            !active(n, "query-scheduler").is_empty()
        });
    }
    let now = now_ms();
    let first = (now / HOUR_MS - 3) * HOUR_MS + 17_000;
    for round in 0..4 {
        let time = first + round as i64 * 40 * 60_000;
        push_round(&[&reference, &distributor], round, Some(time));
    }
    let (start, end) = (first - 5 * 60_000, now);
    let expected = answers_over(&reference, start, end);

    // 1. Both frontends answer as one process, every job queued in the scheduler.
    const QUEUED: &str = "hearth_query_scheduler_queue_duration_seconds_count";
    for frontend in &frontends {
        let got = answers_over(frontend, start, end);
        for ((call, want), (_, have)) in expected.iter().zip(&got) {
            assert_eq!(want, have, "{call} through a frontend and the scheduler");
        }
    }
    assert!(counter(&scheduler, QUEUED, "") >= 2.0 * expected.len() as f64);
    for frontend in &frontends {
        assert_eq!(
            counter(frontend, QUEUED, ""),
            0.0,
            "a frontend queued jobs itself while a scheduler was up"
        );
    }

    // 2. The scheduler gone: each frontend queues its jobs itself, and answers stay whole.
    scheduler.kill9();
    for frontend in &frontends {
        let got = answers_over(frontend, start, end);
        for ((call, want), (_, have)) in expected.iter().zip(&got) {
            assert_eq!(
                want, have,
                "{call} through a frontend without the scheduler"
            );
        }
        assert!(counter(frontend, QUEUED, "") > 0.0);
    }
}
