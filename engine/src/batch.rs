//! What the engine is given to store: one decoded pprof and the series profiles taken from it.
//!
//! Ingest decides everything (series labels, which samples go to which series, span ids);
//! the engine stores those decisions in the WAL next to the pprof as received, so a replay
//! rebuilds the same head without re-running ingest rules.

use std::sync::Arc;

use bytes::Bytes;
use hearth_proto::hearth::wal::v1::{WalLabel, WalProfile, WalRecord};
use hearth_proto::pprof::Profile;
use prost::Message;

use crate::error::{Error, Result};
use crate::model::{Labels, label};
use crate::pprof::{self, PprofIndex};

/// One pprof and the series profiles it yields.
#[derive(Debug, Clone)]
pub struct ProfileBatch {
    /// The symbol partition: the profiles' `service_name`.
    pub partition: String,
    /// The pprof as received, gzipped or not.
    pub raw: Bytes,
    pub pprof: Arc<Profile>,
    pub index: Arc<PprofIndex>,
    pub profiles: Vec<SeriesProfile>,
}

/// One series' profile: one sample type, some or all of the samples.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesProfile {
    /// Complete series labels (`__name__`, `service_name`, `__profile_type__`, ...).
    pub labels: Labels,
    pub value_index: usize,
    pub time_nanos: i64,
    pub duration_nanos: i64,
    pub period: i64,
    pub id: String,
    /// Indices of the pprof samples this profile holds; `None` for all of them.
    pub samples: Option<Vec<u32>>,
    /// Span ids parallel to the chosen samples (0 = none); empty when none has one.
    pub span_ids: Vec<u64>,
}

impl SeriesProfile {
    pub fn profile_type(&self) -> &str {
        self.labels.get(label::PROFILE_TYPE).unwrap_or_default()
    }

    /// The indices of the pprof samples held, in order.
    pub fn sample_indices<'a>(&'a self, pprof: &Profile) -> Box<dyn Iterator<Item = usize> + 'a> {
        match &self.samples {
            Some(indices) => Box::new(indices.iter().map(|&i| i as usize)),
            None => Box::new(0..pprof.sample.len()),
        }
    }
}

impl ProfileBatch {
    /// Decodes and validates `raw`, for callers that have not decoded it yet.
    pub fn decode_pprof(raw: &[u8], max_bytes: usize) -> Result<(Profile, PprofIndex)> {
        let profile = pprof::decode(raw, max_bytes)?;
        let index = PprofIndex::new(&profile)?;
        Ok((profile, index))
    }

    /// Validates `profile`, built here and encoded in `encoded_len` bytes, as
    /// [`ProfileBatch::decode_pprof`] validates a received one, without decoding it again.
    pub fn index_pprof(
        profile: Profile,
        encoded_len: usize,
        max_bytes: usize,
    ) -> Result<(Profile, PprofIndex)> {
        pprof::check_size(encoded_len, max_bytes)?;
        let index = PprofIndex::new(&profile)?;
        Ok((profile, index))
    }

    pub fn sample_count(&self) -> usize {
        self.profiles
            .iter()
            .map(|p| p.samples.as_ref().map_or(self.pprof.sample.len(), Vec::len))
            .sum()
    }

    pub fn to_wal_record(&self) -> Vec<u8> {
        let record = WalRecord {
            pprof: self.raw.clone(),
            partition: self.partition.clone(),
            profiles: self
                .profiles
                .iter()
                .map(|p| WalProfile {
                    labels: p
                        .labels
                        .iter()
                        .map(|l| WalLabel {
                            name: l.name.clone(),
                            value: l.value.clone(),
                        })
                        .collect(),
                    value_index: p.value_index as u32,
                    time_nanos: p.time_nanos,
                    duration_nanos: p.duration_nanos,
                    period: p.period,
                    id: p.id.clone(),
                    all_samples: p.samples.is_none(),
                    sample_indices: p.samples.clone().unwrap_or_default(),
                    span_ids: p.span_ids.clone(),
                })
                .collect(),
        };
        record.encode_to_vec()
    }

    /// Rebuilds a batch from a WAL record; the pprof is decoded again.
    pub fn from_wal_record(bytes: &[u8]) -> Result<Self> {
        let record = WalRecord::decode(bytes).map_err(|e| Error::corrupt("wal record", e))?;
        let (profile, index) = Self::decode_pprof(&record.pprof, usize::MAX)
            .map_err(|e| Error::corrupt("wal record pprof", e))?;
        let profiles = record
            .profiles
            .into_iter()
            .map(|p| SeriesProfile {
                labels: Labels::from_pairs(p.labels.into_iter().map(|l| (l.name, l.value))),
                value_index: p.value_index as usize,
                time_nanos: p.time_nanos,
                duration_nanos: p.duration_nanos,
                period: p.period,
                id: p.id,
                samples: (!p.all_samples).then_some(p.sample_indices),
                span_ids: p.span_ids,
            })
            .collect();
        let batch = ProfileBatch {
            partition: record.partition,
            raw: record.pprof,
            pprof: Arc::new(profile),
            index: Arc::new(index),
            profiles,
        };
        batch.check()?;
        Ok(batch)
    }

    /// Checks the series profiles against the pprof: value indices, sample indices, span ids.
    pub fn check(&self) -> Result<()> {
        let types = self.pprof.sample_type.len();
        let samples = self.pprof.sample.len();
        for p in &self.profiles {
            let chosen = p.samples.as_ref().map_or(samples, Vec::len);
            let bad = p.value_index >= types
                || p.samples
                    .as_ref()
                    .is_some_and(|s| s.iter().any(|&i| i as usize >= samples))
                || !(p.span_ids.is_empty() || p.span_ids.len() == chosen);
            if bad {
                return Err(Error::corrupt(
                    "profile batch",
                    format!("series {} does not fit its pprof", p.labels),
                ));
            }
        }
        Ok(())
    }
}
