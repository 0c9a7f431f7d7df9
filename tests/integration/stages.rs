//! Query stages spread over queriers (datafusion-distributed): two queriers over blocks in a
//! real S3 server and three ingesters' heads, with every block scan big enough to spread
//! (`query.stage_bytes_per_task: 1`). Each querier answers every query method and the Flight
//! SQL statements (aggregates and a join) as one process does, each querier runs stages of
//! the other's queries, EXPLAIN shows the stages, and when one querier is killed the other
//! answers alone.

use super::cluster::{
    Cluster, active, active_ingesters, assert_same, push_round, sql_text, wait_ring,
};
use super::frontend::{counter, wait_for};
use super::support::{Hearth, S3Server};

const STAGE_TASKS: &str = "hearth_query_stage_tasks_total";

#[test]
fn queriers_spread_query_stages_and_answer_like_one_process() {
    let s3 = S3Server::start();
    s3.create_bucket("stages");
    let cluster = Cluster::new(&s3, "stages", "query:\n  stage_bytes_per_task: 1\n");
    let reference = Hearth::start();
    let mut ingesters: Vec<Hearth> = (0..3)
        .map(|i| cluster.start("ingester", &format!("ingester-{i}")))
        .collect();
    let distributor = cluster.start("distributor", "distributor");
    let mut queriers: Vec<Hearth> = (0..2)
        .map(|i| cluster.start("querier", &format!("querier-{i}")))
        .collect();
    for node in [&distributor, &queriers[0], &queriers[1]] {
        wait_ring(node, "three active ingesters", |n| {
            active_ingesters(n).len() == 3
        });
    }
    for querier in &queriers {
        wait_ring(querier, "both queriers in gossip", |n| {
            active(n, "querier").len() == 2
        });
    }
    let push_rounds = |rounds: std::ops::Range<usize>| {
        for round in rounds {
            push_round(&[&reference, &distributor], round, None);
        }
    };
    // Blocks first (a graceful stop flushes the heads, three replicas of each profile), then
    // heads again.
    push_rounds(0..4);
    for ingester in ingesters.iter_mut() {
        ingester.stop();
    }
    for ingester in ingesters.iter_mut() {
        ingester.restart();
    }
    for node in [&distributor, &queriers[0], &queriers[1]] {
        wait_ring(node, "the ingesters back", |n| {
            active_ingesters(n).len() == 3
        });
    }
    push_rounds(4..6);

    // 1. Both queriers answer as one process, and each runs stages of the other's queries.
    for (asked, other) in [(0, 1), (1, 0)] {
        let before = counter(&queriers[other], STAGE_TASKS, "");
        assert_same(
            &reference,
            &queriers[asked],
            "stages spread over two queriers",
        );
        assert!(
            counter(&queriers[other], STAGE_TASKS, "") > before,
            "querier-{other} ran no stage of querier-{asked}'s queries"
        );
    }

    // 2. EXPLAIN ANALYZE shows the stages: the block scan split into one task per querier
    //    (the blocks each owns), the remote heads read by the first task only.
    let plan = sql_text(
        &queriers[0],
        "EXPLAIN ANALYZE SELECT service_name, sum(value) FROM samples GROUP BY service_name",
    );
    for part in [
        "DistributedExec",
        "NetworkShuffleExec",
        "tasks=2",
        "t1: DataSourceExec",
        "t1: RemoteScanExec: table=samples, nodes=[-, -, -]",
    ] {
        assert!(plan.contains(part), "no {part:?} in the plan:\n{plan}");
    }

    // 3. One querier killed: the other stops sending it stages as soon as its port refuses
    //    (before gossip declares it dead); a query caught in between fails as unavailable
    //    (503, which a query-frontend retries), never as an internal error.
    queriers[1].kill9();
    let flame = serde_json::json!({
        "profile_typeID": "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
        "label_selector": "{}", "start": 1, "end": 4_000_000_000_000i64, "max_nodes": 64,
    });
    wait_for("the remaining querier to answer alone", || {
        let (status, body) = queriers[0].connect_json(
            None,
            "/querier.v1.QuerierService/SelectMergeStacktraces",
            flame.clone(),
        );
        assert!(
            status == 200 || status == 503,
            "a query while a querier is dying: {status} {body}"
        );
        status == 200
    });
    assert_same(&reference, &queriers[0], "one querier left");
    wait_ring(&queriers[0], "the killed querier to leave gossip", |n| {
        active(n, "querier").len() == 1
    });
    assert_same(&reference, &queriers[0], "one querier left, in gossip too");
}
