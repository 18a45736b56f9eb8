//! Every metric Pier exports, named here and nowhere else, and the helpers that record them.
//!
//! Metrics go through the `metrics` facade into one process-wide Prometheus recorder
//! ([`install`]); `GET /metrics` renders its handle. Labels: `endpoint`, `variant`, `model`,
//! `version` (and `outcome` on the request counter, taken from
//! [`crate::error::WireStatus::outcome`]).
//!
//! Each facade records a request through one [`RequestMetrics`] guard: create it when the
//! request arrives, [`RequestMetrics::route`] it once the variant is known and
//! [`RequestMetrics::finish`] it with the result. The v2 REST and gRPC facades use it the
//! same way (`finish_status` takes an outcome label directly). Queue, compute and batch-size
//! metrics are recorded behind `Serving::infer`, so every facade gets them.
//!
//! Concurrency: recording is lock-free (atomics inside the recorder); rendering takes the
//! recorder's internal locks briefly.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics::{Label, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::error::ServeError;

/// Requests answered, by outcome (`ok`, `client_error`, `model_error`, `queue_full`, …).
pub const REQUESTS: &str = "pier_requests_total";
/// Request duration from arrival to answer, seconds.
pub const REQUEST_DURATION: &str = "pier_request_duration_seconds";
/// Time a request waited before its batch started computing, seconds.
pub const QUEUE_DURATION: &str = "pier_queue_duration_seconds";
/// Time one batch (or unbatched request) spent in the model, seconds.
pub const COMPUTE_DURATION: &str = "pier_compute_duration_seconds";
/// Rows per executed batch.
pub const BATCH_SIZE: &str = "pier_batch_size";
/// Requests being handled now.
pub const IN_FLIGHT: &str = "pier_requests_in_flight";
/// Model versions loaded.
pub const MODEL_LOADS: &str = "pier_model_loads_total";
/// Model versions that failed to load.
pub const MODEL_LOAD_FAILURES: &str = "pier_model_load_failures_total";

const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls are no-ops).
pub fn install() {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), BATCH_BUCKETS));
        match builder.map(PrometheusBuilder::build_recorder) {
            Ok(recorder) => {
                let handle = recorder.handle();
                match metrics::set_global_recorder(recorder) {
                    Ok(()) => Some(handle),
                    Err(e) => {
                        tracing::warn!(error = %e, "another metrics recorder is installed; /metrics is empty");
                        None
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not built");
                None
            }
        }
    });
}

/// The Prometheus text exposition of every metric recorded so far.
pub fn render() -> String {
    HANDLE
        .get()
        .and_then(Option::as_ref)
        .map(PrometheusHandle::render)
        .unwrap_or_default()
}

/// Labels of one served model version (endpoint and variant are empty when a model is
/// invoked directly).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelLabels {
    /// Endpoint name.
    pub endpoint: String,
    /// Production variant name.
    pub variant: String,
    /// Model (control-plane name, or the artifact name).
    pub model: String,
    /// Artifact version.
    pub version: String,
}

impl ModelLabels {
    fn labels(&self) -> Vec<Label> {
        vec![
            Label::new("endpoint", self.endpoint.clone()),
            Label::new("variant", self.variant.clone()),
            Label::new("model", self.model.clone()),
            Label::new("version", self.version.clone()),
        ]
    }
}

/// Records how long a request waited for compute.
pub fn record_queue(labels: &ModelLabels, waited: Duration) {
    histogram!(QUEUE_DURATION, labels.labels()).record(waited.as_secs_f64());
}

/// Records one batch's compute time.
pub fn record_compute(labels: &ModelLabels, took: Duration) {
    histogram!(COMPUTE_DURATION, labels.labels()).record(took.as_secs_f64());
}

/// Records the rows of one executed batch.
pub fn record_batch(labels: &ModelLabels, rows: usize) {
    histogram!(BATCH_SIZE, labels.labels()).record(rows as f64);
}

/// Records a model load (`ok`) or a failed one.
pub fn record_load(model: &str, version: &str, backend: &str, ok: bool) {
    let labels = vec![
        Label::new("model", model.to_owned()),
        Label::new("version", version.to_owned()),
        Label::new("backend", backend.to_owned()),
    ];
    if ok {
        counter!(MODEL_LOADS, labels).increment(1);
    } else {
        counter!(MODEL_LOAD_FAILURES, labels).increment(1);
    }
}

/// One request's metrics: in-flight while alive, then its count and duration. Dropped
/// without [`finish`](Self::finish) (the client went away), it counts as `cancelled`.
#[derive(Debug)]
pub struct RequestMetrics {
    labels: ModelLabels,
    started: Instant,
    in_flight: Vec<Label>,
    done: bool,
}

impl RequestMetrics {
    /// Starts timing a request addressed to `endpoint` (a model name for direct v2 calls).
    pub fn start(endpoint: &str) -> Self {
        let labels = ModelLabels {
            endpoint: endpoint.to_owned(),
            ..ModelLabels::default()
        };
        let in_flight = vec![Label::new("endpoint", endpoint.to_owned())];
        gauge!(IN_FLIGHT, in_flight.clone()).increment(1.0);
        Self {
            labels,
            started: Instant::now(),
            in_flight,
            done: false,
        }
    }

    /// Names the variant and model version that serve the request.
    pub fn route(&mut self, labels: &ModelLabels) {
        let endpoint = std::mem::take(&mut self.labels.endpoint);
        self.labels = labels.clone();
        if self.labels.endpoint.is_empty() {
            self.labels.endpoint = endpoint;
        }
    }

    /// Records the result of the request.
    pub fn finish<T>(self, result: &Result<T, ServeError>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) => e.status().outcome,
        };
        self.finish_status(outcome);
    }

    /// Records the request with an outcome label (for facades with their own error types).
    pub fn finish_status(mut self, outcome: &'static str) {
        self.record(outcome);
    }

    fn record(&mut self, outcome: &'static str) {
        if self.done {
            return;
        }
        self.done = true;
        let mut labels = self.labels.labels();
        histogram!(REQUEST_DURATION, labels.clone()).record(self.started.elapsed().as_secs_f64());
        labels.push(Label::new("outcome", outcome));
        counter!(REQUESTS, labels).increment(1);
        gauge!(IN_FLIGHT, self.in_flight.clone()).decrement(1.0);
    }
}

impl Drop for RequestMetrics {
    fn drop(&mut self) {
        self.record("cancelled");
    }
}
