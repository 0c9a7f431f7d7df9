//! Cumulative pprofs made into deltas, as a scraper must before storing them: Go's `allocs`,
//! `heap` (its `alloc_*` sample types), `mutex` and `block` endpoints count from the process's
//! start, so each scrape holds everything the previous one did. [`Deltas`] keeps the previous
//! scrape's values per stack and labels, and leaves in each new scrape only what happened
//! since (as godeltaprof does in the process). Gauges (`inuse_*`) are kept as they are.

use std::collections::HashMap;

use hearth_proto::pprof::{Location, Profile, Sample};

/// A sample's identity across two scrapes of one process: its frames (address, else function
/// names) and its labels.
type Key = (Vec<(u64, Vec<String>)>, Vec<(String, String, i64)>);

/// The previous scrape of one cumulative endpoint of one target.
#[derive(Debug, Default)]
pub struct Deltas {
    previous: Option<HashMap<Key, Vec<i64>>>,
}

/// Whether values of a sample type count from the process's start.
pub fn is_cumulative(sample_type: &str) -> bool {
    sample_type.starts_with("alloc_") || matches!(sample_type, "contentions" | "delay")
}

impl Deltas {
    /// Turns `profile`'s cumulative sample types into what changed since the last call;
    /// `false` on the first call (there is nothing to subtract yet, so nothing to store).
    /// Samples left with only zeros are dropped.
    pub fn apply(&mut self, profile: &mut Profile) -> bool {
        let cumulative: Vec<bool> = profile
            .sample_type
            .iter()
            .map(|t| is_cumulative(string(profile, t.r#type)))
            .collect();
        let mut now: HashMap<Key, Vec<i64>> = HashMap::with_capacity(profile.sample.len());
        let locations: HashMap<u64, &Location> =
            profile.location.iter().map(|l| (l.id, l)).collect();
        let functions: HashMap<u64, &str> = profile
            .function
            .iter()
            .map(|f| (f.id, string(profile, f.name)))
            .collect();
        let keys: Vec<Key> = profile
            .sample
            .iter()
            .map(|s| key(profile, &locations, &functions, s))
            .collect();
        for (key, sample) in keys.iter().zip(&profile.sample) {
            let total = now
                .entry(key.clone())
                .or_insert_with(|| vec![0; sample.value.len()]);
            for (t, v) in total.iter_mut().zip(&sample.value) {
                *t = t.wrapping_add(*v);
            }
        }
        let Some(previous) = self.previous.replace(now) else {
            return false;
        };
        // A stack seen several times in one scrape takes the whole subtraction on its first
        // sample; the others keep their values.
        let mut subtracted: HashMap<&Key, ()> = HashMap::new();
        for (key, sample) in keys.iter().zip(profile.sample.iter_mut()) {
            if subtracted.insert(key, ()).is_some() {
                continue;
            }
            if let Some(before) = previous.get(key) {
                for ((value, before), cumulative) in
                    sample.value.iter_mut().zip(before).zip(&cumulative)
                {
                    // A counter that went down was reset (the process restarted): all of it
                    // is new.
                    if *cumulative && *value >= *before {
                        *value -= *before;
                    }
                }
            }
        }
        profile.sample.retain(|s| s.value.iter().any(|v| *v != 0));
        true
    }
}

fn string(profile: &Profile, index: i64) -> &str {
    usize::try_from(index)
        .ok()
        .and_then(|i| profile.string_table.get(i))
        .map_or("", String::as_str)
}

fn key(
    profile: &Profile,
    locations: &HashMap<u64, &Location>,
    functions: &HashMap<u64, &str>,
    sample: &Sample,
) -> Key {
    let frames = sample
        .location_id
        .iter()
        .map(|id| match locations.get(id) {
            Some(l) => (
                l.address,
                l.line
                    .iter()
                    .filter_map(|line| functions.get(&line.function_id))
                    .map(|name| name.to_string())
                    .collect(),
            ),
            None => (0, Vec::new()),
        })
        .collect();
    let labels = sample
        .label
        .iter()
        .map(|l| {
            (
                string(profile, l.key).to_string(),
                string(profile, l.str).to_string(),
                l.num,
            )
        })
        .collect();
    (frames, labels)
}

#[cfg(test)]
mod tests {
    use hearth_proto::pprof::{Function, Line, ValueType};

    use super::*;

    /// A heap profile: (alloc_space, inuse_space) per function.
    fn heap(samples: &[(&str, i64, i64)]) -> Profile {
        let mut strings = vec![
            String::new(),
            "alloc_space".into(),
            "bytes".into(),
            "inuse_space".into(),
        ];
        let mut profile = Profile {
            sample_type: vec![
                ValueType { r#type: 1, unit: 2 },
                ValueType { r#type: 3, unit: 2 },
            ],
            ..Default::default()
        };
        for (i, (name, alloc, inuse)) in samples.iter().enumerate() {
            let id = i as u64 + 1;
            strings.push(name.to_string());
            profile.function.push(Function {
                id,
                name: strings.len() as i64 - 1,
                ..Default::default()
            });
            profile.location.push(Location {
                id,
                address: 0x1000 * id,
                line: vec![Line {
                    function_id: id,
                    ..Default::default()
                }],
                ..Default::default()
            });
            profile.sample.push(Sample {
                location_id: vec![id],
                value: vec![*alloc, *inuse],
                ..Default::default()
            });
        }
        profile.string_table = strings;
        profile
    }

    fn values(profile: &Profile) -> Vec<Vec<i64>> {
        profile.sample.iter().map(|s| s.value.clone()).collect()
    }

    #[test]
    fn allocations_become_deltas_and_in_use_stays() {
        let mut deltas = Deltas::default();
        assert!(!deltas.apply(&mut heap(&[("a", 100, 10), ("b", 50, 5)])));
        let mut second = heap(&[("a", 160, 12), ("b", 50, 7)]);
        assert!(deltas.apply(&mut second));
        assert_eq!(values(&second), [vec![60, 12], vec![0, 7]]);
        // Nothing new and nothing in use: dropped; a counter that went down was reset, so all
        // of it is new.
        let mut third = heap(&[("a", 160, 0), ("b", 20, 1)]);
        assert!(deltas.apply(&mut third));
        assert_eq!(values(&third), [vec![20, 1]]);
    }
}
