//! Pyroscope's legacy `POST /ingest`: query parameters, the `name` label syntax, `attime`
//! times, and how the body's format is chosen.

use std::collections::HashMap;

use crate::error::{Error, Result, reason};
use crate::normalize::now_nanos;

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
            sample_rate: get("sampleRate")
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|&r| r > 0)
                .unwrap_or(100),
            spy_name: get("spyName")
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown")
                .to_string(),
        })
    }
}

/// Parses `app.name{k=v,k2=v2}`: unquoted values, pairs split on `,` and `=`, spaces trimmed.
pub fn parse_name(name: &str) -> std::result::Result<(String, Vec<(String, String)>), String> {
    let name = name.trim();
    let Some(open) = name.find('{') else {
        if name.contains('}') {
            return Err(format!("unexpected '}}' in {name:?}"));
        }
        return Ok((name.to_string(), Vec::new()));
    };
    let app = name[..open].trim();
    let rest = &name[open + 1..];
    let Some(body) = rest.strip_suffix('}') else {
        return Err(format!(
            "{name:?} has '{{' without a closing '}}' at the end"
        ));
    };
    let mut labels = Vec::new();
    for pair in body.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            continue;
        }
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!("label {pair:?} in {name:?} is not key=value"));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(format!("label {pair:?} in {name:?} has an empty name"));
        }
        labels.push((key.to_string(), value.to_string()));
    }
    Ok((app.to_string(), labels))
}

/// Parses Pyroscope's `attime`: digits (8 = `YYYYMMDD`, 13 = ms, 16 = µs, 19 = ns, otherwise
/// seconds), `now`, or `now-<n><unit>` with units s, m/min, h, d, w, M/mon, y.
pub fn parse_attime(value: &str, now_nanos: i64) -> std::result::Result<i64, String> {
    let value = value.trim();
    if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
        let n: i64 = value
            .parse()
            .map_err(|_| format!("{value:?} is out of range"))?;
        return Ok(match value.len() {
            8 => date_nanos(value)?,
            13 => n.saturating_mul(1_000_000),
            16 => n.saturating_mul(1_000),
            19 => n,
            _ => n.saturating_mul(1_000_000_000),
        });
    }
    let Some(offset) = value.strip_prefix("now") else {
        return Err(format!(
            "{value:?} is not a time: expected unix seconds/ms/µs/ns, YYYYMMDD, or now[-+]<n><unit>"
        ));
    };
    if offset.is_empty() {
        return Ok(now_nanos);
    }
    let (sign, amount) = match offset.as_bytes()[0] {
        b'-' => (-1i64, &offset[1..]),
        b'+' => (1, &offset[1..]),
        _ => return Err(format!("{value:?}: expected '-' or '+' after now")),
    };
    let digits = amount.bytes().take_while(u8::is_ascii_digit).count();
    let n: i64 = amount[..digits]
        .parse()
        .map_err(|_| format!("{value:?}: expected a number after now{}", &offset[..1]))?;
    let unit_seconds: i64 = match &amount[digits..] {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "M" | "mon" => 30 * 86_400,
        "y" => 365 * 86_400,
        other => return Err(format!("{value:?}: unknown unit {other:?}")),
    };
    Ok(now_nanos
        .saturating_add(sign * n.saturating_mul(unit_seconds).saturating_mul(1_000_000_000)))
}

/// Midnight UTC of a `YYYYMMDD` date, in Unix nanoseconds.
fn date_nanos(value: &str) -> std::result::Result<i64, String> {
    let year: i64 = value[..4]
        .parse()
        .map_err(|_| format!("bad date {value:?}"))?;
    let month: i64 = value[4..6]
        .parse()
        .map_err(|_| format!("bad date {value:?}"))?;
    let day: i64 = value[6..]
        .parse()
        .map_err(|_| format!("bad date {value:?}"))?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(format!("bad date {value:?}"));
    }
    // Days from the civil calendar (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 * 1_000_000_000)
}

/// `sample_type_config`: display names are the only part Pyroscope applies to pprof.
pub fn display_names(sample_type_config: Option<&[u8]>) -> Result<HashMap<String, String>> {
    let Some(bytes) = sample_type_config else {
        return Ok(HashMap::new());
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
    fn attime_units() {
        let now = 1_000_000_000_000_000_000;
        assert_eq!(
            parse_attime("1795260730", now).unwrap(),
            1_795_260_730_000_000_000
        );
        assert_eq!(
            parse_attime("1795260730123", now).unwrap(),
            1_795_260_730_123_000_000
        );
        assert_eq!(
            parse_attime("1795260730123456789", now).unwrap(),
            1_795_260_730_123_456_789
        );
        assert_eq!(
            parse_attime("20240102", now).unwrap(),
            1_704_153_600_000_000_000
        );
        assert_eq!(
            parse_attime("now-1h", now).unwrap(),
            now - 3_600_000_000_000
        );
        assert!(parse_attime("yesterday", now).is_err());
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
