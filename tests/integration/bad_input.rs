//! Bad input gets Pyroscope's status and a message naming the problem; the server stays up and
//! what was stored before is intact.

use prost::Message;

use super::support::{Hearth, fixture, gzip};

const CONFIG: &str = "
multitenancy_enabled: true
limits:
  max_body_bytes: 65536
  max_decompressed_body_bytes: 262144
  max_profile_bytes: 131072
  max_label_names_per_series: 8
  max_label_name_length: 64
  max_label_value_length: 64
  ingestion_rate_mb: 0.25
  ingestion_burst_size_mb: 0.25
";

const T: Option<&str> = Some("t1");

fn labels<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut labels = vec![("__name__", "process_cpu"), ("service_name", "checked")];
    labels.extend_from_slice(extra);
    labels
}

/// Status and the error body's `message` (Connect or legacy JSON error).
fn outcome(response: reqwest::blocking::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let code = json["code"].as_str().unwrap_or_default().to_string();
    let message = json["message"].as_str().map(str::to_string).unwrap_or(text);
    (status, code, message)
}

fn assert_refused(
    what: &str,
    response: reqwest::blocking::Response,
    status: u16,
    code: &str,
    message: &str,
) {
    let (got_status, got_code, got_message) = outcome(response);
    assert_eq!(got_status, status, "{what}: {got_message}");
    assert_eq!(got_code, code, "{what}: {got_message}");
    assert!(
        got_message.contains(message),
        "{what}: {got_message:?} should say {message:?}"
    );
}

fn ingest(
    hearth: &Hearth,
    tenant: Option<&str>,
    query: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::blocking::Response {
    let mut request = hearth
        .client
        .post(hearth.url(&format!("/ingest?{query}")))
        .header("content-type", content_type)
        .body(body);
    if let Some(tenant) = tenant {
        request = request.header("X-Scope-OrgID", tenant);
    }
    request.send().unwrap()
}

/// A PushRequest body with raw label bytes, to carry invalid UTF-8.
fn push_with_raw_label_value(value: &[u8], pprof: &[u8]) -> Vec<u8> {
    let valid = hearth_engine::testing::push_request(
        &[("__name__", "process_cpu"), ("service_name", "XXXX")],
        pprof.to_vec(),
        String::new(),
    )
    .encode_to_vec();
    // Swap the 4 placeholder bytes for `value` (same length keeps the framing valid).
    assert_eq!(value.len(), 4);
    let at = valid.windows(4).position(|w| w == b"XXXX").unwrap();
    let mut body = valid;
    body[at..at + 4].copy_from_slice(value);
    gzip(&body)
}

#[test]
fn bad_input_is_refused_with_pyroscope_statuses_and_named_problems() {
    let hearth = Hearth::start_with_config(CONFIG);
    let pprof = fixture("captures/extracted/py-001.s0.r0.pb");
    let gz_pprof = gzip(&pprof);

    // Data stored before the abuse.
    assert_eq!(hearth.push(T, &labels(&[]), &pprof).status().as_u16(), 200);
    let stored = hearth.series(T, &["{}"]);
    assert!(!stored.is_empty());

    // Tenancy.
    assert_refused(
        "no tenant (push)",
        hearth.push(None, &labels(&[]), &pprof),
        401,
        "unauthenticated",
        "X-Scope-OrgID",
    );
    assert_refused(
        "no tenant (ingest)",
        ingest(
            &hearth,
            None,
            "name=app&format=pprof",
            "application/octet-stream",
            gz_pprof.clone(),
        ),
        401,
        "unauthenticated",
        "X-Scope-OrgID",
    );
    assert_refused(
        "bad tenant",
        hearth.push(Some("a/b"), &labels(&[]), &pprof),
        400,
        "invalid_argument",
        "unsupported character '/'",
    );

    // Sizes: the body before decompression, after it, and the profile.
    let big = vec![b'x'; 70_000];
    assert_refused(
        "ingest body over the limit",
        ingest(
            &hearth,
            T,
            "name=app&format=pprof",
            "application/octet-stream",
            big.clone(),
        ),
        413,
        "invalid_argument",
        "request body too large",
    );
    assert_refused(
        "push body over the limit",
        hearth.push_body(T, big),
        429,
        "resource_exhausted",
        "request body too large",
    );
    let bomb = gzip(&vec![0u8; 8 << 20]);
    assert!(bomb.len() < 65536, "a small gzip bomb");
    let response = hearth
        .client
        .post(hearth.url("/ingest?name=app&format=pprof"))
        .header("X-Scope-OrgID", "t1")
        .header("content-encoding", "gzip")
        .body(bomb.clone())
        .send()
        .unwrap();
    assert_refused(
        "content-encoding gzip bomb",
        response,
        413,
        "invalid_argument",
        "decompressed size exceeds the limit of 262144 bytes",
    );
    assert_refused(
        "pprof gzip bomb (push)",
        hearth.push(T, &labels(&[]), &bomb),
        400,
        "invalid_argument",
        "exceeds the size limit",
    );
    assert_refused(
        "pprof gzip bomb (ingest)",
        ingest(
            &hearth,
            T,
            "name=app&format=pprof",
            "application/octet-stream",
            bomb,
        ),
        413,
        "invalid_argument",
        "exceeds the size limit",
    );

    // Labels: count, lengths, names, UTF-8.
    let many: Vec<(String, String)> = (0..8).map(|i| (format!("l{i}"), "v".to_string())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    assert_refused(
        "too many labels",
        hearth.push(T, &labels(&many), &pprof),
        400,
        "invalid_argument",
        "has 10 label names; limit 8",
    );
    let long = "n".repeat(65);
    assert_refused(
        "label name too long",
        hearth.push(T, &labels(&[(&long, "v")]), &pprof),
        400,
        "invalid_argument",
        "label name too long",
    );
    assert_refused(
        "label value too long",
        hearth.push(T, &labels(&[("k", &long)]), &pprof),
        400,
        "invalid_argument",
        "label value too long for label 'k'",
    );
    assert_refused(
        "invalid label name",
        hearth.push(T, &labels(&[("bad-name", "v")]), &pprof),
        400,
        "invalid_argument",
        "invalid label name 'bad-name'",
    );
    assert_refused(
        "no service name",
        hearth.push(
            T,
            &[("__name__", "process_cpu"), ("service_name", "")],
            &pprof,
        ),
        400,
        "invalid_argument",
        "service name is not provided",
    );
    assert_refused(
        "invalid UTF-8 label value (push)",
        hearth.push_body(
            T,
            push_with_raw_label_value(&[0xff, 0xfe, 0xfd, 0xfc], &pprof),
        ),
        400,
        "invalid_argument",
        "invalid protobuf request",
    );
    assert_refused(
        "invalid UTF-8 name (ingest)",
        ingest(
            &hearth,
            T,
            "name=%ff%fe&format=pprof",
            "application/octet-stream",
            gz_pprof.clone(),
        ),
        400,
        "invalid_argument",
        "not valid UTF-8",
    );
    assert_refused(
        "unparsable name (ingest)",
        ingest(
            &hearth,
            T,
            "name=app%7Benv&format=pprof",
            "application/octet-stream",
            gz_pprof.clone(),
        ),
        400,
        "invalid_argument",
        "name:",
    );

    // Payloads that are not profiles.
    assert_refused(
        "garbage pprof (ingest)",
        ingest(
            &hearth,
            T,
            "name=app&format=pprof",
            "application/octet-stream",
            b"not a profile".to_vec(),
        ),
        422,
        "unknown",
        "failed to decode pprof profile",
    );
    assert_refused(
        "garbage pprof (push)",
        hearth.push(T, &labels(&[]), b"not a profile"),
        400,
        "invalid_argument",
        "failed to decode pprof profile",
    );
    let boundary = "XyZ";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"profile\"; filename=\"profile\"\r\n\r\nP\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"prev_profile\"; filename=\"prev\"\r\n\r\nP\r\n--{boundary}--\r\n"
    );
    assert_refused(
        "prev_profile",
        ingest(
            &hearth,
            T,
            "name=app",
            &format!("multipart/form-data; boundary={boundary}"),
            form.into_bytes(),
        ),
        422,
        "unknown",
        "unsupported client version",
    );
    assert_refused(
        "a JFR body that is not a recording",
        ingest(
            &hearth,
            T,
            "name=app.cpu&format=jfr",
            "application/octet-stream",
            b"x".to_vec(),
        ),
        422,
        "unknown",
        "the jfr body is invalid: chunk 0: 1 bytes is too short for a chunk header",
    );
    let response = hearth
        .client
        .post(hearth.url("/push.v1.PusherService/Push"))
        .header("X-Scope-OrgID", "t1")
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .unwrap();
    assert_refused(
        "push content type",
        response,
        415,
        "invalid_argument",
        "unsupported content type",
    );
    assert_eq!(
        hearth
            .client
            .get(hearth.url("/ingest"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        405
    );

    // Rate limit: one tenant floods, another is unaffected.
    let chunk = fixture("parca/profile-with-labels.pb.gz");
    let mut limited = None;
    for _ in 0..20 {
        let response = hearth.push(Some("flood"), &labels(&[]), &chunk);
        if response.status().as_u16() != 200 {
            limited = Some(response);
            break;
        }
    }
    assert_refused(
        "rate limit",
        limited.expect("the flood is limited"),
        429,
        "resource_exhausted",
        "push rate limit",
    );
    assert_eq!(
        hearth
            .push(T, &labels(&[("after", "flood")]), &pprof)
            .status()
            .as_u16(),
        200
    );

    // Still up, and the first data is intact.
    let ready = hearth.get("/ready");
    assert_eq!(ready.status().as_u16(), 200);
    assert_eq!(ready.text().unwrap(), "ready");
    let now: Vec<_> = hearth
        .series(T, &["{}"])
        .into_iter()
        .filter(|set| !set.iter().any(|(n, _)| n == "after"))
        .collect();
    assert_eq!(now, stored);
    let metrics = hearth
        .client
        .get(hearth.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for reason in [
        "rate_limited",
        "max_label_names_per_series",
        "malformed_profile",
        "body_size_limit_exceeded",
        "unauthenticated",
    ] {
        assert!(
            metrics.contains(&format!(
                "hearth_ingest_errors_total{{reason=\"{reason}\"}}"
            )),
            "metrics lack {reason}:\n{metrics}"
        );
    }
    let build = format!(
        "hearth_build_info{{version=\"{}\",target=\"all\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(metrics.contains(&build), "metrics lack {build}:\n{metrics}");
}
