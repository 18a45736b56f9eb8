//! The artifact envelope every built-in model is saved in: a JSON object
//! `{"format": NAME, "format_version": N, "model": {...}}` (see the module README). Loading
//! checks the name and the version before touching the body, so an artifact of another
//! algorithm or of a newer version is refused with a message saying which.
//!
//! Stateless functions.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::{Result, TrainError};

#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    format: &'a str,
    format_version: u32,
    model: &'a T,
}

/// Serialises `model` in the envelope.
pub(crate) fn save<T: Serialize>(format: &str, version: u32, model: &T) -> Vec<u8> {
    serde_json::to_vec(&EnvelopeOut {
        format,
        format_version: version,
        model,
    })
    .unwrap_or_else(|e| {
        // Models hold only numbers, strings and vectors; serialising them cannot fail.
        unreachable!("built-in model serialisation failed: {e}")
    })
}

/// Reads an envelope, checking `format` and `version`, and parses the model.
pub(crate) fn load<T: DeserializeOwned>(format: &str, version: u32, bytes: &[u8]) -> Result<T> {
    let mut v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| TrainError::Artifact(format!("not a JSON document: {e}")))?;
    let found = v.get("format").and_then(|f| f.as_str()).unwrap_or("<none>");
    if found != format {
        return Err(TrainError::Artifact(format!(
            "format is `{found}`, expected `{format}`"
        )));
    }
    let found_version = v.get("format_version").and_then(|f| f.as_u64());
    if found_version != Some(u64::from(version)) {
        return Err(TrainError::Artifact(format!(
            "`{format}` format_version {} is not supported (this build reads version {version})",
            found_version.map_or("<none>".to_string(), |v| v.to_string())
        )));
    }
    let model = v
        .get_mut("model")
        .map(serde_json::Value::take)
        .ok_or_else(|| TrainError::Artifact("no `model` field".into()))?;
    serde_json::from_value(model)
        .map_err(|e| TrainError::Artifact(format!("`{format}` model: {e}")))
}

/// Fails unless `v` has `len` elements, all finite.
pub(crate) fn check_vec(name: &str, v: &[f32], len: usize) -> Result<()> {
    if v.len() != len {
        return Err(TrainError::Artifact(format!(
            "`{name}` has {} values, expected {len}",
            v.len()
        )));
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(TrainError::Artifact(format!(
            "`{name}` holds a non-finite value"
        )));
    }
    Ok(())
}
