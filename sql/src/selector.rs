//! The label-selector language: `<profile_type_id>{matcher, ...}` or `{...}`, with Prometheus
//! matcher syntax (`=`, `!=`, `=~`, `!~`; regexes fully anchored; double-, single- or
//! back-quoted values with Go escapes). Errors name the position and what was expected.
//!
//! The part before the braces is a profile type id (`name:type:unit:period_type:period_unit`)
//! and becomes `__profile_type__="<id>"`; a plain metric name becomes `__name__="<name>"`.

use std::fmt;

use hearth_engine::matcher::{LabelMatcher, MatchOp};
use hearth_engine::model::{ProfileType, label};

use crate::error::{Error, Result};

/// A parsed selector: every matcher must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    pub profile_type: Option<ProfileType>,
    pub matchers: Vec<LabelMatcher>,
}

impl Selector {
    /// Parses a selector. `{}` selects everything; the empty string is an error, as in Prometheus.
    pub fn parse(input: &str) -> Result<Self> {
        Parser { input, pos: 0 }.selector()
    }

    /// Adds `__profile_type__="<id>"`, as the Connect API does with `profile_typeID`.
    pub fn with_profile_type(mut self, profile_type: ProfileType) -> Self {
        self.matchers
            .push(LabelMatcher::equal(label::PROFILE_TYPE, profile_type.id()));
        self.profile_type = Some(profile_type);
        self
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, m) in self.matchers.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{m}")?;
        }
        f.write_str("}")
    }
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, expected: &str) -> Error {
        let found = match self.rest().chars().next() {
            Some(c) => format!("{c:?}"),
            None => "end of input".to_string(),
        };
        Error::invalid(format!(
            "failed to parse label selector {:?}: at position {}: expected {expected}, found {found}",
            self.input,
            self.pos + 1
        ))
    }

    fn rest(&self) -> &str {
        &self.input[self.pos..]
    }

    fn skip_spaces(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.input.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_spaces();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn selector(mut self) -> Result<Selector> {
        self.skip_spaces();
        let mut matchers = Vec::new();
        let mut profile_type = None;
        let head_len = self
            .rest()
            .find(|c: char| c == '{' || c.is_whitespace())
            .unwrap_or(self.rest().len());
        if head_len > 0 {
            let head = &self.rest()[..head_len];
            let start = self.pos;
            if head.contains(':') {
                let parsed = ProfileType::parse(head).map_err(|_| {
                    Error::invalid(format!(
                        "failed to parse label selector {:?}: at position {}: expected a profile type id name:sample_type:sample_unit:period_type:period_unit, found {head:?}",
                        self.input,
                        start + 1
                    ))
                })?;
                matchers.push(LabelMatcher::equal(label::PROFILE_TYPE, parsed.id()));
                profile_type = Some(parsed);
            } else {
                if !is_label_name(head) {
                    return Err(self.error("a profile type id or '{'"));
                }
                matchers.push(LabelMatcher::equal(label::NAME, head));
            }
            self.pos += head_len;
        }
        self.skip_spaces();
        if self.rest().is_empty() && head_len > 0 {
            return Ok(Selector {
                profile_type,
                matchers,
            });
        }
        if !self.eat("{") {
            return Err(self.error("'{'"));
        }
        loop {
            if self.eat("}") {
                break;
            }
            matchers.push(self.matcher()?);
            if self.eat(",") {
                continue;
            }
            if self.eat("}") {
                break;
            }
            return Err(self.error("',' or '}'"));
        }
        self.skip_spaces();
        if !self.rest().is_empty() {
            return Err(self.error("end of input after '}'"));
        }
        Ok(Selector {
            profile_type,
            matchers,
        })
    }

    fn matcher(&mut self) -> Result<LabelMatcher> {
        self.skip_spaces();
        let name_len = self
            .rest()
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(self.rest().len());
        let name = &self.rest()[..name_len];
        if !is_label_name(name) {
            return Err(self.error("a label name"));
        }
        let name = name.to_string();
        self.pos += name_len;
        let op = if self.eat("=~") {
            MatchOp::Regex
        } else if self.eat("!~") {
            MatchOp::NotRegex
        } else if self.eat("!=") {
            MatchOp::NotEqual
        } else if self.eat("=") {
            MatchOp::Equal
        } else {
            return Err(self.error("one of '=', '!=', '=~', '!~'"));
        };
        let value = self.quoted()?;
        LabelMatcher::new(name, op, value).map_err(|e| Error::invalid(e.to_string()))
    }

    /// A quoted string: `"..."` or `'...'` with Go escapes, or a raw `` `...` ``.
    fn quoted(&mut self) -> Result<String> {
        self.skip_spaces();
        let Some(quote) = self.rest().chars().next().filter(|c| "\"'`".contains(*c)) else {
            return Err(self.error("a quoted string"));
        };
        let start = self.pos;
        self.pos += 1;
        let mut value = String::new();
        loop {
            let Some(c) = self.rest().chars().next() else {
                self.pos = start;
                return Err(self.error("a closing quote for the string starting here"));
            };
            self.pos += c.len_utf8();
            if c == quote {
                return Ok(value);
            }
            if c == '\\' && quote != '`' {
                let Some(escaped) = self.rest().chars().next() else {
                    return Err(self.error("an escaped character"));
                };
                self.pos += escaped.len_utf8();
                value.push(match escaped {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '\\' => '\\',
                    '"' => '"',
                    '\'' => '\'',
                    'u' | 'U' | 'x' => self.unicode_escape(escaped)?,
                    _ => {
                        self.pos -= escaped.len_utf8();
                        return Err(
                            self.error("a valid escape (\\n \\t \\r \\\\ \\\" \\' \\x \\u \\U)")
                        );
                    }
                });
            } else {
                value.push(c);
            }
        }
    }

    fn unicode_escape(&mut self, kind: char) -> Result<char> {
        let digits = match kind {
            'x' => 2,
            'u' => 4,
            _ => 8,
        };
        let hex = self.rest().get(..digits).unwrap_or_default();
        let code = u32::from_str_radix(hex, 16).ok().and_then(char::from_u32);
        match code {
            Some(c) if hex.len() == digits => {
                self.pos += digits;
                Ok(c)
            }
            _ => Err(self.error(&format!("{digits} hex digits after \\{kind}"))),
        }
    }
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_type_and_matchers() {
        let s = Selector::parse(
            r#"process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name="api", region=~"eu-.*",env!='dev', x!~`a\d`}"#,
        )
        .unwrap();
        assert_eq!(s.profile_type.as_ref().unwrap().name, "process_cpu");
        assert_eq!(s.matchers.len(), 5);
        assert_eq!(s.matchers[0].name, "__profile_type__");
        assert_eq!(s.matchers[3].value, "dev");
        assert_eq!(s.matchers[4].value, r"a\d");
        assert!(s.matchers[2].matches_value("eu-west"));
        assert!(!s.matchers[2].matches_value("xeu-west"));
    }

    #[test]
    fn bare_and_empty_selectors() {
        assert!(Selector::parse("{}").unwrap().matchers.is_empty());
        assert!(Selector::parse("").is_err());
        let s = Selector::parse(r#"{a="x\"y\u00e9"}"#).unwrap();
        assert_eq!(s.matchers[0].value, "x\"yé");
        let s = Selector::parse("memory").unwrap();
        assert_eq!(s.matchers[0].name, "__name__");
    }

    #[test]
    fn errors_name_position_and_expectation() {
        let err = Selector::parse(r#"{service_name="api""#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("at position 20: expected ',' or '}', found end of input"),
            "{err}"
        );
        let err = Selector::parse(r#"{service_name=api}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("position 15: expected a quoted string, found 'a'"),
            "{err}"
        );
        let err = Selector::parse(r#"{1a="x"}"#).unwrap_err().to_string();
        assert!(err.contains("expected a label name"), "{err}");
        let err = Selector::parse(r#"{a=~"("}"#).unwrap_err().to_string();
        assert!(err.contains("invalid regular expression"), "{err}");
        let err = Selector::parse("a:b{}").unwrap_err().to_string();
        assert!(err.contains("expected a profile type id"), "{err}");
    }
}
