//! The store itself: publish, open, list and delete versions under one root folder.
//!
//! Layout: `<root>/<name>/<version>/{manifest.json, files...}`. A version appears only by a
//! create-only rename of a fully written, fsynced staging folder (`<root>/.staging/`), so a
//! reader sees a complete version or none. Concurrent publishers — threads or processes —
//! need no lock: each picks the next free number and retries with the one after if another
//! publisher took it first. A deleted version leaves a tombstone `<version>.deleted` so its
//! number is never given out again.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::{self, Rename};
use crate::manifest::{FileEntry, MANIFEST_FILE, Manifest, ManifestDraft, SCHEMA_VERSION};
use crate::name::{validate_file_name, validate_model_name};

const STAGING_DIR: &str = ".staging";
const TRASH_DIR: &str = ".trash";
const TOMBSTONE_SUFFIX: &str = ".deleted";
const MAX_PUBLISH_ATTEMPTS: u32 = 10_000;

/// Which version to open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionSelector {
    /// The highest published version.
    Latest,
    /// One exact version.
    Exact(u64),
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

/// A verified, opened version: its folder and manifest.
#[derive(Clone, Debug)]
pub struct Artifact {
    dir: PathBuf,
    manifest: Manifest,
}

impl Artifact {
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

/// A model store rooted at one folder. Cheap to clone; all methods take `&self` and are safe
/// to call from many threads and processes at once.
#[derive(Clone, Debug)]
pub struct ModelStore {
    root: PathBuf,
}

impl ModelStore {
    /// Opens (creating if needed) a store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        fs::create_dir_all(root.join(STAGING_DIR)).at(&root)?;
        fs::create_dir_all(root.join(TRASH_DIR)).at(&root)?;
        Ok(Self { root })
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Publishes `files` as the next version of `name` and returns its manifest.
    pub fn publish(
        &self,
        name: &str,
        files: Vec<ArtifactFile>,
        draft: ManifestDraft,
    ) -> Result<Manifest> {
        validate_model_name(name)?;
        let mut seen = std::collections::HashSet::new();
        for f in &files {
            validate_file_name(&f.name)?;
            if !seen.insert(f.name.as_str()) {
                return Err(StoreError::InvalidFileName {
                    name: f.name.clone(),
                    reason: "given twice",
                });
            }
        }
        let staging = self.new_staging_dir()?;
        let result = self.publish_from_staging(name, &staging, files, draft);
        if result.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        result
    }

    fn publish_from_staging(
        &self,
        name: &str,
        staging: &Path,
        files: Vec<ArtifactFile>,
        draft: ManifestDraft,
    ) -> Result<Manifest> {
        let mut entries = Vec::with_capacity(files.len());
        for file in files {
            let dest = staging.join(&file.name);
            let digested = match &file.source {
                FileSource::Path(p) => fsutil::write_hashed(File::open(p).at(p)?, &dest)?,
                FileSource::Bytes(b) => fsutil::write_hashed(b.as_slice(), &dest)?,
            };
            entries.push(FileEntry {
                name: file.name,
                sha256: digested.sha256,
                size: digested.size,
            });
        }
        let mut manifest = Manifest {
            schema_version: SCHEMA_VERSION,
            name: name.to_owned(),
            version: 0,
            runtime: draft.runtime,
            files: entries,
            signature: draft.signature,
            created_unix_ms: now_unix_ms(),
            properties: draft.properties,
            provenance: draft.provenance,
        };
        let model_dir = self.root.join(name);
        fs::create_dir_all(&model_dir).at(&model_dir)?;
        let mut candidate = self.next_version(name)?;
        for _ in 0..MAX_PUBLISH_ATTEMPTS {
            manifest.version = candidate;
            let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
            fsutil::write_synced(&staging.join(MANIFEST_FILE), &json)?;
            fsutil::sync_dir(staging)?;
            let target = model_dir.join(candidate.to_string());
            match fsutil::rename_no_replace(staging, &target)? {
                Rename::Done => {
                    fsutil::sync_dir(&model_dir)?;
                    tracing::info!(model = name, version = candidate, "published");
                    return Ok(manifest);
                }
                Rename::TargetExists => {
                    candidate = self.next_version(name)?.max(candidate + 1);
                }
            }
        }
        Err(StoreError::VersionContention {
            name: name.to_owned(),
            attempts: MAX_PUBLISH_ATTEMPTS,
        })
    }

    fn new_staging_dir(&self) -> Result<PathBuf> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let unique = format!(
            "{}-{}-{}",
            std::process::id(),
            now_unix_ms(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = self.root.join(STAGING_DIR).join(unique);
        fs::create_dir_all(&dir).at(&dir)?;
        Ok(dir)
    }

    /// One more than the highest version ever published (deleted ones included).
    fn next_version(&self, name: &str) -> Result<u64> {
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
        validate_model_name(name)?;
        let selector = selector.into();
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
        Ok(Artifact { dir, manifest })
    }

    /// Deletes one version. Its number is never reused.
    pub fn delete_version(&self, name: &str, version: u64) -> Result<()> {
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
            "{name}-{version}-{}-{}",
            std::process::id(),
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
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| StoreError::ManifestInvalid {
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

fn verify_file(dir: &Path, entry: &FileEntry) -> Result<()> {
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

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
