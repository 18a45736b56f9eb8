//! Turns an opened artifact into a ready `Arc<dyn Model>` by its manifest's runtime kind.

use std::sync::Arc;

use pier_model_store::Artifact;

use crate::error::{Result, RuntimeError};
use crate::model::Model;
use crate::onnx::tract::TractModel;
use crate::signature::Signature;

/// Runtime kinds this build can load.
pub const SUPPORTED_RUNTIMES: &[&str] = &[
    "onnx",
    "xgboost",
    "lightgbm",
    "linear-learner",
    "kmeans",
    "pca",
    "factorization-machines",
];

/// Which engine runs an ONNX model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// tract: pure Rust, always built.
    #[default]
    Tract,
}

impl Backend {
    /// Backends available in this build and on this machine.
    pub fn available() -> Vec<Backend> {
        vec![Backend::Tract]
    }

    /// Lower-case name (`tract`).
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Tract => "tract",
        }
    }
}

/// Options that apply when loading a model.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Engine for ONNX models.
    pub backend: Backend,
}

impl LoadOptions {
    /// Options with the given backend.
    pub fn with_backend(backend: Backend) -> Self {
        Self { backend }
    }
}

/// Loads an artifact. Fails here — not at the first request — if the model cannot be served.
pub fn load(artifact: &Artifact, options: &LoadOptions) -> Result<Arc<dyn Model>> {
    let manifest = artifact.manifest();
    let label = format!("{}/{}", manifest.name, manifest.version);
    let signature = Signature::from_manifest(&manifest.signature)?;
    let primary = artifact.primary_path().ok_or_else(|| RuntimeError::Load {
        model: label.clone(),
        message: "the artifact has no files".into(),
    })?;
    let model: Arc<dyn Model> = match manifest.runtime.as_str() {
        "onnx" => match options.backend {
            Backend::Tract => Arc::new(TractModel::load(&primary, Some(signature), &label)?),
        },
        native if crate::native::serves(native) => {
            crate::native::load(native, &primary, &signature, &label)?
        }
        other => return Err(RuntimeError::UnsupportedRuntime(other.to_owned())),
    };
    tracing::info!(model = %label, backend = model.backend(), "loaded");
    Ok(model)
}
