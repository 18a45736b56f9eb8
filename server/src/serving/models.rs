//! Loaded model versions, shared: a version used by several variants or endpoints is loaded
//! once per set of load options (backend, device, threads), and released when the last
//! snapshot and in-flight request holding it let go.
//!
//! A variant serves a [`LoadedModel::serve_as`] copy: the same `Arc<dyn Model>`, its own
//! metric labels and, when batching is on, its own [`Batcher`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::http::HeaderValue;

use pier_model_store::{ModelStore, VersionSelector};
use pier_runtimes::{DataType, LoadOptions, Model, Tensor, TensorData};

use super::batcher::{BatchSettings, Batcher};
use super::compute::ComputePool;
use crate::metrics::{self, ModelLabels};
use crate::records::ArtifactRef;

/// A model version loaded and warmed.
#[derive(Debug)]
pub struct LoadedModel {
    /// Which artifact.
    pub artifact: ArtifactRef,
    /// The artifact as `name/version`, made once: every answer names it (SageMaker's
    /// `X-Pier-Model` header, v2's `pier_artifact` parameter).
    pub artifact_id: HeaderValue,
    /// The runnable model.
    pub model: Arc<dyn Model>,
    /// Metric labels (endpoint and variant empty for the shared cached copy).
    pub labels: ModelLabels,
    /// The dynamic batcher, when batching is on for this copy.
    pub batcher: Option<Batcher>,
    /// Most rows one request may carry when lower than the server's row limit (a Triton
    /// repository model's `max_batch_size`).
    pub max_rows: Option<usize>,
    /// The cached copy this one was made from, kept alive so the cache entry lives.
    base: Option<Arc<LoadedModel>>,
    /// The cached copies a composed model (a serial pipeline) runs, kept alive likewise
    /// (held, never read).
    #[allow(dead_code)]
    parts: Vec<Arc<LoadedModel>>,
    /// What a row has cost to predict, shared by every copy of the same model: decides
    /// whether a call is cheap enough to run on the request's own thread.
    pub cost: Arc<PredictCost>,
}

/// A model's smoothed cost a row to predict, measured on every call and batch, so the data
/// plane can run a call it expects to be short where the request is, without the hand-off
/// to a compute thread and back (which costs more than a small network's whole prediction).
/// A large call lowers the estimate a row for a small one (its fixed cost is spread over
/// more rows); a call that turns out slow raises it again at once by an eighth of its cost.
///
/// Concurrency: one atomic, read and written with relaxed ordering: a lost update only
/// delays the estimate by a call.
#[derive(Debug, Default)]
pub struct PredictCost {
    /// Nanoseconds a row, smoothed over calls (1/8 weight to the newest); 0 until measured.
    ns_per_row: AtomicU64,
}

impl PredictCost {
    /// Adds one call of `rows` rows that took `took`.
    pub fn record(&self, rows: usize, took: Duration) {
        let rows = u64::try_from(rows.max(1)).unwrap_or(u64::MAX);
        let sample = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX) / rows;
        let old = self.ns_per_row.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample
        } else {
            (old.saturating_mul(7).saturating_add(sample)) / 8
        };
        self.ns_per_row.store(new.max(1), Ordering::Relaxed);
    }

    /// Whether a call of `rows` rows is expected to take at most `budget` (never before the
    /// first call was measured).
    pub fn within(&self, rows: usize, budget: Duration) -> bool {
        let per_row = self.ns_per_row.load(Ordering::Relaxed);
        let rows = u64::try_from(rows.max(1)).unwrap_or(u64::MAX);
        per_row != 0
            && per_row.saturating_mul(rows) <= u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX)
    }
}

/// `name/version` as a header value (names and versions are visible ASCII; anything else
/// is left out of the header, as it could not be sent).
fn artifact_id(artifact: &ArtifactRef) -> HeaderValue {
    HeaderValue::try_from(artifact.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl LoadedModel {
    /// A model composed of loaded `parts` (a serial pipeline), named by `artifact` (its
    /// first part's) in metrics and answers. Not cached: each variant composes its own.
    pub fn composed(
        artifact: ArtifactRef,
        model: Arc<dyn Model>,
        parts: Vec<Arc<LoadedModel>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            labels: ModelLabels {
                model: artifact.name.clone(),
                version: artifact.version.to_string(),
                ..ModelLabels::default()
            },
            artifact_id: artifact_id(&artifact),
            artifact,
            model,
            batcher: None,
            max_rows: None,
            base: None,
            parts,
            cost: Arc::default(),
        })
    }

    /// A loaded model of its own (no shared cache entry, no batching).
    pub fn new(artifact: ArtifactRef, model: Arc<dyn Model>, labels: ModelLabels) -> Self {
        Self {
            artifact_id: artifact_id(&artifact),
            artifact,
            model,
            labels,
            batcher: None,
            max_rows: None,
            base: None,
            parts: Vec::new(),
            cost: Arc::default(),
        }
    }

    /// The same model (unbatched) served under other labels, e.g. a multi-model target
    /// under its variant's. Cheap: clones of `Arc`s and the label strings.
    pub fn with_labels(self: &Arc<Self>, labels: ModelLabels) -> Arc<Self> {
        Arc::new(Self {
            artifact: self.artifact.clone(),
            artifact_id: self.artifact_id.clone(),
            model: self.model.clone(),
            labels,
            batcher: None,
            max_rows: self.max_rows,
            base: Some(self.base.clone().unwrap_or_else(|| self.clone())),
            parts: Vec::new(),
            cost: self.cost.clone(),
        })
    }

    /// Whether a variant serving this copy gets more execution resources per instance: an
    /// ONNX Runtime session pool each, or batch slots each. Other models share the compute
    /// pool whatever their count.
    pub fn scales_with_instances(&self) -> bool {
        self.batcher.is_some() || self.model.backend() == "ort"
    }
}

impl LoadedModel {
    /// The copy a variant serves: same model, its own labels, batching with `batching` on
    /// `pool` (`None`: unbatched, as before batching existed) with one batch slot per compute
    /// thread for each of its `instances`. Call within a tokio runtime.
    pub fn serve_as(
        self: &Arc<Self>,
        endpoint: &str,
        variant: &str,
        model_name: &str,
        batching: Option<(BatchSettings, ComputePool)>,
        instances: u32,
    ) -> Arc<Self> {
        let labels = ModelLabels {
            endpoint: endpoint.to_owned(),
            variant: variant.to_owned(),
            model: model_name.to_owned(),
            version: self.artifact.version.to_string(),
            handles: Default::default(),
            invocations: Default::default(),
        };
        let batcher = batching.map(|(settings, pool)| {
            let slots = pool.threads().saturating_mul(instances.max(1) as usize);
            Batcher::start(
                self.model.clone(),
                labels.clone(),
                self.cost.clone(),
                settings,
                pool,
                slots,
            )
        });
        Arc::new(Self {
            artifact: self.artifact.clone(),
            artifact_id: self.artifact_id.clone(),
            model: self.model.clone(),
            labels,
            batcher,
            max_rows: self.max_rows,
            base: Some(self.base.clone().unwrap_or_else(|| self.clone())),
            parts: Vec::new(),
            cost: self.cost.clone(),
        })
    }
}

/// Why a model version could not be loaded: the message names the artifact and the cause
/// in the store's or the runtime's own words.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LoadError {
    /// The version is missing, partial or corrupt in the store.
    #[error("model {artifact} cannot be opened: {reason}")]
    Store {
        /// Which artifact.
        artifact: ArtifactRef,
        /// The store's reason.
        reason: String,
    },
    /// The model store (on S3) cannot be reached now: 503, retry later.
    #[error("model {artifact} cannot be opened now: {reason}")]
    StoreUnavailable {
        /// Which artifact.
        artifact: ArtifactRef,
        /// The store's reason, naming its URL.
        reason: String,
    },
    /// The runtime refused the model (unsupported operator, backend unavailable, …).
    #[error("model {artifact} cannot be loaded: {reason}")]
    Runtime {
        /// Which artifact.
        artifact: ArtifactRef,
        /// The runtime's reason.
        reason: String,
    },
    /// The model loaded but could not answer its warm-up request (zeros, batch 1).
    #[error("model {artifact} failed its warm-up request: {reason}")]
    WarmUp {
        /// Which artifact.
        artifact: ArtifactRef,
        /// The model's error.
        reason: String,
    },
    /// The loading thread failed (a panic in model code).
    #[error("model {artifact} could not be loaded: the loader stopped ({reason})")]
    Aborted {
        /// Which artifact.
        artifact: ArtifactRef,
        /// What stopped it.
        reason: String,
    },
}

/// Loaded versions by artifact and load options, held weakly: the cache never keeps a
/// version alive.
#[derive(Debug, Default)]
pub struct ModelCache {
    loaded: Mutex<HashMap<(ArtifactRef, LoadOptions), Weak<LoadedModel>>>,
}

impl ModelCache {
    /// The loaded version of `artifact`, loading and warming it if no one holds it. Blocks:
    /// call from `spawn_blocking` or a compute thread.
    pub fn get_or_load(
        &self,
        store: &ModelStore,
        artifact: &ArtifactRef,
    ) -> Result<Arc<LoadedModel>, LoadError> {
        self.get_or_load_with(store, artifact, &LoadOptions::default())
    }

    /// [`get_or_load`](Self::get_or_load) with explicit load options (backend, device).
    pub fn get_or_load_with(
        &self,
        store: &ModelStore,
        artifact: &ArtifactRef,
        options: &LoadOptions,
    ) -> Result<Arc<LoadedModel>, LoadError> {
        let key = (artifact.clone(), options.clone());
        if let Some(m) = self
            .loaded
            .lock()
            .expect("cache lock")
            .get(&key)
            .and_then(Weak::upgrade)
        {
            return Ok(m);
        }
        let version = artifact.version.to_string();
        let backend = options.backend.as_str();
        let loaded = load(store, artifact, options);
        metrics::record_load(&artifact.name, &version, backend, loaded.is_ok());
        let model = loaded?;
        let loaded = Arc::new(LoadedModel {
            artifact: artifact.clone(),
            artifact_id: artifact_id(artifact),
            model,
            labels: ModelLabels {
                model: artifact.name.clone(),
                version,
                ..ModelLabels::default()
            },
            batcher: None,
            max_rows: None,
            base: None,
            parts: Vec::new(),
            cost: Arc::default(),
        });
        let mut map = self.loaded.lock().expect("cache lock");
        map.retain(|_, w| w.strong_count() > 0);
        map.insert(key, Arc::downgrade(&loaded));
        Ok(loaded)
    }

    /// Number of versions loaded right now.
    pub fn live(&self) -> usize {
        self.loaded
            .lock()
            .expect("cache lock")
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }
}

pub(crate) fn load(
    store: &ModelStore,
    artifact: &ArtifactRef,
    options: &LoadOptions,
) -> Result<Arc<dyn Model>, LoadError> {
    let opened = store
        .open_version(&artifact.name, VersionSelector::Exact(artifact.version))
        .map_err(|e| store_load_error(artifact, &e))?;
    let model = pier_runtimes::load(&opened, options).map_err(|e| LoadError::Runtime {
        artifact: artifact.clone(),
        reason: e.to_string(),
    })?;
    warm_up(model.as_ref()).map_err(|reason| LoadError::WarmUp {
        artifact: artifact.clone(),
        reason,
    })?;
    Ok(model)
}

/// The load error of a store error: [`LoadError::StoreUnavailable`] (503) when the store
/// cannot be reached, [`LoadError::Store`] (the version is missing or damaged) otherwise.
pub(crate) fn store_load_error(
    artifact: &ArtifactRef,
    e: &pier_model_store::StoreError,
) -> LoadError {
    let artifact = artifact.clone();
    match e {
        // The client reads which store; the cause (endpoint, socket error) is logged.
        pier_model_store::StoreError::Unavailable { store, .. } => {
            tracing::warn!(error = %e, "model store unavailable");
            LoadError::StoreUnavailable {
                artifact,
                reason: format!("the model store {store} is unavailable; retry later"),
            }
        }
        _ => LoadError::Store {
            artifact,
            reason: e.to_string(),
        },
    }
}

/// Runs one request of zeros (batch 1) through the model, so a version that cannot predict
/// never takes traffic.
pub fn warm_up(model: &dyn Model) -> Result<(), String> {
    let inputs = model
        .signature()
        .inputs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec
                .shape
                .iter()
                .map(|&d| if d < 0 { 1 } else { d as usize })
                .collect();
            let n: usize = shape.iter().product();
            let data = match spec.dtype {
                DataType::Bool => TensorData::Bool(vec![false; n]),
                DataType::Uint8 => TensorData::Uint8(vec![0; n]),
                DataType::Int8 => TensorData::Int8(vec![0; n]),
                DataType::Int16 => TensorData::Int16(vec![0; n]),
                DataType::Int32 => TensorData::Int32(vec![0; n]),
                DataType::Int64 => TensorData::Int64(vec![0; n]),
                DataType::Fp32 => TensorData::Fp32(vec![0.0; n]),
                DataType::Fp64 => TensorData::Fp64(vec![0.0; n]),
                DataType::Bytes => TensorData::Bytes(vec![Vec::new(); n]),
            };
            Tensor::new(shape, data).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    model.predict(inputs).map(|_| ()).map_err(|e| e.to_string())
}
