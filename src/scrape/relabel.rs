//! Prometheus-style relabelling of discovered targets (`relabel_configs`): `replace` (the
//! default), `keep`, `drop`, `labelmap`, `labeldrop` and `labelkeep`, with Prometheus's
//! defaults (`separator: ";"`, `regex: "(.*)"` anchored at both ends, `replacement: "$1"`).

use std::collections::BTreeMap;

use anyhow::Context;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// A target's labels while it is relabelled: `__address__`, `__meta_*` and the rest.
pub(crate) type LabelSet = BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    Labelmap,
    Labeldrop,
    Labelkeep,
}

/// One rule as written in the config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RelabelConfig {
    pub source_labels: Vec<String>,
    pub separator: Option<String>,
    pub regex: Option<String>,
    pub target_label: Option<String>,
    pub replacement: Option<String>,
    pub action: Action,
}

/// A rule ready to apply: its regex compiled and anchored.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    sources: Vec<String>,
    separator: String,
    regex: Regex,
    target: String,
    replacement: String,
    action: Action,
}

impl Rule {
    pub(crate) fn compile(config: &RelabelConfig) -> anyhow::Result<Self> {
        let pattern = config.regex.as_deref().unwrap_or("(.*)");
        let regex = Regex::new(&format!("^(?:{pattern})$"))
            .with_context(|| format!("relabel regex {pattern:?} does not compile"))?;
        let target = config.target_label.clone().unwrap_or_default();
        if config.action == Action::Replace && target.is_empty() {
            anyhow::bail!("a replace relabel rule needs a target_label");
        }
        if matches!(config.action, Action::Keep | Action::Drop) && config.source_labels.is_empty() {
            anyhow::bail!("a {:?} relabel rule needs source_labels", config.action);
        }
        Ok(Rule {
            sources: config.source_labels.clone(),
            separator: config.separator.clone().unwrap_or_else(|| ";".into()),
            regex,
            target,
            replacement: config.replacement.clone().unwrap_or_else(|| "$1".into()),
            action: config.action,
        })
    }
}

/// `labels` after `rules`, or `None` when a rule drops the target.
pub(crate) fn relabel(mut labels: LabelSet, rules: &[Rule]) -> Option<LabelSet> {
    for rule in rules {
        let value = rule
            .sources
            .iter()
            .map(|name| labels.get(name).map_or("", String::as_str))
            .collect::<Vec<_>>()
            .join(&rule.separator);
        match rule.action {
            Action::Keep if !rule.regex.is_match(&value) => return None,
            Action::Drop if rule.regex.is_match(&value) => return None,
            Action::Keep | Action::Drop => {}
            Action::Replace => {
                if let Some(captures) = rule.regex.captures(&value) {
                    let mut target = String::new();
                    captures.expand(&rule.target, &mut target);
                    let mut replaced = String::new();
                    captures.expand(&rule.replacement, &mut replaced);
                    if replaced.is_empty() {
                        labels.remove(&target);
                    } else if !target.is_empty() {
                        labels.insert(target, replaced);
                    }
                }
            }
            Action::Labelmap => {
                let mapped: Vec<(String, String)> = labels
                    .iter()
                    .filter_map(|(name, value)| {
                        let captures = rule.regex.captures(name)?;
                        let mut renamed = String::new();
                        captures.expand(&rule.replacement, &mut renamed);
                        Some((renamed, value.clone()))
                    })
                    .collect();
                labels.extend(mapped);
            }
            Action::Labeldrop => labels.retain(|name, _| !rule.regex.is_match(name)),
            Action::Labelkeep => labels.retain(|name, _| rule.regex.is_match(name)),
        }
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Vec<Rule> {
        let configs: Vec<RelabelConfig> = serde_yaml::from_str(yaml).unwrap();
        configs.iter().map(|c| Rule::compile(c).unwrap()).collect()
    }

    fn set(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn prometheus_actions() {
        let pod = set(&[
            ("__address__", "10.0.0.1:6060"),
            ("__meta_kubernetes_namespace", "shop"),
            ("__meta_kubernetes_pod_label_app", "checkout"),
            ("__meta_kubernetes_pod_label_team", "payments"),
        ]);
        let rules = rules(
            "
- {source_labels: [__meta_kubernetes_namespace], regex: 'shop|web', action: keep}
- {source_labels: [__meta_kubernetes_pod_label_app], target_label: service_name}
- {source_labels: [__meta_kubernetes_namespace, __meta_kubernetes_pod_label_app],
   separator: '/', target_label: workload}
- {regex: '__meta_kubernetes_pod_label_(.+)', action: labelmap, replacement: 'k8s_$1'}
- {regex: 'k8s_team', action: labeldrop}
",
        );
        let out = relabel(pod.clone(), &rules).unwrap();
        assert_eq!(out["service_name"], "checkout");
        assert_eq!(out["workload"], "shop/checkout");
        assert_eq!(out["k8s_app"], "checkout");
        assert!(!out.contains_key("k8s_team"));

        // keep is anchored: `shop` does not match `sho`.
        let other = relabel(set(&[("__meta_kubernetes_namespace", "shopping")]), &rules);
        assert!(other.is_none());
        let drop = self::rules(
            "[{source_labels: [__meta_kubernetes_pod_label_app], regex: check.*, action: drop}]",
        );
        assert!(relabel(pod, &drop).is_none());
    }

    #[test]
    fn bad_rules_are_named() {
        let bad = RelabelConfig {
            regex: Some("(".into()),
            target_label: Some("x".into()),
            ..Default::default()
        };
        let error = Rule::compile(&bad).unwrap_err().to_string();
        assert!(
            error.contains("relabel regex \"(\" does not compile"),
            "{error}"
        );
        let no_target = RelabelConfig::default();
        assert!(Rule::compile(&no_target).is_err());
    }
}
