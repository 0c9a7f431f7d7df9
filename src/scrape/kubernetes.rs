//! Kubernetes pod discovery for `scrape_configs`: list the pods, then watch them (one long
//! `?watch=true` request from the list's `resourceVersion`, relisting when the server says the
//! version is gone), and hand the scrape manager one label set per running pod, with the
//! `__meta_kubernetes_*` labels Prometheus gives the pod role.
//!
//! Credentials come from the config's `api_server` (with an optional bearer token file and CA),
//! a kubeconfig file (server, CA, token), or the pod's service account when Hearth runs inside
//! the cluster.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::relabel::LabelSet;

const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// How long one watch request lasts before it is made again from a fresh list.
const WATCH_SECONDS: u64 = 300;

/// `kubernetes_sd_configs` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KubernetesSdConfig {
    /// Only `pod` is supported.
    #[serde(default = "pod_role")]
    pub role: String,
    /// `https://host:port` of the API server; in-cluster or the kubeconfig's when unset.
    #[serde(default)]
    pub api_server: Option<String>,
    #[serde(default)]
    pub kubeconfig_file: Option<PathBuf>,
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Namespaces to watch; all when empty.
    #[serde(default)]
    pub namespaces: Namespaces,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Namespaces {
    pub names: Vec<String>,
}

fn pod_role() -> String {
    "pod".into()
}

impl KubernetesSdConfig {
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        if self.role != "pod" {
            bail!(
                "kubernetes_sd_configs role {:?} is not supported (pod is)",
                self.role
            );
        }
        if self.api_server.is_some() && self.kubeconfig_file.is_some() {
            bail!("kubernetes_sd_configs: give api_server or kubeconfig_file, not both");
        }
        Ok(())
    }
}

/// What a client needs to reach the API server: its URL, a bearer token, a CA (PEM) and
/// whether to skip the TLS check.
struct Credentials {
    base: String,
    token: Option<String>,
    ca: Option<Vec<u8>>,
    insecure: bool,
}

/// How to reach the API server.
struct ApiServer {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
}

impl ApiServer {
    fn connect(config: &KubernetesSdConfig) -> anyhow::Result<Self> {
        let credentials = match (&config.api_server, &config.kubeconfig_file) {
            (Some(server), _) => {
                let token = match &config.bearer_token_file {
                    Some(path) => Some(read_token(path)?),
                    None => None,
                };
                let ca =
                    match &config.ca_file {
                        Some(path) => Some(std::fs::read(path).with_context(|| {
                            format!("cannot read the CA file {}", path.display())
                        })?),
                        None => None,
                    };
                Credentials {
                    base: server.clone(),
                    token,
                    ca,
                    insecure: config.insecure_skip_verify,
                }
            }
            (None, Some(path)) => kubeconfig(path)?,
            (None, None) => {
                let host = std::env::var("KUBERNETES_SERVICE_HOST").context(
                    "no api_server or kubeconfig_file, and not in a cluster \
                     (KUBERNETES_SERVICE_HOST is unset)",
                )?;
                let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or("443".into());
                let token = read_token(&PathBuf::from(SERVICE_ACCOUNT).join("token"))?;
                let ca = std::fs::read(PathBuf::from(SERVICE_ACCOUNT).join("ca.crt")).ok();
                Credentials {
                    base: format!("https://{host}:{port}"),
                    token: Some(token),
                    ca,
                    insecure: false,
                }
            }
        };
        let Credentials {
            base,
            token,
            ca,
            insecure,
        } = credentials;
        let mut builder = reqwest::Client::builder().danger_accept_invalid_certs(insecure);
        if let Some(pem) = ca {
            builder = builder.add_root_certificate(
                reqwest::Certificate::from_pem(&pem).context("the API server's CA is not PEM")?,
            );
        }
        Ok(ApiServer {
            base: base.trim_end_matches('/').to_string(),
            token,
            client: builder.build()?,
        })
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.get(format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }
}

fn read_token(path: &PathBuf) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the bearer token file {}", path.display()))?
        .trim()
        .to_string())
}

/// The current context's server, token, CA and TLS check from a kubeconfig file.
fn kubeconfig(path: &PathBuf) -> anyhow::Result<Credentials> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the kubeconfig {}", path.display()))?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text)
        .with_context(|| format!("the kubeconfig {} is not YAML", path.display()))?;
    let named = |list: &str, name: &str, key: &str| -> Option<serde_yaml::Value> {
        doc[list]
            .as_sequence()?
            .iter()
            .find(|item| item["name"].as_str() == Some(name))
            .map(|item| item[key].clone())
    };
    let current = doc["current-context"].as_str().unwrap_or_default();
    let context = named("contexts", current, "context")
        .with_context(|| format!("the kubeconfig has no context {current:?}"))?;
    let cluster_name = context["cluster"].as_str().unwrap_or_default();
    let cluster = named("clusters", cluster_name, "cluster")
        .with_context(|| format!("the kubeconfig has no cluster {cluster_name:?}"))?;
    let server = cluster["server"]
        .as_str()
        .context("the kubeconfig's cluster has no server")?
        .to_string();
    let user = context["user"]
        .as_str()
        .and_then(|name| named("users", name, "user"))
        .unwrap_or(serde_yaml::Value::Null);
    if user["client-certificate"].is_string() || user["client-certificate-data"].is_string() {
        bail!("kubeconfig client certificates are not supported: use a token");
    }
    let token = match (user["token"].as_str(), user["tokenFile"].as_str()) {
        (Some(token), _) => Some(token.to_string()),
        (None, Some(file)) => Some(read_token(&PathBuf::from(file))?),
        (None, None) => None,
    };
    let ca = match (
        cluster["certificate-authority-data"].as_str(),
        cluster["certificate-authority"].as_str(),
    ) {
        (Some(data), _) => Some(base64_decode(data).context("certificate-authority-data")?),
        (None, Some(file)) => Some(std::fs::read(file)?),
        (None, None) => None,
    };
    let insecure = cluster["insecure-skip-tls-verify"]
        .as_bool()
        .unwrap_or(false);
    Ok(Credentials {
        base: server,
        token,
        ca,
        insecure,
    })
}

fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    use base64::Engine as _;
    let compact: String = text.split_whitespace().collect();
    Ok(base64::engine::general_purpose::STANDARD.decode(compact)?)
}

/// Lists and watches the pods, calling `update` with the label sets of all running pods
/// after the list and after every change. Runs until aborted.
pub(crate) async fn discover(config: KubernetesSdConfig, update: impl Fn(Vec<LabelSet>)) {
    let api = match ApiServer::connect(&config) {
        Ok(api) => api,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "kubernetes discovery cannot start");
            return;
        }
    };
    let scopes: Vec<String> = match config.namespaces.names.as_slice() {
        [] => vec!["/api/v1/pods".into()],
        names => names
            .iter()
            .map(|ns| format!("/api/v1/namespaces/{ns}/pods"))
            .collect(),
    };
    // Per scope, the label sets of its scrapeable pods by namespace/name.
    let mut pods: Vec<BTreeMap<String, LabelSet>> = vec![BTreeMap::new(); scopes.len()];
    let (sender, mut changes) = tokio::sync::mpsc::unbounded_channel();
    // Every watch and the merge of their states run in this task, so aborting it stops all.
    let api = &api;
    let watches = futures::future::join_all(scopes.into_iter().enumerate().map(|(i, scope)| {
        let sender = sender.clone();
        async move {
            loop {
                let emit = |state: &BTreeMap<String, LabelSet>| {
                    let _ = sender.send((i, state.clone()));
                };
                if let Err(e) = list_and_watch(api, &scope, emit).await {
                    tracing::warn!(%scope, error = %format!("{e:#}"), "kubernetes pod watch failed; listing again");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }));
    let merge = async {
        let mut last = None;
        while let Some((i, state)) = changes.recv().await {
            pods[i] = state;
            let sets: Vec<LabelSet> = pods
                .iter()
                .flat_map(|scope| scope.values())
                .cloned()
                .collect();
            if last.as_ref() != Some(&sets) {
                update(sets.clone());
                last = Some(sets);
            }
        }
    };
    tokio::join!(watches, merge);
}

/// One list, then one watch from its version until the stream ends or fails; `emit` gets the
/// label sets of the scrapeable pods (by namespace/name) after the list and after each event
/// that changes them. Each pod's labels are made once, when it is listed or changes.
async fn list_and_watch(
    api: &ApiServer,
    scope: &str,
    emit: impl Fn(&BTreeMap<String, LabelSet>),
) -> anyhow::Result<()> {
    let response = api.get(scope).send().await.context("listing pods")?;
    let status = response.status();
    let body = response.bytes().await.context("reading the pod list")?;
    let list: Value = serde_json::from_slice(&body).context("the pod list is not JSON")?;
    if !status.is_success() {
        bail!("listing pods: HTTP {status}: {}", list["message"]);
    }
    let mut pods: BTreeMap<String, LabelSet> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pod| Some((pod_key(pod), pod_labels(pod)?)))
        .collect();
    let mut version = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    emit(&pods);
    // The server ends the watch after WATCH_SECONDS; a connection that died silently ends on
    // the client's timeout a little later. Either way the loop lists again.
    let mut response = api
        .get(&format!(
            "{scope}?watch=true&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECONDS}&resourceVersion={version}"
        ))
        .timeout(Duration::from_secs(WATCH_SECONDS + 30))
        .send()
        .await
        .context("watching pods")?;
    if !response.status().is_success() {
        bail!("watching pods: HTTP {}", response.status());
    }
    let mut buffer = Vec::new();
    while let Some(chunk) = response.chunk().await.context("reading the watch")? {
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let event: Value =
                serde_json::from_slice(&line).context("a watch event is not JSON")?;
            let object = &event["object"];
            let changed = match event["type"].as_str().unwrap_or_default() {
                "ADDED" | "MODIFIED" => match pod_labels(object) {
                    Some(labels) => pods.insert(pod_key(object), labels.clone()) != Some(labels),
                    // Finished, or not given an IP yet: nothing to scrape.
                    None => pods.remove(&pod_key(object)).is_some(),
                },
                "DELETED" => pods.remove(&pod_key(object)).is_some(),
                "BOOKMARK" => false,
                "ERROR" => bail!(
                    "the watch ended with {} {} (version {version})",
                    object["code"],
                    object["message"]
                ),
                other => bail!("unknown watch event type {other:?}"),
            };
            if let Some(v) = object["metadata"]["resourceVersion"].as_str() {
                version = v.to_string();
            }
            if changed {
                emit(&pods);
            }
        }
    }
    Ok(())
}

fn pod_key(pod: &Value) -> String {
    format!(
        "{}/{}",
        pod["metadata"]["namespace"].as_str().unwrap_or_default(),
        pod["metadata"]["name"].as_str().unwrap_or_default()
    )
}

/// A label name as Prometheus writes Kubernetes names: every other character is `_`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The labels of a running pod with an IP: `__address__` (the IP), `__meta_kubernetes_*`
/// (namespace, name, IP, uid, node, phase, ready, labels, annotations, first container). A
/// `profiles.grafana.com/<type>.port_name` annotation is resolved to its container port as
/// `.port`.
fn pod_labels(pod: &Value) -> Option<LabelSet> {
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    let ip = pod["status"]["podIP"]
        .as_str()
        .filter(|ip| !ip.is_empty())?;
    if matches!(phase, "Succeeded" | "Failed") {
        return None;
    }
    let meta = &pod["metadata"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut labels = LabelSet::new();
    labels.insert("__address__".into(), ip.to_string());
    let prefix = "__meta_kubernetes_";
    labels.insert(format!("{prefix}namespace"), text(&meta["namespace"]));
    labels.insert(format!("{prefix}pod_name"), text(&meta["name"]));
    labels.insert(format!("{prefix}pod_ip"), ip.to_string());
    labels.insert(format!("{prefix}pod_uid"), text(&meta["uid"]));
    labels.insert(
        format!("{prefix}pod_node_name"),
        text(&pod["spec"]["nodeName"]),
    );
    labels.insert(format!("{prefix}pod_phase"), phase.to_string());
    let ready = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    labels.insert(format!("{prefix}pod_ready"), ready.to_string());
    for (kind, map) in [
        ("label", &meta["labels"]),
        ("annotation", &meta["annotations"]),
    ] {
        for (name, value) in map.as_object().into_iter().flatten() {
            labels.insert(
                format!("{prefix}pod_{kind}_{}", sanitize(name)),
                text(value),
            );
        }
    }
    let containers = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(first) = containers.first() {
        labels.insert(format!("{prefix}pod_container_name"), text(&first["name"]));
    }
    let ports: BTreeMap<String, String> = containers
        .iter()
        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| {
            Some((
                p["name"].as_str()?.to_string(),
                p["containerPort"].to_string(),
            ))
        })
        .collect();
    let annotation = |key: &str| format!("{prefix}pod_annotation_profiles_grafana_com_{key}");
    let named: Vec<(String, String)> = labels
        .iter()
        .filter_map(|(name, value)| {
            let kind = name
                .strip_prefix(&annotation(""))?
                .strip_suffix("_port_name")?;
            Some((
                annotation(&format!("{kind}_port")),
                ports.get(value)?.clone(),
            ))
        })
        .collect();
    for (name, port) in named {
        labels.entry(name).or_insert(port);
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubeconfig_current_context_gives_server_token_and_ca() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            "apiVersion: v1
current-context: prod
contexts:
  - {name: dev, context: {cluster: dev, user: dev}}
  - {name: prod, context: {cluster: prod, user: ops}}
clusters:
  - {name: dev, cluster: {server: 'https://dev:6443'}}
  - name: prod
    cluster: {server: 'https://prod:6443', certificate-authority-data: 'aGVsbG8gY2E=',
              insecure-skip-tls-verify: true}
users:
  - {name: ops, user: {token: secret-token}}
",
        )
        .unwrap();
        let c = kubeconfig(&path).unwrap();
        assert_eq!(c.base, "https://prod:6443");
        assert_eq!(c.token.as_deref(), Some("secret-token"));
        assert_eq!(c.ca.as_deref(), Some(&b"hello ca"[..]));
        assert!(c.insecure);

        std::fs::write(&path, "current-context: x\ncontexts: []\n").unwrap();
        let error = format!("{:#}", kubeconfig(&path).err().unwrap());
        assert!(error.contains("no context \"x\""), "{error}");
    }

    #[test]
    fn pods_have_prometheus_meta_labels() {
        let pod = serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1",
                         "labels": {"app.kubernetes.io/name": "web"},
                         "annotations": {"profiles.grafana.com/cpu.port_name": "http"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "web",
                     "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": "10.1.2.3"},
        });
        let labels = pod_labels(&pod).unwrap();
        assert_eq!(labels["__address__"], "10.1.2.3");
        assert_eq!(
            labels["__meta_kubernetes_pod_label_app_kubernetes_io_name"],
            "web"
        );
        assert_eq!(labels["__meta_kubernetes_pod_ready"], "false");
        assert_eq!(
            labels["__meta_kubernetes_pod_annotation_profiles_grafana_com_cpu_port"],
            "8080"
        );
        let mut pending = pod.clone();
        pending["status"]["podIP"] = "".into();
        assert!(pod_labels(&pending).is_none());
    }
}
