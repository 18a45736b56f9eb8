//! Pier's model store: versioned, immutable model artifacts on a local filesystem or on
//! object storage (`s3://bucket/prefix`, same layout, with a local read-through cache; see
//! [`StoreConfig`] and the `remote` module).
//!
//! A model `name` has versions 1, 2, 3 …, each a folder of model files plus a
//! [`Manifest`] recording the runtime, the signature, every file's sha256 and size, and the
//! provenance. Versions are published atomically (staging folder, fsync, create-only rename),
//! never modified afterwards, and verified on every [`ModelStore::open_version`].
//!
//! Imports of client-named local paths go through [`ImportPolicy`] (the import roots) and
//! [`LocalSource`] (regular files, folders of them, model archives), into a [`Staging`]
//! folder within an [`ImportLimits`] budget (bytes, files, time, a [`Cancel`] flag).
//!
//! Concurrency: a local store holds no in-memory state and no locks. Any number of threads and
//! processes may publish, open and delete at once; the filesystem's atomic rename is the only
//! synchronisation. On object storage, versions are claimed by an election over S3's
//! consistent listings and made visible by their manifest, written last (see `remote`); the
//! only in-memory state is the cache's index, behind one mutex. Staging folders name their writer, so leftovers of dead writers are swept
//! ([`ModelStore::sweep_staging`]) while live writers' are never touched.

mod archive;
mod config;
mod error;
mod fault;
mod fsutil;
mod limits;
mod manifest;
mod name;
mod owner;
mod remote;
pub mod s3;
mod source;
mod staging;
mod store;
mod sweeper;

pub use config::{DEFAULT_CACHE_BYTES, StoreConfig, StoreLocation};
pub use error::{Result, StoreError};
pub use fault::{DiskFullAfter, FaultInjector};
pub use limits::{Budget, Cancel, ImportLimits};
pub use manifest::{
    FileEntry, MANIFEST_FILE, Manifest, ManifestDraft, ManifestSignature, ManifestTensor,
    SCHEMA_VERSION,
};
pub use name::{MAX_NAME_LEN, validate_model_name};
pub use s3::{S3Config, error_chain};
pub use source::{ImportPolicy, LocalSource, SourceFile};
pub use staging::Staging;
pub use store::{Artifact, ArtifactFile, FileSource, ModelStore, VersionSelector};
pub use sweeper::Sweeper;
