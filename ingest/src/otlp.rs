//! OpenTelemetry profiles (OTLP `v1development`, as opentelemetry-proto v1.10 defines it) into
//! pprofs and series, mapped as Pyroscope maps them:
//!
//! - each OTLP profile becomes one pprof of its one sample type, with the frames, mappings and
//!   strings its samples use from the request's shared dictionary;
//! - the series is named after the profile: `samples:count` sampled on a `cpu:nanoseconds`
//!   period is `process_cpu` in `cpu:nanoseconds` (each count times the period), `off_cpu` in
//!   `nanoseconds` with no period is `off_cpu`, any other period names the profile, and a
//!   profile with no period is `process_cpu`;
//! - `service.name` among the resource attributes is `service_name` (`unknown_service`, or
//!   `unknown_service:<process.executable.name>`, without it); a sample's own `service.name`
//!   moves its samples to that service's series;
//! - the resource's and the scope's other string attributes are series labels (the resource's
//!   win; `.` becomes `_` in validation), with `__delta__="false"` and `__otel__="true"`;
//! - a sample's other string attributes are pprof sample labels (series labels once
//!   normalised), its link's span and trace ids its `span_id` and `trace_id`; a sample's value
//!   is the sum of its values, or the number of its timestamps when it has no values;
//! - a kernel frame (`profile.frame.type` = `kernel`) is in a mapping named `[kernel] <file>`;
//! - an unset time is the request's, an unset duration 10 s.
//!
//! Every index is checked against its table; a request is refused whole on the first bad one.

use std::collections::HashMap;

use hearth_engine::ProfileBatch;
use hearth_engine::limits::Limits;
use hearth_engine::model::label;
use hearth_proto::opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value};
use hearth_proto::otlp::{self, ProfilesDictionary};
use hearth_proto::otlp_collector::ExportProfilesServiceRequest;
use hearth_proto::pprof;

use crate::error::{Error, Result, reason};
use crate::normalize::built;
use crate::pprof_strings::StringTable;

/// The attribute naming the service.
const SERVICE_NAME: &str = "service.name";
/// The attribute naming the program, for a service with no name.
const EXECUTABLE_NAME: &str = "process.executable.name";
/// The series label marking profiles that came as OTLP.
const OTEL: &str = "__otel__";
/// The location attribute saying what runtime a frame is of, and its value for the kernel.
const FRAME_TYPE: &str = "profile.frame.type";
const KERNEL: &str = "kernel";
/// The duration of a profile that does not say.
const DEFAULT_DURATION_NANOS: i64 = 10_000_000_000;

/// Decodes an OTLP/HTTP JSON body: protojson, except that OTLP writes trace, span and profile
/// ids as hex rather than base64.
pub fn decode_json(body: &[u8]) -> std::result::Result<ExportProfilesServiceRequest, String> {
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let mut ids = HexIds::default();
    ids.take(&mut value)?;
    let mut request: ExportProfilesServiceRequest = serde_json::from_value(value)
        .map_err(|e| format!("the body is not an ExportProfilesServiceRequest: {e}"))?;
    ids.put(&mut request);
    Ok(request)
}

/// The hex ids of an OTLP JSON body, taken out before protojson reads it and put back after.
#[derive(Default)]
struct HexIds {
    /// Per link, its trace and span ids.
    links: Vec<(Vec<u8>, Vec<u8>)>,
    /// Per profile in document order, its id.
    profiles: Vec<Vec<u8>>,
}

impl HexIds {
    fn take(&mut self, value: &mut serde_json::Value) -> std::result::Result<(), String> {
        let hex = |value: Option<serde_json::Value>, what: &str| match value {
            None | Some(serde_json::Value::Null) => Ok(Vec::new()),
            Some(serde_json::Value::String(text)) => {
                from_hex(&text).ok_or_else(|| format!("{what} {text:?} is not hex"))
            }
            Some(other) => Err(format!("{what} {other} is not a hex string")),
        };
        let dictionary = value.get_mut("dictionary");
        for link in array(dictionary.and_then(|d| field(d, "linkTable", "link_table"))) {
            let link = link.as_object_mut().ok_or("a link is not an object")?;
            let trace = hex(take(link, "traceId", "trace_id"), "the trace id")?;
            let span = hex(take(link, "spanId", "span_id"), "the span id")?;
            self.links.push((trace, span));
        }
        for resource in array(field(value, "resourceProfiles", "resource_profiles")) {
            for scope in array(field(resource, "scopeProfiles", "scope_profiles")) {
                for profile in array(field(scope, "profiles", "profiles")) {
                    let profile = profile
                        .as_object_mut()
                        .ok_or("a profile is not an object")?;
                    let id = hex(take(profile, "profileId", "profile_id"), "the profile id")?;
                    self.profiles.push(id);
                }
            }
        }
        Ok(())
    }

    fn put(self, request: &mut ExportProfilesServiceRequest) {
        if let Some(dictionary) = &mut request.dictionary {
            for (link, (trace, span)) in dictionary.link_table.iter_mut().zip(self.links) {
                link.trace_id = trace.into();
                link.span_id = span.into();
            }
        }
        let profiles = request
            .resource_profiles
            .iter_mut()
            .flat_map(|r| &mut r.scope_profiles)
            .flat_map(|s| &mut s.profiles);
        for (profile, id) in profiles.zip(self.profiles) {
            profile.profile_id = id.into();
        }
    }
}

/// Field `camel` (or its proto name) of a JSON object.
fn field<'a>(
    value: &'a mut serde_json::Value,
    camel: &str,
    proto: &str,
) -> Option<&'a mut serde_json::Value> {
    let object = value.as_object_mut()?;
    let key = if object.contains_key(camel) {
        camel
    } else {
        proto
    };
    object.get_mut(key)
}

fn take(
    object: &mut serde_json::Map<String, serde_json::Value>,
    camel: &str,
    proto: &str,
) -> Option<serde_json::Value> {
    object.remove(camel).or_else(|| object.remove(proto))
}

fn array(value: Option<&mut serde_json::Value>) -> impl Iterator<Item = &mut serde_json::Value> {
    value
        .and_then(serde_json::Value::as_array_mut)
        .into_iter()
        .flatten()
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds and normalises the series of every profile of `request`; nothing is returned unless
/// every one converts and passes validation. `now_nanos` stands for unset times.
pub fn prepare_otlp(
    request: ExportProfilesServiceRequest,
    limits: &Limits,
    now_nanos: i64,
) -> Result<Vec<ProfileBatch>> {
    let Some(dictionary) = request.dictionary else {
        return Err(malformed("it has no dictionary".into()));
    };
    if request.resource_profiles.is_empty() {
        return Err(malformed("it has no resource profiles".into()));
    }
    let tables = Tables(&dictionary);
    let mut batches = Vec::new();
    for (r, resource) in request.resource_profiles.iter().enumerate() {
        let resource_attributes = resource
            .resource
            .as_ref()
            .map_or(&[][..], |r| &r.attributes[..]);
        for (s, scope) in resource.scope_profiles.iter().enumerate() {
            let scope_attributes = scope.scope.as_ref().map_or(&[][..], |s| &s.attributes[..]);
            let mut attributes = Vec::new();
            for kv in resource_attributes.iter().chain(scope_attributes) {
                let pair = tables
                    .key_value(kv)
                    .map_err(|e| malformed(format!("resource {r}, scope {s}: an attribute {e}")))?;
                if let Some((key, value)) = pair
                    && !attributes.iter().any(|(k, _)| *k == key)
                {
                    attributes.push((key, value));
                }
            }
            for (p, profile) in scope.profiles.iter().enumerate() {
                let at =
                    |e: String| malformed(format!("resource {r}, scope {s}, profile {p}: {e}"));
                let pieces = convert(&tables, profile, &attributes, now_nanos).map_err(at)?;
                for (labels, pprof) in pieces {
                    batches.push(built(pprof, labels, now_nanos, limits)?);
                }
            }
        }
    }
    Ok(batches)
}

fn malformed(message: String) -> Error {
    Error::invalid(
        reason::MALFORMED_PROFILE,
        format!("the OTLP profiles request is invalid: {message}"),
    )
}

/// The dictionary's tables, read with bound checks.
struct Tables<'a>(&'a ProfilesDictionary);

impl<'a> Tables<'a> {
    fn row<'t, T>(table: &'t [T], index: i32, what: &str) -> std::result::Result<&'t T, String> {
        usize::try_from(index)
            .ok()
            .and_then(|i| table.get(i))
            .ok_or_else(|| {
                format!(
                    "{what} index {index} is outside the {what} table ({} rows)",
                    table.len()
                )
            })
    }

    fn string(&self, index: i32) -> std::result::Result<&'a str, String> {
        Self::row(&self.0.string_table, index, "string").map(String::as_str)
    }

    /// An attribute's key and its string value; `None` when the value is not a non-empty
    /// string (as Pyroscope, which takes only strings).
    fn key_value(&self, kv: &KeyValue) -> std::result::Result<Option<(String, String)>, String> {
        let key = match kv.key.as_str() {
            "" => self.string(kv.key_strindex)?,
            key => key,
        };
        Ok(self
            .value(kv.value.as_ref())?
            .map(|value| (key.to_string(), value.to_string())))
    }

    fn value(&self, value: Option<&'a AnyValue>) -> std::result::Result<Option<&'a str>, String> {
        let text = match value.and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.as_str(),
            Some(any_value::Value::StringValueStrindex(i)) => self.string(*i)?,
            _ => "",
        };
        Ok((!text.is_empty()).then_some(text))
    }

    /// The attribute `key`'s string value among `indices` of the attribute table.
    fn attribute(
        &self,
        indices: &[i32],
        key: &str,
    ) -> std::result::Result<Option<&'a str>, String> {
        for &i in indices {
            let attribute = Self::row(&self.0.attribute_table, i, "attribute")?;
            if self.string(attribute.key_strindex)? == key {
                return self.value(attribute.value.as_ref());
            }
        }
        Ok(None)
    }

    fn value_type(
        &self,
        value_type: Option<&otlp::ValueType>,
    ) -> std::result::Result<(&'a str, &'a str), String> {
        let Some(t) = value_type else {
            return Ok(("", ""));
        };
        Ok((self.string(t.type_strindex)?, self.string(t.unit_strindex)?))
    }
}

/// The series name of a profile, its pprof sample type, and the factor its values take.
/// `period` is empty when the profile has no period.
fn profile_name<'a>(
    sample: (&'a str, &'a str),
    period: (&'a str, &'a str),
    period_value: i64,
) -> (&'a str, (&'a str, &'a str), i64) {
    match (sample, period) {
        (("samples", "count"), ("cpu", "nanoseconds")) => {
            ("process_cpu", ("cpu", "nanoseconds"), period_value)
        }
        (("off_cpu", "nanoseconds"), ("", "")) => ("off_cpu", sample, 1),
        // Pyroscope leaves such a profile with an empty name, which no query can select.
        (_, ("", _)) => ("process_cpu", sample, 1),
        (_, (name, _)) => (name, sample, 1),
    }
}

/// A series' labels (as sent, before validation) and its pprof.
type Piece = (Vec<(String, String)>, pprof::Profile);

/// One OTLP profile as pieces: one per service its samples name.
fn convert(
    tables: &Tables<'_>,
    profile: &otlp::Profile,
    attributes: &[(String, String)],
    now_nanos: i64,
) -> std::result::Result<Vec<Piece>, String> {
    if profile.sample_type.is_none() {
        return Err("it has no sample type".into());
    }
    let sample_type = tables.value_type(profile.sample_type.as_ref())?;
    let period_type = tables.value_type(profile.period_type.as_ref())?;
    let named_period = match profile.period {
        0 => ("", ""),
        _ => period_type,
    };
    let (name, sample_type, factor) = profile_name(sample_type, named_period, profile.period);
    let service = match attributes.iter().find(|(k, _)| k == SERVICE_NAME) {
        Some((_, service)) => service.clone(),
        None => match attributes.iter().find(|(k, _)| k == EXECUTABLE_NAME) {
            Some((_, executable)) => format!("{}:{executable}", label::UNKNOWN_SERVICE),
            None => label::UNKNOWN_SERVICE.to_string(),
        },
    };
    let time_nanos = match i64::try_from(profile.time_unix_nano) {
        Ok(0) | Err(_) => now_nanos,
        Ok(t) => t,
    };
    let duration_nanos = match i64::try_from(profile.duration_nano) {
        Ok(0) | Err(_) => DEFAULT_DURATION_NANOS,
        Ok(d) => d,
    };

    // Samples by the service they name (the profile's when they name none), in first-seen order.
    let mut pieces: Vec<(String, PprofBuilder<'_>)> = Vec::new();
    for (i, sample) in profile.samples.iter().enumerate() {
        let at = |e: String| format!("sample {i}: {e}");
        let mut labels = Vec::new();
        let mut sample_service = None;
        for &a in &sample.attribute_indices {
            let attribute = Tables::row(&tables.0.attribute_table, a, "attribute").map_err(at)?;
            let key = tables.string(attribute.key_strindex).map_err(at)?;
            let Some(value) = tables.value(attribute.value.as_ref()).map_err(at)? else {
                continue;
            };
            if key == SERVICE_NAME {
                sample_service = Some(value);
            } else {
                labels.push((key, value.to_string()));
            }
        }
        if sample.link_index != 0 {
            let link = Tables::row(&tables.0.link_table, sample.link_index, "link").map_err(at)?;
            labels.push(("span_id", to_hex(&link.span_id)));
            if link.trace_id.len() == 16 {
                labels.push(("trace_id", to_hex(&link.trace_id)));
            }
        }
        let value = match (&sample.values[..], &sample.timestamps_unix_nano[..]) {
            ([], []) => return Err(at("it has neither values nor timestamps".into())),
            ([], timestamps) => timestamps.len() as i64,
            (values, _) => values.iter().fold(0i64, |sum, v| sum.wrapping_add(*v)),
        };
        let service = sample_service.unwrap_or(&service);
        let piece = match pieces.iter().position(|(s, _)| s == service) {
            Some(i) => i,
            None => {
                let mut builder = PprofBuilder::new(tables);
                builder.start(sample_type, period_type, profile.period);
                pieces.push((service.to_string(), builder));
                pieces.len() - 1
            }
        };
        let builder = &mut pieces[piece].1;
        let stack = Tables::row(&tables.0.stack_table, sample.stack_index, "stack").map_err(at)?;
        builder
            .sample(stack, value.wrapping_mul(factor), &labels)
            .map_err(at)?;
    }
    Ok(pieces
        .into_iter()
        .map(|(service, builder)| {
            let mut labels = vec![
                (label::NAME.to_string(), name.to_string()),
                (label::SERVICE_NAME.to_string(), service),
                (label::DELTA.to_string(), "false".to_string()),
                (OTEL.to_string(), "true".to_string()),
            ];
            labels.extend(
                attributes
                    .iter()
                    .filter(|(k, _)| k != SERVICE_NAME)
                    .cloned(),
            );
            let mut pprof = builder.finish();
            pprof.time_nanos = time_nanos;
            pprof.duration_nanos = duration_nanos;
            (labels, pprof)
        })
        .collect())
}

/// A pprof built from the dictionary rows its samples use, each copied once.
struct PprofBuilder<'a> {
    tables: &'a Tables<'a>,
    profile: pprof::Profile,
    strings: StringTable,
    /// Dictionary index to pprof id.
    locations: HashMap<i32, u64>,
    functions: HashMap<i32, u64>,
    /// Keyed by index and whether it is the kernel's copy.
    mappings: HashMap<(i32, bool), u64>,
}

impl<'a> PprofBuilder<'a> {
    fn new(tables: &'a Tables<'a>) -> Self {
        PprofBuilder {
            tables,
            profile: pprof::Profile::default(),
            strings: StringTable::default(),
            locations: HashMap::new(),
            functions: HashMap::new(),
            mappings: HashMap::new(),
        }
    }

    fn start(&mut self, sample: (&str, &str), period: (&str, &str), every: i64) {
        self.profile.sample_type = vec![self.value_type(sample)];
        self.profile.period_type = Some(self.value_type(period));
        self.profile.period = every;
    }

    /// The pprof, with each mapping's symbol flags set from the locations in it (one pass
    /// over the locations).
    fn finish(mut self) -> pprof::Profile {
        let profile = &mut self.profile;
        // Per mapping (by id): functions, filenames, line numbers, inline frames.
        let mut flags = vec![(true, true, true, false); profile.mapping.len()];
        for location in &profile.location {
            let Some(f) = (location.mapping_id as usize)
                .checked_sub(1)
                .and_then(|i| flags.get_mut(i))
            else {
                continue;
            };
            f.0 &= !location.line.is_empty();
            f.3 |= location.line.len() > 1;
            for line in &location.line {
                let function = &profile.function[line.function_id as usize - 1];
                f.0 &= function.name != 0;
                f.1 &= function.filename != 0;
                f.2 &= line.line != 0;
            }
        }
        for (mapping, (functions, filenames, lines, inline)) in
            profile.mapping.iter_mut().zip(flags)
        {
            mapping.has_functions = functions;
            mapping.has_filenames = functions && filenames;
            mapping.has_line_numbers = functions && lines;
            mapping.has_inline_frames = inline;
        }
        self.profile
    }

    fn value_type(&mut self, (t, unit): (&str, &str)) -> pprof::ValueType {
        pprof::ValueType {
            r#type: self.intern(t),
            unit: self.intern(unit),
        }
    }

    fn intern(&mut self, text: &str) -> i64 {
        self.strings.id(&mut self.profile, text)
    }

    fn string(&mut self, index: i32) -> std::result::Result<i64, String> {
        let text = self.tables.string(index)?;
        Ok(self.intern(text))
    }

    fn sample(
        &mut self,
        stack: &otlp::Stack,
        value: i64,
        labels: &[(&str, String)],
    ) -> std::result::Result<(), String> {
        let location_id = stack
            .location_indices
            .iter()
            .map(|&l| self.location(l))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let label = labels
            .iter()
            .map(|(key, value)| pprof::Label {
                key: self.intern(key),
                str: self.intern(value),
                ..Default::default()
            })
            .collect();
        self.profile.sample.push(pprof::Sample {
            location_id,
            value: vec![value],
            label,
        });
        Ok(())
    }

    fn location(&mut self, index: i32) -> std::result::Result<u64, String> {
        if let Some(&id) = self.locations.get(&index) {
            return Ok(id);
        }
        let location = Tables::row(&self.tables.0.location_table, index, "location")?;
        let kernel = self
            .tables
            .attribute(&location.attribute_indices, FRAME_TYPE)?
            == Some(KERNEL);
        let mapping_id = match location.mapping_index {
            // A request whose mapping table lacks its empty first row.
            0 if self.tables.0.mapping_table.is_empty() => 0,
            m => self.mapping(m, kernel)?,
        };
        let line = location
            .lines
            .iter()
            .map(|line| {
                Ok(pprof::Line {
                    function_id: self.function(line.function_index)?,
                    line: line.line,
                    column: line.column,
                })
            })
            .collect::<std::result::Result<Vec<_>, String>>()?;
        let id = self.profile.location.len() as u64 + 1;
        self.profile.location.push(pprof::Location {
            id,
            mapping_id,
            address: location.address,
            line,
            ..Default::default()
        });
        self.locations.insert(index, id);
        Ok(id)
    }

    fn function(&mut self, index: i32) -> std::result::Result<u64, String> {
        if let Some(&id) = self.functions.get(&index) {
            return Ok(id);
        }
        let function = Tables::row(&self.tables.0.function_table, index, "function")?;
        let id = self.profile.function.len() as u64 + 1;
        let f = pprof::Function {
            id,
            name: self.string(function.name_strindex)?,
            system_name: self.string(function.system_name_strindex)?,
            filename: self.string(function.filename_strindex)?,
            start_line: function.start_line,
        };
        self.profile.function.push(f);
        self.functions.insert(index, id);
        Ok(id)
    }

    /// The pprof id of mapping `index`, or of its kernel copy (file named `[kernel] <file>`).
    fn mapping(&mut self, index: i32, kernel: bool) -> std::result::Result<u64, String> {
        if let Some(&id) = self.mappings.get(&(index, kernel)) {
            return Ok(id);
        }
        let mapping = Tables::row(&self.tables.0.mapping_table, index, "mapping")?;
        let file = self.tables.string(mapping.filename_strindex)?;
        let filename = match (kernel, file) {
            (false, _) => self.intern(file),
            (true, "") => self.intern("[kernel]"),
            (true, file) if file.starts_with("[kernel]") => self.intern(file),
            (true, file) => self.intern(&format!("[kernel] {file}")),
        };
        let id = self.profile.mapping.len() as u64 + 1;
        self.profile.mapping.push(pprof::Mapping {
            id,
            memory_start: mapping.memory_start,
            memory_limit: mapping.memory_limit,
            file_offset: mapping.file_offset,
            filename,
            ..Default::default()
        });
        self.mappings.insert((index, kernel), id);
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_follow_pyroscope() {
        let cpu = profile_name(("samples", "count"), ("cpu", "nanoseconds"), 50);
        assert_eq!(cpu, ("process_cpu", ("cpu", "nanoseconds"), 50));
        let off = profile_name(("off_cpu", "nanoseconds"), ("", ""), 0);
        assert_eq!(off, ("off_cpu", ("off_cpu", "nanoseconds"), 1));
        let memory = profile_name(("alloc_space", "bytes"), ("space", "bytes"), 512);
        assert_eq!(memory, ("space", ("alloc_space", "bytes"), 1));
        let bare = profile_name(("samples", "count"), ("", ""), 0);
        assert_eq!(bare.0, "process_cpu");
    }

    #[test]
    fn json_ids_are_hex() {
        let body = br#"{
            "resourceProfiles": [{"scopeProfiles": [{"profiles": [
                {"profileId": "000102030405060708090a0b0c0d0e0f", "period": "10"}]}]}],
            "dictionary": {"linkTable": [{}, {"traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                                          "spanId": "00f067aa0ba902b7"}]}
        }"#;
        let request = decode_json(body).unwrap();
        let link = &request.dictionary.as_ref().unwrap().link_table[1];
        assert_eq!(to_hex(&link.span_id), "00f067aa0ba902b7");
        assert_eq!(to_hex(&link.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        let profile = &request.resource_profiles[0].scope_profiles[0].profiles[0];
        assert_eq!(profile.profile_id.len(), 16);
        assert_eq!(profile.period, 10);

        let bad = br#"{"dictionary": {"linkTable": [{"spanId": "AAECAwQFBgc="}]}}"#;
        let error = decode_json(bad).unwrap_err();
        assert!(
            error.contains("the span id \"AAECAwQFBgc=\" is not hex"),
            "{error}"
        );
    }
}
