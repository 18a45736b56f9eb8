//! The one error type of the model store. Every variant names the artifact, version or file
//! it is about, so a caller can show it to a user as is.

use std::path::PathBuf;

/// Everything that can go wrong when publishing, opening, listing or deleting artifacts.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A model name that SageMaker would refuse.
    #[error("invalid model name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A file name inside an artifact that cannot be stored safely.
    #[error("invalid artifact file name {name:?}: {reason}")]
    InvalidFileName {
        /// The file name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// No such model, or no such version of it.
    #[error("{}", match version {
        Some(v) => format!("model {name:?} has no version {v}"),
        None => format!("model {name:?} has no versions in the store"),
    })]
    NotFound {
        /// The model name.
        name: String,
        /// The version asked for, `None` for "latest".
        version: Option<u64>,
    },
    /// A version folder without its `manifest.json`.
    #[error("manifest missing: {}", path.display())]
    ManifestMissing {
        /// Where the manifest should be.
        path: PathBuf,
    },
    /// A manifest that does not parse or does not match where it lies.
    #[error("manifest {} is invalid: {reason}", path.display())]
    ManifestInvalid {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The manifest names a file that is not there.
    #[error("artifact file missing: {}", path.display())]
    FileMissing {
        /// The missing file.
        path: PathBuf,
    },
    /// A file whose size differs from the manifest's (truncated or appended to).
    #[error("artifact file {} has {actual} bytes, the manifest says {expected}", path.display())]
    SizeMismatch {
        /// The file.
        path: PathBuf,
        /// Size recorded at publish.
        expected: u64,
        /// Size found now.
        actual: u64,
    },
    /// A file whose content differs from what was published.
    #[error("artifact file {} is corrupt: sha256 {actual}, the manifest says {expected}", path.display())]
    DigestMismatch {
        /// The file.
        path: PathBuf,
        /// Digest recorded at publish.
        expected: String,
        /// Digest found now.
        actual: String,
    },
    /// Publishing kept colliding with concurrent publishers (should not happen in practice).
    #[error("could not reserve a version for {name:?} after {attempts} attempts")]
    VersionContention {
        /// The model name.
        name: String,
        /// How many versions were tried.
        attempts: u32,
    },
    /// A local path an import may not read: outside the import roots, not a regular file or
    /// folder of regular files, a system folder, or local imports are off.
    #[error("{}: {reason}", path.display())]
    ImportRefused {
        /// The path as given (never a path the caller did not name).
        path: PathBuf,
        /// Why it is refused.
        reason: String,
    },
    /// An import over its size or file-count limit (checked by stat and while copying).
    #[error("{what} is over the limit of {limit} {unit}")]
    TooLarge {
        /// What is too large (a path, "the decompressed archive", ...).
        what: String,
        /// The limit.
        limit: u64,
        /// `bytes` or `files`.
        unit: &'static str,
    },
    /// An archive entry that would leave its target folder or is not a plain file or folder.
    #[error("archive {}: entry {entry:?} is refused: {reason}", path.display())]
    UnsafeArchive {
        /// The archive.
        path: PathBuf,
        /// The entry's name as stored.
        entry: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// An import that ran past its time limit.
    #[error("the import took longer than its {} s limit", limit.as_secs_f64())]
    TimedOut {
        /// The limit.
        limit: std::time::Duration,
    },
    /// An import whose caller went away.
    #[error("the import was cancelled")]
    Cancelled,
    /// Reading a source file to import failed (the source's fault, not the store's).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The source file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The object store (S3) could not be reached or refused a request: the store's URL and
    /// the cause. Serving goes on from what is loaded; calls that need the store fail until it
    /// answers again.
    #[error("the model store {store} is unavailable: {reason}")]
    Unavailable {
        /// The store's URL, `s3://bucket/prefix`.
        store: String,
        /// What failed (the client's error and its causes).
        reason: String,
    },
    /// A version that does not fit in the local cache of an object-storage store within its
    /// bound (`--cache-bytes`), even after evicting every version no one is loading.
    #[error("{what} needs {needed} bytes in the model store's cache {}, which holds at most {limit} (of which {in_use} in use); raise --cache-bytes", dir.display())]
    CacheFull {
        /// The version, `name/version`.
        what: String,
        /// Its size in bytes.
        needed: u64,
        /// The cache's bound.
        limit: u64,
        /// Bytes of versions being loaded now, which cannot be evicted.
        in_use: u64,
        /// The cache folder.
        dir: PathBuf,
    },
    /// An operating-system error on a path of the store itself (disk full, I/O error, ...).
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether the store itself failed (disk full, I/O error on the store's own files) as
    /// opposed to the request or its source: the first is a server failure, the second the
    /// caller's to fix.
    pub fn is_store_failure(&self) -> bool {
        matches!(
            self,
            Self::Io { .. }
                | Self::VersionContention { .. }
                | Self::Unavailable { .. }
                | Self::CacheFull { .. }
        )
    }

    /// Whether the store could not be reached (S3 down): a 503, to retry later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| StoreError::Io {
            path: path.into(),
            source,
        })
    }
}
