//! The calls Grafana's Pyroscope datasource makes, in its order and its encoding: binary proto,
//! `Connect-Protocol-Version: 1`, `Accept-Encoding: gzip` (spec §2.5).

use hearth_proto::pprof::Profile;
use hearth_proto::querier::v1::{
    ProfileTypesRequest, ProfileTypesResponse, SelectMergeStacktracesRequest,
    SelectMergeStacktracesResponse, SelectSeriesRequest, SelectSeriesResponse,
};
use hearth_proto::types::v1::{
    LabelNamesRequest, LabelNamesResponse, LabelValuesRequest, LabelValuesResponse,
};
use prost::Message;

use super::query::call;
use super::reference::{self, Node, add_profile};
use super::support::{Hearth, fixture, gunzip_if_gzip};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn grafana_datasource_call_sequence() {
    let hearth = Hearth::start();
    let mut p =
        Profile::decode(gunzip_if_gzip(&fixture("parca/profile-with-labels.pb.gz")).as_slice())
            .unwrap();
    let now = now_ms();
    p.time_nanos = (now - 60_000) * 1_000_000;
    for service in ["checkout", "cart"] {
        let response = hearth.push(
            None,
            &[("__name__", "process_cpu"), ("service_name", service)],
            &p.encode_to_vec(),
        );
        assert_eq!(response.status().as_u16(), 200);
    }
    let (start, end) = (now - 3_600_000, now);
    let profile_type = "process_cpu:samples:count:cpu:nanoseconds";

    // Health check: a range with no data is fine.
    let health: ProfileTypesResponse = call(
        &hearth,
        None,
        "ProfileTypes",
        &ProfileTypesRequest {
            start: 1000,
            end: 4000,
        },
    );
    assert!(health.profile_types.is_empty());
    let types: ProfileTypesResponse = call(
        &hearth,
        None,
        "ProfileTypes",
        &ProfileTypesRequest { start, end },
    );
    assert_eq!(types.profile_types.len(), 1);
    assert_eq!(types.profile_types[0].id, profile_type);

    let selector = format!("{{__profile_type__=\"{profile_type}\"}}");
    let names: LabelNamesResponse = call(
        &hearth,
        None,
        "LabelNames",
        &LabelNamesRequest {
            matchers: vec![selector.clone()],
            start,
            end,
        },
    );
    assert!(
        names.names.contains(&"service_name".into()) && names.names.contains(&"thread_name".into()),
        "{:?}",
        names.names
    );
    let values: LabelValuesResponse = call(
        &hearth,
        None,
        "LabelValues",
        &LabelValuesRequest {
            name: "service_name".into(),
            matchers: vec![selector],
            start,
            end,
        },
    );
    assert_eq!(
        values.names,
        vec!["cart".to_string(), "checkout".to_string()]
    );

    let mut expected = Node::default();
    add_profile(&mut expected, &p, 0, |_| true);
    let series: SelectSeriesResponse = call(
        &hearth,
        None,
        "SelectSeries",
        &SelectSeriesRequest {
            profile_type_id: profile_type.into(),
            label_selector: "{}".into(),
            start,
            end,
            group_by: vec!["service_name".into()],
            step: 15.0,
            limit: Some(10),
            ..Default::default()
        },
    );
    assert_eq!(series.series.len(), 2);
    for s in &series.series {
        assert_eq!(s.labels.len(), 1);
        assert_eq!(s.labels[0].name, "service_name");
        assert_eq!(s.points.len(), 1, "one profile, one bucket");
        let point = &s.points[0];
        assert_eq!(point.value as i64, expected.total);
        // The right edge of the 15 s bucket holding the profile, on the grid from `start`.
        let t = now - 60_000;
        assert!(
            point.timestamp >= t && point.timestamp < t + 15_000,
            "{} vs {t}",
            point.timestamp
        );
        assert_eq!((point.timestamp - start) % 15_000, 0);
    }

    let response: SelectMergeStacktracesResponse = call(
        &hearth,
        None,
        "SelectMergeStacktraces",
        &SelectMergeStacktracesRequest {
            profile_type_id: profile_type.into(),
            label_selector: r#"{service_name="checkout"}"#.into(),
            start,
            end,
            max_nodes: Some(16384),
            ..Default::default()
        },
    );
    let graph = response.flamegraph.unwrap();
    let levels: Vec<Vec<i64>> = graph.levels.iter().map(|l| l.values.clone()).collect();
    assert_eq!(
        reference::decode(&graph.names, &levels),
        expected.truncated(16384)
    );
}
