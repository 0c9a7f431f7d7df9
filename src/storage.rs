//! Where blocks live: the one place the binary builds the object store from `storage.*`
//! (filesystem, S3 or S3-compatible, GCS, Azure), through `object_store`'s own builders and
//! credential chains. The engine only ever sees an `Arc<dyn ObjectStore>`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use hearth_engine::store::{CachedStore, MeteredStore, StoreStats};
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, RetryConfig};
use serde::{Deserialize, Serialize};

/// Which object store holds the blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Backend {
    /// A local folder (`blocks_dir`): the embedded default.
    #[default]
    Filesystem,
    S3,
    Gcs,
    Azure,
}

impl std::str::FromStr for Backend {
    type Err = anyhow::Error;

    fn from_str(name: &str) -> anyhow::Result<Self> {
        match name {
            "filesystem" => Ok(Backend::Filesystem),
            "s3" => Ok(Backend::S3),
            "gcs" => Ok(Backend::Gcs),
            "azure" => Ok(Backend::Azure),
            other => {
                bail!("unknown storage backend {other:?}: expected filesystem, s3, gcs or azure")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct StorageConfig {
    pub(crate) backend: Backend,
    /// Local data: `wal/` and, with the filesystem backend, `blocks/`.
    pub(crate) data_dir: PathBuf,
    /// The filesystem backend's folder; `<data_dir>/blocks` when unset. In a cluster on one
    /// machine without object storage, every ingester and querier names the same folder.
    pub(crate) blocks_dir: Option<PathBuf>,
    /// A path inside the bucket under which every object is kept.
    pub(crate) prefix: Option<String>,
    /// A local folder keeping byte ranges of block files read from the bucket (emptied at
    /// start-up); none: every read goes to the bucket.
    pub(crate) cache_dir: Option<PathBuf>,
    /// Most bytes the cache folder holds; the least recently used ranges leave first.
    pub(crate) cache_max_bytes: u64,
    /// How long a request to S3, GCS or Azure is retried (with backoff) before it fails; a
    /// failed flush keeps its head and WAL and is tried again at the next flush.
    #[serde(with = "humantime_serde")]
    pub(crate) retry_timeout: std::time::Duration,
    pub(crate) s3: S3Config,
    pub(crate) gcs: GcsConfig,
    pub(crate) azure: AzureConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: Backend::Filesystem,
            data_dir: PathBuf::from("./data"),
            blocks_dir: None,
            prefix: None,
            cache_dir: None,
            cache_max_bytes: 8 << 30,
            retry_timeout: std::time::Duration::from_secs(180),
            s3: S3Config::default(),
            gcs: GcsConfig::default(),
            azure: AzureConfig::default(),
        }
    }
}

/// S3 or an S3-compatible server, keyed as Pyroscope's `storage.s3`. Unset credentials come
/// from the standard chain (`AWS_*` variables, web identity, instance metadata).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct S3Config {
    pub(crate) bucket_name: String,
    /// `host[:port]`, as Pyroscope takes it (a URL with a scheme is taken as it is).
    pub(crate) endpoint: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) access_key_id: Option<String>,
    pub(crate) secret_access_key: Option<String>,
    /// Plain HTTP to the endpoint (a local S3 server).
    pub(crate) insecure: bool,
    /// Path-style requests (`endpoint/bucket/key`), which most S3-compatible servers need.
    pub(crate) force_path_style: bool,
}

/// Google Cloud Storage. Without a service account, the standard chain (workload identity,
/// `GOOGLE_*` variables) applies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct GcsConfig {
    pub(crate) bucket_name: String,
    /// The service account key, as JSON text or as the path of a JSON file.
    pub(crate) service_account: Option<String>,
}

/// Azure Blob Storage. Without an account key, the standard chain (`AZURE_*` variables,
/// workload identity) applies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AzureConfig {
    pub(crate) container_name: String,
    pub(crate) account_name: Option<String>,
    pub(crate) account_key: Option<String>,
}

impl StorageConfig {
    pub(crate) fn blocks_dir(&self) -> PathBuf {
        self.blocks_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blocks"))
    }

    /// What the blocks are stored in, for logs and errors.
    pub(crate) fn describe(&self) -> String {
        match self.backend {
            Backend::Filesystem => format!("folder {}", self.blocks_dir().display()),
            Backend::S3 => format!("s3 bucket {:?}", self.s3.bucket_name),
            Backend::Gcs => format!("gcs bucket {:?}", self.gcs.bucket_name),
            Backend::Azure => format!("azure container {:?}", self.azure.container_name),
        }
    }

    /// Checks what serde cannot: the chosen backend names its bucket.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        let (key, name) = match self.backend {
            Backend::Filesystem => return Ok(()),
            Backend::S3 => ("storage.s3.bucket_name", &self.s3.bucket_name),
            Backend::Gcs => ("storage.gcs.bucket_name", &self.gcs.bucket_name),
            Backend::Azure => ("storage.azure.container_name", &self.azure.container_name),
        };
        if name.trim().is_empty() {
            bail!("{key} is required with storage.backend {:?}", self.backend);
        }
        Ok(())
    }

    /// Builds the store (without contacting it).
    pub(crate) fn build(&self) -> anyhow::Result<Arc<dyn ObjectStore>> {
        let store: Arc<dyn ObjectStore> = match self.backend {
            Backend::Filesystem => {
                let dir = self.blocks_dir();
                std::fs::create_dir_all(&dir).with_context(|| {
                    format!("cannot create the blocks directory {}", dir.display())
                })?;
                Arc::new(
                    LocalFileSystem::new_with_prefix(&dir).with_context(|| {
                        format!("cannot open block storage at {}", dir.display())
                    })?,
                )
            }
            Backend::S3 => Arc::new(self.s3_builder().build().with_context(|| self.describe())?),
            Backend::Gcs => {
                let mut builder = GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&self.gcs.bucket_name)
                    .with_retry(self.retry());
                if let Some(account) = &self.gcs.service_account {
                    builder = match account.trim_start().starts_with('{') {
                        true => builder.with_service_account_key(account),
                        false => builder.with_service_account_path(account),
                    };
                }
                Arc::new(builder.build().with_context(|| self.describe())?)
            }
            Backend::Azure => {
                let azure = &self.azure;
                let mut builder = MicrosoftAzureBuilder::from_env()
                    .with_container_name(&azure.container_name)
                    .with_retry(self.retry());
                if let Some(account) = &azure.account_name {
                    builder = builder.with_account(account);
                }
                if let Some(key) = &azure.account_key {
                    builder = builder.with_access_key(key);
                }
                Arc::new(builder.build().with_context(|| self.describe())?)
            }
        };
        Ok(match self.prefix.as_deref().map(|p| p.trim_matches('/')) {
            Some(prefix) if !prefix.is_empty() && self.backend != Backend::Filesystem => {
                Arc::new(PrefixStore::new(store, prefix))
            }
            _ => store,
        })
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig {
            retry_timeout: self.retry_timeout,
            ..RetryConfig::default()
        }
    }

    fn s3_builder(&self) -> AmazonS3Builder {
        let s3 = &self.s3;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&s3.bucket_name)
            .with_allow_http(s3.insecure)
            .with_virtual_hosted_style_request(!s3.force_path_style)
            .with_retry(self.retry());
        if let Some(endpoint) = &s3.endpoint {
            let url = match endpoint.contains("://") {
                true => endpoint.clone(),
                false if s3.insecure => format!("http://{endpoint}"),
                false => format!("https://{endpoint}"),
            };
            builder = builder.with_endpoint(url);
        }
        if let Some(region) = &s3.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &s3.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &s3.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        builder
    }
}

/// `storage.*` on the command line and in `HEARTH_STORAGE_*` variables, named as Pyroscope's
/// flags are; each overrides the config file.
#[derive(Debug, Default, Clone, clap::Args)]
pub(crate) struct StorageFlags {
    /// Where blocks live: filesystem, s3, gcs or azure.
    #[arg(
        long = "storage.backend",
        env = "HEARTH_STORAGE_BACKEND",
        value_name = "BACKEND"
    )]
    backend: Option<Backend>,
    /// A path inside the bucket under which every object is kept.
    #[arg(
        long = "storage.prefix",
        env = "HEARTH_STORAGE_PREFIX",
        value_name = "PATH"
    )]
    prefix: Option<String>,
    /// A local folder caching byte ranges of block files.
    #[arg(
        long = "storage.cache-dir",
        env = "HEARTH_STORAGE_CACHE_DIR",
        value_name = "DIR"
    )]
    cache_dir: Option<PathBuf>,
    #[arg(
        long = "storage.s3.bucket-name",
        env = "HEARTH_STORAGE_S3_BUCKET_NAME",
        value_name = "NAME"
    )]
    s3_bucket_name: Option<String>,
    /// `host[:port]` of the S3 API.
    #[arg(
        long = "storage.s3.endpoint",
        env = "HEARTH_STORAGE_S3_ENDPOINT",
        value_name = "HOST:PORT"
    )]
    s3_endpoint: Option<String>,
    #[arg(
        long = "storage.s3.region",
        env = "HEARTH_STORAGE_S3_REGION",
        value_name = "REGION"
    )]
    s3_region: Option<String>,
    #[arg(
        long = "storage.s3.access-key-id",
        env = "HEARTH_STORAGE_S3_ACCESS_KEY_ID",
        value_name = "KEY"
    )]
    s3_access_key_id: Option<String>,
    #[arg(
        long = "storage.s3.secret-access-key",
        env = "HEARTH_STORAGE_S3_SECRET_ACCESS_KEY",
        value_name = "SECRET",
        hide_env_values = true
    )]
    s3_secret_access_key: Option<String>,
    /// Plain HTTP to the S3 endpoint.
    #[arg(
        long = "storage.s3.insecure",
        env = "HEARTH_STORAGE_S3_INSECURE",
        value_name = "BOOL"
    )]
    s3_insecure: Option<bool>,
    /// Path-style S3 requests (most S3-compatible servers need them).
    #[arg(
        long = "storage.s3.force-path-style",
        env = "HEARTH_STORAGE_S3_FORCE_PATH_STYLE",
        value_name = "BOOL"
    )]
    s3_force_path_style: Option<bool>,
    #[arg(
        long = "storage.gcs.bucket-name",
        env = "HEARTH_STORAGE_GCS_BUCKET_NAME",
        value_name = "NAME"
    )]
    gcs_bucket_name: Option<String>,
    /// The service account key (JSON text or a file path).
    #[arg(
        long = "storage.gcs.service-account",
        env = "HEARTH_STORAGE_GCS_SERVICE_ACCOUNT",
        value_name = "KEY",
        hide_env_values = true
    )]
    gcs_service_account: Option<String>,
    #[arg(
        long = "storage.azure.container-name",
        env = "HEARTH_STORAGE_AZURE_CONTAINER_NAME",
        value_name = "NAME"
    )]
    azure_container_name: Option<String>,
    #[arg(
        long = "storage.azure.account-name",
        env = "HEARTH_STORAGE_AZURE_ACCOUNT_NAME",
        value_name = "NAME"
    )]
    azure_account_name: Option<String>,
    #[arg(
        long = "storage.azure.account-key",
        env = "HEARTH_STORAGE_AZURE_ACCOUNT_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    azure_account_key: Option<String>,
}

impl StorageFlags {
    /// Applies the flags that were given to `config`.
    pub(crate) fn apply(self, config: &mut StorageConfig) {
        fn set<T>(target: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *target = value;
            }
        }
        set(&mut config.backend, self.backend);
        set(&mut config.prefix, self.prefix.map(Some));
        set(&mut config.cache_dir, self.cache_dir.map(Some));
        set(&mut config.s3.bucket_name, self.s3_bucket_name);
        set(&mut config.s3.endpoint, self.s3_endpoint.map(Some));
        set(&mut config.s3.region, self.s3_region.map(Some));
        set(
            &mut config.s3.access_key_id,
            self.s3_access_key_id.map(Some),
        );
        set(
            &mut config.s3.secret_access_key,
            self.s3_secret_access_key.map(Some),
        );
        set(&mut config.s3.insecure, self.s3_insecure);
        set(&mut config.s3.force_path_style, self.s3_force_path_style);
        set(&mut config.gcs.bucket_name, self.gcs_bucket_name);
        set(
            &mut config.gcs.service_account,
            self.gcs_service_account.map(Some),
        );
        set(&mut config.azure.container_name, self.azure_container_name);
        set(
            &mut config.azure.account_name,
            self.azure_account_name.map(Some),
        );
        set(
            &mut config.azure.account_key,
            self.azure_account_key.map(Some),
        );
    }
}

/// Builds the store and checks, with one listing, that the bucket exists and the credentials
/// are accepted: a start-up error then names the bucket and the cause.
pub(crate) async fn open(config: &StorageConfig) -> anyhow::Result<Bucket> {
    config.validate()?;
    let bucket = config.build()?;
    bucket
        .list_with_delimiter(None)
        .await
        .with_context(|| format!("cannot read the {}", config.describe()))?;
    let stats = Arc::new(StoreStats::default());
    let mut store: Arc<dyn ObjectStore> = Arc::new(MeteredStore::new(bucket, Arc::clone(&stats)));
    if let Some(dir) = &config.cache_dir {
        let cached = CachedStore::new(
            store,
            dir.clone(),
            config.cache_max_bytes,
            Arc::clone(&stats),
        )
        .with_context(|| format!("cannot use the cache folder {}", dir.display()))?;
        store = Arc::new(cached);
    }
    Ok(Bucket { store, stats })
}

/// The store every component reads and writes blocks through, and what reached the bucket.
#[derive(Debug)]
pub(crate) struct Bucket {
    pub store: Arc<dyn ObjectStore>,
    pub stats: Arc<StoreStats>,
}

impl Bucket {
    /// Another client of the same bucket, counted in the same statistics, for a component with
    /// a runtime of its own (a client's pooled connections are driven by the runtime that
    /// opened them). Without the read cache: the compactor reads each byte once, and its reads
    /// would only evict the ranges queries come back to.
    pub(crate) fn separate_client(
        &self,
        config: &StorageConfig,
    ) -> anyhow::Result<Arc<dyn ObjectStore>> {
        Ok(Arc::new(MeteredStore::new(
            config.build()?,
            Arc::clone(&self.stats),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_is_required_and_backends_are_named() {
        let config = StorageConfig {
            backend: Backend::S3,
            ..Default::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("storage.s3.bucket_name"), "{error}");
        let error = "minio".parse::<Backend>().unwrap_err().to_string();
        assert!(error.contains("\"minio\""), "{error}");
        assert_eq!("gcs".parse::<Backend>().unwrap(), Backend::Gcs);
    }
}
