//! `pier serve` with its model store on S3 (`s3s-fs`, started by the test on a free loopback
//! port): CreateModel imports into the bucket, an endpoint serves from the local cache; with
//! S3 stopped, invocations keep succeeding while CreateModel answers 503 ServiceUnavailable
//! naming the store; with S3 started again on the same port and folder, CreateModel succeeds
//! with no restart. And S3 unreachable at start: the server does not start, naming the store.

use crate::common;

use crate::s3::S3Server;
use common::TestServer;
use pier_model_store::{StoreConfig, StoreLocation};
use serde_json::json;

const BUCKET: &str = "pier-models";
const IRIS_CSV: &str = "5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3";

fn store(s3: &S3Server, data: &std::path::Path) -> StoreConfig {
    StoreConfig {
        location: StoreLocation::parse(&format!("s3://{BUCKET}/prod")).unwrap(),
        cache_dir: data.join("store-cache"),
        cache_bytes: 1 << 30,
        s3: s3.config(),
    }
}

fn model_body(name: &str, fixture: &str) -> serde_json::Value {
    json!({"ModelName": name, "PrimaryContainer": {"Image": "onnx",
        "ModelDataUrl": format!("file://{}", common::fixture(fixture).display())}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_survives_s3_loss_and_control_calls_answer_503_until_it_is_back() {
    let mut s3 = S3Server::start(BUCKET);
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path());
    config.store = store(&s3, data.path());
    let server = TestServer::start_with(config).await;

    server.create_model("first", "iris-logreg").await;
    // Imported into the bucket, in the store's layout.
    let in_bucket = s3.root.path().join(BUCKET).join("prod/first/1");
    assert!(in_bucket.join("manifest.json").is_file());
    assert!(in_bucket.join("model.onnx").is_file());
    assert!(
        !data.path().join("store/first").exists(),
        "nothing in the local store"
    );
    server.create_model("second", "iris-mlp").await;
    server.create_config("one", &[("a", "first", 1.0)]).await;
    server.create_config("two", &[("b", "second", 1.0)]).await;
    server.create_endpoint("ep", "one").await;
    let r = server.invoke("ep", "text/csv", IRIS_CSV, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let answer = r.body.clone();

    s3.stop();
    for _ in 0..20 {
        let r = server.invoke("ep", "text/csv", IRIS_CSV, &[]).await;
        assert_eq!((r.status, &r.body), (200, &answer));
    }
    let (status, body) = server
        .api("CreateModel", model_body("third", "iris-svm"))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["__type"], "ServiceUnavailable", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "the model store s3://{BUCKET}/prod is unavailable"
        )),
        "{message}"
    );
    assert!(!message.contains("127.0.0.1"), "no internals: {message}");
    // A reference into the store needs it too.
    let (status, body) = server
        .api(
            "CreateModel",
            json!({"ModelName": "again", "PrimaryContainer": {"Image": "onnx", "ModelDataUrl": "pier://first/1"}}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    // The control plane's own state is still there.
    server
        .ok("DescribeEndpoint", json!({"EndpointName": "ep"}))
        .await;
    // A v2 request naming a Model not loaded yet loads it on demand: 503 while the store is
    // away.
    let v2 = |model: &str| {
        server
            .client
            .post(format!("http://{}/v2/models/{model}/infer", server.http))
            .json(
                &json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32",
                "data": [5.1, 3.5, 1.4, 0.2]}]}),
            )
            .send()
    };
    let r = v2("second").await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains(&format!("s3://{BUCKET}/prod is unavailable")),
        "{text}"
    );
    // Loading a new version needs the store (even one in the cache: the store says whether
    // it still exists): the update fails, naming it, and the old variant keeps serving.
    let (status, body) = server
        .api(
            "UpdateEndpoint",
            json!({"EndpointName": "ep", "EndpointConfigName": "two"}),
        )
        .await;
    // As SageMaker's, UpdateEndpoint is asynchronous: accepted, then rolled back.
    assert_eq!(status, 200, "{body}");
    let d = server.wait_endpoint("ep").await;
    assert_eq!(d["EndpointStatus"], "InService", "{d}");
    assert_eq!(d["EndpointConfigName"], "one", "{d}");
    let reason = d["FailureReason"].as_str().unwrap();
    assert!(
        reason.contains("second/1")
            && reason.contains(&format!("s3://{BUCKET}/prod is unavailable"))
            && !reason.contains("127.0.0.1"),
        "{reason}"
    );
    let r = server.invoke("ep", "text/csv", IRIS_CSV, &[]).await;
    assert_eq!(
        (r.status, r.variant.as_deref()),
        (200, Some("a")),
        "{}",
        r.body
    );

    s3.restart();
    let r = v2("second").await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    server.create_model("third", "iris-svm").await;
    server
        .ok(
            "UpdateEndpoint",
            json!({"EndpointName": "ep", "EndpointConfigName": "two"}),
        )
        .await;
    let d = server.wait_endpoint("ep").await;
    assert_eq!(d["EndpointStatus"], "InService", "{d}");
    let r = server.invoke("ep", "text/csv", IRIS_CSV, &[]).await;
    assert_eq!(
        (r.status, r.variant.as_deref()),
        (200, Some("b")),
        "{}",
        r.body
    );
    assert!(
        s3.root
            .path()
            .join(BUCKET)
            .join("prod/third/1/manifest.json")
            .is_file()
    );
    server.stop().await;
}

#[tokio::test]
async fn s3_unreachable_at_start_is_an_error_naming_the_store() {
    let mut s3 = S3Server::start(BUCKET);
    let data = tempfile::tempdir().unwrap();
    let mut config = common::config(data.path());
    config.store = store(&s3, data.path());
    s3.stop();
    let Err(err) = pier_server::start(config).await else {
        panic!("the server started without its store");
    };
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "the model store s3://{BUCKET}/prod is unavailable"
        )),
        "{text}"
    );
}

/// Two replicas (each its own data folder and database) on one store, importing a model of
/// the same name at once: each import gets its own version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_store_never_share_a_version() {
    let s3 = S3Server::start(BUCKET);
    let (a_data, b_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = common::config(a_data.path());
    a.store = store(&s3, a_data.path());
    let mut b = common::config(b_data.path());
    b.store = store(&s3, b_data.path());
    let (a, b) = (
        TestServer::start_with(a).await,
        TestServer::start_with(b).await,
    );
    let (ra, rb) = tokio::join!(
        a.api("CreateModel", model_body("same", "iris-logreg")),
        b.api("CreateModel", model_body("same", "iris-mlp"))
    );
    assert_eq!((ra.0, rb.0), (200, 200), "{ra:?} {rb:?}");
    // Two published versions (numbers may have gaps: a number two publishers both claimed is
    // skipped by both).
    let versions = s3.root.path().join(BUCKET).join("prod/same");
    let mut published: Vec<u64> = std::fs::read_dir(&versions)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|v: &u64| versions.join(v.to_string()).join("manifest.json").is_file())
        .collect();
    published.sort_unstable();
    assert_eq!(published.len(), 2, "two versions published: {published:?}");
    let mut sizes: Vec<u64> = published
        .iter()
        .map(|v| {
            std::fs::metadata(versions.join(v.to_string()).join("model.onnx"))
                .unwrap()
                .len()
        })
        .collect();
    sizes.sort_unstable();
    let mut expected: Vec<u64> = ["iris-logreg", "iris-mlp"]
        .iter()
        .map(|f| std::fs::metadata(common::fixture(f)).unwrap().len())
        .collect();
    expected.sort_unstable();
    assert_eq!(sizes, expected, "one version each, neither overwritten");
    // Each replica serves its own import.
    for (server, variant) in [(&a, "a"), (&b, "b")] {
        server.create_config("c", &[(variant, "same", 1.0)]).await;
        server.create_endpoint("ep", "c").await;
        let r = server.invoke("ep", "text/csv", IRIS_CSV, &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    a.stop().await;
    b.stop().await;
}
