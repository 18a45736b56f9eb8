//! The data plane's shared state: the current [`ServingSnapshot`] behind one `ArcSwap`, the
//! cache of loaded versions, and the compute pool.
//!
//! Readers call [`Serving::snapshot`] once per request (lock-free). Writers — the control
//! plane only, one at a time under its lock — build the next snapshot on the side (loading
//! and warming new versions first) and publish it with one store; on failure nothing is
//! stored and the old snapshot keeps serving.

pub mod batcher;
pub mod compute;
pub mod models;
pub mod snapshot;
pub mod weights;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use pier_runtimes::Tensor;

use crate::error::ServeError;

pub use compute::ComputePool;
pub use models::{LoadedModel, ModelCache};
pub use snapshot::{EndpointServing, ServingSnapshot, Variant};
pub use weights::{WeightError, WeightedChoice};

/// Snapshot, model cache and compute pool.
#[derive(Debug)]
pub struct Serving {
    snapshot: ArcSwap<ServingSnapshot>,
    /// Loaded versions.
    pub cache: ModelCache,
    /// Where model code runs.
    pub pool: ComputePool,
}

impl Serving {
    /// Empty serving state with a compute pool of `threads` threads and `queue` slots.
    pub fn new(threads: usize, queue: usize) -> Self {
        Self {
            snapshot: ArcSwap::from_pointee(ServingSnapshot::default()),
            cache: ModelCache::default(),
            pool: ComputePool::new(threads, queue),
        }
    }

    /// The snapshot in force now.
    pub fn snapshot(&self) -> Arc<ServingSnapshot> {
        self.snapshot.load_full()
    }

    /// Publishes a change: `edit` gets a copy of the current snapshot to modify. Callers
    /// must be serialised (the control plane's lock does that).
    pub fn update(&self, edit: impl FnOnce(&mut ServingSnapshot)) {
        let current = self.snapshot.load_full();
        let mut next = ServingSnapshot::clone(&current);
        edit(&mut next);
        let (before, after) = (current.names(), next.names());
        crate::metrics::endpoint_names_changed(
            before.difference(&after),
            after.difference(&before),
        );
        self.snapshot.store(Arc::new(next));
    }
}

impl Serving {
    /// Runs validated `inputs` (signature order) through a loaded model on the compute pool,
    /// answering within `timeout`. Every protocol facade predicts through here, so batching
    /// and metrics have one place to live: with a batcher the request joins its queue,
    /// otherwise it runs alone; queue, compute and batch-size metrics are recorded either
    /// way. Dropping the future withdraws the request before compute.
    pub async fn infer(
        &self,
        model: &Arc<LoadedModel>,
        inputs: Vec<Tensor>,
        timeout: Duration,
    ) -> Result<Vec<Tensor>, ServeError> {
        let job = async {
            if let Some(batcher) = &model.batcher {
                return batcher.infer(inputs).await;
            }
            let model = model.clone();
            let queued = Instant::now();
            self.pool
                .run(move || {
                    let started = Instant::now();
                    crate::metrics::record_queue(&model.labels, started - queued);
                    crate::metrics::record_batch(
                        &model.labels,
                        inputs.first().map_or(0, Tensor::rows),
                    );
                    let out = model.model.predict(inputs).map_err(ServeError::from);
                    crate::metrics::record_compute(&model.labels, started.elapsed());
                    out
                })
                .await
        };
        tokio::time::timeout(timeout, job).await.map_err(|_| {
            ServeError::Model(format!(
                "the model did not answer within {} s",
                timeout.as_secs_f64()
            ))
        })?
    }
}
