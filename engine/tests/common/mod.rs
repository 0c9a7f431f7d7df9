//! What the engine's integration tests share: fixtures and batches as a minimal ingest builds
//! them.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use hearth_engine::model::{Labels, ProfileType};
use hearth_engine::{ProfileBatch, SeriesProfile};

pub(crate) fn fixture(name: &str) -> Bytes {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name);
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// One series per sample type of `raw`, all samples, at `time`; profile ids `<id>-<type index>`.
pub(crate) fn batch_at(raw: &Bytes, service: &str, time: i64, id: &str) -> ProfileBatch {
    let (pprof, index) = ProfileBatch::decode_pprof(raw, usize::MAX).unwrap();
    let s = |i: i64| pprof.string_table[i as usize].clone();
    let period = pprof.period_type.unwrap_or_default();
    let profiles = pprof
        .sample_type
        .iter()
        .enumerate()
        .map(|(i, vt)| {
            let profile_type = ProfileType {
                name: "test".into(),
                sample_type: s(vt.r#type),
                sample_unit: s(vt.unit),
                period_type: s(period.r#type),
                period_unit: s(period.unit),
            };
            SeriesProfile {
                labels: Labels::from_pairs([
                    ("__name__", "test".to_string()),
                    ("service_name", service.to_string()),
                    ("__profile_type__", profile_type.id()),
                ]),
                value_index: i,
                time_nanos: time,
                duration_nanos: pprof.duration_nanos,
                period: pprof.period,
                id: format!("{id}-{i}"),
                samples: None,
                span_ids: Vec::new(),
            }
        })
        .collect();
    ProfileBatch {
        partition: service.to_string(),
        raw: raw.clone(),
        pprof: Arc::new(pprof),
        index: Arc::new(index),
        profiles,
    }
}
