//! Open Inference Protocol v2 over REST against a real Pier on 127.0.0.1:0 with the demo
//! installed (endpoint `demo`: logreg 70 / mlp 30; models demo-iris-logreg, demo-iris-mlp).

use crate::common;

use common::TestServer;
use serde_json::{Value, json};

async fn demo() -> (tempfile::TempDir, TestServer) {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    pier_server::control::demo::install(&server.server.as_ref().unwrap().state)
        .await
        .unwrap();
    (dir, server)
}

fn x(rows: usize) -> Value {
    let data: Vec<f32> = [5.1, 3.5, 1.4, 0.2]
        .iter()
        .cycle()
        .take(rows * 4)
        .copied()
        .collect();
    json!({"name": "X", "shape": [rows, 4], "datatype": "FP32", "data": data})
}

async fn get(s: &TestServer, path: &str) -> (u16, String) {
    let r = s
        .client
        .get(format!("http://{}{path}", s.http))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// POST a JSON inference request; returns (status, variant header, JSON body).
async fn infer(s: &TestServer, path: &str, body: &Value) -> (u16, Option<String>, Value) {
    let r = s
        .client
        .post(format!("http://{}{path}", s.http))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let variant = r
        .headers()
        .get("x-amzn-invoked-production-variant")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = r.text().await.unwrap();
    (
        status,
        variant,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

#[tokio::test]
async fn health_metadata_and_config() {
    let (_dir, s) = demo().await;
    let (status, body) = get(&s, "/v2").await;
    assert_eq!(status, 200);
    let meta: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(meta["name"], "pier");
    assert!(
        meta["extensions"]
            .as_array()
            .unwrap()
            .contains(&json!("binary_tensor_data"))
    );
    assert_eq!(get(&s, "/v2/health/live").await.0, 200);
    assert_eq!(get(&s, "/v2/health/ready").await.0, 200);
    assert_eq!(get(&s, "/v2/models/demo/ready").await.0, 200);
    assert_eq!(get(&s, "/v2/models/demo/versions/2/ready").await.0, 200);

    let (status, body) = get(&s, "/v2/models/demo").await;
    assert_eq!(status, 200, "{body}");
    let m: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(m["versions"], json!(["1", "2"]));
    assert_eq!(m["platform"], "onnxruntime_onnx");
    assert_eq!(
        m["inputs"],
        json!([{"name": "X", "datatype": "FP32", "shape": [-1, 4]}])
    );
    assert_eq!(
        m["outputs"][0],
        json!({"name": "label", "datatype": "INT64", "shape": [-1]})
    );

    let (status, body) = get(&s, "/v2/models/demo/config").await;
    assert_eq!(status, 200, "{body}");
    let c: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        c["max_batch_size"],
        pier_server::config::DEFAULT_MAX_REQUEST_ROWS
    );
    assert_eq!(c["input"][0]["dims"], json!([4]));
    assert_eq!(c["input"][0]["data_type"], "TYPE_FP32");
    assert_eq!(c["output"][0]["dims"], json!([1]));
    assert_eq!(c["output"][0]["reshape"], json!({"shape": []}));
    assert_eq!(c["output"][1]["dims"], json!([3]));

    let (status, body) = get(&s, "/v2/models/demo-iris-mlp").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["versions"],
        json!(["1"])
    );
    s.stop().await;
}

#[tokio::test]
async fn json_infer_routes_by_weight_and_by_version() {
    let (_dir, s) = demo().await;
    let mut logreg = 0;
    for i in 0..200 {
        let req = json!({"id": format!("r{i}"), "inputs": [x(2)]});
        let (status, variant, body) = infer(&s, "/v2/models/demo/infer", &req).await;
        assert_eq!(status, 200, "{body}");
        let variant = variant.expect("variant header");
        assert_eq!(body["parameters"]["pier_variant"], json!(variant));
        assert_eq!(body["id"], json!(format!("r{i}")));
        assert_eq!(
            body["model_version"],
            if variant == "logreg" { "1" } else { "2" }
        );
        let label = &body["outputs"][0];
        assert_eq!(
            (label["name"].as_str(), label["datatype"].as_str()),
            (Some("label"), Some("INT64"))
        );
        assert_eq!(label["shape"], json!([2]));
        assert_eq!(body["outputs"][1]["shape"], json!([2, 3]));
        logreg += usize::from(variant == "logreg");
    }
    // Binomial(200, 0.7): mean 140, sd 6.5.
    assert!(
        (105..=175).contains(&logreg),
        "logreg served {logreg} of 200"
    );

    for _ in 0..10 {
        let req = json!({"inputs": [x(1)], "outputs": [{"name": "probabilities"}]});
        let (status, variant, body) = infer(&s, "/v2/models/demo/versions/2/infer", &req).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(variant.as_deref(), Some("mlp"));
        assert_eq!(body["outputs"].as_array().unwrap().len(), 1);
        let p: f64 = body["outputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .sum();
        assert!((p - 1.0).abs() < 1e-4, "{body}");
    }
    let (status, variant, body) = infer(
        &s,
        "/v2/models/demo/versions/logreg/infer",
        &json!({"inputs": [x(1)]}),
    )
    .await;
    assert_eq!(
        (status, variant.as_deref()),
        (200, Some("logreg")),
        "{body}"
    );

    // A control-plane Model by name, at its artifact's store version.
    let (status, variant, body) = infer(
        &s,
        "/v2/models/demo-iris-logreg/versions/1/infer",
        &json!({"inputs": [x(3)]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(variant, None);
    assert_eq!(body["model_version"], "1");
    assert_eq!(body["parameters"]["pier_artifact"], "demo-iris-logreg/1");
    s.stop().await;
}

#[tokio::test]
async fn binary_tensors_both_ways() {
    let (_dir, s) = demo().await;
    let values: Vec<f32> = vec![5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3];
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let head = json!({
        "inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": raw.len()}}],
        "outputs": [{"name": "label", "parameters": {"binary_data": true}}, {"name": "probabilities", "parameters": {"binary_data": false}}],
    })
    .to_string();
    let mut body = head.clone().into_bytes();
    body.extend_from_slice(&raw);
    let r = s
        .client
        .post(format!("http://{}/v2/models/demo/versions/1/infer", s.http))
        .header("Content-Type", "application/octet-stream")
        .header("Inference-Header-Content-Length", head.len().to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let json_len: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = r.bytes().await.unwrap();
    let answer: Value = serde_json::from_slice(&bytes[..json_len]).unwrap();
    let label = &answer["outputs"][0];
    assert_eq!(label["parameters"]["binary_data_size"], 16);
    assert!(label.get("data").is_none());
    let labels: Vec<i64> = bytes[json_len..]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(labels.len(), 2);
    assert!(labels.iter().all(|l| (0..3).contains(l)), "{labels:?}");
    assert_eq!(answer["outputs"][1]["data"].as_array().unwrap().len(), 6);

    // The same request as JSON gives the same labels.
    let (status, _, j) = infer(
        &s,
        "/v2/models/demo/versions/1/infer",
        &json!({"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": values}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(j["outputs"][0]["data"], json!(labels));
    s.stop().await;
}

#[tokio::test]
async fn bad_requests_are_answered_with_a_reason() {
    let (_dir, s) = demo().await;
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/v2/models/demo/infer",
            json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 4]}]}),
            400,
            "datatype INT64",
        ),
        (
            "/v2/models/demo/infer",
            json!({"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}),
            400,
            "needs 8 elements",
        ),
        (
            "/v2/models/demo/infer",
            json!({"inputs": [{"name": "X", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]}),
            400,
            "shape",
        ),
        (
            "/v2/models/demo/infer",
            json!({"inputs": []}),
            400,
            "missing input \"X\"",
        ),
        (
            "/v2/models/demo/infer",
            json!({"inputs": [x(1), {"name": "Y", "shape": [1], "datatype": "FP32", "data": [1]}]}),
            400,
            "unknown input \"Y\"",
        ),
        (
            "/v2/models/demo/infer",
            json!({"inputs": [x(1)], "outputs": [{"name": "nope"}]}),
            400,
            "unknown output \"nope\"",
        ),
        (
            "/v2/models/demo/infer",
            json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP16", "data": [1, 2, 3, 4]}]}),
            400,
            "unsupported datatype",
        ),
        (
            "/v2/models/demo/infer",
            json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32"}]}),
            400,
            "neither data",
        ),
        (
            "/v2/models/demo/infer",
            json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": ["a", 1, 2, 3]}]}),
            400,
            "not a valid FP32",
        ),
        (
            "/v2/models/nosuch/infer",
            json!({"inputs": [x(1)]}),
            404,
            "\"nosuch\" is not found",
        ),
        (
            "/v2/models/demo/versions/3/infer",
            json!({"inputs": [x(1)]}),
            404,
            "version \"3\"",
        ),
        (
            "/v2/models/demo-iris-logreg/versions/2/infer",
            json!({"inputs": [x(1)]}),
            404,
            "version \"2\"",
        ),
    ];
    for (path, body, want, needle) in cases {
        let (status, _, answer) = infer(&s, path, &body).await;
        let error = answer["error"].as_str().unwrap_or_default();
        assert_eq!(status, want, "{path} {body}: {answer}");
        assert!(error.contains(needle), "{needle:?} not in {error:?}");
    }
    // Not JSON; binary sizes that do not add up.
    let r = s
        .client
        .post(format!("http://{}/v2/models/demo/infer", s.http))
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("invalid inference request JSON")
    );
    let head = json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 12}}]}).to_string();
    let mut body = head.clone().into_bytes();
    body.extend_from_slice(&[0u8; 12]);
    let r = s
        .client
        .post(format!("http://{}/v2/models/demo/infer", s.http))
        .header("Inference-Header-Content-Length", head.len().to_string())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("needs 16 bytes of raw data but 12"), "{text}");
    let r = s
        .client
        .post(format!("http://{}/v2/models/demo/infer", s.http))
        .header("Inference-Header-Content-Length", "999")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(get(&s, "/v2/models/nosuch").await.0, 404);
    assert_eq!(get(&s, "/v2/models/nosuch/ready").await.0, 404);
    s.stop().await;
}
