//! A version being written: a folder under `<root>/.staging/` that files are copied (or an
//! archive unpacked) into, within an import's [`Budget`], then published with one create-only
//! rename, or removed when dropped unpublished.
//!
//! The folder's name starts with its writer's pid and start time, so the writer of a leftover
//! (a process killed mid-copy) can be told dead from alive: [`crate::ModelStore::sweep_staging`]
//! removes the first and never touches the second. One `Staging` belongs to one thread.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::{self, Rename};
use crate::limits::Budget;
use crate::manifest::{FileEntry, MANIFEST_FILE, Manifest, ManifestDraft, SCHEMA_VERSION};
use crate::name::{validate_file_name, validate_model_name};
use crate::owner::Owner;
use crate::source::LocalSource;
use crate::store::{ModelStore, STAGING_DIR, now_unix_ms};

const MAX_PUBLISH_ATTEMPTS: u32 = 10_000;

/// A version being written; see the module docs.
#[derive(Debug)]
pub struct Staging {
    store: ModelStore,
    dir: PathBuf,
    files: Vec<FileEntry>,
    done: bool,
}

impl Staging {
    pub(crate) fn new(store: &ModelStore) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let unique = format!(
            "{}-{}-{}",
            Owner::current().encode(),
            now_unix_ms(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = store.root().join(STAGING_DIR).join(unique);
        fs::create_dir_all(&dir).at(&dir)?;
        Ok(Self {
            store: store.clone(),
            dir,
            files: Vec::new(),
            done: false,
        })
    }

    /// The files staged so far, in manifest order (the first is the primary file).
    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    /// Where a staged file lies, to inspect it before publishing.
    pub fn file_path(&self, name: &str) -> Option<PathBuf> {
        self.files
            .iter()
            .any(|f| f.name == name)
            .then(|| self.dir.join(name))
    }

    /// Moves the file `name` first (the file the runtime loads); false if there is none.
    pub fn make_primary(&mut self, name: &str) -> bool {
        match self.files.iter().position(|f| f.name == name) {
            Some(i) => {
                let entry = self.files.remove(i);
                self.files.insert(0, entry);
                true
            }
            None => false,
        }
    }

    /// Checks `name` and counts it; returns where it goes.
    pub(crate) fn reserve(&mut self, name: &str, budget: &mut Budget) -> Result<PathBuf> {
        validate_file_name(name)?;
        if self.files.iter().any(|f| f.name == name) {
            return Err(StoreError::InvalidFileName {
                name: name.to_owned(),
                reason: "given twice",
            });
        }
        budget.charge_file(|| "the import".to_owned())?;
        Ok(self.dir.join(name))
    }

    /// Copies `reader` (the content of `src`) in as `name`.
    pub(crate) fn add_reader(
        &mut self,
        name: &str,
        reader: impl std::io::Read,
        src: &Path,
        budget: &mut Budget,
    ) -> Result<()> {
        let dest = self.reserve(name, budget)?;
        let faults = self.store.fault_injector();
        let digested = fsutil::write_hashed(reader, src, &dest, name, budget, faults.as_deref())?;
        self.files.push(FileEntry {
            name: name.to_owned(),
            sha256: digested.sha256,
            size: digested.size,
        });
        Ok(())
    }

    /// Copies the regular file `src` in as `name`.
    pub fn add_path(&mut self, name: &str, src: &Path, budget: &mut Budget) -> Result<()> {
        let file = fsutil::open_regular(src)?;
        self.add_reader(name, file, src, budget)
    }

    /// Writes `bytes` in as `name`.
    pub fn add_bytes(&mut self, name: &str, bytes: &[u8], budget: &mut Budget) -> Result<()> {
        self.add_reader(name, bytes, Path::new(name), budget)
    }

    /// Copies every file of a scanned local source, or unpacks its archive.
    pub fn add_source(&mut self, source: &LocalSource, budget: &mut Budget) -> Result<()> {
        match source {
            LocalSource::Files(files) => {
                for f in files {
                    self.add_path(&f.name, &f.path, budget)?;
                }
                Ok(())
            }
            LocalSource::Archive { path, gzip } => {
                crate::archive::unpack(self, path, *gzip, budget)
            }
        }
    }

    /// Publishes the staged files as the next version of `name`.
    pub fn publish(mut self, name: &str, draft: ManifestDraft) -> Result<Manifest> {
        validate_model_name(name)?;
        let mut manifest = Manifest {
            schema_version: SCHEMA_VERSION,
            name: name.to_owned(),
            version: 0,
            runtime: draft.runtime,
            files: std::mem::take(&mut self.files),
            signature: draft.signature,
            created_unix_ms: now_unix_ms(),
            properties: draft.properties,
            provenance: draft.provenance,
        };
        if let Some(remote) = self.store.remote() {
            let (manifest, moved) = remote.publish(&self.dir, manifest)?;
            // Moved into the cache, or removed on drop.
            self.done = moved;
            return Ok(manifest);
        }
        let model_dir = self.store.root().join(name);
        fs::create_dir_all(&model_dir).at(&model_dir)?;
        let mut candidate = self.store.next_version(name)?;
        for _ in 0..MAX_PUBLISH_ATTEMPTS {
            manifest.version = candidate;
            let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
            fsutil::write_synced(&self.dir.join(MANIFEST_FILE), &json)?;
            fsutil::sync_dir(&self.dir)?;
            let target = model_dir.join(candidate.to_string());
            match fsutil::rename_no_replace(&self.dir, &target)? {
                Rename::Done => {
                    self.done = true;
                    fsutil::sync_dir(&model_dir)?;
                    tracing::info!(model = name, version = candidate, "published");
                    return Ok(manifest);
                }
                Rename::TargetExists => {
                    candidate = self.store.next_version(name)?.max(candidate + 1);
                }
            }
        }
        Err(StoreError::VersionContention {
            name: name.to_owned(),
            attempts: MAX_PUBLISH_ATTEMPTS,
        })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done
            && let Err(e) = fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove a staging folder; the next sweep will");
        }
    }
}
