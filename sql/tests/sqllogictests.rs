//! Golden SQL tests: every `.slt` file in `tests/slt` runs against a real engine holding real
//! profiles (some in blocks, some in the head), through the same entry point Flight SQL uses.
//!
//! `cargo test -p hearth-sql --test sqllogictests` checks; with `SLT_UPDATE=1` it rewrites the
//! expected results (review the diff before committing it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::TryStreamExt;
use hearth_engine::model::TenantId;
use hearth_engine::testing::{open_engine, push_request};
use hearth_engine::{Engine, HeadConfig};
use hearth_ingest::{IngestService, Limits};
use hearth_proto::pprof::Profile;
use hearth_sql::{QueryConfig, QueryService};
use prost::Message;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};

/// 2026-01-01T00:00:00Z, the time of the first profile.
const T0_MS: i64 = 1_767_225_600_000;

static ULID: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"[0-9A-HJKMNP-TV-Z]{26}").unwrap());

#[derive(Debug)]
struct SqlError(String);

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SqlError {}

struct HearthDb {
    query: Arc<QueryService>,
    tenant: TenantId,
}

fn column_type(t: &DataType) -> DefaultColumnType {
    if t.is_integer() {
        DefaultColumnType::Integer
    } else if t.is_floating() {
        DefaultColumnType::FloatingPoint
    } else if matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..)
    ) {
        DefaultColumnType::Text
    } else {
        DefaultColumnType::Any
    }
}

fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<ArrayFormatter<'_>> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .map(|f| {
                    let text = f.value(row).to_string();
                    // Block ids are random: show them as <ulid>. Empty strings would vanish
                    // when whitespace is normalised: show them as (empty).
                    let text = ULID.replace_all(&text, "<ulid>").into_owned();
                    if text.is_empty() {
                        "(empty)".to_string()
                    } else {
                        text
                    }
                })
                .collect();
            // A multi-line cell (a plan) becomes one output line per line of text.
            let lines = cells.iter().map(|c| c.lines().count()).max().unwrap_or(1);
            if lines <= 1 {
                rows.push(cells);
                continue;
            }
            for i in 0..lines {
                rows.push(
                    cells
                        .iter()
                        .filter_map(|c| c.lines().nth(i))
                        .map(str::to_string)
                        .collect(),
                );
            }
        }
    }
    rows
}

#[async_trait::async_trait]
impl AsyncDB for HearthDb {
    type Error = SqlError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SqlError> {
        let error = |e: hearth_sql::Error| SqlError(format!("{}: {e}", e.kind()));
        let stream = self
            .query
            .sql_stream(&self.tenant, sql, Vec::new())
            .await
            .map_err(error)?;
        let schema = stream.schema();
        let batches: Vec<RecordBatch> = stream
            .try_collect()
            .await
            .map_err(|e| error(hearth_sql::Error::DataFusion(e)))?;
        let types = schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        Ok(DBOutput::Rows {
            types,
            rows: rows(&batches),
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "hearth"
    }
}

fn fixture(name: &str) -> Profile {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Profile::decode(bytes.as_slice()).unwrap()
}

/// Pushes a fixture at a fixed time through the real ingest path.
async fn push(ingest: &IngestService, tenant: &TenantId, service: &str, file: &str, time_ms: i64) {
    let mut profile = fixture(file);
    profile.time_nanos = time_ms * 1_000_000;
    let request = push_request(
        &[("__name__", "process_cpu"), ("service_name", service)],
        profile.encode_to_vec(),
        format!("{service}-{time_ms}"),
    );
    ingest.push(tenant, request, 0).await.unwrap();
}

/// Tenant `slt`: `api` (py-001, threads as series) at T0 and `worker` (py-005) at T0 + 10 s,
/// both flushed to a block; `api` again at T0 + 60 s, in the head. Tenant `other` has data
/// the `slt` tenant must never see.
async fn setup(dir: &Path) -> (Arc<QueryService>, TenantId) {
    let engine = open_engine(dir, HeadConfig::default()).await;
    let ingest = IngestService::new(
        Arc::<Engine>::clone(&engine),
        hearth_engine::limits::FixedLimits::shared(Limits::default()),
    );
    let tenant = TenantId::new("slt").unwrap();
    push(
        &ingest,
        &tenant,
        "api",
        "captures/extracted/py-001.s0.r0.pb",
        T0_MS,
    )
    .await;
    push(
        &ingest,
        &tenant,
        "worker",
        "captures/extracted/py-005.s1.r0.pb",
        T0_MS + 10_000,
    )
    .await;
    engine.flush_tenant(&tenant).await.unwrap();
    push(
        &ingest,
        &tenant,
        "api",
        "captures/extracted/py-001.s0.r0.pb",
        T0_MS + 60_000,
    )
    .await;
    let other = TenantId::new("other").unwrap();
    push(
        &ingest,
        &other,
        "secret",
        "captures/extracted/py-005.s1.r0.pb",
        T0_MS,
    )
    .await;
    let query = Arc::new(QueryService::new(
        engine,
        QueryConfig {
            max_query_memory_bytes: 256 << 20,
            ..QueryConfig::default()
        },
    ));
    (query, tenant)
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let (query, tenant) = setup(dir.path()).await;
        let update = std::env::var("SLT_UPDATE").is_ok_and(|v| v == "1");
        let mut failures = Vec::new();
        for file in slt_files() {
            let (query, tenant) = (Arc::clone(&query), tenant.clone());
            let mut runner = Runner::new(move || {
                let (query, tenant) = (Arc::clone(&query), tenant.clone());
                async move { Ok::<_, SqlError>(HearthDb { query, tenant }) }
            });
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            let result = if update {
                runner
                    .update_test_file(
                        &file,
                        " ",
                        sqllogictest::default_validator,
                        sqllogictest::default_normalizer,
                        sqllogictest::default_column_validator,
                    )
                    .await
                    .map_err(|e| e.to_string())
            } else {
                runner
                    .run_file_async(&file)
                    .await
                    .map_err(|e| e.display(true).to_string())
            };
            match result {
                Ok(()) => println!("ok   {name}"),
                Err(e) => {
                    println!("FAIL {name}\n{e}");
                    failures.push(name);
                }
            }
        }
        assert!(failures.is_empty(), "failed: {failures:?}");
    });
}
