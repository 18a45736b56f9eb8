//! A background thread that runs [`ModelStore::sweep_staging`] periodically, so a long-lived
//! server removes what killed writers (a `pier models push` or training job killed mid-copy)
//! left in staging without waiting for its next start.
//!
//! One sleeping thread; dropping the [`Sweeper`] wakes and joins it.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::store::ModelStore;

/// The running sweeper; dropping it stops the thread.
#[derive(Debug)]
pub struct Sweeper {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl ModelStore {
    /// Sweeps staging every `every` on a thread of its own until the returned handle drops.
    pub fn spawn_sweeper(&self, every: Duration) -> std::io::Result<Sweeper> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (store, flag) = (self.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("pier-store-sweeper".into())
            .spawn(move || {
                let (lock, wake) = &*flag;
                let mut stopped = lock.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    // The flag is read before every wait: a stop asked before this thread
                    // first waited would otherwise go unseen for a whole period (and block
                    // the drop that joins it).
                    let deadline = std::time::Instant::now() + every;
                    while !*stopped {
                        let left = deadline.saturating_duration_since(std::time::Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        stopped = wake
                            .wait_timeout(stopped, left)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                    if *stopped {
                        return;
                    }
                    match store.sweep_staging() {
                        Ok(0) => {}
                        Ok(removed) => tracing::info!(removed, "swept staging leftovers"),
                        Err(e) => tracing::warn!(error = %e, "staging sweep failed"),
                    }
                }
            })?;
        Ok(Sweeper {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
