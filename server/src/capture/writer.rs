//! The writer task of one endpoint's capture: encodes events as SageMaker's JSON lines,
//! buffers them per variant and hour, and writes each buffer out whole as a new file.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use tokio::sync::{mpsc, watch};

use super::{CaptureContentTypeHeader, CaptureSettings, Event, Payload, Sink};

/// How a payload's bytes go into a line: CSV or JSON text for the configured content types,
/// Base64 for any other (SageMaker's rule: with no `CaptureContentTypeHeader`, everything is
/// Base64).
#[derive(Clone, Debug, Default)]
pub(super) struct Encoder {
    csv: Vec<String>,
    json: Vec<String>,
}

/// The media type of a `Content-Type`, lower case, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

impl Encoder {
    pub(super) fn new(header: Option<&CaptureContentTypeHeader>) -> Self {
        let list = |l: Option<&Vec<String>>| -> Vec<String> {
            l.map(|l| l.iter().map(|t| media_type(t)).collect())
                .unwrap_or_default()
        };
        Self {
            csv: list(header.and_then(|h| h.csv_content_types.as_ref())),
            json: list(header.and_then(|h| h.json_content_types.as_ref())),
        }
    }

    /// Appends `p` as `{"observedContentType", "mode", "data", "encoding"}`.
    fn payload_into(&self, p: &Payload, mode: &str, out: &mut Vec<u8>) {
        let media = media_type(&p.content_type);
        let text = std::str::from_utf8(&p.data).ok();
        out.extend_from_slice(b"{\"observedContentType\":");
        json_str(out, &p.content_type);
        out.extend_from_slice(b",\"mode\":\"");
        out.extend_from_slice(mode.as_bytes());
        out.extend_from_slice(b"\",\"data\":");
        let encoding = match text {
            Some(t) if self.csv.contains(&media) => {
                json_str(out, t);
                "CSV"
            }
            Some(t) if self.json.contains(&media) => {
                json_str(out, t);
                "JSON"
            }
            _ => {
                let mut encoded = String::new();
                base64::engine::general_purpose::STANDARD.encode_string(&p.data, &mut encoded);
                out.push(b'"');
                out.extend_from_slice(encoded.as_bytes());
                out.push(b'"');
                "BASE64"
            }
        };
        out.extend_from_slice(b",\"encoding\":\"");
        out.extend_from_slice(encoding.as_bytes());
        out.extend_from_slice(b"\"}");
    }

    /// Appends one event as its JSON line (with the newline) to `out`: written by hand, one
    /// pass, no intermediate JSON values.
    pub(super) fn line_into(&self, event: &Event, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"captureData\":{");
        if let Some(p) = &event.input {
            out.extend_from_slice(b"\"endpointInput\":");
            self.payload_into(p, "INPUT", out);
        }
        if let Some(p) = &event.output {
            if event.input.is_some() {
                out.push(b',');
            }
            out.extend_from_slice(b"\"endpointOutput\":");
            self.payload_into(p, "OUTPUT", out);
        }
        out.extend_from_slice(b"},\"eventMetadata\":{\"eventId\":\"");
        out.extend_from_slice(event_id().as_bytes());
        out.push(b'"');
        if let Some(id) = &event.inference_id {
            out.extend_from_slice(b",\"inferenceId\":");
            json_str(out, id);
        }
        out.extend_from_slice(b",\"inferenceTime\":\"");
        out.extend_from_slice(iso_time(event.at).as_bytes());
        out.push(b'"');
        if let Some(a) = &event.custom_attributes {
            out.extend_from_slice(b",\"customAttributes\":");
            json_str(out, a);
        }
        out.extend_from_slice(b"},\"eventVersion\":\"0\"}\n");
    }

    /// One event as its JSON line (with the newline).
    #[cfg(test)]
    pub(super) fn line(&self, event: &Event) -> Vec<u8> {
        let mut out = Vec::new();
        self.line_into(event, &mut out);
        out
    }
}

/// Appends `s` as a JSON string (quoted, escaped).
fn json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
}

/// A random UUID (version 4 layout).
fn event_id() -> String {
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// UTC calendar parts of `at`: (year, month, day, hour, minute, second, millisecond).
fn utc(at: SystemTime) -> (i64, i64, i64, u64, u64, u64, u32) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) =
        crate::auth::amz_date::civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let rem = secs % 86_400;
    (
        y,
        m,
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis(),
    )
}

/// `2026-11-30T13:05:09Z`, as SageMaker's `inferenceTime`.
fn iso_time(at: SystemTime) -> String {
    let (y, m, d, hh, mm, ss, _) = utc(at);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

/// The folder of an event's hour: `yyyy/mm/dd/hh`.
fn hour_path(at: SystemTime) -> String {
    let (y, m, d, hh, ..) = utc(at);
    format!("{y:04}/{m:02}/{d:02}/{hh:02}")
}

/// A file's name: `<mm>-<ss>-<mmm>-<id>.jsonl` from its first event's time.
fn file_name(at: SystemTime) -> String {
    let (.., mm, ss, ms) = utc(at);
    format!("{mm:02}-{ss:02}-{ms:03}-{}.jsonl", event_id())
}

/// Events of one variant and hour, not yet written.
struct Buffer {
    bytes: Vec<u8>,
    events: usize,
    first_at: SystemTime,
    since: Instant,
}

/// Runs until the queue closes, then writes what it holds.
pub(super) async fn run(
    endpoint: String,
    mut rx: mpsc::Receiver<Event>,
    mut closing: watch::Receiver<bool>,
    sink: Sink,
    encoder: Encoder,
    settings: CaptureSettings,
    queued_bytes: Arc<AtomicUsize>,
) {
    // Buffers by variant and hour (hours since the epoch): no string is made per event.
    let mut buffers: HashMap<(String, u64), Buffer> = HashMap::new();
    let mut batch = Vec::with_capacity(BATCH);
    let mut open = true;
    while open {
        let oldest = buffers.values().map(|b| b.since).min();
        let due = async {
            match oldest {
                Some(since) => {
                    tokio::time::sleep_until((since + settings.flush_interval).into()).await
                }
                None => std::future::pending().await,
            }
        };
        // One wake-up takes every event queued meanwhile, up to BATCH.
        tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => open = n > 0,
            () = due => {}
            _ = async { closing.wait_for(|c| *c).await.is_ok() } => {
                // Take what is queued, refuse the rest, write everything.
                rx.close();
                while rx.recv_many(&mut batch, BATCH).await > 0 {}
                open = false;
            }
        }
        for event in batch.drain(..) {
            queued_bytes.fetch_sub(event.bytes(), Ordering::Relaxed);
            let hour = event
                .at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() / 3600);
            let key = (event.variant, hour);
            let buffer = match buffers.get_mut(&key) {
                Some(b) => b,
                None => buffers.entry(key.clone()).or_insert_with(|| Buffer {
                    bytes: Vec::new(),
                    events: 0,
                    first_at: event.at,
                    since: Instant::now(),
                }),
            };
            let event = Event {
                variant: String::new(),
                ..event
            };
            encoder.line_into(&event, &mut buffer.bytes);
            buffer.events += 1;
            if buffer.bytes.len() >= settings.max_file_bytes {
                let buffer = buffers.remove(&key).expect("just filled");
                write(&endpoint, &sink, &key.0, buffer).await;
            }
        }
        let now = Instant::now();
        let due: Vec<(String, u64)> = buffers
            .iter()
            .filter(|(_, b)| now.duration_since(b.since) >= settings.flush_interval)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let buffer = buffers.remove(&key).expect("listed");
            write(&endpoint, &sink, &key.0, buffer).await;
        }
    }
    for ((variant, _), buffer) in buffers {
        write(&endpoint, &sink, &variant, buffer).await;
    }
}

/// Events a writer takes per wake-up, at most.
const BATCH: usize = 1024;

/// Writes one buffer as a new, complete file; a failure is logged and its events counted as
/// dropped.
async fn write(endpoint: &str, sink: &Sink, variant: &str, buffer: Buffer) {
    let name = file_name(buffer.first_at);
    let hour = hour_path(buffer.first_at);
    let relative = format!("{endpoint}/{variant}/{hour}/{name}");
    let result = match sink {
        Sink::Local(root) => {
            let (root, relative, bytes) = (root.clone(), relative.clone(), buffer.bytes);
            tokio::task::spawn_blocking(move || write_local(&root, &relative, &bytes))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
        }
        Sink::S3 { store, prefix } => {
            let key = if prefix.is_empty() {
                relative.clone()
            } else {
                format!("{prefix}/{relative}")
            };
            store
                .put(&object_store::path::Path::from(key), buffer.bytes.into())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(()) => {
            crate::metrics::record_capture_written(endpoint, variant, buffer.events);
            tracing::debug!(endpoint, variant, file = %relative, events = buffer.events, "capture file written");
        }
        Err(e) => {
            for _ in 0..buffer.events {
                crate::metrics::record_capture_dropped(endpoint, variant, "write_failed");
            }
            tracing::warn!(endpoint, variant, file = %relative, error = %e, "cannot write a capture file; its events are dropped");
        }
    }
}

/// Writes `bytes` to `root/relative` aside, syncs, then renames it into place.
fn write_local(root: &Path, relative: &str, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    let path = root.join(relative);
    let dir = path.parent().expect("a file under the root");
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut file = tempfile::Builder::new()
        .prefix(".capture-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.persist(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;

    fn payload(data: &str, content_type: &str) -> Payload {
        Payload {
            data: bytes::Bytes::copy_from_slice(data.as_bytes()),
            content_type: content_type.into(),
        }
    }

    #[test]
    fn lines_follow_sagemaker_and_encode_by_content_type() {
        let header = CaptureContentTypeHeader {
            csv_content_types: Some(vec!["text/csv".into()]),
            json_content_types: Some(vec!["Application/JSON".into()]),
        };
        let encoder = Encoder::new(Some(&header));
        let at = UNIX_EPOCH + Duration::from_millis(1_796_045_950_123);
        let event = Event {
            variant: "a".into(),
            at,
            input: Some(payload("1,2,3\n", "text/csv; charset=utf-8")),
            output: Some(payload("[0.5]", "application/json")),
            inference_id: Some("inf-1".into()),
            custom_attributes: Some("k=v".into()),
        };
        let line = encoder.line(&event);
        assert_eq!(line.last(), Some(&b'\n'));
        let v: Value = serde_json::from_slice(&line).unwrap();
        let input = &v["captureData"]["endpointInput"];
        assert_eq!(input["observedContentType"], "text/csv; charset=utf-8");
        assert_eq!(input["mode"], "INPUT");
        assert_eq!(input["encoding"], "CSV");
        assert_eq!(input["data"], "1,2,3\n");
        let output = &v["captureData"]["endpointOutput"];
        assert_eq!(
            (&output["encoding"], &output["data"]),
            (&json!("JSON"), &json!("[0.5]"))
        );
        assert_eq!(output["mode"], "OUTPUT");
        let meta = &v["eventMetadata"];
        assert_eq!(meta["inferenceId"], "inf-1");
        assert_eq!(meta["customAttributes"], "k=v");
        assert_eq!(meta["inferenceTime"], "2026-11-30T13:39:10Z");
        assert_eq!(meta["eventId"].as_str().unwrap().len(), 36);
        assert_eq!(v["eventVersion"], "0");
        assert_eq!(hour_path(at), "2026/11/30/13");
        assert!(file_name(at).starts_with("39-10-123-"), "{}", file_name(at));

        // No header: Base64, as SageMaker does; not UTF-8: Base64 whatever the type.
        let plain = Encoder::new(None).line(&event);
        let v: Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(v["captureData"]["endpointInput"]["encoding"], "BASE64");
        assert_eq!(v["captureData"]["endpointInput"]["data"], "MSwyLDMK");
        let binary = Event {
            input: Some(Payload {
                data: bytes::Bytes::from_static(&[0xff, 0x00]),
                content_type: "text/csv".into(),
            }),
            output: None,
            inference_id: None,
            custom_attributes: None,
            ..event
        };
        let v: Value = serde_json::from_slice(&encoder.line(&binary)).unwrap();
        assert_eq!(v["captureData"]["endpointInput"]["encoding"], "BASE64");
        assert!(v["captureData"].get("endpointOutput").is_none());
        assert!(v["eventMetadata"].get("inferenceId").is_none());
    }
}
