//! Multi-model endpoints (SageMaker's `PrimaryContainer.Mode = MultiModel`): one variant
//! serves every model archive under its Model's `ModelDataUrl` prefix, picked per request by
//! `TargetModel` (`X-Amzn-SageMaker-Target-Model`).
//!
//! A target loads on its first request: the archive is fetched (S3) or read (a folder under
//! the import roots), unpacked into the store under a name derived from the Model and the
//! target (`mm-<digest>`, so a later reload after eviction skips the fetch, as SageMaker's
//! instance disk cache does), loaded and warmed on a blocking thread. Concurrent first
//! requests for one target share that load (one `tokio::sync::OnceCell` per target), so it
//! runs once. Loaded targets stay in one server-wide cache, evicted least-recently-used when
//! their sizes add up to more than `--multi-model-memory`. A target's size is the unpacked
//! size of its files (the sum of the store manifest's file sizes): what the model reads at
//! load, not the process's resident set, which cannot be measured per model while other
//! requests run. Evicting drops the cache's reference; requests in flight keep the model
//! until they finish.
//!
//! Concurrency: the cache's map sits behind one mutex, held for map operations only (never
//! across an await or a load); recency is an atomic tick per entry.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pier_model_store::{Cancel, ImportPolicy, VersionSelector};
use pier_runtimes::{LoadOptions, Model, Signature, Tensor};
use sha2::Digest;
use tokio::sync::OnceCell;

use super::models::{LoadError, LoadedModel, store_load_error};
use crate::error::ServeError;
use crate::metrics::{self as pier_metrics, ModelLabels};
use crate::records::ArtifactRef;
use crate::state::DataPlane;

/// Longest `TargetModel` SageMaker accepts.
pub const MAX_TARGET_LEN: usize = 1024;

/// Where a multi-model Model's archives live: its `ModelDataUrl` prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MultiModelSource {
    /// A folder under the import roots (resolved, canonical).
    Local(PathBuf),
    /// `s3://bucket/prefix/` (always ending in `/`).
    S3(String),
    /// `pier://`: `TargetModel` names a store artifact, `NAME` or `NAME/VERSION`.
    Store,
}

impl MultiModelSource {
    /// Parses and checks a multi-model `ModelDataUrl`: a local folder must exist under the
    /// import roots (`policy`).
    pub fn parse(url: &str, policy: &ImportPolicy) -> Result<Self, String> {
        if url == "pier://" || url == "pier:///" {
            return Ok(Self::Store);
        }
        if url.starts_with("pier://") {
            return Err(format!(
                "ModelDataUrl {url:?}: a multi-model Model's store prefix is pier:// (TargetModel then names NAME or NAME/VERSION)"
            ));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, _) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("ModelDataUrl {url:?} names no bucket"));
            }
            let mut prefix = url.to_owned();
            if !prefix.ends_with('/') {
                prefix.push('/');
            }
            return Ok(Self::S3(prefix));
        }
        if url.contains("://") && !url.starts_with("file://") {
            return Err(format!(
                "ModelDataUrl {url:?} is not supported for a multi-model Model: use s3://BUCKET/PREFIX/, file:///FOLDER, a local folder or pier://"
            ));
        }
        let path = Path::new(url.strip_prefix("file://").unwrap_or(url));
        let resolved = policy
            .check(path)
            .map_err(|e| format!("ModelDataUrl {url:?}: {e}"))?;
        if !resolved.is_dir() {
            return Err(format!(
                "ModelDataUrl {url:?} is not a folder: a multi-model Model's ModelDataUrl is the prefix that holds its model archives"
            ));
        }
        Ok(Self::Local(resolved))
    }
}

/// One multi-model Model as a variant serves it.
#[derive(Debug)]
pub struct MultiModelSet {
    /// The control-plane Model's name (the metrics' `model` label).
    pub model_name: String,
    /// Identifies this Model among same-named ones over time (name and creation time), so
    /// a re-created Model never sees another's cache entries.
    pub key: String,
    /// The runtime of every archive (`PrimaryContainer.Image`).
    pub image: String,
    /// Where the archives are.
    pub source: MultiModelSource,
    /// Load options from the Model's environment.
    pub options: LoadOptions,
    /// `pier_multi_model_cache_hits_total` for this Model, registered once.
    pub hits: metrics::Counter,
}

/// A loaded target and its size.
#[derive(Debug)]
struct Resident {
    model: Arc<LoadedModel>,
    bytes: u64,
}

/// One target's cache slot: loaded once (single-flight), then shared.
#[derive(Debug, Default)]
struct Slot {
    cell: OnceCell<Resident>,
    last_used: AtomicU64,
}

/// The server-wide cache of loaded targets, least-recently-used out under a byte budget.
#[derive(Debug)]
pub struct MultiModelCache {
    budget: u64,
    /// Slots by Model key, then target (looked up by `&str`: a hit allocates nothing).
    slots: Mutex<HashMap<String, HashMap<String, Arc<Slot>>>>,
    tick: AtomicU64,
}

/// What the cache holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheUsage {
    /// Targets loaded.
    pub models: usize,
    /// Their sizes added up.
    pub bytes: u64,
}

impl MultiModelCache {
    /// An empty cache holding at most `budget` bytes of models.
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            slots: Mutex::default(),
            tick: AtomicU64::new(0),
        }
    }

    /// Targets loaded now and their bytes.
    pub fn usage(&self) -> CacheUsage {
        let slots = self.slots.lock().expect("multi-model cache lock");
        slots
            .values()
            .flat_map(HashMap::values)
            .filter_map(|s| s.cell.get())
            .fold(CacheUsage::default(), |u, r| CacheUsage {
                models: u.models + 1,
                bytes: u.bytes + r.bytes,
            })
    }

    fn slot(&self, set: &str, target: &str) -> Arc<Slot> {
        let tick = self.tick.fetch_add(1, Ordering::Relaxed);
        let mut slots = self.slots.lock().expect("multi-model cache lock");
        let slot = match slots.get(set).and_then(|m| m.get(target)) {
            Some(slot) => slot.clone(),
            None => slots
                .entry(set.to_owned())
                .or_default()
                .entry(target.to_owned())
                .or_default()
                .clone(),
        };
        drop(slots);
        slot.last_used.store(tick, Ordering::Relaxed);
        slot
    }

    /// Forgets `slot` when its load failed (so the next request tries again).
    fn forget_failed(&self, set: &str, target: &str, slot: &Arc<Slot>) {
        let mut slots = self.slots.lock().expect("multi-model cache lock");
        if let Some(m) = slots.get_mut(set)
            && m.get(target)
                .is_some_and(|s| Arc::ptr_eq(s, slot) && s.cell.get().is_none())
        {
            m.remove(target);
        }
    }

    /// Evicts least-recently-used targets (never `keep`) until the loaded ones fit the
    /// budget; returns the Model names of what it evicted.
    fn evict(&self, keep: &Arc<Slot>) -> Vec<String> {
        let mut slots = self.slots.lock().expect("multi-model cache lock");
        let mut total: u64 = slots
            .values()
            .flat_map(HashMap::values)
            .filter_map(|s| s.cell.get())
            .map(|r| r.bytes)
            .sum();
        let mut evicted = Vec::new();
        while total > self.budget {
            let victim = slots
                .iter()
                .flat_map(|(set, m)| m.iter().map(move |(t, s)| (set, t, s)))
                .filter(|(_, _, s)| !Arc::ptr_eq(s, keep) && s.cell.get().is_some())
                .min_by_key(|(_, _, s)| s.last_used.load(Ordering::Relaxed))
                .map(|(set, t, _)| (set.clone(), t.clone()));
            let Some((set, target)) = victim else { break };
            let Some(m) = slots.get_mut(&set) else { break };
            if let Some(slot) = m.remove(&target)
                && let Some(r) = slot.cell.get()
            {
                total -= r.bytes;
                evicted.push(r.model.labels.model.clone());
            }
            if m.is_empty() {
                slots.remove(&set);
            }
        }
        evicted
    }
}

/// Checks a `TargetModel` before it goes near a path or URL: relative, no `.`/`..`
/// segments, no backslashes, no percent-encoded dots or separators, printable, at most
/// [`MAX_TARGET_LEN`] characters.
pub fn check_target(target: &str) -> Result<(), ServeError> {
    let refuse = |why: &str| {
        Err(ServeError::Validation(format!(
            "TargetModel {target:?} is not valid: {why}"
        )))
    };
    if target.is_empty() {
        return refuse("it is empty");
    }
    if target.len() > MAX_TARGET_LEN {
        return refuse("it is longer than 1024 characters");
    }
    if target.chars().any(|c| c.is_control()) {
        return refuse("it holds control characters");
    }
    if target.starts_with('/') || target.contains('\\') {
        return refuse("it must be a path relative to the Model's ModelDataUrl");
    }
    let lower = target.to_ascii_lowercase();
    if ["%2e", "%2f", "%5c", "%00"]
        .iter()
        .any(|e| lower.contains(e))
    {
        return refuse("percent-encoded dots, separators or NULs are not allowed");
    }
    if target
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return refuse("it must not hold empty, '.' or '..' segments");
    }
    Ok(())
}

/// The placeholder a multi-model variant carries as its own model: no signature, and a
/// refusal if anything ever runs it (routing always picks a target first).
#[derive(Debug, Default)]
pub struct MultiModelContainer {
    signature: Signature,
}

impl Model for MultiModelContainer {
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn predict(&self, _inputs: Vec<Tensor>) -> pier_runtimes::Result<Vec<Tensor>> {
        Err(pier_runtimes::RuntimeError::InvalidInput(
            "a multi-model endpoint needs TargetModel".into(),
        ))
    }
    fn backend(&self) -> &'static str {
        "multi-model"
    }
}

fn not_found(target: &str, why: impl std::fmt::Display) -> ServeError {
    ServeError::Validation(format!(
        "Failed to download model data for TargetModel {target:?}: {why}. Please ensure that there is an object located at the URL."
    ))
}

impl DataPlane {
    /// The loaded `target` of `set`, served with `labels` (the variant's): from the cache,
    /// or loaded now (once, however many requests ask at the same time).
    pub async fn multi_model(
        &self,
        set: &Arc<MultiModelSet>,
        target: &str,
        labels: &ModelLabels,
    ) -> Result<Arc<LoadedModel>, ServeError> {
        check_target(target)?;
        let cache = &self.serving.multi;
        let slot = cache.slot(&set.key, target);
        if let Some(r) = slot.cell.get() {
            set.hits.increment(1);
            return Ok(r.model.with_labels(labels.clone()));
        }
        let loaded = slot
            .cell
            .get_or_try_init(|| self.load_target(set, target))
            .await;
        let resident = match loaded {
            Ok(r) => r,
            Err(e) => {
                cache.forget_failed(&set.key, target, &slot);
                return Err(e);
            }
        };
        let model = resident.model.with_labels(labels.clone());
        for evicted in cache.evict(&slot) {
            pier_metrics::record_multi_model_eviction(&evicted);
        }
        let usage = cache.usage();
        pier_metrics::set_multi_model_usage(usage.models, usage.bytes);
        Ok(model)
    }

    /// Fetches, imports (unless the store has it from an earlier load), loads and warms one
    /// target.
    async fn load_target(
        &self,
        set: &Arc<MultiModelSet>,
        target: &str,
    ) -> Result<Resident, ServeError> {
        let started = Instant::now();
        let result = self.load_target_inner(set, target).await;
        pier_metrics::record_multi_model_load(&set.model_name, started.elapsed(), result.is_ok());
        if let Ok(r) = &result {
            tracing::info!(model = %set.model_name, target, bytes = r.bytes, seconds = started.elapsed().as_secs_f64(), "multi-model target loaded");
        }
        result
    }

    async fn load_target_inner(
        &self,
        set: &Arc<MultiModelSet>,
        target: &str,
    ) -> Result<Resident, ServeError> {
        let artifact = match &set.source {
            MultiModelSource::Store => store_target(target)?,
            _ => {
                let digest = sha2::Sha256::digest(format!("{}\n{}", set.key, target));
                ArtifactRef {
                    name: format!("mm-{}", &hex::encode(digest)[..40]),
                    version: 0,
                }
            }
        };
        let store = self.store.clone();
        let name = artifact.name.clone();
        let versions = tokio::task::spawn_blocking(move || store.list_versions(&name))
            .await
            .map_err(|e| ServeError::Internal(e.to_string()))?;
        let versions = match versions {
            Ok(v) => v,
            Err(e) if e.is_unavailable() => {
                return Err(ServeError::Load(store_load_error(&artifact, &e)));
            }
            Err(_) => Vec::new(),
        };
        let artifact = match (&set.source, versions.last().copied()) {
            (MultiModelSource::Store, _) if versions.contains(&artifact.version) => artifact,
            (MultiModelSource::Store, Some(latest)) if artifact.version == 0 => ArtifactRef {
                version: latest,
                ..artifact
            },
            (MultiModelSource::Store, _) => {
                return Err(not_found(target, "the model store holds no such version"));
            }
            (_, Some(version)) => ArtifactRef {
                version,
                ..artifact
            },
            (source, None) => {
                self.import_target(set, source, target, &artifact.name)
                    .await?
            }
        };
        let (data, a, options) = (self.clone(), artifact.clone(), set.options.clone());
        let image = set.image.clone();
        let (model, bytes) = tokio::task::spawn_blocking(move || {
            let opened = data
                .store
                .open_version(&a.name, VersionSelector::Exact(a.version))
                .map_err(|e| ServeError::Load(store_load_error(&a, &e)))?;
            let manifest = opened.manifest();
            if manifest.runtime != image {
                return Err(ServeError::Validation(format!(
                    "TargetModel is a {:?} model but the Model's PrimaryContainer.Image is {image:?}",
                    manifest.runtime
                )));
            }
            let bytes: u64 = manifest.files.iter().map(|f| f.size).sum();
            if bytes > data.serving.multi.budget {
                return Err(ServeError::Model(format!(
                    "the model needs {bytes} bytes, more than --multi-model-memory ({} bytes)",
                    data.serving.multi.budget
                )));
            }
            let model = super::models::load(&data.store, &a, &options)?;
            Ok((model, bytes))
        })
        .await
        .map_err(|e| {
            ServeError::Load(LoadError::Aborted {
                artifact: artifact.clone(),
                reason: e.to_string(),
            })
        })??;
        let labels = ModelLabels {
            model: set.model_name.clone(),
            version: artifact.version.to_string(),
            ..ModelLabels::default()
        };
        Ok(Resident {
            model: Arc::new(LoadedModel::new(artifact, model, labels)),
            bytes,
        })
    }

    /// Imports `target` from a local or S3 prefix into the store as `store_name`.
    async fn import_target(
        &self,
        set: &MultiModelSet,
        source: &MultiModelSource,
        target: &str,
        store_name: &str,
    ) -> Result<ArtifactRef, ServeError> {
        let config = &self.config;
        let (scratch, local, url) = match source {
            MultiModelSource::Local(dir) => {
                let path = dir.join(target);
                let resolved = std::fs::canonicalize(&path)
                    .map_err(|_| not_found(target, "it is not under the Model's ModelDataUrl"))?;
                if !resolved.starts_with(dir) || !resolved.is_file() {
                    return Err(not_found(
                        target,
                        "it is not a file under the Model's ModelDataUrl",
                    ));
                }
                let policy = config
                    .import
                    .policy(config.admin_addr)
                    .map_err(|e| ServeError::Validation(e.to_string()))?;
                let limits = config.import.limits();
                let scan = resolved.clone();
                let source = tokio::task::spawn_blocking(move || {
                    pier_model_store::LocalSource::scan(&scan, &policy, &limits)
                })
                .await
                .map_err(|e| ServeError::Internal(e.to_string()))?
                .map_err(|e| not_found(target, e))?;
                (None, source, format!("file://{}", resolved.display()))
            }
            MultiModelSource::S3(prefix) => {
                let url = format!("{prefix}{target}");
                let scratch = tempfile::Builder::new()
                    .prefix(".multi-model-")
                    .tempdir_in(&config.data_dir)
                    .map_err(|e| ServeError::Internal(e.to_string()))?;
                let source = pier_jobs::output::fetch_model_data(
                    &url,
                    scratch.path(),
                    &ImportPolicy::anywhere(),
                    &config.import.limits(),
                    &config.jobs.s3,
                )
                .await
                .map_err(|e| not_found(target, e))?;
                (Some(scratch), source, url)
            }
            MultiModelSource::Store => unreachable!("store targets are not imported"),
        };
        let (data, image, name) = (self.clone(), set.image.clone(), store_name.to_owned());
        let imported = tokio::task::spawn_blocking(move || {
            let _scratch = scratch;
            let job = crate::control::import::Import {
                store: &data.store,
                config: &data.config.import,
                admin_addr: data.config.admin_addr,
                cancel: Cancel::new(),
                model_name: &name,
                image: &image,
            };
            crate::control::import::import_source(&job, &url, &local, &url)
        })
        .await
        .map_err(|e| ServeError::Internal(e.to_string()))?;
        imported
            .map(|(artifact, _runtime)| artifact)
            .map_err(|e| ServeError::Model(format!("TargetModel {target:?}: {}", e.message)))
    }
}

/// A `pier://` multi-model target: `NAME` (latest version) or `NAME/VERSION`.
fn store_target(target: &str) -> Result<ArtifactRef, ServeError> {
    let (name, version) = match target.split_once('/') {
        Some((n, v)) => (
            n,
            v.parse::<u64>().map_err(|_| {
                ServeError::Validation(format!(
                    "TargetModel {target:?}: the version after '/' must be a number"
                ))
            })?,
        ),
        None => (target, 0),
    };
    pier_model_store::validate_model_name(name)
        .map_err(|e| ServeError::Validation(format!("TargetModel {target:?}: {e}")))?;
    Ok(ArtifactRef {
        name: name.to_owned(),
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_that_escape_are_refused() {
        for bad in [
            "",
            "../x.tar.gz",
            "a/../../x.tar.gz",
            "/etc/passwd",
            "a//b.tar.gz",
            "./a.tar.gz",
            "%2e%2e/x.tar.gz",
            "..%2Fx.tar.gz",
            "a\\..\\x",
            "a\u{0}b",
            &"x".repeat(1025),
        ] {
            assert!(
                matches!(check_target(bad), Err(ServeError::Validation(_))),
                "{bad:?} passed"
            );
        }
        for ok in ["a.tar.gz", "dir/b.tar.gz", "model-1..2.tar.gz", "x y.tgz"] {
            check_target(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn sources_parse() {
        let policy = ImportPolicy::anywhere();
        assert_eq!(
            MultiModelSource::parse("s3://b/models", &policy).unwrap(),
            MultiModelSource::S3("s3://b/models/".into())
        );
        assert_eq!(
            MultiModelSource::parse("pier://", &policy).unwrap(),
            MultiModelSource::Store
        );
        assert!(MultiModelSource::parse("s3:///x", &policy).is_err());
        assert!(MultiModelSource::parse("https://x/y", &policy).is_err());
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        assert!(matches!(
            MultiModelSource::parse(&url, &policy).unwrap(),
            MultiModelSource::Local(_)
        ));
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let e = MultiModelSource::parse(file.to_str().unwrap(), &policy).unwrap_err();
        assert!(e.contains("not a folder"), "{e}");
        let refused = ImportPolicy::under_roots(&[dir.path().join("sub")]);
        if let Ok(policy) = refused {
            assert!(MultiModelSource::parse(&url, &policy).is_err());
        }
    }

    /// A cache slot loaded with a placeholder model of `bytes`.
    fn fill(cache: &MultiModelCache, target: &str, bytes: u64) -> Arc<Slot> {
        let slot = cache.slot("m@1", target);
        let model = LoadedModel::new(
            ArtifactRef {
                name: target.into(),
                version: 1,
            },
            Arc::new(MultiModelContainer::default()),
            ModelLabels {
                model: "m".into(),
                ..ModelLabels::default()
            },
        );
        slot.cell
            .set(Resident {
                model: Arc::new(model),
                bytes,
            })
            .unwrap();
        slot
    }

    fn loaded(cache: &MultiModelCache) -> Vec<String> {
        let slots = cache.slots.lock().unwrap();
        let mut names: Vec<String> = slots
            .values()
            .flat_map(HashMap::values)
            .filter_map(|s| Some(s.cell.get()?.model.artifact.name.clone()))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_least_recently_used_go_first_and_the_new_one_stays() {
        let cache = MultiModelCache::new(30);
        fill(&cache, "a", 10);
        fill(&cache, "b", 10);
        fill(&cache, "c", 10);
        assert!(
            cache.evict(&cache.slot("m@1", "c")).is_empty(),
            "30 bytes fit"
        );
        cache.slot("m@1", "a"); // a is now more recent than b
        let d = fill(&cache, "d", 10);
        assert_eq!(cache.evict(&d), ["m"]);
        assert_eq!(loaded(&cache), ["a", "c", "d"]);
        assert_eq!(
            cache.usage(),
            CacheUsage {
                models: 3,
                bytes: 30
            }
        );
        // A load larger than the rest together evicts them all but never itself.
        let big = fill(&cache, "big", 25);
        assert_eq!(cache.evict(&big).len(), 3);
        assert_eq!(loaded(&cache), ["big"]);
        // A slot whose load failed is forgotten; a loaded one is not.
        let failed = cache.slot("m@1", "bad");
        cache.forget_failed("m@1", "bad", &failed);
        cache.forget_failed("m@1", "big", &big);
        let slots = cache.slots.lock().unwrap();
        assert!(!slots["m@1"].contains_key("bad"));
        assert!(slots["m@1"].contains_key("big"));
    }

    #[test]
    fn store_targets() {
        assert_eq!(
            store_target("abc/3").unwrap(),
            ArtifactRef {
                name: "abc".into(),
                version: 3
            }
        );
        assert!(store_target("abc/x").is_err());
        assert!(store_target("a_b").is_err());
    }
}
