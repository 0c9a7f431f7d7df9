//! Label matchers with Prometheus semantics: a missing label has the empty value; regexes are
//! fully anchored.

use std::fmt;

use regex::Regex;

use crate::error::{Error, ErrorKind, Result};
use crate::model::Labels;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }
}

/// `name op "value"`, e.g. `service_name="api"` or `region=~"eu-.*"`.
#[derive(Debug, Clone)]
pub struct LabelMatcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    /// For the regex ops: `value` anchored as `^(?:value)$`.
    regex: Option<Regex>,
}

impl PartialEq for LabelMatcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl LabelMatcher {
    pub fn new(name: impl Into<String>, op: MatchOp, value: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let value = value.into();
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                Some(Regex::new(&anchored(&value)).map_err(|e| {
                    Error::invalid(
                        ErrorKind::InvalidArgument,
                        format!("invalid regular expression {value:?} for label {name:?}: {e}"),
                    )
                })?)
            }
            _ => None,
        };
        Ok(LabelMatcher {
            name,
            op,
            value,
            regex,
        })
    }

    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        LabelMatcher::new(name, MatchOp::Equal, value).expect("equality needs no regex")
    }

    /// Whether a label value (empty when the label is missing) matches.
    pub fn matches_value(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(value)),
            MatchOp::NotRegex => !self.regex.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name).unwrap_or(""))
    }

    /// The pattern the regex ops run, anchored at both ends.
    pub fn anchored_pattern(&self) -> String {
        anchored(&self.value)
    }
}

fn anchored(pattern: &str) -> String {
    format!("^(?:{pattern})$")
}

impl fmt::Display for LabelMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

/// Whether every matcher matches.
pub fn matches_all(matchers: &[LabelMatcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_semantics() {
        let labels = Labels::from_pairs([("region", "eu-west"), ("env", "prod")]);
        let m = |n, op, v| LabelMatcher::new(n, op, v).unwrap();
        assert!(m("region", MatchOp::Regex, "eu-.*").matches(&labels));
        assert!(
            !m("region", MatchOp::Regex, "eu").matches(&labels),
            "anchored"
        );
        assert!(m("missing", MatchOp::Equal, "").matches(&labels));
        assert!(m("missing", MatchOp::NotEqual, "x").matches(&labels));
        assert!(!m("env", MatchOp::NotRegex, "pr.*").matches(&labels));
        assert!(LabelMatcher::new("a", MatchOp::Regex, "(").is_err());
    }
}
