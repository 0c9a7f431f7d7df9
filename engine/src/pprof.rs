//! pprof decoding: gzip sniffed by its magic bytes, inflation bounded, structure validated.
//!
//! A [`PprofIndex`] is built once per decoded profile: it checks every reference (string,
//! location, function, mapping) and maps pprof ids to positions, so later stages index
//! without bounds surprises.

use std::collections::HashMap;

use hearth_proto::pprof::Profile;
use prost::Message;

use crate::compression::{gunzip_bounded, is_gzip};
use crate::error::{Error, ErrorKind, Result};

/// Decodes a pprof profile, gzipped or not, whose decoded size may not pass `max_bytes`.
pub fn decode(bytes: &[u8], max_bytes: usize) -> Result<Profile> {
    let inflated;
    let raw = if is_gzip(bytes) {
        inflated = gunzip_bounded(bytes, max_bytes, "profile")?;
        &inflated[..]
    } else {
        check_size(bytes.len(), max_bytes)?;
        bytes
    };
    Profile::decode(raw).map_err(|e| {
        Error::invalid(
            ErrorKind::MalformedProfile,
            format!("failed to decode pprof profile: {e}"),
        )
    })
}

/// Refuses an encoded profile of `len` bytes past `max_bytes`.
pub fn check_size(len: usize, max_bytes: usize) -> Result<()> {
    if len > max_bytes {
        return Err(Error::invalid(
            ErrorKind::PayloadTooLarge,
            format!("profile size {len} bytes exceeds the limit of {max_bytes} bytes"),
        ));
    }
    Ok(())
}

/// Maps pprof ids (arbitrary u64s) to positions in their tables.
#[derive(Debug, Clone)]
enum IdMap {
    /// Ids are `1..=n` in table order, as nearly every producer writes them.
    Dense(usize),
    Sparse(HashMap<u64, u32>),
}

impl IdMap {
    fn new(ids: impl ExactSizeIterator<Item = u64> + Clone) -> Result<Self, u64> {
        let len = ids.len();
        if ids.clone().enumerate().all(|(i, id)| id == i as u64 + 1) {
            return Ok(IdMap::Dense(len));
        }
        let mut map = HashMap::with_capacity(len);
        for (i, id) in ids.enumerate() {
            if id == 0 || map.insert(id, i as u32).is_some() {
                return Err(id);
            }
        }
        Ok(IdMap::Sparse(map))
    }

    fn get(&self, id: u64) -> Option<usize> {
        match self {
            IdMap::Dense(len) => (id >= 1 && id <= *len as u64).then(|| id as usize - 1),
            IdMap::Sparse(map) => map.get(&id).map(|&i| i as usize),
        }
    }
}

/// A validated view of a decoded profile: every reference resolves.
#[derive(Debug, Clone)]
pub struct PprofIndex {
    locations: IdMap,
    functions: IdMap,
    mappings: IdMap,
}

fn malformed(message: impl Into<String>) -> Error {
    Error::invalid(ErrorKind::MalformedProfile, message)
}

impl PprofIndex {
    /// Checks the profile's references; the message names the first broken one.
    pub fn new(p: &Profile) -> Result<Self> {
        let strings = p.string_table.len() as i64;
        let string_ok = |i: i64| (0..strings).contains(&i);
        if p.string_table.first().is_none_or(|s| !s.is_empty()) {
            return Err(malformed("string 0 should be empty string"));
        }
        if p.sample_type.is_empty() {
            return Err(malformed("empty profile: no sample types"));
        }
        for vt in p.sample_type.iter().chain(p.period_type.iter()) {
            if !string_ok(vt.r#type) || !string_ok(vt.unit) {
                return Err(malformed("sample type string index out of range"));
            }
        }
        let mappings = IdMap::new(p.mapping.iter().map(|m| m.id))
            .map_err(|id| malformed(format!("mapping id {id} is zero or repeated")))?;
        for m in &p.mapping {
            if !string_ok(m.filename) || !string_ok(m.build_id) {
                return Err(malformed(
                    "mapping file name or build id string index out of range",
                ));
            }
        }
        let functions = IdMap::new(p.function.iter().map(|f| f.id))
            .map_err(|id| malformed(format!("function id {id} is zero or repeated")))?;
        for f in &p.function {
            if !string_ok(f.name) || !string_ok(f.system_name) || !string_ok(f.filename) {
                return Err(malformed(format!(
                    "function {} has a string index out of range",
                    f.id
                )));
            }
        }
        let locations = IdMap::new(p.location.iter().map(|l| l.id))
            .map_err(|id| malformed(format!("location id {id} is zero or repeated")))?;
        for l in &p.location {
            if l.mapping_id != 0 && mappings.get(l.mapping_id).is_none() {
                return Err(malformed(format!(
                    "location {} refers to unknown mapping {}",
                    l.id, l.mapping_id
                )));
            }
            for line in &l.line {
                if functions.get(line.function_id).is_none() {
                    return Err(malformed(format!(
                        "location {} refers to unknown function {}",
                        l.id, line.function_id
                    )));
                }
            }
        }
        let types = p.sample_type.len();
        for (i, s) in p.sample.iter().enumerate() {
            if s.value.len() != types {
                return Err(malformed(format!(
                    "sample {i} has {} values for {types} sample types",
                    s.value.len()
                )));
            }
            if let Some(bad) = s
                .location_id
                .iter()
                .find(|&&id| locations.get(id).is_none())
            {
                return Err(malformed(format!(
                    "sample {i} refers to unknown location {bad}"
                )));
            }
            if s.label
                .iter()
                .any(|l| !string_ok(l.key) || !string_ok(l.str) || !string_ok(l.num_unit))
            {
                return Err(malformed("sample label string index out of range"));
            }
        }
        Ok(PprofIndex {
            locations,
            functions,
            mappings,
        })
    }

    /// Position of a location id; valid for every id a sample refers to.
    pub fn location(&self, id: u64) -> usize {
        self.locations.get(id).expect("validated location id")
    }

    /// Position of a function id; valid for every id a line refers to.
    pub fn function(&self, id: u64) -> usize {
        self.functions.get(id).expect("validated function id")
    }

    /// Position of a mapping id, `None` for 0.
    pub fn mapping(&self, id: u64) -> Option<usize> {
        if id == 0 { None } else { self.mappings.get(id) }
    }
}

/// The string at `index` of the profile's string table (validated indices only).
pub fn string(p: &Profile, index: i64) -> &str {
    p.string_table
        .get(index as usize)
        .map_or("", |s| s.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::pprof::{Location, Sample, ValueType};
    use std::io::Write;

    fn minimal() -> Profile {
        Profile {
            string_table: vec!["".into(), "cpu".into(), "nanoseconds".into()],
            sample_type: vec![ValueType { r#type: 1, unit: 2 }],
            location: vec![Location {
                id: 1,
                ..Default::default()
            }],
            sample: vec![Sample {
                location_id: vec![1],
                value: vec![10],
                label: vec![],
            }],
            ..Default::default()
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn decodes_plain_and_gzipped() {
        let bytes = minimal().encode_to_vec();
        assert_eq!(decode(&bytes, 1 << 20).unwrap(), minimal());
        assert_eq!(decode(&gzip(&bytes), 1 << 20).unwrap(), minimal());
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![0u8; 64 << 20]);
        let err = decode(&bomb, 1 << 20).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);
        assert!(
            err.to_string()
                .contains("exceeds the limit of 1048576 bytes")
        );
    }

    #[test]
    fn broken_references_are_named() {
        let mut p = minimal();
        p.sample[0].location_id = vec![7];
        let err = PprofIndex::new(&p).unwrap_err().to_string();
        assert!(err.contains("unknown location 7"), "{err}");
        let mut p = minimal();
        p.sample[0].value.push(1);
        assert!(PprofIndex::new(&p).is_err());
    }
}
