//! Pull mode: `scrape_configs` name targets whose Go `net/http/pprof` endpoints Hearth scrapes
//! on an interval, as Phlare did and Alloy's `pyroscope.scrape` does. Each scraped profile
//! takes the path a pushed one takes (`IngestService::push`: validation, limits, the
//! distributor and its ring), labelled `service_name` (the target's, else the job's name),
//! `job`, `instance` and the target's labels. Cumulative endpoints (`allocs`, `mutex`,
//! `block`) are made into deltas between scrapes (the first scrape is the baseline); the CPU
//! profile is taken over the interval less a second (`?seconds=`). `GET /targets` shows every
//! target's health, last scrape and last error.
//!
//! Targets are static today (`static_configs`); each process configured with them scrapes all
//! of them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;
use bytes::Bytes;
use hearth_engine::model::TenantId;
use hearth_ingest::IngestService;
use hearth_ingest::delta::Deltas;
use hearth_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
use hearth_proto::types::v1::LabelPair;
use parking_lot::Mutex;
use prost::Message;
use serde::{Deserialize, Serialize};

/// One scrape job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScrapeConfig {
    pub job_name: String,
    /// How often each profile of each target is taken.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub scrape_interval: Duration,
    /// How long a scrape may take (the CPU profile's window comes on top); at most the
    /// interval, and 10 s by default.
    #[serde(default, with = "humantime_serde")]
    pub scrape_timeout: Option<Duration>,
    /// `http` or `https`.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// The tenant the profiles are stored for.
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    #[serde(default)]
    pub profiling_config: ProfilingConfig,
}

fn default_interval() -> Duration {
    Duration::from_secs(15)
}

fn default_scheme() -> String {
    "http".into()
}

/// Targets given by address, with labels for all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StaticConfig {
    /// `host:port` of each target.
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ProfilingConfig {
    pub pprof_config: BTreeMap<String, EndpointConfig>,
}

/// Changes to one profile type's defaults (see [`PROFILES`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct EndpointConfig {
    pub enabled: Option<bool>,
    pub path: Option<String>,
    /// Whether the endpoint counts from the process's start, so scrapes must be subtracted.
    pub delta: Option<bool>,
}

/// A profile type a Go program serves: its key in `pprof_config`, `__name__`, default path,
/// whether it is cumulative, and whether it is scraped by default.
struct Profile {
    key: &'static str,
    name: &'static str,
    path: &'static str,
    delta: bool,
    enabled: bool,
}

const PROFILES: &[Profile] = &[
    Profile {
        key: "process_cpu",
        name: "process_cpu",
        path: "/debug/pprof/profile",
        delta: false,
        enabled: true,
    },
    Profile {
        key: "memory",
        name: "memory",
        path: "/debug/pprof/allocs",
        delta: true,
        enabled: true,
    },
    Profile {
        key: "goroutine",
        name: "goroutines",
        path: "/debug/pprof/goroutine",
        delta: false,
        enabled: true,
    },
    Profile {
        key: "mutex",
        name: "mutex",
        path: "/debug/pprof/mutex",
        delta: true,
        enabled: true,
    },
    Profile {
        key: "block",
        name: "block",
        path: "/debug/pprof/block",
        delta: true,
        enabled: true,
    },
    // godeltaprof's endpoints serve deltas already.
    Profile {
        key: "godeltaprof_memory",
        name: "memory",
        path: "/debug/pprof/delta_heap",
        delta: false,
        enabled: false,
    },
    Profile {
        key: "godeltaprof_mutex",
        name: "mutex",
        path: "/debug/pprof/delta_mutex",
        delta: false,
        enabled: false,
    },
    Profile {
        key: "godeltaprof_block",
        name: "block",
        path: "/debug/pprof/delta_block",
        delta: false,
        enabled: false,
    },
];

/// One profile type of one target, and how its scrapes went.
#[derive(Debug)]
struct Target {
    job: String,
    instance: String,
    profile: &'static str,
    /// The URL without the CPU profile's `seconds`.
    url: String,
    cpu_seconds: Option<u64>,
    delta: bool,
    labels: Vec<(String, String)>,
    tenant: TenantId,
    interval: Duration,
    timeout: Duration,
    health: Mutex<Health>,
}

#[derive(Debug, Default, Clone)]
struct Health {
    up: Option<bool>,
    last_scrape: Option<SystemTime>,
    last_duration: Duration,
    last_error: String,
    scrapes: u64,
}

/// The configured targets and their scrape loops.
#[derive(Debug)]
pub(crate) struct Scrapes {
    targets: Vec<Arc<Target>>,
}

impl Scrapes {
    /// Checks `configs` and builds one target per address and enabled profile type.
    pub(crate) fn new(configs: &[ScrapeConfig]) -> anyhow::Result<Self> {
        let mut targets = Vec::new();
        let mut jobs = std::collections::HashSet::new();
        for config in configs {
            let job = &config.job_name;
            if job.is_empty() || !jobs.insert(job.clone()) {
                bail!("scrape_configs: job_name {job:?} is empty or used twice");
            }
            if !matches!(config.scheme.as_str(), "http" | "https") {
                bail!(
                    "scrape_configs {job}: scheme {:?} is not http or https",
                    config.scheme
                );
            }
            let interval = config.scrape_interval;
            if interval < Duration::from_secs(2) {
                bail!("scrape_configs {job}: scrape_interval {interval:?} is under 2s");
            }
            let timeout = config
                .scrape_timeout
                .unwrap_or(Duration::from_secs(10))
                .min(interval);
            if let Some(unknown) = config
                .profiling_config
                .pprof_config
                .keys()
                .find(|k| !PROFILES.iter().any(|p| p.key == *k))
            {
                let known: Vec<_> = PROFILES.iter().map(|p| p.key).collect();
                bail!(
                    "scrape_configs {job}: pprof_config.{unknown} is not a profile type ({})",
                    known.join(", ")
                );
            }
            let tenant = match &config.tenant_id {
                Some(id) => TenantId::new(id)
                    .map_err(|e| anyhow::anyhow!("scrape_configs {job}: tenant_id: {e}"))?,
                None => TenantId::anonymous(),
            };
            for group in &config.static_configs {
                for address in &group.targets {
                    if address.is_empty() || address.contains('/') {
                        bail!("scrape_configs {job}: target {address:?} is not host:port");
                    }
                    for profile in PROFILES {
                        let set = config.profiling_config.pprof_config.get(profile.key);
                        let set = set.cloned().unwrap_or_default();
                        if !set.enabled.unwrap_or(profile.enabled) {
                            continue;
                        }
                        let path = set.path.unwrap_or_else(|| profile.path.to_string());
                        let mut labels: Vec<(String, String)> = vec![
                            ("__name__".into(), profile.name.into()),
                            ("job".into(), job.clone()),
                            ("instance".into(), address.clone()),
                        ];
                        labels.extend(group.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
                        if !labels.iter().any(|(k, _)| k == "service_name") {
                            labels.push(("service_name".into(), job.clone()));
                        }
                        targets.push(Arc::new(Target {
                            job: job.clone(),
                            instance: address.clone(),
                            profile: profile.key,
                            url: format!("{}://{address}{path}", config.scheme),
                            cpu_seconds: (profile.key == "process_cpu")
                                .then(|| interval.as_secs().saturating_sub(1).max(1)),
                            delta: set.delta.unwrap_or(profile.delta),
                            labels,
                            tenant: tenant.clone(),
                            interval,
                            timeout,
                            health: Mutex::default(),
                        }));
                    }
                }
            }
        }
        Ok(Scrapes { targets })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Starts one loop per target; they stop when the handles are aborted.
    pub(crate) fn spawn(&self, ingest: Arc<IngestService>) -> Vec<tokio::task::JoinHandle<()>> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("hearth-scraper/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        self.targets
            .iter()
            .enumerate()
            .map(|(i, target)| {
                let (target, ingest, client) =
                    (Arc::clone(target), Arc::clone(&ingest), client.clone());
                // Spread the first scrapes over the interval.
                let offset = target
                    .interval
                    .mul_f64(i as f64 / self.targets.len() as f64);
                tokio::spawn(async move {
                    tokio::time::sleep(offset).await;
                    scrape_loop(&target, &client, &ingest).await;
                })
            })
            .collect()
    }

    /// `GET /targets`: every target as Prometheus lists its active targets.
    pub(crate) fn report(&self) -> serde_json::Value {
        let targets: Vec<_> = self
            .targets
            .iter()
            .map(|t| {
                let health = t.health.lock().clone();
                let labels: BTreeMap<_, _> = t.labels.iter().cloned().collect();
                serde_json::json!({
                    "job": t.job,
                    "instance": t.instance,
                    "profile": t.profile,
                    "scrapeUrl": t.scrape_url(),
                    "labels": labels,
                    "health": match health.up {
                        None => "unknown",
                        Some(true) => "up",
                        Some(false) => "down",
                    },
                    "lastScrape": health.last_scrape.map(|at| humantime::format_rfc3339_millis(at).to_string()),
                    "lastScrapeDurationSeconds": health.last_duration.as_secs_f64(),
                    "lastError": health.last_error,
                    "scrapes": health.scrapes,
                    "scrapeInterval": humantime::format_duration(t.interval).to_string(),
                    "scrapeTimeout": humantime::format_duration(t.timeout).to_string(),
                })
            })
            .collect();
        serde_json::json!({ "activeTargets": targets })
    }
}

impl Target {
    fn scrape_url(&self) -> String {
        match self.cpu_seconds {
            Some(seconds) => format!("{}?seconds={seconds}", self.url),
            None => self.url.clone(),
        }
    }
}

async fn scrape_loop(target: &Target, client: &reqwest::Client, ingest: &IngestService) {
    let mut ticker = tokio::time::interval(target.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut deltas = Deltas::default();
    loop {
        ticker.tick().await;
        let started = Instant::now();
        let at = SystemTime::now();
        let result = scrape(target, client, ingest, &mut deltas).await;
        if let Err(error) = &result {
            tracing::warn!(job = %target.job, instance = %target.instance, profile = target.profile, %error, "scrape failed");
        }
        let mut health = target.health.lock();
        health.up = Some(result.is_ok());
        health.last_scrape = Some(at);
        health.last_duration = started.elapsed();
        health.last_error = result.err().unwrap_or_default();
        health.scrapes += 1;
    }
}

/// Takes one profile and pushes it; the error names what went wrong.
async fn scrape(
    target: &Target,
    client: &reqwest::Client,
    ingest: &IngestService,
    deltas: &mut Deltas,
) -> Result<(), String> {
    let window = Duration::from_secs(target.cpu_seconds.unwrap_or(0));
    let response = client
        .get(target.scrape_url())
        .timeout(target.timeout + window)
        .send()
        .await
        .map_err(|e| format!("GET {}: {}", target.scrape_url(), error_chain(&e)))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("reading the body: {}", error_chain(&e)))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).to_string();
        return Err(format!("HTTP {status}: {}", text.trim()));
    }
    let limits = ingest.limits(&target.tenant);
    let raw = if target.delta {
        let mut profile = hearth_engine::pprof::decode(&body, limits.max_profile_bytes)
            .map_err(|e| format!("the body is not a pprof profile: {e}"))?;
        if !deltas.apply(&mut profile) {
            // The first scrape of a cumulative endpoint is the baseline.
            return Ok(());
        }
        if profile.sample.is_empty() {
            return Ok(());
        }
        Bytes::from(profile.encode_to_vec())
    } else {
        body
    };
    let size = raw.len();
    let request = PushRequest {
        series: vec![RawProfileSeries {
            labels: target
                .labels
                .iter()
                .map(|(name, value)| LabelPair {
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            samples: vec![RawSample {
                raw_profile: raw,
                id: String::new(),
            }],
            annotations: Vec::new(),
        }],
    };
    ingest
        .push(&target.tenant, request, size)
        .await
        .map(|_| ())
        .map_err(|e| format!("storing the profile: {e}"))
}

/// An error with its causes (reqwest's own message leaves out why a connection failed).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
