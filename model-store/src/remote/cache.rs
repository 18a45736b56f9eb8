//! The local read-through cache of an object-storage store: `<cache>/<name>/<version>/`
//! holds a version's files and its `manifest.json` exactly as the store has them, so the
//! runtimes load from local paths ([`crate::Artifact::dir`]).
//!
//! A version enters the cache whole or not at all: it is downloaded into a staging folder
//! (`<cache>/.staging/`, named after its writer so a dead writer's leftovers are swept), each
//! file's size and sha256 checked against the manifest on the way, then renamed into place.
//! A cached version is verified again at every open, as a local store's are.
//!
//! The cache is bounded by the bytes of the versions it holds. Making room evicts whole
//! versions, least recently used first, skipping versions that an [`crate::Artifact`] of this
//! process still holds (a load in progress); a version that cannot fit is refused with
//! [`StoreError::CacheFull`]. Bytes are reserved before a download starts, so concurrent
//! downloads never overrun the bound together.
//!
//! Concurrency: one mutex guards the in-memory index (sizes, last use, pins); it is held for
//! bookkeeping and renames only, never during a download or a hash. Several processes may
//! share a cache folder safely (renames are atomic, a vanished file is downloaded again),
//! but each bounds only what it knows of; give each process its own `--cache-dir` for an
//! exact bound.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::error::{IoContext, Result, StoreError};
use crate::fsutil::{self, Rename};
use crate::manifest::{MANIFEST_FILE, Manifest};
use crate::owner::Owner;
use crate::store::{STAGING_DIR, TRASH_DIR, parse_manifest, verify_file};

/// Held by an [`crate::Artifact`] of a cached version: while one lives, the version is not
/// evicted.
#[derive(Debug)]
pub(crate) struct Pin;

type Key = (String, u64);

#[derive(Debug)]
struct Entry {
    bytes: u64,
    last_used: u64,
    pin: Weak<Pin>,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<Key, Entry>,
    /// Bytes of the entries plus the reservations of downloads in progress.
    used: u64,
    tick: u64,
}

impl Index {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }
}

/// The cache; see the module docs.
#[derive(Debug)]
pub(crate) struct Cache {
    root: PathBuf,
    limit: u64,
    index: Mutex<Index>,
}

/// Bytes reserved for a download; released on drop unless committed.
pub(crate) struct Reservation<'a> {
    cache: &'a Cache,
    bytes: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.bytes > 0 {
            let mut index = self.cache.lock();
            index.used = index.used.saturating_sub(self.bytes);
        }
    }
}

impl Cache {
    /// Opens the cache at `root` (created if needed) and indexes the versions it holds,
    /// oldest first by their manifest's modification time; what is not a whole version
    /// (a folder without a readable manifest) is removed.
    pub(crate) fn open(root: &Path, limit: u64) -> Result<Self> {
        for dir in [STAGING_DIR, TRASH_DIR] {
            fs::create_dir_all(root.join(dir)).at(root)?;
        }
        let mut found: Vec<(std::time::SystemTime, Key, u64)> = Vec::new();
        for model in fs::read_dir(root).at(root)? {
            let model = model.at(root)?;
            let Ok(name) = model.file_name().into_string() else {
                continue;
            };
            if crate::name::validate_model_name(&name).is_err() || !model.path().is_dir() {
                continue;
            }
            for version in fs::read_dir(model.path()).at(model.path())? {
                let version = version.at(model.path())?;
                let Some(v) = version
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u64>().ok())
                else {
                    continue;
                };
                let manifest_path = version.path().join(MANIFEST_FILE);
                let parsed = fs::read(&manifest_path)
                    .ok()
                    .and_then(|b| parse_manifest(&b, &manifest_path).ok())
                    .filter(|m| m.name == name && m.version == v);
                match parsed {
                    Some(m) => {
                        let used = fs::metadata(&manifest_path)
                            .and_then(|m| m.modified())
                            .unwrap_or(std::time::UNIX_EPOCH);
                        found.push((used, (name.clone(), v), total_bytes(&m)));
                    }
                    None => {
                        tracing::warn!(dir = %version.path().display(), "removing an incomplete cached version");
                        let _ = fs::remove_dir_all(version.path());
                    }
                }
            }
        }
        found.sort();
        let mut index = Index::default();
        for (_, key, bytes) in found {
            let last_used = index.next_tick();
            index.used += bytes;
            index.entries.insert(
                key,
                Entry {
                    bytes,
                    last_used,
                    pin: Weak::new(),
                },
            );
        }
        tracing::debug!(cache = %root.display(), versions = index.entries.len(), bytes = index.used, "store cache indexed");
        Ok(Self {
            root: root.to_path_buf(),
            limit,
            index: Mutex::new(index),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where a version is cached.
    pub(crate) fn version_dir(&self, name: &str, version: u64) -> PathBuf {
        self.root.join(name).join(version.to_string())
    }

    /// Bytes the cached versions (and downloads in progress) take.
    pub(crate) fn used(&self) -> u64 {
        self.lock().used
    }

    /// Versions cached, for tests and logs.
    pub(crate) fn cached(&self) -> Vec<(String, u64)> {
        let mut keys: Vec<Key> = self.lock().entries.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// The cached copy of a version, verified against `manifest_bytes` (the store's
    /// manifest, byte for byte) and every file's size and sha256; marks it used and pins it.
    /// `None` (and the copy removed) when it is not cached, stale or damaged.
    pub(crate) fn lookup(
        &self,
        manifest: &Manifest,
        manifest_bytes: &[u8],
    ) -> Option<(PathBuf, Arc<Pin>)> {
        let key = (manifest.name.clone(), manifest.version);
        let dir = self.version_dir(&key.0, key.1);
        // Pinned before it is verified, so no eviction takes it between the check and the
        // caller's load.
        let pin = {
            let mut index = self.lock();
            let tick = index.next_tick();
            let entry = index.entries.get_mut(&key)?;
            entry.last_used = tick;
            entry.pin.upgrade().unwrap_or_else(|| {
                let pin = Arc::new(Pin);
                entry.pin = Arc::downgrade(&pin);
                pin
            })
        };
        let same_manifest = fs::read(dir.join(MANIFEST_FILE)).is_ok_and(|b| b == manifest_bytes);
        let verified = same_manifest
            && manifest
                .files
                .iter()
                .try_for_each(|f| verify_file(&dir, f))
                .map_err(
                    |e| tracing::warn!(error = %e, "cached copy is damaged; downloading it again"),
                )
                .is_ok();
        if !verified {
            drop(pin);
            self.remove(&key, true);
            return None;
        }
        // Touch the manifest so the order survives a restart (best effort).
        if let Ok(f) = fs::File::options()
            .write(true)
            .open(dir.join(MANIFEST_FILE))
        {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        Some((dir, pin))
    }

    /// Reserves room for `bytes` of the version `what`, evicting least recently used
    /// versions that no one holds.
    pub(crate) fn reserve(&self, what: &str, bytes: u64) -> Result<Reservation<'_>> {
        let mut evicted = Vec::new();
        let result = {
            let mut index = self.lock();
            // Evict nothing unless enough can go: a version that cannot fit is refused
            // with the cache as it was.
            let in_use: u64 = index
                .entries
                .values()
                .filter(|e| e.pin.strong_count() > 0)
                .map(|e| e.bytes)
                .sum();
            let evictable: u64 = index
                .entries
                .values()
                .filter(|e| e.pin.strong_count() == 0)
                .map(|e| e.bytes)
                .sum();
            let full = StoreError::CacheFull {
                what: what.to_owned(),
                needed: bytes,
                limit: self.limit,
                in_use,
                dir: self.root.clone(),
            };
            if index.used.saturating_sub(evictable).saturating_add(bytes) > self.limit {
                return Err(full);
            }
            loop {
                if index.used.saturating_add(bytes) <= self.limit {
                    index.used += bytes;
                    break Ok(());
                }
                let victim = index
                    .entries
                    .iter()
                    .filter(|(_, e)| e.pin.strong_count() == 0)
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(k, _)| k.clone());
                let Some(victim) = victim else {
                    // Reservations of downloads in progress hold the rest.
                    break Err(full);
                };
                if let Some(trash) = self.unlink(&mut index, &victim) {
                    evicted.push(trash);
                }
                tracing::info!(model = %victim.0, version = victim.1, "evicted from the store cache");
            }
        };
        for trash in evicted {
            remove_trash(&trash);
        }
        result.map(|()| Reservation { cache: self, bytes })
    }

    /// Takes a downloaded (or just published) version folder `staged` into the cache under
    /// the reservation; returns where it lies and its pin. If another thread cached the same
    /// version first, `staged` is removed and that copy is returned.
    pub(crate) fn insert(
        &self,
        staged: &Path,
        manifest: &Manifest,
        mut reservation: Reservation<'_>,
    ) -> Result<(PathBuf, Arc<Pin>)> {
        let key = (manifest.name.clone(), manifest.version);
        let dir = self.version_dir(&key.0, key.1);
        let parent = self.root.join(&key.0);
        fs::create_dir_all(&parent).at(&parent)?;
        let mut index = self.lock();
        match fsutil::rename_no_replace(staged, &dir)? {
            Rename::Done => {
                let _ = fsutil::sync_dir(&parent);
                let tick = index.next_tick();
                let pin = Arc::new(Pin);
                index.entries.insert(
                    key,
                    Entry {
                        bytes: reservation.bytes,
                        last_used: tick,
                        pin: Arc::downgrade(&pin),
                    },
                );
                // The reserved bytes now belong to the entry.
                reservation.bytes = 0;
                Ok((dir, pin))
            }
            Rename::TargetExists => {
                drop(index);
                let _ = fs::remove_dir_all(staged);
                drop(reservation);
                let bytes = fs::read(dir.join(MANIFEST_FILE)).at(dir.join(MANIFEST_FILE))?;
                self.lookup(manifest, &bytes)
                    .ok_or_else(|| StoreError::FileMissing {
                        path: dir.join(MANIFEST_FILE),
                    })
            }
        }
    }

    /// Removes a version from the cache (a deleted or damaged one); a pinned one stays
    /// unless `even_pinned`.
    pub(crate) fn remove(&self, key: &(String, u64), even_pinned: bool) {
        let trash = {
            let mut index = self.lock();
            match index.entries.get(key) {
                Some(e) if even_pinned || e.pin.strong_count() == 0 => self.unlink(&mut index, key),
                _ => None,
            }
        };
        if let Some(trash) = trash {
            remove_trash(&trash);
        }
    }

    /// Drops `key` from the index and renames its folder into the trash (under the lock, so
    /// no lookup sees half of it); the caller removes the trash folder outside the lock.
    fn unlink(&self, index: &mut Index, key: &Key) -> Option<PathBuf> {
        let entry = index.entries.remove(key)?;
        index.used = index.used.saturating_sub(entry.bytes);
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let trash = self.root.join(TRASH_DIR).join(format!(
            "{}-{}-cache-{}-{}",
            Owner::current().encode(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            key.0,
            key.1
        ));
        match fs::rename(self.version_dir(&key.0, key.1), &trash) {
            Ok(()) => Some(trash),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(error = %e, model = %key.0, version = key.1, "cannot remove a cached version");
                None
            }
        }
    }

    /// A new folder to download a version into, under `.staging/` (named after this process,
    /// so the sweep removes it if this process dies mid-download).
    pub(crate) fn new_download_dir(&self) -> Result<PathBuf> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = self.root.join(STAGING_DIR).join(format!(
            "{}-dl-{}",
            Owner::current().encode(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).at(&dir)?;
        Ok(dir)
    }
}

fn remove_trash(trash: &Path) {
    if let Err(e) = fs::remove_dir_all(trash) {
        tracing::warn!(dir = %trash.display(), error = %e, "cannot remove an evicted version; the next sweep will");
    }
}

/// Bytes of a version's files.
pub(crate) fn total_bytes(manifest: &Manifest) -> u64 {
    manifest.files.iter().map(|f| f.size).sum()
}
