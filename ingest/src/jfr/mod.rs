//! JFR recordings (`/ingest?format=jfr`, as the pyroscope-java agent and async-profiler send
//! them, or a JDK's own `-XX:StartFlightRecording` file) into pprofs named as Pyroscope names
//! them:
//!
//! | events | profile | sample types |
//! |---|---|---|
//! | `jdk.ExecutionSample` (not sleeping) | `process_cpu` | `cpu` nanoseconds |
//! | `jdk.ExecutionSample` when the recording's `event` setting is `wall`, `profiler.WallClockSample` | `wall` | `wall` nanoseconds |
//! | `jdk.ObjectAllocationInNewTLAB` | `memory` | `alloc_in_new_tlab_objects`, `alloc_in_new_tlab_bytes` |
//! | `jdk.ObjectAllocationOutsideTLAB` | `memory` | `alloc_outside_tlab_objects`, `alloc_outside_tlab_bytes` |
//! | `jdk.ObjectAllocationSample` | `memory` | `alloc_sample_objects`, `alloc_sample_bytes` |
//! | `jdk.JavaMonitorEnter` | `mutex` | `contentions`, `delay` nanoseconds |
//! | `jdk.ThreadPark` | `block` | `contentions`, `delay` nanoseconds |
//! | `profiler.LiveObject` | `memory` | `live` count |
//! | `profiler.Malloc` | `memory` | `malloc_objects`, `malloc_bytes` |
//!
//! CPU and wall samples weigh the request's period (`1e9 / sampleRate` nanoseconds). A frame is
//! `<class>.<method>` at its line. An event's `contextId` names its labels in the `labels`
//! form field (a `LabelsSnapshot`), its `spanId` and `spanName` become `profile_id` and
//! `span_name`.

mod reader;

use std::collections::HashMap;

use hearth_proto::pprof::{Function, Label, Line, Location, Mapping, Profile, Sample, ValueType};

use reader::{Chunk, Value};

use crate::pprof_strings::StringTable;

/// Dynamic labels the Java agent sends beside a recording (the `labels` form field).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelsSnapshot {
    #[prost(map = "int64, message", tag = "1")]
    pub contexts: HashMap<i64, Context>,
    #[prost(map = "int64, string", tag = "2")]
    pub strings: HashMap<i64, String>,
}

/// One context's labels, as ids into [`LabelsSnapshot::strings`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct Context {
    #[prost(map = "int64, int64", tag = "1")]
    pub labels: HashMap<i64, i64>,
}

/// A profile made from a recording: its series name (`__name__`) and the pprof.
#[derive(Debug)]
pub struct JfrProfile {
    pub name: &'static str,
    pub pprof: Profile,
}

/// What a recording is read with.
#[derive(Debug, Clone, Copy)]
pub struct JfrParams {
    /// Samples per second of CPU and wall events; 0 keeps counts.
    pub sample_rate: u32,
    pub from_nanos: i64,
    pub until_nanos: i64,
}

/// A type and its unit.
type Pair = (&'static str, &'static str);

/// The kinds of profile a recording holds, in the order they are returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Cpu,
    Wall,
    InNewTlab,
    OutsideTlab,
    AllocSample,
    Lock,
    Park,
    Live,
    Malloc,
}

impl Kind {
    /// `__name__`, the sample types and the period type.
    fn describe(self) -> (&'static str, &'static [Pair], Option<Pair>) {
        match self {
            Kind::Cpu => (
                "process_cpu",
                &[("cpu", "nanoseconds")],
                Some(("cpu", "nanoseconds")),
            ),
            Kind::Wall => (
                "wall",
                &[("wall", "nanoseconds")],
                Some(("wall", "nanoseconds")),
            ),
            Kind::InNewTlab => (
                "memory",
                &[
                    ("alloc_in_new_tlab_objects", "count"),
                    ("alloc_in_new_tlab_bytes", "bytes"),
                ],
                Some(("space", "bytes")),
            ),
            Kind::OutsideTlab => (
                "memory",
                &[
                    ("alloc_outside_tlab_objects", "count"),
                    ("alloc_outside_tlab_bytes", "bytes"),
                ],
                Some(("space", "bytes")),
            ),
            Kind::AllocSample => (
                "memory",
                &[
                    ("alloc_sample_objects", "count"),
                    ("alloc_sample_bytes", "bytes"),
                ],
                Some(("space", "bytes")),
            ),
            Kind::Lock => (
                "mutex",
                &[("contentions", "count"), ("delay", "nanoseconds")],
                Some(("mutex", "count")),
            ),
            Kind::Park => (
                "block",
                &[("contentions", "count"), ("delay", "nanoseconds")],
                Some(("block", "count")),
            ),
            Kind::Live => ("memory", &[("live", "count")], Some(("objects", "count"))),
            Kind::Malloc => (
                "memory",
                &[("malloc_objects", "count"), ("malloc_bytes", "bytes")],
                None,
            ),
        }
    }
}

/// Reads a recording (`body`, gzip already undone) into one pprof per kind of event it holds.
pub fn decode(
    body: &[u8],
    labels: Option<&LabelsSnapshot>,
    params: JfrParams,
) -> Result<Vec<JfrProfile>, String> {
    if params.sample_rate > 1_000_000_000 {
        return Err(format!(
            "sampleRate {} is more than one sample per nanosecond",
            params.sample_rate
        ));
    }
    let period = match params.sample_rate {
        0 => 1,
        rate => 1_000_000_000 / i64::from(rate),
    };
    let mut builders: HashMap<Kind, Builder> = HashMap::new();
    // async-profiler's `event` setting (cpu, itimer, wall...), from jdk.ActiveSetting events.
    let mut event_setting = String::new();
    for (n, chunk) in reader::chunks(body)?.iter().enumerate() {
        let at = |e: String| format!("chunk {n}: {e}");
        let names = EventClasses::of(chunk);
        for &(class, pos) in chunk.events() {
            let Some(event) = names.kind(class) else {
                continue;
            };
            let value = chunk.read_event(class, pos).map_err(at)?;
            if event == "jdk.ActiveSetting" {
                if chunk.get(&value, "name").and_then(|v| chunk.text(v)) == Some("event") {
                    event_setting = chunk
                        .get(&value, "value")
                        .and_then(|v| chunk.text(v))
                        .unwrap_or_default()
                        .to_string();
                }
                continue;
            }
            let ticks_to_nanos = |ticks: i64| -> i64 {
                match chunk.ticks_per_second {
                    1_000_000_000 | 0 => ticks,
                    tps => (i128::from(ticks) * 1_000_000_000 / i128::from(tps)) as i64,
                }
            };
            let field = |name: &str| chunk.int(&value, name).unwrap_or(0);
            let samples: Vec<(Kind, [i64; 2])> = match event {
                "jdk.ExecutionSample" => {
                    let state = chunk
                        .get(&value, "state")
                        .and_then(|s| chunk.get(s, "name"))
                        .and_then(|n| chunk.text(n));
                    let mut out = Vec::new();
                    if state != Some("STATE_SLEEPING") {
                        out.push((Kind::Cpu, [period, 0]));
                    }
                    if event_setting == "wall" {
                        out.push((Kind::Wall, [period, 0]));
                    }
                    out
                }
                "profiler.WallClockSample" => {
                    vec![(Kind::Wall, [field("samples").wrapping_mul(period), 0])]
                }
                "jdk.ObjectAllocationInNewTLAB" => vec![(Kind::InNewTlab, [1, field("tlabSize")])],
                "jdk.ObjectAllocationOutsideTLAB" => {
                    vec![(Kind::OutsideTlab, [1, field("allocationSize")])]
                }
                "jdk.ObjectAllocationSample" => vec![(Kind::AllocSample, [1, field("weight")])],
                "jdk.JavaMonitorEnter" => {
                    vec![(Kind::Lock, [1, ticks_to_nanos(field("duration"))])]
                }
                "jdk.ThreadPark" => vec![(Kind::Park, [1, ticks_to_nanos(field("duration"))])],
                "profiler.LiveObject" => vec![(Kind::Live, [1, 0])],
                "profiler.Malloc" => vec![(Kind::Malloc, [1, field("size")])],
                _ => Vec::new(),
            };
            if samples.is_empty() {
                continue;
            }
            let Some(stack) = chunk.get(&value, "stackTrace") else {
                continue;
            };
            let stack_key = match stack {
                Value::Ref(_, key) => Some((n, *key)),
                _ => None,
            };
            let correlation = Correlation {
                context: field("contextId"),
                span: field("spanId"),
                span_name: field("spanName"),
            };
            for (kind, values) in samples {
                let builder = builders.entry(kind).or_insert_with(|| Builder::new(kind));
                builder.add(chunk, stack, stack_key, correlation, labels, &values);
            }
        }
    }
    let mut kinds: Vec<_> = builders.into_iter().collect();
    kinds.sort_by_key(|(kind, _)| *kind);
    Ok(kinds
        .into_iter()
        .map(|(kind, builder)| {
            let (name, _, _) = kind.describe();
            let mut pprof = builder.profile;
            pprof.time_nanos = params.from_nanos;
            pprof.duration_nanos = params.until_nanos.saturating_sub(params.from_nanos).max(0);
            if matches!(kind, Kind::Cpu | Kind::Wall) {
                pprof.period = period;
            }
            JfrProfile { name, pprof }
        })
        .collect())
}

/// The event classes of a chunk that become samples, by type id.
struct EventClasses(HashMap<u64, &'static str>);

impl EventClasses {
    const NAMES: &'static [&'static str] = &[
        "jdk.ActiveSetting",
        "jdk.ExecutionSample",
        "profiler.WallClockSample",
        "jdk.ObjectAllocationInNewTLAB",
        "jdk.ObjectAllocationOutsideTLAB",
        "jdk.ObjectAllocationSample",
        "jdk.JavaMonitorEnter",
        "jdk.ThreadPark",
        "profiler.LiveObject",
        "profiler.Malloc",
    ];

    fn of(chunk: &Chunk<'_>) -> Self {
        EventClasses(
            Self::NAMES
                .iter()
                .filter_map(|name| Some((chunk.class_named(name)?, *name)))
                .collect(),
        )
    }

    fn kind(&self, type_id: u64) -> Option<&'static str> {
        self.0.get(&type_id).copied()
    }
}

/// What ties a sample to labels and spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Correlation {
    context: i64,
    span: i64,
    span_name: i64,
}

/// One kind's pprof, with samples merged by stack and correlation.
struct Builder {
    profile: Profile,
    strings: StringTable,
    /// (chunk, method key) to function id; (function id, line) to location id.
    functions: HashMap<(usize, i64), u64>,
    locations: HashMap<(u64, i64), u64>,
    /// (chunk, stack key, correlation) to sample index.
    samples: HashMap<((usize, i64), Correlation), usize>,
}

impl Builder {
    fn new(kind: Kind) -> Self {
        let mut builder = Builder {
            profile: Profile::default(),
            strings: StringTable::default(),
            functions: HashMap::new(),
            locations: HashMap::new(),
            samples: HashMap::new(),
        };
        let (_, sample_types, period_type) = kind.describe();
        let mut value_type = |(t, unit): (&str, &str)| ValueType {
            r#type: builder.intern(t),
            unit: builder.intern(unit),
        };
        let sample_type = sample_types.iter().map(|t| value_type(*t)).collect();
        let period_type = period_type.map(&mut value_type);
        builder.profile.sample_type = sample_type;
        builder.profile.period_type = period_type;
        builder.profile.mapping.push(Mapping {
            id: 1,
            has_functions: true,
            ..Default::default()
        });
        builder
    }

    fn intern(&mut self, text: &str) -> i64 {
        self.strings.id(&mut self.profile, text)
    }

    fn add(
        &mut self,
        chunk: &Chunk<'_>,
        stack: &Value,
        stack_key: Option<(usize, i64)>,
        correlation: Correlation,
        labels: Option<&LabelsSnapshot>,
        values: &[i64; 2],
    ) {
        let width = self.profile.sample_type.len();
        if let Some(key) = stack_key
            && let Some(&i) = self.samples.get(&(key, correlation))
        {
            let sample = &mut self.profile.sample[i];
            for (total, v) in sample.value.iter_mut().zip(values) {
                *total = total.wrapping_add(*v);
            }
            return;
        }
        let chunk_index = stack_key.map_or(usize::MAX, |(c, _)| c);
        let mut location_id = Vec::new();
        if let Some(Value::Array(frames)) = chunk.get(stack, "frames") {
            for frame in frames {
                if let Some(id) = self.location(chunk, chunk_index, frame) {
                    location_id.push(id);
                }
            }
        }
        let label = self.labels(correlation, labels);
        if let Some(key) = stack_key {
            self.samples
                .insert((key, correlation), self.profile.sample.len());
        }
        self.profile.sample.push(Sample {
            location_id,
            value: values[..width].to_vec(),
            label,
        });
    }

    /// The location of a stack frame: its method at its line.
    fn location(&mut self, chunk: &Chunk<'_>, chunk_index: usize, frame: &Value) -> Option<u64> {
        let method_ref = chunk.get(frame, "method")?;
        let line = chunk.int(frame, "lineNumber").unwrap_or(0).max(0);
        let function = match method_ref {
            Value::Ref(_, key) => match self.functions.get(&(chunk_index, *key)) {
                Some(&id) => id,
                None => {
                    let id = self.function(chunk, method_ref);
                    self.functions.insert((chunk_index, *key), id);
                    id
                }
            },
            inline => self.function(chunk, inline),
        };
        if let Some(&id) = self.locations.get(&(function, line)) {
            return Some(id);
        }
        let id = self.profile.location.len() as u64 + 1;
        self.profile.location.push(Location {
            id,
            mapping_id: 1,
            line: vec![Line {
                function_id: function,
                line,
                column: 0,
            }],
            ..Default::default()
        });
        self.locations.insert((function, line), id);
        Some(id)
    }

    /// A new function named `<class>.<method>`.
    fn function(&mut self, chunk: &Chunk<'_>, method: &Value) -> u64 {
        let symbol = |value: Option<&Value>| -> Option<String> {
            let symbol = value?;
            let text = chunk.get(symbol, "string").and_then(|s| chunk.text(s));
            text.or_else(|| chunk.text(symbol)).map(str::to_string)
        };
        let class = chunk.get(method, "type");
        let class_name = symbol(class.and_then(|c| chunk.get(c, "name"))).unwrap_or_default();
        let method_name = symbol(chunk.get(method, "name")).unwrap_or_default();
        let name = self.intern(&format!("{class_name}.{method_name}"));
        let id = self.profile.function.len() as u64 + 1;
        self.profile.function.push(Function {
            id,
            name,
            ..Default::default()
        });
        id
    }

    fn labels(
        &mut self,
        correlation: Correlation,
        snapshot: Option<&LabelsSnapshot>,
    ) -> Vec<Label> {
        let Some(snapshot) = snapshot else {
            return Vec::new();
        };
        let mut label = Vec::new();
        let mut add = |builder: &mut Self, key: &str, value: &str| {
            label.push(Label {
                key: builder.intern(key),
                str: builder.intern(value),
                ..Default::default()
            });
        };
        if let Some(context) = snapshot.contexts.get(&correlation.context) {
            let mut ids: Vec<_> = context.labels.iter().collect();
            ids.sort();
            for (k, v) in ids {
                if let (Some(k), Some(v)) = (snapshot.strings.get(k), snapshot.strings.get(v)) {
                    add(self, k, v);
                }
            }
        }
        if correlation.span != 0 {
            add(
                self,
                "profile_id",
                &format!("{:016x}", correlation.span as u64),
            );
        }
        if correlation.span_name != 0
            && let Some(name) = snapshot.strings.get(&correlation.span_name)
        {
            add(self, "span_name", name);
        }
        label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// JFR's LEB128 (seven bits a byte).
    fn varint(out: &mut Vec<u8>, v: i64) {
        let mut v = v as u64;
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// An event: its size (itself included), then `payload`.
    fn event(out: &mut Vec<u8>, payload: &[u8]) {
        let one = payload.len() + 1;
        let size = if one < 0x80 { one } else { payload.len() + 2 };
        varint(out, size as i64);
        out.extend_from_slice(payload);
    }

    fn utf8(out: &mut Vec<u8>, s: &str) {
        out.push(3);
        varint(out, s.len() as i64);
        out.extend_from_slice(s.as_bytes());
    }

    /// A one-chunk recording, written as a recorder writes one: two execution samples of the
    /// stack `Main.main;Main.work`, one in context 5 with a span, one in no context.
    fn recording() -> Vec<u8> {
        // (id, name, fields: (name, class, pooled, array))
        type Fields = &'static [(&'static str, i64, bool, bool)];
        let classes: &[(i64, &str, Fields)] = &[
            (10, "long", &[]),
            (11, "int", &[]),
            (12, "boolean", &[]),
            (13, "java.lang.String", &[]),
            (20, "jdk.types.Symbol", &[("string", 13, false, false)]),
            (21, "java.lang.Class", &[("name", 20, true, false)]),
            (
                22,
                "jdk.types.Method",
                &[("type", 21, true, false), ("name", 20, true, false)],
            ),
            (
                23,
                "jdk.types.StackFrame",
                &[
                    ("method", 22, true, false),
                    ("lineNumber", 11, false, false),
                ],
            ),
            (
                24,
                "jdk.types.StackTrace",
                &[("truncated", 12, false, false), ("frames", 23, false, true)],
            ),
            (
                30,
                "jdk.ExecutionSample",
                &[
                    ("startTime", 10, false, false),
                    ("stackTrace", 24, true, false),
                    ("contextId", 10, false, false),
                    ("spanId", 10, false, false),
                    ("spanName", 10, false, false),
                ],
            ),
        ];
        let mut strings: Vec<String> = Vec::new();
        let mut id = |s: &str| -> i64 {
            match strings.iter().position(|t| t == s) {
                Some(i) => i as i64,
                None => {
                    strings.push(s.to_string());
                    strings.len() as i64 - 1
                }
            }
        };
        let mut tree = Vec::new();
        let (root, metadata, region) = (id("root"), id("metadata"), id("region"));
        let (class, field) = (id("class"), id("field"));
        let (a_id, a_name, a_class, a_pool, a_dim) = (
            id("id"),
            id("name"),
            id("class"),
            id("constantPool"),
            id("dimension"),
        );
        let (t, one) = (id("true"), id("1"));
        varint(&mut tree, root);
        varint(&mut tree, 0);
        varint(&mut tree, 2);
        varint(&mut tree, metadata);
        varint(&mut tree, 0);
        varint(&mut tree, classes.len() as i64);
        for (cid, name, fields) in classes {
            varint(&mut tree, class);
            varint(&mut tree, 2);
            let (cid, name) = (id(&cid.to_string()), id(name));
            for (k, v) in [(a_id, cid), (a_name, name)] {
                varint(&mut tree, k);
                varint(&mut tree, v);
            }
            varint(&mut tree, fields.len() as i64);
            for (fname, fclass, pooled, array) in *fields {
                let mut attributes = vec![(a_name, id(fname)), (a_class, id(&fclass.to_string()))];
                if *pooled {
                    attributes.push((a_pool, t));
                }
                if *array {
                    attributes.push((a_dim, one));
                }
                varint(&mut tree, field);
                varint(&mut tree, attributes.len() as i64);
                for (k, v) in attributes {
                    varint(&mut tree, k);
                    varint(&mut tree, v);
                }
                varint(&mut tree, 0);
            }
        }
        varint(&mut tree, region);
        varint(&mut tree, 0);
        varint(&mut tree, 0);

        let mut meta = Vec::new();
        for v in [0, 0, 0, 1] {
            varint(&mut meta, v);
        }
        varint(&mut meta, strings.len() as i64);
        for s in &strings {
            utf8(&mut meta, s);
        }
        meta.extend_from_slice(&tree);

        let mut pool = Vec::new();
        for v in [1, 0, 0, 0] {
            varint(&mut pool, v);
        }
        pool.push(0);
        varint(&mut pool, 4);
        varint(&mut pool, 20);
        varint(&mut pool, 3);
        for (key, text) in [(1, "Main"), (2, "work"), (3, "main")] {
            varint(&mut pool, key);
            utf8(&mut pool, text);
        }
        varint(&mut pool, 21);
        varint(&mut pool, 1);
        varint(&mut pool, 1);
        varint(&mut pool, 1);
        varint(&mut pool, 22);
        varint(&mut pool, 2);
        for (key, name) in [(1, 2), (2, 3)] {
            varint(&mut pool, key);
            varint(&mut pool, 1);
            varint(&mut pool, name);
        }
        varint(&mut pool, 24);
        varint(&mut pool, 1);
        varint(&mut pool, 7);
        pool.push(0);
        varint(&mut pool, 2);
        for (method, line) in [(1, 12), (2, 3)] {
            varint(&mut pool, method);
            varint(&mut pool, line);
        }

        let mut samples = Vec::new();
        for (context, span, name) in [(5, 0xabc, 3), (0, 0, 0)] {
            let mut payload = Vec::new();
            for v in [30, 100, 7, context, span, name] {
                varint(&mut payload, v);
            }
            event(&mut samples, &payload);
        }

        let mut body = Vec::new();
        let start = 68;
        let mut events = Vec::new();
        event(&mut events, &meta);
        let metadata_at = start;
        let checkpoint_at = start + events.len();
        event(&mut events, &pool);
        events.extend_from_slice(&samples);
        body.extend_from_slice(b"FLR\0");
        body.extend_from_slice(&2u16.to_be_bytes());
        body.extend_from_slice(&1u16.to_be_bytes());
        for v in [
            (start + events.len()) as i64,
            checkpoint_at as i64,
            metadata_at as i64,
            0,
            0,
            0,
            1_000_000_000,
        ] {
            body.extend_from_slice(&v.to_be_bytes());
        }
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&events);
        body
    }

    fn params() -> JfrParams {
        JfrParams {
            sample_rate: 100,
            from_nanos: 1_000,
            until_nanos: 11_000,
        }
    }

    #[test]
    fn context_ids_and_spans_become_labels() {
        let labels = LabelsSnapshot {
            contexts: [(
                5,
                Context {
                    labels: [(1, 2)].into(),
                },
            )]
            .into(),
            strings: [(1, "user".into()), (2, "alice".into()), (3, "GET /".into())].into(),
        };
        let profiles = decode(&recording(), Some(&labels), params()).unwrap();
        assert_eq!(profiles.len(), 1);
        let JfrProfile { name, pprof } = &profiles[0];
        assert_eq!(*name, "process_cpu");
        assert_eq!(
            (pprof.time_nanos, pprof.duration_nanos, pprof.period),
            (1_000, 10_000, 10_000_000)
        );
        let s = |i: i64| pprof.string_table[i as usize].as_str();
        let frames: Vec<_> = pprof.sample[0]
            .location_id
            .iter()
            .map(|&l| {
                let line = &pprof.location[l as usize - 1].line[0];
                (
                    s(pprof.function[line.function_id as usize - 1].name),
                    line.line,
                )
            })
            .collect();
        assert_eq!(frames, [("Main.work", 12), ("Main.main", 3)]);
        let labels: Vec<Vec<(&str, &str)>> = pprof
            .sample
            .iter()
            .map(|sample| sample.label.iter().map(|l| (s(l.key), s(l.str))).collect())
            .collect();
        assert_eq!(
            labels,
            [
                vec![
                    ("user", "alice"),
                    ("profile_id", "0000000000000abc"),
                    ("span_name", "GET /")
                ],
                vec![]
            ]
        );
        assert!(pprof.sample.iter().all(|s| s.value == [10_000_000]));

        // Without the labels field, no labels.
        let profiles = decode(&recording(), None, params()).unwrap();
        assert!(profiles[0].pprof.sample.iter().all(|s| s.label.is_empty()));
    }

    #[test]
    fn damage_is_named_not_a_panic() {
        let good = recording();
        for cut in [0, 3, 40, 68, 80, good.len() / 2, good.len() - 1] {
            let error = decode(&good[..cut], None, params()).unwrap_err();
            assert!(
                error.contains("chunk 0") || error.contains("empty"),
                "{cut}: {error}"
            );
        }
        let mut flipped = good.clone();
        for i in 68..flipped.len() {
            flipped[i] ^= 0x5a;
            let _ = decode(&flipped, None, params());
            flipped[i] ^= 0x5a;
        }
    }
}
