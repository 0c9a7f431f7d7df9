//! Pull mode: `scrape_configs` name targets whose Go `net/http/pprof` endpoints Hearth scrapes
//! on an interval, as Phlare did and Alloy's `pyroscope.scrape` does. Targets are static
//! (`static_configs`) or Kubernetes pods (`kubernetes_sd_configs`, watched), relabelled
//! Prometheus-style (`relabel_configs`). Each scraped profile takes the path a pushed one takes
//! (`IngestService::push`: validation, limits, the distributor and its ring), labelled
//! `service_name` (the target's, else the job's name, or `<namespace>/<container>` for a pod),
//! `job`, `instance` and the target's labels. Cumulative endpoints (`allocs`, `mutex`, `block`)
//! are made into deltas between scrapes (the first scrape is the baseline); the CPU profile is
//! taken over the interval less a second (`?seconds=`). `GET /targets` shows every target's
//! health, last scrape and last error.
//!
//! In a cluster, scraping runs in distributors or in scrapers (`--target scraper`, the same
//! process as a distributor, fed by its scrape loops). The members of one role configured
//! with the same `scrape_configs` share the targets: each target is scraped by the live member
//! whose hash with it is highest (rendezvous hashing over gossip), so adding one adds scrape
//! capacity and one that goes hands its targets to the others. Run scraping on one of the two
//! roles, not both: each role shares the targets among its own members.
//!
//! A pod is scraped for the profile types its annotations ask for, as Pyroscope's Helm chart
//! and Alloy read them: `profiles.grafana.com/<type>.scrape: "true"` with `.port` (or
//! `.port_name`), `.path` and `.scheme` (`<type>`: cpu, memory, goroutine, mutex, block), or the
//! seeds' `phlare.grafana.com/scrape: "true"` with `phlare.grafana.com/port` for every type the
//! job enables.

mod kubernetes;
mod relabel;

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
use hearth_ring::{Membership, Role};
use kubernetes::KubernetesSdConfig;
use parking_lot::Mutex;
use prost::Message;
use relabel::{LabelSet, RelabelConfig};
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
    pub kubernetes_sd_configs: Vec<KubernetesSdConfig>,
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
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

/// A profile type a Go program serves: its key in `pprof_config`, its name in pod annotations,
/// `__name__`, default path, whether it is cumulative, and whether it is scraped by default.
struct Profile {
    key: &'static str,
    annotation: Option<&'static str>,
    name: &'static str,
    path: &'static str,
    delta: bool,
    enabled: bool,
}

const PROFILES: &[Profile] = &[
    Profile {
        key: "process_cpu",
        annotation: Some("cpu"),
        name: "process_cpu",
        path: "/debug/pprof/profile",
        delta: false,
        enabled: true,
    },
    Profile {
        key: "memory",
        annotation: Some("memory"),
        name: "memory",
        path: "/debug/pprof/allocs",
        delta: true,
        enabled: true,
    },
    Profile {
        key: "goroutine",
        annotation: Some("goroutine"),
        name: "goroutines",
        path: "/debug/pprof/goroutine",
        delta: false,
        enabled: true,
    },
    Profile {
        key: "mutex",
        annotation: Some("mutex"),
        name: "mutex",
        path: "/debug/pprof/mutex",
        delta: true,
        enabled: true,
    },
    Profile {
        key: "block",
        annotation: Some("block"),
        name: "block",
        path: "/debug/pprof/block",
        delta: true,
        enabled: true,
    },
    // godeltaprof's endpoints serve deltas already.
    Profile {
        key: "godeltaprof_memory",
        annotation: None,
        name: "memory",
        path: "/debug/pprof/delta_heap",
        delta: false,
        enabled: false,
    },
    Profile {
        key: "godeltaprof_mutex",
        annotation: None,
        name: "mutex",
        path: "/debug/pprof/delta_mutex",
        delta: false,
        enabled: false,
    },
    Profile {
        key: "godeltaprof_block",
        annotation: None,
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

/// One job, checked: how its targets are found, relabelled and scraped.
struct Job {
    name: String,
    scheme: String,
    tenant: TenantId,
    interval: Duration,
    timeout: Duration,
    rules: Vec<relabel::Rule>,
    endpoints: Vec<Endpoint>,
    statics: Vec<LabelSet>,
    kubernetes: Vec<KubernetesSdConfig>,
}

/// One profile type of a job, with the job's changes to its defaults applied.
struct Endpoint {
    profile: &'static Profile,
    enabled: bool,
    path: String,
    delta: bool,
}

/// A target's identity: instance, profile type and URL.
type TargetKey = (String, &'static str, String);

/// A running target's loop.
struct Running {
    target: Arc<Target>,
    abort: tokio::task::AbortHandle,
}

/// The scrape jobs, their current targets and the targets' loops.
pub(crate) struct Scrapes {
    jobs: Vec<Job>,
    /// By job, then by (instance, profile type, URL).
    running: Mutex<Vec<BTreeMap<TargetKey, Running>>>,
    /// By job, the label sets last discovered (kept to share them again when the
    /// scrapers change).
    discovered: Mutex<Vec<Vec<LabelSet>>>,
    started: std::sync::OnceLock<(Arc<IngestService>, reqwest::Client)>,
    /// In a cluster, the gossip that says which processes share the targets: the live ones
    /// of this process's role.
    sharing: std::sync::OnceLock<(Arc<Membership>, Role)>,
}

impl std::fmt::Debug for Scrapes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrapes")
            .field("jobs", &self.jobs.len())
            .finish_non_exhaustive()
    }
}

impl Scrapes {
    /// Checks `configs`.
    pub(crate) fn new(configs: &[ScrapeConfig]) -> anyhow::Result<Self> {
        let mut jobs: Vec<Job> = Vec::new();
        for config in configs {
            let job = &config.job_name;
            if job.is_empty() || jobs.iter().any(|j| j.name == *job) {
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
            let rules = config
                .relabel_configs
                .iter()
                .map(relabel::Rule::compile)
                .collect::<anyhow::Result<Vec<_>>>()
                .map_err(|e| anyhow::anyhow!("scrape_configs {job}: {e:#}"))?;
            for sd in &config.kubernetes_sd_configs {
                sd.check()
                    .map_err(|e| anyhow::anyhow!("scrape_configs {job}: {e:#}"))?;
            }
            let mut statics = Vec::new();
            for group in &config.static_configs {
                for address in &group.targets {
                    if address.is_empty() || address.contains('/') {
                        bail!("scrape_configs {job}: target {address:?} is not host:port");
                    }
                    let mut set: LabelSet = group.labels.clone();
                    set.insert("__address__".into(), address.clone());
                    statics.push(set);
                }
            }
            let endpoints = PROFILES
                .iter()
                .map(|profile| {
                    let set = config.profiling_config.pprof_config.get(profile.key);
                    let set = set.cloned().unwrap_or_default();
                    Endpoint {
                        profile,
                        enabled: set.enabled.unwrap_or(profile.enabled),
                        path: set.path.unwrap_or_else(|| profile.path.to_string()),
                        delta: set.delta.unwrap_or(profile.delta),
                    }
                })
                .collect();
            jobs.push(Job {
                name: job.clone(),
                scheme: config.scheme.clone(),
                tenant,
                interval,
                timeout,
                rules,
                endpoints,
                statics,
                kubernetes: config.kubernetes_sd_configs.clone(),
            });
        }
        let running = Mutex::new(jobs.iter().map(|_| BTreeMap::new()).collect());
        let discovered = Mutex::new(jobs.iter().map(|_| Vec::new()).collect());
        Ok(Scrapes {
            jobs,
            running,
            discovered,
            started: std::sync::OnceLock::new(),
            sharing: std::sync::OnceLock::new(),
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Starts the static targets' loops and the discoveries; the returned tasks (the
    /// discoveries, and the watch of the cluster's members) and [`Scrapes::stop`] end them.
    /// With `membership` (a distributor or a scraper, of `role`), each target is scraped by one
    /// of the live members of that role: the one whose hash with the target is highest
    /// (rendezvous hashing), so targets move only when a member comes or goes.
    pub(crate) fn spawn(
        self: &Arc<Self>,
        ingest: Arc<IngestService>,
        membership: Option<Arc<Membership>>,
        role: Role,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        if self.is_empty() || self.started.get().is_some() {
            return Vec::new();
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("hearth-scraper/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds");
        let _ = self.started.set((ingest, client));
        let mut tasks = Vec::new();
        if let Some(membership) = membership {
            let mut changes = membership.changes();
            let _ = self.sharing.set((membership, role));
            let scrapes = Arc::clone(self);
            tasks.push(tokio::spawn(async move {
                while changes.changed().await.is_ok() {
                    for i in 0..scrapes.jobs.len() {
                        let sets = scrapes.discovered.lock()[i].clone();
                        scrapes.update(i, sets);
                    }
                }
            }));
        }
        for (i, job) in self.jobs.iter().enumerate() {
            if !job.statics.is_empty() {
                self.update(i, job.statics.clone());
            }
            for sd in &job.kubernetes {
                let (scrapes, sd) = (Arc::clone(self), sd.clone());
                tasks.push(tokio::spawn(async move {
                    let update = |sets| scrapes.update(i, sets);
                    kubernetes::discover(sd, update).await;
                }));
            }
        }
        tasks
    }

    /// Which targets this process scrapes: all of them alone; in a cluster those whose
    /// rendezvous owner among the live members of its role (read once here) is this process.
    fn ownership(&self) -> impl Fn(&TargetKey) -> bool + '_ {
        let members = self.sharing.get().map(|(membership, role)| {
            let me = membership.node_id();
            let mut ids: Vec<String> = membership.active(*role).into_iter().map(|n| n.id).collect();
            ids.push(me.to_string());
            (me, ids)
        });
        move |key: &TargetKey| {
            let Some((me, ids)) = &members else {
                return true;
            };
            let target = format!("{}\u{ff}{}\u{ff}{}", key.0, key.1, key.2);
            hearth_ring::rendezvous_owner(&target, ids.iter().map(String::as_str)) == Some(*me)
        }
    }

    /// Stops every target's loop.
    pub(crate) fn stop(&self) {
        for job in self.running.lock().iter_mut() {
            for (_, running) in std::mem::take(job) {
                running.abort.abort();
            }
        }
    }

    /// Job `i`'s targets are now those of `sets` (discovered label sets): loops of targets
    /// that went away stop, new ones start, unchanged ones keep their state.
    fn update(&self, i: usize, sets: Vec<LabelSet>) {
        let Some((ingest, client)) = self.started.get() else {
            return;
        };
        let job = &self.jobs[i];
        self.discovered.lock()[i] = sets.clone();
        let owns = self.ownership();
        let targets: Vec<Target> = sets
            .into_iter()
            .filter_map(|set| relabel::relabel(set, &job.rules))
            .flat_map(|set| job.targets(&set))
            .filter(|target| owns(&target.key()))
            .collect();
        let mut running = self.running.lock();
        let current = &mut running[i];
        let wanted: BTreeMap<_, _> = targets.into_iter().map(|t| (t.key(), t)).collect();
        current.retain(|key, run| {
            let keep = wanted
                .get(key)
                .is_some_and(|t| t.labels == run.target.labels);
            if !keep {
                run.abort.abort();
            }
            keep
        });
        let count = wanted.len().max(1);
        for (n, (key, target)) in wanted.into_iter().enumerate() {
            if current.contains_key(&key) {
                continue;
            }
            let target = Arc::new(target);
            let (looped, ingest, client) =
                (Arc::clone(&target), Arc::clone(ingest), client.clone());
            // Spread the first scrapes over the interval.
            let offset = target.interval.mul_f64(n as f64 / count as f64);
            let handle = tokio::spawn(async move {
                tokio::time::sleep(offset).await;
                scrape_loop(&looped, &client, &ingest).await;
            });
            current.insert(
                key,
                Running {
                    target,
                    abort: handle.abort_handle(),
                },
            );
        }
    }

    /// `GET /targets`: every target as Prometheus lists its active targets.
    pub(crate) fn report(&self) -> serde_json::Value {
        let running = self.running.lock();
        let targets: Vec<_> = running
            .iter()
            .flat_map(|job| job.values())
            .map(|run| {
                let t = &run.target;
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

/// The pod annotation label `profiles.grafana.com/<key>` becomes.
fn annotation(key: &str) -> String {
    format!("__meta_kubernetes_pod_annotation_profiles_grafana_com_{key}")
}

const PHLARE_SCRAPE: &str = "__meta_kubernetes_pod_annotation_phlare_grafana_com_scrape";
const PHLARE_PORT: &str = "__meta_kubernetes_pod_annotation_phlare_grafana_com_port";

impl Job {
    /// The targets of one relabelled label set: one per profile type to scrape.
    fn targets(&self, set: &LabelSet) -> Vec<Target> {
        let Some(address) = set.get("__address__").filter(|a| !a.is_empty()) else {
            return Vec::new();
        };
        let pod = set.contains_key("__meta_kubernetes_pod_name");
        let mut labels: Vec<(String, String)> = set
            .iter()
            .filter(|(name, _)| !name.starts_with("__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut default = |name: &str, value: Option<String>| {
            if let Some(value) = value.filter(|v| !v.is_empty())
                && !labels.iter().any(|(k, _)| k == name)
            {
                labels.push((name.to_string(), value));
            }
        };
        let meta = |name: &str| set.get(&format!("__meta_kubernetes_{name}")).cloned();
        if pod {
            default("namespace", meta("namespace"));
            default("pod", meta("pod_name"));
            default("node", meta("pod_node_name"));
            default("container", meta("pod_container_name"));
            let service = match (meta("namespace"), meta("pod_container_name")) {
                (Some(ns), Some(container)) => Some(format!("{ns}/{container}")),
                _ => None,
            };
            default("service_name", service);
        }
        default("job", Some(self.name.clone()));
        default("service_name", Some(self.name.clone()));
        let host = address
            .rsplit_once(':')
            .map_or(address.as_str(), |(h, _)| h);
        let mut out = Vec::new();
        for Endpoint {
            profile,
            enabled,
            path,
            delta,
        } in &self.endpoints
        {
            // (address, path, scheme) of this profile type, when it is scraped.
            let chosen = match (pod, profile.annotation) {
                (false, _) => enabled.then(|| (address.clone(), path.clone(), self.scheme.clone())),
                (true, Some(key)) => {
                    let get = |what: &str| set.get(&annotation(&format!("{key}_{what}")));
                    let own = get("scrape").is_some_and(|v| v == "true");
                    let phlare = *enabled && set.get(PHLARE_SCRAPE).is_some_and(|v| v == "true");
                    let port = get("port").or(set.get(PHLARE_PORT));
                    match (own || phlare, port) {
                        (true, Some(port)) => Some((
                            format!("{host}:{port}"),
                            get("path").cloned().unwrap_or_else(|| path.clone()),
                            get("scheme")
                                .cloned()
                                .unwrap_or_else(|| self.scheme.clone()),
                        )),
                        _ => None,
                    }
                }
                (true, None) => None,
            };
            let Some((instance, path, scheme)) = chosen else {
                continue;
            };
            // The scraped address is the target's `instance`, whatever the labels said (they
            // hold no `__` names, so no `__name__` either).
            let mut labels: Vec<(String, String)> = labels
                .iter()
                .filter(|(name, _)| name != "instance")
                .cloned()
                .collect();
            labels.push(("__name__".into(), profile.name.into()));
            labels.push(("instance".into(), instance.clone()));
            labels.sort();
            out.push(Target {
                job: self.name.clone(),
                instance: instance.clone(),
                profile: profile.key,
                url: format!("{scheme}://{instance}{path}"),
                cpu_seconds: (profile.key == "process_cpu")
                    .then(|| self.interval.as_secs().saturating_sub(1).max(1)),
                delta: *delta,
                labels,
                tenant: self.tenant.clone(),
                interval: self.interval,
                timeout: self.timeout,
                health: Mutex::default(),
            });
        }
        out
    }
}

impl Target {
    fn key(&self) -> TargetKey {
        (self.instance.clone(), self.profile, self.url.clone())
    }

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
