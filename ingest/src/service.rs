//! The ingest service: what `/ingest` and `push.v1.PusherService/Push` do once the transport
//! has read the request. Decoding and normalising run on the blocking pool; a request is stored
//! whole or not at all (every profile is checked before the first is stored).

use std::sync::Arc;

use bytes::Bytes;
use hearth_engine::model::{Labels, TenantId, label};
use hearth_engine::{ErrorKind, ProfileBatch};
use hearth_proto::otlp_collector::ExportProfilesServiceRequest;
use hearth_proto::push::v1::PushRequest;
use prost::Message;

use crate::error::{Error, Result, reason};
use crate::formats::{self, legacy_type};
use crate::jfr;
use crate::labels::validate_labels;
use crate::legacy::{Format, IngestParams, display_names};
use crate::metrics::{EndpointLabel, IngestMetrics, ReasonLabel};
use crate::normalize::{NormalizeArgs, built, metric_name, normalize, profile_error};
use crate::otlp;
use crate::rate::{RateLimiter, RateShare};
use crate::sink::{ProfileSink, PushOutcome};
use hearth_engine::limits::{Limits, LimitsSource};
use hearth_engine::time::now_nanos;

pub struct IngestService {
    sink: Arc<dyn ProfileSink>,
    limits: Arc<dyn LimitsSource>,
    rate: RateLimiter,
    /// How many processes share each tenant's ingestion rate (the cluster's distributors).
    rate_share: Option<Arc<dyn RateShare>>,
    metrics: Arc<IngestMetrics>,
}

impl std::fmt::Debug for IngestService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestService")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl IngestService {
    /// A service that stores into `sink` (the engine, or a distributor), under each tenant's
    /// `limits`.
    pub fn new(sink: Arc<dyn ProfileSink>, limits: Arc<dyn LimitsSource>) -> Self {
        IngestService {
            rate: RateLimiter::default(),
            rate_share: None,
            sink,
            limits,
            metrics: Arc::new(IngestMetrics::default()),
        }
    }

    /// Each tenant's ingestion rate is the whole cluster's: this process admits its share,
    /// the rate divided by `share`'s count (as Pyroscope's and Mimir's global strategy).
    pub fn with_rate_share(mut self, share: Arc<dyn RateShare>) -> Self {
        self.rate_share = Some(share);
        self
    }

    /// The limits `tenant` is under now.
    pub fn limits(&self, tenant: &TenantId) -> Arc<Limits> {
        self.limits.limits(tenant)
    }

    /// Takes `bytes` of the tenant's rate, or refuses with `resource_exhausted`.
    fn admit(&self, tenant: &TenantId, limits: &Limits, bytes: usize) -> Result<()> {
        let sharers = self.rate_share.as_ref().map_or(1, |s| s.sharers().max(1));
        self.rate.admit(
            tenant,
            bytes,
            limits.ingestion_rate_mb / sharers as f64,
            limits.ingestion_burst_size_mb,
        )
    }

    pub fn metrics(&self) -> &Arc<IngestMetrics> {
        &self.metrics
    }

    /// Counts a refused request by its reason.
    pub fn record_error(&self, error: &Error) {
        self.metrics
            .errors
            .get_or_create(&ReasonLabel {
                reason: error.reason(),
            })
            .inc();
    }

    /// `push.v1.PusherService/Push`. `body_bytes` is the request's size on the wire.
    pub async fn push(
        &self,
        tenant: &TenantId,
        request: PushRequest,
        body_bytes: usize,
    ) -> Result<PushOutcome> {
        let result = self.push_inner(tenant, request, body_bytes).await;
        self.finish("push", body_bytes, &result);
        result
    }

    async fn push_inner(
        &self,
        tenant: &TenantId,
        request: PushRequest,
        body_bytes: usize,
    ) -> Result<PushOutcome> {
        let limits = self.limits(tenant);
        self.admit(tenant, &limits, body_bytes)?;
        let batches = on_blocking_pool(move || prepare_push(request, &limits)).await?;
        self.store(tenant, batches).await
    }

    /// An OTLP profiles export (gRPC or HTTP). `body_bytes` is the request's size on the wire.
    pub async fn export_otlp(
        &self,
        tenant: &TenantId,
        request: ExportProfilesServiceRequest,
        body_bytes: usize,
    ) -> Result<PushOutcome> {
        let result = self.export_otlp_inner(tenant, request, body_bytes).await;
        self.finish("otlp", body_bytes, &result);
        result
    }

    async fn export_otlp_inner(
        &self,
        tenant: &TenantId,
        request: ExportProfilesServiceRequest,
        body_bytes: usize,
    ) -> Result<PushOutcome> {
        let limits = self.limits(tenant);
        self.admit(tenant, &limits, body_bytes)?;
        let batches =
            on_blocking_pool(move || otlp::prepare_otlp(request, &limits, now_nanos())).await?;
        if batches.is_empty() {
            return Ok(PushOutcome::default());
        }
        self.store(tenant, batches).await
    }

    /// `POST /ingest`, with the request's query pairs, `Content-Type` and body (transport
    /// encodings already undone).
    pub async fn ingest(
        &self,
        tenant: &TenantId,
        query: &[(String, String)],
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PushOutcome> {
        let body_bytes = body.len();
        let result = self.ingest_inner(tenant, query, content_type, body).await;
        self.finish("ingest", body_bytes, &result);
        result
    }

    async fn ingest_inner(
        &self,
        tenant: &TenantId,
        query: &[(String, String)],
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PushOutcome> {
        let limits = self.limits(tenant);
        self.admit(tenant, &limits, body.len())?;
        let params = IngestParams::parse(query)?;
        let format = Format::select(params.format.as_deref(), content_type);
        let (profile, sample_type_config) = match format {
            Format::Pprof => (body, None),
            Format::PprofMultipart => pprof_form(content_type.unwrap_or_default(), body).await?,
            Format::Jfr => {
                let (jfr, labels) = jfr_form(content_type.unwrap_or_default(), body).await?;
                let batches = on_blocking_pool(move || {
                    prepare_jfr(&params, &jfr, labels.as_deref(), &limits)
                })
                .await?;
                return self.store(tenant, batches).await;
            }
            stacks => {
                let batches =
                    on_blocking_pool(move || prepare_legacy(&params, stacks, &body, &limits))
                        .await?;
                return self.store(tenant, batches).await;
            }
        };
        let batch = on_blocking_pool(move || {
            prepare_ingest(&params, profile, sample_type_config.as_deref(), &limits)
        })
        .await?;
        self.store(tenant, vec![batch]).await
    }

    async fn store(&self, tenant: &TenantId, batches: Vec<ProfileBatch>) -> Result<PushOutcome> {
        self.sink.store(tenant, batches).await
    }

    fn finish(&self, endpoint: &'static str, body_bytes: usize, result: &Result<PushOutcome>) {
        let label = EndpointLabel { endpoint };
        self.metrics
            .received_bytes
            .get_or_create(&label)
            .inc_by(body_bytes as u64);
        match result {
            Ok(outcome) => {
                self.metrics.pushes.get_or_create(&label).inc();
                self.metrics.profiles.inc_by(outcome.profiles as u64);
                self.metrics.samples.inc_by(outcome.samples as u64);
            }
            Err(e) => self.record_error(e),
        }
    }
}

/// Runs `prepare` (decoding and normalising: CPU work) on the blocking pool.
async fn on_blocking_pool<T: Send + 'static>(
    prepare: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(prepare)
        .await
        .map_err(|e| Error::rejected(ErrorKind::Internal, reason::INTERNAL, e.to_string()))?
}

/// Decodes and normalises every profile of a push; the first error refuses the whole request.
fn prepare_push(request: PushRequest, limits: &Limits) -> Result<Vec<ProfileBatch>> {
    if request.series.iter().all(|s| s.samples.is_empty()) {
        return Err(Error::invalid(
            reason::MALFORMED_PROFILE,
            "no profiles received",
        ));
    }
    let now = now_nanos();
    let mut batches = Vec::new();
    for series in request.series {
        let mut pairs: Vec<(String, String)> = series
            .labels
            .into_iter()
            .map(|l| (l.name, l.value))
            .collect();
        if !pairs.iter().any(|(n, _)| n == label::SERVICE_NAME) {
            pairs.push((label::SERVICE_NAME.into(), label::UNKNOWN_SERVICE.into()));
        }
        let labels = validate_labels(pairs, limits)?;
        for sample in series.samples {
            let (pprof, index) =
                ProfileBatch::decode_pprof(&sample.raw_profile, limits.max_profile_bytes)
                    .map_err(|e| profile_error(e, &labels, ErrorKind::InvalidArgument))?;
            batches.push(normalize(NormalizeArgs {
                labels: labels.clone(),
                raw: sample.raw_profile,
                pprof,
                index,
                profile_id: sample.id,
                default_time_nanos: now,
                limits,
            })?);
        }
    }
    Ok(batches)
}

/// Builds the series labels of an `/ingest` pprof and normalises it.
fn prepare_ingest(
    params: &IngestParams,
    profile: Bytes,
    sample_type_config: Option<&[u8]>,
    limits: &Limits,
) -> Result<ProfileBatch> {
    let display = display_names(sample_type_config)?;
    let mut base = Labels::default();
    let (pprof, index) = ProfileBatch::decode_pprof(&profile, limits.max_profile_bytes)
        .map_err(|e| profile_error(e, &base, ErrorKind::PayloadTooLarge))?;
    let sample_types: Vec<String> = pprof
        .sample_type
        .iter()
        .map(|t| hearth_engine::pprof::string(&pprof, t.r#type).to_string())
        .collect();
    let name = metric_name(&sample_types, &display);
    base = validate_labels(ingest_labels(params, &[], &name, None), limits)?;
    normalize(NormalizeArgs {
        labels: base,
        raw: profile,
        pprof,
        index,
        profile_id: String::new(),
        default_time_nanos: params.from_nanos,
        limits,
    })
}

/// The series labels Pyroscope gives an `/ingest` upload: the name's labels (private `__`
/// ones dropped but `__session_id__`), `extra`, `__name__`, `__delta__="false"`, the spy, and
/// `service_name`: the application name, or for the stack formats the name without its type
/// suffix (`service`), unless a label gives one; the stack formats then keep `service` as
/// `app_name`.
fn ingest_labels(
    params: &IngestParams,
    extra: &[(String, String)],
    name: &str,
    service: Option<&str>,
) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = params
        .labels
        .iter()
        .filter(|(name, _)| !name.starts_with("__") || name == label::SESSION_ID)
        .chain(extra)
        .cloned()
        .collect();
    pairs.push((label::NAME.into(), name.into()));
    pairs.push((label::DELTA.into(), "false".into()));
    pairs.push((label::SPY.into(), params.spy_name.clone()));
    let named = pairs.iter().any(|(n, _)| n == label::SERVICE_NAME);
    match (named, service) {
        (false, _) => {
            let service = service.unwrap_or(&params.app_name);
            pairs.push((label::SERVICE_NAME.into(), service.into()));
        }
        (true, Some(service)) if !pairs.iter().any(|(n, _)| n == "app_name") => {
            pairs.push(("app_name".into(), service.into()));
        }
        (true, _) => {}
    }
    pairs
}

/// Reads a stack-format body (folded, lines, trie, tree, speedscope) into pprofs named as
/// Pyroscope names these uploads, with the labels it gives them, and normalises each; nothing
/// is returned unless every profile of the body decodes and passes validation.
fn prepare_legacy(
    params: &IngestParams,
    format: Format,
    body: &[u8],
    limits: &Limits,
) -> Result<Vec<ProfileBatch>> {
    let malformed = |message: String| {
        Error::rejected(
            ErrorKind::MalformedProfile,
            reason::MALFORMED_PROFILE,
            format!("the {} body is invalid: {message}", format.name()),
        )
    };
    // `__name__` in the name's braces stands for the application name.
    let app = params
        .labels
        .iter()
        .find(|(name, _)| name == label::NAME)
        .map_or(params.app_name.as_str(), |(_, value)| value.as_str());
    // What the decoded stacks may take: that of the largest profile many times over (folded
    // text repeats every frame of every stack).
    let budget = match limits.max_profile_bytes {
        0 => usize::MAX,
        bytes => bytes.saturating_mul(16),
    };
    let decoded =
        formats::decode(format, body, app, params.sample_rate, budget).map_err(malformed)?;
    let mut batches = Vec::with_capacity(decoded.len());
    for piece in decoded {
        let app = piece.app_name.as_deref().unwrap_or(app);
        let (service, t) =
            legacy_type(app).map_err(|e| Error::invalid(reason::INVALID_LABELS, e))?;
        let rate = piece.sample_rate.unwrap_or(params.sample_rate);
        let pprof = formats::to_pprof(&piece, t, rate, params.from_nanos)
            .map_err(|e| Error::invalid(reason::MALFORMED_PROFILE, e))?;
        let pairs = ingest_labels(params, &piece.labels, t.name, Some(service));
        batches.push(built(pprof, pairs, params.from_nanos, limits)?);
    }
    Ok(batches)
}

/// Reads a JFR recording (and the Java agent's dynamic labels) into pprofs named as Pyroscope
/// names them, with the upload's labels, and normalises each.
fn prepare_jfr(
    params: &IngestParams,
    jfr: &[u8],
    labels: Option<&[u8]>,
    limits: &Limits,
) -> Result<Vec<ProfileBatch>> {
    let malformed = |message: String| {
        Error::rejected(
            ErrorKind::MalformedProfile,
            reason::MALFORMED_PROFILE,
            format!("the jfr body is invalid: {message}"),
        )
    };
    // Decoded values take several times the bytes they come from: a recording is read up to
    // 16 profiles' worth, as the stack formats are.
    let budget = match limits.max_profile_bytes {
        0 => limits.max_decompressed_body_bytes,
        bytes => bytes.saturating_mul(16),
    };
    let inflate = |bytes: &[u8], what: &str| -> Result<Vec<u8>> {
        let inflated =
            match bytes.starts_with(&[0x1f, 0x8b]) {
                true => hearth_engine::compression::gunzip_bounded(bytes, budget, what).map_err(
                    |e| Error::rejected(e.kind(), reason::PROFILE_SIZE_LIMIT, e.to_string()),
                )?,
                false => bytes.to_vec(),
            };
        if inflated.len() > budget {
            return Err(Error::rejected(
                ErrorKind::PayloadTooLarge,
                reason::PROFILE_SIZE_LIMIT,
                format!(
                    "{what} is {} bytes; at most {budget} are read (16 x max_profile_bytes)",
                    inflated.len()
                ),
            ));
        }
        Ok(inflated)
    };
    let recording = inflate(jfr, "the jfr field")?;
    let snapshot =
        match labels {
            Some(bytes) if !bytes.is_empty() => {
                let bytes = inflate(bytes, "the labels field")?;
                Some(jfr::LabelsSnapshot::decode(&bytes[..]).map_err(|e| {
                    malformed(format!("the labels field is not a LabelsSnapshot: {e}"))
                })?)
            }
            _ => None,
        };
    let jfr_params = jfr::JfrParams {
        sample_rate: params.sample_rate,
        from_nanos: params.from_nanos,
        until_nanos: params.until_nanos,
    };
    let profiles = jfr::decode(&recording, snapshot.as_ref(), jfr_params).map_err(malformed)?;
    if profiles.is_empty() {
        return Err(malformed(
            "it holds no events Hearth reads (execution, allocation, lock or park samples)".into(),
        ));
    }
    profiles
        .into_iter()
        .map(|profile| {
            let pairs = ingest_labels(params, &[], profile.name, None);
            built(profile.pprof, pairs, params.from_nanos, limits)
        })
        .collect()
}

/// Reads the pprof form of a multipart `/ingest` body: `profile`, optional `sample_type_config`.
async fn pprof_form(content_type: &str, body: Bytes) -> Result<(Bytes, Option<Bytes>)> {
    let mut fields = form_fields(content_type, body, "pprof").await?;
    let profile = fields
        .remove("profile")
        .ok_or_else(|| form_error("pprof", "the form has no 'profile' field".into()))?;
    Ok((profile, fields.remove("sample_type_config")))
}

/// A JFR upload: the recording and the agent's labels, from a multipart form (`jfr`,
/// `labels`) or the whole body.
async fn jfr_form(content_type: &str, body: Bytes) -> Result<(Bytes, Option<Bytes>)> {
    if !content_type.starts_with("multipart/") {
        return Ok((body, None));
    }
    let mut fields = form_fields(content_type, body, "jfr").await?;
    let jfr = fields
        .remove("jfr")
        .ok_or_else(|| form_error("jfr", "the form has no 'jfr' field".into()))?;
    Ok((jfr, fields.remove("labels")))
}

fn form_error(format: &str, message: String) -> Error {
    Error::rejected(
        ErrorKind::MalformedProfile,
        reason::MALFORMED_PROFILE,
        format!("failed to parse {format} /ingest multipart form: {message}"),
    )
}

/// The fields of a multipart `/ingest` body, by name.
async fn form_fields(
    content_type: &str,
    body: Bytes,
    format: &str,
) -> Result<std::collections::HashMap<String, Bytes>> {
    let boundary =
        multer::parse_boundary(content_type).map_err(|e| form_error(format, e.to_string()))?;
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut fields = std::collections::HashMap::new();
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| form_error(format, e.to_string()))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| form_error(format, e.to_string()))?;
        if name == "prev_profile" {
            return Err(Error::rejected(
                ErrorKind::MalformedProfile,
                reason::UNSUPPORTED_CLIENT,
                "failed to parse pprof /ingest multipart form: unsupported client version. \
                 Please update github.com/grafana/pyroscope-go to the latest version",
            ));
        }
        fields.insert(name, bytes);
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use async_trait::async_trait;
    use hearth_engine::limits::FixedLimits;

    use super::*;

    struct Discard;

    #[async_trait]
    impl ProfileSink for Discard {
        async fn store(&self, _: &TenantId, _: Vec<ProfileBatch>) -> Result<PushOutcome> {
            Ok(PushOutcome::default())
        }
    }

    #[derive(Debug)]
    struct Sharers(usize);

    impl RateShare for Sharers {
        fn sharers(&self) -> usize {
            self.0
        }
    }

    /// Once its burst is spent, each of `n` distributors refills at the tenant's rate over `n`.
    #[test]
    fn each_distributor_admits_its_share_of_the_rate() {
        let limits = Limits {
            ingestion_rate_mb: 1.0,
            ingestion_burst_size_mb: 1.0,
            ..Limits::default()
        };
        let tenant = TenantId::new("t").unwrap();
        let mib = 1 << 20;
        let refilled = |sharers: usize| {
            let service =
                IngestService::new(Arc::new(Discard), FixedLimits::shared(limits.clone()))
                    .with_rate_share(Arc::new(Sharers(sharers)));
            let limits = service.limits(&tenant);
            service.admit(&tenant, &limits, mib).unwrap();
            // 0.5 s refills 0.5 MiB at the whole rate, 0.125 MiB at a quarter of it.
            std::thread::sleep(Duration::from_millis(500));
            service.admit(&tenant, &limits, mib / 4).is_ok()
        };
        assert!(refilled(1), "alone, a distributor has the whole rate");
        assert!(!refilled(4), "one of four has a quarter of it");
    }
}
