//! speedscope JSON (`format=speedscope`): the file format of the speedscope viewer, which many
//! profilers export. Sampled profiles give each sample (frame indexes, root first) its
//! weight; evented profiles give each stack the time between the open and close events that
//! bound it. Profiles of one file with the same name, kind, unit and start are merged; each
//! profile left is one Pyroscope profile, labelled `profile_name`.

use serde::Deserialize;

use super::Stacks;

/// The `$schema` every speedscope file names.
const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

#[derive(Deserialize)]
struct File {
    #[serde(rename = "$schema")]
    schema: String,
    shared: Shared,
    #[serde(default)]
    profiles: Vec<RawProfile>,
}

#[derive(Deserialize)]
struct Shared {
    frames: Vec<Frame>,
}

#[derive(Deserialize)]
struct Frame {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawProfile {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: String,
    unit: String,
    #[serde(default)]
    start_value: f64,
    #[serde(default)]
    events: Vec<Event>,
    #[serde(default)]
    samples: Vec<Vec<i64>>,
    #[serde(default)]
    weights: Vec<f64>,
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "type")]
    kind: String,
    at: f64,
    frame: i64,
}

/// How a speedscope unit is stored: the factor its values are multiplied by, and the sample
/// rate (per second) the profile is taken to have when the request gives the default (100).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Unit {
    pub(super) multiplier: u64,
    pub(super) sample_rate: u32,
}

/// Pyroscope's reading of speedscope units. Time units become nanoseconds once the sample
/// rate's period is applied (`value x 100 x 1e9 / rate`). For `nanoseconds` Pyroscope's rate
/// (100 x 1e9) overflows and stores zeros; here the values are kept as nanoseconds instead.
fn unit(name: &str) -> Result<Unit, String> {
    let (multiplier, sample_rate) = match name {
        "nanoseconds" => (1, 1_000_000_000),
        "microseconds" => (100, 100_000_000),
        "milliseconds" => (100, 100_000),
        "seconds" => (100, 100),
        "none" => (100, 10_000),
        "bytes" => (1, 0),
        other => {
            return Err(format!(
                "unknown unit {other:?}: speedscope units are none, nanoseconds, microseconds, milliseconds, seconds and bytes"
            ));
        }
    };
    Ok(Unit {
        multiplier,
        sample_rate,
    })
}

/// One profile of a speedscope file.
#[derive(Debug)]
pub(super) struct Profile {
    pub(super) name: String,
    pub(super) unit_name: String,
    pub(super) unit: Unit,
    pub(super) stacks: Stacks,
}

/// The profiles of a speedscope file, merged and in start order.
pub(super) fn parse(body: &[u8]) -> Result<Vec<Profile>, String> {
    let file: File =
        serde_json::from_slice(body).map_err(|e| format!("not a speedscope file: {e}"))?;
    if file.schema != SCHEMA {
        return Err(format!(
            "$schema is {:?}, not the speedscope schema {SCHEMA:?}",
            file.schema
        ));
    }
    let frames: Vec<String> = file.shared.frames.into_iter().map(|f| f.name).collect();
    // Merge profiles with the same name, kind, unit and start.
    let mut merged: Vec<RawProfile> = Vec::new();
    for profile in file.profiles {
        let same = merged.iter_mut().find(|m| {
            (&m.name, &m.kind, &m.unit) == (&profile.name, &profile.kind, &profile.unit)
                && m.start_value == profile.start_value
        });
        match same {
            Some(m) => {
                m.events.extend(profile.events);
                m.samples.extend(profile.samples);
                m.weights.extend(profile.weights);
            }
            None => merged.push(profile),
        }
    }
    merged.sort_by(|a, b| a.start_value.total_cmp(&b.start_value));
    merged
        .into_iter()
        .map(|profile| {
            let unit =
                unit(&profile.unit).map_err(|e| format!("profile {:?}: {e}", profile.name))?;
            let stacks = match profile.kind.as_str() {
                "sampled" => sampled(&profile, &frames, unit.multiplier),
                "evented" => evented(&profile, &frames, unit.multiplier),
                other => Err(format!(
                    "its type is {other:?}; speedscope profiles are sampled or evented"
                )),
            }
            .map_err(|e| format!("profile {:?}: {e}", profile.name))?;
            Ok(Profile {
                name: profile.name,
                unit_name: profile.unit,
                unit,
                stacks,
            })
        })
        .collect()
}

/// `value x multiplier` in whole units. Pyroscope truncates the value first, which makes the
/// fractional weights of seconds-unit files (py-spy writes 0.01 s samples) zero; here the
/// product is truncated.
fn scaled(value: f64, multiplier: u64) -> u64 {
    (value * multiplier as f64) as u64
}

/// The name of frame `index`, or what is wrong with it.
fn frame(frames: &[String], index: i64) -> Result<&str, String> {
    usize::try_from(index)
        .ok()
        .and_then(|i| frames.get(i))
        .map(String::as_str)
        .ok_or_else(|| {
            format!(
                "frame {index} is not one of the file's {} frames",
                frames.len()
            )
        })
}

fn sampled(profile: &RawProfile, frames: &[String], multiplier: u64) -> Result<Stacks, String> {
    if profile.samples.len() != profile.weights.len() {
        return Err(format!(
            "{} samples but {} weights",
            profile.samples.len(),
            profile.weights.len()
        ));
    }
    let mut stacks = Stacks::new();
    let mut stack = String::new();
    for (sample, &weight) in profile.samples.iter().zip(&profile.weights) {
        if weight.is_nan() || weight < 0.0 {
            return Err(format!("a sample weighs {weight}; weights are at least 0"));
        }
        stack.clear();
        for (i, &index) in sample.iter().enumerate() {
            if i > 0 {
                stack.push(';');
            }
            stack.push_str(frame(frames, index)?);
        }
        stacks.add(&stack, scaled(weight, multiplier));
    }
    Ok(stacks)
}

fn evented(profile: &RawProfile, frames: &[String], multiplier: u64) -> Result<Stacks, String> {
    let mut stacks = Stacks::new();
    let mut open: Vec<i64> = Vec::new();
    let mut last = profile.start_value;
    let mut add = |open: &[i64], at: f64, last: f64| -> Result<(), String> {
        if open.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = open
            .iter()
            .map(|&i| frame(frames, i))
            .collect::<Result<_, _>>()?;
        stacks.add(
            &names.join(";"),
            ((at - last) as u64).saturating_mul(multiplier),
        );
        Ok(())
    };
    for event in &profile.events {
        if event.at.is_nan() || event.at < last {
            return Err(format!(
                "an event at {} comes after one at {last}: events must be in time order",
                event.at
            ));
        }
        frame(frames, event.frame)?;
        match event.kind.as_str() {
            "O" => {
                add(&open, event.at, last)?;
                open.push(event.frame);
            }
            "C" => {
                match open.last() {
                    None => {
                        return Err(format!("a close event at {} with no frame open", event.at));
                    }
                    Some(&top) if top != event.frame => {
                        return Err(format!(
                            "a close event at {} for frame {} while frame {top} is the innermost open",
                            event.at, event.frame
                        ));
                    }
                    Some(_) => {}
                }
                add(&open, event.at, last)?;
                open.pop();
            }
            other => {
                return Err(format!(
                    "an event of type {other:?}; events are O (open) or C (close)"
                ));
            }
        }
        last = event.at;
    }
    Ok(stacks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(stacks: &Stacks) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = stacks.iter().map(|(s, v)| (s.to_string(), v)).collect();
        out.sort();
        out
    }

    fn file(profiles: &str) -> String {
        format!(
            r#"{{"$schema": "{SCHEMA}", "shared": {{"frames": [{{"name": "a"}}, {{"name": "b"}}, {{"name": "c"}}, {{"name": "d"}}]}}, "profiles": [{profiles}]}}"#
        )
    }

    #[test]
    fn evented_profiles_weigh_stacks_by_time_open() {
        let body = file(
            r#"{"type": "evented", "name": "simple", "unit": "none", "startValue": 0, "endValue": 14,
                "events": [{"type": "O", "frame": 0, "at": 0}, {"type": "O", "frame": 1, "at": 0},
                           {"type": "O", "frame": 2, "at": 5}, {"type": "C", "frame": 2, "at": 10},
                           {"type": "O", "frame": 3, "at": 10}, {"type": "C", "frame": 3, "at": 14},
                           {"type": "C", "frame": 1, "at": 14}, {"type": "C", "frame": 0, "at": 14}]}"#,
        );
        let profiles = parse(body.as_bytes()).unwrap();
        assert_eq!(profiles.len(), 1);
        assert_eq!(profiles[0].unit.sample_rate, 10_000);
        assert_eq!(
            values(&profiles[0].stacks),
            vec![
                ("a;b".into(), 500),
                ("a;b;c".into(), 500),
                ("a;b;d".into(), 400)
            ]
        );
    }

    #[test]
    fn sampled_profiles_of_one_name_merge() {
        let one = r#"{"type": "sampled", "name": "one", "unit": "seconds", "startValue": 0,
                      "samples": [[0, 1], [0, 1, 2]], "weights": [4.5, 5.25]}"#;
        let two = r#"{"type": "sampled", "name": "two", "unit": "bytes", "startValue": 1,
                      "samples": [[3]], "weights": [7]}"#;
        let body = file(&[one, one, two].join(","));
        let profiles = parse(body.as_bytes()).unwrap();
        assert_eq!(profiles.len(), 2);
        assert_eq!(profiles[0].name, "one");
        assert_eq!(
            values(&profiles[0].stacks),
            vec![("a;b".into(), 900), ("a;b;c".into(), 1050)]
        );
        assert_eq!(values(&profiles[1].stacks), vec![("d".into(), 7)]);
        assert_eq!(profiles[1].unit.multiplier, 1);
    }

    #[test]
    fn malformed_files_say_what_is_wrong() {
        let cases = [
            ("{}".to_string(), "not a speedscope file"),
            (
                file("").replace(SCHEMA, "https://example.com"),
                "not the speedscope schema",
            ),
            (
                file(r#"{"type": "sampled", "unit": "none", "samples": [[9]], "weights": [1]}"#),
                "frame 9 is not one of the file's 4 frames",
            ),
            (
                file(r#"{"type": "sampled", "unit": "none", "samples": [[0]], "weights": []}"#),
                "1 samples but 0 weights",
            ),
            (
                file(r#"{"type": "sampled", "unit": "parsecs", "samples": [], "weights": []}"#),
                "unknown unit \"parsecs\"",
            ),
            (
                file(r#"{"type": "heap", "unit": "bytes"}"#),
                "sampled or evented",
            ),
            (
                file(
                    r#"{"type": "evented", "unit": "none", "events": [{"type": "C", "frame": 0, "at": 1}]}"#,
                ),
                "no frame open",
            ),
            (
                file(
                    r#"{"type": "evented", "unit": "none", "events": [{"type": "O", "frame": 0, "at": 5}, {"type": "C", "frame": 0, "at": 1}]}"#,
                ),
                "time order",
            ),
        ];
        for (body, expected) in cases {
            let error = parse(body.as_bytes()).unwrap_err();
            assert!(error.contains(expected), "{error} (expected {expected})");
        }
    }
}
