//! Data-plane input hardening against a real Pier (HTTP, admin and gRPC on 127.0.0.1:0)
//! with the demo installed (endpoint `demo`: iris logistic regression and MLP, which take no
//! missing values), a Model `forest` (an ONNX random forest, which does) and, for the
//! SageMaker facade, an endpoint `xgb` (a native XGBoost model, which does too).
//!
//! Each test sends what once crashed the server or answered wrongly, over every protocol,
//! and checks the status, that the message names the problem, and that the server still
//! answers afterwards.

use crate::common;

use bytes::{Buf, BufMut};
use common::TestServer;
use pier_proto::inference as pb;
use pier_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use serde_json::{Value, json};
use tonic::Code;
use tonic::codec::{DecodeBuf, EncodeBuf};
use tonic::transport::Channel;

type Client = GrpcInferenceServiceClient<Channel>;

const IRIS: [f32; 4] = [5.1, 3.5, 1.4, 0.2];
/// First row of the breast-cancer fixture's first 8 features (the forest's input).
const CANCER: [f32; 8] = [17.99, 10.38, 122.8, 1001.0, 0.1184, 0.2776, 0.3001, 0.1471];

struct Setup {
    _dir: tempfile::TempDir,
    server: TestServer,
    grpc: Client,
    channel: Channel,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.grpc_addr = Some("127.0.0.1:0".parse().unwrap());
    let server = TestServer::start_with(config).await;
    let running = server.server.as_ref().unwrap();
    pier_server::control::demo::install(&running.state)
        .await
        .unwrap();
    server.create_model("forest", "cancer-forest").await;
    let addr = running.grpc_addr.expect("grpc is on");
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Setup {
        _dir: dir,
        server,
        grpc: GrpcInferenceServiceClient::new(channel.clone()),
        channel,
    }
}

/// POSTs `body` to a v2 infer path; returns (status, JSON body).
async fn post(
    s: &TestServer,
    model: &str,
    body: Vec<u8>,
    header_len: Option<usize>,
) -> (u16, Value) {
    let mut req = s
        .client
        .post(format!("http://{}/v2/models/{model}/infer", s.http))
        .header("Content-Type", "application/json")
        .body(body);
    if let Some(n) = header_len {
        req = req.header("Inference-Header-Content-Length", n.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

async fn post_json(s: &TestServer, model: &str, body: Value) -> (u16, Value) {
    post(s, model, body.to_string().into_bytes(), None).await
}

/// A binary-extension request: the JSON head, then `binary`.
async fn post_binary(s: &TestServer, model: &str, head: Value, binary: &[u8]) -> (u16, Value) {
    let mut body = head.to_string().into_bytes();
    let len = body.len();
    body.extend_from_slice(binary);
    post(s, model, body, Some(len)).await
}

fn le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn grpc_input(
    datatype: &str,
    shape: Vec<i64>,
    contents: Option<pb::InferTensorContents>,
) -> pb::model_infer_request::InferInputTensor {
    pb::model_infer_request::InferInputTensor {
        name: "X".into(),
        datatype: datatype.into(),
        shape,
        contents,
        ..Default::default()
    }
}

fn grpc_raw(model: &str, datatype: &str, shape: Vec<i64>, raw: Vec<u8>) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: model.into(),
        inputs: vec![grpc_input(datatype, shape, None)],
        raw_input_contents: vec![raw],
        ..Default::default()
    }
}

fn error_of(value: &Value) -> String {
    value["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error in {value}"))
        .to_owned()
}

/// Asserts a 400 whose `error` contains every one of `needles`.
fn assert_400(answer: (u16, Value), needles: &[&str]) {
    let (status, body) = answer;
    assert_eq!(status, 400, "{body}");
    let message = error_of(&body);
    for n in needles {
        assert!(message.contains(n), "{message:?} lacks {n:?}");
    }
}

/// Asserts INVALID_ARGUMENT whose message contains every one of `needles`.
fn assert_invalid<T: std::fmt::Debug>(r: Result<T, tonic::Status>, needles: &[&str]) {
    let status = r.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    for n in needles {
        assert!(
            status.message().contains(n),
            "{:?} lacks {n:?}",
            status.message()
        );
    }
}

/// The server still answers a good request on every protocol.
async fn still_serves(s: &mut Setup) {
    let (status, body) = post_json(
        &s.server,
        "demo",
        json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": IRIS}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let r = s
        .grpc
        .model_infer(grpc_raw("demo", "FP32", vec![1, 4], le(&IRIS)))
        .await
        .unwrap();
    assert_eq!(r.get_ref().outputs.len(), 2);
    let r = s
        .server
        .invoke("demo", "text/csv", common::IRIS_CSV, &[])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_sizes_are_checked_before_any_allocation() {
    let mut s = setup().await;
    let huge = 1_000_000_000_000_i64;

    // REST JSON: the issue's request, FP32 and BYTES, and a huge empty shape.
    let fp32 = json!({"inputs": [{"name": "X", "shape": [huge, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]});
    assert_400(
        post_json(&s.server, "demo", fp32).await,
        &["\"X\"", "[1000000000000, 4]"],
    );
    let bytes =
        json!({"inputs": [{"name": "X", "shape": [huge], "datatype": "BYTES", "data": ["a"]}]});
    assert_400(
        post_json(&s.server, "demo", bytes).await,
        &["\"X\"", "[1000000000000]"],
    );
    let fits = json!({"inputs": [{"name": "X", "shape": [1_000_000, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]});
    assert_400(
        post_json(&s.server, "demo", fits).await,
        &["needs 4000000 elements but 4 were given"],
    );
    let empty = json!({"inputs": [{"name": "X", "shape": [1_000_000_000, 0], "datatype": "FP32", "data": []}]});
    assert_400(post_json(&s.server, "demo", empty).await, &["shape"]);
    let overflow = json!({"inputs": [{"name": "X", "shape": [i64::MAX, i64::MAX, 4], "datatype": "FP32", "data": [1]}]});
    assert_400(post_json(&s.server, "demo", overflow).await, &["shape"]);

    // REST binary: BYTES (one empty element sent) and FP32 (16 bytes sent).
    let head = json!({"inputs": [{"name": "X", "shape": [huge], "datatype": "BYTES", "parameters": {"binary_data_size": 4}}]});
    assert_400(
        post_binary(&s.server, "demo", head, &[0, 0, 0, 0]).await,
        &["\"X\"", "[1000000000000]"],
    );
    let head = json!({"inputs": [{"name": "X", "shape": [huge, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]});
    assert_400(
        post_binary(&s.server, "demo", head, &le(&IRIS)).await,
        &["\"X\"", "[1000000000000, 4]"],
    );
    // binary_data_size and the header length are compared with the bytes present.
    let head = json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": huge}}]});
    assert_400(
        post_binary(&s.server, "demo", head, &le(&IRIS)).await,
        &["binary_data_size"],
    );
    let (status, body) = post(&s.server, "demo", b"{}".to_vec(), Some(1 << 40)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        error_of(&body).contains("inference-header-content-length"),
        "{body}"
    );

    // gRPC: the issue's BYTES request, raw FP32, and typed contents.
    let r = s
        .grpc
        .model_infer(grpc_raw("demo", "BYTES", vec![huge], Vec::new()))
        .await;
    assert_invalid(r, &["\"X\"", "[1000000000000]"]);
    let r = s
        .grpc
        .model_infer(grpc_raw("demo", "FP32", vec![huge, 4], le(&IRIS)))
        .await;
    assert_invalid(r, &["\"X\"", "[1000000000000, 4]"]);
    let typed = pb::ModelInferRequest {
        model_name: "demo".into(),
        inputs: vec![grpc_input(
            "BYTES",
            vec![huge],
            Some(pb::InferTensorContents {
                bytes_contents: vec![b"a".to_vec()],
                ..Default::default()
            }),
        )],
        ..Default::default()
    };
    assert_invalid(s.grpc.model_infer(typed).await, &["\"X\"", "shape"]);

    still_serves(&mut s).await;
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_outputs_are_unique_and_known() {
    let mut s = setup().await;
    let x = json!({"name": "X", "shape": [1, 4], "datatype": "FP32", "data": IRIS});
    let twice = json!({"inputs": [x], "outputs": [{"name": "label"}, {"name": "label"}]});
    assert_400(
        post_json(&s.server, "demo", twice).await,
        &["\"label\"", "twice"],
    );
    let unknown = json!({"inputs": [x], "outputs": [{"name": "nope"}]});
    assert_400(
        post_json(&s.server, "demo", unknown).await,
        &["unknown output \"nope\""],
    );
    let one = json!({"inputs": [x], "outputs": [{"name": "probabilities"}]});
    let (status, body) = post_json(&s.server, "demo", one).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"].as_array().unwrap().len(), 1, "{body}");

    let requested = |names: &[&str]| {
        let mut r = grpc_raw("demo", "FP32", vec![1, 4], le(&IRIS));
        r.outputs = names
            .iter()
            .map(|n| pb::model_infer_request::InferRequestedOutputTensor {
                name: (*n).into(),
                ..Default::default()
            })
            .collect();
        r
    };
    let r = s.grpc.model_infer(requested(&["label", "label"])).await;
    assert_invalid(r, &["\"label\"", "twice"]);
    let r = s.grpc.model_infer(requested(&["nope"])).await;
    assert_invalid(r, &["unknown output \"nope\""]);
    let r = s
        .grpc
        .model_infer(requested(&["probabilities", "label"]))
        .await
        .unwrap();
    let names: Vec<&str> = r
        .get_ref()
        .outputs
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(names, ["probabilities", "label"]);

    still_serves(&mut s).await;
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_missing_value_policy_for_sagemaker_codecs() {
    let mut s = setup().await;
    let xgb = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/trees/xgb_sagemaker/xgboost-model");
    s.server
        .ok(
            "CreateModel",
            json!({"ModelName": "xgb", "PrimaryContainer": {"Image": "xgboost", "ModelDataUrl": format!("file://{}", xgb.display())}}),
        )
        .await;
    s.server.create_config("xgb", &[("main", "xgb", 1.0)]).await;
    s.server.create_endpoint("xgb", "xgb").await;

    let refused = |r: common::Invocation, needles: &[&str]| {
        assert_eq!(r.status, 400, "{}", r.body);
        let message = r.json()["Message"].as_str().unwrap().to_owned();
        for n in needles {
            assert!(message.contains(n), "{message:?} lacks {n:?}");
        }
    };
    const MISSING: &str = "is missing";
    const INFINITE: &str = "not a finite number";
    // The iris models take no missing values: every codec refuses them, naming the cell.
    for (content_type, body, needles) in [
        (
            "text/csv",
            "5.1,3.5,1.4,0.2\n5.1,,1.4,0.2\n",
            ["row 2, column 2", MISSING],
        ),
        ("text/csv", ",,,\n", ["row 1, column 1", MISSING]),
        (
            "text/csv",
            "5.1,3.5,NaN,0.2\n",
            ["row 1, column 3", MISSING],
        ),
        (
            "text/csv",
            "5.1,3.5,1.4,inf\n",
            ["row 1, column 4", INFINITE],
        ),
        (
            "text/csv",
            "5.1,-inf,1.4,0.2\n",
            ["row 1, column 2", INFINITE],
        ),
        (
            "text/csv",
            "1e400,3.5,1.4,0.2\n",
            ["row 1, column 1", INFINITE],
        ),
        (
            "application/json",
            r#"{"instances": [[5.1, null, 1.4, 0.2]]}"#,
            ["row 1, column 2", MISSING],
        ),
        (
            "application/json",
            r#"[[5.1, 3.5, 1.4, 0.2], [5.1, 1e39, 1.4, 0.2]]"#,
            ["row 2, column 2", INFINITE],
        ),
        (
            "application/jsonlines",
            "[5.1, 3.5, 1.4, 0.2]\n{\"features\": [5.1, 3.5, null, 0.2]}\n",
            ["row 2, column 3", MISSING],
        ),
        (
            "application/jsonlines",
            "[5.1, 3.5, 1.4, -1e39]\n",
            ["row 1, column 4", INFINITE],
        ),
    ] {
        let r = s.server.invoke("demo", content_type, body, &[]).await;
        refused(r, &needles);
    }
    // JSON cannot even hold 1e400: still a 400 naming where.
    let r = s
        .server
        .invoke("demo", "application/json", "[[1e400, 1, 1, 1]]", &[])
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("column"), "{}", r.body);

    // The XGBoost model takes missing values in every codec, but never infinities.
    for (content_type, body) in [
        ("text/csv", "1,,3,4,5\n,,,,\n"),
        ("text/csv", "1,NaN,3,4,5\n"),
        ("application/json", r#"{"instances": [[1, null, 3, 4, 5]]}"#),
        ("application/jsonlines", "[1, null, 3, 4, 5]\n"),
    ] {
        let r = s.server.invoke("xgb", content_type, body, &[]).await;
        assert_eq!(r.status, 200, "{content_type} {body:?}: {}", r.body);
    }
    for (content_type, body, cell) in [
        ("text/csv", "1,2,3,4,inf\n", "row 1, column 5"),
        ("text/csv", "1,2,3,4,5\n1,1e400,3,4,5\n", "row 2, column 2"),
        (
            "application/json",
            r#"[[1, 2, 3, -1e39, 5]]"#,
            "row 1, column 4",
        ),
        (
            "application/jsonlines",
            "[1, 2, 1e39, 4, 5]\n",
            "row 1, column 3",
        ),
    ] {
        let r = s.server.invoke("xgb", content_type, body, &[]).await;
        refused(r, &[cell, INFINITE]);
    }

    still_serves(&mut s).await;
    s.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_missing_value_policy_for_v2_rest_and_grpc() {
    let mut s = setup().await;
    let with = |values: &[f32]| {
        let mut v = IRIS.to_vec();
        v[..values.len()].copy_from_slice(values);
        v
    };
    // REST JSON: null is a missing value, 1e39 overflows FP32.
    let x = |data: Value| json!({"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": data}]});
    let mut data = json!([IRIS, IRIS]);
    data[1][2] = Value::Null;
    assert_400(
        post_json(&s.server, "demo", x(data)).await,
        &["\"X\", row 2, column 3", "is missing"],
    );
    let mut data = json!([IRIS, IRIS]);
    data[0][1] = json!(1e39);
    assert_400(
        post_json(&s.server, "demo", x(data)).await,
        &["\"X\", row 1, column 2", "not a finite number"],
    );
    // REST binary.
    let head = json!({"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}]});
    for (values, needle) in [
        (with(&[f32::NAN]), "row 1, column 1: the value is missing"),
        (with(&[1.0, f32::INFINITY]), "row 1, column 2"),
    ] {
        assert_400(
            post_binary(&s.server, "demo", head.clone(), &le(&values)).await,
            &[needle],
        );
    }
    // gRPC typed contents and raw contents.
    let typed = |values: Vec<f32>| pb::ModelInferRequest {
        model_name: "demo".into(),
        inputs: vec![grpc_input(
            "FP32",
            vec![1, 4],
            Some(pb::InferTensorContents {
                fp32_contents: values,
                ..Default::default()
            }),
        )],
        ..Default::default()
    };
    let r = s.grpc.model_infer(typed(with(&[1.0, 2.0, f32::NAN]))).await;
    assert_invalid(r, &["row 1, column 3", "is missing"]);
    let r = s.grpc.model_infer(typed(with(&[f32::NEG_INFINITY]))).await;
    assert_invalid(r, &["row 1, column 1", "not a finite number"]);
    let r = s
        .grpc
        .model_infer(grpc_raw("demo", "FP32", vec![1, 4], le(&with(&[f32::NAN]))))
        .await;
    assert_invalid(r, &["row 1, column 1", "is missing"]);

    // The random forest (ONNX TreeEnsembleClassifier) takes missing values, never infinities.
    let mut cancer = CANCER.to_vec();
    cancer[3] = f32::NAN;
    let mut data = json!([CANCER]);
    data[0][3] = Value::Null;
    let forest = |data: Value| json!({"inputs": [{"name": "X", "shape": [1, 8], "datatype": "FP32", "data": data}]});
    let (status, body) = post_json(&s.server, "forest", forest(data)).await;
    assert_eq!(status, 200, "{body}");
    let head = json!({"inputs": [{"name": "X", "shape": [1, 8], "datatype": "FP32", "parameters": {"binary_data_size": 32}}]});
    let (status, body) = post_binary(&s.server, "forest", head, &le(&cancer)).await;
    assert_eq!(status, 200, "{body}");
    let r = s
        .grpc
        .model_infer(grpc_raw("forest", "FP32", vec![1, 8], le(&cancer)))
        .await;
    assert!(r.is_ok(), "{r:?}");
    let mut data = json!([CANCER]);
    data[0][5] = json!(-1e39);
    assert_400(
        post_json(&s.server, "forest", forest(data)).await,
        &["row 1, column 6", "not a finite number"],
    );
    cancer[7] = f32::INFINITY;
    let r = s
        .grpc
        .model_infer(grpc_raw("forest", "FP32", vec![1, 8], le(&cancer)))
        .await;
    assert_invalid(r, &["row 1, column 8", "not a finite number"]);

    still_serves(&mut s).await;
    s.server.stop().await;
}

/// A codec that sends and receives raw bytes, to put malformed protobuf on the wire.
#[derive(Clone, Copy, Debug, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_protobuf_is_invalid_argument() {
    let mut s = setup().await;
    let mut raw = tonic::client::Grpc::new(s.channel.clone());
    for (message, what) in [
        // Field 1 (model_name), length-delimited, 127 bytes announced, none sent.
        (vec![0x0a, 0x7f], "buffer underflow"),
        // Field 1 with wire type 7, which does not exist.
        (vec![0x0f, 0x00], "invalid wire type"),
        // Field 1 whose length is a varint that never ends.
        (
            vec![
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
            "varint",
        ),
    ] {
        raw.ready().await.unwrap();
        let path =
            http::uri::PathAndQuery::from_static("/inference.GRPCInferenceService/ModelInfer");
        let r = raw
            .unary(tonic::Request::new(message), path, RawCodec)
            .await;
        assert_invalid(r, &["not a valid protobuf message", what]);
    }
    // The well-formed empty message decodes; it is refused for what it says, not how.
    raw.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/inference.GRPCInferenceService/ServerLive");
    let r = raw
        .unary(tonic::Request::new(Vec::new()), path, RawCodec)
        .await
        .unwrap();
    assert_eq!(r.into_inner(), vec![0x08, 0x01], "live: true");

    still_serves(&mut s).await;
    s.server.stop().await;
}
