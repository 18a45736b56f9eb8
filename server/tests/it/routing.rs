//! Weighted routing over the real server: the observed split, TargetVariant, weight changes.

use crate::common;

use common::{IRIS_CSV, TestServer};
use serde_json::json;

async fn two_variant_endpoint(server: &TestServer) {
    server.create_model("iris-logreg", "iris-logreg").await;
    server.create_model("iris-mlp", "iris-mlp").await;
    server
        .create_config("ab", &[("a", "iris-logreg", 70.0), ("b", "iris-mlp", 30.0)])
        .await;
    server.create_endpoint("ab", "ab").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seventy_thirty_split_target_variant_and_weight_updates() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    two_variant_endpoint(&server).await;

    // 70/30 over 2,000 requests: within 4 standard deviations of the binomial.
    let n = 2000;
    let mut a = 0;
    let requests =
        futures::future::join_all((0..n).map(|_| server.invoke("ab", "text/csv", IRIS_CSV, &[])))
            .await;
    for r in &requests {
        assert_eq!(r.status, 200, "{}", r.body);
        match r.variant.as_deref() {
            Some("a") => {
                a += 1;
                assert_eq!(r.model.as_deref(), Some("iris-logreg/1"));
            }
            Some("b") => assert_eq!(r.model.as_deref(), Some("iris-mlp/1")),
            other => panic!("unexpected variant {other:?}"),
        }
    }
    let sd = (f64::from(n) * 0.7 * 0.3).sqrt();
    assert!(
        (f64::from(a) - 0.7 * f64::from(n)).abs() <= 4.0 * sd,
        "{a} of {n} went to a (sd {sd:.1})"
    );

    // TargetVariant routes every request.
    for _ in 0..50 {
        let r = server
            .invoke(
                "ab",
                "text/csv",
                IRIS_CSV,
                &[("X-Amzn-SageMaker-Target-Variant", "b")],
            )
            .await;
        assert_eq!(r.variant.as_deref(), Some("b"));
    }

    // Weights 0/100 take effect for the very next request.
    server
        .ok(
            "UpdateEndpointWeightsAndCapacities",
            json!({"EndpointName": "ab", "DesiredWeightsAndCapacities": [{"VariantName": "a", "DesiredWeight": 0.0}, {"VariantName": "b", "DesiredWeight": 100.0}]}),
        )
        .await;
    for _ in 0..200 {
        let r = server.invoke("ab", "text/csv", IRIS_CSV, &[]).await;
        assert_eq!(r.variant.as_deref(), Some("b"));
    }
    let d = server
        .ok("DescribeEndpoint", json!({"EndpointName": "ab"}))
        .await;
    assert_eq!(d["ProductionVariants"][0]["CurrentWeight"], 0.0);
    assert_eq!(d["ProductionVariants"][1]["CurrentWeight"], 100.0);
    // A zero-weight variant still answers when targeted.
    let r = server
        .invoke(
            "ab",
            "text/csv",
            IRIS_CSV,
            &[("X-Amzn-SageMaker-Target-Variant", "a")],
        )
        .await;
    assert_eq!((r.status, r.variant.as_deref()), (200, Some("a")));

    // All-zero weights and unknown variants are refused, and change nothing.
    let (status, err) = server
        .api(
            "UpdateEndpointWeightsAndCapacities",
            json!({"EndpointName": "ab", "DesiredWeightsAndCapacities": [{"VariantName": "b", "DesiredWeight": 0.0}]}),
        )
        .await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (400, Some("ValidationException")),
        "{err}"
    );
    let (status, err) = server
        .api(
            "UpdateEndpointWeightsAndCapacities",
            json!({"EndpointName": "ab", "DesiredWeightsAndCapacities": [{"VariantName": "zzz", "DesiredWeight": 1.0}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(err["message"].as_str().unwrap().contains("zzz"), "{err}");
    let r = server.invoke("ab", "text/csv", IRIS_CSV, &[]).await;
    assert_eq!(r.variant.as_deref(), Some("b"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_used_twice_is_loaded_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    server.create_model("m", "iris-logreg").await;
    server
        .create_config("c1", &[("v1", "m", 1.0), ("v2", "m", 1.0)])
        .await;
    server.create_endpoint("e1", "c1").await;
    server.create_endpoint("e2", "c1").await;
    let state = &server.server.as_ref().unwrap().state;
    assert_eq!(state.serving.cache.live(), 1);
    server
        .ok("DeleteEndpoint", json!({"EndpointName": "e1"}))
        .await;
    server
        .ok("DeleteEndpoint", json!({"EndpointName": "e2"}))
        .await;
    assert_eq!(
        state.serving.cache.live(),
        0,
        "released once no endpoint holds it"
    );
    server.stop().await;
}
