//! The data plane's shared state: the current [`ServingSnapshot`] behind one `ArcSwap`, the
//! cache of loaded versions, the Models loaded on demand, v2 statistics and the compute
//! pool; and the one invocation core every protocol facade calls (`invoke`).
//!
//! Readers call [`Serving::snapshot`] once per request (lock-free). Writers — the control
//! plane only, one at a time under its lock — build the next snapshot on the side (loading
//! and warming new versions first, outside the lock), then under the lock check the
//! [`generation`](Serving::generation) they built against and publish with one store; on
//! failure nothing is stored and the old snapshot keeps serving.

pub mod batcher;
pub(crate) mod compute;
pub(crate) mod invoke;
pub(crate) mod models;
pub mod multi_model;
pub(crate) mod snapshot;
pub(crate) mod stats;
pub(crate) mod weights;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::records::ArtifactRef;

pub use compute::ComputePool;
pub use invoke::{Decoded, Invoked, NamedTensor, Target};
pub use models::{LoadError, LoadedModel, ModelCache, warm_up};
pub use multi_model::{MultiModelCache, MultiModelSet, MultiModelSource};
pub use snapshot::{EndpointServing, ModelTarget, ServingSnapshot, Shadow, Variant, VariantName};
pub use stats::{ModelStats, Stats};
pub use weights::{WeightError, WeightedChoice};

/// Snapshot, model cache, on-demand loads, statistics and compute pool.
#[derive(Debug)]
pub struct Serving {
    snapshot: ArcSwap<ServingSnapshot>,
    /// Loaded versions.
    pub cache: ModelCache,
    /// Where model code runs.
    pub pool: ComputePool,
    /// Models loaded on demand by v2 requests (no endpoint holds them), by artifact. The
    /// mutex is held for map operations only, never across an await.
    pub on_demand: Mutex<HashMap<ArtifactRef, Arc<LoadedModel>>>,
    /// Per model name and version statistics (Triton's ModelStatistics).
    pub stats: Stats,
    /// Multi-model endpoints' loaded targets, under `--multi-model-memory`.
    pub multi: MultiModelCache,
}

impl Serving {
    /// Empty serving state with a compute pool of `threads` threads and `queue` slots, and
    /// `multi_model_bytes` for multi-model endpoints' loaded targets.
    pub fn new(threads: usize, queue: usize, multi_model_bytes: u64) -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(ServingSnapshot::default()),
            cache: ModelCache::default(),
            pool: ComputePool::new(threads, queue),
            on_demand: Mutex::default(),
            stats: Stats::default(),
            multi: MultiModelCache::new(multi_model_bytes),
        }
    }

    /// The snapshot in force now.
    pub fn snapshot(&self) -> Arc<ServingSnapshot> {
        self.snapshot.load_full()
    }

    /// The generation of the snapshot in force: a change built outside the control lock
    /// reads it before it starts and compares under the lock before it stores, so it
    /// knows whether anything was published meanwhile.
    pub fn generation(&self) -> u64 {
        self.snapshot.load().generation
    }

    /// Publishes a change: `edit` gets a copy of the current snapshot to modify. Callers
    /// must be serialised (the control plane's lock does that).
    pub fn update(&self, edit: impl FnOnce(&mut ServingSnapshot)) {
        let current = self.snapshot.load_full();
        let mut next = ServingSnapshot::clone(&current);
        edit(&mut next);
        next.generation = current.generation + 1;
        let (before, after) = (current.names(), next.names());
        crate::metrics::endpoint_names_changed(
            before.difference(&after),
            after.difference(&before),
        );
        self.snapshot.store(Arc::new(next));
    }

    /// The loaded copy of `artifact`, if an earlier on-demand load or an endpoint holds one.
    pub fn find_loaded(&self, artifact: &ArtifactRef) -> Option<Arc<LoadedModel>> {
        if let Some(m) = self.on_demand.lock().expect("on-demand lock").get(artifact) {
            return Some(m.clone());
        }
        self.snapshot()
            .endpoints
            .values()
            .flat_map(|e| e.variants.iter())
            .find(|v| &v.loaded.artifact == artifact)
            .map(|v| v.loaded.clone())
    }
}
