//! One YAML config file made of per-crate sections, every key checked (`deny_unknown_fields`),
//! with command-line flags applied on top in one place ([`Config::apply_flags`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use hearth_engine::{CompactorConfig, HeadConfig};
use hearth_flight::FlightConfig;
use hearth_ingest::Limits;
use hearth_ring::Role;

use crate::overrides::RuntimeConfig;
use crate::scrape::{ScrapeConfig, Scrapes};
use crate::storage::StorageConfig;
use hearth_sql::QueryConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// The components this process runs (`--target`).
    pub target: Role,
    /// Require `X-Scope-OrgID` on every request (401 without it). Off: every request is tenant
    /// `anonymous`, whatever it sends.
    pub multitenancy_enabled: bool,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub head: HeadConfig,
    pub limits: Limits,
    pub query: QueryConfig,
    pub flight: FlightConfig,
    pub cluster: ClusterConfig,
    pub compactor: CompactorConfig,
    /// The runtime overrides file: per-tenant limits, reloaded without restart.
    pub runtime_config: RuntimeConfig,
    /// Targets whose pprof endpoints this process scrapes (`all` and distributors).
    pub scrape_configs: Vec<ScrapeConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            target: Role::All,
            multitenancy_enabled: false,
            server: ServerConfig::default(),
            storage: StorageConfig::default(),
            head: HeadConfig::default(),
            limits: Limits::default(),
            query: QueryConfig::default(),
            flight: FlightConfig::default(),
            cluster: ClusterConfig::default(),
            compactor: CompactorConfig::default(),
            runtime_config: RuntimeConfig::default(),
            scrape_configs: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ServerConfig {
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

/// Cluster membership and replication (ignored by `--target all`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ClusterConfig {
    /// Unique per node and stable across restarts (an ingester's ring tokens derive from it).
    /// Default: the target and the HTTP port, e.g. `ingester-4040`.
    pub node_id: Option<String>,
    /// UDP address for gossip.
    pub gossip_addr: SocketAddr,
    /// `host:port` gossip addresses of nodes to join through.
    pub gossip_seeds: Vec<String>,
    /// IP address other nodes use to reach this one's gossip, HTTP and Flight ports when they
    /// listen on `0.0.0.0`.
    pub advertise_host: String,
    pub cluster_id: String,
    #[serde(with = "humantime_serde")]
    pub gossip_interval: std::time::Duration,
    /// Copies of every profile (Pyroscope's default: 3); writes succeed at a majority.
    pub replication_factor: usize,
    /// Availability zone, for zone-aware replication.
    pub zone: Option<String>,
    pub zone_awareness: bool,
    /// Ring tokens per ingester.
    pub tokens: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: None,
            gossip_addr: "0.0.0.0:7946".parse().expect("valid address"),
            gossip_seeds: Vec::new(),
            advertise_host: "127.0.0.1".to_string(),
            cluster_id: "hearth".to_string(),
            gossip_interval: std::time::Duration::from_millis(200),
            replication_factor: 3,
            zone: None,
            zone_awareness: false,
            tokens: 128,
        }
    }
}

/// Command-line flags that override the config file.
#[derive(Debug, Default, Clone)]
pub(crate) struct Flags {
    pub target: Option<Role>,
    pub http_addr: Option<SocketAddr>,
    pub flight_addr: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub multitenancy_enabled: Option<bool>,
    pub log_format: Option<LogFormat>,
    pub blocks_dir: Option<PathBuf>,
    pub node_id: Option<String>,
    pub gossip_addr: Option<SocketAddr>,
    pub gossip_seeds: Option<Vec<String>>,
    pub replication_factor: Option<usize>,
    pub advertise_host: Option<String>,
}

impl Config {
    /// Reads a YAML file; an unknown key is an error naming it and its place.
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    pub(crate) fn parse(text: &str) -> anyhow::Result<Self> {
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

    pub(crate) fn apply_flags(&mut self, flags: Flags) {
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
        if let Some(dir) = flags.blocks_dir {
            self.storage.blocks_dir = Some(dir);
        }
        if let Some(id) = flags.node_id {
            self.cluster.node_id = Some(id);
        }
        if let Some(addr) = flags.gossip_addr {
            self.cluster.gossip_addr = addr;
        }
        if let Some(seeds) = flags.gossip_seeds {
            self.cluster.gossip_seeds = seeds;
        }
        if let Some(rf) = flags.replication_factor {
            self.cluster.replication_factor = rf;
        }
        if let Some(host) = flags.advertise_host {
            self.cluster.advertise_host = host;
        }
    }

    /// Checks what serde cannot.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        let compactor = &self.compactor;
        if compactor.block_ranges.is_empty() || compactor.block_ranges.iter().any(|r| r.is_zero()) {
            bail!("compactor.block_ranges must list at least one positive duration");
        }
        if compactor.block_ranges.windows(2).any(|w| w[1] <= w[0]) {
            bail!("compactor.block_ranges must grow from one level to the next");
        }
        if compactor.compaction_interval.is_zero() {
            bail!("compactor.compaction_interval must be positive");
        }
        if self.runtime_config.period.is_zero() {
            bail!("runtime_config.period must be positive");
        }
        if self.cluster.replication_factor == 0 {
            bail!("cluster.replication_factor must be at least 1");
        }
        if self.cluster.tokens == 0 {
            bail!("cluster.tokens must be at least 1");
        }
        if self.limits.max_profile_bytes == 0 || self.limits.max_body_bytes == 0 {
            bail!("limits.max_profile_bytes and limits.max_body_bytes must be positive");
        }
        if self.head.max_head_bytes == 0 {
            bail!("head.max_head_bytes must be positive");
        }
        hearth_flight::Authenticator::new(&self.flight, self.multitenancy_enabled)?;
        self.storage.validate()?;
        if self.head.flush_check_interval.is_zero() {
            bail!("head.flush_check_interval must be positive");
        }
        let scrapes = Scrapes::new(&self.scrape_configs)?;
        let scrapes_here = matches!(self.target, Role::All | Role::Distributor | Role::Scraper);
        if !scrapes.is_empty() && !scrapes_here {
            bail!(
                "scrape_configs are scraped by --target all, distributor or scraper, not {}",
                self.target
            );
        }
        if scrapes.is_empty() && self.target == Role::Scraper {
            bail!("--target scraper needs scrape_configs");
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
