//! The bridge between the store's blocking API and `object_store`'s async client: a small
//! runtime of the store's own (two I/O threads) that every request runs on.
//!
//! A call from a plain thread blocks on the runtime directly; a call from inside another
//! runtime (a tokio worker of the server that did not move the call to `spawn_blocking`) runs
//! it from a scoped thread, since a runtime cannot be entered from another's worker. The
//! runtime is shut down in the background when the store's last clone drops, so dropping a
//! store inside async code never blocks or panics.

use std::future::Future;

/// The store's I/O runtime; see the module docs.
#[derive(Debug)]
pub(crate) struct Io {
    rt: Option<tokio::runtime::Runtime>,
}

impl Io {
    pub(crate) fn new() -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pier-store-io")
            .enable_all()
            .build()?;
        Ok(Self { rt: Some(rt) })
    }

    /// Runs `f` to completion on the store's runtime, blocking this thread.
    pub(crate) fn block_on<F>(&self, f: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let rt = self.rt.as_ref().expect("the runtime lives until drop");
        if tokio::runtime::Handle::try_current().is_err() {
            return rt.block_on(f);
        }
        std::thread::scope(|s| {
            match std::thread::Builder::new()
                .name("pier-store-call".into())
                .spawn_scoped(s, || rt.block_on(f))
            {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No thread to spare: block this worker the way blocking file I/O would.
                Err(_) => panic!("cannot start a thread for a model-store request"),
            }
        })
    }
}

impl Drop for Io {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
