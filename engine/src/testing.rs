//! Helpers for the workspace's tests and benchmarks (feature `testing`; the binary never
//! enables it): an engine on a local folder, and push requests as agents build them.

use std::path::Path;
use std::sync::Arc;

use hearth_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
use hearth_proto::types::v1::LabelPair;
use object_store::local::LocalFileSystem;

use crate::db::{Engine, EngineArgs, HeadConfig};

/// Opens an engine with its WAL in `dir/wal` and its blocks in `dir/blocks`, as a single
/// process (no origin). Panics on failure: it is for tests.
pub async fn open_engine(dir: &Path, head: HeadConfig) -> Arc<Engine> {
    std::fs::create_dir_all(dir.join("blocks")).expect("create the blocks folder");
    let store =
        LocalFileSystem::new_with_prefix(dir.join("blocks")).expect("open the blocks folder");
    Engine::open(EngineArgs {
        wal_dir: dir.join("wal"),
        store: Arc::new(store),
        head,
        symbol_cache_bytes: 64 << 20,
        origin: String::new(),
        serve_blocks: true,
        limits: Arc::new(crate::limits::FixedLimits::default()),
        metrics: Default::default(),
    })
    .await
    .expect("open the engine")
}

/// One series of a push: `labels` and one raw pprof (gzipped or not) with profile id `id`.
pub fn raw_series(labels: &[(&str, &str)], pprof: Vec<u8>, id: String) -> RawProfileSeries {
    RawProfileSeries {
        labels: labels
            .iter()
            .map(|(name, value)| LabelPair {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect(),
        samples: vec![RawSample {
            raw_profile: pprof.into(),
            id,
        }],
        annotations: vec![],
    }
}

/// A `push.v1` request of one series, as the Pyroscope SDKs send it.
pub fn push_request(labels: &[(&str, &str)], pprof: Vec<u8>, id: String) -> PushRequest {
    PushRequest {
        series: vec![raw_series(labels, pprof, id)],
    }
}
