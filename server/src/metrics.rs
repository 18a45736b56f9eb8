//! Every metric Pier exports, named here and nowhere else, and the helpers that record them.
//!
//! Metrics go through the `metrics` facade into one process-wide Prometheus recorder
//! ([`install`]); `GET /metrics` renders its handle. Labels: `endpoint`, `variant`, `model`,
//! `version` (and `outcome` on the request counter, taken from
//! [`crate::error::WireStatus::outcome`]).
//!
//! The invocation core ([`crate::serving::invoke`]) records every request, whatever its
//! protocol, through one [`RequestMetrics`] guard: created when the request arrives,
//! [`RequestMetrics::route`]d once the variant is known and [`RequestMetrics::finish`]ed
//! with the result. Queue, compute and batch-size metrics are recorded where the model runs
//! (the core's pool job or the batcher), so every facade gets them.
//!
//! Concurrency: recording is lock-free (atomics inside the recorder); rendering takes the
//! recorder's internal locks briefly.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge, Histogram, Label, counter, gauge, histogram};
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
/// Multi-model endpoints: requests whose target was loaded already, by Model.
pub const MULTI_MODEL_HITS: &str = "pier_multi_model_cache_hits_total";
/// Multi-model endpoints: targets loaded, by Model.
pub const MULTI_MODEL_LOADS: &str = "pier_multi_model_loads_total";
/// Multi-model endpoints: target loads that failed, by Model.
pub const MULTI_MODEL_LOAD_FAILURES: &str = "pier_multi_model_load_failures_total";
/// Multi-model endpoints: seconds one target took to fetch, unpack, load and warm.
pub const MULTI_MODEL_LOAD_DURATION: &str = "pier_multi_model_load_duration_seconds";
/// Multi-model endpoints: targets evicted to stay under `--multi-model-memory`, by Model.
pub const MULTI_MODEL_EVICTIONS: &str = "pier_multi_model_evictions_total";
/// Multi-model endpoints: targets loaded now (all Models).
pub const MULTI_MODEL_LOADED: &str = "pier_multi_model_loaded_models";
/// Multi-model endpoints: bytes of the targets loaded now (their unpacked sizes).
pub const MULTI_MODEL_LOADED_BYTES: &str = "pier_multi_model_loaded_bytes";
/// Connections closed on accept because `--max-connections` were open.
pub const CONNECTIONS_REFUSED: &str = "pier_connections_refused_total";
/// Counter: captured events written to the data capture destination.
pub const CAPTURE_WRITTEN: &str = "pier_capture_written_total";
/// Counter: captured events dropped (`reason`: `queue_full`, `writer_stopped`, `write_failed`).
pub const CAPTURE_DROPPED: &str = "pier_capture_dropped_total";
/// Counter: shadowed requests whose shadow answered as the production variant did
/// (`result`: `agree`, `disagree`, `failed`).
pub const SHADOW_COMPARISONS: &str = "pier_shadow_comparisons_total";

/// The `endpoint` label of requests refused before routing whose name is not a known
/// endpoint: client-chosen names never become series of their own.
pub const UNKNOWN_ENDPOINT: &str = "__unknown";

const SECONDS_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Endpoint names the control planes of this process know (in service, creating or failed),
/// each counted once per server that knows it; requests refused before routing are labelled
/// with their name only when it is one of these. Changed only by control-plane edits, read
/// only on the refused-request path, so a mutex is enough.
static KNOWN_ENDPOINTS: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

/// Records a server's change of known endpoint names (called on every snapshot change).
pub fn endpoint_names_changed<'a>(
    removed: impl Iterator<Item = &'a String>,
    added: impl Iterator<Item = &'a String>,
) {
    let mut known = KNOWN_ENDPOINTS.lock().unwrap_or_else(|e| e.into_inner());
    for name in added {
        *known.entry(name.clone()).or_default() += 1;
    }
    for name in removed {
        if let Some(n) = known.get_mut(name) {
            *n -= 1;
            if *n == 0 {
                known.remove(name);
            }
        }
    }
}

fn is_known_endpoint(name: &str) -> bool {
    KNOWN_ENDPOINTS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains_key(name)
}

/// Counts a connection closed on accept for being over the connection cap.
pub fn record_connection_refused() {
    counter!(CONNECTIONS_REFUSED).increment(1);
}

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
///
/// The metric handles for these labels are registered on first use and shared by clones,
/// so the hot path records into atomics without building keys or hashing label sets.
#[derive(Clone, Debug, Default)]
pub struct ModelLabels {
    /// Endpoint name.
    pub endpoint: String,
    /// Production variant name.
    pub variant: String,
    /// Model (control-plane name, or the artifact name).
    pub model: String,
    /// Artifact version.
    pub version: String,
    /// Handles for these labels, registered on first use (after [`install`]).
    pub handles: Arc<OnceLock<Handles>>,
    /// Requests routed to these labels since they were made, whether or not a recorder is
    /// installed: the autoscaler's `SageMakerVariantInvocationsPerInstance` reads it.
    pub invocations: Arc<std::sync::atomic::AtomicU64>,
}

impl PartialEq for ModelLabels {
    fn eq(&self, other: &Self) -> bool {
        (&self.endpoint, &self.variant, &self.model, &self.version)
            == (
                &other.endpoint,
                &other.variant,
                &other.model,
                &other.version,
            )
    }
}

impl Eq for ModelLabels {}

/// Registered metric handles of one [`ModelLabels`] set.
#[derive(Debug)]
pub struct Handles {
    queue: Histogram,
    compute: Histogram,
    batch: Histogram,
    request_duration: Histogram,
    requests_ok: Counter,
    in_flight: Gauge,
    /// The label set itself, for the rarer outcomes' counters.
    labels: Vec<Label>,
}

impl ModelLabels {
    fn handles(&self) -> &Handles {
        self.handles.get_or_init(|| {
            let labels = self.labels();
            let mut ok = labels.clone();
            ok.push(Label::new("outcome", "ok"));
            Handles {
                queue: histogram!(QUEUE_DURATION, labels.clone()),
                compute: histogram!(COMPUTE_DURATION, labels.clone()),
                batch: histogram!(BATCH_SIZE, labels.clone()),
                request_duration: histogram!(REQUEST_DURATION, labels.clone()),
                requests_ok: counter!(REQUESTS, ok),
                labels,
                in_flight: gauge!(
                    IN_FLIGHT,
                    vec![Label::new("endpoint", self.endpoint.clone())]
                ),
            }
        })
    }

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
    labels.handles().queue.record(waited.as_secs_f64());
}

/// Records one batch's compute time.
pub fn record_compute(labels: &ModelLabels, took: Duration) {
    labels.handles().compute.record(took.as_secs_f64());
}

/// Records the rows of one executed batch.
pub fn record_batch(labels: &ModelLabels, rows: usize) {
    labels.handles().batch.record(rows as f64);
}

/// Records `events` captured events written for `endpoint`'s `variant`.
pub fn record_capture_written(endpoint: &str, variant: &str, events: usize) {
    let labels = vec![
        Label::new("endpoint", endpoint.to_owned()),
        Label::new("variant", variant.to_owned()),
    ];
    counter!(CAPTURE_WRITTEN, labels).increment(events as u64);
}

/// Records one captured event dropped, and why.
pub fn record_capture_dropped(endpoint: &str, variant: &str, reason: &'static str) {
    let labels = vec![
        Label::new("endpoint", endpoint.to_owned()),
        Label::new("variant", variant.to_owned()),
        Label::new("reason", reason),
    ];
    counter!(CAPTURE_DROPPED, labels).increment(1);
}

/// Records how a shadow variant's answer compared with the production variant's.
pub fn record_shadow_comparison(endpoint: &str, shadow: &str, result: &'static str) {
    let labels = vec![
        Label::new("endpoint", endpoint.to_owned()),
        Label::new("variant", shadow.to_owned()),
        Label::new("result", result),
    ];
    counter!(SHADOW_COMPARISONS, labels).increment(1);
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

/// The counter of multi-model requests served by a target already loaded, for one Model
/// (registered once, bumped on the hot path).
pub fn multi_model_hits(model: &str) -> Counter {
    counter!(MULTI_MODEL_HITS, "model" => model.to_owned())
}

/// Records one multi-model target load: its duration and whether it succeeded.
pub fn record_multi_model_load(model: &str, took: Duration, ok: bool) {
    if ok {
        counter!(MULTI_MODEL_LOADS, "model" => model.to_owned()).increment(1);
        histogram!(MULTI_MODEL_LOAD_DURATION, "model" => model.to_owned())
            .record(took.as_secs_f64());
    } else {
        counter!(MULTI_MODEL_LOAD_FAILURES, "model" => model.to_owned()).increment(1);
    }
}

/// Counts a multi-model target evicted from the cache.
pub fn record_multi_model_eviction(model: &str) {
    counter!(MULTI_MODEL_EVICTIONS, "model" => model.to_owned()).increment(1);
}

/// Sets what the multi-model cache holds now.
pub fn set_multi_model_usage(models: usize, bytes: u64) {
    gauge!(MULTI_MODEL_LOADED).set(models as f64);
    gauge!(MULTI_MODEL_LOADED_BYTES).set(bytes as f64);
}

/// One request's metrics: in flight from routing to answer, then its count and duration.
/// Dropped without [`finish`](Self::finish) (the client went away), it counts as
/// `cancelled`. Requests refused before routing are counted with only the `endpoint` label
/// and never appear in flight. A routed request holds its variant's shared handles (one
/// reference count), so the hot path builds no label and copies no string.
#[derive(Debug)]
pub struct RequestMetrics<'a> {
    /// The endpoint (or model) as addressed.
    endpoint: &'a str,
    /// Set by [`route`](Self::route): registered handles.
    handles: Option<Arc<OnceLock<Handles>>>,
    started: Instant,
    done: bool,
}

impl<'a> RequestMetrics<'a> {
    /// Starts timing a request addressed to `endpoint` (a model name for direct v2 calls).
    pub fn start(endpoint: &'a str) -> Self {
        Self {
            endpoint,
            handles: None,
            started: Instant::now(),
            done: false,
        }
    }

    /// Names the variant and model version that serve the request.
    pub fn route(&mut self, labels: &ModelLabels) {
        labels
            .invocations
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let handles = if labels.endpoint.is_empty() {
            // A model called directly: label it with the name it was called by (these
            // handles are this request's own).
            let own = ModelLabels {
                endpoint: self.endpoint.to_owned(),
                handles: Arc::default(),
                ..labels.clone()
            };
            own.handles();
            own.handles
        } else {
            labels.handles();
            labels.handles.clone()
        };
        registered(&handles).in_flight.increment(1.0);
        self.handles = Some(handles);
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
        let took = self.started.elapsed().as_secs_f64();
        let Some(handles) = &self.handles else {
            let endpoint = if is_known_endpoint(self.endpoint) {
                self.endpoint
            } else {
                UNKNOWN_ENDPOINT
            };
            let unrouted = ModelLabels {
                endpoint: endpoint.to_owned(),
                ..ModelLabels::default()
            };
            let mut labels = unrouted.labels();
            histogram!(REQUEST_DURATION, labels.clone()).record(took);
            labels.push(Label::new("outcome", outcome));
            counter!(REQUESTS, labels).increment(1);
            return;
        };
        let handles = registered(handles);
        handles.in_flight.decrement(1.0);
        handles.request_duration.record(took);
        if outcome == "ok" {
            handles.requests_ok.increment(1);
        } else {
            let mut labels = handles.labels.clone();
            labels.push(Label::new("outcome", outcome));
            counter!(REQUESTS, labels).increment(1);
        }
    }
}

/// Handles that [`ModelLabels::handles`] registered.
fn registered(handles: &OnceLock<Handles>) -> &Handles {
    handles.get().expect("registered by RequestMetrics::route")
}

impl Drop for RequestMetrics<'_> {
    fn drop(&mut self) {
        self.record("cancelled");
    }
}
