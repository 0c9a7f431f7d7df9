//! Compaction end to end on a real bucket folder: blocks flushed by engines merged into one,
//! replicas kept once, symbols rewritten, and the compactor's commit, deletion and retention.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

mod common;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampNanosecondType, UInt32Type, UInt64Type};
use bytes::Bytes;
use futures::TryStreamExt;
use hearth_engine::block::index::{BucketIndex, live};
use hearth_engine::block::{Block, block_dir, read_block_symbols};
use hearth_engine::compact::{MergeOptions, merge_blocks};
use hearth_engine::flamegraph::{FunctionTree, NodeId, ROOT};
use hearth_engine::model::TenantId;
use hearth_engine::model::TimeRange;
use hearth_engine::rollup::{BUCKET_NANOS, ROLLUP_FILE, bucket_of, read_series_rollup};
use hearth_engine::schema::TableKind;
use hearth_engine::{Compactor, CompactorConfig, Engine, EngineArgs, HeadConfig, ProfileBatch};
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const HOUR: i64 = 3600 * 1_000_000_000;
/// 2023-11-14 22:00 UTC, the start of an hour.
const BASE: i64 = 1_700_000_000_000_000_000 / HOUR * HOUR;

fn batch(raw: &Bytes, service: &str, time: i64, id: &str) -> ProfileBatch {
    common::batch_at(raw, service, time, id)
}

fn bucket(dir: &Path) -> Arc<dyn ObjectStore> {
    std::fs::create_dir_all(dir.join("blocks")).unwrap();
    Arc::new(LocalFileSystem::new_with_prefix(dir.join("blocks")).unwrap())
}

/// An engine whose WAL is in `dir/<origin>` and whose blocks go to `store`.
async fn engine(dir: &Path, store: &Arc<dyn ObjectStore>, origin: &str) -> Arc<Engine> {
    Engine::open(EngineArgs {
        wal_dir: dir.join(format!("wal-{origin}")),
        store: Arc::clone(store),
        head: HeadConfig::default(),
        symbol_cache_bytes: 64 << 20,
        origin: origin.to_string(),
        serve_blocks: true,
        limits: Arc::new(hearth_engine::limits::FixedLimits::default()),
        metrics: Default::default(),
    })
    .await
    .unwrap()
}

/// Every sample of a block with its stack resolved to function names, root first:
/// (series, time, service, stack) → summed value. Independent of the block's symbol ids.
type Resolved = BTreeMap<(u64, i64, String, Vec<String>), i64>;

async fn resolved(store: &Arc<dyn ObjectStore>, tenant: &TenantId, block: &Block) -> Resolved {
    let symbols = read_block_symbols(store, tenant, block).await.unwrap();
    let bytes = store
        .get(&block.path(tenant, TableKind::Samples))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = Resolved::new();
    let mut stack = Vec::new();
    for b in batches {
        let services =
            arrow::compute::cast(b.column(2), &arrow::datatypes::DataType::Utf8).unwrap();
        for row in 0..b.num_rows() {
            let service = services.as_string::<i32>().value(row).to_string();
            let partition = &symbols[&service];
            let id = b.column(3).as_primitive::<UInt32Type>().value(row);
            partition.stacktraces.resolve(id, &mut stack);
            let names: Vec<String> = stack
                .iter()
                .rev()
                .map(|&location| {
                    let location = partition.locations.get(location).unwrap();
                    let names: Vec<&str> = location
                        .lines
                        .iter()
                        .map(|l| {
                            partition.string(partition.functions.get(l.function).unwrap().name)
                        })
                        .collect();
                    names.join("|")
                })
                .collect();
            *out.entry((
                b.column(0).as_primitive::<UInt64Type>().value(row),
                b.column(1)
                    .as_primitive::<TimestampNanosecondType>()
                    .value(row),
                service,
                names,
            ))
            .or_default() += b.column(4).as_primitive::<Int64Type>().value(row);
        }
    }
    out
}

/// A block's rollup: (profile type, service, hour) → (total, collapsed stack → value).
type Rollup = BTreeMap<(String, String, i64), (i64, BTreeMap<String, i64>)>;

async fn rollup(store: &Arc<dyn ObjectStore>, tenant: &TenantId, block: &Block) -> Rollup {
    assert!(block.has_rollup(), "block {} has no rollup", block.id());
    let path = block_dir(tenant, block.id()).join(ROLLUP_FILE);
    let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
    let mut out = Rollup::new();
    for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .build()
        .unwrap()
    {
        let b = batch.unwrap();
        for row in 0..b.num_rows() {
            let tree = FunctionTree::decode(b.column(4).as_binary::<i32>().value(row)).unwrap();
            let mut stacks = BTreeMap::new();
            for node in 1..tree.len() as NodeId {
                if tree.self_value(node) == 0 {
                    continue;
                }
                let mut frames = Vec::new();
                let mut at = node;
                while at != ROOT {
                    frames.push(tree.name(at).to_string());
                    at = tree.parent(at);
                }
                frames.reverse();
                *stacks.entry(frames.join(";")).or_default() += tree.self_value(node);
            }
            let key = (
                b.column(0).as_string::<i32>().value(row).to_string(),
                b.column(1).as_string::<i32>().value(row).to_string(),
                b.column(2).as_primitive::<Int64Type>().value(row),
            );
            let total = b.column(3).as_primitive::<Int64Type>().value(row);
            assert!(
                out.insert(key, (total, stacks)).is_none(),
                "one row per key"
            );
        }
    }
    out
}

/// A block's series rollup: (series, hour's end) → (total, profiles).
type SeriesRollup = BTreeMap<(u64, i64), (i64, i64)>;

async fn series_rollup(
    store: &Arc<dyn ObjectStore>,
    tenant: &TenantId,
    block: &Block,
) -> SeriesRollup {
    let rows = read_series_rollup(store, tenant, block, TimeRange::ALL, |_| true)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("block {} has no series rollup", block.id()));
    let mut out = SeriesRollup::new();
    for row in rows {
        let key = (row.series_id, row.bucket_end);
        assert!(
            out.insert(key, (row.total, row.profiles)).is_none(),
            "one row per key"
        );
    }
    out
}

fn add_series(into: &mut SeriesRollup, from: &SeriesRollup) {
    for (key, (total, profiles)) in from {
        let entry = into.entry(*key).or_default();
        entry.0 += total;
        entry.1 += profiles;
    }
}

/// Per (service, hour), the samples' total: what the rollup totals must add up to.
fn hourly_totals(samples: &Resolved) -> BTreeMap<(String, i64), i64> {
    let mut out = BTreeMap::new();
    for ((_, time, service, _), value) in samples {
        *out.entry((service.clone(), bucket_of(*time))).or_default() += value;
    }
    out
}

fn rollup_totals(rollup: &Rollup) -> BTreeMap<(String, i64), i64> {
    let mut out = BTreeMap::new();
    for ((_, service, hour), (total, stacks)) in rollup {
        assert_eq!(
            *total,
            stacks.values().sum::<i64>(),
            "the tree holds the total"
        );
        assert_eq!(hour % BUCKET_NANOS, 0);
        *out.entry((service.clone(), *hour)).or_default() += total;
    }
    out
}

fn add_rollup(into: &mut Rollup, from: &Rollup) {
    for (key, (total, stacks)) in from {
        let entry = into.entry(key.clone()).or_default();
        entry.0 += total;
        for (stack, value) in stacks {
            *entry.1.entry(stack.clone()).or_default() += value;
        }
    }
}

fn sum(into: &mut Resolved, from: &Resolved) {
    for (key, value) in from {
        *into.entry(key.clone()).or_default() += value;
    }
}

/// Symbol rows of a block, per table.
fn symbol_rows(block: &Block) -> Vec<u64> {
    TableKind::SYMBOLS
        .iter()
        .map(|&t| block.file(t).map_or(0, |f| f.rows))
        .collect()
}

#[tokio::test]
async fn merging_replicas_keeps_each_profile_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = bucket(dir.path());
    let tenant = TenantId::new("t").unwrap();
    let cpu = common::fixture("pprof/large.cpu");
    let other = common::fixture("pprof/cppbench.cpu_no_samples_type");

    // Two ingesters hold the same profiles; `b` missed the last one.
    let a = engine(dir.path(), &store, "ingester-a").await;
    let b = engine(dir.path(), &store, "ingester-b").await;
    let pushes = [
        batch(&cpu, "api", BASE + 10, "p1"),
        batch(&cpu, "api", BASE + 20, "p2"),
        batch(&other, "db", BASE + 10, "p3"),
        batch(&other, "db", BASE + 30, "p4"),
    ];
    for (i, push) in pushes.iter().enumerate() {
        a.append(&tenant, push.clone()).await.unwrap();
        if i < 3 {
            b.append(&tenant, push.clone()).await.unwrap();
        }
    }
    a.flush_tenant(&tenant).await.unwrap();
    b.flush_tenant(&tenant).await.unwrap();
    let block_a = Arc::clone(&a.snapshot(&tenant).blocks[0]);
    let block_b = Arc::clone(&b.snapshot(&tenant).blocks[0]);
    let expected = resolved(&store, &tenant, &block_a).await;

    let sources = [Arc::clone(&block_a), Arc::clone(&block_b)];
    let options = MergeOptions {
        replicated: true,
        origin: "compactor".into(),
        level: 1,
    };
    let (merged, stats) = merge_blocks(&store, &tenant, &sources, &options)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resolved(&store, &tenant, &merged).await, expected);
    // Flushed and merged blocks carry rollups that hold exactly their samples.
    let rollup_a = rollup(&store, &tenant, &block_a).await;
    assert_eq!(rollup_totals(&rollup_a), hourly_totals(&expected));
    assert_eq!(rollup(&store, &tenant, &merged).await, rollup_a);
    // The series rollup counts every profile once, its total the samples' total.
    let series_a = series_rollup(&store, &tenant, &block_a).await;
    let (total, profiles) = series_a
        .values()
        .fold((0, 0), |acc, v| (acc.0 + v.0, acc.1 + v.1));
    assert_eq!(profiles, block_a.meta.stats.profiles as i64);
    assert_eq!(total, expected.values().sum::<i64>());
    assert_eq!(series_rollup(&store, &tenant, &merged).await, series_a);
    assert_eq!(merged.meta.stats, block_a.meta.stats);
    assert_eq!(stats.profiles_out, block_a.meta.stats.profiles);
    assert_eq!(
        stats.profiles_in,
        block_a.meta.stats.profiles + block_b.meta.stats.profiles
    );
    // Symbols: each entry once, nothing the samples do not use.
    assert_eq!(symbol_rows(&merged), symbol_rows(&block_a));
    let compaction = merged.meta.compaction.clone().unwrap();
    assert_eq!(compaction.level, 1);
    assert_eq!(compaction.sources.len(), 2);
    assert_eq!(
        compaction.wal_segments.len(),
        2,
        "both origins' segments are listed"
    );
    assert_eq!(merged.meta.service_names, vec!["api", "db"]);
    // Readers now see the merged block alone.
    let merged = Arc::new(merged);
    let visible = live(vec![block_a, block_b, Arc::clone(&merged)]);
    assert_eq!(visible.len(), 1);
    assert_eq!(visible[0].meta.ulid, merged.meta.ulid);

    // Without replication (one process) every source's rows are kept.
    let options = MergeOptions {
        replicated: false,
        ..options
    };
    let (doubled, _) = merge_blocks(&store, &tenant, &sources, &options)
        .await
        .unwrap()
        .unwrap();
    let mut both = expected.clone();
    sum(&mut both, &resolved(&store, &tenant, &sources[1]).await);
    assert_eq!(resolved(&store, &tenant, &doubled).await, both);
    let mut both_rollups = rollup_a.clone();
    add_rollup(
        &mut both_rollups,
        &rollup(&store, &tenant, &sources[1]).await,
    );
    assert_eq!(rollup(&store, &tenant, &doubled).await, both_rollups);
    let mut both_series = series_a.clone();
    add_series(
        &mut both_series,
        &series_rollup(&store, &tenant, &sources[1]).await,
    );
    assert_eq!(series_rollup(&store, &tenant, &doubled).await, both_series);
}

/// (profile type, total, sample rows) over the engine's snapshot.
async fn totals(engine: &Engine, tenant: &TenantId) -> Vec<(String, i64, i64)> {
    let ctx = datafusion::prelude::SessionContext::new();
    hearth_engine::table::register_tables(
        &ctx,
        hearth_engine::table::TableSources::new(
            Arc::new(engine.snapshot(tenant)),
            Arc::clone(engine.store()),
        ),
    )
    .unwrap();
    let batches = ctx
        .sql(
            "SELECT s.profile_type, sum(x.value), count(*) FROM samples x \
             JOIN (SELECT DISTINCT series_id, profile_type FROM series) s \
             ON x.series_id = s.series_id GROUP BY 1 ORDER BY 1",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
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

async fn block_folders(store: &Arc<dyn ObjectStore>, tenant: &TenantId) -> HashSet<String> {
    let objects: Vec<_> = store
        .list(Some(&object_store::path::Path::from(tenant.as_str())))
        .try_collect()
        .await
        .unwrap();
    objects
        .iter()
        .filter_map(|o| o.location.parts().nth(1).map(|p| p.as_ref().to_string()))
        .filter(|p| ulid::Ulid::from_string(p).is_ok())
        .collect()
}

#[tokio::test]
async fn compactor_commits_deletes_and_applies_retention() {
    let dir = tempfile::tempdir().unwrap();
    let store = bucket(dir.path());
    let tenant = TenantId::new("t").unwrap();
    let kept_tenant = TenantId::new("other").unwrap();
    let cpu = common::fixture("pprof/large.cpu");

    // One process, three flushes into the same hour.
    let single = engine(dir.path(), &store, "").await;
    for (i, t) in [BASE + 1, BASE + 2, BASE + 3].into_iter().enumerate() {
        let push = batch(&cpu, "api", t, &format!("p{i}"));
        single.append(&tenant, push.clone()).await.unwrap();
        single.flush_tenant(&tenant).await.unwrap();
        single.append(&kept_tenant, push).await.unwrap();
    }
    single.flush_tenant(&kept_tenant).await.unwrap();
    let before = totals(&single, &tenant).await;
    assert_eq!(single.snapshot(&tenant).blocks.len(), 3);

    // A crash right after a merge's commit: readers already see the merged block only.
    let flushed = single.snapshot(&tenant).blocks.clone();
    let options = MergeOptions {
        replicated: false,
        origin: String::new(),
        level: 1,
    };
    let (first, _) = merge_blocks(&store, &tenant, &flushed[..2], &options)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.meta.stats.profiles, 4, "{:?}", first.meta);
    single.shutdown().await.unwrap();
    drop(single);
    let reopened = engine(dir.path(), &store, "").await;
    assert_eq!(reopened.snapshot(&tenant).blocks.len(), 2);
    assert_eq!(totals(&reopened, &tenant).await, before);

    // A cycle finishes that merge's marks and merges the rest of the hour.
    let config = CompactorConfig {
        block_ranges: vec![Duration::from_secs(3600)],
        wait_period: Duration::ZERO,
        deletion_delay: Duration::from_secs(60),
        ..CompactorConfig::default()
    };
    let compactor = Compactor::new(Arc::clone(&store), config, false, String::new());
    let now = BASE + 2 * HOUR;
    let outcome = compactor.run_tenant(&tenant, None, now).await.unwrap();
    assert_eq!(outcome.merges.len(), 1);
    assert_eq!(
        outcome.removed.len(),
        4,
        "three flushed blocks and the first merge"
    );
    reopened.replace_blocks(&tenant, &outcome.added, &outcome.removed);
    assert_eq!(reopened.snapshot(&tenant).blocks.len(), 1);
    assert_eq!(totals(&reopened, &tenant).await, before);
    let index = BucketIndex::read(store.as_ref(), &tenant)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(index.live_blocks().len(), 1);
    assert_eq!(index.deletion_marks.len(), 4);
    assert_eq!(index.live_blocks()[0].meta.level(), 1);
    assert_eq!(
        block_folders(&store, &tenant).await.len(),
        5,
        "deleted only after the delay"
    );

    // After the delay the replaced folders go; a restart still answers the same.
    let outcome = compactor
        .run_tenant(&tenant, None, now + 61 * 1_000_000_000)
        .await
        .unwrap();
    assert_eq!(outcome.deleted, 4);
    assert_eq!(block_folders(&store, &tenant).await.len(), 1);
    reopened.shutdown().await.unwrap();
    drop(reopened);
    let reopened = engine(dir.path(), &store, "").await;
    assert_eq!(totals(&reopened, &tenant).await, before);

    // Retention: a day later with a 1 h period the tenant's block leaves; the other tenant
    // (no cycle with retention) keeps its data.
    let later = now + 24 * HOUR;
    let outcome = compactor
        .run_tenant(&tenant, Some(Duration::from_secs(3600)), later)
        .await
        .unwrap();
    assert_eq!(outcome.removed.len(), 1);
    reopened.replace_blocks(&tenant, &outcome.added, &outcome.removed);
    assert!(totals(&reopened, &tenant).await.is_empty());
    compactor
        .run_tenant(&kept_tenant, None, later)
        .await
        .unwrap();
    assert_eq!(totals(&reopened, &kept_tenant).await.len(), 2);
}
