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

/// The profiles of a speedscope file, in start order; profiles with the same name, kind,
/// unit and start add up. Decoded stacks may take `budget` bytes in all.
pub(super) fn parse(body: &[u8], budget: usize) -> Result<Vec<Profile>, String> {
    let file: File =
        serde_json::from_slice(body).map_err(|e| format!("not a speedscope file: {e}"))?;
    if file.schema != SCHEMA {
        return Err(format!(
            "$schema is {:?}, not the speedscope schema {SCHEMA:?}",
            file.schema
        ));
    }
    let frames: Vec<String> = file.shared.frames.into_iter().map(|f| f.name).collect();
    let mut profiles: Vec<(f64, String, Profile)> = Vec::new();
    let mut used = 0;
    for (number, profile) in file.profiles.into_iter().enumerate() {
        let what = |e: String| format!("profile {number} ({:?}): {e}", profile.name);
        let unit = unit(&profile.unit).map_err(what)?;
        let mut stacks = Stacks::with_budget(budget.saturating_sub(used));
        match profile.kind.as_str() {
            "sampled" => sampled(&profile, &frames, unit.multiplier, &mut stacks),
            "evented" => evented(&profile, &frames, unit.multiplier, &mut stacks),
            other => Err(format!(
                "its type is {other:?}; speedscope profiles are sampled or evented"
            )),
        }
        .map_err(what)?;
        used += stacks.bytes();
        let same = profiles.iter_mut().find(|(start, kind, p)| {
            (&p.name, &p.unit_name, kind) == (&profile.name, &profile.unit, &profile.kind)
                && *start == profile.start_value
        });
        match same {
            Some((_, _, p)) => p.stacks.merge(stacks).map_err(what)?,
            None => profiles.push((
                profile.start_value,
                profile.kind,
                Profile {
                    name: profile.name,
                    unit_name: profile.unit,
                    unit,
                    stacks,
                },
            )),
        }
    }
    profiles.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(profiles.into_iter().map(|(_, _, p)| p).collect())
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

fn sampled(
    profile: &RawProfile,
    frames: &[String],
    multiplier: u64,
    stacks: &mut Stacks,
) -> Result<(), String> {
    if profile.samples.len() != profile.weights.len() {
        return Err(format!(
            "{} samples but {} weights",
            profile.samples.len(),
            profile.weights.len()
        ));
    }
    let mut stack = String::new();
    for (number, (sample, &weight)) in profile.samples.iter().zip(&profile.weights).enumerate() {
        let what = |e: String| format!("sample {number}: {e}");
        if weight < 0.0 {
            return Err(what(format!("it weighs {weight}; weights are at least 0")));
        }
        stack.clear();
        for (i, &index) in sample.iter().enumerate() {
            if i > 0 {
                stack.push(';');
            }
            stack.push_str(frame(frames, index).map_err(what)?);
            if stack.len() > stacks.room() {
                return Err(what(stacks.over_budget()));
            }
        }
        stacks.add(&stack, scaled(weight, multiplier))?;
    }
    Ok(())
}

/// Each stack weighs the time it is the innermost open one, from an event to the next.
fn evented(
    profile: &RawProfile,
    frames: &[String],
    multiplier: u64,
    stacks: &mut Stacks,
) -> Result<(), String> {
    // The open frames, and where each one's name starts in `stack`.
    let (mut open, mut starts): (Vec<i64>, Vec<usize>) = (Vec::new(), Vec::new());
    let mut stack = String::new();
    let mut last = profile.start_value;
    for (number, event) in profile.events.iter().enumerate() {
        let what = |e: String| format!("event {number} (at {}): {e}", event.at);
        if event.at < last {
            return Err(what(format!(
                "it comes after one at {last}: events must be in time order"
            )));
        }
        let name = frame(frames, event.frame).map_err(what)?;
        if !open.is_empty() {
            stacks.add(&stack, scaled(event.at - last, multiplier))?;
        }
        match event.kind.as_str() {
            "O" => {
                starts.push(stack.len());
                if !stack.is_empty() {
                    stack.push(';');
                }
                stack.push_str(name);
                if stack.len() > stacks.room() {
                    return Err(what(stacks.over_budget()));
                }
                open.push(event.frame);
            }
            "C" => match open.last() {
                None => return Err(what("a close with no frame open".into())),
                Some(&top) if top != event.frame => {
                    return Err(what(format!(
                        "a close of frame {} while frame {top} is the innermost open",
                        event.frame
                    )));
                }
                Some(_) => {
                    open.pop();
                    stack.truncate(starts.pop().expect("one start per open frame"));
                }
            },
            other => {
                return Err(what(format!(
                    "its type is {other:?}; events are O (open) or C (close)"
                )));
            }
        }
        last = event.at;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let profiles = parse(body.as_bytes(), usize::MAX).unwrap();
        assert_eq!(profiles.len(), 1);
        assert_eq!(profiles[0].unit.sample_rate, 10_000);
        assert_eq!(
            profiles[0].stacks.sorted(),
            vec![
                ("a;b".into(), 500),
                ("a;b;c".into(), 500),
                ("a;b;d".into(), 400)
            ]
        );
    }

    #[test]
    fn evented_profiles_of_one_name_add_up_and_stacks_have_a_budget() {
        let one = r#"{"type": "evented", "name": "e", "unit": "none", "startValue": 0,
                      "events": [{"type": "O", "frame": 0, "at": 0}, {"type": "O", "frame": 1, "at": 2},
                                 {"type": "C", "frame": 1, "at": 3}, {"type": "C", "frame": 0, "at": 4}]}"#;
        let body = file(&[one, one].join(","));
        let profiles = parse(body.as_bytes(), usize::MAX).unwrap();
        assert_eq!(profiles.len(), 1);
        assert_eq!(
            profiles[0].stacks.sorted(),
            vec![("a".into(), 600), ("a;b".into(), 200)]
        );
        let error = parse(body.as_bytes(), 2).unwrap_err();
        assert!(error.contains("more than 2 bytes"), "{error}");
    }

    #[test]
    fn sampled_profiles_of_one_name_merge() {
        let one = r#"{"type": "sampled", "name": "one", "unit": "seconds", "startValue": 0,
                      "samples": [[0, 1], [0, 1, 2]], "weights": [4.5, 5.25]}"#;
        let two = r#"{"type": "sampled", "name": "two", "unit": "bytes", "startValue": 1,
                      "samples": [[3]], "weights": [7]}"#;
        let body = file(&[one, one, two].join(","));
        let profiles = parse(body.as_bytes(), usize::MAX).unwrap();
        assert_eq!(profiles.len(), 2);
        assert_eq!(profiles[0].name, "one");
        assert_eq!(
            profiles[0].stacks.sorted(),
            vec![("a;b".into(), 900), ("a;b;c".into(), 1050)]
        );
        assert_eq!(profiles[1].stacks.sorted(), vec![("d".into(), 7)]);
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
            let error = parse(body.as_bytes(), usize::MAX).unwrap_err();
            assert!(error.contains(expected), "{error} (expected {expected})");
        }
    }
}
