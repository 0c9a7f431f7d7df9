//! What the end-to-end benchmarks share: their flags, pushing a workload and calling Connect
//! methods over HTTP.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prost::Message;

use crate::workload::{self, Push, Service};

/// The flags of the end-to-end benchmarks (see `benches/README.md`).
pub(crate) struct Args {
    pub scale: f64,
    pub minutes: usize,
    pub clients: usize,
    pub queries: usize,
    pub out: PathBuf,
    pub markdown_to: Option<PathBuf>,
}

impl Args {
    /// The command line's flags over the defaults (`minutes` of data, reports to `out`).
    pub(crate) fn parse(minutes: usize, out: &str) -> Args {
        let mut args = Args {
            scale: 0.1,
            minutes,
            clients: 4,
            queries: 10,
            out: PathBuf::from(out),
            markdown_to: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
            match flag.as_str() {
                "--scale" => args.scale = value().parse().expect("--scale takes a number"),
                "--minutes" => {
                    args.minutes = value().parse().expect("--minutes takes a whole number")
                }
                "--clients" => {
                    args.clients = value().parse().expect("--clients takes a whole number")
                }
                "--queries" => {
                    args.queries = value().parse().expect("--queries takes a whole number")
                }
                "--out" => args.out = PathBuf::from(value()),
                "--markdown-to" => args.markdown_to = Some(PathBuf::from(value())),
                "--bench" => {}
                other => panic!("unknown flag {other}; see benches/README.md"),
            }
        }
        args
    }
}

/// The `p` quantile of sorted values.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn send(
    client: &reqwest::blocking::Client,
    addr: &str,
    tenant: Option<&str>,
    push: &Push,
) -> Duration {
    let started = Instant::now();
    let mut request = client
        .post(format!("http://{addr}{}", push.path))
        .header("content-type", push.content_type)
        .body(push.body.clone());
    if let Some(tenant) = tenant {
        request = request.header("x-scope-orgid", tenant);
    }
    if push.gzip_encoded {
        request = request.header("content-encoding", "gzip");
    }
    let response = request.send().expect("push sent");
    assert_eq!(
        response.status().as_u16(),
        200,
        "{}: {}",
        push.path,
        response.text().unwrap_or_default()
    );
    started.elapsed()
}

/// Pushes every (round, service, pod) from `clients` threads; `interval` paces each thread
/// (None: as fast as the server answers). Returns latencies (ms) and gzipped bytes sent.
pub(crate) fn push_all(
    addr: &str,
    services: &Arc<Vec<Service>>,
    pods: usize,
    rounds: std::ops::Range<usize>,
    start_nanos: i64,
    clients: usize,
    interval: Option<Duration>,
) -> (Vec<f64>, u64) {
    push_all_as(
        None,
        addr,
        services,
        pods,
        rounds,
        start_nanos,
        clients,
        interval,
    )
}

/// [`push_all`] with `X-Scope-OrgID: tenant` on every push.
#[allow(clippy::too_many_arguments)]
pub(crate) fn push_all_as(
    tenant: Option<&str>,
    addr: &str,
    services: &Arc<Vec<Service>>,
    pods: usize,
    rounds: std::ops::Range<usize>,
    start_nanos: i64,
    clients: usize,
    interval: Option<Duration>,
) -> (Vec<f64>, u64) {
    let per_round = services.len() * pods;
    let total = per_round * rounds.len();
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total)));
    let bytes = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (next, latencies, bytes, services, addr, first) = (
                Arc::clone(&next),
                Arc::clone(&latencies),
                Arc::clone(&bytes),
                Arc::clone(services),
                addr.to_string(),
                rounds.start,
            );
            let tenant = tenant.map(str::to_string);
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let began = Instant::now();
                let mut sent = 0u32;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let (round, rest) = (first + i / per_round, i % per_round);
                    let push =
                        workload::push(&services[rest / pods], rest % pods, round, start_nanos);
                    if let Some(interval) = interval {
                        let due = began + interval * sent;
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let latency = send(&client, &addr, tenant.as_deref(), &push);
                    sent += 1;
                    bytes.fetch_add(push.body.len(), Ordering::Relaxed);
                    latencies.lock().push(latency.as_secs_f64() * 1000.0);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    let mut latencies = latencies.lock().clone();
    latencies.sort_by(|a, b| a.total_cmp(b));
    (latencies, bytes.load(Ordering::Relaxed) as u64)
}

pub(crate) fn connect_call<M: Message>(
    client: &reqwest::blocking::Client,
    addr: &str,
    method: &str,
    request: &M,
) -> Vec<u8> {
    connect_call_as(client, addr, None, method, request)
        .unwrap_or_else(|(status, body)| panic!("{method}: {status} {body}"))
}

/// A Connect call with `X-Scope-OrgID: tenant`; a status other than 200 comes back with the
/// error's body.
pub(crate) fn connect_call_as<M: Message>(
    client: &reqwest::blocking::Client,
    addr: &str,
    tenant: Option<&str>,
    method: &str,
    request: &M,
) -> Result<Vec<u8>, (u16, String)> {
    let mut call = client
        .post(format!("http://{addr}/querier.v1.QuerierService/{method}"))
        .header("content-type", "application/proto")
        .body(request.encode_to_vec());
    if let Some(tenant) = tenant {
        call = call.header("x-scope-orgid", tenant);
    }
    let response = call.send().unwrap();
    let status = response.status().as_u16();
    if status != 200 {
        return Err((status, response.text().unwrap_or_default()));
    }
    Ok(response.bytes().unwrap().to_vec())
}
