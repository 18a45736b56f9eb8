//! Pier's model store: versioned, immutable model artifacts on a local filesystem.
//!
//! A model `name` has versions 1, 2, 3 …, each a folder of model files plus a
//! [`Manifest`] recording the runtime, the signature, every file's sha256 and size, and the
//! provenance. Versions are published atomically (staging folder, fsync, create-only rename),
//! never modified afterwards, and verified on every [`ModelStore::open_version`].
//!
//! Concurrency: the store holds no in-memory state and no locks. Any number of threads and
//! processes may publish, open and delete at once; the filesystem's atomic rename is the only
//! synchronisation.

mod error;
mod fsutil;
mod manifest;
mod name;
mod store;

pub use error::{Result, StoreError};
pub use manifest::{
    FileEntry, MANIFEST_FILE, Manifest, ManifestDraft, ManifestSignature, ManifestTensor,
    SCHEMA_VERSION,
};
pub use name::{MAX_NAME_LEN, validate_model_name};
pub use store::{Artifact, ArtifactFile, FileSource, ModelStore, VersionSelector};
