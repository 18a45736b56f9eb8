//! Data capture and shadow variants against the real server: captured files are SageMaker's
//! JSON Lines under `<dest>/<endpoint>/<variant>/yyyy/mm/dd/hh/`, hold exactly what was sent
//! and answered, are complete when they appear, are flushed at shutdown, and a full queue
//! drops (and counts) events without delaying a request; shadow variants get copies of the
//! requests, never answer the caller, and their agreement is counted.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{IRIS_CSV, TestServer};
use serde_json::{Value, json};

/// Every `.jsonl` file under `dir`, and every other file (none should be there).
fn files(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut jsonl, mut other) = (Vec::new(), Vec::new());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "jsonl") {
                jsonl.push(p);
            } else {
                other.push(p);
            }
        }
    }
    jsonl.sort();
    (jsonl, other)
}

/// Every captured line under `dir`, parsed; once the capture is complete, only whole
/// `.jsonl` files may be there (a writer's temporary file is a file still being written).
fn lines(dir: &Path) -> Vec<(PathBuf, Value)> {
    let (got, other) = lines_so_far(dir);
    assert!(other.is_empty(), "only complete .jsonl files: {other:?}");
    got
}

/// The lines of the complete files under `dir`, and the other files found.
fn lines_so_far(dir: &Path) -> (Vec<(PathBuf, Value)>, Vec<PathBuf>) {
    let (jsonl, other) = files(dir);
    let mut out = Vec::new();
    for f in jsonl {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.ends_with('\n'), "{f:?} ends with a whole line");
        for l in text.lines() {
            out.push((f.clone(), serde_json::from_str(l).unwrap()));
        }
    }
    (out, other)
}

async fn wait_lines(dir: &Path, n: usize) -> Vec<(PathBuf, Value)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (got, _) = lines_so_far(dir);
        if got.len() >= n {
            return lines(dir);
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} captured lines",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sample(text: &str, prefix: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn start(data: &Path, flush: Duration, queue_bytes: usize) -> TestServer {
    let mut config = common::config(data);
    config.capture.flush_interval = flush;
    config.capture.queue_bytes = queue_bytes;
    TestServer::start_with(config).await
}

fn capture_config(dest: &Path, percent: u32) -> Value {
    json!({
        "EnableCapture": true,
        "InitialSamplingPercentage": percent,
        "DestinationS3Uri": format!("file://{}", dest.display()),
        "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        "CaptureContentTypeHeader": {"CsvContentTypes": ["text/csv"],
                                     "JsonContentTypes": ["application/json"]}
    })
}

async fn endpoint(server: &TestServer, name: &str, extra: Value) {
    let mut config = json!({"EndpointConfigName": name, "ProductionVariants": [
        {"VariantName": "a", "ModelName": "iris", "InitialInstanceCount": 1}]});
    for (k, v) in extra.as_object().unwrap() {
        config[k] = v.clone();
    }
    server.ok("CreateEndpointConfig", config).await;
    server
        .ok(
            "CreateEndpoint",
            json!({"EndpointName": name, "EndpointConfigName": name}),
        )
        .await;
    let d = server.wait_endpoint(name).await;
    assert_eq!(d["EndpointStatus"], "InService", "{d}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_sampled_request_is_captured_as_sagemaker_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("capture");
    let server = start(
        &dir.path().join("data"),
        Duration::from_millis(100),
        64 << 20,
    )
    .await;
    server.create_model("iris", "iris-logreg").await;
    endpoint(
        &server,
        "cap",
        json!({"DataCaptureConfig": capture_config(&dest, 100)}),
    )
    .await;
    let d = server
        .ok("DescribeEndpoint", json!({"EndpointName": "cap"}))
        .await;
    assert_eq!(
        d["DataCaptureConfig"],
        json!({"EnableCapture": true, "CaptureStatus": "Started",
               "CurrentSamplingPercentage": 100,
               "DestinationS3Uri": format!("file://{}", dest.display())}),
        "{d}"
    );
    let mut answers = Vec::new();
    for i in 0..12 {
        let id = format!("inference-{i}");
        let body = format!("5.{i},3.5,1.4,0.2\n");
        let r = server
            .invoke(
                "cap",
                "text/csv",
                body.clone(),
                &[
                    ("Accept", "application/json"),
                    ("X-Amzn-SageMaker-Inference-Id", &id),
                    ("X-Amzn-SageMaker-Custom-Attributes", "trace=1"),
                ],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        answers.push((id, body, r.body));
    }
    let got = wait_lines(&dest, 12).await;
    assert_eq!(got.len(), 12);
    for (path, line) in &got {
        let relative = path.strip_prefix(&dest).unwrap();
        let parts: Vec<_> = relative.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(&parts[..2], ["cap", "a"], "{relative:?}");
        assert_eq!(parts.len(), 7, "cap/a/yyyy/mm/dd/hh/file: {relative:?}");
        assert_eq!(parts[2].len(), 4);
        let id = line["eventMetadata"]["inferenceId"].as_str().unwrap();
        let (_, body, answer) = answers.iter().find(|(i, ..)| i == id).unwrap();
        let input = &line["captureData"]["endpointInput"];
        assert_eq!(input["data"], body.as_str(), "{line}");
        assert_eq!(
            (
                &input["encoding"],
                &input["mode"],
                &input["observedContentType"]
            ),
            (&json!("CSV"), &json!("INPUT"), &json!("text/csv"))
        );
        let output = &line["captureData"]["endpointOutput"];
        assert_eq!(output["data"], answer.as_str(), "{line}");
        assert_eq!(
            (&output["encoding"], &output["observedContentType"]),
            (&json!("JSON"), &json!("application/json"))
        );
        assert_eq!(line["eventMetadata"]["customAttributes"], "trace=1");
        assert_eq!(line["eventVersion"], "0");
    }
    // After a restart (capture comes back with the endpoint), ten more; a stop with a long
    // flush interval still writes them.
    server.stop().await;
    let server = start(
        &dir.path().join("data"),
        Duration::from_secs(3600),
        64 << 20,
    )
    .await;
    assert_eq!(
        server.wait_endpoint("cap").await["EndpointStatus"],
        "InService"
    );
    for _ in 0..10 {
        let r = server.invoke("cap", "text/csv", IRIS_CSV, &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    server.stop().await;
    let got = lines(&dest);
    assert_eq!(got.len(), 22, "the stop wrote what was queued");
    let csv = got
        .iter()
        .filter(|(_, l)| l["captureData"]["endpointInput"]["encoding"] == "CSV")
        .count();
    assert_eq!(csv, 22, "this config lists text/csv as CSV");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sampling_queue_limits_and_bad_configs() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("capture");
    // A queue of 8 bytes holds no event: every sampled one is dropped and counted.
    let server = start(&dir.path().join("data"), Duration::from_millis(50), 8).await;
    server.create_model("iris", "iris-logreg").await;
    endpoint(
        &server,
        "none",
        json!({"DataCaptureConfig": capture_config(&dest.join("zero"), 0)}),
    )
    .await;
    endpoint(
        &server,
        "full",
        json!({"DataCaptureConfig": capture_config(&dest.join("full"), 100)}),
    )
    .await;
    for _ in 0..10 {
        for name in ["none", "full"] {
            let r = server.invoke(name, "text/csv", IRIS_CSV, &[]).await;
            assert_eq!(r.status, 200, "{}", r.body);
        }
    }
    let metrics = server.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "pier_capture_dropped_total",
            &["endpoint=\"full\"", "reason=\"queue_full\""]
        ),
        10.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "pier_capture_dropped_total",
            &["endpoint=\"none\""]
        ),
        0.0
    );
    server.stop().await;
    assert!(files(&dest).0.is_empty(), "nothing sampled or kept");

    let server = start(
        &dir.path().join("data2"),
        Duration::from_millis(50),
        1 << 20,
    )
    .await;
    server.create_model("iris", "iris-logreg").await;
    let variants = json!([{"VariantName": "a", "ModelName": "iris"}]);
    let good = capture_config(&dest, 50);
    let mut bad_cases: Vec<(Value, &str)> = Vec::new();
    let mut c = good.clone();
    c["InitialSamplingPercentage"] = json!(101);
    bad_cases.push((c, "InitialSamplingPercentage"));
    let mut c = good.clone();
    c["CaptureOptions"] = json!([{"CaptureMode": "Both"}]);
    bad_cases.push((c, "captureMode"));
    let mut c = good.clone();
    c["CaptureOptions"] = json!([]);
    bad_cases.push((c, "CaptureOptions"));
    let mut c = good.clone();
    c["KmsKeyId"] = json!("alias/x");
    bad_cases.push((c, "KmsKeyId"));
    let mut c = good.clone();
    c["DestinationS3Uri"] = json!("ftp://host/x");
    bad_cases.push((c, "DestinationS3Uri"));
    let mut c = good.clone();
    c["DestinationS3Uri"] = json!("file:///proc/capture");
    bad_cases.push((c, "DestinationS3Uri"));
    let mut c = good.clone();
    c["Bogus"] = json!(1);
    bad_cases.push((c, "Bogus"));
    for (i, (capture, field)) in bad_cases.into_iter().enumerate() {
        let (status, e) = server
            .api(
                "CreateEndpointConfig",
                json!({"EndpointConfigName": format!("bad-{i}"), "ProductionVariants": variants,
                       "DataCaptureConfig": capture}),
            )
            .await;
        assert_eq!(status, 400, "{field}: {e}");
        assert!(
            e["message"].as_str().unwrap().contains(field),
            "{field}: {e}"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shadows_get_copies_never_answer_and_are_compared() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("capture");
    let server = start(
        &dir.path().join("data"),
        Duration::from_millis(50),
        64 << 20,
    )
    .await;
    server.create_model("iris", "iris-logreg").await;
    server.create_model("iris-copy", "iris-logreg").await;
    server.create_model("cancer", "cancer-forest").await;
    endpoint(
        &server,
        "shadowed",
        json!({
            "ShadowProductionVariants": [
                {"VariantName": "same", "ModelName": "iris-copy", "InitialVariantWeight": 1.0},
                // Takes 30 features: every copy fails, the caller never sees it.
                {"VariantName": "broken", "ModelName": "cancer", "InitialVariantWeight": 2.0}
            ],
            "DataCaptureConfig": capture_config(&dest, 100),
        }),
    )
    .await;
    let d = server
        .ok("DescribeEndpoint", json!({"EndpointName": "shadowed"}))
        .await;
    let shadows: Vec<&str> = d["ShadowProductionVariants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["VariantName"].as_str().unwrap())
        .collect();
    assert_eq!(shadows, ["same", "broken"], "{d}");
    assert_eq!(d["ProductionVariants"].as_array().unwrap().len(), 1);
    let c = server
        .ok(
            "DescribeEndpointConfig",
            json!({"EndpointConfigName": "shadowed"}),
        )
        .await;
    assert_eq!(
        c["ShadowProductionVariants"][1]["InitialVariantWeight"],
        2.0
    );
    // A shadow is not a variant a caller can name.
    let r = server
        .invoke(
            "shadowed",
            "text/csv",
            IRIS_CSV,
            &[("X-Amzn-SageMaker-Target-Variant", "same")],
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    for _ in 0..15 {
        let r = server.invoke("shadowed", "text/csv", IRIS_CSV, &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.variant.as_deref(), Some("a"));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        let m = server.metrics().await;
        let done = sample(
            &m,
            "pier_shadow_comparisons_total",
            &["endpoint=\"shadowed\""],
        );
        if done >= 30.0 {
            break m;
        }
        assert!(Instant::now() < deadline, "{done} comparisons: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let count = |variant: &str, result: &str| {
        sample(
            &metrics,
            "pier_shadow_comparisons_total",
            &[
                "endpoint=\"shadowed\"",
                &format!("variant=\"{variant}\""),
                &format!("result=\"{result}\""),
            ],
        )
    };
    assert_eq!(count("same", "agree"), 15.0, "{metrics}");
    assert_eq!(count("same", "disagree"), 0.0);
    assert_eq!(count("broken", "failed"), 15.0, "{metrics}");
    // The shadow's requests are counted under its own variant label.
    assert_eq!(
        sample(
            &metrics,
            "pier_requests_total",
            &["endpoint=\"shadowed\"", "variant=\"same\""]
        ),
        15.0,
        "{metrics}"
    );
    // Captured: the production variant's 15 (the refused one is not) and the agreeing
    // shadow's 15 under its own prefix; the failing shadow answered nothing to capture.
    let got = wait_lines(&dest, 30).await;
    let under = |variant: &str| {
        got.iter()
            .filter(|(p, _)| p.starts_with(dest.join("shadowed").join(variant)))
            .count()
    };
    assert_eq!((under("a"), under("same"), under("broken")), (15, 15, 0));
    server.stop().await;
}
