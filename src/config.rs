//! One YAML config file made of per-crate sections, every key checked (`deny_unknown_fields`),
//! with command-line flags applied on top in one place ([`Config::apply_flags`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use hearth_engine::HeadConfig;
use hearth_flight::FlightConfig;
use hearth_ingest::IngestLimits;
use hearth_sql::QueryConfig;
use serde::{Deserialize, Serialize};

/// The components a process runs. Only `all` exists until the cluster issue adds the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Everything in one process: ingest, storage, queries.
    All,
    Distributor,
    Ingester,
    Querier,
    QueryFrontend,
    Compactor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub target: Target,
    /// Require `X-Scope-OrgID` on every request (401 without it). Off: every request is tenant
    /// `anonymous`, whatever it sends.
    pub multitenancy_enabled: bool,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub head: HeadConfig,
    pub limits: IngestLimits,
    pub query: QueryConfig,
    pub flight: FlightConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            target: Target::All,
            multitenancy_enabled: false,
            server: ServerConfig::default(),
            storage: StorageConfig::default(),
            head: HeadConfig::default(),
            limits: IngestLimits::default(),
            query: QueryConfig::default(),
            flight: FlightConfig::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub http_addr: SocketAddr,
    pub log_format: LogFormat,
    /// How long a graceful shutdown waits for requests in flight.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: std::time::Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http_addr: "0.0.0.0:4040".parse().expect("valid address"),
            log_format: LogFormat::Text,
            shutdown_grace: std::time::Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Local data: `wal/` and, with the filesystem backend, `blocks/`.
    pub data_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./data"),
        }
    }
}

/// Command-line flags that override the config file.
#[derive(Debug, Default, Clone)]
pub struct Flags {
    pub target: Option<Target>,
    pub http_addr: Option<SocketAddr>,
    pub flight_addr: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub multitenancy_enabled: Option<bool>,
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Reads a YAML file; an unknown key is an error naming it and its place.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let deserializer = serde_yaml::Deserializer::from_str(text);
        let config: Config = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            anyhow::anyhow!("at `{path}`: {}", e.into_inner())
        })?;
        Ok(config)
    }

    pub fn apply_flags(&mut self, flags: Flags) {
        if let Some(target) = flags.target {
            self.target = target;
        }
        if let Some(addr) = flags.http_addr {
            self.server.http_addr = addr;
        }
        if let Some(addr) = flags.flight_addr {
            self.flight.addr = addr;
        }
        if let Some(dir) = flags.data_dir {
            self.storage.data_dir = dir;
        }
        if let Some(enabled) = flags.multitenancy_enabled {
            self.multitenancy_enabled = enabled;
        }
        if let Some(format) = flags.log_format {
            self.server.log_format = format;
        }
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.target != Target::All {
            bail!(
                "target `{}` is not available yet: this build runs everything in one process (`--target all`); \
                 the cluster roles come with the cluster work",
                serde_yaml::to_string(&self.target)?.trim()
            );
        }
        if self.limits.max_profile_bytes == 0 || self.limits.max_body_bytes == 0 {
            bail!("limits.max_profile_bytes and limits.max_body_bytes must be positive");
        }
        if self.head.max_head_bytes == 0 {
            bail!("head.max_head_bytes must be positive");
        }
        hearth_flight::Authenticator::new(&self.flight, self.multitenancy_enabled)
            .map_err(anyhow::Error::msg)?;
        if self.head.flush_check_interval.is_zero() {
            bail!("head.flush_check_interval must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("server:\n  http_adr: 127.0.0.1:1\n").unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("http_adr"), "{text}");
        assert!(text.contains("server"), "{text}");
    }

    #[test]
    fn defaults_and_overrides() {
        let mut config = Config::parse(
            "limits:\n  max_label_names_per_series: 10\nhead:\n  max_head_age: 10m\n",
        )
        .unwrap();
        assert_eq!(config.limits.max_label_names_per_series, 10);
        assert_eq!(
            config.head.max_head_age,
            std::time::Duration::from_secs(600)
        );
        config.apply_flags(Flags {
            data_dir: Some("/tmp/x".into()),
            ..Default::default()
        });
        assert_eq!(config.storage.data_dir, PathBuf::from("/tmp/x"));
        config.validate().unwrap();
    }

    #[test]
    fn example_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let config =
                    Config::load(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                config.validate().unwrap();
                seen += 1;
            }
        }
        assert!(seen > 0, "deploy/ has example configs");
    }
}
