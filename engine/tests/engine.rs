//! The engine end to end: append real profiles, read them through the DataFusion providers from
//! the head, from blocks after a flush, and after a crash (WAL replay).

mod common;

use std::path::Path;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, UInt64Type};
use bytes::Bytes;
use datafusion::prelude::SessionContext;
use hearth_engine::model::TenantId;
use hearth_engine::table::{TableSources, register_tables};
use hearth_engine::{Engine, HeadConfig, ProfileBatch};

use common::fixture;

/// One series per sample type, all samples, as a minimal ingest would build it.
fn batch(raw: Bytes, service: &str) -> ProfileBatch {
    common::batch_at(
        &raw,
        service,
        1_700_000_000_000_000_000,
        &uuid::Uuid::new_v4().to_string(),
    )
}

async fn open(dir: &Path) -> Arc<Engine> {
    hearth_engine::testing::open_engine(dir, HeadConfig::default()).await
}

async fn query(engine: &Engine, tenant: &TenantId, sql: &str) -> Vec<RecordBatch> {
    let ctx = SessionContext::new();
    register_tables(
        &ctx,
        TableSources::new(
            Arc::new(engine.snapshot(tenant)),
            Arc::clone(engine.store()),
        ),
    )
    .unwrap();
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

/// Total value per profile type, and sample rows, as the providers see them.
async fn totals(engine: &Engine, tenant: &TenantId) -> Vec<(String, i64, i64)> {
    let batches = query(
        engine,
        tenant,
        "SELECT s.profile_type, sum(x.value) AS total, count(*) AS n \
         FROM samples x JOIN series s ON x.series_id = s.series_id \
         GROUP BY s.profile_type ORDER BY s.profile_type",
    )
    .await;
    let mut out = Vec::new();
    for b in batches {
        for i in 0..b.num_rows() {
            out.push((
                b.column(0).as_string::<i32>().value(i).to_string(),
                b.column(1).as_primitive::<Int64Type>().value(i),
                b.column(2).as_primitive::<Int64Type>().value(i),
            ));
        }
    }
    out
}

fn expected_totals(raw: &[u8]) -> Vec<i64> {
    let (pprof, _) = ProfileBatch::decode_pprof(raw, usize::MAX).unwrap();
    (0..pprof.sample_type.len())
        .map(|i| pprof.sample.iter().map(|s| s.value[i]).sum())
        .collect()
}

#[tokio::test]
async fn head_blocks_and_replay_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = TenantId::new("t1").unwrap();
    let raw = fixture("pprof/large.cpu");
    let expected = expected_totals(&raw);

    let engine = open(dir.path()).await;
    engine
        .append(&tenant, batch(raw.clone(), "svc"))
        .await
        .unwrap();
    let from_head = totals(&engine, &tenant).await;
    assert_eq!(from_head.len(), 2);
    // Types sort as cpu:nanoseconds, samples:count.
    assert_eq!(from_head[0].1, expected[1]);
    assert_eq!(from_head[1].1, expected[0]);

    // Crash: no shutdown. The WAL brings the data back.
    drop(engine);
    let engine = open(dir.path()).await;
    assert_eq!(totals(&engine, &tenant).await, from_head);

    // Flush: now from a block, identical.
    let blocks = engine.flush_tenant(&tenant).await.unwrap();
    assert_eq!(blocks.len(), 1);
    let snapshot = engine.snapshot(&tenant);
    assert_eq!(snapshot.blocks.len(), 1);
    assert!(snapshot.heads.iter().all(|h| h.read().is_empty()));
    assert_eq!(totals(&engine, &tenant).await, from_head);

    // Restart after a flush: the block is loaded, the flushed WAL is not replayed again.
    engine.shutdown().await.unwrap();
    drop(engine);
    let engine = open(dir.path()).await;
    assert_eq!(totals(&engine, &tenant).await, from_head);

    // Other tenants see nothing.
    let other = TenantId::new("t2").unwrap();
    assert!(totals(&engine, &other).await.is_empty());
}

#[tokio::test]
async fn series_pruning_by_label_in_scan() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = TenantId::new("t1").unwrap();
    let engine = open(dir.path()).await;
    engine
        .append(&tenant, batch(fixture("parca/fgprof.pb.gz"), "a"))
        .await
        .unwrap();
    engine.flush_tenant(&tenant).await.unwrap();
    engine
        .append(
            &tenant,
            batch(fixture("pprof/cppbench.cpu_no_samples_type"), "b"),
        )
        .await
        .unwrap();
    for (service, expected) in [("a", 2u64), ("b", 1)] {
        let sql = format!(
            "SELECT count(DISTINCT series_id) FROM series WHERE label(labels, 'service_name') = '{service}'"
        );
        let batches = query(&engine, &tenant, &sql).await;
        let n = batches[0].column(0).as_primitive::<Int64Type>().value(0) as u64;
        assert_eq!(n, expected, "service {service}");
    }
    // Series ids are the same in blocks and heads: the fingerprint.
    let batches = query(&engine, &tenant, "SELECT DISTINCT series_id FROM samples").await;
    let ids: usize = batches
        .iter()
        .map(|b| b.column(0).as_primitive::<UInt64Type>().len())
        .sum();
    assert_eq!(ids, 3);
}

/// The physical plan of a query, as text.
async fn plan(engine: &Engine, tenant: &TenantId, sql: &str) -> String {
    let ctx = SessionContext::new();
    register_tables(
        &ctx,
        TableSources::new(
            Arc::new(engine.snapshot(tenant)),
            Arc::clone(engine.store()),
        ),
    )
    .unwrap();
    let df = ctx.sql(sql).await.unwrap();
    let plan = df.create_physical_plan().await.unwrap();
    datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string()
}

#[tokio::test]
async fn scan_skips_blocks_by_service_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let tenant = TenantId::new("t1").unwrap();
    let engine = open(dir.path()).await;
    for service in ["a", "b"] {
        engine
            .append(&tenant, batch(fixture("parca/fgprof.pb.gz"), service))
            .await
            .unwrap();
        engine.flush_tenant(&tenant).await.unwrap();
    }
    let blocks = engine.snapshot(&tenant).blocks;
    let block_of = |service: &str| {
        blocks
            .iter()
            .find(|b| b.meta.service_names == vec![service.to_string()])
            .unwrap()
            .id()
            .to_string()
    };

    let only_a = plan(
        &engine,
        &tenant,
        "SELECT * FROM series WHERE label(labels, 'service_name') = 'a'",
    )
    .await;
    assert!(only_a.contains(&block_of("a")), "{only_a}");
    assert!(
        !only_a.contains(&block_of("b")),
        "block b is pruned:\n{only_a}"
    );

    let both = plan(&engine, &tenant, "SELECT * FROM series").await;
    assert!(
        both.contains(&block_of("a")) && both.contains(&block_of("b")),
        "{both}"
    );

    // Profiles are at 1.7e18 ns; a later range keeps no block at all.
    let later = plan(
        &engine,
        &tenant,
        "SELECT * FROM samples WHERE time >= arrow_cast(1800000000000000000, 'Timestamp(ns, \"UTC\")')",
    )
    .await;
    assert!(!later.contains(".parquet"), "no block overlaps:\n{later}");
    let earlier = plan(
        &engine,
        &tenant,
        "SELECT * FROM samples WHERE time >= arrow_cast(1600000000000000000, 'Timestamp(ns, \"UTC\")')",
    )
    .await;
    assert_eq!(earlier.matches("samples.parquet").count(), 2, "{earlier}");
}

/// (series, time, stack-trace id, value) of every sample row.
fn sample_rows(batches: &[RecordBatch]) -> Vec<(u64, i64, u32, i64)> {
    use arrow::datatypes::{TimestampNanosecondType, UInt32Type};
    let mut rows = Vec::new();
    for b in batches {
        let series = b.column(0).as_primitive::<UInt64Type>();
        let time = b.column(1).as_primitive::<TimestampNanosecondType>();
        let stack = b.column(3).as_primitive::<UInt32Type>();
        let value = b.column(4).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            rows.push((
                series.value(i),
                time.value(i),
                stack.value(i),
                value.value(i),
            ));
        }
    }
    rows
}

#[test]
fn flush_streams_samples_sorted_across_chunks() {
    let mut head = hearth_engine::head::Head::new();
    // Later times first, two services interleaved: arrival order is far from block order.
    for (round, service) in [(3, "a"), (2, "b"), (1, "a"), (0, "b"), (2, "a"), (1, "b")] {
        let mut batch = batch(fixture("pprof/large.cpu"), service);
        for profile in &mut batch.profiles {
            profile.time_nanos += round * 10_000_000_000;
        }
        head.append(&batch).unwrap();
    }
    let arrival = sample_rows(&head.sample_batches().unwrap());
    assert!(
        arrival.len() > hearth_engine::head::SEALED_CHUNK_ROWS,
        "spans sealed chunks"
    );
    let streamed: Vec<RecordBatch> = head
        .sorted_sample_batches(5000)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(streamed.len() > 1);
    assert!(streamed.iter().all(|b| b.num_rows() < 5000 + 25_000));
    let sorted = sample_rows(&streamed);
    assert!(
        sorted
            .windows(2)
            .all(|w| (w[0].0, w[0].1, w[0].2) <= (w[1].0, w[1].1, w[1].2))
    );
    let mut expected = arrival;
    expected.sort_unstable();
    let mut got = sorted;
    got.sort_unstable();
    assert_eq!(got, expected);
}

/// The scan applies time and series filters itself (exactly, per run of rows): every range and
/// series set counts what the rows hold, from a head of several chunks and from a block.
#[tokio::test]
async fn exact_time_and_series_filters_count_what_rows_hold() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path()).await;
    let tenant = TenantId::new("t").unwrap();
    let base = 1_700_000_000_000_000_000i64;
    for round in 0..4 {
        for service in ["a", "b"] {
            let mut batch = batch(fixture("pprof/large.cpu"), service);
            for profile in &mut batch.profiles {
                profile.time_nanos = base + round * 1_000_000_000;
            }
            engine.append(&tenant, batch).await.unwrap();
        }
    }
    let count = |rows: Vec<RecordBatch>| rows[0].column(0).as_primitive::<Int64Type>().value(0);
    let series: Vec<u64> = query(
        &engine,
        &tenant,
        "SELECT series_id FROM series ORDER BY series_id",
    )
    .await
    .iter()
    .flat_map(|b| b.column(0).as_primitive::<UInt64Type>().values().to_vec())
    .collect();
    for flushed in [false, true] {
        if flushed {
            engine.flush_tenant(&tenant).await.unwrap();
        }
        let all = count(query(&engine, &tenant, "SELECT count(*) FROM samples").await);
        let per_round = all / 4;
        for round in 0..4i64 {
            let t = base + round * 1_000_000_000;
            let ts = |n: i64| format!("arrow_cast({n}, 'Timestamp(Nanosecond, Some(\"UTC\"))')");
            let exact = format!(
                "SELECT count(*) FROM samples WHERE time >= {} AND time < {}",
                ts(t),
                ts(t + 1)
            );
            assert_eq!(
                count(query(&engine, &tenant, &exact).await),
                per_round,
                "{exact}"
            );
            let rest = format!("SELECT count(*) FROM samples WHERE time > {}", ts(t));
            assert_eq!(
                count(query(&engine, &tenant, &rest).await),
                per_round * (3 - round),
                "{rest}"
            );
        }
        let one = format!(
            "SELECT count(*) FROM samples WHERE series_id IN ({})",
            series[0]
        );
        let n = count(query(&engine, &tenant, &one).await);
        assert!(n > 0 && n < all, "{one}: {n} of {all}");
        // Columns read only for the filter are not returned.
        let rows = query(
            &engine,
            &tenant,
            &format!(
                "SELECT value FROM samples WHERE series_id = {} LIMIT 3",
                series[0]
            ),
        )
        .await;
        assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        assert_eq!(rows[0].num_columns(), 1);
    }
}
