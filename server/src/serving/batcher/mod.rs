//! Dynamic batching for one served model version: the pure core in [`queue`] and the thin
//! driver here.
//!
//! Concurrency design (no actor hop on the hot path):
//! - [`Batcher::submit`] pushes the request into the core queue under one short mutex
//!   section (a full queue is refused at once). If a *compute slot* is free (one per compute
//!   thread) and the core says a batch is ready, the caller claims the slot for it. When
//!   that batch holds the caller's own request (nothing was queued: with the delay at 0 it
//!   is the request alone) and the caller may run it where it stands ([`RunHere`]: it is
//!   on a compute thread, or the model's measured cost puts the batch under the inline
//!   budget), it runs it on its own thread, as an unbatched call would; otherwise it hands
//!   the batch to the compute pool. So a request that finds a slot free and nothing
//!   queued pays no hand-off that batching off would not; batches form from what queues
//!   while every slot is busy (Triton's rule: a batch is what is queued when an instance
//!   frees).
//! - A compute job runs its batch and then, still holding its slot, asks the core for the
//!   next ready batch and runs it too. Under load, requests only enqueue and the compute
//!   threads drain the queue, so batches grow while every slot is busy and go out small
//!   while the model is idle. When other work waits in the shared pool, the continuation is
//!   requeued behind it instead, so one busy model cannot starve another.
//! - `max_queue_delay` is kept by one timer thread per batcher that sleeps on a condition
//!   variable until the oldest request's deadline (µs precision: tokio's timer wheel would
//!   round a 200 µs delay up to 1–2 ms). It only acts while a slot is free and no batch is
//!   ready yet; it is woken when the queue becomes non-empty or a slot frees with requests
//!   waiting.
//!
//! Batches run on the compute pool ([`run_batch`]), never on a tokio worker. A caller that
//! goes away drops its receiver; its entry is pruned from the queue and skipped again right
//! before compute. Dropping the `Batcher` stops the timer thread.

pub mod queue;
mod run;

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pier_runtimes::{Model, Tensor};
use tokio::sync::oneshot;

use super::compute::ComputePool;
use crate::error::ServeError;
use crate::metrics::ModelLabels;
use crate::serving::models::PredictCost;

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

type Batch = Vec<Entry<Pending>>;

/// Whether a caller may run a ready batch that holds its own request on its own thread.
#[derive(Clone, Copy, Debug)]
pub enum RunHere {
    /// Never: every batch goes to the compute pool.
    Never,
    /// Always: the caller is a compute thread, the pool would only hand the batch to a
    /// thread like it.
    Always,
    /// When the model's measured cost puts the batch's rows under this budget (a tokio
    /// worker, which may be held about that long).
    Within(Duration),
}

/// The answer to a submitted request: already computed here, or on its way.
#[derive(Debug)]
pub struct Reply(ReplyState);

#[derive(Debug)]
enum ReplyState {
    Ready(Result<Vec<Tensor>, ServeError>),
    Waiting(oneshot::Receiver<Result<Vec<Tensor>, ServeError>>),
}

impl Reply {
    /// An answer computed already.
    pub fn ready(result: Result<Vec<Tensor>, ServeError>) -> Self {
        Self(ReplyState::Ready(result))
    }

    /// The request's outputs. Dropping a reply that still waits withdraws the request.
    pub async fn outputs(self) -> Result<Vec<Tensor>, ServeError> {
        match self.0 {
            ReplyState::Ready(result) => result,
            ReplyState::Waiting(rx) => rx.await.map_err(|_| {
                ServeError::Overloaded("the batch could not be scheduled on the compute pool")
            })?,
        }
    }

    /// Whether the request ran on the submitting thread (tests).
    pub fn ran_here(&self) -> bool {
        matches!(self.0, ReplyState::Ready(_))
    }
}

/// What the mutex guards.
#[derive(Debug)]
struct State {
    queue: BatchQueue<Pending>,
    /// Compute slots not running a batch of this model.
    free_slots: usize,
    closed: bool,
}

impl State {
    /// Claims a slot for the batch the core says is ready now, if a slot is free.
    fn claim(&mut self, now: Instant) -> Option<Batch> {
        if self.free_slots == 0 {
            return None;
        }
        let batch = self.queue.take_batch(now)?;
        self.free_slots -= 1;
        Some(batch)
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the timer thread.
    timer: Condvar,
    model: Arc<dyn Model>,
    labels: ModelLabels,
    /// The model's measured cost a row, which every batch run updates.
    cost: Arc<PredictCost>,
    pool: ComputePool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic never happens while the lock is held (no model code runs under it), so a
        // poisoned lock still guards a consistent queue.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands `batch` (its slot already claimed) to the compute pool. If the pool refuses,
    /// the batch is dropped — its callers see the failure — and the slot is given back.
    fn launch(self: &Arc<Self>, batch: Batch) {
        let shared = self.clone();
        if let Err(e) = self.pool.execute(move || shared.run(batch)) {
            tracing::warn!(error = %e, "batch not scheduled");
            self.release_slot();
        }
    }

    /// On a compute thread: runs `batch`, then keeps the slot for the next ready batch
    /// while no other work waits in the pool.
    fn run(self: &Arc<Self>, mut batch: Batch) {
        loop {
            run_batch(self.model.as_ref(), &self.labels, &self.cost, batch);
            let next = self.lock().queue.take_batch(Instant::now());
            match next {
                Some(b) if self.pool.waiting() == 0 => batch = b,
                Some(b) => {
                    // Be fair to the other models sharing the pool: requeue behind them.
                    self.launch(b);
                    return;
                }
                None => {
                    self.release_slot();
                    return;
                }
            }
        }
    }

    /// On the submitting thread: runs `batch` (its slot claimed), then hands the next ready
    /// batch to the pool with the slot, or gives the slot back. The submitter's own answer
    /// is waiting for it, so it does not go on to run other requests' batches.
    fn run_here(self: &Arc<Self>, batch: Batch) {
        run_batch(self.model.as_ref(), &self.labels, &self.cost, batch);
        let next = self.lock().queue.take_batch(Instant::now());
        match next {
            Some(b) => self.launch(b),
            None => self.release_slot(),
        }
    }

    /// Gives a slot back, and wakes the timer if requests wait for it.
    fn release_slot(&self) {
        let waiting = {
            let mut state = self.lock();
            state.free_slots += 1;
            !state.queue.is_empty()
        };
        if waiting {
            self.timer.notify_one();
        }
    }

    /// The timer thread: launches the batch whose `max_queue_delay` ran out while a slot
    /// is free; otherwise sleeps until the oldest request's deadline or a wake-up.
    fn timer_loop(self: Arc<Self>) {
        let mut state = self.lock();
        loop {
            if state.closed {
                return;
            }
            let now = Instant::now();
            if state.free_slots > 0 {
                state.queue.retain(|p| !p.reply.is_closed());
            }
            if let Some(batch) = state.claim(now) {
                drop(state);
                self.launch(batch);
                state = self.lock();
                continue;
            }
            let deadline = if state.free_slots > 0 {
                state.queue.deadline()
            } else {
                None
            };
            state = match deadline {
                Some(at) => {
                    self.timer
                        .wait_timeout(state, at.saturating_duration_since(now))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.timer.wait(state).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// Handle on one model version's batcher; dropping it stops the timer thread.
#[derive(Debug)]
pub struct Batcher {
    shared: Arc<Shared>,
    settings: BatchSettings,
    slots: usize,
}

impl Batcher {
    /// Starts the batcher (and its timer thread). Batches run on `pool`, at most `slots` at
    /// a time (one instance of a variant has one slot per compute thread).
    /// `cost` is the model's measured cost a row, read to decide whether a batch may run
    /// on a tokio worker and updated by every batch.
    pub fn start(
        model: Arc<dyn Model>,
        labels: ModelLabels,
        cost: Arc<PredictCost>,
        settings: BatchSettings,
        pool: ComputePool,
        slots: usize,
    ) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: BatchQueue::new(settings.clone()),
                free_slots: slots.max(1),
                closed: false,
            }),
            timer: Condvar::new(),
            model,
            labels,
            cost,
            pool,
        });
        let timer = shared.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("pier-batch-timer".into())
            .spawn(move || timer.timer_loop())
        {
            // Without the timer, a batch that is never filled would wait forever: refuse
            // to batch on a delay at all rather than hang.
            tracing::error!(error = %e, "cannot start the batch timer thread; batches go out at once");
            let mut state = shared.lock();
            let mut zero = settings.clone();
            zero.max_queue_delay = std::time::Duration::ZERO;
            state.queue = BatchQueue::new(zero);
        }
        Self {
            shared,
            settings,
            slots: slots.max(1),
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &BatchSettings {
        &self.settings
    }

    /// Queues `inputs` (validated, signature order) and waits for their outputs, the batch
    /// always run on the compute pool. Dropping the returned future withdraws the request.
    pub async fn infer(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, ServeError> {
        self.submit(inputs, RunHere::Never)?.outputs().await
    }

    /// Queues `inputs` (validated, signature order). If that makes a batch holding them
    /// ready while a slot is free (nothing else queued: the batch is they alone, with the
    /// delay at 0) and `here` allows, runs the batch on this thread and returns the answer
    /// ready; otherwise the answer comes from the pool.
    pub fn submit(&self, inputs: Vec<Tensor>, here: RunHere) -> Result<Reply, ServeError> {
        let rows = inputs.first().map_or(0, Tensor::rows);
        let (reply, mut rx) = oneshot::channel();
        let pending = Pending { inputs, reply };
        let (launch, ours, wake_timer) = {
            let mut state = self.shared.lock();
            let now = Instant::now();
            if let Err(Rejected::Full(p)) = state.queue.push(pending, rows, now) {
                // Callers that left still count until pruned; prune and retry once.
                state.queue.retain(|p| !p.reply.is_closed());
                state
                    .queue
                    .push(p, rows, now)
                    .map_err(|_| ServeError::QueueFull {
                        max: self.settings.max_queue_size,
                    })?;
            }
            let launch = state.claim(now);
            // The request was pushed last, so an empty queue means the batch took it.
            let ours = launch.is_some() && state.queue.is_empty();
            // The timer needs to know when the queue just got its oldest request while a
            // slot is free (otherwise its current deadline is already earlier, or a compute
            // job will take the batch when its slot frees).
            let wake = launch.is_none() && state.free_slots > 0 && state.queue.len() == 1;
            (launch, ours, wake)
        };
        match launch {
            Some(batch) if ours && self.may_run_here(here, &batch) => {
                self.shared.run_here(batch);
                let result = rx.try_recv().unwrap_or_else(|_| {
                    Err(ServeError::Model(
                        "the batch ended without an answer".into(),
                    ))
                });
                return Ok(Reply::ready(result));
            }
            Some(batch) => self.shared.launch(batch),
            None if wake_timer => self.shared.timer.notify_one(),
            None => {}
        }
        Ok(Reply(ReplyState::Waiting(rx)))
    }

    fn may_run_here(&self, here: RunHere, batch: &Batch) -> bool {
        match here {
            RunHere::Never => false,
            RunHere::Always => true,
            RunHere::Within(budget) => {
                let rows = batch.iter().map(|e| e.rows).sum();
                self.shared.cost.within(rows, budget)
            }
        }
    }

    /// Batches this batcher runs at once at most.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Whether nothing is queued and no batch is running (for tests and diagnostics).
    pub fn is_at_rest(&self) -> bool {
        let state = self.shared.lock();
        state.queue.is_empty() && state.free_slots == self.slots
    }

    /// Requests waiting now (for tests and diagnostics).
    pub fn queued(&self) -> usize {
        self.shared.lock().queue.len()
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.timer.notify_one();
    }
}

#[cfg(test)]
mod tests;
