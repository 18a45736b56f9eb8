//! Dynamic batching for one served model version: the pure core in [`queue`] and the thin
//! async actor here.
//!
//! Concurrency design: [`Batcher::infer`] pushes a request into the core queue (one short
//! mutex section; a full queue is refused at once) and wakes the actor through a `Notify`,
//! then awaits its own oneshot. The actor is one tokio task that holds a *compute slot*
//! (a semaphore permit, one per compute thread) before it asks the core for a batch, so
//! batches grow while every slot is busy and go out small while the model is idle. A batch
//! runs on the compute pool ([`run_batch`]), never on a tokio worker; its permit is released
//! when the compute job ends. A caller that goes away drops its receiver; its entry is
//! dropped from the queue, and skipped again right before compute if it left meanwhile.
//! Dropping the `Batcher` stops the actor.

pub mod queue;
mod run;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pier_runtimes::{Model, Tensor};
use tokio::sync::{Notify, Semaphore, oneshot};
use tokio::time::Instant;

use super::compute::ComputePool;
use crate::error::ServeError;
use crate::metrics::ModelLabels;

pub use queue::{BatchQueue, BatchSettings, Entry, Rejected};
pub use run::run_batch;

/// A request waiting in the queue.
#[derive(Debug)]
pub struct Pending {
    /// Validated inputs in signature order.
    pub inputs: Vec<Tensor>,
    /// Where its outputs go.
    pub reply: oneshot::Sender<Result<Vec<Tensor>, ServeError>>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<BatchQueue<Pending>>,
    wake: Notify,
    closed: AtomicBool,
}

/// Handle on one model version's batcher; dropping it stops the actor.
#[derive(Debug)]
pub struct Batcher {
    shared: Arc<Shared>,
    settings: BatchSettings,
}

impl Batcher {
    /// Starts the actor on the current tokio runtime. Batches run on `pool`, at most one
    /// per compute thread at a time.
    pub fn start(
        model: Arc<dyn Model>,
        labels: ModelLabels,
        settings: BatchSettings,
        pool: ComputePool,
    ) -> Self {
        let shared = Arc::new(Shared {
            queue: Mutex::new(BatchQueue::new(settings.clone())),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
        });
        let slots = Arc::new(Semaphore::new(pool.threads()));
        tokio::spawn(actor(shared.clone(), slots, pool, model, Arc::new(labels)));
        Self { shared, settings }
    }

    /// The settings in force.
    pub fn settings(&self) -> &BatchSettings {
        &self.settings
    }

    /// Queues `inputs` (validated, signature order) and waits for their outputs. Dropping
    /// the returned future withdraws the request.
    pub async fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ServeError> {
        let rows = inputs.first().map_or(0, Tensor::rows);
        let (reply, rx) = oneshot::channel();
        let pending = Pending { inputs, reply };
        {
            let mut queue = self.shared.queue.lock().expect("batch queue lock");
            let now = Instant::now().into_std();
            if let Err(Rejected::Full(p)) = queue.push(pending, rows, now) {
                // Callers that left still count until the actor prunes them; prune and retry.
                queue.retain(|p| !p.reply.is_closed());
                queue
                    .push(p, rows, now)
                    .map_err(|_| ServeError::QueueFull {
                        max: self.settings.max_queue_size,
                    })?;
            }
        }
        self.shared.wake.notify_one();
        rx.await.map_err(|_| {
            ServeError::Overloaded("the batch could not be scheduled on the compute pool")
        })?
    }

    /// Requests waiting now (for tests and diagnostics).
    pub fn queued(&self) -> usize {
        self.shared.queue.lock().expect("batch queue lock").len()
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }
}

async fn actor(
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    pool: ComputePool,
    model: Arc<dyn Model>,
    labels: Arc<ModelLabels>,
) {
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let batch = loop {
            if shared.closed.load(Ordering::SeqCst) {
                return;
            }
            let (batch, deadline) = {
                let mut queue = shared.queue.lock().expect("batch queue lock");
                queue.retain(|p| !p.reply.is_closed());
                (
                    queue.take_batch(Instant::now().into_std()),
                    queue.deadline(),
                )
            };
            if let Some(batch) = batch {
                break batch;
            }
            match deadline {
                Some(at) => {
                    tokio::select! {
                        () = shared.wake.notified() => {}
                        () = tokio::time::sleep_until(Instant::from_std(at)) => {}
                    }
                }
                None => shared.wake.notified().await,
            }
        };
        let (model, labels) = (model.clone(), labels.clone());
        let job = move || {
            let _slot = permit;
            run_batch(model.as_ref(), &labels, batch);
        };
        if let Err(e) = pool.execute(job) {
            // The job (and with it every reply sender) was dropped: callers see the failure.
            tracing::warn!(error = %e, "batch not scheduled");
        }
    }
}

#[cfg(test)]
mod tests;
