//! Running a transform job: list the input objects (S3 through `object_store`, local paths
//! under the runner's import roots), keep this shard's (object `k` of the key-ordered list goes
//! to shard `k mod N`), transform `InstanceCount` objects at once with
//! [`super::engine::transform_object`], and write each object's output whole: built in a
//! temporary file, then renamed into place (local) or sent in one PUT or a completed multipart
//! upload (S3), so a stopped, failed or killed job leaves no partial `.out`.
//!
//! [`execute`] is that work with no database ([`run_local`] is what `pier transform` runs);
//! `super::job` wraps it for the runner.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use pier_model_store::ImportPolicy;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::engine::{Counting, ObjectError, Predictor, Progress, transform_object};
use super::{Plan, TransformJob, check};
use crate::channels::location::{self, Object};
use crate::channels::read::{Download, Piece, Queued, download};
use crate::channels::{DataType, Location, S3Config};

/// The name the channel reader's messages give the input.
const INPUT: &str = "TransformInput";

/// Which of `count` disjoint shards of the input objects to transform: `index` (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardSpec {
    /// This shard, 0-based.
    pub index: usize,
    /// Shards in all.
    pub count: usize,
}

impl ShardSpec {
    /// The whole input.
    pub const ALL: ShardSpec = ShardSpec { index: 0, count: 1 };

    /// Parses `I/N`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("shard {s:?} is not I/N (0-based index / count)"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| format!("shard index {i:?} is not a number"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("shard count {n:?} is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!(
                "shard {index}/{count}: the index must be below the count"
            ));
        }
        Ok(Self { index, count })
    }
}

/// One input object and where its outputs go.
struct Item {
    object: Object,
    /// Its name relative to the input prefix (the output is `<S3OutputPath>/<rel>.out`).
    rel: String,
    size: u64,
}

/// The input objects of `plan`, in key (or manifest) order, this shard's only.
async fn list(
    plan: &Plan,
    s3: &S3Config,
    policy: &ImportPolicy,
    shard: ShardSpec,
) -> Result<Vec<Item>, String> {
    let (objects, base) = match plan.data_type {
        DataType::S3Prefix => {
            let objects = location::list_prefix(INPUT, &plan.input_uri, &plan.input, s3, policy)
                .await
                .map_err(|e| e.to_string())?;
            let base = match &plan.input {
                Location::S3 { bucket, key } => Location::S3 {
                    bucket: bucket.clone(),
                    key: key[..key.rfind('/').map_or(0, |i| i + 1)].to_owned(),
                },
                Location::Local(p) => {
                    let dir = if p.is_dir() {
                        p.clone()
                    } else {
                        p.parent().map(Path::to_path_buf).unwrap_or_default()
                    };
                    Location::Local(location::check_local(INPUT, policy, &dir).unwrap_or(dir))
                }
            };
            (objects, base)
        }
        DataType::ManifestFile => {
            let bytes = location::read_small(
                INPUT,
                &plan.input_uri,
                &plan.input,
                s3,
                policy,
                crate::channels::MAX_MANIFEST_BYTES,
            )
            .await
            .map_err(|e| e.to_string())?;
            let objects = location::parse_manifest(INPUT, &plan.input_uri, &bytes, s3)
                .map_err(|e| e.to_string())?;
            let prefix: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let prefix = prefix[0]["prefix"].as_str().unwrap_or_default();
            let base = Location::parse(prefix).map_err(|e| format!("manifest prefix {e}"))?;
            (objects, base)
        }
    };
    if objects.is_empty() {
        return Err(format!("no objects under {}", plan.input_uri));
    }
    let mut items = Vec::with_capacity(objects.len());
    for (k, object) in objects.into_iter().enumerate() {
        if k % shard.count != shard.index {
            continue;
        }
        let (rel, size) = match (&object, &base) {
            (Object::S3 { path, listed, .. }, Location::S3 { key, .. }) => (
                path.as_ref()
                    .strip_prefix(key.as_str())
                    .unwrap_or(path.as_ref())
                    .to_owned(),
                listed.as_ref().map_or(0, |l| l.0),
            ),
            (Object::Local(p), Location::Local(dir)) => {
                let resolved = location::check_local(INPUT, policy, p).unwrap_or(p.clone());
                let rel = resolved
                    .strip_prefix(dir)
                    .ok()
                    .filter(|r| !r.as_os_str().is_empty())
                    .map(Path::to_path_buf)
                    .or_else(|| resolved.file_name().map(PathBuf::from))
                    .unwrap_or_default();
                let size = std::fs::metadata(&resolved).map_or(0, |m| m.len());
                (rel.to_string_lossy().into_owned(), size)
            }
            (o, _) => (o.name().rsplit('/').next().unwrap_or("").to_owned(), 0),
        };
        let rel = rel.trim_start_matches('/').to_owned();
        if rel.is_empty() || rel.split('/').any(|p| p == "..") {
            return Err(format!("{}: cannot name its output", object.name()));
        }
        items.push(Item { object, rel, size });
    }
    Ok(items)
}

/// A file an output is built in, committed whole.
struct Sink {
    dest: Location,
    tmp: tempfile::NamedTempFile,
}

impl Sink {
    /// A temporary file next to a local destination (same file system, for the rename), or
    /// in the system's temporary folder for S3.
    fn create(dest: Location, policy: &ImportPolicy) -> Result<Self, String> {
        let tmp = match &dest {
            Location::Local(path) => {
                let dir = path.parent().ok_or("no parent folder")?;
                // Writing is confined to the import roots, as reading is: the nearest folder
                // that exists is checked before any is made, and the folder itself after.
                let refused = |e: pier_model_store::StoreError| {
                    format!("{} may not be written: {e}", dir.display())
                };
                let existing = dir.ancestors().find(|a| a.exists()).unwrap_or(dir);
                policy.check(existing).map_err(refused)?;
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                policy.check(dir).map_err(refused)?;
                let name = path
                    .file_name()
                    .map_or("out".into(), |n| n.to_string_lossy());
                let prefix = format!(".{name}.");
                let mut builder = tempfile::Builder::new();
                builder.prefix(&prefix);
                // Readable by others as files written by other means are (not a temporary
                // file's 0600); the process umask still applies.
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    builder.permissions(std::fs::Permissions::from_mode(0o644));
                }
                builder
                    .tempfile_in(dir)
                    .map_err(|e| format!("{}: {e}", dir.display()))?
            }
            Location::S3 { .. } => tempfile::NamedTempFile::new().map_err(|e| e.to_string())?,
        };
        Ok(Self { dest, tmp })
    }

    fn len(&self) -> u64 {
        self.tmp.as_file().metadata().map_or(0, |m| m.len())
    }

    /// Puts the file in place: a rename, or one upload.
    async fn commit(self, s3: &S3Config) -> Result<(), String> {
        match self.dest {
            Location::Local(dest) => tokio::task::spawn_blocking(move || {
                self.tmp.as_file().sync_all().map_err(|e| e.to_string())?;
                self.tmp
                    .persist(&dest)
                    .map_err(|e| format!("{}: {}", dest.display(), e.error))?;
                Ok(())
            })
            .await
            .map_err(|e| e.to_string())?,
            Location::S3 { bucket, key } => {
                let uri = format!("s3://{bucket}/{key}");
                let store = s3.client(&bucket).map_err(|e| format!("{uri}: {e}"))?;
                crate::output::upload(
                    store.as_ref(),
                    &ObjectPath::from(key.as_str()),
                    self.tmp.path(),
                )
                .await
                .map_err(|e| match e {
                    crate::output::Upload::Io(e) => format!("{uri}: {e}"),
                    crate::output::Upload::Store(e) => {
                        crate::output::s3_err(&bucket, &uri, e).to_string()
                    }
                })
            }
        }
    }
}

/// What a job (or shard) did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Objects transformed.
    pub objects: u64,
    /// Records transformed.
    pub records: u64,
    /// Records skipped into `.errors`.
    pub failed: u64,
}

/// Everything [`execute`] needs besides the plan.
pub struct Context {
    /// The model.
    pub predictor: Predictor,
    /// How to reach S3.
    pub s3: S3Config,
    /// Which local paths may be read and written.
    pub policy: ImportPolicy,
    /// Which shard.
    pub shard: ShardSpec,
    /// Counters for progress.
    pub progress: Arc<Progress>,
    /// Set to stop between requests.
    pub cancel: Arc<AtomicBool>,
}

/// Called once the objects are listed: (objects, bytes) of this shard.
pub type OnListed<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

/// Transforms this shard of `plan`'s input; the error is a `FailureReason` naming the object
/// and line.
pub async fn execute(
    plan: Arc<Plan>,
    ctx: Arc<Context>,
    on_listed: OnListed<'_>,
) -> Result<Summary, String> {
    let items = list(&plan, &ctx.s3, &ctx.policy, ctx.shard).await?;
    on_listed(items.len() as u64, items.iter().map(|i| i.size).sum());
    let slots = Arc::new(Semaphore::new(plan.instances.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let failed = Arc::new(AtomicBool::new(false));
    for (k, item) in items.into_iter().enumerate() {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        if failed.load(Ordering::SeqCst) || ctx.cancel.load(Ordering::Relaxed) {
            break;
        }
        let (plan, ctx, failed) = (plan.clone(), ctx.clone(), failed.clone());
        tasks.spawn(async move {
            let r = one_object(&plan, &ctx, item, permit).await;
            if r.is_err() {
                failed.store(true, Ordering::SeqCst);
            }
            (k, r)
        });
    }
    let mut summary = Summary::default();
    let mut first_error: Option<(usize, String)> = None;
    while let Some(done) = tasks.join_next().await {
        match done.map_err(|e| e.to_string())? {
            (_, Ok(stats)) => {
                summary.objects += 1;
                summary.records += stats.records;
                summary.failed += stats.failed;
            }
            (k, Err(e)) => {
                if first_error.as_ref().is_none_or(|(j, _)| k < *j) {
                    first_error = Some((k, e));
                }
            }
        }
    }
    match first_error {
        Some((_, e)) => Err(e),
        None if ctx.cancel.load(Ordering::Relaxed) => Err("cancelled".into()),
        None => Ok(summary),
    }
}

/// One object: stream it through the engine into temporary files, then commit `.out` (and
/// `.errors` when a record was skipped).
async fn one_object(
    plan: &Arc<Plan>,
    ctx: &Arc<Context>,
    item: Item,
    _slot: OwnedSemaphorePermit,
) -> Result<super::engine::ObjectStats, String> {
    let name = item.object.name();
    let out = Sink::create(plan.output.join(&format!("{}.out", item.rel)), &ctx.policy)
        .map_err(|e| format!("{name}: its output cannot be written: {e}"))?;
    let errors = Sink::create(
        plan.output.join(&format!("{}.errors", item.rel)),
        &ctx.policy,
    )
    .map_err(|e| format!("{name}: its output cannot be written: {e}"))?;
    let (tx, rx) = mpsc::channel::<Piece>(crate::channels::PREFETCH_CHUNKS);
    let producer = match &item.object {
        Object::S3 {
            uri,
            bucket,
            store,
            path,
            listed,
        } => Some(tokio::spawn(download(
            INPUT.to_owned(),
            vec![Download {
                store: store.clone(),
                path: path.clone(),
                uri: uri.clone(),
                bucket: bucket.clone(),
                listed: listed.clone(),
            }],
            tx,
        ))),
        Object::Local(_) => None,
    };
    let (plan2, ctx2) = (plan.clone(), ctx.clone());
    let object = item.object.clone();
    let worked = tokio::task::spawn_blocking(move || {
        let mut rx = rx;
        let (mut out, mut errors) = (out, errors);
        let raw: Box<dyn std::io::Read + Send + '_> = match &object {
            Object::Local(path) => {
                let resolved = location::check_local(INPUT, &ctx2.policy, path)
                    .map_err(|e| ObjectError::Read(e.to_string()))?;
                Box::new(
                    std::fs::File::open(resolved).map_err(|e| ObjectError::Read(e.to_string()))?,
                )
            }
            Object::S3 { .. } => Box::new(Queued {
                rx: &mut rx,
                current: Bytes::new(),
                done: false,
            }),
        };
        let counted = Counting::new(raw, &ctx2.progress.bytes);
        let mut reader: Box<dyn std::io::Read + Send + '_> = if plan2.gzip {
            Box::new(GzipErrors(flate2::read::MultiGzDecoder::new(counted)))
        } else {
            Box::new(counted)
        };
        let stats = {
            let mut w_out = std::io::BufWriter::with_capacity(1 << 20, out.tmp.as_file_mut());
            let mut w_err = std::io::BufWriter::new(errors.tmp.as_file_mut());
            let stats = transform_object(
                &ctx2.predictor,
                &plan2,
                &mut reader,
                &mut w_out,
                &mut w_err,
                &ctx2.progress,
                &ctx2.cancel,
            )?;
            use std::io::Write;
            w_out
                .flush()
                .and_then(|_| w_err.flush())
                .map_err(|e| ObjectError::Write(e.to_string()))?;
            stats
        };
        Ok::<_, ObjectError>((stats, out, errors))
    })
    .await
    .map_err(|e| format!("{name}: the transform stopped: {e}"))?;
    if let Some(p) = producer {
        p.abort();
    }
    let (stats, out, errors) = worked.map_err(|e| format!("{name}: {e}"))?;
    let skipped = errors.len() > 0;
    out.commit(&ctx.s3)
        .await
        .map_err(|e| format!("{name}: its output cannot be written: {e}"))?;
    if skipped {
        errors
            .commit(&ctx.s3)
            .await
            .map_err(|e| format!("{name}: its errors cannot be written: {e}"))?;
    }
    ctx.progress.objects.fetch_add(1, Ordering::Relaxed);
    Ok(stats)
}

/// Names gzip's errors as such.
struct GzipErrors<R>(R);

impl<R: std::io::Read> std::io::Read for GzipErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput
            | std::io::ErrorKind::InvalidData
            | std::io::ErrorKind::UnexpectedEof => {
                std::io::Error::new(e.kind(), format!("not valid gzip data: {e}"))
            }
            _ => e,
        })
    }
}

/// How [`run_local`] reaches its input and output and reports.
pub struct LocalOptions {
    /// How to reach S3.
    pub s3: S3Config,
    /// Which local paths may be read and written.
    pub policy: ImportPolicy,
    /// Which shard of the input.
    pub shard: ShardSpec,
    /// Counters for a progress bar.
    pub progress: Arc<Progress>,
    /// Set to stop between requests.
    pub cancel: Arc<AtomicBool>,
}

/// Runs a job with no database: checks it and transforms `options.shard` of its input with
/// `model` (the caller loads it). What `pier transform` calls.
pub async fn run_local(
    job: &TransformJob,
    model: Arc<dyn pier_runtimes::Model>,
    options: LocalOptions,
    on_listed: OnListed<'_>,
) -> Result<Summary, String> {
    let plan = Arc::new(check(job).map_err(|e| e.to_string())?);
    let predictor = Predictor::new(model).map_err(|e| format!("model {}: {e}", job.model_name))?;
    let ctx = Arc::new(Context {
        predictor,
        s3: options.s3,
        policy: options.policy,
        shard: options.shard,
        progress: options.progress,
        cancel: options.cancel,
    });
    execute(plan, ctx, on_listed).await
}
