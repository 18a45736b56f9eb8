//! The Open Inference Protocol v2 request parsers, driven through the real REST router and
//! gRPC service: the JSON infer request (`tensors::from_json` per input), the binary tensor
//! extension (`Inference-Header-Content-Length` split, `binary_data_size`,
//! `tensors::from_raw`) and the gRPC `ModelInferRequest` (prost decode,
//! `raw_input_contents` through `tensors::from_raw`, typed `contents` through
//! `tensors::from_contents`). Requests go to the demo endpoint, so a valid one also predicts.

use axum::body::Body;
use http::{HeaderValue, Request, StatusCode};

use crate::harness::Harness;
use crate::{MAX_INPUT, strict, trace};

const INFER: &str = "/v2/models/demo/infer";

/// A v2 REST infer body (`application/json`).
pub fn v2_json(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    infer(None, data);
}

/// A v2 REST infer request with the binary tensor extension: the input's first line is the
/// `Inference-Header-Content-Length` value, the rest is the body (JSON header, then tensors).
pub fn v2_binary(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let Some(newline) = data.iter().position(|&b| b == b'\n') else {
        return;
    };
    let Ok(header) = HeaderValue::from_bytes(&data[..newline]) else {
        return;
    };
    infer(Some(header), &data[newline + 1..]);
}

fn infer(header_length: Option<HeaderValue>, body: &[u8]) {
    let mut request = Request::post(INFER);
    if let Some(value) = header_length {
        request = request
            .header("inference-header-content-length", value)
            .header("content-type", "application/octet-stream");
    } else {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(Body::from(body.to_vec()))
        .expect("a valid request");
    let (status, answer) = Harness::data_plane().data(request);
    trace("v2", status.as_str(), &answer);
    if strict() {
        assert_ne!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "a client's bytes got a 500: {}",
            String::from_utf8_lossy(&answer)
        );
    }
}

/// A protobuf `inference.ModelInferRequest`, sent to `GRPCInferenceService/ModelInfer`.
pub fn grpc_model_infer(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let (status, answer) =
        Harness::data_plane().grpc("/inference.GRPCInferenceService/ModelInfer", data);
    trace("grpc", status.as_deref().unwrap_or("-"), &answer);
    if strict() {
        // 2 UNKNOWN, 13 INTERNAL: a server fault, never the answer to a client's bytes.
        assert!(
            !matches!(status.as_deref(), Some("2" | "13")),
            "a client's message got gRPC status {status:?}"
        );
    }
}
