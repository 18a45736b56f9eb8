//! `pier serve --model-dir` (Pier as a KServe runtime): with the model's name as the default
//! endpoint, the server is live but not ready until `model_dir::install` has deployed the
//! folder's model; then v2 REST and SageMaker's `/invocations` serve it under that name. A
//! model that does not load is reported with the reason, and readiness stays off.

use crate::common;

use std::collections::BTreeMap;

use common::TestServer;
use pier_server::model_dir::{ModelDir, install};
use serde_json::{Value, json};

async fn status(server: &TestServer, path: &str) -> u16 {
    server
        .client
        .get(format!("http://{}{path}", server.http))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn model_dir(dir: &std::path::Path, name: &str) -> ModelDir {
    ModelDir {
        dir: dir.to_path_buf(),
        name: name.into(),
        runtime: None,
        environment: BTreeMap::new(),
    }
}

async fn start(data: &std::path::Path, name: &str, models: &std::path::Path) -> TestServer {
    let mut config = common::config(data);
    config.default_endpoint = Some(name.into());
    config.jobs.slots = 0;
    config.import.roots.push(models.to_path_buf());
    TestServer::start_with(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_once_the_folders_model_is_in_service() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("mnt/models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::copy(common::fixture("iris-logreg"), models.join("model.onnx")).unwrap();
    std::fs::write(models.join("model-settings.json"), "{}").unwrap();
    let server = start(&tmp.path().join("data"), "iris", &models).await;

    assert_eq!(status(&server, "/v2/health/live").await, 200);
    assert_eq!(status(&server, "/v2/health/ready").await, 503);
    assert_eq!(status(&server, "/ping").await, 503);
    assert_eq!(status(&server, "/v2/models/iris/ready").await, 404);

    install(
        &server.server.as_ref().unwrap().state,
        &model_dir(&models, "iris"),
    )
    .await
    .unwrap();
    assert_eq!(status(&server, "/v2/health/ready").await, 200);
    assert_eq!(status(&server, "/ping").await, 200);
    assert_eq!(status(&server, "/v2/models/iris/ready").await, 200);

    let r = server
        .client
        .post(format!("http://{}/v2/models/iris/infer", server.http))
        .json(
            &json!({"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32",
            "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model_name"], "iris");
    let label = body["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "label")
        .unwrap();
    assert_eq!(label["data"], json!([0, 2]));
    // SageMaker's container contract serves the same model.
    let r = server
        .client
        .post(format!("http://{}/invocations", server.http))
        .header("content-type", "text/csv")
        .body("5.1,3.5,1.4,0.2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-amzn-invoked-production-variant"],
        pier_server::model_dir::VARIANT
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_does_not_load_is_reported_and_never_ready() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("model.onnx"), b"not a model").unwrap();
    let server = start(&tmp.path().join("data"), "broken", tmp.path()).await;
    let e = install(
        &server.server.as_ref().unwrap().state,
        &model_dir(&models, "broken"),
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("model.onnx is not a valid onnx model"),
        "the reason names the file: {e}"
    );
    assert_eq!(status(&server, "/v2/health/ready").await, 503);
    assert_eq!(status(&server, "/v2/health/live").await, 200);

    // A LightGBM file named as KServe's lgbserver names it, under a wrong --runtime.
    let lgb = tmp.path().join("lgb");
    std::fs::create_dir_all(&lgb).unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../fixtures/trees/lgb_binary.txt"
        ),
        lgb.join("model.bst"),
    )
    .unwrap();
    let mut wrong = model_dir(&lgb, "lgb");
    wrong.runtime = Some("xgboost".into());
    let e = install(&server.server.as_ref().unwrap().state, &wrong)
        .await
        .unwrap_err();
    assert!(e.contains("lightgbm"), "the reason names the format: {e}");
    server.stop().await;
}
