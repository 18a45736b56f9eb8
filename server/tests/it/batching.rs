//! Dynamic batching and metrics over the real server: batched answers equal unbatched ones
//! row for row, a full queue answers 429 at once, `/metrics` carries every metric of the
//! SageMaker invoke path with its labels, and `PIER_BACKEND` is checked at CreateModel.

use crate::common;

use common::{TestServer, fixture};
use serde_json::{Value, json};

const ROWS: [&str; 4] = [
    "5.1,3.5,1.4,0.2",
    "6.7,3.0,5.2,2.3",
    "5.9,3.0,4.2,1.5",
    "4.9,3.1,1.5,0.1",
];

async fn batched_config(server: &TestServer, name: &str, model: &str, batching: Value) {
    server
        .ok(
            "CreateEndpointConfig",
            json!({"EndpointConfigName": name, "ProductionVariants": [
                {"VariantName": "main", "ModelName": model, "PierBatching": batching}
            ]}),
        )
        .await;
}

/// The value of the first sample line starting with `prefix` and containing every label.
fn sample(text: &str, prefix: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|x| l.contains(x)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_answers_match_unbatched_and_metrics_are_emitted() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    server.create_model("logreg", "iris-logreg").await;
    server
        .create_config("plain", &[("main", "logreg", 1.0)])
        .await;
    server.create_endpoint("plain", "plain").await;
    batched_config(
        &server,
        "batched",
        "logreg",
        json!({"MaxBatchSize": 64, "MaxQueueDelayMicroseconds": 50000}),
    )
    .await;
    server.create_endpoint("batched", "batched").await;

    // 24 concurrent requests of 1–4 rows each; every answer must equal the unbatched one.
    let bodies: Vec<String> = (0..24)
        .map(|i| ROWS[..1 + i % 4].join("\n") + "\n")
        .collect();
    let plain = futures::future::join_all(
        bodies
            .iter()
            .map(|b| server.invoke("plain", "text/csv", b.clone(), &[])),
    )
    .await;
    let batched = futures::future::join_all(
        bodies
            .iter()
            .map(|b| server.invoke("batched", "text/csv", b.clone(), &[])),
    )
    .await;
    for (p, b) in plain.iter().zip(&batched) {
        assert_eq!(b.status, 200, "{}", b.body);
        assert_eq!(p.body, b.body, "batched answer differs");
    }

    let text = server.metrics().await;
    let batched_labels = [
        "endpoint=\"batched\"",
        "variant=\"main\"",
        "model=\"logreg\"",
        "version=\"1\"",
    ];
    let mut ok_labels = batched_labels.to_vec();
    ok_labels.push("outcome=\"ok\"");
    let ok = sample(&text, "pier_requests_total{", &ok_labels);
    assert_eq!(ok, Some(24.0), "{text}");
    let batches =
        sample(&text, "pier_batch_size_count", &batched_labels).expect("batch size histogram");
    let rows = sample(&text, "pier_batch_size_sum", &batched_labels).expect("batch size sum");
    assert_eq!(rows, 60.0, "every row computed once");
    assert!(batches < 24.0, "requests were combined: {batches} batches");
    let plain_batches = sample(&text, "pier_batch_size_count", &["endpoint=\"plain\""]).unwrap();
    assert_eq!(plain_batches, 24.0, "batching off: one compute per request");
    for name in [
        "pier_request_duration_seconds_bucket",
        "pier_queue_duration_seconds_bucket",
        "pier_compute_duration_seconds_bucket",
    ] {
        assert!(
            sample(&text, name, &batched_labels).is_some(),
            "{name} missing:\n{text}"
        );
    }
    assert_eq!(
        sample(&text, "pier_requests_in_flight", &["endpoint=\"batched\""]),
        Some(0.0)
    );
    assert!(
        sample(
            &text,
            "pier_model_loads_total",
            &["model=\"logreg\"", "backend=\"tract\""]
        )
        .is_some()
    );

    // Errors are counted by outcome, with the endpoint label even before routing.
    let r = server.invoke("batched", "text/csv", "1,2\n", &[]).await;
    assert_eq!(r.status, 400);
    let text = server.metrics().await;
    assert_eq!(
        sample(
            &text,
            "pier_requests_total{",
            &["endpoint=\"batched\"", "outcome=\"client_error\""]
        ),
        Some(1.0),
        "{text}"
    );
    server.stop().await;
}

/// Waits (bounded) until the endpoint's batcher has nothing queued or running: a batch
/// job gives its slot back just after answering.
async fn wait_at_rest(server: &TestServer, endpoint: &str) {
    let running = server.server.as_ref().unwrap();
    for _ in 0..5000 {
        let snapshot = running.state.serving.snapshot();
        let loaded = &snapshot.endpoints[endpoint].variants[0].loaded;
        if loaded.batcher.as_ref().expect("batched").is_at_rest() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!("{endpoint}'s batcher never came to rest");
}

fn pool_jobs(server: &TestServer) -> u64 {
    let running = server.server.as_ref().unwrap();
    running.state.serving.pool.submitted()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_model_at_rest_costs_no_hop_that_batching_off_would_not() {
    // A budget every call fits even in a debug build; batching with the default delay (0).
    // Endpoint names are this test's own: the metrics registry is the process's.
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.compute.inline = std::time::Duration::from_secs(1);
    let server = TestServer::start_with(config).await;
    server.create_model("logreg", "iris-logreg").await;
    batched_config(&server, "at-rest", "logreg", json!({"MaxBatchSize": 64})).await;
    server.create_endpoint("at-rest", "at-rest").await;
    server
        .create_config("at-rest-plain", &[("main", "logreg", 1.0)])
        .await;
    server
        .create_endpoint("at-rest-plain", "at-rest-plain")
        .await;

    // The first call measures the model's cost, on the pool.
    let body = ROWS.join("\n") + "\n";
    let first = server
        .invoke("at-rest", "text/csv", body.clone(), &[])
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    wait_at_rest(&server, "at-rest").await;
    // One client at a time: each request finds the model idle, so its batch is itself and
    // runs on the request's thread, with no pool job, as an unbatched cheap call does.
    let before = pool_jobs(&server);
    for _ in 0..5 {
        let r = server
            .invoke("at-rest", "text/csv", body.clone(), &[])
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body, first.body);
    }
    assert_eq!(
        pool_jobs(&server) - before,
        0,
        "cheap idle calls ran inline"
    );

    // A body too large to decode inline: decoded on the pool, and the same job runs its
    // batch. One hop, as unbatched; the answer is the unbatched one.
    let large: String = ROWS
        .iter()
        .cycle()
        .take(1200)
        .map(|r| format!("{r}\n"))
        .collect();
    assert!(large.len() > 16 * 1024);
    let before = pool_jobs(&server);
    let batched = server
        .invoke("at-rest", "text/csv", large.clone(), &[])
        .await;
    assert_eq!(batched.status, 200, "{}", batched.body);
    assert_eq!(pool_jobs(&server) - before, 1, "one pool job");
    let plain = server.invoke("at-rest-plain", "text/csv", large, &[]).await;
    assert_eq!(batched.body, plain.body);
    let text = server.metrics().await;
    let labels = ["endpoint=\"at-rest\""];
    assert_eq!(sample(&text, "pier_batch_size_count", &labels), Some(7.0));
    assert_eq!(sample(&text, "pier_batch_size_sum", &labels), Some(1224.0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    server.create_model("logreg", "iris-logreg").await;
    batched_config(
        &server,
        "tiny",
        "logreg",
        json!({"MaxBatchSize": 64, "MaxQueueDelayMicroseconds": 1000000, "MaxQueueSize": 1}),
    )
    .await;
    server.create_endpoint("tiny", "tiny").await;
    let first = server.invoke("tiny", "text/csv", ROWS[0], &[]);
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        let r = server.invoke("tiny", "text/csv", ROWS[1], &[]).await;
        (r, started.elapsed())
    };
    let (first, (second, waited)) = tokio::join!(first, second);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(second.status, 429, "{}", second.body);
    assert_eq!(second.json()["ErrorCode"], "ThrottlingException");
    assert!(
        waited.as_millis() < 500,
        "refused at once, not after {waited:?}"
    );
    let text = server.metrics().await;
    assert_eq!(
        sample(
            &text,
            "pier_requests_total{",
            &["endpoint=\"tiny\"", "outcome=\"queue_full\""]
        ),
        Some(1.0)
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batching_and_backend_settings_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let url = format!("file://{}", fixture("iris-logreg").display());
    let (status, body) = server
        .api(
            "CreateModel",
            json!({"ModelName": "m", "PrimaryContainer": {"Image": "onnx", "ModelDataUrl": url, "Environment": {"PIER_BACKEND": "caffe"}}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("PIER_BACKEND"),
        "{body}"
    );
    let (status, body) = server
        .api(
            "CreateModel",
            json!({"ModelName": "m", "PrimaryContainer": {"Image": "onnx", "ModelDataUrl": url, "Environment": {"PIER_DEVICE": "cuda"}}}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("PIER_BACKEND=ort"),
        "{body}"
    );
    if !cfg!(feature = "ort") {
        let (status, body) = server
            .api(
                "CreateModel",
                json!({"ModelName": "m", "PrimaryContainer": {"Image": "onnx", "ModelDataUrl": url, "Environment": {"PIER_BACKEND": "ort"}}}),
            )
            .await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["__type"], "ValidationException");
        assert!(
            body["message"].as_str().unwrap().contains("ONNX Runtime"),
            "{body}"
        );
    }

    // A model tract cannot load: the endpoint fails and the failure is counted.
    server.create_model("gbr", "iris-svm").await;
    server.create_config("gbr", &[("main", "gbr", 1.0)]).await;
    server
        .ok(
            "CreateEndpoint",
            json!({"EndpointName": "gbr", "EndpointConfigName": "gbr"}),
        )
        .await;
    let d = server.wait_endpoint("gbr").await;
    assert_eq!(d["EndpointStatus"], "Failed", "{d}");
    let text = server.metrics().await;
    assert!(
        sample(
            &text,
            "pier_model_load_failures_total",
            &["model=\"gbr\"", "backend=\"tract\""]
        )
        .is_some(),
        "{text}"
    );
    server.stop().await;
}
