//! A realistic workload from the real fixtures: services of several kinds (Python CPU with
//! thread labels, Python memory + CPU, Node wall, Go fgprof, Parca agent CPU, a large C++
//! binary), 10 pods each, one 10 s profile per pod per round. Every service has its own symbol
//! names; every profile keeps a random subset of its fixture's samples with scaled values.

use std::io::Read;
use std::path::Path;

use hearth_engine::compression::gzip;
use hearth_engine::testing::raw_series;
use hearth_proto::pprof::Profile;
use hearth_proto::push::v1::PushRequest;
use prost::Message;

/// A small, fast, seedable random generator (xorshift64*).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How a service's agent pushes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Transport {
    /// `push.v1.PusherService/Push`, proto + gzip body, uncompressed pprof inside.
    Push,
    /// `POST /ingest?format=pprof` with a gzipped pprof body.
    Ingest,
}

/// One kind of service: the fixtures its pods send each round and how.
pub(crate) struct ServiceKind {
    pub name: &'static str,
    /// (`__name__`, fixture) per series pushed each round.
    pub profiles: Vec<(&'static str, Profile)>,
    pub transport: Transport,
    /// Keep at most this many samples of a profile (the large C++ profile is cut down).
    pub max_samples: usize,
}

fn fixture(root: &Path, name: &str) -> Profile {
    let bytes = std::fs::read(root.join("tests/fixtures").join(name)).unwrap();
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        bytes
    };
    Profile::decode(raw.as_slice()).unwrap()
}

pub(crate) fn kinds(root: &Path) -> Vec<ServiceKind> {
    let f = |name: &str| fixture(root, name);
    vec![
        ServiceKind {
            name: "py",
            profiles: vec![("process_cpu", f("captures/extracted/py-001.s0.r0.pb"))],
            transport: Transport::Push,
            max_samples: usize::MAX,
        },
        ServiceKind {
            name: "pymem",
            profiles: vec![
                ("memory", f("captures/extracted/py-005.s0.r0.pb")),
                ("process_cpu", f("captures/extracted/py-005.s1.r0.pb")),
            ],
            transport: Transport::Push,
            max_samples: usize::MAX,
        },
        ServiceKind {
            name: "node",
            profiles: vec![("wall", f("captures/node-001.body"))],
            transport: Transport::Ingest,
            max_samples: usize::MAX,
        },
        ServiceKind {
            name: "go",
            profiles: vec![("wall", f("parca/fgprof.pb.gz"))],
            transport: Transport::Push,
            max_samples: usize::MAX,
        },
        ServiceKind {
            name: "agent",
            profiles: vec![("process_cpu", f("parca/profile-with-labels.pb.gz"))],
            transport: Transport::Push,
            max_samples: usize::MAX,
        },
        ServiceKind {
            name: "cpp",
            profiles: vec![("process_cpu", f("pprof/large.cpu"))],
            transport: Transport::Push,
            max_samples: 2000,
        },
    ]
}

/// A service: its kind and its own copy of the fixtures with service-specific symbol names.
pub(crate) struct Service {
    pub name: String,
    pub kind: usize,
    pub profiles: Vec<(&'static str, Profile)>,
    pub transport: Transport,
    pub max_samples: usize,
}

/// Services `0..count`, cycling through the kinds; function names get a per-service suffix, as
/// different services run different code.
pub(crate) fn services(kinds: &[ServiceKind], count: usize) -> Vec<Service> {
    (0..count)
        .map(|i| {
            let kind = &kinds[i % kinds.len()];
            let suffix = format!("@svc{i}");
            let profiles = kind
                .profiles
                .iter()
                .map(|(name, p)| {
                    let mut p = p.clone();
                    let function_names: std::collections::HashSet<i64> =
                        p.function.iter().map(|f| f.name).collect();
                    for (index, s) in p.string_table.iter_mut().enumerate() {
                        if function_names.contains(&(index as i64)) && !s.is_empty() {
                            s.push_str(&suffix);
                        }
                    }
                    (*name, p)
                })
                .collect();
            Service {
                name: format!("{}-{i:03}", kind.name),
                kind: i % kinds.len(),
                profiles,
                transport: kind.transport,
                max_samples: kind.max_samples,
            }
        })
        .collect()
}

/// One push: where it goes and its body.
pub(crate) struct Push {
    pub path: String,
    pub content_type: &'static str,
    pub gzip_encoded: bool,
    pub body: Vec<u8>,
}

/// A profile of `base` for one pod and round: a random subset of samples, scaled values.
fn vary(base: &Profile, rng: &mut Rng, time_nanos: i64, max_samples: usize) -> Profile {
    let keep = 0.6 + 0.3 * rng.unit();
    let mut p = base.clone();
    p.sample.retain(|_| rng.unit() < keep);
    p.sample.truncate(max_samples);
    for sample in &mut p.sample {
        let factor = 1 + (rng.next() % 4) as i64;
        for v in &mut sample.value {
            *v *= factor;
        }
    }
    p.time_nanos = time_nanos;
    p.duration_nanos = 10_000_000_000;
    p
}

/// The push of one pod of one service in one round.
pub(crate) fn push(service: &Service, pod: usize, round: usize, start_nanos: i64) -> Push {
    let mut rng =
        Rng::new(((service.kind as u64) << 40) ^ ((pod as u64) << 20) ^ round as u64 ^ 0xABCD);
    let time = start_nanos + round as i64 * 10_000_000_000;
    let pod_name = format!("{}-{pod}", service.name);
    match service.transport {
        Transport::Push => {
            let series = service
                .profiles
                .iter()
                .map(|(name, base)| {
                    raw_series(
                        &[
                            ("__name__", *name),
                            ("service_name", service.name.as_str()),
                            ("pod", pod_name.as_str()),
                        ],
                        vary(base, &mut rng, time, service.max_samples).encode_to_vec(),
                        format!("{pod_name}-{round}"),
                    )
                })
                .collect();
            Push {
                path: "/push.v1.PusherService/Push".into(),
                content_type: "application/proto",
                gzip_encoded: true,
                body: gzip(&PushRequest { series }.encode_to_vec()),
            }
        }
        Transport::Ingest => {
            let (_, base) = &service.profiles[0];
            let profile = vary(base, &mut rng, time, service.max_samples);
            Push {
                path: format!(
                    "/ingest?format=pprof&name={}%7Bpod%3D{pod_name}%7D&from={}&until={}&spyName=nodespy",
                    service.name,
                    time / 1_000_000_000,
                    time / 1_000_000_000 + 10
                ),
                content_type: "application/octet-stream",
                gzip_encoded: false,
                body: gzip(&profile.encode_to_vec()),
            }
        }
    }
}

/// The floor: gunzip and protobuf-decode a push body, as any server must.
pub(crate) fn decode_floor(push: &Push) -> usize {
    let mut raw = Vec::new();
    flate2::read::MultiGzDecoder::new(push.body.as_slice())
        .read_to_end(&mut raw)
        .unwrap();
    if push.gzip_encoded {
        let request = PushRequest::decode(raw.as_slice()).unwrap();
        request
            .series
            .iter()
            .flat_map(|s| &s.samples)
            .map(|s| {
                Profile::decode(s.raw_profile.as_ref())
                    .unwrap()
                    .sample
                    .len()
            })
            .sum()
    } else {
        Profile::decode(raw.as_slice()).unwrap().sample.len()
    }
}
