//! `pier serve --model-repository`: a Triton model repository built in a temporary folder
//! from the ONNX fixtures, served under v2 REST and gRPC with the same names and versions —
//! version policies, `max_batch_size`, `dynamic_batching` and `instance_group` reported in
//! the model config and honoured; unsupported fields only warn; an unsupported platform, a
//! config that disagrees with its model and a missing file refuse that model alone.

use crate::common;

use std::path::Path;

use common::TestServer;
use pier_proto::inference as pb;
use pier_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use serde_json::{Value, json};

fn model(repo: &Path, name: &str, config: Option<&str>, versions: &[(u64, &str)]) {
    let dir = repo.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(c) = config {
        std::fs::write(dir.join("config.pbtxt"), c).unwrap();
    }
    for (v, fixture) in versions {
        let vdir = dir.join(v.to_string());
        std::fs::create_dir_all(&vdir).unwrap();
        std::fs::copy(common::fixture(fixture), vdir.join("model.onnx")).unwrap();
    }
}

const IRIS: &str = r#"
name: "iris"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "X", data_type: TYPE_FP32, dims: [ 4 ] } ]
output [
  { name: "label", data_type: TYPE_INT64, dims: [ 1 ] },
  { name: "probabilities", data_type: TYPE_FP32, dims: [ 3 ] }
]
dynamic_batching { max_queue_delay_microseconds: 500 preferred_batch_size: [ 4, 8 ] }
version_policy: { all { } }
instance_group [ { count: 2, kind: KIND_CPU } ]
model_warmup [ { name: "w" batch_size: 1 } ]   # not honoured: a warning
"#;

fn repository(root: &Path) -> std::path::PathBuf {
    let repo = root.join("repo");
    model(
        &repo,
        "iris",
        Some(IRIS),
        &[(1, "iris-logreg"), (3, "iris-mlp")],
    );
    // Default policy (latest 1): only version 2 serves. No batching dimension declared.
    model(
        &repo,
        "iris_latest",
        Some("platform: \"onnxruntime_onnx\"\n"),
        &[(1, "iris-logreg"), (2, "iris-mlp")],
    );
    model(&repo, "no_config", None, &[(1, "iris-logreg")]);
    model(
        &repo,
        "specific",
        Some("backend: \"onnxruntime\" version_policy { specific { versions: [1, 7] } }"),
        &[(1, "iris-logreg"), (2, "iris-mlp")],
    );
    model(
        &repo,
        "trt",
        Some("platform: \"tensorrt_plan\"\nmax_batch_size: 8\n"),
        &[(1, "iris-logreg")],
    );
    model(
        &repo,
        "torch",
        Some("backend: \"pytorch\""),
        &[(1, "iris-logreg")],
    );
    model(
        &repo,
        "bad_dims",
        Some("max_batch_size: 4 input [{ name: \"X\" data_type: TYPE_FP32 dims: [5] }]"),
        &[(1, "iris-logreg")],
    );
    model(
        &repo,
        "wrong_name",
        Some("name: \"other\""),
        &[(1, "iris-logreg")],
    );
    std::fs::create_dir_all(repo.join("no_file/1")).unwrap();
    std::fs::write(
        repo.join("broken_config/config.pbtxt").tap_mkdir(),
        "max_batch_size: {",
    )
    .unwrap();
    repo
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(self.parent().unwrap()).unwrap();
        self
    }
}

async fn get(s: &TestServer, path: &str) -> (u16, Value) {
    let r = s
        .client
        .get(format!("http://{}{path}", s.http))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn infer(s: &TestServer, path: &str, rows: usize) -> (u16, Value) {
    let data: Vec<f32> = [5.1f32, 3.5, 1.4, 0.2]
        .iter()
        .chain(&[6.7, 3.0, 5.2, 2.3])
        .copied()
        .cycle()
        .take(rows * 4)
        .collect();
    let body =
        json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [rows, 4], "data": data}]});
    let r = s
        .client
        .post(format!("http://{}{path}", s.http))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn output<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no output {name}: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_triton_repository_serves_under_v2() {
    let dir = tempfile::tempdir().unwrap();
    let repo = repository(dir.path());
    let mut config = common::config(&dir.path().join("data"));
    config.grpc_addr = Some("127.0.0.1:0".parse().unwrap());
    config.model_repository = Some(repo);
    let s = TestServer::start_with(config).await;

    // Names and versions as in the repository.
    let (status, m) = get(&s, "/v2/models/iris").await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["versions"], json!(["1", "3"]));
    assert_eq!(m["platform"], "onnxruntime_onnx");
    let (_, m) = get(&s, "/v2/models/iris_latest").await;
    assert_eq!(m["versions"], json!(["2"]));
    let (_, m) = get(&s, "/v2/models/specific").await;
    assert_eq!(m["versions"], json!(["1"]));
    let (status, _) = get(&s, "/v2/models/no_config/versions/1/ready").await;
    assert_eq!(status, 200);

    // The config as Triton reports it.
    let (status, c) = get(&s, "/v2/models/iris/config").await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["max_batch_size"], 8, "{c}");
    assert_eq!(
        c["dynamic_batching"]["max_queue_delay_microseconds"], 500,
        "{c}"
    );
    assert_eq!(
        c["dynamic_batching"]["preferred_batch_size"],
        json!([4, 8]),
        "{c}"
    );
    assert_eq!(c["instance_group"][0]["count"], 2, "{c}");
    assert_eq!(c["version_policy"], json!({"all": {}}), "{c}");
    assert_eq!(c["input"][0]["dims"], json!([4]), "{c}");
    let (_, c) = get(&s, "/v2/models/iris_latest/config").await;
    assert_eq!(c["max_batch_size"], 0, "{c}");
    assert_eq!(c["input"][0]["dims"], json!([-1, 4]), "{c}");

    // Each version answers with its own model.
    let (status, v1) = infer(&s, "/v2/models/iris/versions/1/infer", 2).await;
    assert_eq!(status, 200, "{v1}");
    assert_eq!(v1["model_version"], "1");
    assert_eq!(output(&v1, "label")["data"], json!([0, 2]));
    let (status, v3) = infer(&s, "/v2/models/iris/infer", 2).await;
    assert_eq!(status, 200, "{v3}");
    assert_eq!(
        v3["model_version"], "3",
        "the default is the highest version"
    );
    assert_ne!(
        output(&v1, "probabilities")["data"],
        output(&v3, "probabilities")["data"],
        "versions 1 and 3 are different models"
    );
    // max_batch_size bounds a request's rows.
    let (status, e) = infer(&s, "/v2/models/iris/versions/1/infer", 9).await;
    assert_eq!(status, 400, "{e}");
    assert!(
        e["error"].as_str().unwrap().contains("max_batch_size 8"),
        "{e}"
    );
    let (status, _) = infer(&s, "/v2/models/iris/versions/1/infer", 8).await;
    assert_eq!(status, 200);
    // The dynamic batcher ran them: concurrent requests share batches.
    let answers = futures::future::join_all(
        (0..16).map(|_| infer(&s, "/v2/models/iris/versions/3/infer", 1)),
    )
    .await;
    assert!(answers.iter().all(|(status, _)| *status == 200));
    let metrics = s.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pier_batch_size_count") && l.contains("model=\"iris\"")),
        "{metrics}"
    );

    // Versions the policy left out, and refused models, are not found.
    for path in [
        "/v2/models/iris/versions/2",
        "/v2/models/iris_latest/versions/1",
        "/v2/models/specific/versions/2",
        "/v2/models/trt",
        "/v2/models/torch",
        "/v2/models/bad_dims",
        "/v2/models/wrong_name",
        "/v2/models/no_file",
        "/v2/models/broken_config",
    ] {
        let (status, body) = get(&s, path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }

    // The repository index lists what serves.
    let r = s
        .client
        .post(format!("http://{}/v2/repository/index", s.http))
        .body("{}")
        .send()
        .await
        .unwrap();
    let index: Value = r.json().await.unwrap();
    let names: Vec<String> = index
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["name"].as_str().unwrap(),
                e["version"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "iris/1",
        "iris/3",
        "iris_latest/2",
        "no_config/1",
        "specific/1",
    ] {
        assert!(names.contains(&want.to_owned()), "{want}: {names:?}");
    }

    // gRPC: the same names, versions and config.
    let addr = s.server.as_ref().unwrap().grpc_addr.unwrap();
    let mut c = GrpcInferenceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let config = c
        .model_config(pb::ModelConfigRequest {
            name: "iris".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert_eq!(config.max_batch_size, 8);
    assert!(matches!(
        config.scheduling_choice,
        Some(pb::model_config::SchedulingChoice::DynamicBatching(ref b)) if b.max_queue_delay_microseconds == 500
    ));
    let raw: Vec<u8> = [5.1f32, 3.5, 1.4, 0.2]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let r = c
        .model_infer(pb::ModelInferRequest {
            model_name: "iris".into(),
            model_version: "1".into(),
            inputs: vec![pb::model_infer_request::InferInputTensor {
                name: "X".into(),
                datatype: "FP32".into(),
                shape: vec![1, 4],
                ..Default::default()
            }],
            raw_input_contents: vec![raw],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.model_version, "1");
    let ready = c
        .model_ready(pb::ModelReadyRequest {
            name: "trt".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!ready.ready);
    s.stop().await;
}
