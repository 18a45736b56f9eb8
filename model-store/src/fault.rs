//! Fault injection for the store's writes: tests make a write fail (disk full, I/O error) or
//! slow down at a chosen point, and check that nothing half-written is left and the caller
//! answers as it should. Production stores have none installed; the check costs one read of
//! an uninstalled lock per chunk.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// Called by the store before each chunk it writes into a staging folder.
pub trait FaultInjector: Send + Sync + fmt::Debug {
    /// `file` is the artifact file name, `offset` the bytes of it already written, `len` the
    /// chunk about to be written. An error is returned from the write as the OS's would be.
    fn before_write(&self, file: &str, offset: u64, len: usize) -> io::Result<()>;
}

/// Answers `ENOSPC` ("No space left on device") once `after_bytes` bytes in all have been
/// written through it, as a full disk does.
#[derive(Debug)]
pub struct DiskFullAfter {
    after_bytes: u64,
    written: AtomicU64,
}

impl DiskFullAfter {
    /// A disk that fills after `after_bytes` bytes.
    pub fn new(after_bytes: u64) -> Self {
        Self {
            after_bytes,
            written: AtomicU64::new(0),
        }
    }
}

/// `ENOSPC` on Linux and the BSDs.
const ENOSPC: i32 = 28;

impl FaultInjector for DiskFullAfter {
    fn before_write(&self, _file: &str, _offset: u64, len: usize) -> io::Result<()> {
        let before = self.written.fetch_add(len as u64, Ordering::Relaxed);
        if before.saturating_add(len as u64) > self.after_bytes {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(())
    }
}
