//! With multi-tenancy on, `X-Scope-OrgID` is required and one tenant never sees another's data.

use super::support::{Hearth, fixture};

#[test]
fn tenants_are_isolated_and_the_header_is_required() {
    let hearth = Hearth::start_with_config("multitenancy_enabled: true\n");
    let pprof = fixture("captures/extracted/py-001.s0.r0.pb");
    let labels = [
        ("__name__", "process_cpu"),
        ("service_name", "tenant-a-app"),
    ];

    let response = hearth.push(None, &labels, &pprof);
    assert_eq!(response.status().as_u16(), 401);
    let body: serde_json::Value = serde_json::from_str(&response.text().unwrap()).unwrap();
    assert_eq!(body["code"], "unauthenticated");
    assert!(
        body["message"].as_str().unwrap().contains("X-Scope-OrgID"),
        "{body}"
    );

    assert_eq!(
        hearth
            .push(Some("tenant-a"), &labels, &pprof)
            .status()
            .as_u16(),
        200
    );

    for tenant in ["tenant-a", "tenant-b"] {
        let (status, names) = hearth.connect_json(
            Some(tenant),
            "/querier.v1.QuerierService/LabelValues",
            serde_json::json!({"name": "service_name"}),
        );
        assert_eq!(status, 200);
        let names = names["names"].as_array().cloned().unwrap_or_default();
        if tenant == "tenant-a" {
            assert_eq!(names, vec![serde_json::json!("tenant-a-app")]);
        } else {
            assert!(names.is_empty(), "tenant-b sees {names:?}");
        }
        let (_, types) = hearth.connect_json(
            Some(tenant),
            "/querier.v1.QuerierService/ProfileTypes",
            serde_json::json!({}),
        );
        assert_eq!(
            types["profileTypes"].is_array(),
            tenant == "tenant-a",
            "{types}"
        );
        assert_eq!(
            hearth.series(Some(tenant), &["{}"]).is_empty(),
            tenant == "tenant-b"
        );
    }

    let (status, body) = hearth.connect_json(
        None,
        "/querier.v1.QuerierService/LabelNames",
        serde_json::json!({}),
    );
    assert_eq!(status, 401, "{body}");
}
