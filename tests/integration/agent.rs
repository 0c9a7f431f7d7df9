//! The real Rust agent (the `pyroscope` crate from crates.io, the same push code as the Python
//! `pyroscope-io` package) profiles this test's own busy code and pushes into a running `hearth`.

use std::time::{Duration, Instant};

use pyroscope::backend::{BackendConfig, PprofConfig, pprof_backend};
use pyroscope::pyroscope::PyroscopeAgentBuilder;

use super::support::Hearth;

fn busy_work(until: Instant) -> u64 {
    let mut x: u64 = 1;
    while Instant::now() < until {
        for i in 0..100_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
        }
    }
    x
}

#[test]
fn the_rust_pyroscope_agent_pushes_into_hearth() {
    let hearth = Hearth::start();
    let agent = PyroscopeAgentBuilder::new(
        hearth.url(""),
        "hearth-agent-test",
        100,
        "pyroscope-rs",
        "2",
        pprof_backend(PprofConfig { sample_rate: 100 }, BackendConfig::default()),
    )
    .tags(vec![("suite", "integration")])
    .upload_interval(Duration::from_secs(1))
    .build()
    .unwrap();
    let running = agent.start().unwrap();
    std::hint::black_box(busy_work(Instant::now() + Duration::from_secs(4)));
    let ready = running.stop().unwrap();
    ready.shutdown();

    let deadline = Instant::now() + Duration::from_secs(30);
    let series = loop {
        let series = hearth.series(None, &[r#"{service_name="hearth-agent-test"}"#]);
        if !series.is_empty() || Instant::now() > deadline {
            break series;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        !series.is_empty(),
        "the agent's profiles are stored; log:\n{}",
        hearth.log()
    );
    for set in &series {
        let get = |name: &str| set.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(get("suite"), Some("integration"));
        assert_eq!(get("__name__"), Some("process_cpu"));
        assert_eq!(
            get("__profile_type__"),
            Some("process_cpu:cpu:nanoseconds:cpu:nanoseconds")
        );
    }
}
