//! Per-tenant limits at runtime. The config's `limits:` apply to every tenant; the runtime
//! overrides file (`runtime_config.file`, in Pyroscope's shape) changes them per tenant:
//!
//! ```yaml
//! overrides:
//!   team-a:
//!     retention_period: 7d
//!     ingestion_rate_mb: 8
//! ```
//!
//! The file is read again every `runtime_config.period`, so a change applies to the next
//! request without a restart. A file that does not parse (an unknown key is named with its
//! tenant) stops start-up; at a reload it is logged and the previous overrides stay.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use hearth_engine::limits::{Limits, LimitsSource};
use hearth_engine::model::TenantId;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RuntimeConfig {
    /// The overrides file; none: every tenant gets `limits:`.
    pub file: Option<PathBuf>,
    /// How often the file is read again.
    #[serde(with = "humantime_serde")]
    pub period: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            file: None,
            period: Duration::from_secs(10),
        }
    }
}

/// The file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OverridesFile {
    #[serde(default)]
    overrides: HashMap<String, serde_yaml::Mapping>,
}

/// The limits of every tenant: the defaults, and the overrides file's changes.
#[derive(Debug)]
pub(crate) struct RuntimeLimits {
    defaults: Arc<Limits>,
    file: Option<PathBuf>,
    tenants: RwLock<HashMap<String, Arc<Limits>>>,
}

impl RuntimeLimits {
    /// Reads the overrides file (an error names what is wrong) and, when there is one, keeps
    /// reading it every `config.period` while the returned value lives.
    pub(crate) fn start(defaults: Limits, config: &RuntimeConfig) -> anyhow::Result<Arc<Self>> {
        let defaults = Arc::new(defaults);
        let tenants = match &config.file {
            Some(path) => read(path, &defaults)?,
            None => HashMap::new(),
        };
        let limits = Arc::new(RuntimeLimits {
            defaults,
            file: config.file.clone(),
            tenants: RwLock::new(tenants),
        });
        if config.file.is_some() {
            tokio::spawn(reload(Arc::downgrade(&limits), config.period));
        }
        Ok(limits)
    }

    fn reload(&self) {
        let Some(path) = &self.file else { return };
        match read(path, &self.defaults) {
            Ok(tenants) => {
                let mut current = self.tenants.write();
                if *current != tenants {
                    tracing::info!(file = %path.display(), tenants = tenants.len(), "overrides reloaded");
                    *current = tenants;
                }
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = format!("{e:#}"), "overrides file not reloaded; the previous overrides stay");
            }
        }
    }
}

impl LimitsSource for RuntimeLimits {
    fn limits(&self, tenant: &TenantId) -> Arc<Limits> {
        self.tenants
            .read()
            .get(tenant.as_str())
            .cloned()
            .unwrap_or_else(|| Arc::clone(&self.defaults))
    }
}

async fn reload(limits: Weak<RuntimeLimits>, period: Duration) {
    let mut interval = tokio::time::interval(period);
    interval.tick().await;
    loop {
        interval.tick().await;
        let Some(limits) = limits.upgrade() else {
            return;
        };
        limits.reload();
    }
}

/// Each tenant's limits: `defaults` with the file's keys for it on top.
fn read(path: &Path, defaults: &Limits) -> anyhow::Result<HashMap<String, Arc<Limits>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the overrides file {}", path.display()))?;
    let file: OverridesFile = if text.trim().is_empty() {
        OverridesFile::default()
    } else {
        serde_yaml::from_str(&text)
            .with_context(|| format!("invalid overrides file {}", path.display()))?
    };
    let base = serde_yaml::to_value(defaults).context("limits as YAML")?;
    let mut tenants = HashMap::new();
    for (tenant, changes) in file.overrides {
        TenantId::new(&tenant).with_context(|| {
            format!(
                "invalid overrides file {}: tenant `{tenant}`",
                path.display()
            )
        })?;
        let mut merged = base.clone();
        let mapping = merged.as_mapping_mut().context("limits are a mapping")?;
        for (key, value) in changes {
            mapping.insert(key, value);
        }
        let limits: Limits = serde_path_to_error::deserialize(merged).map_err(|e| {
            anyhow::anyhow!(
                "invalid overrides file {}: at `overrides.{tenant}.{}`: {}",
                path.display(),
                e.path(),
                e.inner()
            )
        })?;
        tenants.insert(tenant, Arc::new(limits));
    }
    Ok(tenants)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("overrides.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn a_tenant_gets_the_defaults_with_its_keys_on_top() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = Limits {
            ingestion_rate_mb: 4.0,
            ..Limits::default()
        };
        let path = write(
            dir.path(),
            "overrides:\n  team-a:\n    retention_period: 7d\n    max_label_names_per_series: 5\n",
        );
        let tenants = read(&path, &defaults).unwrap();
        let a = &tenants["team-a"];
        assert_eq!(a.retention_period, Duration::from_secs(7 * 86400));
        assert_eq!(a.max_label_names_per_series, 5);
        assert_eq!(a.ingestion_rate_mb, 4.0, "unnamed keys keep the defaults");
        assert_eq!(tenants.len(), 1);
    }

    #[test]
    fn an_unknown_key_is_named_with_its_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "overrides:\n  team-a:\n    retention_perod: 7d\n",
        );
        let err = format!("{:#}", read(&path, &Limits::default()).unwrap_err());
        assert!(err.contains("team-a"), "{err}");
        assert!(err.contains("retention_perod"), "{err}");
    }
}
