//! Hardening of the serving state against hostile or careless clients, on a real server:
//! unknown names never create metric series, one failed endpoint does not fail the server's
//! health, and extreme settings are refused or routed as their ratios say.

use crate::common;

use common::{IRIS_CSV, TestServer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_endpoint_names_do_not_create_metric_series() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    server.create_model("iris", "iris-logreg").await;
    server.create_config("cfg", &[("main", "iris", 1.0)]).await;
    server.create_endpoint("known", "cfg").await;

    let before = server.metrics().await.len();
    for i in 0..200 {
        let name = format!("{}{i}", "x".repeat(4000));
        let r = server.invoke(&name, "text/csv", IRIS_CSV, &[]).await;
        assert_eq!(r.status, 400, "{}", r.body);
        // v2 names too.
        let r = server
            .client
            .post(format!("http://{}/v2/models/{name}/infer", server.http))
            .body(r#"{"inputs":[]}"#)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_client_error(), "{}", r.status());
    }
    // A known endpoint refused before routing (bad content type) keeps its own label.
    let r = server.invoke("known", "image/png", "x", &[]).await;
    assert_eq!(r.status, 400);

    let text = server.metrics().await;
    assert!(!text.contains("xxxxxxxx"), "an unknown name became a label");
    assert!(
        text.contains("endpoint=\"__unknown\""),
        "unknown names share one bucket"
    );
    assert!(text.contains("endpoint=\"known\""));
    // 400 unknown requests add a bounded number of series, not ~23 per name.
    assert!(
        text.len() < before + 64 * 1024,
        "/metrics grew from {before} to {} bytes",
        text.len()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_endpoint_does_not_fail_server_health() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    server.create_model("iris", "iris-logreg").await;
    server.create_config("good", &[("main", "iris", 1.0)]).await;
    server.create_endpoint("good", "good").await;

    // A model whose artifact was removed from the store after CreateModel: its endpoint fails.
    server.create_model("broken", "iris-mlp").await;
    let version_dir = server.data.join("store/broken/1");
    std::fs::write(version_dir.join("model.onnx"), b"truncated").unwrap();
    server
        .create_config("bad", &[("main", "broken", 1.0)])
        .await;
    server
        .ok(
            "CreateEndpoint",
            json!({"EndpointName": "bad", "EndpointConfigName": "bad"}),
        )
        .await;
    let d = server.wait_endpoint("bad").await;
    assert_eq!(d["EndpointStatus"], "Failed", "{d}");

    let get = |path: &str| {
        let url = format!("http://{}{path}", server.http);
        let client = server.client.clone();
        async move { client.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get("/ping").await, 200, "/ping reports the server");
    assert_eq!(get("/v2/health/ready").await, 200);
    assert_eq!(get("/v2/health/live").await, 200);
    // Readiness per endpoint stays per endpoint.
    assert_eq!(get("/v2/models/good/ready").await, 200);
    assert_ne!(get("/v2/models/bad/ready").await, 200);
    let r = server.invoke("good", "text/csv", IRIS_CSV, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_settings_are_refused_or_routed_by_ratio() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    server.create_model("a", "iris-logreg").await;
    server.create_model("b", "iris-mlp").await;

    // A queue delay of 2^62 µs would hold every request for 60 s.
    let (status, answer) = server
        .api(
            "CreateEndpointConfig",
            json!({"EndpointConfigName": "slow", "ProductionVariants": [
                {"VariantName": "main", "ModelName": "a", "InitialVariantWeight": 1.0,
                 "PierBatching": {"MaxBatchSize": 8, "MaxQueueDelayMicroseconds": 4611686018427387904u64}}]}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["__type"], "ValidationException");
    let message = answer["message"].as_str().unwrap();
    assert!(message.contains("MaxQueueDelayMicroseconds"), "{message}");
    let (status, answer) = server
        .api(
            "CreateEndpointConfig",
            json!({"EndpointConfigName": "big", "ProductionVariants": [
                {"VariantName": "main", "ModelName": "a", "PierBatching": {"MaxBatchSize": 1u64 << 40}}]}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("MaxBatchSize"),
        "{answer}"
    );

    // Weights whose sum overflows split evenly.
    server
        .create_config("huge", &[("a", "a", 1e308), ("b", "b", 1e308)])
        .await;
    server.create_endpoint("ab", "huge").await;
    assert_even_split(&server).await;

    // Subnormal weights too.
    server
        .ok(
            "UpdateEndpointWeightsAndCapacities",
            json!({"EndpointName": "ab", "DesiredWeightsAndCapacities": [
                {"VariantName": "a", "DesiredWeight": 5e-324},
                {"VariantName": "b", "DesiredWeight": 5e-324}]}),
        )
        .await;
    assert_even_split(&server).await;
    let d = server
        .ok("DescribeEndpoint", json!({"EndpointName": "ab"}))
        .await;
    assert_eq!(d["ProductionVariants"][0]["CurrentWeight"], 5e-324, "{d}");

    // A negative weight is refused, naming the field.
    let (status, answer) = server
        .api(
            "UpdateEndpointWeightsAndCapacities",
            json!({"EndpointName": "ab", "DesiredWeightsAndCapacities": [
                {"VariantName": "a", "DesiredWeight": -1.0}]}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("DesiredWeight"),
        "{answer}"
    );
    server.stop().await;
}

/// 400 requests split within 5 standard deviations of 50/50.
async fn assert_even_split(server: &TestServer) {
    let n = 400;
    let answers =
        futures::future::join_all((0..n).map(|_| server.invoke("ab", "text/csv", IRIS_CSV, &[])))
            .await;
    let a = answers
        .iter()
        .filter(|r| {
            assert_eq!(r.status, 200, "{}", r.body);
            r.variant.as_deref() == Some("a")
        })
        .count();
    let sd = (f64::from(n) * 0.25).sqrt();
    assert!(
        (a as f64 - f64::from(n) / 2.0).abs() <= 5.0 * sd,
        "{a} of {n} went to a"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_changes_nothing_live() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    server.create_model("a", "iris-logreg").await;
    server.create_model("b", "iris-mlp").await;
    server
        .create_config("ab", &[("a", "a", 1.0), ("b", "b", 0.0)])
        .await;
    server.create_endpoint("ab", "ab").await;

    // The disk fills: the weight change is refused and routing keeps the recorded weights.
    let db = &server.server.as_ref().unwrap().state.db;
    db.fail_next_writes(1);
    let (status, answer) = server
        .api(
            "UpdateEndpointWeightsAndCapacities",
            json!({"EndpointName": "ab", "DesiredWeightsAndCapacities": [
                {"VariantName": "a", "DesiredWeight": 0.0},
                {"VariantName": "b", "DesiredWeight": 1.0}]}),
        )
        .await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["__type"], "InternalFailure", "{answer}");
    for _ in 0..50 {
        let r = server.invoke("ab", "text/csv", IRIS_CSV, &[]).await;
        assert_eq!(
            r.variant.as_deref(),
            Some("a"),
            "the refused weights went live"
        );
    }
    let d = server
        .ok("DescribeEndpoint", json!({"EndpointName": "ab"}))
        .await;
    assert_eq!(d["ProductionVariants"][0]["CurrentWeight"], 1.0, "{d}");

    server.stop().await;
    let server = TestServer::start(dir.path()).await;
    // After a restart, the recorded weights are the ones that serve.
    let d = server.wait_endpoint("ab").await;
    assert_eq!(d["ProductionVariants"][0]["CurrentWeight"], 1.0, "{d}");
    for _ in 0..20 {
        let r = server.invoke("ab", "text/csv", IRIS_CSV, &[]).await;
        assert_eq!(r.variant.as_deref(), Some("a"));
    }
    server.stop().await;
}
