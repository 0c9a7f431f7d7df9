//! Series label validation, as Pyroscope's `ValidateLabels`: count, lengths, names, UTF-8,
//! duplicates, with `.` in names rewritten to `_`.

use hearth_engine::model::{Labels, label};

use crate::error::{Error, Result, reason};
use hearth_engine::limits::Limits;

/// Whether `name` is a legacy Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_legacy_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks and normalises a series' labels, given in the order they were sent.
pub fn validate_labels(pairs: Vec<(String, String)>, limits: &Limits) -> Result<Labels> {
    let shown = || {
        let mut sorted = pairs.clone();
        sorted.sort();
        Labels::from_pairs(sorted).to_string()
    };
    if pairs.is_empty() {
        return Err(Error::invalid(
            reason::MISSING_LABELS,
            "error at least one label pair is required per profile",
        ));
    }
    if limits.max_label_names_per_series > 0 && pairs.len() > limits.max_label_names_per_series {
        return Err(Error::invalid(
            reason::MAX_LABEL_NAMES,
            format!(
                "profile series '{}' has {} label names; limit {}",
                shown(),
                pairs.len(),
                limits.max_label_names_per_series
            ),
        ));
    }
    let metric = pairs
        .iter()
        .find(|(n, _)| n == label::NAME)
        .map(|(_, v)| v.as_str());
    if metric.is_none_or(str::is_empty) {
        return Err(Error::invalid(
            reason::INVALID_LABELS,
            format!(
                "invalid labels '{}' with error: invalid metric name",
                shown()
            ),
        ));
    }
    let service = pairs
        .iter()
        .find(|(n, _)| n == label::SERVICE_NAME)
        .map(|(_, v)| v.as_str());
    if service.is_none_or(str::is_empty) {
        return Err(Error::invalid(
            reason::MISSING_LABELS,
            format!(
                "invalid labels '{}' with error: service name is not provided",
                shown()
            ),
        ));
    }

    let mut labels = Labels::default();
    for (name, value) in &pairs {
        if name.len() > limits.max_label_name_length {
            return Err(Error::invalid(
                reason::LABEL_NAME_TOO_LONG,
                format!(
                    "profile with labels '{}' has label name too long: '{name}' ({} bytes; limit {})",
                    shown(),
                    name.len(),
                    limits.max_label_name_length
                ),
            ));
        }
        if value.len() > limits.max_label_value_length {
            return Err(Error::invalid(
                reason::LABEL_VALUE_TOO_LONG,
                format!(
                    "profile with labels '{}' has label value too long for label '{name}' ({} bytes; limit {})",
                    shown(),
                    value.len(),
                    limits.max_label_value_length
                ),
            ));
        }
        let stored = if limits.sanitize_label_names && name.contains('.') {
            name.replace('.', "_")
        } else {
            name.clone()
        };
        if !is_legacy_name(&stored) {
            return Err(Error::invalid(
                reason::INVALID_LABELS,
                format!(
                    "invalid labels '{}' with error: invalid label name '{name}'",
                    shown()
                ),
            ));
        }
        match labels.get(&stored) {
            Some(existing) if existing == value && stored != *name => {}
            Some(_) if stored != *name => {
                return Err(Error::invalid(
                    reason::DUPLICATE_LABEL_NAMES,
                    format!(
                        "profile with labels '{}' has duplicate label name '{stored}' after label name sanitization from '{name}'",
                        shown()
                    ),
                ));
            }
            Some(_) => {
                return Err(Error::invalid(
                    reason::DUPLICATE_LABEL_NAMES,
                    format!(
                        "profile with labels '{}' has duplicate label name: '{name}'",
                        shown()
                    ),
                ));
            }
            None => labels.set(stored, value.clone()),
        }
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sanitises_dots_and_checks_names() {
        let limits = Limits::default();
        let labels = validate_labels(
            pairs(&[
                ("__name__", "process_cpu"),
                ("service_name", "a"),
                ("otel.scope.name", "x"),
            ]),
            &limits,
        )
        .unwrap();
        assert_eq!(labels.get("otel_scope_name"), Some("x"));
        let err = validate_labels(
            pairs(&[("__name__", "p"), ("service_name", "a"), ("bad-name", "x")]),
            &limits,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("invalid label name 'bad-name'"),
            "{err}"
        );
        assert_eq!(err.reason(), reason::INVALID_LABELS);
    }

    #[test]
    fn limits_are_named() {
        let limits = Limits {
            max_label_names_per_series: 3,
            max_label_value_length: 4,
            ..Default::default()
        };
        let err = validate_labels(
            pairs(&[
                ("__name__", "p"),
                ("service_name", "a"),
                ("a", "1"),
                ("b", "2"),
            ]),
            &limits,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("has 4 label names; limit 3"),
            "{err}"
        );
        let err = validate_labels(
            pairs(&[("__name__", "p"), ("service_name", "toolong")]),
            &limits,
        )
        .unwrap_err();
        assert_eq!(err.reason(), reason::LABEL_VALUE_TOO_LONG);
        let err = validate_labels(pairs(&[("__name__", "p")]), &limits).unwrap_err();
        assert!(err.to_string().contains("service name is not provided"));
    }

    #[test]
    fn duplicates_are_refused() {
        let limits = Limits::default();
        let err = validate_labels(
            pairs(&[
                ("__name__", "p"),
                ("service_name", "a"),
                ("a_b", "1"),
                ("a.b", "2"),
            ]),
            &limits,
        )
        .unwrap_err();
        assert_eq!(err.reason(), reason::DUPLICATE_LABEL_NAMES);
    }
}
