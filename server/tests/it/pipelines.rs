//! Serial inference pipelines (CreateModel `Containers`, `InferenceExecutionConfig.Mode =
//! Serial`) against the real server: a pipeline answers exactly what the same containers
//! chained over HTTP answer (each container's answer in its
//! `SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT` is the next one's request), steps that do not fit
//! fail the endpoint naming the step, and the request shapes SageMaker refuses are refused.

use crate::common;

use common::{TestServer, fixture};
use serde_json::{Value, json};

fn container(fixture_name: &str, accept: Option<&str>, hostname: &str) -> Value {
    let mut c = json!({"Image": "onnx", "ContainerHostname": hostname,
                       "ModelDataUrl": format!("file://{}", fixture(fixture_name).display())});
    if let Some(a) = accept {
        c["Environment"] = json!({"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": a});
    }
    c
}

async fn deploy(server: &TestServer, name: &str, model: &str) -> Value {
    server.create_config(name, &[("v", model, 1.0)]).await;
    server
        .ok(
            "CreateEndpoint",
            json!({"EndpointName": name, "EndpointConfigName": name}),
        )
        .await;
    server.wait_endpoint(name).await
}

const ROWS: &str = "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n5.9,3.0,4.2,1.5\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pipeline_answers_what_its_containers_chained_over_http_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    // iris-logreg answers `label,p0,p1,p2` per row in CSV: four features for iris-mlp.
    server
        .ok(
            "CreateModel",
            json!({"ModelName": "chain",
                   "Containers": [container("iris-logreg", Some("text/csv"), "scorer"),
                                  container("iris-mlp", None, "classifier")],
                   "InferenceExecutionConfig": {"Mode": "Serial"}}),
        )
        .await;
    let d = server
        .ok("DescribeModel", json!({"ModelName": "chain"}))
        .await;
    assert!(d.get("PrimaryContainer").is_none(), "{d}");
    assert_eq!(d["Containers"].as_array().unwrap().len(), 2, "{d}");
    assert_eq!(d["InferenceExecutionConfig"]["Mode"], "Serial");
    assert_eq!(d["PierPipeline"].as_array().unwrap().len(), 2, "{d}");

    server.create_model("first", "iris-logreg").await;
    server.create_model("second", "iris-mlp").await;
    for (name, model) in [("pipe", "chain"), ("a", "first"), ("b", "second")] {
        let e = deploy(&server, name, model).await;
        assert_eq!(e["EndpointStatus"], "InService", "{e}");
    }
    for accept in ["text/csv", "application/json"] {
        let by_hand = {
            let a = server
                .invoke("a", "text/csv", ROWS, &[("Accept", "text/csv")])
                .await;
            assert_eq!(a.status, 200, "{}", a.body);
            server
                .invoke("b", "text/csv", a.body.clone(), &[("Accept", accept)])
                .await
        };
        let piped = server
            .invoke("pipe", "text/csv", ROWS, &[("Accept", accept)])
            .await;
        assert_eq!(piped.status, 200, "{}", piped.body);
        assert_eq!(piped.body, by_hand.body, "{accept}");
        assert_eq!(piped.variant.as_deref(), Some("v"));
    }
    // The pipeline is an endpoint's model, not a v2 Model of its own.
    let r = server
        .client
        .get(format!("http://{}/v2/models/chain", server.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn steps_that_do_not_fit_and_bad_requests_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    // iris-logreg's four CSV fields cannot feed cancer-forest's thirty features: the warm-up
    // request fails and the endpoint with it, naming the step.
    server
        .ok(
            "CreateModel",
            json!({"ModelName": "misfit",
                   "Containers": [container("iris-logreg", None, "scorer"),
                                  container("cancer-forest", None, "forest")]}),
        )
        .await;
    let e = deploy(&server, "misfit", "misfit").await;
    assert_eq!(e["EndpointStatus"], "Failed", "{e}");
    let reason = e["FailureReason"].as_str().unwrap();
    assert!(reason.contains("pipeline step 2 (forest)"), "{reason}");

    let cases = [
        (
            json!({"ModelName": "both", "PrimaryContainer": container("iris-logreg", None, "x"),
                   "Containers": [container("iris-logreg", None, "y")]}),
            "cannot both be given",
        ),
        (
            json!({"ModelName": "direct", "Containers": [container("iris-logreg", None, "x")],
                   "InferenceExecutionConfig": {"Mode": "Direct"}}),
            "InferenceExecutionConfig.Mode \"Direct\"",
        ),
        (
            json!({"ModelName": "many", "Containers": vec![container("iris-logreg", None, "x"); 16]}),
            "Containers must hold 1 to 15",
        ),
        (
            json!({"ModelName": "accept", "Containers": [
                container("iris-logreg", Some("image/png"), "x"),
                container("iris-mlp", None, "y")]}),
            "Containers[0].Environment SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT",
        ),
        (
            json!({"ModelName": "missing", "Containers": [
                container("iris-logreg", None, "x"),
                {"Image": "onnx"}]}),
            "Containers[1].ModelDataUrl is required",
        ),
        (
            json!({"ModelName": "gone", "Containers": [
                container("iris-logreg", None, "x"),
                {"Image": "onnx", "ModelDataUrl": "file:///nonexistent/model.onnx"}]}),
            "Containers[1]",
        ),
    ];
    for (request, expected) in cases {
        let (status, answer) = server.api("CreateModel", request.clone()).await;
        assert_eq!(status, 400, "{request}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(expected),
            "{expected}: {answer}"
        );
    }
    // The failed pipeline left nothing in the store: only the misfit's two imports.
    let store = pier_model_store::ModelStore::open(dir.path().join("store")).unwrap();
    let names: Vec<String> = store
        .list_names()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("gone"))
        .collect();
    assert!(
        names
            .iter()
            .all(|n| store.list_versions(n).unwrap().is_empty()),
        "{names:?}"
    );
    server.stop().await;
}
