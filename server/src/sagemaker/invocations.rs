//! `POST /endpoints/{name}/invocations`, `POST /invocations`, `GET /ping`.
//!
//! Per request: admission (in-flight permit) → one snapshot load → route to a variant →
//! decode and check, values included (on the compute pool for large bodies), predict under
//! the request timeout (batched or alone), encode → the response carries
//! `x-Amzn-Invoked-Production-Variant`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pier_runtimes::codec::{self, Format};
use pier_runtimes::{DataType, RuntimeError, Tensor, values};

use crate::error::ServeError;
use crate::metrics::RequestMetrics;
use crate::serving::LoadedModel;
use crate::state::AppState;

/// Header naming the variant to use instead of weighted routing.
const TARGET_VARIANT: &str = "x-amzn-sagemaker-target-variant";
/// Header telling the client which variant answered.
const INVOKED_VARIANT: &str = "x-amzn-invoked-production-variant";
/// Opaque client attributes (at most 1024 visible ASCII characters).
const CUSTOM_ATTRIBUTES: &str = "x-amzn-sagemaker-custom-attributes";
/// Pier's own header naming the model version that answered (`name/version`).
const PIER_MODEL: &str = "x-pier-model";

/// Bodies up to this size are decoded on the request's task, larger ones on the pool.
const INLINE_DECODE_BYTES: usize = 16 * 1024;

/// The body as the model's one input tensor, cast and checked against its signature and
/// the missing / non-finite value policy ([`pier_runtimes::values`]). The policy sees the
/// decoded `FP32` features before any cast, so an integer input never takes a NaN as 0.
fn decode_input(model: &LoadedModel, format: Format, body: &[u8]) -> Result<Tensor, ServeError> {
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
    let float = matches!(spec.dtype, DataType::Fp32 | DataType::Fp64);
    values::check_values(
        &spec.name,
        &features,
        float && model.model.accepts_missing(),
    )?;
    let input = features.cast(spec.dtype)?;
    spec.check(&input)?;
    Ok(input)
}

pub(super) async fn ping(State(app): State<AppState>) -> StatusCode {
    if app.server_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

pub(super) async fn invoke_endpoint(
    State(app): State<AppState>,
    Path(endpoint): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut metrics = RequestMetrics::start(&endpoint);
    let result = invoke(&app, Some(endpoint), &headers, body, &mut metrics).await;
    metrics.finish(&result);
    result.unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn invoke_default(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let endpoint = app.config.default_endpoint.clone();
    let mut metrics = RequestMetrics::start(endpoint.as_deref().unwrap_or(""));
    let result = invoke(&app, endpoint, &headers, body, &mut metrics).await;
    metrics.finish(&result);
    result.unwrap_or_else(IntoResponse::into_response)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ServeError> {
    headers
        .get(name)
        .map(|v| {
            v.to_str()
                .map_err(|_| ServeError::Validation(format!("header {name} is not visible ASCII")))
        })
        .transpose()
}

async fn invoke(
    app: &AppState,
    endpoint: Option<String>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    metrics: &mut RequestMetrics,
) -> Result<Response, ServeError> {
    let _permit = app
        .in_flight
        .try_acquire()
        .map_err(|_| ServeError::Overloaded("too many requests in flight"))?;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ServeError::PayloadTooLarge {
            limit: app.config.limits.max_body_bytes,
        },
        _ => ServeError::Validation(rejection.body_text()),
    })?;
    let content_type =
        header(headers, header::CONTENT_TYPE.as_str())?.unwrap_or("application/json");
    let format = Format::from_content_type(content_type)
        .map_err(|e| ServeError::Validation(e.to_string()))?;
    let accept = codec::negotiate(header(headers, header::ACCEPT.as_str())?, format)
        .map_err(|e| ServeError::Validation(e.to_string()))?;
    if header(headers, CUSTOM_ATTRIBUTES)?.is_some_and(|a| a.len() > 1024) {
        return Err(ServeError::Validation(format!(
            "{CUSTOM_ATTRIBUTES} is longer than 1024 characters"
        )));
    }
    let target = header(headers, TARGET_VARIANT)?;

    let snapshot = app.serving.snapshot();
    let endpoint = match endpoint {
        Some(name) => snapshot.endpoint(&name)?,
        None if snapshot.endpoints.len() == 1 => {
            snapshot.endpoints.values().next().expect("one endpoint")
        }
        None => {
            return Err(ServeError::Validation(format!(
                "POST /invocations needs a default endpoint: start with --default-endpoint or create exactly one endpoint (there are {})",
                snapshot.endpoints.len()
            )));
        }
    };
    let variant = endpoint.route(target, fastrand::f64())?;
    let loaded = variant.loaded.clone();
    let variant_name = variant.name.clone();
    metrics.route(&loaded.labels);
    drop(snapshot);

    // Decode (on the compute pool when the body is large enough to be real work; a small
    // body decodes faster than a thread hop), predict, encode.
    let timeout = app.config.limits.request_timeout;
    let input = if body.len() <= INLINE_DECODE_BYTES {
        decode_input(&loaded, format, &body)?
    } else {
        let model = loaded.clone();
        app.serving
            .pool
            .run(move || decode_input(&model, format, &body))
            .await?
    };
    let outputs = app.serving.infer(&loaded, vec![input], timeout).await?;
    let model = loaded.model.as_ref();
    let named: Vec<(&str, &Tensor)> = model
        .signature()
        .outputs
        .iter()
        .map(|o| o.name.as_str())
        .zip(outputs.iter())
        .collect();
    let bytes = codec::encode_outputs(accept, &named, &model.json_layout())?;
    let artifact = loaded.artifact.to_string();

    let mut response = (StatusCode::OK, bytes).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(accept.mime()),
    );
    if let Ok(v) = HeaderValue::from_str(&variant_name) {
        h.insert(INVOKED_VARIANT, v);
    }
    if let Ok(v) = HeaderValue::from_str(&artifact) {
        h.insert(PIER_MODEL, v);
    }
    Ok(response)
}
