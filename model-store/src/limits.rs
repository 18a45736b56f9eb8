//! Bounds on one import: total bytes, file count, a deadline and a cancel flag, checked
//! between every chunk copied, so no source — a file that grows, a gzip bomb, a caller that
//! went away — can make an import run without end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Result, StoreError};

/// Limits of one import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportLimits {
    /// Most bytes in all (every file, and every decompressed byte of an archive).
    pub max_bytes: u64,
    /// Most files (and archive entries).
    pub max_files: u64,
    /// Longest the import may take.
    pub timeout: Option<Duration>,
}

impl ImportLimits {
    /// No limits (an operator's own `pier models push`, code publishing its own files).
    pub const UNLIMITED: Self = Self {
        max_bytes: u64::MAX,
        max_files: u64::MAX,
        timeout: None,
    };
}

impl Default for ImportLimits {
    /// 2 GiB, 1000 files, 5 minutes.
    fn default() -> Self {
        Self {
            max_bytes: 2 << 30,
            max_files: 1000,
            timeout: Some(Duration::from_secs(300)),
        }
    }
}

/// A flag that stops an import between two chunks. Cheap to clone; all clones share it.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag not set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the flag: the import stops at its next check and removes what it staged.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the flag is set.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What one import has spent of its limits.
#[derive(Debug)]
pub struct Budget {
    limits: ImportLimits,
    deadline: Option<Instant>,
    cancel: Cancel,
    bytes: u64,
    files: u64,
}

impl Budget {
    /// Starts the clock of an import.
    pub fn new(limits: ImportLimits, cancel: Cancel) -> Self {
        Self {
            limits,
            deadline: limits.timeout.map(|t| Instant::now() + t),
            cancel,
            bytes: 0,
            files: 0,
        }
    }

    /// No limits, never cancelled.
    pub fn unlimited() -> Self {
        Self::new(ImportLimits::UNLIMITED, Cancel::new())
    }

    /// The limits.
    pub fn limits(&self) -> ImportLimits {
        self.limits
    }

    /// Bytes counted so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Fails once the caller has gone or the time is up.
    pub fn check(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(StoreError::Cancelled);
        }
        if let (Some(deadline), Some(limit)) = (self.deadline, self.limits.timeout)
            && Instant::now() >= deadline
        {
            return Err(StoreError::TimedOut { limit });
        }
        Ok(())
    }

    /// Counts `n` more bytes of `what`; fails past the byte limit.
    pub fn charge_bytes(&mut self, n: u64, what: impl FnOnce() -> String) -> Result<()> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.limits.max_bytes {
            return Err(StoreError::TooLarge {
                what: what(),
                limit: self.limits.max_bytes,
                unit: "bytes",
            });
        }
        self.check()
    }

    /// Counts one more file; fails past the file limit.
    pub fn charge_file(&mut self, what: impl FnOnce() -> String) -> Result<()> {
        self.files += 1;
        if self.files > self.limits.max_files {
            return Err(StoreError::TooLarge {
                what: what(),
                limit: self.limits.max_files,
                unit: "files",
            });
        }
        Ok(())
    }
}
