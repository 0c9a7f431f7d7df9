//! The profile data model: tenants, profile types, series labels and their fingerprints.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, ErrorKind, Result};

/// Well-known label names.
pub mod label {
    /// The profile name, e.g. `process_cpu` or `memory`.
    pub const NAME: &str = "__name__";
    pub const SERVICE_NAME: &str = "service_name";
    /// A copy of `service_name`, kept as Pyroscope does.
    pub const PRIVATE_SERVICE_NAME: &str = "__service_name__";
    pub const PROFILE_TYPE: &str = "__profile_type__";
    pub const TYPE: &str = "__type__";
    pub const UNIT: &str = "__unit__";
    pub const PERIOD_TYPE: &str = "__period_type__";
    pub const PERIOD_UNIT: &str = "__period_unit__";
    pub const DELTA: &str = "__delta__";
    pub const SESSION_ID: &str = "__session_id__";
    pub const SPY: &str = "pyroscope_spy";
    /// The fallback when a profile names no service.
    pub const UNKNOWN_SERVICE: &str = "unknown_service";
}

/// The tenant that owns data: `X-Scope-OrgID`, or `anonymous` when multi-tenancy is off.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

impl TenantId {
    pub const ANONYMOUS: &'static str = "anonymous";
    const MAX_LEN: usize = 150;

    /// Validates a tenant id with the rules of Grafana's dskit: 1 to 150 characters out of
    /// `a-z A-Z 0-9 ! - _ . * ' ( )`, and neither `.` nor `..`.
    pub fn new(id: &str) -> Result<Self> {
        if id.is_empty() {
            return Err(Error::invalid(
                ErrorKind::Unauthenticated,
                "tenant ID is empty",
            ));
        }
        if id.len() > Self::MAX_LEN {
            return Err(Error::invalid(
                ErrorKind::InvalidArgument,
                format!("tenant ID is too long: max {} characters", Self::MAX_LEN),
            ));
        }
        if id == "." || id == ".." {
            return Err(Error::invalid(
                ErrorKind::InvalidArgument,
                "tenant ID is '.' or '..'",
            ));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "!-_.*'()".contains(*c)))
        {
            return Err(Error::invalid(
                ErrorKind::InvalidArgument,
                format!("tenant ID '{id}' contains unsupported character '{bad}'"),
            ));
        }
        Ok(TenantId(Arc::from(id)))
    }

    pub fn anonymous() -> Self {
        TenantId(Arc::from(Self::ANONYMOUS))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A series' stable identity: xxhash64 over its sorted labels, each as `name 0xFF value 0xFF`
/// (the fingerprint Pyroscope computes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesFingerprint(pub u64);

/// One label of a series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A label set, kept sorted by name with unique names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Sorts the labels by name; a later label replaces an earlier one of the same name.
    pub fn from_pairs<I, N, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (N, V)>,
        N: Into<String>,
        V: Into<String>,
    {
        let mut labels = Labels::default();
        for (name, value) in pairs {
            labels.set(name, value);
        }
        labels
    }

    /// Sets a label, replacing any value it had. An empty value removes the label.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.0.binary_search_by(|l| l.name.as_str().cmp(&name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].value = value,
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, Label { name, value }),
        }
    }

    /// Sets a label only when it is not set yet.
    pub fn set_if_absent(&mut self, name: &str, value: &str) {
        if self.get(name).is_none() {
            self.set(name, value);
        }
    }

    pub fn remove(&mut self, name: &str) {
        if let Ok(i) = self.0.binary_search_by(|l| l.name.as_str().cmp(name)) {
            self.0.remove(i);
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn fingerprint(&self) -> SeriesFingerprint {
        let mut hasher = xxhash_rust::xxh64::Xxh64::new(0);
        for label in &self.0 {
            hasher.update(label.name.as_bytes());
            hasher.update(&[0xff]);
            hasher.update(label.value.as_bytes());
            hasher.update(&[0xff]);
        }
        SeriesFingerprint(hasher.digest())
    }
}

impl fmt::Display for Labels {
    /// Prometheus style: `{a="x", b="y"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, label) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={:?}", label.name, label.value)?;
        }
        f.write_str("}")
    }
}

/// `name:sample_type:sample_unit:period_type:period_unit`, e.g.
/// `process_cpu:cpu:nanoseconds:cpu:nanoseconds`. Parts may be empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProfileType {
    pub name: String,
    pub sample_type: String,
    pub sample_unit: String,
    pub period_type: String,
    pub period_unit: String,
}

impl ProfileType {
    /// Parses a profile type id: 5 parts, or 6 with a trailing delta marker.
    pub fn parse(id: &str) -> Result<Self> {
        let parts: Vec<&str> = id.split(':').collect();
        if !(parts.len() == 5 || parts.len() == 6) || parts[0].is_empty() {
            return Err(Error::invalid(
                ErrorKind::InvalidArgument,
                format!(
                    "invalid profile type id {id:?}: expected name:sample_type:sample_unit:period_type:period_unit"
                ),
            ));
        }
        Ok(ProfileType {
            name: parts[0].to_string(),
            sample_type: parts[1].to_string(),
            sample_unit: parts[2].to_string(),
            period_type: parts[3].to_string(),
            period_unit: parts[4].to_string(),
        })
    }

    pub fn id(&self) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            self.name, self.sample_type, self.sample_unit, self.period_type, self.period_unit
        )
    }
}

impl fmt::Display for ProfileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id())
    }
}

/// A half-open time range in Unix nanoseconds: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start: i64,
    pub end: i64,
}

impl TimeRange {
    pub const ALL: TimeRange = TimeRange {
        start: i64::MIN,
        end: i64::MAX,
    };

    pub fn new(start: i64, end: i64) -> Self {
        TimeRange { start, end }
    }

    /// Whether `[min, max]` (inclusive) has a point in this range.
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        min < self.end && max >= self.start
    }

    pub fn contains(&self, t: i64) -> bool {
        t >= self.start && t < self.end
    }

    pub fn intersect(&self, other: &TimeRange) -> TimeRange {
        TimeRange {
            start: self.start.max(other.start),
            end: self.end.min(other.end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_stay_sorted_and_unique() {
        let mut labels = Labels::from_pairs([("b", "2"), ("a", "1"), ("b", "3")]);
        assert_eq!(labels.to_string(), r#"{a="1", b="3"}"#);
        labels.set("a", "");
        assert_eq!(labels.to_string(), r#"{b="3"}"#);
    }

    #[test]
    fn fingerprint_is_xxhash_of_name_ff_value_ff() {
        let labels = Labels::from_pairs([("a", "b")]);
        let expected = xxhash_rust::xxh64::xxh64(b"a\xffb\xff", 0);
        assert_eq!(labels.fingerprint(), SeriesFingerprint(expected));
        assert_ne!(
            labels.fingerprint(),
            Labels::from_pairs([("a", "c")]).fingerprint()
        );
    }

    #[test]
    fn profile_type_round_trips() {
        let id = "memory:inuse_space:bytes::";
        let parsed = ProfileType::parse(id).unwrap();
        assert_eq!(parsed.sample_type, "inuse_space");
        assert_eq!(parsed.id(), id);
        assert!(ProfileType::parse("cpu").is_err());
    }

    #[test]
    fn tenant_ids_follow_dskit_rules() {
        assert!(TenantId::new("team-a_1.(x)").is_ok());
        assert!(TenantId::new("..").is_err());
        let err = TenantId::new("a/b").unwrap_err().to_string();
        assert!(err.contains("unsupported character '/'"), "{err}");
        assert!(TenantId::new(&"x".repeat(151)).is_err());
    }
}
