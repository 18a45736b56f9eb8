//! The Open Inference Protocol v2 facades: REST on the data-plane port ([`rest`]) and gRPC
//! `inference.GRPCInferenceService` ([`grpc`]), over one shared [`V2`] that resolves names,
//! validates requests against the model's signature and predicts through
//! [`crate::serving::Serving::infer`], the one predict path.
//!
//! Naming. `{m}` is first an endpoint in service: weighted variant routing applies, and its
//! versions are its variants in config order (`1`, `2`, … — numeric, as Triton's tools
//! require; a variant name is accepted too), so `/versions/2` pins the second variant the
//! way `X-Amzn-SageMaker-Target-Variant` does. Otherwise `{m}` is a control-plane Model: its
//! versions are the store versions of its artifact, the default being the version the Model
//! pins. A Model that no endpoint serves is loaded (and warmed) on first use or by
//! RepositoryModelLoad and stays loaded until RepositoryModelUnload; until then it reports
//! not ready.
//!
//! Concurrency: requests read the serving snapshot once; on-demand loads are held in a small
//! mutex-guarded map (never held across an await) and loaded on a blocking thread; per-model
//! statistics are counters behind one short mutex.

pub mod grpc;
pub mod model_config;
mod resolve;
pub mod rest;
mod stats;
pub mod tensors;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pier_runtimes::{Signature, Tensor};

use crate::error::ServeError;
use crate::records::ArtifactRef;
use crate::serving::LoadedModel;
use crate::state::AppState;

pub use resolve::{Described, Resolved};
pub use stats::{ModelStats, Stats};

/// Largest batch (rows of the first dimension) one v2 request may carry; reported as
/// `max_batch_size` in ModelConfig for models whose tensors all lead with a batch dimension.
pub const MAX_BATCH_SIZE: usize = 1024;

/// Name under which the server reports itself.
pub const SERVER_NAME: &str = "pier";

/// Protocol extensions Pier implements.
pub const EXTENSIONS: [&str; 5] = [
    "binary_tensor_data",
    "model_configuration",
    "statistics",
    "model_repository",
    "parameters",
];

/// State shared by the REST and gRPC facades.
#[derive(Debug)]
pub struct V2 {
    app: AppState,
    /// Models loaded on demand (not held by an endpoint), by artifact.
    pinned: Mutex<HashMap<ArtifactRef, Arc<LoadedModel>>>,
    stats: Stats,
}

/// A decoded input: its wire name and tensor.
#[derive(Debug)]
pub struct NamedTensor {
    /// Tensor name.
    pub name: String,
    /// The data.
    pub tensor: Tensor,
}

/// A successful inference.
#[derive(Debug)]
pub struct Inferred {
    /// The model name as asked.
    pub model_name: String,
    /// The version that answered.
    pub model_version: String,
    /// The endpoint variant that answered, when `{m}` is an endpoint.
    pub variant: Option<String>,
    /// The artifact that answered (`name/version`).
    pub artifact: String,
    /// Requested outputs (all, in signature order, when none were requested).
    pub outputs: Vec<NamedTensor>,
}

impl V2 {
    /// Shared v2 state over the server's state.
    pub fn new(app: AppState) -> Arc<Self> {
        Arc::new(Self {
            app,
            pinned: Mutex::default(),
            stats: Stats::default(),
        })
    }

    /// The server state.
    pub fn app(&self) -> &AppState {
        &self.app
    }

    /// Runs one inference: resolve, check inputs and outputs against the signature, predict.
    pub async fn infer(
        &self,
        name: &str,
        version: Option<&str>,
        inputs: Vec<NamedTensor>,
        requested: Option<Vec<String>>,
    ) -> Result<Inferred, ServeError> {
        let mut metrics = crate::metrics::RequestMetrics::start(name);
        let result = async {
            let _permit = self
                .app
                .in_flight
                .try_acquire()
                .map_err(|_| ServeError::Overloaded("too many requests in flight"))?;
            let resolved = self.resolve(name, version).await?;
            metrics.route(&resolved.loaded.labels);
            let started = Instant::now();
            let result = self.run(&resolved, inputs, requested).await;
            self.stats.record(
                name,
                &resolved.version,
                result.as_ref().ok().map(|(rows, _)| *rows),
                started.elapsed(),
            );
            let (_, outputs) = result?;
            Ok(Inferred {
                model_name: name.to_owned(),
                model_version: resolved.version,
                variant: resolved.variant,
                artifact: resolved.loaded.artifact.to_string(),
                outputs,
            })
        }
        .await;
        metrics.finish(&result);
        result
    }

    async fn run(
        &self,
        resolved: &Resolved,
        inputs: Vec<NamedTensor>,
        requested: Option<Vec<String>>,
    ) -> Result<(usize, Vec<NamedTensor>), ServeError> {
        let model = resolved.loaded.model.as_ref();
        let signature = model.signature();
        let ordered = order_inputs(signature, inputs)?;
        let rows = signature.check_inputs(&ordered)?;
        if open_batch(signature) && rows > MAX_BATCH_SIZE {
            return Err(ServeError::Validation(format!(
                "a batch of {rows} rows exceeds max_batch_size {MAX_BATCH_SIZE}"
            )));
        }
        let picks = pick_outputs(signature, requested)?;
        pier_runtimes::values::check_inputs(model, &ordered)?;
        let timeout = self.app.config.limits.request_timeout;
        let mut outputs = self
            .app
            .serving
            .infer(&resolved.loaded, ordered, timeout)
            .await?;
        let named = picks
            .into_iter()
            .map(|i| {
                let tensor = outputs.get_mut(i).map(|t| std::mem::replace(t, empty()));
                tensor
                    .map(|tensor| NamedTensor {
                        name: signature.outputs[i].name.clone(),
                        tensor,
                    })
                    .ok_or_else(|| {
                        ServeError::Model(format!(
                            "the model gave no output {:?}",
                            signature.outputs[i].name
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok((rows, named))
    }

    /// Statistics of `name` (every version it has) or of every model used so far.
    pub async fn statistics(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Vec<ModelStats>, ServeError> {
        if name.is_empty() {
            return Ok(self.stats.all());
        }
        let described = self.describe(name, version).await?;
        let versions = match version {
            Some(_) => vec![described.version.clone()],
            None => described.versions.clone(),
        };
        Ok(versions.iter().map(|v| self.stats.get(name, v)).collect())
    }
}

fn empty() -> Tensor {
    Tensor::new(vec![0], pier_runtimes::TensorData::Fp32(Vec::new())).expect("empty tensor")
}

fn names_of(specs: &[pier_runtimes::TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// True when every input and output leads with an open (batch) dimension.
pub fn batched(signature: &Signature) -> bool {
    signature
        .inputs
        .iter()
        .chain(&signature.outputs)
        .all(|t| t.shape.first().is_some_and(|&d| d < 0))
}

/// True when an input leads with an open (batch) dimension: its rows are a batch, bounded
/// by [`MAX_BATCH_SIZE`] (also when the tensor is empty, so a declared shape such as
/// `[1000000000, 0]` cannot make the model allocate per row).
fn open_batch(signature: &Signature) -> bool {
    signature
        .inputs
        .iter()
        .any(|t| t.shape.first().is_some_and(|&d| d < 0))
}

/// Positions of the requested outputs (all, in signature order, when none are named),
/// refusing unknown and duplicate names.
fn pick_outputs(
    signature: &Signature,
    requested: Option<Vec<String>>,
) -> Result<Vec<usize>, ServeError> {
    let Some(names) = requested else {
        return Ok((0..signature.outputs.len()).collect());
    };
    let mut picks: Vec<usize> = Vec::with_capacity(names.len().min(signature.outputs.len()));
    for n in &names {
        let i = signature.output_index(n).ok_or_else(|| {
            ServeError::Validation(format!(
                "unknown output {n:?}; the model's outputs are: {}",
                names_of(&signature.outputs)
            ))
        })?;
        if picks.contains(&i) {
            return Err(ServeError::Validation(format!(
                "output {n:?} is requested twice; name each output once"
            )));
        }
        picks.push(i);
    }
    Ok(picks)
}

/// Puts inputs in signature order, refusing unknown, duplicate and missing ones.
fn order_inputs(
    signature: &Signature,
    inputs: Vec<NamedTensor>,
) -> Result<Vec<Tensor>, ServeError> {
    let mut slots: Vec<Option<Tensor>> = signature.inputs.iter().map(|_| None).collect();
    for input in inputs {
        let i = signature.input_index(&input.name).ok_or_else(|| {
            ServeError::Validation(format!(
                "unknown input {:?}; the model's inputs are: {}",
                input.name,
                names_of(&signature.inputs)
            ))
        })?;
        let spec = &signature.inputs[i];
        if input.tensor.dtype() != spec.dtype {
            return Err(ServeError::Validation(format!(
                "input {:?} has datatype {} but the model expects {}",
                input.name,
                input.tensor.dtype(),
                spec.dtype
            )));
        }
        if slots[i].replace(input.tensor).is_some() {
            return Err(ServeError::Validation(format!(
                "input {:?} is given twice",
                spec.name
            )));
        }
    }
    slots
        .into_iter()
        .zip(&signature.inputs)
        .map(|(t, spec)| {
            t.ok_or_else(|| {
                ServeError::Validation(format!(
                    "missing input {:?} ({} {:?})",
                    spec.name, spec.dtype, spec.shape
                ))
            })
        })
        .collect()
}
