//! An ingester's side of a remote scan of the series table keeps only the series the pushed-down
//! label matchers match (found through the head's postings), and a bad matcher is refused.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt64Type;
use hearth_engine::matcher::{LabelMatcher, MatchOp};
use hearth_engine::model::TenantId;
use hearth_engine::remote::RemoteScan;
use hearth_engine::schema::{self, TableKind};
use hearth_engine::testing::{open_engine, push_request};
use hearth_engine::{Engine, HeadConfig};
use hearth_ingest::{IngestService, Limits};
use hearth_proto::pprof::Profile;
use hearth_sql::{QueryConfig, QueryService};
use prost::Message;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut profile = Profile::decode(bytes.as_slice()).unwrap();
    profile.time_nanos = 1_767_225_600_000_000_000;
    profile.encode_to_vec()
}

#[tokio::test]
async fn pushed_down_matchers_keep_only_matching_series() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open_engine(dir.path(), HeadConfig::default()).await;
    let ingest = IngestService::new(
        Arc::<Engine>::clone(&engine),
        hearth_engine::limits::FixedLimits::shared(Limits::default()),
    );
    let tenant = TenantId::new("t").unwrap();
    for (service, region) in [("api", "eu"), ("api", "us"), ("db", "eu")] {
        let request = push_request(
            &[
                ("__name__", "process_cpu"),
                ("service_name", service),
                ("region", region),
            ],
            fixture("captures/extracted/py-005.s1.r0.pb"),
            format!("{service}-{region}"),
        );
        ingest.push(&tenant, request, 0).await.unwrap();
    }
    let query = QueryService::new(engine, QueryConfig::default());
    let query = &query;
    let regions = |matchers| regions(query, &tenant, matchers);
    let m = |name: &str, op, value: &str| LabelMatcher::new(name, op, value).unwrap();
    assert_eq!(regions(vec![]).await, ["api/eu", "api/us", "db/eu"]);
    assert_eq!(
        regions(vec![m("service_name", MatchOp::Equal, "api")]).await,
        ["api/eu", "api/us"]
    );
    assert_eq!(
        regions(vec![
            m("service_name", MatchOp::Regex, "api|db"),
            m("region", MatchOp::NotEqual, "us"),
        ])
        .await,
        ["api/eu", "db/eu"]
    );
    assert!(
        regions(vec![m("service_name", MatchOp::Equal, "nope")])
            .await
            .is_empty()
    );
}

/// `service/region` of every series a scan with `matchers` returns, sorted.
async fn regions(
    query: &QueryService,
    tenant: &TenantId,
    matchers: Vec<LabelMatcher>,
) -> Vec<String> {
    let schema = TableKind::Series.table_schema();
    let scan = RemoteScan {
        matchers,
        ..RemoteScan::new(tenant, TableKind::Series, &schema)
    };
    let mut regions = Vec::new();
    for batch in query.serve_scan(&scan).await.unwrap() {
        let labels = batch
            .column(schema.index_of(schema::LABELS).unwrap())
            .as_map();
        let ids = batch
            .column(schema.index_of(schema::SERIES_ID).unwrap())
            .as_primitive::<UInt64Type>();
        assert_eq!(ids.len(), labels.len());
        for row in 0..batch.num_rows() {
            let entries = labels.value(row);
            let (names, values) = (
                entries.column(0).as_string::<i32>(),
                entries.column(1).as_string::<i32>(),
            );
            let value = |name: &str| {
                (0..entries.len())
                    .find(|&i| names.value(i) == name)
                    .map(|i| values.value(i).to_string())
                    .unwrap()
            };
            regions.push(format!("{}/{}", value("service_name"), value("region")));
        }
    }
    regions.sort();
    regions
}
