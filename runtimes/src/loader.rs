//! Turns an opened artifact into a ready `Arc<dyn Model>` by its manifest's runtime kind.

use std::sync::Arc;

use pier_model_store::Artifact;

use crate::error::{Result, RuntimeError};
use crate::model::Model;
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
    /// ONNX Runtime through `ort` (cargo feature `ort`; the library is found at run time
    /// through `ORT_DYLIB_PATH`).
    Ort,
}

impl Backend {
    /// Backends available in this build and on this machine (ort only when its library
    /// loads).
    pub fn available() -> Vec<Backend> {
        let mut backends = vec![Backend::Tract];
        if Backend::Ort.check_available().is_ok() {
            backends.push(Backend::Ort);
        }
        backends
    }

    /// Lower-case name (`tract`, `ort`).
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Tract => "tract",
            Backend::Ort => "ort",
        }
    }

    /// Parses `tract` or `ort` (as given in `PIER_BACKEND`).
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "tract" => Ok(Backend::Tract),
            "ort" | "onnxruntime" => Ok(Backend::Ort),
            other => Err(RuntimeError::InvalidInput(format!(
                "unknown backend {other:?}; use tract or ort"
            ))),
        }
    }

    /// Ok when this backend can load models here; otherwise why not (feature not built,
    /// library not found).
    pub fn check_available(self) -> Result<()> {
        match self {
            Backend::Tract => Ok(()),
            #[cfg(feature = "ort")]
            Backend::Ort => crate::onnx::onnxruntime::init().map(|_| ()),
            #[cfg(not(feature = "ort"))]
            Backend::Ort => Err(RuntimeError::BackendUnavailable {
                backend: "ort",
                reason: "this build of Pier has no ONNX Runtime support (cargo feature `ort`)"
                    .into(),
            }),
        }
    }
}

/// Where an ort model runs (`PIER_DEVICE`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Device {
    /// The CPU.
    #[default]
    Cpu,
    /// An NVIDIA GPU through ONNX Runtime's CUDA execution provider; the load fails if
    /// CUDA is unavailable.
    Cuda,
    /// CUDA where available, else the CPU (logged).
    Auto,
}

impl Device {
    /// Parses `cpu`, `cuda` or `auto`.
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            "auto" => Ok(Device::Auto),
            other => Err(RuntimeError::InvalidInput(format!(
                "unknown device {other:?}; use cpu, cuda or auto"
            ))),
        }
    }

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::Auto => "auto",
        }
    }
}

/// Options that apply when loading a model; equal options share one loaded copy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct LoadOptions {
    /// Engine for ONNX models.
    pub backend: Backend,
    /// Device for ort models (tract runs on the CPU only).
    pub device: Device,
    /// ONNX Runtime intra-op threads per session (default 1: parallelism comes from the
    /// session pool and the compute threads).
    pub intra_op_threads: usize,
    /// ONNX Runtime sessions kept for concurrent predicts (default: available cores).
    pub sessions: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            backend: Backend::Tract,
            device: Device::Cpu,
            intra_op_threads: 1,
            sessions: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

impl LoadOptions {
    /// Options with the given backend.
    pub fn with_backend(backend: Backend) -> Self {
        Self {
            backend,
            ..Self::default()
        }
    }

    /// The same options on `device`.
    pub fn on_device(mut self, device: Device) -> Self {
        self.device = device;
        self
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
            Backend::Tract => {
                if options.device == Device::Cuda {
                    return Err(RuntimeError::Load {
                        model: label,
                        message: "PIER_DEVICE=cuda needs PIER_BACKEND=ort; tract runs on the CPU"
                            .into(),
                    });
                }
                crate::onnx::load_default(&primary, Some(signature), &label)?
            }
            #[cfg(feature = "ort")]
            Backend::Ort => Arc::new(crate::onnx::onnxruntime::OrtModel::load(
                &primary,
                Some(signature),
                &label,
                options,
            )?),
            #[cfg(not(feature = "ort"))]
            Backend::Ort => return Err(Backend::Ort.check_available().unwrap_err()),
        },
        native if crate::native::serves(native) => {
            crate::native::load(native, &primary, &signature, &label)?
        }
        other => return Err(RuntimeError::UnsupportedRuntime(other.to_owned())),
    };
    tracing::info!(model = %label, backend = model.backend(), "loaded");
    Ok(model)
}
