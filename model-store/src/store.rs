//! The store itself: publish, open, list and delete versions under one root folder.
//!
//! Layout: `<root>/<name>/<version>/{manifest.json, files...}`. A version appears only by a
//! create-only rename of a fully written, fsynced staging folder (`<root>/.staging/`), so a
//! reader sees a complete version or none. Concurrent publishers — threads or processes —
//! need no lock: each picks the next free number and retries with the one after if another
//! publisher took it first. A deleted version leaves a tombstone `<version>.deleted` so its
//! number is never given out again.
//!
//! Staging and trash folders are named after their writer (pid and start time, see
//! [`crate::owner`]); [`ModelStore::sweep_staging`] — run at every open and by the server
//! periodically — removes those whose writer is gone and never touches a live one.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::{StoreConfig, StoreLocation};
use crate::error::{IoContext, Result, StoreError};
use crate::fault::FaultInjector;
use crate::fsutil;
use crate::limits::Budget;
use crate::manifest::{FileEntry, MANIFEST_FILE, Manifest, ManifestDraft, SCHEMA_VERSION};
use crate::name::{validate_file_name, validate_model_name};
use crate::owner::Owner;
use crate::remote::Remote;
use crate::staging::Staging;

pub(crate) const STAGING_DIR: &str = ".staging";
pub(crate) const TRASH_DIR: &str = ".trash";
const TOMBSTONE_SUFFIX: &str = ".deleted";

/// Which version to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionSelector {
    /// The highest published version.
    Latest,
    /// One exact version.
    Exact(u64),
}

impl From<u64> for VersionSelector {
    fn from(v: u64) -> Self {
        Self::Exact(v)
    }
}

impl From<Option<u64>> for VersionSelector {
    fn from(v: Option<u64>) -> Self {
        v.map_or(Self::Latest, Self::Exact)
    }
}

/// Where the bytes of a file to publish come from.
#[derive(Clone, Debug)]
pub enum FileSource {
    /// Copied from a file on disk.
    Path(PathBuf),
    /// Given in memory.
    Bytes(Vec<u8>),
}

/// A file to publish under `name` inside the new version.
#[derive(Clone, Debug)]
pub struct ArtifactFile {
    /// File name inside the version folder.
    pub name: String,
    /// Its content.
    pub source: FileSource,
}

impl ArtifactFile {
    /// A file copied from `path`.
    pub fn from_path(name: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            source: FileSource::Path(path.into()),
        }
    }

    /// A file from memory.
    pub fn from_bytes(name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            source: FileSource::Bytes(bytes.into()),
        }
    }
}

/// A verified, opened version: its folder and manifest. Of an object-storage store, the
/// folder is the version's copy in the local cache, kept there while this value (or a clone)
/// lives.
#[derive(Clone, Debug)]
pub struct Artifact {
    dir: PathBuf,
    manifest: Manifest,
    _pin: Option<Arc<crate::remote::Pin>>,
}

impl Artifact {
    pub(crate) fn cached(dir: PathBuf, manifest: Manifest, pin: Arc<crate::remote::Pin>) -> Self {
        Self {
            dir,
            manifest,
            _pin: Some(pin),
        }
    }

    /// The version folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Path of a file of this artifact, if the manifest lists it.
    pub fn file_path(&self, name: &str) -> Option<PathBuf> {
        self.manifest
            .files
            .iter()
            .any(|f| f.name == name)
            .then(|| self.dir.join(name))
    }

    /// Path of the primary (first) file.
    pub fn primary_path(&self) -> Option<PathBuf> {
        self.manifest.primary_file().map(|f| self.dir.join(&f.name))
    }
}

/// A model store on a local folder or on object storage. Cheap to clone; all methods take
/// `&self` and are safe to call from many threads and processes at once. Methods block (on
/// the file system, or on S3 through the store's own I/O runtime).
#[derive(Clone, Debug)]
pub struct ModelStore {
    /// The local store's folder, or an object-storage store's cache folder (where its
    /// publishes are staged and its versions materialised).
    root: PathBuf,
    /// Shared by every clone, so a test can install one in a running server's store.
    faults: Arc<RwLock<Option<Arc<dyn FaultInjector>>>>,
    /// Set for a store on object storage; every call then goes there.
    remote: Option<Arc<Remote>>,
}

impl ModelStore {
    /// Opens (creating if needed) a local store at `root`, and removes the staging leftovers
    /// of writers that are gone.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        Self::open_local(root.into(), None)
    }

    /// Opens the store `config` names: a local folder as [`Self::open`], or `s3://` through
    /// `object_store` with its local cache. An object store that does not answer (or a bucket
    /// that does not exist) is [`StoreError::Unavailable`] naming its URL.
    pub fn open_with(config: &StoreConfig) -> Result<Self> {
        match &config.location {
            StoreLocation::Local(root) => Self::open(root.clone()),
            StoreLocation::S3 { bucket, prefix } => {
                let url = config.location.to_string();
                let client =
                    config
                        .s3
                        .client(bucket)
                        .map_err(|reason| StoreError::Unavailable {
                            store: url.clone(),
                            reason,
                        })?;
                Self::open_object_store(url, client, prefix, &config.cache_dir, config.cache_bytes)
            }
        }
    }

    /// Opens a store on any `object_store` client (for tests, and stores other than S3):
    /// `url` names it in messages, `prefix` is the key prefix of its layout.
    pub fn open_object_store(
        url: String,
        client: Arc<dyn object_store::ObjectStore>,
        prefix: &str,
        cache_dir: &Path,
        cache_bytes: u64,
    ) -> Result<Self> {
        let remote = Remote::open(url, client, prefix, cache_dir, cache_bytes)?;
        Self::open_local(cache_dir.to_path_buf(), Some(Arc::new(remote)))
    }

    fn open_local(root: PathBuf, remote: Option<Arc<Remote>>) -> Result<Self> {
        fs::create_dir_all(root.join(STAGING_DIR)).at(&root)?;
        fs::create_dir_all(root.join(TRASH_DIR)).at(&root)?;
        let store = Self {
            root,
            faults: Arc::default(),
            remote,
        };
        // A leftover that cannot be removed (another user's, say) must not keep the store
        // closed; the periodic sweep will try again.
        if let Err(e) = store.sweep_staging() {
            tracing::warn!(error = %e, "cannot sweep staging leftovers");
        }
        Ok(store)
    }

    /// The local store's folder, or an object-storage store's cache folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the store is, for messages: its folder, or `s3://bucket/prefix`.
    pub fn url(&self) -> String {
        match &self.remote {
            Some(r) => r.url().to_owned(),
            None => self.root.display().to_string(),
        }
    }

    pub(crate) fn remote(&self) -> Option<&Remote> {
        self.remote.as_deref()
    }

    /// Of an object-storage store: the bytes its cache holds and the versions in it.
    pub fn cache_usage(&self) -> Option<(u64, Vec<(String, u64)>)> {
        self.remote.as_ref().map(|r| (r.cache_used(), r.cached()))
    }

    /// Installs (or with `None` removes) a fault injector called before every chunk written
    /// into a staging folder, in this store and all its clones. For tests.
    pub fn set_fault_injector(&self, injector: Option<Arc<dyn FaultInjector>>) {
        *self.faults.write().unwrap_or_else(|e| e.into_inner()) = injector;
    }

    pub(crate) fn fault_injector(&self) -> Option<Arc<dyn FaultInjector>> {
        self.faults
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Removes staging and trash folders whose writer (pid and start time) is gone: what a
    /// process killed mid-publish left. A live writer's folder — this process's, a running
    /// `pier models push` or training job — is never touched. Returns how many were removed.
    pub fn sweep_staging(&self) -> Result<usize> {
        let mut removed = 0;
        for dir in [STAGING_DIR, TRASH_DIR] {
            let parent = self.root.join(dir);
            let entries = match fs::read_dir(&parent) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).at(parent),
            };
            for entry in entries {
                let entry = entry.at(&parent)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(owner) = Owner::parse(&name) else {
                    continue;
                };
                if owner.is_alive() {
                    continue;
                }
                match fs::remove_dir_all(entry.path()) {
                    Ok(()) => {
                        removed += 1;
                        tracing::info!(folder = %entry.path().display(), pid = owner.pid, "removed the leftover of a writer that is gone");
                    }
                    // Another sweeper got there first.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e).at(entry.path()),
                }
            }
        }
        Ok(removed)
    }

    /// Starts a new version: a staging folder to copy files into, then publish.
    pub fn stage(&self) -> Result<Staging> {
        Staging::new(self)
    }

    /// Publishes `files` as the next version of `name` and returns its manifest. Sources on
    /// disk must be regular files; no size or time limit applies (see [`Self::stage`]).
    pub fn publish(
        &self,
        name: &str,
        files: Vec<ArtifactFile>,
        draft: ManifestDraft,
    ) -> Result<Manifest> {
        validate_model_name(name)?;
        for f in &files {
            validate_file_name(&f.name)?;
        }
        let mut staging = self.stage()?;
        let mut budget = Budget::unlimited();
        for file in files {
            match &file.source {
                FileSource::Path(p) => staging.add_path(&file.name, p, &mut budget)?,
                FileSource::Bytes(b) => staging.add_bytes(&file.name, b, &mut budget)?,
            }
        }
        staging.publish(name, draft)
    }

    /// One more than the highest version ever published (deleted ones included).
    pub(crate) fn next_version(&self, name: &str) -> Result<u64> {
        let mut max = 0;
        for entry in self.version_entries(name)? {
            max = max.max(entry.0);
        }
        Ok(max + 1)
    }

    /// `(version, is_tombstone)` for every entry of a model folder.
    fn version_entries(&self, name: &str) -> Result<Vec<(u64, bool)>> {
        let dir = self.root.join(name);
        let read = match fs::read_dir(&dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).at(dir),
        };
        let mut out = Vec::new();
        for entry in read {
            let entry = entry.at(&dir)?;
            let file_name = entry.file_name();
            let Some(s) = file_name.to_str() else {
                continue;
            };
            if let Some(v) = s
                .strip_suffix(TOMBSTONE_SUFFIX)
                .and_then(|v| v.parse().ok())
            {
                out.push((v, true));
            } else if let Ok(v) = s.parse::<u64>() {
                out.push((v, false));
            }
        }
        Ok(out)
    }

    /// Published, not deleted versions of `name`, ascending.
    pub fn list_versions(&self, name: &str) -> Result<Vec<u64>> {
        if let Some(remote) = &self.remote {
            return remote.list_versions(name);
        }
        validate_model_name(name)?;
        let entries = self.version_entries(name)?;
        let tomb: std::collections::HashSet<u64> =
            entries.iter().filter(|e| e.1).map(|e| e.0).collect();
        let mut versions: Vec<u64> = entries
            .iter()
            .filter(|e| !e.1 && !tomb.contains(&e.0))
            .map(|e| e.0)
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// Names with at least one live version, sorted.
    pub fn list_names(&self) -> Result<Vec<String>> {
        if let Some(remote) = &self.remote {
            return remote.list_names();
        }
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.root).at(&self.root)? {
            let entry = entry.at(&self.root)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if validate_model_name(&name).is_ok() && !self.list_versions(&name)?.is_empty() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Opens a version and verifies the size and sha256 of every file it lists.
    pub fn open_version(
        &self,
        name: &str,
        selector: impl Into<VersionSelector>,
    ) -> Result<Artifact> {
        let selector = selector.into();
        if let Some(remote) = &self.remote {
            return remote.open_version(name, selector);
        }
        validate_model_name(name)?;
        let version = match selector {
            VersionSelector::Exact(v) => v,
            VersionSelector::Latest => {
                *self
                    .list_versions(name)?
                    .last()
                    .ok_or_else(|| StoreError::NotFound {
                        name: name.to_owned(),
                        version: None,
                    })?
            }
        };
        let dir = self.root.join(name).join(version.to_string());
        if !dir.is_dir()
            || self
                .root
                .join(name)
                .join(format!("{version}{TOMBSTONE_SUFFIX}"))
                .exists()
        {
            return Err(StoreError::NotFound {
                name: name.to_owned(),
                version: Some(version),
            });
        }
        let manifest = read_manifest(&dir)?;
        if manifest.name != name || manifest.version != version {
            return Err(StoreError::ManifestInvalid {
                path: dir.join(MANIFEST_FILE),
                reason: format!(
                    "it describes {}/{} but lies at {name}/{version}",
                    manifest.name, manifest.version
                ),
            });
        }
        for file in &manifest.files {
            verify_file(&dir, file)?;
        }
        Ok(Artifact {
            dir,
            manifest,
            _pin: None,
        })
    }

    /// Deletes one version. Its number is never reused.
    pub fn delete_version(&self, name: &str, version: u64) -> Result<()> {
        if let Some(remote) = &self.remote {
            return remote.delete_version(name, version);
        }
        validate_model_name(name)?;
        let model_dir = self.root.join(name);
        let dir = model_dir.join(version.to_string());
        let tomb = model_dir.join(format!("{version}{TOMBSTONE_SUFFIX}"));
        if !dir.is_dir() || tomb.exists() {
            return Err(StoreError::NotFound {
                name: name.to_owned(),
                version: Some(version),
            });
        }
        File::options()
            .write(true)
            .create_new(true)
            .open(&tomb)
            .at(&tomb)?;
        fsutil::sync_dir(&model_dir)?;
        let trash = self.new_trash_path(name, version);
        fs::rename(&dir, &trash).at(&dir)?;
        fs::remove_dir_all(&trash).at(&trash)?;
        tracing::info!(model = name, version, "deleted");
        Ok(())
    }

    fn new_trash_path(&self, name: &str, version: u64) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        self.root.join(TRASH_DIR).join(format!(
            "{}-{}-{name}-{version}",
            Owner::current().encode(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ))
    }
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::ManifestMissing { path });
        }
        Err(e) => return Err(e).at(path),
    };
    parse_manifest(&bytes, &path)
}

/// Parses and checks a manifest read from `path` (a file or an object's URI).
pub(crate) fn parse_manifest(bytes: &[u8], path: &Path) -> Result<Manifest> {
    let path = path.to_path_buf();
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|e| StoreError::ManifestInvalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    if manifest.schema_version != SCHEMA_VERSION {
        return Err(StoreError::ManifestInvalid {
            path,
            reason: format!(
                "schema_version {} is not supported (this build reads {SCHEMA_VERSION})",
                manifest.schema_version
            ),
        });
    }
    for f in &manifest.files {
        validate_file_name(&f.name).map_err(|e| StoreError::ManifestInvalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(manifest)
}

pub(crate) fn verify_file(dir: &Path, entry: &FileEntry) -> Result<()> {
    let path = dir.join(&entry.name);
    let digested = match fsutil::hash_file(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::FileMissing { path });
        }
        Err(e) => return Err(e).at(path),
    };
    if digested.size != entry.size {
        return Err(StoreError::SizeMismatch {
            path,
            expected: entry.size,
            actual: digested.size,
        });
    }
    if digested.sha256 != entry.sha256 {
        return Err(StoreError::DigestMismatch {
            path,
            expected: entry.sha256.clone(),
            actual: digested.sha256,
        });
    }
    Ok(())
}

pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
