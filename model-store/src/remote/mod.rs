//! A store on object storage (S3 or an S3-compatible store, through `object_store`), with the
//! local store's layout and manifests under a key prefix:
//!
//! ```text
//! <prefix>/<name>/<version>/manifest.json     written last: the version exists once it does
//! <prefix>/<name>/<version>/<file>...         the files the manifest lists
//! <prefix>/<name>/<version>.deleted           tombstone of a deleted version
//! <prefix>/<name>/_claims/<version>/<token>   publishers' claims on a version number
//! ```
//!
//! **Publish** uploads the staged files under the version, then puts `manifest.json` with
//! `PutMode::Create` (`If-None-Match: *`). Until the manifest is there the version is
//! invisible: readers take a version to exist only by its manifest, so a publish that fails
//! halfway (S3 lost, the process killed) leaves no visible trace, only unlisted objects.
//!
//! **Version numbers** are claimed before anything is uploaded, by an election that needs no
//! conditional write: a publisher puts a claim object under a key of its own
//! (`_claims/<v>/<token>`, never overwritten), then lists `_claims/<v>/`; it owns `v` only if
//! its claim is the only one there, and otherwise tries `v + 1` after a short random pause.
//! Two publishers can never both win: each puts before it lists, so if A's list missed B's
//! claim, B put after A listed, hence B listed after A put and saw A's claim. This relies only
//! on S3's strong read-after-write consistency of PUT and LIST (AWS since 2020, MinIO, Ceph,
//! s3s-fs), not on conditional writes, which s3s-fs 0.14.1 checks and writes in two steps
//! (`exists()`, then a temporary file renamed over the key: concurrent creates can both
//! succeed) and some S3-compatible stores lack. A claim is never
//! removed, so a number is never given out twice even when its publish failed (numbers
//! may have gaps, as after a delete). The `If-None-Match: *` on the manifest is a second
//! guard, never the first.
//!
//! **Loads** read the manifest from the store, then materialise the version in the local
//! [`cache::Cache`] (downloads verified against the manifest's sizes and sha256) and hand out
//! the cached paths; a cached version is verified again at each open.
//!
//! Concurrency: every request runs on the store's own I/O runtime ([`io::Io`]); the store's
//! methods block. Concurrent loads of one version wait for a single download (a gate per
//! version). A store that cannot be reached answers [`StoreError::Unavailable`] naming
//! its URL; nothing is cached about that, so the next call after S3 is back succeeds.

mod cache;
mod io;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::error::{IoContext, Result, StoreError};
use crate::manifest::{MANIFEST_FILE, Manifest};
use crate::name::validate_model_name;
use crate::owner::Owner;
use crate::s3::error_chain;
use crate::store::{Artifact, VersionSelector, parse_manifest};

pub(crate) use cache::Pin;

const CLAIMS: &str = "_claims";
const TOMBSTONE_SUFFIX: &str = ".deleted";
/// Publish attempts before [`StoreError::VersionContention`].
const MAX_CLAIM_ATTEMPTS: u32 = 64;
/// Files up to this size are put in one request; larger ones in parts of this size.
const PART_BYTES: usize = 16 << 20;
/// Largest manifest read from the store.
const MAX_MANIFEST_BYTES: usize = 16 << 20;

/// Held while one version downloads.
type Gate = Arc<Mutex<()>>;

/// An object-storage store; see the module docs.
#[derive(Debug)]
pub(crate) struct Remote {
    url: String,
    client: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    cache: cache::Cache,
    /// A gate per version being downloaded, so concurrent loads of one version download it
    /// once.
    downloads: Mutex<HashMap<(String, u64), Gate>>,
    io: io::Io,
}

/// What the keys under `<prefix>/<name>/` say.
#[derive(Debug, Default)]
struct Entries {
    manifests: BTreeSet<u64>,
    tombstones: BTreeSet<u64>,
    /// Every number seen: claims, version folders (complete or not), tombstones.
    highest: u64,
}

impl Entries {
    fn live(&self) -> Vec<u64> {
        self.manifests
            .difference(&self.tombstones)
            .copied()
            .collect()
    }
}

impl Remote {
    /// Opens the store at `url` (`s3://bucket/prefix`, for messages) through `client`, with
    /// its cache at `cache_dir`; checks that the store answers.
    pub(crate) fn open(
        url: String,
        client: Arc<dyn ObjectStore>,
        prefix: &str,
        cache_dir: &Path,
        cache_bytes: u64,
    ) -> Result<Self> {
        let prefix = ObjectPath::parse(prefix).map_err(|e| StoreError::Unavailable {
            store: url.clone(),
            reason: format!("invalid key prefix: {e}"),
        })?;
        let remote = Self {
            cache: cache::Cache::open(cache_dir, cache_bytes)?,
            downloads: Mutex::default(),
            io: io::Io::new().at(cache_dir)?,
            url,
            client,
            prefix,
        };
        // Reachable, and the bucket exists: one listing of the prefix.
        remote.io.block_on(async {
            remote
                .client
                .list_with_delimiter(Some(&remote.prefix))
                .await
                .map_err(|e| remote.unavailable(e))
        })?;
        tracing::info!(store = %remote.url, cache = %cache_dir.display(), "object-storage model store opened");
        Ok(remote)
    }

    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    fn unavailable(&self, e: object_store::Error) -> StoreError {
        StoreError::Unavailable {
            store: self.url.clone(),
            reason: error_chain(&e),
        }
    }

    /// `<prefix>/a/b/...`
    fn key(&self, parts: &[&str]) -> ObjectPath {
        parts
            .iter()
            .fold(self.prefix.clone(), |p, part| p.child(*part))
    }

    /// The `s3://` URI of a key (the store URL's scheme and bucket, then the key), for
    /// messages.
    fn uri(&self, key: &ObjectPath) -> PathBuf {
        let bucket = match self.url.split_once("://") {
            Some((scheme, rest)) => {
                format!("{scheme}://{}", rest.split('/').next().unwrap_or_default())
            }
            None => self.url.clone(),
        };
        PathBuf::from(format!("{bucket}/{key}"))
    }

    async fn entries(&self, name: &str) -> Result<Entries> {
        let base = self.key(&[name]);
        let objects: Vec<_> = self
            .client
            .list(Some(&base))
            .try_collect()
            .await
            .map_err(|e| self.unavailable(e))?;
        let mut entries = Entries::default();
        for meta in objects {
            let Some(parts) = meta.location.prefix_match(&base) else {
                continue;
            };
            let parts: Vec<String> = parts.map(|p| p.as_ref().to_owned()).collect();
            let number = match parts.as_slice() {
                [v, file] if file == MANIFEST_FILE => v.parse().ok().inspect(|&v| {
                    entries.manifests.insert(v);
                }),
                [tomb] => tomb
                    .strip_suffix(TOMBSTONE_SUFFIX)
                    .and_then(|v| v.parse().ok())
                    .inspect(|&v| {
                        entries.tombstones.insert(v);
                    }),
                [claims, v, _] if claims == CLAIMS => v.parse().ok(),
                [v, ..] => v.parse().ok(),
                [] => None,
            };
            entries.highest = entries.highest.max(number.unwrap_or(0));
        }
        Ok(entries)
    }

    pub(crate) fn list_versions(&self, name: &str) -> Result<Vec<u64>> {
        validate_model_name(name)?;
        self.io
            .block_on(async { Ok(self.entries(name).await?.live()) })
    }

    pub(crate) fn list_names(&self) -> Result<Vec<String>> {
        self.io.block_on(async {
            let listed = self
                .client
                .list_with_delimiter(Some(&self.prefix))
                .await
                .map_err(|e| self.unavailable(e))?;
            let mut names = Vec::new();
            for dir in listed.common_prefixes {
                let Some(name) = dir.filename().map(str::to_owned) else {
                    continue;
                };
                if validate_model_name(&name).is_ok()
                    && !self.entries(&name).await?.live().is_empty()
                {
                    names.push(name);
                }
            }
            names.sort();
            Ok(names)
        })
    }

    pub(crate) fn open_version(&self, name: &str, selector: VersionSelector) -> Result<Artifact> {
        validate_model_name(name)?;
        let (manifest, manifest_bytes) = self.io.block_on(async {
            let not_found = |version| StoreError::NotFound {
                name: name.to_owned(),
                version,
            };
            // An exact version needs no listing: its manifest and tombstone, asked at once.
            let version = match selector {
                VersionSelector::Latest => {
                    let live = self.entries(name).await?.live();
                    *live.last().ok_or_else(|| not_found(None))?
                }
                VersionSelector::Exact(v) => v,
            };
            let key = self.key(&[name, &version.to_string(), MANIFEST_FILE]);
            let tomb = self.key(&[name, &format!("{version}{TOMBSTONE_SUFFIX}")]);
            let (got, tombstone) = futures::join!(self.client.get(&key), self.client.head(&tomb));
            match tombstone {
                Ok(_) => return Err(not_found(Some(version))),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.unavailable(e)),
            }
            let bytes = match got {
                Ok(got) if got.meta.size > MAX_MANIFEST_BYTES as u64 => {
                    return Err(StoreError::ManifestInvalid {
                        path: self.uri(&key),
                        reason: format!("it is over {MAX_MANIFEST_BYTES} bytes"),
                    });
                }
                Ok(got) => got.bytes().await.map_err(|e| self.unavailable(e))?,
                // Never published, or deleted since the listing.
                Err(object_store::Error::NotFound { .. }) => {
                    return Err(not_found(Some(version)));
                }
                Err(e) => return Err(self.unavailable(e)),
            };
            let manifest = parse_manifest(&bytes, &self.uri(&key))?;
            if manifest.name != name || manifest.version != version {
                return Err(StoreError::ManifestInvalid {
                    path: self.uri(&key),
                    reason: format!(
                        "it describes {}/{} but lies at {name}/{version}",
                        manifest.name, manifest.version
                    ),
                });
            }
            Ok((manifest, bytes))
        })?;
        if let Some((dir, pin)) = self.cache.lookup(&manifest, &manifest_bytes) {
            return Ok(Artifact::cached(dir, manifest, pin));
        }
        // One download of a version at a time: the others wait for it, then find it cached.
        let gate = {
            let mut downloads = self.downloads.lock().unwrap_or_else(|e| e.into_inner());
            downloads.retain(|_, g| Arc::strong_count(g) > 1);
            downloads
                .entry((name.to_owned(), manifest.version))
                .or_default()
                .clone()
        };
        let _one = gate.lock().unwrap_or_else(|e| e.into_inner());
        let (dir, pin) = match self.cache.lookup(&manifest, &manifest_bytes) {
            Some(hit) => hit,
            None => self.download(&manifest, &manifest_bytes)?,
        };
        Ok(Artifact::cached(dir, manifest, pin))
    }

    /// Downloads a version into the cache, checking every file against the manifest.
    fn download(&self, manifest: &Manifest, manifest_bytes: &[u8]) -> Result<(PathBuf, Arc<Pin>)> {
        let what = format!("{}/{}", manifest.name, manifest.version);
        let reservation = self.cache.reserve(&what, cache::total_bytes(manifest))?;
        let dir = self.cache.new_download_dir()?;
        let started = std::time::Instant::now();
        let fetched = self.io.block_on(async {
            for file in &manifest.files {
                let key = self.key(&[&manifest.name, &manifest.version.to_string(), &file.name]);
                self.fetch_file(&key, &dir.join(&file.name), file).await?;
            }
            Ok::<_, StoreError>(())
        });
        let fetched = fetched.and_then(|()| {
            crate::fsutil::write_synced(&dir.join(MANIFEST_FILE), manifest_bytes)?;
            crate::fsutil::sync_dir(&dir)
        });
        if let Err(e) = fetched {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        tracing::info!(model = %manifest.name, version = manifest.version, seconds = started.elapsed().as_secs_f64(), "downloaded into the store cache");
        self.cache.insert(&dir, manifest, reservation)
    }

    /// Streams one object into `dest`, hashing on the way; at most the manifest's size is
    /// read, and the size and sha256 must match it.
    async fn fetch_file(
        &self,
        key: &ObjectPath,
        dest: &Path,
        entry: &crate::manifest::FileEntry,
    ) -> Result<()> {
        use std::io::Write;
        let uri = self.uri(key);
        let got = match self.client.get(key).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::FileMissing { path: uri });
            }
            Err(e) => return Err(self.unavailable(e)),
        };
        if got.meta.size != entry.size {
            return Err(StoreError::SizeMismatch {
                path: uri,
                expected: entry.size,
                actual: got.meta.size,
            });
        }
        let mut out = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(dest)
            .at(dest)?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.try_next().await.map_err(|e| self.unavailable(e))? {
            size += chunk.len() as u64;
            if size > entry.size {
                return Err(StoreError::SizeMismatch {
                    path: uri,
                    expected: entry.size,
                    actual: size,
                });
            }
            hasher.update(&chunk);
            out.write_all(&chunk).at(dest)?;
        }
        out.sync_all().at(dest)?;
        let sha256 = hex::encode(hasher.finalize());
        if size != entry.size {
            return Err(StoreError::SizeMismatch {
                path: uri,
                expected: entry.size,
                actual: size,
            });
        }
        if sha256 != entry.sha256 {
            return Err(StoreError::DigestMismatch {
                path: uri,
                expected: entry.sha256.clone(),
                actual: sha256,
            });
        }
        Ok(())
    }

    /// Publishes the staged folder `staged` (files written and listed in `manifest`, whose
    /// version is still 0) as the next version; see the module docs. Returns the manifest
    /// and whether `staged` was moved into the cache.
    pub(crate) fn publish(
        &self,
        staged: &Path,
        mut manifest: Manifest,
    ) -> Result<(Manifest, bool)> {
        let name = manifest.name.clone();
        let version = self.io.block_on(self.claim(&name))?;
        manifest.version = version;
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serializes");
        self.io.block_on(self.upload(staged, &manifest, &json))?;
        tracing::info!(model = %name, version, store = %self.url, "published");
        // The staged files are the version: keep them as its cached copy when they fit.
        let moved = match self
            .cache
            .reserve(&format!("{name}/{version}"), cache::total_bytes(&manifest))
        {
            Ok(reservation) => crate::fsutil::write_synced(&staged.join(MANIFEST_FILE), &json)
                .and_then(|()| self.cache.insert(staged, &manifest, reservation))
                .map_err(|e| tracing::debug!(error = %e, "published version not kept in the cache"))
                .is_ok_and(|_| !staged.exists()),
            Err(_) => false,
        };
        Ok((manifest, moved))
    }

    /// Claims the next free version number of `name`; see the module docs.
    async fn claim(&self, name: &str) -> Result<u64> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut candidate = self.entries(name).await?.highest + 1;
        for attempt in 0..MAX_CLAIM_ATTEMPTS {
            let token = format!(
                "{}-{}-{:016x}",
                Owner::current().encode(),
                COUNTER.fetch_add(1, Ordering::Relaxed),
                fastrand::u64(..)
            );
            let dir = self.key(&[name, CLAIMS, &candidate.to_string()]);
            let body = serde_json::json!({
                "pid": std::process::id(),
                "claimed_unix_ms": crate::store::now_unix_ms(),
            });
            self.client
                .put(
                    &dir.child(token.as_str()),
                    PutPayload::from(body.to_string()),
                )
                .await
                .map_err(|e| self.unavailable(e))?;
            let claims: Vec<_> = self
                .client
                .list(Some(&dir))
                .try_collect()
                .await
                .map_err(|e| self.unavailable(e))?;
            if claims.len() == 1 && claims[0].location.filename() == Some(token.as_str()) {
                return Ok(candidate);
            }
            tracing::debug!(
                model = name,
                version = candidate,
                claims = claims.len(),
                "version claimed by another publisher; trying the next"
            );
            candidate = (candidate + 1).max(self.entries(name).await?.highest + 1);
            // Two publishers in lockstep would keep colliding: part them.
            let pause = fastrand::u64(0..=(5 << attempt.min(4)));
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        Err(StoreError::VersionContention {
            name: name.to_owned(),
            attempts: MAX_CLAIM_ATTEMPTS,
        })
    }

    /// Uploads the files, then the manifest (create-only). A failure before the manifest
    /// removes what was uploaded (best effort: what stays is unlisted, without a manifest).
    async fn upload(&self, staged: &Path, manifest: &Manifest, json: &[u8]) -> Result<()> {
        let version = manifest.version.to_string();
        let mut uploaded = Vec::new();
        let mut result = Ok(());
        for file in &manifest.files {
            let key = self.key(&[&manifest.name, &version, &file.name]);
            uploaded.push(key.clone());
            if let Err(e) = self.put_file(&key, &staged.join(&file.name)).await {
                result = Err(e);
                break;
            }
        }
        if result.is_ok() {
            let key = self.key(&[&manifest.name, &version, MANIFEST_FILE]);
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            return match self
                .client
                .put_opts(&key, PutPayload::from(Bytes::copy_from_slice(json)), opts)
                .await
            {
                Ok(_) => Ok(()),
                Err(object_store::Error::AlreadyExists { .. }) => {
                    Err(StoreError::VersionContention {
                        name: manifest.name.clone(),
                        attempts: 1,
                    })
                }
                // The manifest may have been written even though the answer was lost: the
                // files stay, so a version that became visible is whole.
                Err(e) => Err(self.unavailable(e)),
            };
        }
        for key in uploaded {
            if let Err(e) = self.client.delete(&key).await {
                tracing::debug!(key = %key, error = %e, "cannot remove an object of a failed publish");
            }
        }
        result
    }

    async fn put_file(&self, key: &ObjectPath, path: &Path) -> Result<()> {
        use std::io::Read;
        let mut file = std::fs::File::open(path).at(path)?;
        let size = file.metadata().at(path)?.len();
        if size <= PART_BYTES as u64 {
            let mut buf = Vec::with_capacity(size as usize);
            file.read_to_end(&mut buf).at(path)?;
            self.client
                .put(key, PutPayload::from(buf))
                .await
                .map_err(|e| self.unavailable(e))?;
            return Ok(());
        }
        let upload = self
            .client
            .put_multipart(key)
            .await
            .map_err(|e| self.unavailable(e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    writer.abort().await.ok();
                    return Err(e).at(path);
                }
            };
            if let Err(e) = writer.wait_for_capacity(4).await {
                return Err(self.unavailable(e));
            }
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(|e| self.unavailable(e))?;
        Ok(())
    }

    pub(crate) fn delete_version(&self, name: &str, version: u64) -> Result<()> {
        validate_model_name(name)?;
        self.io.block_on(async {
            if !self.entries(name).await?.live().contains(&version) {
                return Err(StoreError::NotFound {
                    name: name.to_owned(),
                    version: Some(version),
                });
            }
            let tomb = self.key(&[name, &format!("{version}{TOMBSTONE_SUFFIX}")]);
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            match self.client.put_opts(&tomb, PutPayload::default(), opts).await {
                Ok(_) => {}
                Err(object_store::Error::AlreadyExists { .. }) => {
                    return Err(StoreError::NotFound {
                        name: name.to_owned(),
                        version: Some(version),
                    });
                }
                Err(e) => return Err(self.unavailable(e)),
            }
            // The tombstone hides the version; the manifest goes first, then the files.
            let dir = self.key(&[name, &version.to_string()]);
            let manifest = dir.child(MANIFEST_FILE);
            let mut keys: Vec<ObjectPath> = match self
                .client
                .list(Some(&dir))
                .map_ok(|m| m.location)
                .try_collect()
                .await
            {
                Ok(keys) => keys,
                Err(e) => {
                    tracing::warn!(error = %self.unavailable(e), "cannot list the objects of a deleted version");
                    Vec::new()
                }
            };
            keys.sort_by_key(|k| *k != manifest);
            for key in keys {
                match self.client.delete(&key).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    // Deleted already (the tombstone is the commit): what stays is unlisted.
                    Err(e) => {
                        tracing::warn!(key = %key, error = %self.unavailable(e), "cannot remove an object of a deleted version");
                        break;
                    }
                }
            }
            Ok(())
        })?;
        self.cache.remove(&(name.to_owned(), version), false);
        tracing::info!(model = name, version, store = %self.url, "deleted");
        Ok(())
    }

    /// Bytes the cache holds now.
    pub(crate) fn cache_used(&self) -> u64 {
        self.cache.used()
    }

    /// Versions in the cache.
    pub(crate) fn cached(&self) -> Vec<(String, u64)> {
        self.cache.cached()
    }
}
