//! Stacks with values, as every non-pprof `/ingest` format reads into them, and the pprof they
//! become: one sample type, one function and location per distinct frame name, as Pyroscope
//! builds it from its own stack trees.

use std::collections::HashMap;

use hearth_proto::pprof::{Function, Line, Location, Mapping, Profile, Sample, ValueType};

use crate::pprof_strings::StringTable;

/// Stack (frames root first, separated by `;`) → value; equal stacks add up. The distinct
/// stacks' bytes stay within a budget, so a small body cannot decode into a huge one (a trie
/// whose every node extends a long key, a speedscope sample repeating a long frame).
#[derive(Debug, Clone, PartialEq)]
pub struct Stacks {
    values: HashMap<String, u64>,
    bytes: usize,
    budget: usize,
}

impl Default for Stacks {
    fn default() -> Self {
        Self::with_budget(usize::MAX)
    }
}

impl Stacks {
    pub fn new() -> Self {
        Self::default()
    }

    /// Stacks whose distinct keys may take `budget` bytes in all.
    pub fn with_budget(budget: usize) -> Self {
        Stacks {
            values: HashMap::new(),
            bytes: 0,
            budget,
        }
    }

    /// Adds `value` to `stack`; a new stack past the budget is refused.
    pub fn add(&mut self, stack: &str, value: u64) -> Result<(), String> {
        if value == 0 {
            return Ok(());
        }
        match self.values.get_mut(stack) {
            Some(sum) => *sum = sum.saturating_add(value),
            None => {
                if stack.len() > self.room() {
                    return Err(self.over_budget());
                }
                self.bytes += stack.len();
                self.values.insert(stack.to_string(), value);
            }
        }
        Ok(())
    }

    /// Adds every stack of `other`.
    pub fn merge(&mut self, other: Stacks) -> Result<(), String> {
        for (stack, value) in other.values {
            self.add(&stack, value)?;
        }
        Ok(())
    }

    /// Bytes a new stack may still take.
    pub fn room(&self) -> usize {
        self.budget - self.bytes
    }

    /// The distinct stacks' bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Why a stack was refused.
    pub fn over_budget(&self) -> String {
        format!(
            "the decoded stacks would take more than {} bytes",
            self.budget
        )
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Each stack and its value, sorted: what tests compare.
    #[cfg(test)]
    pub(super) fn sorted(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = self.iter().map(|(s, v)| (s.to_string(), v)).collect();
        out.sort();
        out
    }

    /// Each stack and its value.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.values
            .iter()
            .map(|(stack, &value)| (stack.as_str(), value))
    }

    /// The pprof of these stacks: sample type `sample` (type, unit), each value through
    /// `scale`, `period` (type, unit, value) when given, at `time_nanos`. Frames are split on
    /// `;`; a trailing `;` ends the stack without an empty frame.
    pub fn to_pprof(
        &self,
        sample: (&str, &str),
        period: Option<(&str, &str, i64)>,
        time_nanos: i64,
        scale: impl Fn(u64) -> i64,
    ) -> Profile {
        let mut builder = Builder::default();
        let mut profile = Profile {
            string_table: vec![String::new()],
            mapping: vec![Mapping {
                id: 1,
                ..Default::default()
            }],
            time_nanos,
            ..Default::default()
        };
        let sample_type = ValueType {
            r#type: builder.string(&mut profile, sample.0),
            unit: builder.string(&mut profile, sample.1),
        };
        profile.sample_type = vec![sample_type];
        if let Some((kind, unit, every)) = period {
            profile.period_type = Some(ValueType {
                r#type: builder.string(&mut profile, kind),
                unit: builder.string(&mut profile, unit),
            });
            profile.period = every;
        }
        // Sorted, so equal inputs give equal profiles.
        let mut stacks: Vec<(&String, &u64)> = self.values.iter().collect();
        stacks.sort_unstable();
        for (stack, &value) in stacks {
            let frames = stack.strip_suffix(';').unwrap_or(stack);
            let mut location_id: Vec<u64> = if frames.is_empty() {
                Vec::new()
            } else {
                frames
                    .split(';')
                    .map(|frame| builder.location(&mut profile, frame))
                    .collect()
            };
            location_id.reverse(); // pprof lists the leaf first
            profile.sample.push(Sample {
                location_id,
                value: vec![scale(value)],
                label: Vec::new(),
            });
        }
        profile
    }
}

/// Interns strings and frame names while a profile is built.
#[derive(Default)]
struct Builder {
    strings: StringTable,
    locations: HashMap<String, u64>,
}

impl Builder {
    fn string(&mut self, profile: &mut Profile, value: &str) -> i64 {
        self.strings.id(profile, value)
    }

    /// The location of frame `name` (one function and one location per distinct name).
    fn location(&mut self, profile: &mut Profile, name: &str) -> u64 {
        if let Some(&id) = self.locations.get(name) {
            return id;
        }
        let id = profile.location.len() as u64 + 1;
        let name_id = self.string(profile, name);
        profile.function.push(Function {
            id,
            name: name_id,
            system_name: name_id,
            ..Default::default()
        });
        profile.location.push(Location {
            id,
            mapping_id: 1,
            line: vec![Line {
                function_id: id,
                ..Default::default()
            }],
            ..Default::default()
        });
        self.locations.insert(name.to_string(), id);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_become_a_pprof_with_one_location_per_frame_name() {
        let mut stacks = Stacks::new();
        for (stack, value) in [
            ("main;work", 3),
            ("main;work", 2),
            ("main;idle;", 1),
            ("other", 0),
        ] {
            stacks.add(stack, value).unwrap();
        }
        let p = stacks.to_pprof(("samples", "count"), None, 7, |v| v as i64);
        assert_eq!(p.time_nanos, 7);
        assert_eq!(p.sample.len(), 2);
        assert_eq!(p.location.len(), 3, "main, idle, work");
        assert_eq!(p.period_type, None);
        let name = |id: u64| {
            let f = &p.function[id as usize - 1];
            p.string_table[f.name as usize].as_str()
        };
        let rendered: Vec<(Vec<&str>, i64)> = p
            .sample
            .iter()
            .map(|s| (s.location_id.iter().map(|&l| name(l)).collect(), s.value[0]))
            .collect();
        assert_eq!(
            rendered,
            vec![(vec!["idle", "main"], 1), (vec!["work", "main"], 5)]
        );
    }
}
