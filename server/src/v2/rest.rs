//! Open Inference Protocol v2 over REST, on the data-plane port: health, server and model
//! metadata, readiness, inference with the binary tensor data extension both ways
//! (`Inference-Header-Content-Length`, `binary_data_size`, `binary_data_output`,
//! `binary_data`), and Triton's model config, statistics and repository routes that
//! tritonclient and perf_analyzer call. Errors are `{"error": "..."}` with the status
//! [`ServeError::status`] gives.
//!
//! Concurrency: handlers are async and share the [`DataPlane`]; an inference request's body
//! is decoded where the invocation core decides (on the task when small, else on the compute
//! pool in the job that predicts), through [`DataPlane::invoke`].

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{EXTENSIONS, NamedTensor, SERVER_NAME, model_config, tensors};
use crate::error::ServeError;
use crate::layers::Deadline;
use crate::serving::invoke::Request;
use crate::serving::{Decoded, Target, VariantName};
use crate::state::DataPlane;

/// Header giving the length of the JSON part of a binary request or response.
pub const HEADER_LENGTH: &str = "inference-header-content-length";
/// [`HEADER_LENGTH`] as a header name: a lookup or insert by `&str` parses the name each
/// time (and a custom name's insert copies it).
const HEADER_LENGTH_NAME: HeaderName = HeaderName::from_static(HEADER_LENGTH);
/// Header naming the endpoint variant that answered.
const INVOKED_VARIANT: HeaderName = HeaderName::from_static("x-amzn-invoked-production-variant");

mod fast;

type Shared = State<DataPlane>;
type Params = Path<HashMap<String, String>>;

/// The v2 REST routes (state applied; merge into the data-plane router).
pub fn router(data: DataPlane) -> Router {
    let model = |tail: &str| format!("/v2/models/{{model}}{tail}");
    let versioned = |tail: &str| format!("/v2/models/{{model}}/versions/{{version}}{tail}");
    let mut r = Router::new()
        .route("/v2", get(server_metadata))
        .route(
            "/v2/health/live",
            get(|| async { Json(json!({"live": true})) }),
        )
        .route("/v2/health/ready", get(server_ready))
        .route("/v2/models/stats", get(all_stats))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{model}/load", post(load))
        .route("/v2/repository/models/{model}/unload", post(unload));
    for path in [model(""), versioned("")] {
        r = r.route(&path, get(metadata));
    }
    for (tail, ready_or) in [
        ("/ready", get(model_ready)),
        ("/config", get(model_config)),
        ("/stats", get(stats)),
    ] {
        r = r
            .route(&model(tail), ready_or.clone())
            .route(&versioned(tail), ready_or);
    }
    r.route(&model("/infer"), post(infer))
        .route(&versioned("/infer"), post(infer))
        .with_state(data)
}

fn name_version(p: &HashMap<String, String>) -> (&str, Option<&str>) {
    (
        p.get("model").map_or("", String::as_str),
        p.get("version").map(String::as_str),
    )
}

fn answer(r: Result<Response, ServeError>) -> Response {
    r.unwrap_or_else(ServeError::v2_response)
}

async fn server_metadata() -> Json<Value> {
    Json(
        json!({"name": SERVER_NAME, "version": env!("CARGO_PKG_VERSION"), "extensions": EXTENSIONS}),
    )
}

/// `{"ready": bool}` (KServe's clients read the body), 200 or 503 (Triton's clients and load
/// balancers read the status).
async fn server_ready(State(v2): Shared) -> Response {
    let ready = v2.server_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready }))).into_response()
}

async fn metadata(State(v2): Shared, Path(p): Params) -> Response {
    let (name, version) = name_version(&p);
    answer(v2.describe(name, version).await.map(|d| {
        let t = |specs: &[pier_runtimes::TensorSpec]| -> Vec<Value> {
            specs
                .iter()
                .map(|s| json!({"name": s.name, "datatype": s.dtype.as_str(), "shape": s.shape}))
                .collect()
        };
        Json(json!({
            "name": name,
            "versions": d.versions,
            "platform": model_config::platform(&d.runtime),
            "inputs": t(&d.signature.inputs),
            "outputs": t(&d.signature.outputs),
        }))
        .into_response()
    }))
}

async fn model_ready(State(v2): Shared, Path(p): Params) -> Response {
    let (name, version) = name_version(&p);
    answer(v2.ready(name, version).await.map(|ready| {
        if ready {
            Json(json!({ "name": name, "ready": true })).into_response()
        } else {
            let msg = format!("model {name:?} is not ready: it loads on first use or on POST /v2/repository/models/{name}/load");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "name": name, "ready": false, "error": msg })),
            )
                .into_response()
        }
    }))
}

async fn model_config(State(v2): Shared, Path(p): Params) -> Response {
    let (name, version) = name_version(&p);
    answer(v2.describe(name, version).await.map(|d| {
        Json(model_config::model_config_json(
            &model_config::model_config(name, &d),
        ))
        .into_response()
    }))
}

async fn stats(State(v2): Shared, Path(p): Params) -> Response {
    let (name, version) = name_version(&p);
    answer(
        v2.statistics(name, version)
            .await
            .map(|s| Json(model_config::statistics_json(&s)).into_response()),
    )
}

/// `GET /v2/models/stats`: the statistics of every model used so far (Triton's route).
async fn all_stats(State(v2): Shared) -> Response {
    answer(
        v2.statistics("", None)
            .await
            .map(|s| Json(model_config::statistics_json(&s)).into_response()),
    )
}

async fn repository_index(State(v2): Shared) -> Response {
    answer(Ok(v2.index()).map(|models| {
        let list: Vec<Value> = models
            .into_iter()
            .map(|(name, version, state, reason)| json!({"name": name, "version": version, "state": state, "reason": reason}))
            .collect();
        Json(Value::Array(list)).into_response()
    }))
}

async fn load(State(v2): Shared, Path(p): Params) -> Response {
    answer(
        v2.load(name_version(&p).0)
            .await
            .map(|()| StatusCode::OK.into_response()),
    )
}

async fn unload(State(v2): Shared, Path(p): Params) -> Response {
    answer(
        v2.unload(name_version(&p).0)
            .map(|()| StatusCode::OK.into_response()),
    )
}

#[derive(Debug, Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<InputTensor>,
    #[serde(default)]
    outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Debug, Deserialize)]
struct InputTensor {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct RequestedOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

fn flag(params: &Map<String, Value>, key: &str) -> Result<Option<bool>, ServeError> {
    params
        .get(key)
        .map(|v| {
            v.as_bool().ok_or_else(|| {
                ServeError::Validation(format!("parameter {key:?} must be a boolean"))
            })
        })
        .transpose()
}

fn decode_inputs(
    request: &InferRequest,
    mut binary: &[u8],
) -> Result<Vec<NamedTensor>, ServeError> {
    let mut out = Vec::with_capacity(request.inputs.len());
    for input in &request.inputs {
        let name = &input.name;
        let dtype = tensors::datatype(name, &input.datatype)?;
        let tensor = match input.parameters.get("binary_data_size") {
            Some(size) => {
                let size = size.as_u64().map(|s| s as usize).ok_or_else(|| {
                    ServeError::Validation(format!(
                        "input {name:?}: binary_data_size must be a byte count"
                    ))
                })?;
                if size > binary.len() {
                    return Err(ServeError::Validation(format!(
                        "input {name:?}: binary_data_size {size} runs past the {} bytes of binary data left",
                        binary.len()
                    )));
                }
                let (chunk, rest) = binary.split_at(size);
                binary = rest;
                tensors::from_raw(name, dtype, &input.shape, chunk)?
            }
            None => {
                let data = input.data.as_ref().ok_or_else(|| {
                    ServeError::Validation(format!(
                        "input {name:?} has neither data nor parameters.binary_data_size"
                    ))
                })?;
                tensors::from_json(name, dtype, &input.shape, data)?
            }
        };
        out.push(NamedTensor {
            name: name.clone(),
            tensor,
        });
    }
    if !binary.is_empty() {
        return Err(ServeError::Validation(format!(
            "the body has {} bytes of binary data beyond the inputs' binary_data_size",
            binary.len()
        )));
    }
    Ok(out)
}

/// An inference answer's JSON part.
#[derive(Serialize)]
struct InferResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    parameters: ResponseParameters<'a>,
    outputs: &'a [OutputJson<'a>],
}

/// Pier's own answer parameters: the artifact that answered, and the endpoint variant.
#[derive(Serialize)]
struct ResponseParameters<'a> {
    pier_artifact: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pier_variant: Option<&'a str>,
}

/// One output: `data` in JSON, or `parameters.binary_data_size` with its bytes after the
/// JSON part.
#[derive(Serialize)]
struct OutputJson<'a> {
    name: &'a str,
    datatype: &'a str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<tensors::JsonData<'a>>,
}

/// `{"binary_data_size": n}`.
#[derive(Serialize)]
struct BinarySize {
    binary_data_size: usize,
}

/// Writes `r` as JSON into `out`: the same bytes as `serde_json::to_writer(out, r)` (a test
/// holds them equal), with the keys written as literals and a string value copied as is
/// when it needs no escape. serde_json escapes every key and value byte by byte; for a
/// one-row answer that was over half the cost of writing it.
fn write_response(out: &mut Vec<u8>, r: &InferResponse<'_>) -> Result<(), ServeError> {
    fn text(out: &mut Vec<u8>, s: &str) -> Result<(), ServeError> {
        if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            out.push(b'"');
            out.extend_from_slice(s.as_bytes());
            out.push(b'"');
            return Ok(());
        }
        serde_json::to_writer(&mut *out, s).map_err(|e| ServeError::Internal(e.to_string()))
    }
    fn number(out: &mut Vec<u8>, n: usize) {
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }
    out.extend_from_slice(b"{\"model_name\":");
    text(out, r.model_name)?;
    out.extend_from_slice(b",\"model_version\":");
    text(out, r.model_version)?;
    if let Some(id) = r.id {
        out.extend_from_slice(b",\"id\":");
        text(out, id)?;
    }
    out.extend_from_slice(b",\"parameters\":{\"pier_artifact\":");
    text(out, r.parameters.pier_artifact)?;
    if let Some(variant) = r.parameters.pier_variant {
        out.extend_from_slice(b",\"pier_variant\":");
        text(out, variant)?;
    }
    out.extend_from_slice(b"},\"outputs\":[");
    for (i, o) in r.outputs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"name\":");
        text(out, o.name)?;
        out.extend_from_slice(b",\"datatype\":");
        text(out, o.datatype)?;
        out.extend_from_slice(b",\"shape\":[");
        for (j, &d) in o.shape.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            number(out, d);
        }
        out.push(b']');
        if let Some(p) = &o.parameters {
            out.extend_from_slice(b",\"parameters\":{\"binary_data_size\":");
            number(out, p.binary_data_size);
            out.push(b'}');
        }
        if let Some(data) = &o.data {
            out.extend_from_slice(b",\"data\":");
            serde_json::to_writer(&mut *out, data)
                .map_err(|e| ServeError::Internal(e.to_string()))?;
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

/// How the answer is to be encoded, as the request's JSON asked.
#[derive(Debug)]
struct Encoding {
    id: Option<String>,
    all_binary: bool,
    binary_outputs: HashMap<String, bool>,
}

/// Parses and decodes an inference request body (`head_len`: the JSON part's length from
/// `Inference-Header-Content-Length`, when given).
fn decode_request(head_len: Option<usize>, body: &[u8]) -> Result<Decoded<Encoding>, ServeError> {
    let (head, binary) = match head_len {
        None => (body, &[][..]),
        Some(len) if len > body.len() => {
            return Err(ServeError::Validation(format!(
                "header {HEADER_LENGTH} is {len} but the body has only {} bytes",
                body.len()
            )));
        }
        Some(len) => body.split_at(len),
    };
    match fast::decode(head, binary) {
        Some(decoded) => Ok(decoded),
        None => decode_with_serde(head, binary),
    }
}

/// [`decode_request`] through serde's derived parser: every request the hand parser
/// ([`fast`]) leaves, and the one that names what is wrong with a bad request.
fn decode_with_serde(head: &[u8], binary: &[u8]) -> Result<Decoded<Encoding>, ServeError> {
    let request: InferRequest = serde_json::from_slice(head)
        .map_err(|e| ServeError::Validation(format!("invalid inference request JSON: {e}")))?;
    let inputs = decode_inputs(&request, binary)?;
    let all_binary = flag(&request.parameters, "binary_data_output")?.unwrap_or(false);
    let mut binary_outputs: HashMap<String, bool> = HashMap::new();
    let outputs = match request.outputs {
        None => None,
        Some(outs) => {
            for o in &outs {
                binary_outputs.insert(
                    o.name.clone(),
                    flag(&o.parameters, "binary_data")?.unwrap_or(all_binary),
                );
            }
            Some(outs.into_iter().map(|o| o.name).collect())
        }
    };
    Ok(Decoded {
        inputs,
        outputs,
        extra: Encoding {
            id: request.id,
            all_binary,
            binary_outputs,
        },
    })
}

/// The JSON part's length from `Inference-Header-Content-Length`, when the request has one.
fn head_length(headers: &HeaderMap) -> Result<Option<usize>, ServeError> {
    headers
        .get(HEADER_LENGTH_NAME)
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|s| s.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    ServeError::Validation(format!("header {HEADER_LENGTH} must be a byte count"))
                })
        })
        .transpose()
}

/// The path of an inference request: `/v2/models/{model}[/versions/{version}]/infer`.
#[derive(Deserialize)]
struct InferPath {
    model: String,
    version: Option<String>,
}

async fn infer(
    State(v2): Shared,
    Path(p): Path<InferPath>,
    request: axum::extract::Request,
) -> Response {
    infer_request(&v2, &p.model, p.version.as_deref(), request).await
}

/// `POST /v2/models/{name}[/versions/{version}]/infer`, answered whole: the axum route
/// above and the data plane's direct invocation path (`crate::routers`) both come here.
pub(crate) async fn infer_request(
    data: &DataPlane,
    name: &str,
    version: Option<&str>,
    request: axum::extract::Request,
) -> Response {
    let limit = data.config.limits.max_body_bytes;
    let (deadline, headers, body) = crate::layers::invocation_parts(request, limit).await;
    answer(infer_inner(data, name, version, deadline, &headers, body).await)
}

async fn infer_inner(
    data: &DataPlane,
    name: &str,
    version: Option<&str>,
    deadline: Deadline,
    headers: &HeaderMap,
    body: Result<Bytes, ServeError>,
) -> Result<Response, ServeError> {
    let request =
        body.and_then(|body| Ok((head_length(headers)?, body)))
            .map(|(head_len, body)| Request {
                body_len: body.len(),
                decode: move |_: &crate::serving::LoadedModel| decode_request(head_len, &body),
            });
    let target = Target::V2 { name, version };
    let done = data.invoke(target, deadline.0, request).await?;
    let Encoding {
        id,
        all_binary,
        binary_outputs,
    } = done.extra;

    // The answer is serialized straight from the tensors into one buffer: the JSON head,
    // then the binary outputs' bytes (reserved up front), no `Value` tree in between.
    let outputs: Vec<OutputJson<'_>> = done
        .outputs
        .iter()
        .map(|o| {
            let binary = binary_outputs.get(&o.name).copied().unwrap_or(all_binary);
            OutputJson {
                name: &o.name,
                datatype: o.tensor.dtype().as_str(),
                shape: o.tensor.shape(),
                parameters: binary.then(|| BinarySize {
                    binary_data_size: tensors::raw_len(&o.tensor),
                }),
                data: (!binary).then_some(tensors::JsonData(&o.tensor)),
            }
        })
        .collect();
    let payload_len: usize = outputs
        .iter()
        .filter_map(|o| o.parameters.as_ref().map(|p| p.binary_data_size))
        .sum();
    let artifact = done.loaded.artifact_id.to_str().unwrap_or_default();
    let response = InferResponse {
        model_name: name,
        model_version: &done.version,
        id: id.as_deref(),
        parameters: ResponseParameters {
            pier_artifact: artifact,
            pier_variant: done.variant.as_deref(),
        },
        outputs: &outputs,
    };
    let mut body = Vec::with_capacity(256 + 64 * outputs.len() + payload_len);
    write_response(&mut body, &response)?;
    let head_len = body.len();
    for o in &done.outputs {
        if binary_outputs.get(&o.name).copied().unwrap_or(all_binary) {
            tensors::append_raw(&o.tensor, &mut body);
        }
    }
    let binary = body.len() > head_len
        || binary_outputs.values().any(|&b| b)
        || (all_binary && !done.outputs.is_empty());
    // Built as is (200): `Vec<u8>`'s `IntoResponse` would set a content type only to have
    // it replaced.
    let mut r = Response::new(axum::body::Body::from(body));
    let h = r.headers_mut();
    if binary {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        h.insert(HEADER_LENGTH_NAME, HeaderValue::from(head_len));
    } else {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let Some(v) = done.variant.as_ref().and_then(VariantName::header) {
        h.insert(INVOKED_VARIANT, v.clone());
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pier_runtimes::{Tensor, TensorData};

    /// The hand-written answer is byte for byte what serde_json writes from the same
    /// structs, for plain and escaped strings, with and without the optional fields, for
    /// JSON and binary outputs.
    #[test]
    fn the_answer_is_written_as_serde_json_writes_it() {
        let probabilities = Tensor::new(
            vec![2, 3],
            TensorData::Fp32(vec![0.1, 0.25, f32::NAN, 1e-8, 3.0, -0.5]),
        )
        .unwrap();
        let labels = Tensor::new(vec![2], TensorData::Int64(vec![0, -7])).unwrap();
        let words = Tensor::new(
            vec![2],
            TensorData::Bytes(vec![b"a\"b".to_vec(), vec![0xff, b'\n']]),
        )
        .unwrap();
        let names = [
            "mlp",
            "quote\"back\\slash",
            "tab\tnew\nline",
            "é ünïcode",
            "",
        ];
        for name in names {
            for (id, variant) in [(None, None), (Some(name), Some("AllTraffic"))] {
                let outputs = [
                    OutputJson {
                        name,
                        datatype: "FP32",
                        shape: probabilities.shape(),
                        parameters: None,
                        data: Some(tensors::JsonData(&probabilities)),
                    },
                    OutputJson {
                        name: "label",
                        datatype: "INT64",
                        shape: labels.shape(),
                        parameters: Some(BinarySize {
                            binary_data_size: 16,
                        }),
                        data: None,
                    },
                    OutputJson {
                        name: "words",
                        datatype: "BYTES",
                        shape: words.shape(),
                        parameters: None,
                        data: Some(tensors::JsonData(&words)),
                    },
                ];
                for outputs in [&outputs[..], &outputs[..1], &[]] {
                    let response = InferResponse {
                        model_name: name,
                        model_version: "1",
                        id,
                        parameters: ResponseParameters {
                            pier_artifact: "demo/3",
                            pier_variant: variant,
                        },
                        outputs,
                    };
                    let mut ours = Vec::new();
                    write_response(&mut ours, &response).unwrap();
                    let theirs = serde_json::to_vec(&response).unwrap();
                    assert_eq!(
                        String::from_utf8_lossy(&ours),
                        String::from_utf8_lossy(&theirs)
                    );
                }
            }
        }
    }
}
