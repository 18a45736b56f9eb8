//! Data capture: SageMaker's `DataCaptureConfig`. A sampled share of an endpoint's requests
//! and answers is written as SageMaker writes them, JSON Lines under
//! `<destination>/<endpoint>/<variant>/yyyy/mm/dd/hh/<mm>-<ss>-<mmm>-<id>.jsonl`, one line per
//! event (`captureData.endpointInput` / `endpointOutput` with `observedContentType`, `mode`,
//! `data`, `encoding`; `eventMetadata` with `eventId`, `inferenceId`, `inferenceTime`,
//! `customAttributes`; `eventVersion`).
//!
//! Off the hot path: a request that is sampled hands its body and answer (reference-counted
//! bytes, no copy) to a bounded queue with [`Capture::offer`] and goes on; a full queue (by
//! events or by bytes) drops the event and counts it in `pier_capture_dropped_total`. One
//! writer task per deployed endpoint encodes the lines and keeps a buffer per variant and
//! hour, written out as one new file when it reaches `--capture-file-bytes` or its oldest
//! event `--capture-flush` seconds: aside then renamed (local) or one PUT (S3), so every file
//! is complete JSON Lines at every instant. When the endpoint's serving copy goes (update,
//! delete, stop), the queue closes and the writer writes what it holds, then ends.

mod config;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use config::{CaptureContentTypeHeader, CaptureOption, DataCaptureConfig, DataCaptureSummary};
use pier_jobs::channels::{Location, S3Config};
use pier_model_store::ImportPolicy;

/// How the writers batch and bound their work (`pier serve` flags).
#[derive(Clone, Debug)]
pub struct CaptureSettings {
    /// A file is written once its oldest event is this old.
    pub flush_interval: Duration,
    /// A file is written once it holds this many bytes.
    pub max_file_bytes: usize,
    /// Events waiting per endpoint, at most.
    pub queue_events: usize,
    /// Bytes of bodies and answers waiting per endpoint, at most.
    pub queue_bytes: usize,
}

impl Default for CaptureSettings {
    fn default() -> Self {
        Self {
            flush_interval: Duration::from_secs(10),
            max_file_bytes: 8 << 20,
            queue_events: 16_384,
            queue_bytes: 64 << 20,
        }
    }
}

/// One half of an event: what was sent or answered, and its content type.
#[derive(Clone, Debug)]
pub struct Payload {
    /// The bytes as on the wire.
    pub data: Bytes,
    /// Their `Content-Type`.
    pub content_type: String,
}

/// One captured invocation.
#[derive(Debug)]
pub struct Event {
    /// The variant (or shadow variant) that answered.
    pub variant: String,
    /// When it was answered.
    pub at: SystemTime,
    /// The request, when inputs are captured.
    pub input: Option<Payload>,
    /// The answer, when outputs are captured.
    pub output: Option<Payload>,
    /// `X-Amzn-SageMaker-Inference-Id`.
    pub inference_id: Option<String>,
    /// `X-Amzn-SageMaker-Custom-Attributes`.
    pub custom_attributes: Option<String>,
}

impl Event {
    fn bytes(&self) -> usize {
        self.input.as_ref().map_or(0, |p| p.data.len())
            + self.output.as_ref().map_or(0, |p| p.data.len())
    }
}

/// Where files go.
#[derive(Clone, Debug)]
pub(crate) enum Sink {
    /// A local folder.
    Local(PathBuf),
    /// An S3 bucket and key prefix.
    S3 {
        store: Arc<dyn object_store::ObjectStore>,
        prefix: String,
    },
}

/// An endpoint's capture: sampling, what to capture, and the queue to its writer.
#[derive(Debug)]
pub struct Capture {
    endpoint: String,
    /// Share of requests captured, 0 to 1.
    share: f64,
    input: bool,
    output: bool,
    tx: mpsc::Sender<Event>,
    queued_bytes: Arc<AtomicUsize>,
    max_queued_bytes: usize,
    /// Tells the writer to write everything and end ([`close`](Self::close)).
    closing: watch::Sender<bool>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Capture {
    /// Starts the writer of `endpoint`'s capture as `config` asks (validated), or `None`
    /// when capture is off. Local destinations obey `policy` (the import roots). Call within
    /// a tokio runtime.
    pub fn start(
        endpoint: &str,
        config: &DataCaptureConfig,
        settings: &CaptureSettings,
        s3: &S3Config,
        policy: &ImportPolicy,
    ) -> Result<Option<Arc<Self>>, String> {
        if !config.enabled() {
            return Ok(None);
        }
        let sink = match config.destination()? {
            Location::Local(path) => {
                check_local(&path, policy)?;
                Sink::Local(path)
            }
            Location::S3 { bucket, key } => Sink::S3 {
                store: s3.client(&bucket).map_err(|e| {
                    format!("DataCaptureConfig.DestinationS3Uri: cannot reach bucket {bucket}: {e}")
                })?,
                prefix: key.trim_end_matches('/').to_owned(),
            },
        };
        let (input, output) = config.modes();
        let (tx, rx) = mpsc::channel(settings.queue_events.max(1));
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let encoder = writer::Encoder::new(config.capture_content_type_header.as_ref());
        let (closing, closed) = watch::channel(false);
        let writer = tokio::spawn(writer::run(
            endpoint.to_owned(),
            rx,
            closed,
            sink,
            encoder,
            settings.clone(),
            queued_bytes.clone(),
        ));
        Ok(Some(Arc::new(Self {
            endpoint: endpoint.to_owned(),
            share: f64::from(config.initial_sampling_percentage) / 100.0,
            input,
            output,
            tx,
            queued_bytes,
            max_queued_bytes: settings.queue_bytes,
            closing,
            writer: Mutex::new(Some(writer)),
        })))
    }

    /// Writes every event queued so far and stops the writer (at shutdown, after the
    /// listeners have drained); later offers are dropped and counted.
    pub async fn close(&self) {
        let _ = self.closing.send(true);
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer
            && let Err(e) = writer.await
        {
            tracing::warn!(endpoint = %self.endpoint, error = %e, "the capture writer failed");
        }
    }

    /// Whether to capture this request (one random draw).
    pub fn sampled(&self) -> bool {
        self.share >= 1.0 || (self.share > 0.0 && fastrand::f64() < self.share)
    }

    /// Whether requests are captured.
    pub fn captures_input(&self) -> bool {
        self.input
    }

    /// Whether answers are captured.
    pub fn captures_output(&self) -> bool {
        self.output
    }

    /// Queues `event` for the writer, or drops and counts it when the queue is full. Never
    /// waits.
    pub fn offer(&self, event: Event) {
        let size = event.bytes();
        let before = self.queued_bytes.fetch_add(size, Ordering::Relaxed);
        if before + size > self.max_queued_bytes {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            crate::metrics::record_capture_dropped(&self.endpoint, &event.variant, "queue_full");
            return;
        }
        if let Err(e) = self.tx.try_send(event) {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            let (reason, event) = match e {
                mpsc::error::TrySendError::Full(ev) => ("queue_full", ev),
                mpsc::error::TrySendError::Closed(ev) => ("writer_stopped", ev),
            };
            crate::metrics::record_capture_dropped(&self.endpoint, &event.variant, reason);
        }
    }
}

/// Checks where `config` would write, as [`Capture::start`] does, without starting anything
/// (CreateEndpointConfig's check).
pub fn check_destination(config: &DataCaptureConfig, policy: &ImportPolicy) -> Result<(), String> {
    match config.destination()? {
        Location::Local(path) => check_local(&path, policy),
        Location::S3 { .. } => Ok(()),
    }
}

/// A local destination may be written where a local model may be imported from: under the
/// import roots when they are set, never in system folders. The folder need not exist yet;
/// its nearest existing ancestor is checked.
fn check_local(path: &Path, policy: &ImportPolicy) -> Result<(), String> {
    let absolute = std::path::absolute(path)
        .map_err(|e| format!("DataCaptureConfig.DestinationS3Uri: {e}"))?;
    let mut existing = absolute.as_path();
    while !existing.exists() {
        existing = existing.parent().ok_or_else(|| {
            format!(
                "DataCaptureConfig.DestinationS3Uri {} has no existing parent folder",
                path.display()
            )
        })?;
    }
    policy.check(existing).map(|_| ()).map_err(|e| {
        format!(
            "DataCaptureConfig.DestinationS3Uri {} is refused: {e}",
            path.display()
        )
    })
}
