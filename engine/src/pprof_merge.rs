//! Merging samples into one pprof `Profile`: strings, mappings, functions and locations
//! deduplicated by content, samples with equal stacks summed. The `pprof` aggregate's partial
//! state is itself an encoded `Profile` with one value per sample.

use std::sync::Arc;

use datafusion::logical_expr::AggregateUDF;
use hearth_proto::pprof::{Function, Line, Location, Mapping, Profile, Sample, ValueType};
use prost::Message;
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::stack_merge::{StackMerge, StackMergeAggregate};
use crate::symbol_set::SymbolSet;
use crate::symbols::{Interned, SymbolPartition};

/// `pprof(source, service_name, stacktrace_id, value)`: the samples merged into one encoded
/// pprof `Profile` (one value per sample; set its type with [`set_profile_type`]).
pub fn pprof_udaf(symbols: Arc<SymbolSet>) -> AggregateUDF {
    StackMergeAggregate::<PprofBuilder>::udaf(symbols)
}

impl StackMerge for PprofBuilder {
    const NAME: &'static str = "pprof";

    fn new() -> Self {
        PprofBuilder::new()
    }

    fn add_partition(&mut self, symbols: &SymbolPartition, values: &[i64]) {
        PprofBuilder::add_partition(self, symbols, values);
    }

    fn encode(&self) -> Vec<u8> {
        self.build().encode_to_vec()
    }

    fn merge_encoded(&mut self, bytes: &[u8]) -> Result<()> {
        let fragment = Profile::decode(bytes).map_err(|e| Error::corrupt("pprof fragment", e))?;
        self.add_profile(&fragment)
    }

    fn size(&self) -> usize {
        PprofBuilder::size(self)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MappingKey {
    memory_start: u64,
    memory_limit: u64,
    file_offset: u64,
    filename: i64,
    build_id: i64,
    flags: [bool; 4],
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FunctionKey {
    name: i64,
    system_name: i64,
    filename: i64,
    start_line: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct LocationKey {
    /// 1-based mapping id, 0 for none.
    mapping: u64,
    address: u64,
    /// (1-based function id, line), innermost first.
    lines: Vec<(u64, i64)>,
}

/// Builds one deduplicated profile out of symbol partitions and profile fragments.
#[derive(Debug, Default)]
pub struct PprofBuilder {
    strings: Interned<String>,
    mappings: Interned<MappingKey>,
    functions: Interned<FunctionKey>,
    locations: Interned<LocationKey>,
    samples: FxHashMap<Vec<u64>, i64>,
}

impl PprofBuilder {
    pub fn new() -> Self {
        let mut builder = PprofBuilder::default();
        builder.strings.intern(String::new());
        builder
    }

    fn string(&mut self, s: &str) -> i64 {
        self.strings.intern(s.to_string()) as i64
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Adds `values[stacktrace_id]` of one symbol partition.
    pub fn add_partition(&mut self, symbols: &SymbolPartition, values: &[i64]) {
        let stacks = &symbols.stacktraces;
        let n = values.len().min(stacks.len());
        let mut locations: FxHashMap<u32, u64> = FxHashMap::default();
        let mut stack = Vec::new();
        let mut ids = Vec::new();
        for (leaf, &value) in values.iter().enumerate().take(n).skip(1) {
            if value == 0 {
                continue;
            }
            stacks.resolve(leaf as u32, &mut stack);
            ids.clear();
            for &location in &stack {
                let id = match locations.get(&location) {
                    Some(&id) => id,
                    None => {
                        let id = self.partition_location(symbols, location);
                        locations.insert(location, id);
                        id
                    }
                };
                ids.push(id);
            }
            *self.samples.entry(ids.clone()).or_default() += value;
        }
    }

    fn partition_location(&mut self, symbols: &SymbolPartition, location: u32) -> u64 {
        let Some(loc) = symbols.locations.get(location) else {
            return self.locations.intern(LocationKey {
                mapping: 0,
                address: 0,
                lines: Vec::new(),
            }) as u64
                + 1;
        };
        let mapping = match loc.mapping.and_then(|m| symbols.mappings.get(m)) {
            Some(m) => {
                let key = MappingKey {
                    memory_start: m.memory_start,
                    memory_limit: m.memory_limit,
                    file_offset: m.file_offset,
                    filename: self.string(symbols.string(m.filename)),
                    build_id: self.string(symbols.string(m.build_id)),
                    flags: [
                        m.has_functions,
                        m.has_filenames,
                        m.has_line_numbers,
                        m.has_inline_frames,
                    ],
                };
                self.mappings.intern(key) as u64 + 1
            }
            None => 0,
        };
        let lines = loc
            .lines
            .iter()
            .map(|line| {
                let f = symbols.functions.get(line.function).cloned().unwrap_or(
                    crate::symbols::Function {
                        name: 0,
                        system_name: 0,
                        filename: 0,
                        start_line: 0,
                    },
                );
                let key = FunctionKey {
                    name: self.string(symbols.string(f.name)),
                    system_name: self.string(symbols.string(f.system_name)),
                    filename: self.string(symbols.string(f.filename)),
                    start_line: f.start_line,
                };
                (self.functions.intern(key) as u64 + 1, line.line)
            })
            .collect();
        self.locations.intern(LocationKey {
            mapping,
            address: loc.address,
            lines,
        }) as u64
            + 1
    }

    /// Adds a profile built by another builder (one value per sample).
    pub fn add_profile(&mut self, p: &Profile) -> Result<()> {
        let corrupt = |what: &str| Error::corrupt("pprof fragment", what);
        let s = |i: i64| {
            p.string_table
                .get(i as usize)
                .map(String::as_str)
                .ok_or_else(|| corrupt("string index"))
        };
        let mut mappings = Vec::with_capacity(p.mapping.len());
        for m in &p.mapping {
            let key = MappingKey {
                memory_start: m.memory_start,
                memory_limit: m.memory_limit,
                file_offset: m.file_offset,
                filename: self.string(s(m.filename)?),
                build_id: self.string(s(m.build_id)?),
                flags: [
                    m.has_functions,
                    m.has_filenames,
                    m.has_line_numbers,
                    m.has_inline_frames,
                ],
            };
            mappings.push(self.mappings.intern(key) as u64 + 1);
        }
        let mut functions = Vec::with_capacity(p.function.len());
        for f in &p.function {
            let key = FunctionKey {
                name: self.string(s(f.name)?),
                system_name: self.string(s(f.system_name)?),
                filename: self.string(s(f.filename)?),
                start_line: f.start_line,
            };
            functions.push(self.functions.intern(key) as u64 + 1);
        }
        // Fragments use dense 1-based ids.
        let by_id = |ids: &[u64], id: u64| -> Result<u64> {
            if id == 0 {
                return Ok(0);
            }
            ids.get(id as usize - 1)
                .copied()
                .ok_or_else(|| corrupt("id"))
        };
        let mut locations = Vec::with_capacity(p.location.len());
        for l in &p.location {
            let mut lines = Vec::with_capacity(l.line.len());
            for line in &l.line {
                lines.push((by_id(&functions, line.function_id)?, line.line));
            }
            let key = LocationKey {
                mapping: by_id(&mappings, l.mapping_id)?,
                address: l.address,
                lines,
            };
            locations.push(self.locations.intern(key) as u64 + 1);
        }
        for sample in &p.sample {
            let mut ids = Vec::with_capacity(sample.location_id.len());
            for &id in &sample.location_id {
                ids.push(by_id(&locations, id)?);
            }
            let value = sample.value.first().copied().unwrap_or(0);
            *self.samples.entry(ids).or_default() += value;
        }
        Ok(())
    }

    /// The merged profile, with one value per sample and no sample type yet.
    pub fn build(&self) -> Profile {
        let mut samples: Vec<(&Vec<u64>, &i64)> = self.samples.iter().collect();
        samples.sort();
        Profile {
            string_table: self.strings.items().to_vec(),
            mapping: self
                .mappings
                .items()
                .iter()
                .enumerate()
                .map(|(i, m)| Mapping {
                    id: i as u64 + 1,
                    memory_start: m.memory_start,
                    memory_limit: m.memory_limit,
                    file_offset: m.file_offset,
                    filename: m.filename,
                    build_id: m.build_id,
                    has_functions: m.flags[0],
                    has_filenames: m.flags[1],
                    has_line_numbers: m.flags[2],
                    has_inline_frames: m.flags[3],
                })
                .collect(),
            function: self
                .functions
                .items()
                .iter()
                .enumerate()
                .map(|(i, f)| Function {
                    id: i as u64 + 1,
                    name: f.name,
                    system_name: f.system_name,
                    filename: f.filename,
                    start_line: f.start_line,
                })
                .collect(),
            location: self
                .locations
                .items()
                .iter()
                .enumerate()
                .map(|(i, l)| Location {
                    id: i as u64 + 1,
                    mapping_id: l.mapping,
                    address: l.address,
                    line: l
                        .lines
                        .iter()
                        .map(|&(function_id, line)| Line {
                            function_id,
                            line,
                            column: 0,
                        })
                        .collect(),
                    is_folded: false,
                })
                .collect(),
            sample: samples
                .into_iter()
                .map(|(ids, &value)| Sample {
                    location_id: ids.clone(),
                    value: vec![value],
                    label: Vec::new(),
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Approximate heap bytes, for memory accounting.
    pub fn size(&self) -> usize {
        let strings: usize = self.strings.items().iter().map(|s| s.len() + 48).sum();
        strings
            + self.mappings.len() * 96
            + self.functions.len() * 80
            + self.locations.len() * 96
            + self.samples.keys().map(|k| k.len() * 8 + 64).sum::<usize>()
    }
}

/// Completes a merged profile with its type: `sample_type` and `period_type` are (type, unit).
pub fn set_profile_type(
    profile: &mut Profile,
    sample_type: (&str, &str),
    period_type: (&str, &str),
    period: i64,
) {
    let mut intern = |s: &str| -> i64 {
        if let Some(i) = profile.string_table.iter().position(|x| x == s) {
            return i as i64;
        }
        profile.string_table.push(s.to_string());
        profile.string_table.len() as i64 - 1
    };
    let sample = ValueType {
        r#type: intern(sample_type.0),
        unit: intern(sample_type.1),
    };
    let period_value = ValueType {
        r#type: intern(period_type.0),
        unit: intern(period_type.1),
    };
    profile.sample_type = vec![sample];
    if !period_type.0.is_empty() {
        profile.period_type = Some(period_value);
        profile.period = period;
    }
}
