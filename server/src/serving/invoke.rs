//! The invocation core (TGI's `Infer`): every protocol facade — SageMaker runtime, v2 REST,
//! v2 gRPC — parses its wire request into a [`Target`] and a decoder, calls
//! [`DataPlane::invoke`], and encodes the [`Invoked`] it gets back. Here and only here:
//! the request metrics guard, admission, routing (an endpoint's variant by weight or by name,
//! or a control-plane Model from the snapshot, loaded on first use), the whole-request
//! deadline, the one input policy ([`validate`]: names, datatypes, shapes, the row limit,
//! missing and non-finite values), where decoding runs, prediction (batched or alone), the
//! output-count check and v2 statistics.
//!
//! Where work runs. A body up to [`INLINE_DECODE_BYTES`] decodes on the request's task (a
//! thread hop costs more). A larger one decodes on the compute pool: for an unbatched model
//! in the same pool job that predicts, so the request hops to the pool once; for a batched
//! model the decode job hands the validated request to the batcher, and runs the batch
//! itself when the model is idle (a batch slot free, nothing queued: the batch is then the
//! request alone), or else leaves it to a batch job shared by every request in it.
//!
//! A call whose measured cost a row ([`super::models::PredictCost`]) puts it under
//! `--inline-predict-us` (20 µs) predicts on the request's task: for a small network the two
//! thread hand-offs cost more than the prediction. For a batched model that holds when the
//! model is idle, so the batch formed is the request alone. The first call of a model, and
//! any call expected to take longer, runs on the compute pool.
//!
//! Concurrency: one snapshot load per request; the on-demand map's mutex is held for map
//! operations only; model code runs on the compute pool, or for at most about the inline
//! budget on a tokio worker (a panic there is caught as on the pool). The
//! deadline (the timeout layer's, which also covers reading the body and a Model's first
//! load) bounds decoding, queueing and predicting here, so a request that runs out of time
//! is answered and counted as a `Timeout`; its future is dropped, which withdraws it from
//! the batch queue and the pool's queue.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use pier_runtimes::{Model, Signature, Tensor, TensorSpec};
use tokio::time::Instant as Deadline;

use super::LoadedModel;
use super::batcher::{Reply, RunHere};
use super::snapshot::{EndpointServing, ModelTarget, ServingSnapshot, VariantName};
use crate::error::ServeError;
use crate::metrics::RequestMetrics;
use crate::records::ArtifactRef;
use crate::serving::LoadError;
use crate::state::DataPlane;

/// Bodies up to this size decode on the request's task; larger ones on the compute pool.
pub const INLINE_DECODE_BYTES: usize = 16 * 1024;

/// What a request addresses.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// SageMaker runtime: an endpoint (`None`: the default one — `--default-endpoint`, or
    /// the only endpoint), the variant named by `X-Amzn-SageMaker-Target-Variant` or
    /// chosen by weight.
    Endpoint {
        /// Endpoint name.
        name: Option<&'a str>,
        /// Target variant.
        variant: Option<&'a str>,
        /// `TargetModel` (`X-Amzn-SageMaker-Target-Model`): the archive a multi-model
        /// endpoint serves this request with.
        target_model: Option<&'a str>,
    },
    /// Open Inference Protocol v2: `name` is an endpoint in service (its versions are its
    /// variants, `1`-based or by name; no version: by weight), or else a control-plane
    /// Model (its versions are its artifact's store versions; default: the pinned one).
    V2 {
        /// Model name as asked.
        name: &'a str,
        /// Version as asked.
        version: Option<&'a str>,
    },
    /// A shadow variant of an endpoint: the copy of a request the SageMaker facade sends it
    /// (never a client's own target).
    Shadow {
        /// Endpoint name.
        name: &'a str,
        /// The shadow variant.
        variant: &'a str,
    },
}

/// A decoded input: its wire name and tensor.
#[derive(Debug)]
pub struct NamedTensor {
    /// Tensor name.
    pub name: String,
    /// The data.
    pub tensor: Tensor,
}

/// What a facade's decoder makes of a request body once the model is known.
#[derive(Debug)]
pub struct Decoded<T> {
    /// The inputs, by name, in any order.
    pub inputs: Vec<NamedTensor>,
    /// The outputs asked for (`None`: all, in signature order).
    pub outputs: Option<Vec<String>>,
    /// What the facade needs back to encode the answer.
    pub extra: T,
}

/// A request as a facade parsed it: the body's size (which decides where decoding runs)
/// and the decoder.
#[derive(Debug)]
pub struct Request<D> {
    /// Bytes the decoder will read.
    pub body_len: usize,
    /// Decodes the body for the routed model (runs once, on the task or the pool).
    pub decode: D,
}

/// A successful inference.
#[derive(Debug)]
pub struct Invoked<T> {
    /// The version that answered: the variant position for endpoints, the store version
    /// for Models.
    pub version: Cow<'static, str>,
    /// The endpoint variant that answered, when the target is an endpoint.
    pub variant: Option<VariantName>,
    /// The loaded model that answered.
    pub loaded: Arc<LoadedModel>,
    /// Requested outputs (all, in signature order, when none were named).
    pub outputs: Vec<NamedTensor>,
    /// The decoder's extra.
    pub extra: T,
}

/// A target resolved to a loaded model.
#[derive(Debug)]
pub struct Routed {
    /// See [`Invoked::version`].
    pub version: Cow<'static, str>,
    /// See [`Invoked::variant`].
    pub variant: Option<VariantName>,
    /// The loaded, warmed model.
    pub loaded: Arc<LoadedModel>,
}

/// Inputs that passed [`validate`]: in signature order, with the output positions to return.
#[derive(Debug)]
pub struct Validated {
    /// Inputs in signature order.
    pub inputs: Vec<Tensor>,
    /// Positions of the outputs to return.
    pub picks: Vec<usize>,
    /// Rows (first dimension) of the request.
    pub rows: usize,
}

impl DataPlane {
    /// Runs one inference end to end. `request` is the facade's parse: a refusal there is
    /// counted like any other. `deadline` is the whole request's (the timeout layer's);
    /// `None` (in-process callers) starts `--request-timeout` now.
    pub async fn invoke<T, D>(
        &self,
        target: Target<'_>,
        deadline: Option<Deadline>,
        request: Result<Request<D>, ServeError>,
    ) -> Result<Invoked<T>, ServeError>
    where
        T: Send + 'static,
        D: FnOnce(&LoadedModel) -> Result<Decoded<T>, ServeError> + Send + 'static,
    {
        let timeout = self.config.limits.request_timeout;
        let deadline = deadline.unwrap_or_else(|| Deadline::now() + timeout);
        let mut metrics = RequestMetrics::start(self.metrics_name(&target));
        let result = async {
            let request = request?;
            let _permit = self
                .in_flight
                .try_acquire()
                .map_err(|_| ServeError::Overloaded("too many requests in flight"))?;
            let timed_out = || ServeError::Timeout {
                seconds: timeout.as_secs_f64(),
            };
            // Routing is synchronous but for a Model's first load, which the timeout layer
            // bounds; the core's own deadline starts with the work a request brings.
            let routed = self.route(&target).await?;
            metrics.route(&routed.loaded.labels);
            let started = Instant::now();
            let run = tokio::time::timeout_at(deadline, self.run(&routed.loaded, request))
                .await
                .map_err(|_| timed_out())
                .and_then(|r| r);
            if let Target::V2 { name, .. } = target {
                let rows = run.as_ref().ok().map(|(rows, _, _)| *rows);
                self.serving
                    .stats
                    .record(name, &routed.version, rows, started.elapsed());
            }
            let (_, outputs, extra) = run?;
            Ok(Invoked {
                version: routed.version,
                variant: routed.variant,
                loaded: routed.loaded,
                outputs,
                extra,
            })
        }
        .await;
        metrics.finish(&result);
        result
    }

    /// The `endpoint` label a request starts with (a model name for v2 Models).
    fn metrics_name<'t>(&'t self, target: &Target<'t>) -> &'t str {
        match *target {
            Target::Endpoint { name: Some(n), .. }
            | Target::V2 { name: n, .. }
            | Target::Shadow { name: n, .. } => n,
            Target::Endpoint { name: None, .. } => {
                self.config.default_endpoint.as_deref().unwrap_or("")
            }
        }
    }

    /// The endpoint a SageMaker invocation of `name` goes to (`None`: the default one), as
    /// [`route`](Self::route) resolves it; `None` when there is none in service.
    pub fn endpoint_serving(&self, name: Option<&str>) -> Option<Arc<EndpointServing>> {
        self.endpoint_in(&self.serving.snapshot(), name)
            .ok()
            .cloned()
    }

    /// The endpoint of `snapshot` a SageMaker invocation of `name` goes to: the one named, else
    /// `--default-endpoint`, else the only endpoint.
    fn endpoint_in<'s>(
        &self,
        snapshot: &'s ServingSnapshot,
        name: Option<&str>,
    ) -> Result<&'s Arc<EndpointServing>, ServeError> {
        match name.or(self.config.default_endpoint.as_deref()) {
            Some(name) => snapshot.endpoint(name),
            None => match snapshot.endpoints.values().next() {
                Some(only) if snapshot.endpoints.len() == 1 => Ok(only),
                _ => Err(ServeError::Validation(format!(
                    "POST /invocations needs a default endpoint: start with --default-endpoint or create exactly one endpoint (there are {})",
                    snapshot.endpoints.len()
                ))),
            },
        }
    }

    /// Resolves a target to a loaded model, loading a Model on first use.
    pub async fn route(&self, target: &Target<'_>) -> Result<Routed, ServeError> {
        let snapshot = self.serving.snapshot();
        match *target {
            Target::Endpoint {
                name,
                variant,
                target_model,
            } => {
                let endpoint = self.endpoint_in(&snapshot, name)?;
                let index = endpoint.pick(variant, fastrand::f64())?;
                let chosen = &endpoint.variants[index];
                match (&chosen.multi, target_model) {
                    (None, None) => Ok(routed_variant(endpoint, index)),
                    (Some(set), Some(target)) => {
                        let set = set.clone();
                        let mut routed = routed_variant(endpoint, index);
                        drop(snapshot);
                        let labels = &routed.loaded.labels;
                        routed.loaded = self.multi_model(&set, target, labels).await?;
                        Ok(routed)
                    }
                    (Some(_), None) => Err(ServeError::Validation(format!(
                        "Endpoint {} is a multi-model endpoint: name the model to invoke with TargetModel (header X-Amzn-SageMaker-Target-Model)",
                        endpoint.name
                    ))),
                    (None, Some(target)) => Err(ServeError::Validation(format!(
                        "TargetModel {target:?} is given but endpoint {} is not a multi-model endpoint (variant {} serves one model); remove TargetModel",
                        endpoint.name, chosen.name
                    ))),
                }
            }
            Target::Shadow { name, variant } => {
                let endpoint = snapshot.endpoint(name)?;
                let shadow = endpoint
                    .shadows
                    .iter()
                    .find(|s| &*s.variant.name == variant)
                    .ok_or_else(|| ServeError::VariantNotFound {
                        endpoint: name.to_owned(),
                        variant: variant.to_owned(),
                        available: String::new(),
                    })?;
                Ok(Routed {
                    version: "shadow".into(),
                    variant: Some(shadow.variant.name.clone()),
                    loaded: shadow.variant.loaded.clone(),
                })
            }
            Target::V2 { name, version } => {
                if let Some(endpoint) = snapshot.endpoints.get(name) {
                    let index = match version {
                        Some(v) => variant_index(endpoint, v)?,
                        None => endpoint.choice.pick(fastrand::f64()),
                    };
                    refuse_multi_model(endpoint, index)?;
                    return Ok(routed_variant(endpoint, index));
                }
                if snapshot.creating.contains(name) {
                    return Err(ServeError::NotReady(name.to_owned()));
                }
                if let Some(r) = snapshot.repository.get(name) {
                    let (version, loaded) = repository_version(r, version)?;
                    return Ok(Routed {
                        version: decimal(version),
                        variant: None,
                        loaded: loaded.clone(),
                    });
                }
                let model = snapshot
                    .models
                    .get(name)
                    .cloned()
                    .ok_or_else(|| not_found(name))?;
                drop(snapshot);
                let artifact = model_version(name, &model, version)?;
                let loaded = self.load_on_demand(&artifact).await?;
                Ok(Routed {
                    version: decimal(artifact.version),
                    variant: None,
                    loaded,
                })
            }
        }
    }

    /// Loads (and warms) `artifact` unless loaded, and keeps it loaded until unloaded.
    pub async fn load_on_demand(
        &self,
        artifact: &ArtifactRef,
    ) -> Result<Arc<LoadedModel>, ServeError> {
        if let Some(m) = self.serving.find_loaded(artifact) {
            return Ok(m);
        }
        let (data, a) = (self.clone(), artifact.clone());
        let loaded =
            tokio::task::spawn_blocking(move || data.serving.cache.get_or_load(&data.store, &a))
                .await
                .map_err(|e| LoadError::Aborted {
                    artifact: artifact.clone(),
                    reason: e.to_string(),
                })??;
        tracing::info!(%artifact, "model loaded on demand");
        self.serving
            .on_demand
            .lock()
            .expect("on-demand lock")
            .insert(artifact.clone(), loaded.clone());
        Ok(loaded)
    }

    /// Decodes, validates and predicts, hopping to the compute pool at most once for an
    /// unbatched model (see the module doc). Returns rows, outputs and the decoder's extra.
    async fn run<T, D>(
        &self,
        loaded: &Arc<LoadedModel>,
        request: Request<D>,
    ) -> Result<(usize, Vec<NamedTensor>, T), ServeError>
    where
        T: Send + 'static,
        D: FnOnce(&LoadedModel) -> Result<Decoded<T>, ServeError> + Send + 'static,
    {
        let decode = request.decode;
        let max_rows = self.config.limits.max_request_rows;
        let max_rows = loaded.max_rows.map_or(max_rows, |m| m.min(max_rows));
        let prepare = move |model: &LoadedModel| -> Result<(Validated, T), ServeError> {
            let decoded = decode(model)?;
            let validated = validate(
                model.model.as_ref(),
                decoded.inputs,
                decoded.outputs,
                max_rows,
            )?;
            Ok((validated, decoded.extra))
        };
        let (validated, outputs, extra) = if request.body_len <= INLINE_DECODE_BYTES {
            let (mut validated, extra) = prepare(loaded)?;
            let inputs = std::mem::take(&mut validated.inputs);
            let outputs = self.predict(loaded, inputs).await?;
            (validated, outputs, extra)
        } else {
            // Decoded on a compute thread, which predicts there too: alone for an unbatched
            // model; for a batched one it submits to the batcher and runs the batch itself
            // if the model is idle (a slot free, nothing queued). Either way the request hops to
            // the pool once.
            let model = loaded.clone();
            let queued = Instant::now();
            let (validated, reply, extra) = self
                .serving
                .pool
                .run(move || {
                    let (mut validated, extra) = prepare(&model)?;
                    let inputs = std::mem::take(&mut validated.inputs);
                    let reply = match &model.batcher {
                        Some(batcher) => batcher.submit(inputs, RunHere::Always)?,
                        None => {
                            crate::metrics::record_queue(&model.labels, queued.elapsed());
                            Reply::ready(predict_here(&model, inputs))
                        }
                    };
                    Ok((validated, reply, extra))
                })
                .await?;
            (validated, reply.outputs().await?, extra)
        };
        let named = pick(loaded.model.signature(), outputs, &validated.picks)?;
        Ok((validated.rows, named, extra))
    }

    /// Predicts validated inputs: through the model's batcher, or alone on the pool.
    async fn predict(
        &self,
        loaded: &Arc<LoadedModel>,
        inputs: Vec<Tensor>,
    ) -> Result<Vec<Tensor>, ServeError> {
        if let Some(batcher) = &loaded.batcher {
            let here = RunHere::Within(self.config.compute.inline);
            return batcher.submit(inputs, here)?.outputs().await;
        }
        let rows = inputs.first().map_or(0, Tensor::rows);
        if loaded.cost.within(rows, self.config.compute.inline) {
            // Expected to take less than the hop to a compute thread and back would.
            crate::metrics::record_queue(&loaded.labels, std::time::Duration::ZERO);
            return super::compute::run_caught(|| predict_here(loaded, inputs));
        }
        let model = loaded.clone();
        let queued = Instant::now();
        self.serving
            .pool
            .run(move || {
                crate::metrics::record_queue(&model.labels, queued.elapsed());
                predict_here(&model, inputs)
            })
            .await
    }
}

/// Runs the model on this thread (a compute thread, or the request's for a call its
/// measured cost says is short), recording batch size and compute time.
fn predict_here(model: &LoadedModel, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ServeError> {
    let rows = inputs.first().map_or(0, Tensor::rows);
    crate::metrics::record_batch(&model.labels, rows);
    let started = Instant::now();
    let out = model.model.predict(inputs).map_err(ServeError::from);
    let took = started.elapsed();
    crate::metrics::record_compute(&model.labels, took);
    model.cost.record(rows, took);
    out
}

/// `n` in decimal: borrowed for the small numbers that variant positions and most model
/// versions are, a new string past them.
fn decimal(n: u64) -> Cow<'static, str> {
    const SMALL: [&str; 16] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
    ];
    match SMALL.get(n as usize) {
        Some(text) => Cow::Borrowed(text),
        None => Cow::Owned(n.to_string()),
    }
}

fn routed_variant(endpoint: &EndpointServing, index: usize) -> Routed {
    let variant = &endpoint.variants[index];
    Routed {
        version: decimal(index as u64 + 1),
        variant: Some(variant.name.clone()),
        loaded: variant.loaded.clone(),
    }
}

/// v2 requests cannot name a multi-model variant's target: refused, naming the way that can.
pub fn refuse_multi_model(endpoint: &EndpointServing, index: usize) -> Result<(), ServeError> {
    if endpoint.variants[index].multi.is_some() {
        return Err(ServeError::Validation(format!(
            "endpoint {:?} is a multi-model endpoint: invoke it with SageMaker's InvokeEndpoint and TargetModel",
            endpoint.name
        )));
    }
    Ok(())
}

/// The version of a repository model that a v2 version string names (default: the
/// highest).
pub fn repository_version<'r>(
    model: &'r crate::repository::RepositoryModel,
    version: Option<&str>,
) -> Result<(u64, &'r Arc<LoadedModel>), ServeError> {
    let v = match version {
        None => model.default_version(),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|v| model.versions.contains_key(v))
            .ok_or_else(|| {
                ServeError::ModelNotFound(format!(
                    "version {v:?} of model {:?} is not found; its versions are {:?}",
                    model.name,
                    model.versions.keys().collect::<Vec<_>>()
                ))
            })?,
    };
    Ok((v, &model.versions[&v]))
}

/// A v2 name that is neither an endpoint nor a Model.
pub fn not_found(name: &str) -> ServeError {
    ServeError::ModelNotFound(format!(
        "model {name:?} is not found: it is neither an endpoint nor a model (CreateEndpoint / CreateModel)"
    ))
}

/// The variant of `endpoint` that a v2 version string names: `1`-based position or name.
pub fn variant_index(endpoint: &EndpointServing, version: &str) -> Result<usize, ServeError> {
    let by_position = version
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=endpoint.variants.len()).contains(n))
        .map(|n| n - 1);
    by_position
        .or_else(|| endpoint.variants.iter().position(|v| &*v.name == version))
        .ok_or_else(|| {
            ServeError::ModelNotFound(format!(
                "version {version:?} of endpoint {:?} is not found; its versions are 1..={} (variants {})",
                endpoint.name,
                endpoint.variants.len(),
                endpoint.variants.iter().map(|v| &*v.name).collect::<Vec<_>>().join(", ")
            ))
        })
}

/// The artifact a Model's v2 `version` names (default: the one the Model pins).
pub fn model_version(
    name: &str,
    model: &ModelTarget,
    version: Option<&str>,
) -> Result<ArtifactRef, ServeError> {
    let version = match version {
        None => model.artifact.version,
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|v| model.versions.contains(v) || *v == model.artifact.version)
            .ok_or_else(|| {
                ServeError::ModelNotFound(format!(
                    "version {v:?} of model {name:?} is not found; its versions are {:?}",
                    model.versions
                ))
            })?,
    };
    Ok(ArtifactRef {
        name: model.artifact.name.clone(),
        version,
    })
}

/// The one input policy of every facade: inputs named as the signature names them (none
/// unknown, twice or missing), each of the model's datatype exactly (a facade whose wire has
/// no datatype — SageMaker's CSV and JSON — decodes into the model's), shapes as declared
/// and agreeing on the batch, at most `max_rows` rows where the batch dimension is
/// open, requested outputs known and named once, and the missing / non-finite value policy
/// ([`pier_runtimes::values`]).
pub fn validate(
    model: &dyn Model,
    inputs: Vec<NamedTensor>,
    requested: Option<Vec<String>>,
    max_rows: usize,
) -> Result<Validated, ServeError> {
    let signature = model.signature();
    let ordered = order_inputs(signature, inputs)?;
    let rows = signature.check_inputs(&ordered)?;
    if open_batch(signature) && rows > max_rows {
        return Err(ServeError::Validation(format!(
            "a batch of {rows} rows exceeds max_batch_size {max_rows}"
        )));
    }
    let picks = pick_outputs(signature, requested)?;
    pier_runtimes::values::check_inputs(model, &ordered)?;
    Ok(Validated {
        inputs: ordered,
        picks,
        rows,
    })
}

/// The requested outputs, after checking the model gave as many as its signature declares.
fn pick(
    signature: &Signature,
    outputs: Vec<Tensor>,
    picks: &[usize],
) -> Result<Vec<NamedTensor>, ServeError> {
    if outputs.len() != signature.outputs.len() {
        return Err(ServeError::Model(format!(
            "the model gave {} outputs but its signature declares {} ({})",
            outputs.len(),
            signature.outputs.len(),
            names_of(&signature.outputs)
        )));
    }
    let mut slots: Vec<Option<Tensor>> = outputs.into_iter().map(Some).collect();
    Ok(picks
        .iter()
        .map(|&i| NamedTensor {
            name: signature.outputs[i].name.clone(),
            tensor: slots[i].take().expect("each output is picked once"),
        })
        .collect())
}

fn names_of(specs: &[TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// True when an input leads with an open (batch) dimension: its rows are a batch, bounded
/// by the request row limit (also when the tensor is empty, so a declared shape such as
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

/// Puts inputs in signature order, refusing unknown, duplicate and missing ones and any of
/// another datatype than the model's.
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

#[cfg(test)]
mod tests {
    /// The row limit the policy tests run under.
    const LIMIT: usize = 1024;
    use pier_runtimes::{DataType, TensorData};

    use super::*;

    /// Two inputs, two outputs; answers with `outputs` tensors whatever it is given.
    #[derive(Debug)]
    struct Stub {
        signature: Signature,
        outputs: usize,
    }

    impl Stub {
        fn new(outputs: usize) -> Self {
            Self {
                signature: Signature {
                    inputs: vec![
                        TensorSpec::new("a", DataType::Fp32, vec![-1, 2]),
                        TensorSpec::new("b", DataType::Int64, vec![-1, 1]),
                    ],
                    outputs: vec![
                        TensorSpec::new("y", DataType::Fp32, vec![-1]),
                        TensorSpec::new("z", DataType::Fp32, vec![-1]),
                    ],
                },
                outputs,
            }
        }
    }

    impl Model for Stub {
        fn signature(&self) -> &Signature {
            &self.signature
        }
        fn predict(&self, inputs: Vec<Tensor>) -> pier_runtimes::Result<Vec<Tensor>> {
            let rows = inputs[0].rows();
            (0..self.outputs)
                .map(|_| Tensor::new(vec![rows], TensorData::Fp32(vec![0.0; rows])))
                .collect()
        }
        fn backend(&self) -> &'static str {
            "test"
        }
    }

    fn a(rows: usize) -> NamedTensor {
        NamedTensor {
            name: "a".into(),
            tensor: Tensor::from_f32_rows(rows, 2, vec![1.0; rows * 2]).unwrap(),
        }
    }

    fn b(rows: usize) -> NamedTensor {
        NamedTensor {
            name: "b".into(),
            tensor: Tensor::new(vec![rows, 1], TensorData::Int64(vec![1; rows])).unwrap(),
        }
    }

    fn refusal(r: Result<Validated, ServeError>) -> String {
        match r {
            Err(ServeError::Validation(m)) => m,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn versions_are_written_in_decimal_without_a_new_string_when_small() {
        for n in [0u64, 1, 9, 15, 16, 100, u64::MAX] {
            let text = super::decimal(n);
            assert_eq!(text, n.to_string());
            assert_eq!(matches!(text, std::borrow::Cow::Borrowed(_)), n < 16, "{n}");
        }
    }

    #[test]
    fn inputs_are_ordered_and_outputs_picked() {
        let model = Stub::new(2);
        let v = validate(&model, vec![b(3), a(3)], Some(vec!["z".into()]), LIMIT).unwrap();
        assert_eq!((v.rows, v.picks.as_slice()), (3, &[1][..]));
        assert_eq!(v.inputs[0].dtype(), DataType::Fp32);
        let outputs = model.predict(v.inputs).unwrap();
        let named = pick(model.signature(), outputs, &v.picks).unwrap();
        assert_eq!(named.len(), 1);
        assert_eq!(named[0].name, "z");
    }

    #[test]
    fn one_policy_refuses_by_name() {
        let model = Stub::new(2);
        let m = refusal(validate(&model, vec![a(1)], None, LIMIT));
        assert!(m.contains("missing input \"b\""), "{m}");
        let m = refusal(validate(&model, vec![a(1), a(1), b(1)], None, LIMIT));
        assert!(m.contains("given twice"), "{m}");
        let m = refusal(validate(
            &model,
            vec![
                a(1),
                b(1),
                NamedTensor {
                    name: "c".into(),
                    ..a(1)
                },
            ],
            None,
            LIMIT,
        ));
        assert!(m.contains("unknown input \"c\""), "{m}");
        let wrong_type = NamedTensor {
            name: "b".into(),
            tensor: Tensor::from_f32_rows(1, 1, vec![1.0]).unwrap(),
        };
        let m = refusal(validate(&model, vec![a(1), wrong_type], None, LIMIT));
        assert!(
            m.contains("has datatype FP32 but the model expects INT64"),
            "{m}"
        );
        let rows = LIMIT + 1;
        let m = refusal(validate(&model, vec![a(rows), b(rows)], None, LIMIT));
        assert!(
            m.contains(&format!("{rows} rows exceeds max_batch_size {LIMIT}")),
            "{m}"
        );
        let m = refusal(validate(
            &model,
            vec![a(1), b(1)],
            Some(vec!["y".into(), "y".into()]),
            LIMIT,
        ));
        assert!(m.contains("requested twice"), "{m}");
        let mut nan = a(1);
        nan.tensor = Tensor::from_f32_rows(1, 2, vec![1.0, f32::NAN]).unwrap();
        let m = refusal(validate(&model, vec![nan, b(1)], None, LIMIT));
        assert!(m.contains("row 1, column 2"), "{m}");
    }

    #[test]
    fn a_model_short_of_outputs_is_a_model_error() {
        let model = Stub::new(1);
        let v = validate(&model, vec![a(2), b(2)], None, LIMIT).unwrap();
        let outputs = model.predict(v.inputs).unwrap();
        match pick(model.signature(), outputs, &v.picks) {
            Err(ServeError::Model(m)) => {
                assert!(
                    m.contains("gave 1 outputs but its signature declares 2"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
