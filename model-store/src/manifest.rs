//! `manifest.json`: what a version holds, how to run it, and where it came from.
//!
//! Manifests are written once at publish and never changed. Unknown fields are refused so a
//! typo or a manifest from a newer Pier is reported instead of silently ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The manifest schema this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// File name of the manifest inside a version folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The manifest of one published version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Schema of this manifest; see [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Model name (the folder above the version).
    pub name: String,
    /// Version number, assigned by the store at publish (1, 2, 3, ...).
    pub version: u64,
    /// Runtime kind that loads it, e.g. `onnx`, `xgboost`, `lightgbm`, `linear-learner`.
    pub runtime: String,
    /// Every file of the artifact with its size and digest.
    pub files: Vec<FileEntry>,
    /// Named inputs and outputs.
    pub signature: ManifestSignature,
    /// Publish time, milliseconds since the Unix epoch.
    pub created_unix_ms: u64,
    /// Runtime-specific facts about the model (feature count, class count, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, serde_json::Value>,
    /// Free-form provenance: training job, hyperparameters, metrics, source path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provenance: BTreeMap<String, serde_json::Value>,
}

impl Manifest {
    /// The first file, by convention the model file the runtime loads.
    pub fn primary_file(&self) -> Option<&FileEntry> {
        self.files.first()
    }
}

/// One file of an artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// File name inside the version folder.
    pub name: String,
    /// Lower-case hex sha256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// Input and output tensors of a model, as recorded in the manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestSignature {
    /// Inputs in the order the model takes them.
    pub inputs: Vec<ManifestTensor>,
    /// Outputs in the order the model gives them.
    pub outputs: Vec<ManifestTensor>,
}

/// One named tensor of a signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestTensor {
    /// Tensor name.
    pub name: String,
    /// Open Inference Protocol datatype name: `FP32`, `INT64`, `BYTES`, ...
    pub datatype: String,
    /// Shape; `-1` marks an open dimension (the batch dimension first).
    pub shape: Vec<i64>,
}

/// What a publisher supplies; the store fills in name, version, files and time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ManifestDraft {
    /// Runtime kind, see [`Manifest::runtime`].
    pub runtime: String,
    /// Inputs and outputs.
    pub signature: ManifestSignature,
    /// Runtime-specific facts.
    pub properties: BTreeMap<String, serde_json::Value>,
    /// Free-form provenance.
    pub provenance: BTreeMap<String, serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_are_refused() {
        let json = r#"{"schema_version":1,"name":"m","version":1,"runtime":"onnx","files":[],
            "signature":{"inputs":[],"outputs":[]},"created_unix_ms":0,"surprise":true}"#;
        let err = serde_json::from_str::<Manifest>(json).unwrap_err();
        assert!(err.to_string().contains("surprise"), "{err}");
    }

    #[test]
    fn round_trips() {
        let m = Manifest {
            schema_version: SCHEMA_VERSION,
            name: "m".into(),
            version: 3,
            runtime: "onnx".into(),
            files: vec![FileEntry {
                name: "model.onnx".into(),
                sha256: "ab".into(),
                size: 2,
            }],
            signature: ManifestSignature {
                inputs: vec![ManifestTensor {
                    name: "x".into(),
                    datatype: "FP32".into(),
                    shape: vec![-1, 4],
                }],
                outputs: vec![],
            },
            created_unix_ms: 5,
            properties: BTreeMap::new(),
            provenance: [("training_job".to_string(), serde_json::json!("job-1"))].into(),
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), m);
    }
}
