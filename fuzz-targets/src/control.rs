//! The control plane's AWS JSON 1.1 bodies, driven through the real control router: the
//! input's first line is the `X-Amz-Target` value (`SageMaker.CreateModel`, …), the rest is
//! the JSON body, deserialised into the action's request type and executed against the
//! harness's own state (which therefore changes from one input to the next).
//!
//! Confinement: CreateModel imports the local path it is given, so a body is only sent when
//! every string in it that names an existing path names one under `fixtures/onnx` (a few
//! small models); `$FIXTURES` in the input stands for the repository's `fixtures` folder so
//! the corpus does not depend on where the checkout lives. Path handling itself (imports of
//! devices, huge files, folders) is the business of the import tests, not of this fuzzer.

use std::path::Path;

use axum::body::Body;
use http::{HeaderValue, Request, StatusCode};
use serde_json::Value;

use crate::harness::Harness;
use crate::{MAX_INPUT, strict, trace};

const PLACEHOLDER: &[u8] = b"$FIXTURES";

/// `X-Amz-Target` line, then an AWS JSON body.
pub fn control(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let (target, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(target) = HeaderValue::from_bytes(target) else {
        return;
    };
    let harness = Harness::control_plane();
    let fixtures = harness.fixtures.to_string_lossy().into_owned();
    let body = replace(body, PLACEHOLDER, fixtures.as_bytes());
    if !confined(&body, &harness.fixtures.join("onnx")) {
        return;
    }
    let request = Request::post("/")
        .header("x-amz-target", target)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Body::from(body))
        .expect("a valid request");
    let (status, answer) = harness.control(request);
    trace("control", status.as_str(), &answer);
    if strict() {
        assert_ne!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "a client's body got a 500: {}",
            String::from_utf8_lossy(&answer)
        );
    }
}

/// `data` with every `from` replaced by `to`.
fn replace(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while let Some(i) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(to);
        rest = &rest[i + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// Whether every string in the JSON `body` that names an existing path names one under
/// `root`. A body that is not JSON names no path (the server refuses it unread).
fn confined(body: &[u8], root: &Path) -> bool {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return true;
    };
    let mut stack = vec![&value];
    while let Some(v) = stack.pop() {
        match v {
            Value::String(s) => {
                for candidate in [Some(s.as_str()), s.strip_prefix("file://")]
                    .into_iter()
                    .flatten()
                {
                    let path = Path::new(candidate);
                    if path.symlink_metadata().is_ok()
                        && !path.canonicalize().is_ok_and(|p| p.starts_with(root))
                    {
                        return false;
                    }
                }
            }
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    true
}
