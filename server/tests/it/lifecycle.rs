//! Endpoint lifecycle across failures and restarts: a corrupt artifact never replaces what
//! serves, and a restart brings every endpoint back with the same config, weights and
//! versions. Also the control plane's error codes.

use crate::common;

use common::{IRIS_CSV, TestServer, fixture};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_update_keeps_old_version_and_restart_restores() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    server.create_model("good", "iris-logreg").await;
    server.create_model("other", "iris-mlp").await;
    server
        .create_config("c1", &[("a", "good", 3.0), ("b", "other", 1.0)])
        .await;
    server.create_endpoint("e", "c1").await;
    server
        .ok(
            "UpdateEndpointWeightsAndCapacities",
            json!({"EndpointName": "e", "DesiredWeightsAndCapacities": [{"VariantName": "a", "DesiredWeight": 1.0}, {"VariantName": "b", "DesiredWeight": 0.0}]}),
        )
        .await;

    // A model whose artifact is corrupted on disk after CreateModel.
    server.create_model("broken", "iris-mlp").await;
    let file = dir.path().join("store/broken/1/model.onnx");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    server.create_config("c2", &[("a", "broken", 1.0)]).await;
    server
        .ok(
            "UpdateEndpoint",
            json!({"EndpointName": "e", "EndpointConfigName": "c2"}),
        )
        .await;
    let d = server.wait_endpoint("e").await;
    assert_eq!(d["EndpointStatus"], "InService");
    assert_eq!(
        d["EndpointConfigName"], "c1",
        "the old config keeps serving"
    );
    let reason = d["FailureReason"].as_str().unwrap();
    assert!(
        reason.contains("model.onnx") && reason.contains("corrupt"),
        "{reason}"
    );
    let r = server.invoke("e", "text/csv", IRIS_CSV, &[]).await;
    assert_eq!(
        (r.status, r.model.as_deref()),
        (200, Some("good/1")),
        "{}",
        r.body
    );

    server.stop().await;
    let server = TestServer::start(dir.path()).await;
    let d = server
        .ok("DescribeEndpoint", json!({"EndpointName": "e"}))
        .await;
    assert_eq!(d["EndpointStatus"], "InService", "{d}");
    assert_eq!(d["EndpointConfigName"], "c1");
    assert_eq!(
        d["ProductionVariants"][0]["CurrentWeight"], 1.0,
        "weights survive a restart"
    );
    assert_eq!(d["ProductionVariants"][1]["CurrentWeight"], 0.0);
    assert_eq!(d["ProductionVariants"][0]["PierArtifact"], "good/1");
    for _ in 0..20 {
        let r = server.invoke("e", "text/csv", IRIS_CSV, &[]).await;
        assert_eq!(
            (r.status, r.variant.as_deref()),
            (200, Some("a")),
            "{}",
            r.body
        );
    }
    let ping = server
        .client
        .get(format!("http://{}/ping", server.http))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_errors_use_sagemaker_codes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let url = format!("file://{}", fixture("iris-logreg").display());

    let (s, e) = server
        .api("DescribeModel", json!({"ModelName": "nope"}))
        .await;
    assert_eq!(
        (s, e["__type"].as_str(), e["message"].as_str()),
        (
            400,
            Some("ValidationException"),
            Some("Could not find model \"arn:aws:sagemaker:local:000000000000:model/nope\".")
        ),
        "SageMaker's words: {e}"
    );
    let (s, e) = server.api("CreateModel", json!({"ModelName": "bad_name", "PrimaryContainer": {"Image": "onnx", "ModelDataUrl": url}})).await;
    assert_eq!(
        (s, e["__type"].as_str()),
        (400, Some("ValidationException")),
        "{e}"
    );
    let (s, e) = server
        .api(
            "CreateModel",
            json!({"ModelName": "m", "PrimaryContainer": {"Image": "caffe", "ModelDataUrl": url}}),
        )
        .await;
    assert!(
        s == 400 && e["message"].as_str().unwrap().contains("caffe"),
        "{e}"
    );
    let (s, e) = server.api("CreateModel", json!({"ModelName": "m", "PrimaryContainer": {"Image": "onnx", "ModelDataUrl": "/no/such/file.onnx"}})).await;
    assert!(
        s == 400
            && e["message"]
                .as_str()
                .unwrap()
                .contains("/no/such/file.onnx"),
        "{e}"
    );
    let (s, e) = server.api("CreateModel", json!({"ModelName": "m"})).await;
    assert!(
        s == 400 && e["message"].as_str().unwrap().contains("PrimaryContainer"),
        "{e}"
    );
    let (s, e) = server
        .api(
            "CreateModel",
            json!({"PrimaryContainer": {"Image": "onnx"}}),
        )
        .await;
    assert!(
        s == 400 && e["message"].as_str().unwrap().contains("ModelName"),
        "{e}"
    );

    server
        .ok(
            "CreateModel",
            json!({"ModelName": "m", "PrimaryContainer": {"Image": "onnx", "ModelDataUrl": url}}),
        )
        .await;
    let (s, e) = server
        .api(
            "CreateModel",
            json!({"ModelName": "m", "PrimaryContainer": {"Image": "onnx", "ModelDataUrl": url}}),
        )
        .await;
    assert_eq!(
        (s, e["__type"].as_str(), e["message"].as_str()),
        (
            400,
            Some("ValidationException"),
            Some(
                "Cannot create already existing model \"arn:aws:sagemaker:local:000000000000:model/m\"."
            )
        ),
        "{e}"
    );
    // The store reference form pins the version.
    server.ok("CreateModel", json!({"ModelName": "m2", "PrimaryContainer": {"Image": "onnx", "ModelDataUrl": "pier://m"}})).await;
    let d = server.ok("DescribeModel", json!({"ModelName": "m2"})).await;
    assert_eq!(d["PierArtifact"], json!({"Name": "m", "Version": 1}));

    let (s, e) = server.api("CreateEndpointConfig", json!({"EndpointConfigName": "c", "ProductionVariants": [{"VariantName": "v", "ModelName": "ghost"}]})).await;
    assert!(
        s == 400 && e["message"].as_str().unwrap().contains("ghost"),
        "{e}"
    );
    let (s, _) = server.api("CreateEndpointConfig", json!({"EndpointConfigName": "c", "ProductionVariants": [{"VariantName": "v", "ModelName": "m", "InitialVariantWeight": -1.0}]})).await;
    assert_eq!(s, 400);
    server.create_config("c", &[("v", "m", 1.0)]).await;
    let (s, e) = server
        .api(
            "CreateEndpoint",
            json!({"EndpointName": "e", "EndpointConfigName": "missing"}),
        )
        .await;
    assert_eq!(
        (s, e["__type"].as_str(), e["message"].as_str()),
        (
            400,
            Some("ValidationException"),
            Some("Could not find endpoint configuration \"missing\".")
        ),
        "{e}"
    );
    server.create_endpoint("e", "c").await;
    let (s, e) = server.api("SageMaker.Frobnicate", json!({})).await;
    assert_eq!(s, 400, "{e}");

    let list = server
        .ok(
            "ListModels",
            json!({"MaxResults": 1, "SortBy": "Name", "SortOrder": "Ascending"}),
        )
        .await;
    assert_eq!(list["Models"][0]["ModelName"], "m");
    let next = list["NextToken"].as_str().unwrap();
    let list = server
        .ok(
            "ListModels",
            json!({"MaxResults": 1, "SortBy": "Name", "SortOrder": "Ascending", "NextToken": next}),
        )
        .await;
    assert_eq!(list["Models"][0]["ModelName"], "m2");
    assert!(list.get("NextToken").is_none());

    // As in SageMaker, the config and model of a live endpoint may be deleted: it keeps
    // serving what it loaded, and a restart restores it from what it recorded at deploy.
    server
        .ok("DeleteEndpointConfig", json!({"EndpointConfigName": "c"}))
        .await;
    server.ok("DeleteModel", json!({"ModelName": "m"})).await;
    let r = server.invoke("e", "text/csv", IRIS_CSV, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    server.stop().await;
    let server = TestServer::start(dir.path()).await;
    let d = server
        .ok("DescribeEndpoint", json!({"EndpointName": "e"}))
        .await;
    assert_eq!(d["EndpointStatus"], "InService", "{d}");
    assert!(d.get("PierDeployed").is_none(), "{d}");
    assert_eq!(d["ProductionVariants"][0]["PierArtifact"], "m/1");
    let r = server.invoke("e", "text/csv", IRIS_CSV, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);

    server
        .ok("DeleteEndpoint", json!({"EndpointName": "e"}))
        .await;
    let r = server.invoke("e", "text/csv", IRIS_CSV, &[]).await;
    assert_eq!(r.status, 400);
    let (s, e) = server.api("DeleteModel", json!({"ModelName": "m"})).await;
    assert_eq!(
        (s, e["__type"].as_str()),
        (400, Some("ValidationException")),
        "{e}"
    );
    server.stop().await;
}

/// Sets an endpoint's recorded status directly, as a change under way would leave it.
async fn force_status(server: &TestServer, name: &str, status: &str) {
    use pier_server::db::Table;
    let state = &server.server.as_ref().unwrap().state;
    let _guard = state.control.lock().await;
    let mut record: serde_json::Value =
        state.db.get(Table::Endpoints, name).await.unwrap().unwrap();
    record["EndpointStatus"] = json!(status);
    state
        .db
        .update(Table::Endpoints, name, &record)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagemaker_rules_for_changes_under_way_and_interrupted_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    server.create_model("m", "iris-logreg").await;
    server.create_config("c", &[("v", "m", 1.0)]).await;
    server.create_endpoint("e", "c").await;
    let arn = "arn:aws:sagemaker:local:000000000000:endpoint/e";

    force_status(&server, "e", "Updating").await;
    let (s, e) = server
        .api(
            "UpdateEndpoint",
            json!({"EndpointName": "e", "EndpointConfigName": "c"}),
        )
        .await;
    assert_eq!(
        (s, e["__type"].as_str(), e["message"].as_str()),
        (
            400,
            Some("ValidationException"),
            Some(format!("Cannot update in-progress endpoint \"{arn}\".").as_str())
        ),
        "{e}"
    );
    let (s, e) = server
        .api(
            "UpdateEndpointWeightsAndCapacities",
            json!({"EndpointName": "e", "DesiredWeightsAndCapacities": [{"VariantName": "v", "DesiredWeight": 2.0}]}),
        )
        .await;
    assert!(
        s == 400 && e["message"].as_str().unwrap().contains("in-progress"),
        "{e}"
    );
    force_status(&server, "e", "InService").await;

    // Unknown and unsupported fields are refused by name, never dropped.
    let (s, e) = server
        .api(
            "CreateEndpoint",
            json!({"EndpointName": "e2", "EndpointConfigName": "c", "Frobnicate": 1}),
        )
        .await;
    assert!(
        s == 400
            && e["message"]
                .as_str()
                .unwrap()
                .starts_with("Frobnicate is not supported"),
        "{e}"
    );
    let (s, e) = server
        .api(
            "CreateEndpoint",
            json!({"EndpointName": "e2", "EndpointConfigName": "c", "DeploymentConfig": {}}),
        )
        .await;
    assert!(
        s == 400 && e["message"].as_str().unwrap().contains("DeploymentConfig"),
        "{e}"
    );

    // Every answer, refusals included, carries a request id.
    let r = server
        .client
        .post(format!("http://{}/", server.admin))
        .header("X-Amz-Target", "SageMaker.DescribeEndpoint")
        .body("{\"EndpointName\": \"nope\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["x-amzn-requestid"].len(), 36);

    // A delete that a stop interrupted is finished at the next start.
    force_status(&server, "e", "Deleting").await;
    server.stop().await;
    let server = TestServer::start(dir.path()).await;
    let (s, e) = server
        .api("DescribeEndpoint", json!({"EndpointName": "e"}))
        .await;
    assert_eq!(
        (s, e["message"].as_str()),
        (400, Some("Could not find endpoint \"e\".")),
        "{e}"
    );
    server.stop().await;
}
