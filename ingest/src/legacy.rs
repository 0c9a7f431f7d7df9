//! Pyroscope's legacy `POST /ingest`: query parameters, the `name` label syntax and how the
//! body's format is chosen (`attime` times are parsed by `hearth_engine::time`).

use std::collections::HashMap;

use crate::error::{Error, Result, reason};
use hearth_engine::time::{now_nanos, parse_attime};

/// The body formats `/ingest` can carry, chosen as Pyroscope chooses (first match wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Trie,
    Tree,
    Lines,
    Jfr,
    /// `format=pprof`: the raw body is the pprof (never multipart).
    Pprof,
    Speedscope,
    /// No format and a multipart body: the pprof is the `profile` form field.
    PprofMultipart,
    /// Anything else: folded stacks (`a;b;c 10` per line).
    Groups,
}

impl Format {
    pub fn select(format: Option<&str>, content_type: Option<&str>) -> Format {
        let content_type = content_type.unwrap_or_default();
        match format {
            Some("trie") => Format::Trie,
            _ if content_type == "binary/octet-stream+trie" => Format::Trie,
            Some("tree") => Format::Tree,
            _ if content_type == "binary/octet-stream+tree" => Format::Tree,
            Some("lines") => Format::Lines,
            Some("jfr") => Format::Jfr,
            Some("pprof") => Format::Pprof,
            Some("speedscope") => Format::Speedscope,
            _ if content_type.contains("multipart/form-data") => Format::PprofMultipart,
            _ => Format::Groups,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Trie => "trie",
            Format::Tree => "tree",
            Format::Lines => "lines",
            Format::Jfr => "jfr",
            Format::Pprof | Format::PprofMultipart => "pprof",
            Format::Speedscope => "speedscope",
            Format::Groups => "groups (folded stacks)",
        }
    }
}

/// The parsed query of an `/ingest` request.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestParams {
    /// The application name: the part of `name` before `{`.
    pub app_name: String,
    /// The labels in `name`'s braces, in order.
    pub labels: Vec<(String, String)>,
    pub from_nanos: i64,
    pub until_nanos: i64,
    pub format: Option<String>,
    pub sample_rate: u32,
    pub spy_name: String,
}

impl IngestParams {
    pub fn parse(query: &[(String, String)]) -> Result<Self> {
        let get = |key: &str| {
            query
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let now = now_nanos();
        let name = get("name").unwrap_or_default();
        let (app_name, labels) = parse_name(name)
            .map_err(|e| Error::invalid(reason::INVALID_LABELS, format!("name: {e}")))?;
        let time = |key: &str| -> Result<i64> {
            match get(key) {
                None | Some("") => Ok(now),
                Some(value) => parse_attime(value, now)
                    .map_err(|e| Error::invalid(reason::INVALID_LABELS, format!("{key}: {e}"))),
            }
        };
        Ok(IngestParams {
            app_name,
            labels,
            from_nanos: time("from")?,
            until_nanos: time("until")?,
            format: get("format").map(str::to_string),
            // Pyroscope's default, also for a rate that is not a whole number; 0 keeps
            // stack formats' CPU values as counts.
            sample_rate: get("sampleRate")
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(100),
            spy_name: get("spyName")
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown")
                .to_string(),
        })
    }
}

/// Parses `app.name{k=v,k2=v2}`: unquoted values, pairs split on `,` and `=`, spaces trimmed.
pub fn parse_name(name: &str) -> Result<(String, Vec<(String, String)>)> {
    let invalid = |message: String| Error::invalid(reason::INVALID_LABELS, message);
    let name = name.trim();
    let Some(open) = name.find('{') else {
        if name.contains('}') {
            return Err(invalid(format!("unexpected '}}' in {name:?}")));
        }
        return Ok((name.to_string(), Vec::new()));
    };
    let app = name[..open].trim();
    let rest = &name[open + 1..];
    let Some(body) = rest.strip_suffix('}') else {
        return Err(invalid(format!(
            "{name:?} has '{{' without a closing '}}' at the end"
        )));
    };
    let mut labels = Vec::new();
    for pair in body.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let Some((key, value)) = pair.split_once('=') else {
            return Err(invalid(format!(
                "label {pair:?} in {name:?} is not key=value"
            )));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(invalid(format!(
                "label {pair:?} in {name:?} has an empty name"
            )));
        }
        labels.push((key.to_string(), value.to_string()));
    }
    Ok((app.to_string(), labels))
}

/// The display names of sample types Pyroscope assumes when a pprof comes without a
/// `sample_type_config` (its default sample type mapping): py-spy's and Go's CPU `samples`
/// is `cpu`, Go's `goroutine` is `goroutines`, and Go's mutex and block profiles'
/// `contentions` and `delay` are `mutex_count` and `mutex_duration`.
const DEFAULT_DISPLAY_NAMES: [(&str, &str); 4] = [
    ("samples", "cpu"),
    ("goroutine", "goroutines"),
    ("contentions", "mutex_count"),
    ("delay", "mutex_duration"),
];

/// `sample_type_config`: display names are the only part Pyroscope applies to pprof. Without
/// one, [`DEFAULT_DISPLAY_NAMES`]; a config replaces them all, as Pyroscope's does.
pub fn display_names(sample_type_config: Option<&[u8]>) -> Result<HashMap<String, String>> {
    let Some(bytes) = sample_type_config else {
        return Ok(DEFAULT_DISPLAY_NAMES
            .iter()
            .map(|(t, name)| (t.to_string(), name.to_string()))
            .collect());
    };
    #[derive(serde::Deserialize)]
    struct SampleTypeConfig {
        #[serde(rename = "display-name", default)]
        display_name: String,
    }
    let config: HashMap<String, SampleTypeConfig> = serde_json::from_slice(bytes).map_err(|e| {
        Error::rejected(
            hearth_engine::ErrorKind::MalformedProfile,
            reason::MALFORMED_PROFILE,
            format!("sample_type_config is not valid JSON: {e}"),
        )
    })?;
    Ok(config
        .into_iter()
        .filter(|(_, c)| !c.display_name.is_empty())
        .map(|(k, c)| (k, c.display_name))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_labels() {
        let (app, labels) = parse_name(
            "research.node.app{otel.scope.name=com.grafana.pyroscope/nodejs, env = test}",
        )
        .unwrap();
        assert_eq!(app, "research.node.app");
        assert_eq!(
            labels,
            vec![
                (
                    "otel.scope.name".into(),
                    "com.grafana.pyroscope/nodejs".into()
                ),
                ("env".into(), "test".into())
            ]
        );
        assert!(parse_name("app{a=1").is_err());
        assert!(parse_name("app{novalue}").is_err());
    }

    #[test]
    fn format_selection_order() {
        assert_eq!(
            Format::select(Some("pprof"), Some("multipart/form-data; boundary=x")),
            Format::Pprof
        );
        assert_eq!(
            Format::select(None, Some("multipart/form-data; boundary=x")),
            Format::PprofMultipart
        );
        assert_eq!(
            Format::select(None, Some("binary/octet-stream+trie")),
            Format::Trie
        );
        assert_eq!(Format::select(Some("whatever"), None), Format::Groups);
    }
}
