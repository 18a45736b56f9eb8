//! The compute pool: dedicated OS threads that run model code, so tokio's workers only ever
//! do I/O.
//!
//! Jobs go through one bounded MPMC queue; a full queue is answered at once with
//! [`ServeError::Overloaded`] rather than growing. A job whose requester has gone (its
//! response receiver dropped: client disconnect or timeout) is skipped before it runs. A
//! panicking job is caught and reported as a model error; the thread lives on.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::oneshot;

use crate::error::ServeError;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Runs model code `f` on this thread, a panic caught and answered as a model error (on the
/// pool's threads, and where a short call runs on the request's task).
pub fn run_caught<R>(f: impl FnOnce() -> Result<R, ServeError>) -> Result<R, ServeError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(ServeError::Model(
            "the model panicked while predicting".into(),
        ))
    })
}

/// A fixed set of compute threads behind a bounded queue; clones share the same threads.
#[derive(Clone, Debug)]
pub struct ComputePool {
    tx: crossbeam_channel::Sender<Job>,
    threads: usize,
    /// Jobs queued so far (one per hop a request makes to the pool).
    submitted: Arc<AtomicU64>,
}

impl ComputePool {
    /// Starts `threads` threads with room for `queue` waiting jobs.
    pub fn new(threads: usize, queue: usize) -> Self {
        let threads = threads.max(1);
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue.max(1));
        for i in 0..threads {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("pier-compute-{i}"))
                .spawn(move || {
                    while let Ok(job) = rx.recv() {
                        job();
                    }
                })
                .expect("spawning a compute thread");
        }
        Self {
            tx,
            threads,
            submitted: Arc::default(),
        }
    }

    /// Jobs queued on this pool since it started, refused ones included: how many times
    /// requests hopped to the pool (tests read it; one relaxed atomic add per job).
    pub fn submitted(&self) -> u64 {
        self.submitted.load(Ordering::Relaxed)
    }

    /// Number of threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Jobs queued and not yet taken by a thread.
    pub fn waiting(&self) -> usize {
        self.tx.len()
    }

    /// Queues `f`; its result arrives on the returned receiver.
    pub fn submit<R, F>(&self, f: F) -> Result<oneshot::Receiver<Result<R, ServeError>>, ServeError>
    where
        R: Send + 'static,
        F: FnOnce() -> Result<R, ServeError> + Send + 'static,
    {
        self.submitted.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            if tx.is_closed() {
                return; // nobody waits for it any more
            }
            let _ = tx.send(run_caught(f));
        });
        self.tx.try_send(job).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => {
                ServeError::Overloaded("the compute queue is full")
            }
            crossbeam_channel::TrySendError::Disconnected(_) => {
                ServeError::Internal("compute pool stopped".into())
            }
        })?;
        Ok(rx)
    }

    /// Queues `f` with no reply channel (the batcher answers its callers itself). A full
    /// queue drops `f` and answers [`ServeError::Overloaded`].
    pub fn execute(&self, f: impl FnOnce() + Send + 'static) -> Result<(), ServeError> {
        self.submitted.fetch_add(1, Ordering::Relaxed);
        let job: Job = Box::new(move || {
            if catch_unwind(AssertUnwindSafe(f)).is_err() {
                tracing::error!("a compute job panicked");
            }
        });
        self.tx.try_send(job).map_err(|e| match e {
            crossbeam_channel::TrySendError::Full(_) => {
                ServeError::Overloaded("the compute queue is full")
            }
            crossbeam_channel::TrySendError::Disconnected(_) => {
                ServeError::Internal("compute pool stopped".into())
            }
        })
    }

    /// Runs `f` on the pool and waits for it.
    pub async fn run<R, F>(&self, f: F) -> Result<R, ServeError>
    where
        R: Send + 'static,
        F: FnOnce() -> Result<R, ServeError> + Send + 'static,
    {
        self.submit(f)?
            .await
            .map_err(|_| ServeError::Internal("compute job dropped".into()))?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn runs_off_the_async_threads() {
        let pool = ComputePool::new(2, 8);
        let name = pool
            .run(|| Ok(std::thread::current().name().unwrap_or("").to_owned()))
            .await
            .unwrap();
        assert!(name.starts_with("pier-compute-"), "{name}");
    }

    #[tokio::test]
    async fn full_queue_is_overloaded_and_panics_are_model_errors() {
        let pool = ComputePool::new(1, 1);
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let blocker = pool.submit(move || {
            gate_rx.recv().ok();
            Ok(())
        });
        // Wait until the single thread has taken the blocker, then fill the one queue slot.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let queued = pool.submit(|| Ok(())).unwrap();
        assert!(matches!(
            pool.submit(|| Ok(())),
            Err(ServeError::Overloaded(_))
        ));
        gate_tx.send(()).unwrap();
        blocker.unwrap().await.unwrap().unwrap();
        queued.await.unwrap().unwrap();
        let err = pool.run::<(), _>(|| panic!("boom")).await.unwrap_err();
        assert!(matches!(err, ServeError::Model(_)));
        pool.run(|| Ok(())).await.unwrap();
    }

    #[tokio::test]
    async fn abandoned_jobs_are_skipped() {
        let pool = ComputePool::new(1, 8);
        let ran = Arc::new(AtomicUsize::new(0));
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let blocker = pool.submit(move || {
            gate_rx.recv().ok();
            Ok(())
        });
        let counter = ran.clone();
        let abandoned = pool
            .submit(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
        drop(abandoned);
        gate_tx.send(()).unwrap();
        blocker.unwrap().await.unwrap().unwrap();
        pool.run(|| Ok(())).await.unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 0);
    }
}
