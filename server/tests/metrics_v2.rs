//! The v2 REST and gRPC paths emit the same request metrics as SageMaker invocations.
//!
//! A test binary of its own, not a module of `it`: it counts the process-wide metrics
//! recorder's series for the demo endpoint, which other tests' servers would add to.

#[path = "it/common/mod.rs"]
mod common;

use common::TestServer;
use pier_proto::inference as pb;
use pier_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;

/// Sum of the samples of `metric` whose labels include every one of `labels`.
fn total(text: &str, metric: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(metric) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_rest_and_grpc_requests_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.grpc_addr = Some("127.0.0.1:0".parse().unwrap());
    let server = TestServer::start_with(config).await;
    let running = server.server.as_ref().unwrap();
    pier_server::control::demo::install(&running.state)
        .await
        .unwrap();
    let mut grpc =
        GrpcInferenceServiceClient::connect(format!("http://{}", running.grpc_addr.unwrap()))
            .await
            .unwrap();

    let body = serde_json::json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]});
    for _ in 0..3 {
        let r = server
            .client
            .post(format!("http://{}/v2/models/demo/infer", server.http))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let raw: Vec<u8> = [5.1f32, 3.5, 1.4, 0.2]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    for _ in 0..2 {
        let request = pb::ModelInferRequest {
            model_name: "demo".into(),
            inputs: vec![pb::model_infer_request::InferInputTensor {
                name: "X".into(),
                datatype: "FP32".into(),
                shape: vec![1, 4],
                ..Default::default()
            }],
            raw_input_contents: vec![raw.clone()],
            ..Default::default()
        };
        grpc.model_infer(request).await.unwrap();
    }
    let r = server
        .client
        .post(format!("http://{}/v2/models/ghost/infer", server.http))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let text = server
        .client
        .get(format!("http://{}/metrics", server.http))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ok = total(
        &text,
        "pier_requests_total{",
        &["endpoint=\"demo\"", "outcome=\"ok\""],
    );
    assert_eq!(ok, 5.0, "3 REST + 2 gRPC requests counted:\n{text}");
    let failed = total(
        &text,
        "pier_requests_total{",
        &["endpoint=\"__unknown\"", "outcome=\"client_error\""],
    );
    // An unknown name is counted, in the one bucket for unknown names (never a series of its own).
    assert_eq!(failed, 1.0, "{text}");
    assert!(!text.contains("ghost"), "{text}");
    for metric in [
        "pier_request_duration_seconds_count",
        "pier_compute_duration_seconds_count",
        "pier_batch_size_count",
    ] {
        assert!(
            total(&text, metric, &["endpoint=\"demo\""]) >= 5.0,
            "{metric} missing:\n{text}"
        );
    }
    server.stop().await;
}
