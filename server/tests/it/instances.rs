//! Instance counts and autoscaling against the real server: `CurrentInstanceCount` follows
//! `DesiredInstanceCount`, `--max-instances` caps the sum (`ResourceLimitExceeded`), counts
//! change live with no failed request, and the Application Auto Scaling API (as boto3's
//! `application-autoscaling` client sends it) scales a variant out under load and back in
//! after the cooldown.

use crate::common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{IRIS_CSV, TestServer};
use serde_json::{Value, json};

const RESOURCE: &str = "endpoint/ep/variant/a";
const DIMENSION: &str = "sagemaker:variant:DesiredInstanceCount";

async fn start(max_instances: u32, interval_ms: u64) -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.instances.max_instances = max_instances;
    config.instances.autoscaling_interval = Duration::from_millis(interval_ms);
    let server = TestServer::start_with(config).await;
    (dir, server)
}

async fn endpoint_with(server: &TestServer, name: &str, count: u32) -> (u16, Value) {
    let config = format!("{name}-config");
    server
        .ok(
            "CreateEndpointConfig",
            json!({"EndpointConfigName": config, "ProductionVariants": [
                {"VariantName": "a", "ModelName": "iris", "InitialInstanceCount": count}]}),
        )
        .await;
    server
        .api(
            "CreateEndpoint",
            json!({"EndpointName": name, "EndpointConfigName": config}),
        )
        .await
}

fn counts(d: &Value) -> (u64, u64) {
    let v = &d["ProductionVariants"][0];
    (
        v["CurrentInstanceCount"].as_u64().unwrap(),
        v["DesiredInstanceCount"].as_u64().unwrap(),
    )
}

/// Calls `AnyScaleFrontendService.<action>` as boto3's application-autoscaling client does.
async fn aas(server: &TestServer, action: &str, body: Value) -> (u16, Value) {
    let r = server
        .client
        .post(format!("http://{}/", server.admin))
        .header("X-Amz-Target", format!("AnyScaleFrontendService.{action}"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn aas_ok(server: &TestServer, action: &str, body: Value) -> Value {
    let (status, answer) = aas(server, action, body).await;
    assert_eq!(status, 200, "{action}: {answer}");
    answer
}

/// Failed answers, as `status body`.
type Failures = Arc<std::sync::Mutex<Vec<String>>>;

/// Closed-loop clients until `stop`; counts answers and failures.
fn load(
    server: &Arc<TestServer>,
    clients: usize,
    stop: &Arc<AtomicBool>,
) -> (Arc<AtomicU64>, Failures, Vec<tokio::task::JoinHandle<()>>) {
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Failures::default());
    let tasks = (0..clients)
        .map(|_| {
            let (server, stop, ok, failed) =
                (server.clone(), stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let r = server.invoke("ep", "text/csv", IRIS_CSV, &[]).await;
                    if r.status == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed
                            .lock()
                            .unwrap()
                            .push(format!("{} {}", r.status, r.body));
                    }
                }
            })
        })
        .collect();
    (ok, failed, tasks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn counts_converge_change_live_and_are_capped() {
    let (_dir, server) = start(4, 60_000).await;
    server.create_model("iris", "iris-logreg").await;
    let (status, answer) = endpoint_with(&server, "ep", 2).await;
    assert_eq!(status, 200, "{answer}");
    let d = server.wait_endpoint("ep").await;
    assert_eq!(d["EndpointStatus"], "InService", "{d}");
    assert_eq!(counts(&d), (2, 2), "{d}");

    // Under load, the desired count changes live: no request fails, the count converges.
    let server = Arc::new(server);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, tasks) = load(&server, 16, &stop);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for n in [3, 1, 4, 2] {
        server
            .ok(
                "UpdateEndpointWeightsAndCapacities",
                json!({"EndpointName": "ep", "DesiredWeightsAndCapacities": [
                    {"VariantName": "a", "DesiredInstanceCount": n}]}),
            )
            .await;
        let d = server
            .ok("DescribeEndpoint", json!({"EndpointName": "ep"}))
            .await;
        assert_eq!(counts(&d), (n, n), "{d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*failed.lock().unwrap(), Vec::<String>::new());
    assert!(ok.load(Ordering::Relaxed) > 16, "the load ran");

    // Past --max-instances (4): refused, nothing changes.
    let (status, answer) = server
        .api(
            "UpdateEndpointWeightsAndCapacities",
            json!({"EndpointName": "ep", "DesiredWeightsAndCapacities": [
                {"VariantName": "a", "DesiredInstanceCount": 5}]}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["__type"], "ResourceLimitExceeded", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("--max-instances"),
        "{answer}"
    );
    let d = server
        .ok("DescribeEndpoint", json!({"EndpointName": "ep"}))
        .await;
    assert_eq!(counts(&d), (2, 2), "{d}");

    // The cap is over all endpoints: 2 held, 3 more do not fit, 2 do.
    let (status, answer) = endpoint_with(&server, "second", 3).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["__type"], "ResourceLimitExceeded", "{answer}");
    let (status, answer) = endpoint_with(&server, "third", 2).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        server.wait_endpoint("third").await["EndpointStatus"],
        "InService"
    );
    Arc::into_inner(server).unwrap().stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn autoscaling_api_and_target_tracking() {
    let (dir, server) = start(8, 200).await;
    server.create_model("iris", "iris-logreg").await;
    let (status, answer) = endpoint_with(&server, "ep", 1).await;
    assert_eq!(status, 200, "{answer}");
    server.wait_endpoint("ep").await;

    // Refusals name the problem.
    let (status, answer) = aas(
        &server,
        "PutScalingPolicy",
        json!({"PolicyName": "p", "ServiceNamespace": "sagemaker", "ResourceId": RESOURCE,
               "ScalableDimension": DIMENSION, "PolicyType": "TargetTrackingScaling",
               "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 60.0,
                 "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}}}),
    )
    .await;
    assert_eq!(
        (status, answer["__type"].as_str()),
        (400, Some("ObjectNotFoundException")),
        "{answer}"
    );
    for (body, word) in [
        (
            json!({"ServiceNamespace": "ecs", "ResourceId": RESOURCE, "ScalableDimension": DIMENSION, "MinCapacity": 1, "MaxCapacity": 2}),
            "namespace",
        ),
        (
            json!({"ServiceNamespace": "sagemaker", "ResourceId": "endpoint/nope/variant/a", "ScalableDimension": DIMENSION, "MinCapacity": 1, "MaxCapacity": 2}),
            "nope",
        ),
        (
            json!({"ServiceNamespace": "sagemaker", "ResourceId": RESOURCE, "ScalableDimension": DIMENSION, "MinCapacity": 3, "MaxCapacity": 2}),
            "greater",
        ),
        (
            json!({"ServiceNamespace": "sagemaker", "ResourceId": RESOURCE, "ScalableDimension": DIMENSION, "MinCapacity": 1, "MaxCapacity": 9}),
            "--max-instances",
        ),
    ] {
        let (status, answer) = aas(&server, "RegisterScalableTarget", body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(word),
            "{word}: {answer}"
        );
    }

    let registered = aas_ok(
        &server,
        "RegisterScalableTarget",
        json!({"ServiceNamespace": "sagemaker", "ResourceId": RESOURCE, "ScalableDimension": DIMENSION,
               "MinCapacity": 1, "MaxCapacity": 4}),
    )
    .await;
    assert!(
        registered["ScalableTargetARN"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:application-autoscaling:")
    );
    let targets = aas_ok(
        &server,
        "DescribeScalableTargets",
        json!({"ServiceNamespace": "sagemaker"}),
    )
    .await;
    assert_eq!(
        targets["ScalableTargets"][0]["ResourceId"], RESOURCE,
        "{targets}"
    );
    assert_eq!(targets["ScalableTargets"][0]["MaxCapacity"], 4, "{targets}");

    // 60 invocations a minute per instance: sixteen busy clients ask for far more than 4.
    let policy = aas_ok(
        &server,
        "PutScalingPolicy",
        json!({"PolicyName": "tt", "ServiceNamespace": "sagemaker", "ResourceId": RESOURCE,
               "ScalableDimension": DIMENSION, "PolicyType": "TargetTrackingScaling",
               "TargetTrackingScalingPolicyConfiguration": {"TargetValue": 60.0,
                 "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                 "ScaleOutCooldown": 1, "ScaleInCooldown": 2}}),
    )
    .await;
    assert!(
        policy["PolicyARN"]
            .as_str()
            .unwrap()
            .contains("policyName/tt"),
        "{policy}"
    );
    assert_eq!(policy["Alarms"].as_array().unwrap().len(), 2, "{policy}");

    let server = Arc::new(server);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, tasks) = load(&server, 16, &stop);
    let wait_for = |want: u64, within: Duration| {
        let server = server.clone();
        async move {
            let deadline = Instant::now() + within;
            loop {
                let d = server
                    .ok("DescribeEndpoint", json!({"EndpointName": "ep"}))
                    .await;
                if counts(&d) == (want, want) {
                    return;
                }
                assert!(Instant::now() < deadline, "count never reached {want}: {d}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    wait_for(4, Duration::from_secs(20)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        *failed.lock().unwrap(),
        Vec::<String>::new(),
        "no request failed while scaling"
    );
    assert!(ok.load(Ordering::Relaxed) > 0);
    // Idle: back to MinCapacity after the scale-in cooldown.
    let idle = Instant::now();
    wait_for(1, Duration::from_secs(20)).await;
    assert!(
        idle.elapsed() >= Duration::from_millis(500),
        "scale-in waited for no cooldown"
    );

    let activities = aas_ok(
        &server,
        "DescribeScalingActivities",
        json!({"ServiceNamespace": "sagemaker", "ResourceId": RESOURCE}),
    )
    .await;
    let list = activities["ScalingActivities"].as_array().unwrap();
    assert!(list.len() >= 2, "{activities}");
    assert!(
        list.iter().all(|a| a["StatusCode"] == "Successful"),
        "{activities}"
    );
    assert_eq!(
        list[0]["Description"], "Setting desired instance count to 1.",
        "{activities}"
    );
    assert!(
        list.iter()
            .any(|a| a["Cause"].as_str().unwrap().contains("AlarmHigh")),
        "{activities}"
    );
    assert!(
        list[0]["Cause"].as_str().unwrap().contains("AlarmLow"),
        "{activities}"
    );

    // Records survive a restart.
    let server = Arc::into_inner(server).unwrap();
    server.stop().await;
    let mut config = common::config(dir.path());
    config.instances.max_instances = 8;
    config.instances.autoscaling_interval = Duration::from_secs(60);
    let server = TestServer::start_with(config).await;
    server.wait_endpoint("ep").await;
    let policies = aas_ok(
        &server,
        "DescribeScalingPolicies",
        json!({"ServiceNamespace": "sagemaker"}),
    )
    .await;
    assert_eq!(
        policies["ScalingPolicies"][0]["PolicyName"], "tt",
        "{policies}"
    );

    // Deregistering removes the target and its policies; a second time is ObjectNotFound.
    let id = json!({"ServiceNamespace": "sagemaker", "ResourceId": RESOURCE, "ScalableDimension": DIMENSION});
    aas_ok(&server, "DeregisterScalableTarget", id.clone()).await;
    let (status, answer) = aas(&server, "DeregisterScalableTarget", id).await;
    assert_eq!(
        (status, answer["__type"].as_str()),
        (400, Some("ObjectNotFoundException")),
        "{answer}"
    );
    let policies = aas_ok(
        &server,
        "DescribeScalingPolicies",
        json!({"ServiceNamespace": "sagemaker"}),
    )
    .await;
    assert_eq!(policies["ScalingPolicies"], json!([]), "{policies}");
    server.stop().await;
}

/// The value of the first `/metrics` sample starting with `prefix` and holding every label.
fn sample(text: &str, prefix: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(prefix) && labels.iter().all(|x| l.contains(x)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Polls until the variant's current count is `n` and it shows no `VariantStatus`.
async fn wait_current(server: &TestServer, endpoint: &str, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = server
            .ok("DescribeEndpoint", json!({"EndpointName": endpoint}))
            .await;
        let v = &d["ProductionVariants"][0];
        let updating = v["VariantStatus"].as_array().is_some_and(|s| !s.is_empty());
        if v["CurrentInstanceCount"] == n && !updating {
            return d;
        }
        assert!(Instant::now() < deadline, "count never converged: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where an instance is real resources (batch slots; an ONNX Runtime session pool each),
/// a new count builds them on the side and swaps them in: the current count follows once
/// they serve, requests in flight never fail, and an ort variant loads a copy with the
/// sessions of every instance (`pier_model_loads_total` counts it) while a tract one
/// shares its one loaded model.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resource_counts_are_built_then_swapped_in_without_a_failed_request() {
    let (_dir, server) = start(8, 60_000).await;
    let url = format!("file://{}", common::fixture("iris-logreg").display());
    let ort = cfg!(feature = "ort");
    if !ort {
        eprintln!(
            "the ONNX Runtime half of this test needs `--features ort` and ORT_DYLIB_PATH; \
             here only the batched tract variant is checked"
        );
    }
    let mut environment = json!({});
    if ort {
        environment = json!({"PIER_BACKEND": "ort", "PIER_SESSIONS": "1"});
    }
    server
        .ok(
            "CreateModel",
            json!({"ModelName": "scaled", "PrimaryContainer": {"Image": "onnx",
                   "ModelDataUrl": url, "Environment": environment}}),
        )
        .await;
    server
        .ok(
            "CreateEndpointConfig",
            json!({"EndpointConfigName": "ep-config", "ProductionVariants": [
                {"VariantName": "a", "ModelName": "scaled", "InitialInstanceCount": 1,
                 "PierBatching": {"MaxBatchSize": 8}}]}),
        )
        .await;
    server
        .ok(
            "CreateEndpoint",
            json!({"EndpointName": "ep", "EndpointConfigName": "ep-config"}),
        )
        .await;
    assert_eq!(
        server.wait_endpoint("ep").await["EndpointStatus"],
        "InService"
    );
    let backend = if ort { "ort" } else { "tract" };
    let loads = |text: &str| {
        sample(
            text,
            "pier_model_loads_total",
            &["model=\"scaled\"", &format!("backend=\"{backend}\"")],
        )
        .unwrap_or(0.0)
    };
    let before = loads(&server.metrics().await);
    assert!(before >= 1.0, "the variant's model was loaded");

    let server = Arc::new(server);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, tasks) = load(&server, 8, &stop);
    tokio::time::sleep(Duration::from_millis(200)).await;
    server
        .ok(
            "UpdateEndpointWeightsAndCapacities",
            json!({"EndpointName": "ep", "DesiredWeightsAndCapacities": [
                {"VariantName": "a", "DesiredInstanceCount": 3}]}),
        )
        .await;
    let d = wait_current(&server, "ep", 3).await;
    assert_eq!(counts(&d), (3, 3), "{d}");
    assert!(d.get("FailureReason").is_none(), "{d}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*failed.lock().unwrap(), Vec::<String>::new());
    assert!(ok.load(Ordering::Relaxed) > 8, "the load ran");
    let after = loads(&server.metrics().await);
    if ort {
        assert_eq!(
            after,
            before + 1.0,
            "three instances load three sessions' copy"
        );
    } else {
        assert_eq!(after, before, "a tract variant shares its loaded model");
    }
    // The swapped-in copy serves.
    let r = server.invoke("ep", "text/csv", IRIS_CSV, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    Arc::into_inner(server).unwrap().stop().await;
}
