//! Fuzz entry points for every parser that reads client bytes: the SageMaker content-type
//! codecs (CSV, JSON, JSON Lines), the Open Inference Protocol v2 REST request (JSON and the
//! binary tensor extension), the v2 gRPC `ModelInfer` message and the control plane's AWS
//! JSON bodies.
//!
//! Each entry takes arbitrary bytes and must never panic, abort or allocate past the limits
//! the server applies. The same functions back the cargo-fuzz targets in `fuzz/` (one line
//! each) and `tests/replay.rs`, which replays every committed corpus file in `fuzz/corpus/`
//! under `cargo test`, so the fuzzer and CI run one code path.
//!
//! The server-backed entries drive the real routers in process (`tower::ServiceExt::oneshot`)
//! over an [`pier_server::AppState`] in a temporary folder with the demo endpoint installed,
//! so a request is parsed, validated and (when valid) predicted exactly as on the wire.
//! Set `PIER_FUZZ_STRICT=1` to also treat an HTTP 500 or a gRPC `INTERNAL`/`UNKNOWN` answer
//! as a failure (DESIGN: bad input gets a 4xx, never a 500).
//!
//! `PIER_FUZZ_TRACE=1` prints each server answer (status and body) to stderr, to see what a
//! corpus exercises.
//!
//! Concurrency: each harness is built once per process and shared; it owns a current-thread
//! tokio runtime that every call blocks on, so calls from several threads are serialised.

mod codec;
mod control;
mod harness;
mod v2;

pub use codec::{csv, json, json_lines};
pub use control::control;
pub use v2::{grpc_model_infer, v2_binary, v2_json};

/// Inputs longer than this are ignored: the fuzzer looks for malformed structure, not bulk.
pub const MAX_INPUT: usize = 64 * 1024;

/// A fuzz entry point: arbitrary bytes in, a panic or abort if Pier mishandles them.
pub type Entry = fn(&[u8]);

/// Every target by name (the name of its `fuzz/fuzz_targets/*.rs` and `fuzz/corpus/*` folder).
pub const TARGETS: [(&str, Entry); 7] = [
    ("csv", csv),
    ("json", json),
    ("json_lines", json_lines),
    ("v2_json", v2_json),
    ("v2_binary", v2_binary),
    ("grpc_model_infer", grpc_model_infer),
    ("control", control),
];

/// Whether a server error answer fails the target (`PIER_FUZZ_STRICT=1`).
fn strict() -> bool {
    static STRICT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *STRICT.get_or_init(|| std::env::var("PIER_FUZZ_STRICT").is_ok_and(|v| v == "1"))
}

/// Prints a server answer when `PIER_FUZZ_TRACE=1`.
fn trace(target: &str, status: &str, answer: &[u8]) {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *TRACE.get_or_init(|| std::env::var("PIER_FUZZ_TRACE").is_ok_and(|v| v == "1")) {
        let shown = &answer[..answer.len().min(300)];
        eprintln!("{target}: {status} {}", String::from_utf8_lossy(shown));
    }
}
