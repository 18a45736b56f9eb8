//! The invocation core against a real Pier (HTTP, admin and gRPC on 127.0.0.1:0): one input
//! policy for the SageMaker, v2 REST and v2 gRPC facades, one compute-pool hop for a large
//! body, Models resolved from the serving snapshot with the database closed, a failed
//! on-demand load answered with its reason, and the listeners' tower layers (request id,
//! whole-request timeout, load shedding).

use crate::common;

use std::time::Duration;

use common::TestServer;
use pier_proto::inference as pb;
use pier_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

type Client = GrpcInferenceServiceClient<Channel>;

async fn demo(
    configure: impl FnOnce(&mut pier_server::ServerConfig),
) -> (tempfile::TempDir, TestServer, Client) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.grpc_addr = Some("127.0.0.1:0".parse().unwrap());
    configure(&mut config);
    let server = TestServer::start_with(config).await;
    let running = server.server.as_ref().unwrap();
    pier_server::control::demo::install(&running.state)
        .await
        .unwrap();
    let addr = running.grpc_addr.expect("grpc is on");
    let client = GrpcInferenceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    (dir, server, client)
}

fn pool_jobs(server: &TestServer) -> u64 {
    server
        .server
        .as_ref()
        .unwrap()
        .state
        .serving
        .pool
        .submitted()
}

/// `rows` iris records as CSV, 20 bytes each.
fn csv(rows: usize) -> String {
    "5.10,3.50,1.40,0.20\n".repeat(rows)
}

fn v2_body(rows: usize, datatype: &str) -> Value {
    let data: Vec<f64> = [5.1, 3.5, 1.4, 0.2]
        .iter()
        .copied()
        .cycle()
        .take(rows * 4)
        .collect();
    json!({"inputs": [{"name": "X", "shape": [rows, 4], "datatype": datatype, "data": data}]})
}

fn grpc_request(rows: usize, datatype: &str) -> pb::ModelInferRequest {
    let width = if datatype == "FP64" { 8 } else { 4 };
    pb::ModelInferRequest {
        model_name: "demo".into(),
        model_version: "1".into(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: "X".into(),
            datatype: datatype.into(),
            shape: vec![rows as i64, 4],
            ..Default::default()
        }],
        raw_input_contents: vec![vec![0u8; rows * 4 * width]],
        ..Default::default()
    }
}

async fn v2_infer(server: &TestServer, model: &str, body: &Value) -> (u16, Value) {
    let r = server
        .client
        .post(format!("http://{}/v2/models/{model}/infer", server.http))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test]
async fn every_facade_has_one_row_limit_and_one_datatype_policy() {
    let (_dir, server, mut grpc) = demo(|c| c.limits.max_request_rows = 1024).await;
    let limit = "a batch of 1025 rows exceeds max_batch_size 1024";

    let sagemaker = server.invoke("demo", "text/csv", csv(1025), &[]).await;
    assert_eq!(sagemaker.status, 400, "{}", sagemaker.body);
    assert!(sagemaker.body.contains(limit), "{}", sagemaker.body);
    let ok = server.invoke("demo", "text/csv", csv(1024), &[]).await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    let (status, rest) = v2_infer(&server, "demo", &v2_body(1025, "FP32")).await;
    assert_eq!(status, 400, "{rest}");
    assert!(rest["error"].as_str().unwrap().contains(limit), "{rest}");

    let status = grpc
        .model_infer(grpc_request(1025, "FP32"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains(limit), "{}", status.message());

    // The datatype must be the model's: v2 says so in both protocols, in the same words.
    let dtype = "input \"X\" has datatype FP64 but the model expects FP32";
    let (status, rest) = v2_infer(&server, "demo", &v2_body(2, "FP64")).await;
    assert_eq!(status, 400, "{rest}");
    assert!(rest["error"].as_str().unwrap().contains(dtype), "{rest}");
    let status = grpc.model_infer(grpc_request(2, "FP64")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains(dtype), "{}", status.message());
    server.stop().await;
}

#[tokio::test]
async fn a_large_body_hops_to_the_compute_pool_once() {
    // No call inline: the demo's variants are unbatched, so one pool job per request,
    // whatever the body size.
    let (_dir, server, mut grpc) = demo(|c| c.compute.inline = Duration::ZERO).await;
    for rows in [2, 1000] {
        let body = csv(rows);
        let before = pool_jobs(&server);
        let r = server.invoke("demo", "text/csv", body.clone(), &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            pool_jobs(&server) - before,
            1,
            "a {}-byte SageMaker body took one pool job",
            body.len()
        );
    }
    let large = v2_body(1024, "FP32");
    assert!(large.to_string().len() > 16 * 1024);
    let before = pool_jobs(&server);
    let (status, answer) = v2_infer(&server, "demo", &large).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(pool_jobs(&server) - before, 1, "v2 REST");

    // Typed contents: 4096 packed floats and their framing, just over 16 KiB.
    let mut request = grpc_request(1024, "FP32");
    request.raw_input_contents.clear();
    request.inputs[0].contents = Some(pb::InferTensorContents {
        fp32_contents: vec![0.5; 1024 * 4],
        ..Default::default()
    });
    let before = pool_jobs(&server);
    let answer = grpc.model_infer(request).await.unwrap();
    assert_eq!(answer.into_inner().raw_output_contents.len(), 2);
    assert_eq!(pool_jobs(&server) - before, 1, "v2 gRPC");
    server.stop().await;
}

#[tokio::test]
async fn cheap_calls_predict_inline_once_their_cost_is_measured() {
    // A budget every demo call fits even in a debug build (the default, 20 µs, is for
    // release builds). The first call of each demo variant is measured on the pool; once
    // every variant has been measured (the split is random: 40 requests reach both of a
    // 70/30 pair but for a chance of 0.7^40), small calls run on the request's thread.
    let (_dir, server, _grpc) = demo(|c| c.compute.inline = Duration::from_secs(1)).await;
    for _ in 0..40 {
        let r = server.invoke("demo", "text/csv", csv(2), &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let before = pool_jobs(&server);
    for rows in [1, 2, 16] {
        let r = server.invoke("demo", "text/csv", csv(rows), &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body.lines().count(), rows, "{}", r.body);
    }
    assert_eq!(pool_jobs(&server) - before, 0, "small calls ran inline");
    // A large body still decodes and predicts on the pool, in one job.
    let before = pool_jobs(&server);
    let r = server.invoke("demo", "text/csv", csv(1000), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(pool_jobs(&server) - before, 1);
    server.stop().await;

    // A budget no call fits: every call hops, however often the model has run.
    let (_dir, server, _grpc) = demo(|c| c.compute.inline = Duration::from_nanos(1)).await;
    for _ in 0..10 {
        let before = pool_jobs(&server);
        let r = server.invoke("demo", "text/csv", csv(1), &[]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(pool_jobs(&server) - before, 1);
    }
    server.stop().await;
}

#[tokio::test]
async fn v2_models_resolve_from_the_snapshot_with_the_database_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    server.create_model("m", "iris-logreg").await;
    let state = &server.server.as_ref().unwrap().state;
    state.db.close().await;
    let (status, answer) = server.api("DescribeModel", json!({"ModelName": "m"})).await;
    assert_eq!(status, 503, "the database is closed: {answer}");
    assert_eq!(answer["__type"], "ServiceUnavailable", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("the database is unavailable"),
        "{answer}"
    );

    let (status, answer) = v2_infer(&server, "m", &v2_body(2, "FP32")).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["model_version"], "1", "{answer}");
    let get = |path: String| server.client.get(path).send();
    let meta = get(format!("http://{}/v2/models/m", server.http))
        .await
        .unwrap();
    assert_eq!(meta.status(), 200);
    let meta: Value = meta.json().await.unwrap();
    assert_eq!(meta["versions"], json!(["1"]), "{meta}");
    let ready = get(format!("http://{}/v2/models/m/ready", server.http))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
    let index: Value = server
        .client
        .post(format!("http://{}/v2/repository/index", server.http))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        index
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "m" && m["state"] == "READY"),
        "{index}"
    );
    let (status, answer) = v2_infer(&server, "nope", &v2_body(2, "FP32")).await;
    assert_eq!(status, 404, "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn a_deleted_model_leaves_the_data_plane() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    server.create_model("m", "iris-logreg").await;
    let (status, answer) = v2_infer(&server, "m", &v2_body(1, "FP32")).await;
    assert_eq!(status, 200, "{answer}");
    server.ok("DeleteModel", json!({"ModelName": "m"})).await;
    let (status, answer) = v2_infer(&server, "m", &v2_body(1, "FP32")).await;
    assert_eq!(status, 404, "{answer}");
    server.stop().await;
}

#[tokio::test]
async fn a_failed_on_demand_load_answers_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    server.create_model("broken", "iris-logreg").await;
    let described = server
        .ok("DescribeModel", json!({"ModelName": "broken"}))
        .await;
    let artifact = &described["PierArtifact"];
    let version_dir = dir
        .path()
        .join("store")
        .join(artifact["Name"].as_str().unwrap())
        .join(artifact["Version"].to_string());
    let file = version_dir.join("model.onnx");
    let mut permissions = std::fs::metadata(&file).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&file, permissions).unwrap();
    std::fs::write(&file, b"not an onnx graph").unwrap();

    let (status, answer) = v2_infer(&server, "broken", &v2_body(1, "FP32")).await;
    assert_eq!(status, 424, "{answer}");
    let message = answer["error"].as_str().unwrap();
    assert!(message.contains("model broken/1 cannot be"), "{message}");
    assert!(!message.contains("internal error"), "{message}");
    let load = server
        .client
        .post(format!(
            "http://{}/v2/repository/models/broken/load",
            server.http
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(load.status(), 424);
    server.stop().await;
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let (_dir, server, mut grpc) = demo(|_| {}).await;
    let id = |r: &reqwest::Response| {
        r.headers()
            .get("x-amzn-requestid")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let ok = server
        .client
        .post(format!("http://{}/endpoints/demo/invocations", server.http))
        .header("content-type", "text/csv")
        .body(common::IRIS_CSV)
        .send()
        .await
        .unwrap();
    let missing = server
        .client
        .get(format!("http://{}/no/such/route", server.http))
        .send()
        .await
        .unwrap();
    let admin = server
        .client
        .post(format!("http://{}/", server.admin))
        .header("x-amz-target", "SageMaker.ListModels")
        .body("{}")
        .send()
        .await
        .unwrap();
    let ids = [id(&ok), id(&missing), id(&admin)];
    for i in &ids {
        assert_eq!(i.len(), 36, "a UUID: {ids:?}");
    }
    assert!(ids[0] != ids[1] && ids[1] != ids[2], "{ids:?}");
    let live = grpc.server_live(pb::ServerLiveRequest {}).await.unwrap();
    let grpc_id = live.metadata().get("x-amzn-requestid").unwrap();
    assert_eq!(grpc_id.len(), 36);
    server.stop().await;
}

/// Sends a request whose body never finishes; returns the open connection.
async fn stalled_request(addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    stalled_request_with(addr, "", b"5.1,").await
}

/// [`stalled_request`] with `extra` header lines, its body's first bytes `start` of 100.
async fn stalled_request_with(
    addr: std::net::SocketAddr,
    extra: &str,
    start: &[u8],
) -> tokio::net::TcpStream {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /endpoints/demo/invocations HTTP/1.1\r\nhost: pier\r\ncontent-type: text/csv\r\n{extra}content-length: 100\r\n\r\n"
    );
    tcp.write_all(&[head.as_bytes(), start].concat())
        .await
        .unwrap();
    tcp
}

async fn read_answer(tcp: &mut tokio::net::TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let mut answer = Vec::new();
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n{") || !answer.ends_with(b"}") {
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn the_request_timeout_covers_the_body_read() {
    let (_dir, server, _grpc) = demo(|c| {
        c.limits.request_timeout = Duration::from_millis(300);
    })
    .await;
    let started = std::time::Instant::now();
    let mut tcp = stalled_request(server.http).await;
    let answer = read_answer(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 424"), "{answer}");
    assert!(answer.contains("\"ModelError\""), "{answer}");
    assert!(answer.contains("did not finish within 0.3 s"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));
    server.stop().await;
}

/// A `ModelInfer` call whose message never comes, over HTTP/2 by hand (tonic's client sends a
/// message whole): the status and message the gRPC listener answers with, and how long it
/// took. `grpc_timeout` is sent as the `grpc-timeout` metadata.
async fn stalled_grpc_call(
    addr: std::net::SocketAddr,
    grpc_timeout: Option<&str>,
) -> (String, String, Duration) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);
    let never = http_body_util::StreamBody::new(futures::stream::pending::<
        Result<http_body::Frame<bytes::Bytes>, std::convert::Infallible>,
    >());
    let mut request = http::Request::post(format!(
        "http://{addr}/inference.GRPCInferenceService/ModelInfer"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers");
    if let Some(timeout) = grpc_timeout {
        request = request.header("grpc-timeout", timeout);
    }
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        send.send_request(request.body(never).unwrap()),
    )
    .await
    .expect("an answer within 10 s")
    .unwrap();
    let status = answer
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    // tonic reads the message as a gRPC client does (percent-decoded).
    let message = tonic::Status::from_header_map(answer.headers())
        .map(|s| s.message().to_owned())
        .unwrap_or_default();
    (status, message, started.elapsed())
}

/// gRPC clients give a call a deadline in `grpc-timeout`: the listener answers
/// DEADLINE_EXCEEDED at the shorter of it and `--request-timeout`, and ignores a value that
/// is not gRPC's. The gRPC port speaks HTTP/2 only.
#[tokio::test]
async fn the_grpc_timeout_is_the_shorter_of_the_clients_and_the_servers() {
    let (_dir, server, _grpc) = demo(|c| {
        c.limits.request_timeout = Duration::from_millis(1500);
    })
    .await;
    let addr = server.server.as_ref().unwrap().grpc_addr.unwrap();
    // DEADLINE_EXCEEDED is status 4; the message names the time the call had.
    let (status, message, took) = stalled_grpc_call(addr, Some("200m")).await;
    assert_eq!(status, "4", "{message}");
    assert!(message.contains("within 0.2 s"), "{message}");
    assert!(took < Duration::from_millis(1400), "{took:?}");
    let others = [Some("60S"), Some("soon"), Some("123456789m"), None];
    let answers =
        futures::future::join_all(others.map(|timeout| stalled_grpc_call(addr, timeout))).await;
    for (longer_or_malformed, (status, message, took)) in others.into_iter().zip(answers) {
        assert_eq!(status, "4", "{longer_or_malformed:?}: {message}");
        assert!(
            message.contains("within 1.5 s"),
            "{longer_or_malformed:?}: {message}"
        );
        assert!(took >= Duration::from_millis(1400), "{took:?}");
    }
    // An HTTP/1 request gets no HTTP/1 answer.
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /v2/health/live HTTP/1.1\r\nhost: pier\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/1"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    server.stop().await;
}

/// A SageMaker invocation refused by the listener's load shedding.
fn assert_shed(shed: &common::Invocation) {
    assert_eq!(shed.status, 503, "{}", shed.body);
    assert_eq!(
        shed.json()["ErrorCode"],
        "ServiceUnavailable",
        "{}",
        shed.body
    );
}

#[tokio::test]
async fn a_full_listener_sheds_load_in_its_protocol() {
    let (_dir, server, _grpc) = demo(|c| {
        c.limits.max_in_flight = 1;
        c.limits.request_timeout = Duration::from_secs(5);
    })
    .await;
    let _held = stalled_request(server.http).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shed = server
        .invoke("demo", "text/csv", common::IRIS_CSV, &[])
        .await;
    assert_shed(&shed);
    let v2 = server
        .client
        .get(format!("http://{}/v2/models/demo", server.http))
        .send()
        .await
        .unwrap();
    assert_eq!(v2.status(), 503);
    let body: Value = v2.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("too many requests"),
        "{body}"
    );
    drop(_held);
    server.stop().await;
}

/// SageMaker bounds an invocation by its bytes, not its rows: by default a request of many
/// narrow rows is served, and v2 reports the same row limit as `max_batch_size`.
#[tokio::test]
async fn the_default_row_limit_lets_a_large_csv_through() {
    let (_dir, server, _grpc) = demo(|_| {}).await;
    let r = server.invoke("demo", "text/csv", csv(5000), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let config: Value = server
        .client
        .get(format!("http://{}/v2/models/demo/config", server.http))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        config["max_batch_size"],
        pier_server::config::DEFAULT_MAX_REQUEST_ROWS,
        "{config}"
    );
}

/// The data plane answers an invocation two ways: directly (a `POST` without
/// `Content-Encoding` to a path of plain segments) and through axum's router (everything
/// else: a percent-escaped name, a compressed body, another method). Both give the same
/// answers and refusals behind the same layers, and one in-flight cap counts both.
#[tokio::test]
async fn invocations_answer_alike_the_direct_way_and_through_the_router() {
    use std::io::Write;
    let (_dir, server, _grpc) = demo(|c| {
        c.limits.max_in_flight = 1;
        c.limits.request_timeout = Duration::from_secs(5);
    })
    .await;
    let post = |path: &str| {
        server
            .client
            .post(format!("http://{}{path}", server.http))
            .header("x-amzn-sagemaker-target-variant", "mlp")
    };
    let csv = |path: &str| post(path).header("content-type", "text/csv");
    let read = |r: reqwest::RequestBuilder| async move {
        common::Invocation::read(r.send().await.unwrap()).await
    };
    let fields = |a: &common::Invocation| {
        (
            a.status,
            a.variant.clone(),
            a.model.clone(),
            a.content_type.clone(),
            a.body.clone(),
        )
    };

    let direct = read(csv("/endpoints/demo/invocations").body(common::IRIS_CSV)).await;
    assert_eq!(direct.status, 200, "{}", direct.body);
    assert_eq!(direct.variant.as_deref(), Some("mlp"));
    let escaped = read(csv("/endpoints/de%6Do/invocations").body(common::IRIS_CSV)).await;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(common::IRIS_CSV.as_bytes()).unwrap();
    let gzipped = read(
        csv("/endpoints/demo/invocations")
            .header("content-encoding", "gzip")
            .body(gz.finish().unwrap()),
    )
    .await;
    assert_eq!(fields(&escaped), fields(&direct));
    assert_eq!(fields(&gzipped), fields(&direct));

    // The same refusal for an endpoint that does not exist, either way.
    let missing = read(csv("/endpoints/nope/invocations").body(common::IRIS_CSV)).await;
    let missing_escaped = read(csv("/endpoints/n%6Fpe/invocations").body(common::IRIS_CSV)).await;
    assert_eq!(missing.status, 400, "{}", missing.body);
    assert!(missing.body.contains("nope"), "{}", missing.body);
    assert_eq!(fields(&missing_escaped), fields(&missing));

    // v2: the same tensors either way.
    let body = json!({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 4],
                                  "data": [5.1, 3.5, 1.4, 0.2]}]});
    let infer = |path: &str| {
        let request = post(path).json(&body);
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let v2_direct = infer("/v2/models/demo/versions/mlp/infer").await;
    assert_eq!(v2_direct.0, 200, "{}", v2_direct.1);
    assert_eq!(
        infer("/v2/models/de%6Do/versions/mlp/infer").await,
        v2_direct
    );

    // Another method on an invocation path is the router's 405.
    let get = server
        .client
        .get(format!("http://{}/endpoints/demo/invocations", server.http))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);

    // One cap for both ways: a gzip request stalled in its body (the router's way) holds
    // the only slot, and a direct invocation is shed.
    let held = stalled_request_with(server.http, "content-encoding: gzip\r\n", b"\x1f\x8b").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shed = read(csv("/endpoints/demo/invocations").body(common::IRIS_CSV)).await;
    assert_shed(&shed);
    drop(held);
    server.stop().await;
}

/// Sends `body` to `path` as HTTP/1.1 chunks of `chunk` bytes (no declared length, so only the
/// body read can bound it) and returns the answer.
async fn chunked(
    addr: std::net::SocketAddr,
    path: &str,
    extra: &str,
    body: &[u8],
    chunk: usize,
) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: pier\r\ncontent-type: text/csv\r\naccept: application/json\r\nx-amzn-sagemaker-target-variant: mlp\r\n{extra}transfer-encoding: chunked\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    for part in body.chunks(chunk) {
        let mut frame = format!("{:x}\r\n", part.len()).into_bytes();
        frame.extend_from_slice(part);
        frame.extend_from_slice(b"\r\n");
        // The server may answer 413 and stop reading before the last chunk.
        if tcp.write_all(&frame).await.is_err() {
            break;
        }
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    read_answer(&mut tcp).await
}

/// A body in many frames is gathered whole within the body limit, and a body past the limit
/// is a 413 in SageMaker's shape whether it arrives in chunks (the direct way's read) or
/// inflates past it from gzip (the router's way, through decompression).
#[tokio::test]
async fn bodies_in_many_frames_are_read_whole_within_the_limit() {
    use std::io::Write;
    let (_dir, server, _grpc) = demo(|c| c.limits.max_body_bytes = 64 * 1024).await;
    let whole = server
        .invoke(
            "demo",
            "text/csv",
            common::IRIS_CSV,
            &[
                ("x-amzn-sagemaker-target-variant", "mlp"),
                ("accept", "application/json"),
            ],
        )
        .await;
    assert_eq!(whole.status, 200, "{}", whole.body);
    let path = "/endpoints/demo/invocations";
    let in_frames = chunked(server.http, path, "", common::IRIS_CSV.as_bytes(), 5).await;
    assert!(in_frames.starts_with("HTTP/1.1 200"), "{in_frames}");
    assert!(
        in_frames.ends_with(&whole.body),
        "{in_frames} / {}",
        whole.body
    );

    let over = csv(4000); // 80,000 bytes
    let answer = chunked(server.http, path, "", over.as_bytes(), 16 * 1024).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("65536-byte limit"), "{answer}");
    assert!(answer.contains("\"ErrorCode\""), "{answer}");

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(over.as_bytes()).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 4096, "{} bytes compressed", bomb.len());
    let answer = chunked(server.http, path, "content-encoding: gzip\r\n", &bomb, 1024).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("65536-byte limit"), "{answer}");
    server.stop().await;
}
