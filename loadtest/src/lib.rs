//! `pier-loadtest`: an open- and closed-loop load generator for model servers — Pier, Triton,
//! MLServer or anything else speaking SageMaker's invocations API or the Open Inference
//! Protocol v2 (REST JSON, REST binary tensors, gRPC) — with HDR histograms, a per-second
//! series and JSON/HTML reports.
//!
//! [`run`] takes a [`LoadtestConfig`], prepares the payload once (from a file, or generated
//! from the model's v2 metadata), drives the load ([`runner`]) on the caller's tokio
//! runtime (multi-thread expected) and returns a [`Report`]. [`html::render`] overlays any
//! number of reports in one self-contained page.
//!
//! Modules: [`config`] (settings and their validation), [`payload`] (tensors and their
//! encodings), [`runner`] (the loops), [`recorder`] (histograms), [`report`] (JSON and
//! table), [`html`], and the transports `http` (hyper HTTP/1.1) and `grpc` (tonic).

pub mod config;
pub mod error;
mod grpc;
pub mod html;
mod http;
pub mod payload;
pub mod recorder;
pub mod report;
pub mod runner;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ::http::{HeaderMap, HeaderName, HeaderValue, Uri, header};
use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};

pub use config::{LoadShape, LoadtestConfig, PayloadSource, Protocol, StopAt};
pub use error::{LoadtestError, Result};
pub use recorder::ErrorKind;
pub use report::Report;

use error::invalid;
use payload::{InputTensor, TensorSpec};
use runner::{Plan, RunOutcome};

/// Runs one load test and reports it.
pub async fn run(config: &LoadtestConfig) -> Result<Report> {
    config.validate()?;
    let uri: Uri = config
        .url
        .parse()
        .map_err(|e| invalid(format!("--url: {e}")))?;
    let authority = uri
        .authority()
        .map(|a| a.as_str().to_owned())
        .ok_or_else(|| invalid("--url needs HOST:PORT"))?;
    let prefix = uri.path().trim_end_matches('/').to_owned();
    // Every server the load goes to (replicas): connections are spread round-robin.
    let authorities = config
        .urls()
        .map(|u| {
            u.parse::<Uri>()
                .ok()
                .and_then(|u| u.authority().map(|a| a.as_str().to_owned()))
                .ok_or_else(|| invalid(format!("--url {u} needs HOST:PORT")))
        })
        .collect::<Result<Vec<String>>>()?;
    let plan = Plan {
        load: config.load,
        warmup: config.warmup,
        stop: config.stop,
        timeout: config.timeout,
    };
    let expect = config
        .expect_contains
        .as_ref()
        .map(|s| s.as_bytes().to_vec());
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());

    let (outcome, rows) = match config.protocol {
        Protocol::Sagemaker => {
            let body = match &config.payload {
                PayloadSource::File(path) => read_file(path)?,
                PayloadSource::Generate { features, seed } => {
                    let features = match features {
                        Some(f) => *f,
                        None => {
                            let specs = http_metadata(&authority, &prefix, config).await?;
                            payload::features_per_row(&specs)?
                        }
                    };
                    payload::csv_body(config.rows, features, *seed)
                }
            };
            let content_type = config.content_type.as_deref().unwrap_or("text/csv");
            let path = format!("{prefix}/endpoints/{}/invocations", config.model);
            let mut headers = base_headers(&authority, content_type, config)?;
            if let Some(accept) = &config.accept {
                headers.insert(header::ACCEPT, header_value(accept)?);
            }
            let transport =
                http::HttpTransport::new(&authorities, path_uri(&path)?, headers, body, expect)
                    .map_err(LoadtestError::InvalidConfig)?;
            (drive(transport, plan, config).await, config.rows)
        }
        Protocol::V2Json | Protocol::V2Binary => {
            let inputs = v2_inputs(&authority, &prefix, config).await?;
            let rows = payload::rows_of(&inputs);
            let path = match &config.model_version {
                Some(v) => format!("{prefix}/v2/models/{}/versions/{v}/infer", config.model),
                None => format!("{prefix}/v2/models/{}/infer", config.model),
            };
            let (body, headers) = if config.protocol == Protocol::V2Json {
                (
                    payload::v2_json_body(&inputs),
                    base_headers(&authority, "application/json", config)?,
                )
            } else {
                let (body, header_len) = payload::v2_binary_body(&inputs);
                let mut headers = base_headers(&authority, "application/octet-stream", config)?;
                headers.insert(
                    HeaderName::from_static("inference-header-content-length"),
                    HeaderValue::from(header_len),
                );
                (body, headers)
            };
            let transport =
                http::HttpTransport::new(&authorities, path_uri(&path)?, headers, body, expect)
                    .map_err(LoadtestError::InvalidConfig)?;
            (drive(transport, plan, config).await, rows)
        }
        Protocol::V2Grpc => {
            let inputs = v2_inputs(&authority, &prefix, config).await?;
            let rows = payload::rows_of(&inputs);
            let request =
                payload::grpc_request(&inputs, &config.model, config.model_version.as_deref());
            let channels = match config.load {
                LoadShape::Closed { concurrency } => {
                    concurrency.div_ceil(config.grpc_clients_per_channel)
                }
                LoadShape::Open { connections, .. } => {
                    connections.div_ceil(config.grpc_clients_per_channel)
                }
            };
            tracing::info!(channels, "gRPC channels (HTTP/2 connections)");
            let urls: Vec<&str> = config.urls().collect();
            let transport = grpc::GrpcTransport::new(
                &urls,
                channels as usize,
                config.timeout,
                request,
                &config.headers,
                expect,
            )
            .map_err(LoadtestError::InvalidConfig)?;
            (drive(transport, plan, config).await, rows)
        }
    };
    Ok(build_report(config, outcome, rows, started_unix_s))
}

async fn drive<T: runner::Transport>(
    transport: T,
    plan: Plan,
    config: &LoadtestConfig,
) -> RunOutcome {
    let bar = if config.progress {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
            )
            .expect("constant template"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    tracing::info!(
        target = %config.target(), protocol = config.protocol.name(), model = %config.model,
        load = ?config.load, warmup_s = config.warmup.as_secs_f64(), stop = ?config.stop,
        "load test starts"
    );
    let outcome = runner::run(Arc::new(transport), plan, bar).await;
    tracing::info!(
        ok = outcome.measured.ok,
        failed = outcome.measured.errors.values().sum::<u64>(),
        seconds = outcome.duration.as_secs_f64(),
        "load test finished"
    );
    outcome
}

fn build_report(
    config: &LoadtestConfig,
    outcome: RunOutcome,
    rows: u64,
    started_unix_s: u64,
) -> Report {
    let m = outcome.measured;
    let duration_s = outcome.duration.as_secs_f64();
    let per_s = |n: u64| {
        if duration_s > 0.0 {
            n as f64 / duration_s
        } else {
            0.0
        }
    };
    let round = |x: f64| (x * 100.0).round() / 100.0;
    let (mode, concurrency, rate, connections, max_outstanding) = match config.load {
        LoadShape::Closed { concurrency } => ("closed", Some(concurrency), None, None, None),
        LoadShape::Open {
            rate,
            connections,
            max_outstanding,
        } => (
            "open",
            None,
            Some(rate),
            Some(connections),
            Some(max_outstanding),
        ),
    };
    Report {
        schema: report::SCHEMA,
        label: config.label(),
        target: config.target(),
        model: config.model.clone(),
        protocol: config.protocol.name().into(),
        mode: mode.into(),
        concurrency,
        rate,
        connections,
        max_outstanding,
        warmup_s: config.warmup.as_secs_f64(),
        duration_s: (duration_s * 1e6).round() / 1e6,
        requests: m.ok + m.errors.values().sum::<u64>(),
        ok: m.ok,
        rows_per_request: rows,
        throughput_rps: round(per_s(m.ok)),
        throughput_rows_per_s: round(per_s(m.ok * rows)),
        latency_us: m.latency,
        errors: m.errors,
        timeline: m.timeline,
        percentile_curve: m.curve,
        started_unix_s,
    }
}

fn read_file(path: &std::path::Path) -> Result<Bytes> {
    std::fs::read(path)
        .map(Bytes::from)
        .map_err(|source| LoadtestError::Io {
            path: path.to_owned(),
            source,
        })
}

fn path_uri(path: &str) -> Result<Uri> {
    path.parse()
        .map_err(|e| invalid(format!("--model: {path} is not a valid path: {e}")))
}

fn header_value(v: &str) -> Result<HeaderValue> {
    HeaderValue::try_from(v).map_err(|_| invalid(format!("{v}: not a valid header value")))
}

fn base_headers(authority: &str, content_type: &str, config: &LoadtestConfig) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, header_value(authority)?);
    headers.insert(header::CONTENT_TYPE, header_value(content_type)?);
    for (k, v) in &config.headers {
        let name = HeaderName::try_from(k.as_str())
            .map_err(|_| invalid(format!("--header {k}: bad name")))?;
        headers.append(name, header_value(v)?);
    }
    Ok(headers)
}

async fn v2_inputs(
    authority: &str,
    prefix: &str,
    config: &LoadtestConfig,
) -> Result<Vec<InputTensor>> {
    match &config.payload {
        PayloadSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| LoadtestError::Io {
                path: path.clone(),
                source,
            })?;
            payload::parse_v2_json(&text)
        }
        PayloadSource::Generate { seed, .. } => {
            let specs = if config.protocol == Protocol::V2Grpc {
                grpc_metadata(config).await?
            } else {
                http_metadata(authority, prefix, config).await?
            };
            tracing::info!(
                ?specs,
                rows = config.rows,
                "payload generated from the model's metadata"
            );
            payload::generate(&specs, config.rows, *seed)
        }
    }
}

async fn http_metadata(
    authority: &str,
    prefix: &str,
    config: &LoadtestConfig,
) -> Result<Vec<TensorSpec>> {
    let path = match &config.model_version {
        Some(v) => format!("{prefix}/v2/models/{}/versions/{v}", config.model),
        None => format!("{prefix}/v2/models/{}", config.model),
    };
    let url = format!("http://{authority}{path}");
    let fail = |message: String| LoadtestError::Metadata {
        url: url.clone(),
        message,
    };
    let (status, body) = tokio::time::timeout(config.timeout, http::get(authority, &path))
        .await
        .map_err(|_| fail("no answer within --timeout".into()))?
        .map_err(|m| {
            fail(format!(
                "{m} (give --input-file, or --features for sagemaker)"
            ))
        })?;
    if status != 200 {
        return Err(fail(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    let doc: serde_json::Value = serde_json::from_slice(&body).map_err(|e| fail(e.to_string()))?;
    payload::specs_from_metadata_json(&doc)
}

async fn grpc_metadata(config: &LoadtestConfig) -> Result<Vec<TensorSpec>> {
    use pier_proto::inference::{
        ModelMetadataRequest, grpc_inference_service_client::GrpcInferenceServiceClient,
    };
    let fail = |message: String| LoadtestError::Metadata {
        url: config.url.clone(),
        message,
    };
    let ask = async {
        let endpoint =
            grpc::endpoint(&config.url, config.timeout).map_err(LoadtestError::InvalidConfig)?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| fail(format!("cannot connect: {e}")))?;
        GrpcInferenceServiceClient::new(channel)
            .model_metadata(ModelMetadataRequest {
                name: config.model.clone(),
                version: config.model_version.clone().unwrap_or_default(),
            })
            .await
            .map_err(|s| fail(format!("{:?}: {}", s.code(), s.message())))
    };
    let answer = tokio::time::timeout(config.timeout, ask)
        .await
        .map_err(|_| fail("no answer within --timeout".into()))??
        .into_inner();
    Ok(answer
        .inputs
        .into_iter()
        .map(|t| TensorSpec {
            name: t.name,
            datatype: t.datatype,
            shape: t.shape,
        })
        .collect())
}
