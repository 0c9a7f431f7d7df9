//! The `/ingest` body formats other than pprof and JFR: folded stacks (`groups`, `lines`),
//! Pyroscope's binary `trie` and `tree`, and `speedscope` JSON. Each body is read into
//! [`Stacks`] and made into a pprof of one sample type, named as Pyroscope names these
//! uploads: the profile type comes from the last `.`-part of the application name (`app.cpu`,
//! `app.inuse_space`, ...; a name without a dot is CPU), the rest is the service; CPU and wall
//! counts become nanoseconds at the request's `sampleRate`. From there the pprof takes the
//! path every pprof takes (validation, limits, normalisation). `units` and `aggregationType`
//! are accepted and, as in Pyroscope, do not change what is stored.

mod folded;
mod speedscope;
mod stacks;
mod trie;

pub use stacks::Stacks;
pub use trie::encode_nodes;

use hearth_proto::pprof::Profile;

use crate::legacy::Format;

/// A profile type Pyroscope gives a legacy upload: `__name__`, sample type and unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyType {
    pub name: &'static str,
    pub sample_type: &'static str,
    pub unit: &'static str,
}

/// The application-name suffixes Pyroscope knows, and the type each names (`None`: the sample
/// type is the suffix itself).
const SUFFIXES: &[(&[&str], &str, Option<&str>, &str)] = &[
    (&["cpu", "itimer"], "process_cpu", Some("samples"), "count"),
    (
        &[
            "wall",
            "seconds",
            "nanoseconds",
            "microseconds",
            "milliseconds",
        ],
        "wall",
        Some("samples"),
        "count",
    ),
    (
        &[
            "inuse_objects",
            "alloc_objects",
            "alloc_in_new_tlab_objects",
            "alloc_outside_tlab_objects",
        ],
        "memory",
        None,
        "count",
    ),
    (
        &[
            "inuse_space",
            "alloc_space",
            "alloc_in_new_tlab_bytes",
            "alloc_outside_tlab_bytes",
        ],
        "memory",
        None,
        "bytes",
    ),
    (&["goroutines"], "goroutine", Some("goroutines"), "count"),
    (&["mutex_count"], "mutex", Some("contentions"), "count"),
    (&["mutex_duration"], "mutex", Some("delay"), "nanoseconds"),
    (
        &["block_count", "lock_count"],
        "block",
        Some("contentions"),
        "count",
    ),
    (
        &["block_duration", "lock_duration"],
        "block",
        Some("delay"),
        "nanoseconds",
    ),
    (&["live"], "memory", Some("live"), "count"),
    (&["exceptions"], "exceptions", Some("samples"), "count"),
    (&["bytes"], "memory", Some("samples"), "bytes"),
];

/// The service and profile type of an upload named `app` (`service.type`, or `service` for
/// CPU); an error names an unknown type suffix and the known ones.
pub fn legacy_type(app: &str) -> Result<(&str, LegacyType), String> {
    let Some((service, suffix)) = app.rsplit_once('.') else {
        return Ok((app, type_of("cpu").expect("cpu is known")));
    };
    match type_of(suffix) {
        Some(t) => Ok((service, t)),
        None => {
            let known: Vec<&str> = SUFFIXES.iter().flat_map(|s| s.0.iter().copied()).collect();
            Err(format!(
                "unknown profile type {suffix:?} in the name {app:?}: in formats other than pprof the name ends with .<type>, one of {}",
                known.join(", ")
            ))
        }
    }
}

fn type_of(suffix: &str) -> Option<LegacyType> {
    let (_, name, sample_type, unit) = SUFFIXES.iter().find(|s| s.0.contains(&suffix))?;
    let sample_type = match sample_type {
        Some(t) => t,
        None => SUFFIXES
            .iter()
            .flat_map(|s| s.0.iter())
            .find(|s| **s == suffix)
            .expect("found above"),
    };
    Some(LegacyType {
        name,
        sample_type,
        unit,
    })
}

/// One profile read from a legacy body, before it is named and made a pprof.
#[derive(Debug)]
pub struct Decoded {
    /// Overrides the request's application name (speedscope files with several profiles
    /// name each `<app>.<unit>`).
    pub app_name: Option<String>,
    /// Labels beside the request's (speedscope: `profile_name`).
    pub labels: Vec<(String, String)>,
    /// Overrides the request's sample rate (speedscope units have their own when the
    /// request gives the default).
    pub sample_rate: Option<u32>,
    pub stacks: Stacks,
}

impl Decoded {
    fn plain(stacks: Stacks) -> Self {
        Decoded {
            app_name: None,
            labels: Vec::new(),
            sample_rate: None,
            stacks,
        }
    }
}

/// The profiles of a `format` body, or what is wrong with it; their distinct stacks may take
/// `budget` bytes in all.
pub fn decode(
    format: Format,
    body: &[u8],
    app: &str,
    sample_rate: u32,
    budget: usize,
) -> Result<Vec<Decoded>, String> {
    let stacks = Stacks::with_budget(budget);
    let text = || {
        if body.starts_with(&[0x1f, 0x8b]) {
            return Err(
                "the body is gzip, not folded stacks text (a pprof? send format=pprof)".to_string(),
            );
        }
        // Frames are names: a stray byte that is not UTF-8 (a Latin-1 symbol) is replaced.
        Ok(String::from_utf8_lossy(body))
    };
    Ok(match format {
        Format::Groups => vec![Decoded::plain(folded::groups(&text()?, stacks)?)],
        Format::Lines => vec![Decoded::plain(folded::individual_lines(&text()?, stacks)?)],
        Format::Trie => vec![Decoded::plain(trie::trie(body, stacks)?)],
        Format::Tree => vec![Decoded::plain(trie::tree(body, stacks)?)],
        Format::Speedscope => {
            let profiles = speedscope::parse(body, budget)?;
            let several = profiles.len() > 1;
            profiles
                .into_iter()
                .map(|p| Decoded {
                    // Pyroscope names each of several profiles by its unit (time units are
                    // wall, bytes memory); `none` (no unit Pyroscope knows as a type) is CPU.
                    app_name: several.then(|| match p.unit_name.as_str() {
                        "none" => format!("{app}.cpu"),
                        unit => format!("{app}.{unit}"),
                    }),
                    labels: if p.name.is_empty() {
                        Vec::new()
                    } else {
                        vec![("profile_name".to_string(), p.name)]
                    },
                    sample_rate: (sample_rate == 100).then_some(p.unit.sample_rate),
                    stacks: p.stacks,
                })
                .collect()
        }
        Format::Pprof | Format::PprofMultipart | Format::Jfr => {
            return Err(format!("{} is not a stack format", format.name()));
        }
    })
}

/// The pprof of `decoded` for type `t` at `time_nanos`: CPU and wall counts become
/// nanoseconds at `sample_rate` (the period `1e9 / rate`, of type `cpu`), as Pyroscope
/// stores them; a rate of 0 keeps counts.
pub fn to_pprof(
    decoded: &Decoded,
    t: LegacyType,
    sample_rate: u32,
    time_nanos: i64,
) -> Result<Profile, String> {
    let clamp = |v: u128| i64::try_from(v).unwrap_or(i64::MAX);
    let timed = matches!(t.name, "process_cpu" | "wall") && sample_rate > 0;
    if !timed {
        return Ok(decoded
            .stacks
            .to_pprof((t.sample_type, t.unit), None, time_nanos, |v| {
                clamp(u128::from(v))
            }));
    }
    if sample_rate > 1_000_000_000 {
        return Err(format!(
            "sampleRate {sample_rate} is more than one sample per nanosecond"
        ));
    }
    let period = 1_000_000_000 / i64::from(sample_rate);
    let sample_type = if t.name == "wall" { "wall" } else { "cpu" };
    Ok(decoded.stacks.to_pprof(
        (sample_type, "nanoseconds"),
        Some(("cpu", "nanoseconds", period)),
        time_nanos,
        |v| clamp(u128::from(v) * period as u128),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_name_suffix() {
        let (service, t) = legacy_type("shop.api.inuse_space").unwrap();
        assert_eq!(service, "shop.api");
        assert_eq!(
            (t.name, t.sample_type, t.unit),
            ("memory", "inuse_space", "bytes")
        );
        let (service, t) = legacy_type("shop").unwrap();
        assert_eq!(
            (service, t.name, t.sample_type),
            ("shop", "process_cpu", "samples")
        );
        let (_, t) = legacy_type("x.goroutines").unwrap();
        assert_eq!((t.name, t.sample_type), ("goroutine", "goroutines"));
        let (_, t) = legacy_type("x.lock_duration").unwrap();
        assert_eq!(
            (t.name, t.sample_type, t.unit),
            ("block", "delay", "nanoseconds")
        );
        let error = legacy_type("research.python08.app").unwrap_err();
        assert!(error.contains("unknown profile type \"app\""), "{error}");
    }

    #[test]
    fn cpu_counts_become_nanoseconds_at_the_sample_rate() {
        let mut stacks = Stacks::new();
        stacks.add("main;work", 3).unwrap();
        let decoded = Decoded::plain(stacks);
        let (_, cpu) = legacy_type("app.cpu").unwrap();
        let p = to_pprof(&decoded, cpu, 100, 5).unwrap();
        assert_eq!(p.sample[0].value, vec![30_000_000]);
        assert_eq!(p.period, 10_000_000);
        let name = |i: i64| p.string_table[i as usize].as_str();
        assert_eq!(
            (name(p.sample_type[0].r#type), name(p.sample_type[0].unit)),
            ("cpu", "nanoseconds")
        );
        let counts = to_pprof(&decoded, cpu, 0, 5).unwrap();
        assert_eq!(counts.sample[0].value, vec![3]);
        assert_eq!(counts.period_type, None);
        let (_, space) = legacy_type("app.alloc_space").unwrap();
        let bytes = to_pprof(&decoded, space, 100, 5).unwrap();
        assert_eq!(bytes.sample[0].value, vec![3]);
        assert!(to_pprof(&decoded, cpu, 2_000_000_000, 5).is_err());
    }
}
