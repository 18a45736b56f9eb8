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
    /// An operating-system error on a path.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
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
