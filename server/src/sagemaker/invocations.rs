//! `POST /endpoints/{name}/invocations`, `POST /invocations`, `GET /ping`: parse the headers,
//! hand the body's decoder to the invocation core ([`crate::serving::invoke`]), encode the
//! outputs in the negotiated format; the response carries
//! `x-Amzn-Invoked-Production-Variant`.
//!
//! SageMaker's bodies (CSV, JSON, JSON Lines) carry no datatype: the decoder reads the
//! features and casts them to the model's one input's datatype; the core applies the same
//! input policy (shapes, row limit, missing and non-finite values) as to v2 requests.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pier_runtimes::codec::{self, Format};
use pier_runtimes::{DataType, RuntimeError, Tensor, values};

use crate::error::ServeError;
use crate::layers::Deadline;
use crate::serving::invoke::Request;
use crate::serving::{Decoded, LoadedModel, NamedTensor, Target};
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
    deadline: Deadline,
    request: axum::extract::Request,
) -> Response {
    let (headers, body) = crate::layers::headers_and_body(request).await;
    invoke(&data, Some(&endpoint), deadline, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn invoke_default(
    State(data): State<DataPlane>,
    deadline: Deadline,
    request: axum::extract::Request,
) -> Response {
    let (headers, body) = crate::layers::headers_and_body(request).await;
    invoke(&data, None, deadline, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// A header's value as text (typed names: no parsing of the name per lookup).
fn header<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h str>, ServeError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ServeError::Validation(format!("header {name} is not visible ASCII")))
        })
        .transpose()
}

/// What the headers and body say, before any model is involved.
struct Parsed<'h> {
    format: Format,
    accept: Format,
    variant: Option<&'h str>,
    target_model: Option<&'h str>,
    body: Bytes,
}

fn parse<'h>(
    data: &DataPlane,
    headers: &'h HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Parsed<'h>, ServeError> {
    let body = crate::layers::body_or_refusal(body, data.config.limits.max_body_bytes)?;
    let content_type = header(headers, &header::CONTENT_TYPE)?.unwrap_or("application/json");
    let format = Format::from_content_type(content_type)
        .map_err(|e| ServeError::Validation(e.to_string()))?;
    let accept = codec::negotiate(header(headers, &header::ACCEPT)?, format)
        .map_err(|e| ServeError::Validation(e.to_string()))?;
    if header(headers, &CUSTOM_ATTRIBUTES)?.is_some_and(|a| a.len() > 1024) {
        return Err(ServeError::Validation(format!(
            "{CUSTOM_ATTRIBUTES} is longer than 1024 characters"
        )));
    }
    let variant = header(headers, &TARGET_VARIANT)?;
    let target_model = header(headers, &TARGET_MODEL)?;
    Ok(Parsed {
        format,
        accept,
        variant,
        target_model,
        body,
    })
}

async fn invoke(
    data: &DataPlane,
    endpoint: Option<&str>,
    deadline: Deadline,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ServeError> {
    let parsed = parse(data, headers, body);
    let (variant, target_model, accept) = match &parsed {
        Ok(p) => (p.variant, p.target_model, p.accept),
        Err(_) => (None, None, Format::Json),
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
    let model = done.loaded.model.as_ref();
    let named: Vec<(&str, &Tensor)> = done
        .outputs
        .iter()
        .map(|o| (o.name.as_str(), &o.tensor))
        .collect();
    let bytes = codec::encode_outputs(accept, &named, &model.json_layout())?;

    let mut response = (StatusCode::OK, bytes).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(accept.mime()),
    );
    if let Some(v) = done
        .variant
        .as_deref()
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        h.insert(INVOKED_VARIANT, v);
    }
    if let Ok(v) = HeaderValue::from_str(&done.loaded.artifact.to_string()) {
        h.insert(PIER_MODEL, v);
    }
    Ok(response)
}
