//! `POST /endpoints/{name}/invocations`, `POST /invocations`, `GET /ping`: parse the headers,
//! hand the body's decoder to the invocation core ([`crate::serving::invoke`]), encode the
//! outputs in the negotiated format; the response carries
//! `x-Amzn-Invoked-Production-Variant`.
//!
//! SageMaker's bodies (CSV, JSON, JSON Lines) carry no datatype: the decoder reads the
//! features and casts them to the model's one input's datatype; the core applies the same
//! input policy (shapes, row limit, missing and non-finite values) as to v2 requests.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pier_runtimes::codec::{self, Format};
use pier_runtimes::{DataType, RuntimeError, Tensor, values};

use std::sync::Arc;
use std::time::SystemTime;

use crate::capture::{Capture, Event, Payload};
use crate::error::ServeError;
use crate::layers::Deadline;
use crate::serving::invoke::Request;
use crate::serving::{
    Decoded, EndpointServing, Invoked, LoadedModel, NamedTensor, Target, VariantName,
};
use crate::state::DataPlane;

/// Header naming the variant to use instead of weighted routing.
const TARGET_VARIANT: HeaderName = HeaderName::from_static("x-amzn-sagemaker-target-variant");
/// Header naming a multi-model endpoint's model archive (boto3's `TargetModel`).
const TARGET_MODEL: HeaderName = HeaderName::from_static("x-amzn-sagemaker-target-model");
/// Header telling the client which variant answered.
const INVOKED_VARIANT: HeaderName = HeaderName::from_static("x-amzn-invoked-production-variant");
/// Opaque client attributes (at most 1024 visible ASCII characters).
const CUSTOM_ATTRIBUTES: HeaderName = HeaderName::from_static("x-amzn-sagemaker-custom-attributes");
/// Pier's own header naming the model version that answered (`name/version`).
const PIER_MODEL: HeaderName = HeaderName::from_static("x-pier-model");
/// The caller's id for the inference, kept in captured data (1 to 64 characters).
const INFERENCE_ID: HeaderName = HeaderName::from_static("x-amzn-sagemaker-inference-id");

/// The body as the model's one input tensor, in the model's datatype. An integer input's
/// features meet the missing-value policy before the cast, so a NaN never becomes 0; float
/// inputs meet it in the core's [`validate`](crate::serving::invoke::validate).
fn decode_input(
    model: &LoadedModel,
    format: Format,
    body: &[u8],
) -> Result<Decoded<()>, ServeError> {
    let signature = model.model.signature();
    let [spec] = signature.inputs.as_slice() else {
        return Err(ServeError::Validation(format!(
            "model {} takes {} inputs; SageMaker invocations carry one feature matrix (use the v2 protocol)",
            model.artifact,
            signature.inputs.len()
        )));
    };
    let features =
        codec::decode_features(format, body, spec.features()).map_err(RuntimeError::from)?;
    if !matches!(spec.dtype, DataType::Fp32 | DataType::Fp64) {
        values::check_values(&spec.name, &features, false)?;
    }
    let tensor = features.cast(spec.dtype)?;
    Ok(Decoded {
        inputs: vec![NamedTensor {
            name: spec.name.clone(),
            tensor,
        }],
        outputs: None,
        extra: (),
    })
}

pub(super) async fn ping(State(data): State<DataPlane>) -> StatusCode {
    if data.server_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

pub(super) async fn invoke_endpoint(
    State(data): State<DataPlane>,
    Path(endpoint): Path<String>,
    request: axum::extract::Request,
) -> Response {
    invoke_request(&data, Some(&endpoint), request).await
}

pub(super) async fn invoke_default(
    State(data): State<DataPlane>,
    request: axum::extract::Request,
) -> Response {
    invoke_request(&data, None, request).await
}

/// `POST /endpoints/{endpoint}/invocations` (or `/invocations` when `endpoint` is `None`),
/// answered whole: the axum routes above and the data plane's direct invocation path
/// (`crate::routers`) both come here.
pub(crate) async fn invoke_request(
    data: &DataPlane,
    endpoint: Option<&str>,
    request: axum::extract::Request,
) -> Response {
    let limit = data.config.limits.max_body_bytes;
    let (deadline, headers, body) = crate::layers::invocation_parts(request, limit).await;
    invoke(data, endpoint, deadline, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// The headers an invocation reads, each its first value, found in one pass: comparing the
/// few names a request carries costs less than a hashed lookup for each of six.
#[derive(Default)]
struct Wanted<'h> {
    content_type: Option<&'h HeaderValue>,
    accept: Option<&'h HeaderValue>,
    custom_attributes: Option<&'h HeaderValue>,
    inference_id: Option<&'h HeaderValue>,
    variant: Option<&'h HeaderValue>,
    target_model: Option<&'h HeaderValue>,
}

impl<'h> Wanted<'h> {
    fn of(headers: &'h HeaderMap) -> Self {
        let mut w = Self::default();
        for (name, value) in headers {
            let slot = if name == header::CONTENT_TYPE {
                &mut w.content_type
            } else if name == header::ACCEPT {
                &mut w.accept
            } else if name == CUSTOM_ATTRIBUTES {
                &mut w.custom_attributes
            } else if name == INFERENCE_ID {
                &mut w.inference_id
            } else if name == TARGET_VARIANT {
                &mut w.variant
            } else if name == TARGET_MODEL {
                &mut w.target_model
            } else {
                continue;
            };
            slot.get_or_insert(value);
        }
        w
    }
}

/// A header's value as text.
fn header<'h>(
    value: Option<&'h HeaderValue>,
    name: &HeaderName,
) -> Result<Option<&'h str>, ServeError> {
    value
        .map(|v| {
            v.to_str()
                .map_err(|_| ServeError::Validation(format!("header {name} is not visible ASCII")))
        })
        .transpose()
}

/// What the headers and body say, before any model is involved.
struct Parsed<'h> {
    format: Format,
    content_type: &'h str,
    accept: Format,
    variant: Option<&'h str>,
    inference_id: Option<&'h str>,
    custom_attributes: Option<&'h str>,
    target_model: Option<&'h str>,
    body: Bytes,
}

fn parse<'h>(
    headers: &'h HeaderMap,
    body: Result<Bytes, ServeError>,
) -> Result<Parsed<'h>, ServeError> {
    let body = body?;
    let wanted = Wanted::of(headers);
    let content_type =
        header(wanted.content_type, &header::CONTENT_TYPE)?.unwrap_or("application/json");
    let format = Format::from_content_type(content_type)
        .map_err(|e| ServeError::Validation(e.to_string()))?;
    let accept = codec::negotiate(header(wanted.accept, &header::ACCEPT)?, format)
        .map_err(|e| ServeError::Validation(e.to_string()))?;
    let custom_attributes = header(wanted.custom_attributes, &CUSTOM_ATTRIBUTES)?;
    if custom_attributes.is_some_and(|a| a.len() > 1024) {
        return Err(ServeError::Validation(format!(
            "{CUSTOM_ATTRIBUTES} is longer than 1024 characters"
        )));
    }
    let inference_id = header(wanted.inference_id, &INFERENCE_ID)?;
    if inference_id.is_some_and(|id| id.is_empty() || id.len() > 64) {
        return Err(ServeError::Validation(format!(
            "{INFERENCE_ID} must be 1 to 64 characters"
        )));
    }
    let variant = header(wanted.variant, &TARGET_VARIANT)?;
    let target_model = header(wanted.target_model, &TARGET_MODEL)?;
    Ok(Parsed {
        format,
        content_type,
        accept,
        variant,
        inference_id,
        custom_attributes,
        target_model,
        body,
    })
}

/// What a shadow copy of a request needs (owned: it runs after the caller's answer).
struct ShadowCopy {
    format: Format,
    content_type: String,
    accept: Format,
    inference_id: Option<String>,
    custom_attributes: Option<String>,
    body: Bytes,
}

/// Sends the copy of a request the production variant answered with `production` to
/// `shadow`, discards the shadow's answer, and records how it compared. Runs as its own task
/// once the caller has its answer: it never delays or fails the caller.
async fn run_shadow(
    data: DataPlane,
    serving: Arc<EndpointServing>,
    shadow: String,
    copy: Arc<ShadowCopy>,
    production: Bytes,
) {
    let request = {
        let copy = copy.clone();
        Ok(Request {
            body_len: copy.body.len(),
            decode: move |model: &LoadedModel| decode_input(model, copy.format, &copy.body),
        })
    };
    let target = Target::Shadow {
        name: &serving.name,
        variant: &shadow,
    };
    let answer = match data.invoke(target, None, request).await {
        Ok(done) => encode(&done, copy.accept).ok(),
        Err(_) => None,
    };
    let result = match &answer {
        None => "failed",
        Some(a) if *a == production => "agree",
        Some(_) => "disagree",
    };
    crate::metrics::record_shadow_comparison(&serving.name, &shadow, result);
    if let (Some(capture), Some(answer)) = (&serving.capture, answer)
        && capture.sampled()
    {
        capture.offer(capture_event(
            capture,
            &shadow,
            &copy.body,
            &copy.content_type,
            answer,
            copy.accept,
            copy.inference_id.clone(),
            copy.custom_attributes.clone(),
        ));
    }
}

/// The capture event of one answered request.
#[allow(clippy::too_many_arguments)]
fn capture_event(
    capture: &Capture,
    variant: &str,
    body: &Bytes,
    content_type: &str,
    answer: Bytes,
    accept: Format,
    inference_id: Option<String>,
    custom_attributes: Option<String>,
) -> Event {
    Event {
        variant: variant.to_owned(),
        at: SystemTime::now(),
        input: capture.captures_input().then(|| Payload {
            data: body.clone(),
            content_type: content_type.to_owned(),
        }),
        output: capture.captures_output().then(|| Payload {
            data: answer,
            content_type: accept.mime().to_owned(),
        }),
        inference_id,
        custom_attributes,
    }
}

/// The outputs of `done` as the body of an answer in `accept`.
fn encode(done: &Invoked<()>, accept: Format) -> Result<Bytes, ServeError> {
    let named: Vec<(&str, &Tensor)> = done
        .outputs
        .iter()
        .map(|o| (o.name.as_str(), &o.tensor))
        .collect();
    let bytes = codec::encode_outputs(accept, &named, &done.loaded.model.json_layout())?;
    Ok(Bytes::from(bytes))
}

async fn invoke(
    data: &DataPlane,
    endpoint: Option<&str>,
    deadline: Deadline,
    headers: &HeaderMap,
    body: Result<Bytes, ServeError>,
) -> Result<Response, ServeError> {
    let parsed = parse(headers, body);
    // Shadows and capture: only for a request that parsed, on an endpoint that has either.
    let serving = parsed
        .as_ref()
        .ok()
        .and_then(|_| data.endpoint_serving(endpoint))
        .filter(|s| s.capture.is_some() || !s.shadows.is_empty());
    let (variant, target_model, accept) = match &parsed {
        Ok(p) => (p.variant, p.target_model, p.accept),
        Err(_) => (None, None, Format::Json),
    };
    let kept = match (&serving, &parsed) {
        (Some(_), Ok(p)) => Some(Arc::new(ShadowCopy {
            format: p.format,
            content_type: p.content_type.to_owned(),
            accept: p.accept,
            inference_id: p.inference_id.map(str::to_owned),
            custom_attributes: p.custom_attributes.map(str::to_owned),
            body: p.body.clone(),
        })),
        _ => None,
    };
    let request = parsed.map(|p| Request {
        body_len: p.body.len(),
        decode: move |model: &LoadedModel| decode_input(model, p.format, &p.body),
    });
    let target = Target::Endpoint {
        name: endpoint,
        variant,
        target_model,
    };
    let done = data.invoke(target, deadline.0, request).await?;
    let bytes = encode(&done, accept)?;
    let (Some(serving), Some(copy)) = (&serving, &kept) else {
        return Ok(respond(&done, accept, bytes));
    };
    // Copies of what the production variant answered go to the shadows, sampled by share.
    for shadow in &serving.shadows {
        if shadow.share >= 1.0 || fastrand::f64() < shadow.share {
            tokio::spawn(run_shadow(
                data.clone(),
                serving.clone(),
                shadow.variant.name.to_string(),
                copy.clone(),
                bytes.clone(),
            ));
        }
    }
    if let Some(capture) = &serving.capture
        && capture.sampled()
    {
        capture.offer(capture_event(
            capture,
            done.variant.as_deref().unwrap_or_default(),
            &copy.body,
            &copy.content_type,
            bytes.clone(),
            accept,
            copy.inference_id.clone(),
            copy.custom_attributes.clone(),
        ));
    }
    Ok(respond(&done, accept, bytes))
}

/// The answer: the encoded outputs, their content type, the variant and model that answered.
fn respond(done: &Invoked<()>, accept: Format, bytes: Bytes) -> Response {
    // Built as is (200): `Bytes`' `IntoResponse` would set a content type only to have it
    // replaced.
    let mut response = Response::new(axum::body::Body::from(bytes));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(accept.mime()),
    );
    if let Some(v) = done.variant.as_ref().and_then(VariantName::header) {
        h.insert(INVOKED_VARIANT, v.clone());
    }
    if !done.loaded.artifact_id.is_empty() {
        h.insert(PIER_MODEL, done.loaded.artifact_id.clone());
    }
    response
}
