//! A training job's outputs as SageMaker writes them, and CreateModel's `ModelDataUrl` read
//! back.
//!
//! - [`write_model_tarball`]`(output_path, job, files, &s3)` writes
//!   `<S3OutputPath>/<job>/output/model.tar.gz` holding `files` under their given names
//!   (`xgboost-model` for XGBoost) and returns its URI (`S3ModelArtifacts`). The tarball is
//!   built in a temporary file first; to S3 it goes in one PUT, or as a multipart upload past
//!   [`MULTIPART_THRESHOLD`] (aborted on failure), and S3 shows an object only once its upload
//!   completes; to a local folder it is written under a temporary name, synced, and renamed.
//!   Either way no reader sees a half-written `model.tar.gz`.
//! - [`fetch_model_data`]`(url, scratch, policy, limits, &s3)` makes a `ModelDataUrl`
//!   (`s3://…/model.tar.gz`, or a local `.tar.gz`, file or folder) a
//!   [`pier_model_store::LocalSource`]: an S3 archive is downloaded into `scratch` (bounded by
//!   `limits.max_bytes`), a local path is scanned under `policy`.
//!   [`stage_model_data`] then unpacks it into a staging version of the store with the store's
//!   own archive rules (no `..`, no absolute paths, no links, every decompressed byte and entry
//!   counted), ready for the caller to detect the runtime and publish.
//!
//! All I/O on files runs on blocking threads; S3 requests on the caller's tokio runtime.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use pier_model_store::{
    Budget, ImportLimits, ImportPolicy, LocalSource, ModelStore, Staging, StoreError,
};
use thiserror::Error;

use crate::channels::{Location, S3Config};

/// Tarballs larger than this go to S3 as a multipart upload, in parts of this size.
pub const MULTIPART_THRESHOLD: usize = 16 << 20;

/// The archive's name under `<S3OutputPath>/<job>/output/`.
pub const MODEL_TARBALL: &str = "model.tar.gz";

/// Why an output could not be written or a model archive fetched.
#[derive(Debug, Error)]
pub enum OutputError {
    /// The path or URI is not usable.
    #[error("{what} '{uri}' {reason}")]
    BadUri {
        /// `S3OutputPath` or `ModelDataUrl`.
        what: &'static str,
        /// As given.
        uri: String,
        /// What is wrong.
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: String,
        /// The OS's error.
        reason: String,
    },
    /// The bucket does not exist.
    #[error("the bucket '{bucket}' does not exist ({uri})")]
    NoSuchBucket {
        /// The bucket.
        bucket: String,
        /// The URI naming it.
        uri: String,
    },
    /// The object does not exist.
    #[error("{uri} does not exist")]
    NotFound {
        /// The object's URI.
        uri: String,
    },
    /// An S3 request failed.
    #[error("{uri}: {reason}")]
    S3 {
        /// The object's URI.
        uri: String,
        /// The store's error.
        reason: String,
    },
    /// The archive is larger than the import limit.
    #[error("{uri} is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The object's URI.
        uri: String,
        /// The limit.
        limit: u64,
    },
    /// The model store refused the archive (unsafe entry, too large, …).
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> OutputError + '_ {
    move |e| OutputError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

pub(crate) fn s3_err(bucket: &str, uri: &str, e: object_store::Error) -> OutputError {
    let text = crate::channels::location_error_text(&e);
    if text.contains("NoSuchBucket") {
        return OutputError::NoSuchBucket {
            bucket: bucket.to_owned(),
            uri: uri.to_owned(),
        };
    }
    match e {
        object_store::Error::NotFound { .. } => OutputError::NotFound {
            uri: uri.to_owned(),
        },
        _ => OutputError::S3 {
            uri: uri.to_owned(),
            reason: text,
        },
    }
}

/// The archive of a script's `output/data/` under `<S3OutputPath>/<job>/output/`.
pub const OUTPUT_TARBALL: &str = "output.tar.gz";

/// Writes `<output_path>/<job>/output/model.tar.gz` holding each `(name, path)` of `files` as
/// `name`; returns its URI. See the module docs.
pub async fn write_model_tarball(
    output_path: &str,
    job: &str,
    files: &[(String, PathBuf)],
    s3: &S3Config,
) -> Result<String, OutputError> {
    write_tarball(output_path, job, MODEL_TARBALL, files, s3).await
}

/// Writes `<output_path>/<job>/output/<tarball>` (`model.tar.gz`, or `output.tar.gz` for a
/// script's `output/data/`) as [`write_model_tarball`] does.
pub async fn write_tarball(
    output_path: &str,
    job: &str,
    tarball: &str,
    files: &[(String, PathBuf)],
    s3: &S3Config,
) -> Result<String, OutputError> {
    let bad = |reason: String| OutputError::BadUri {
        what: "S3OutputPath",
        uri: output_path.to_owned(),
        reason,
    };
    let base = Location::parse(output_path).map_err(bad)?;
    if job.is_empty() || job.contains('/') || job.starts_with('.') {
        return Err(bad(format!("cannot hold the job name '{job}'")));
    }
    for (name, _) in files {
        // A plain name, or a relative path of plain names (a script's model/ sub-folders).
        let plain = !name.is_empty()
            && name
                .split('/')
                .all(|part| !part.is_empty() && part != "." && part != "..");
        if !plain || name.starts_with('.') {
            return Err(OutputError::Io {
                path: name.clone(),
                reason: "not a relative file name for model.tar.gz".into(),
            });
        }
    }
    let target = base.join(&format!("{job}/output/{tarball}"));
    let files = files.to_vec();
    match target {
        Location::Local(dest) => {
            let uri = if output_path.starts_with("file://") {
                format!("file://{}", dest.display())
            } else {
                dest.display().to_string()
            };
            tokio::task::spawn_blocking(move || write_local(&dest, &files))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
            Ok(uri)
        }
        Location::S3 { bucket, key } => {
            let uri = format!("s3://{bucket}/{key}");
            let tmp = tokio::task::spawn_blocking(move || {
                let mut tmp =
                    tempfile::NamedTempFile::new().map_err(io_err(Path::new("(temp)")))?;
                build_tarball(tmp.as_file_mut(), &files)?;
                Ok::<_, OutputError>(tmp)
            })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
            let store = s3.client(&bucket).map_err(|reason| OutputError::S3 {
                uri: uri.clone(),
                reason,
            })?;
            upload(store.as_ref(), &ObjectPath::from(key.as_str()), tmp.path())
                .await
                .map_err(|e| match e {
                    Upload::Io(e) => io_err(tmp.path())(e),
                    Upload::Store(e) => s3_err(&bucket, &uri, e),
                })?;
            Ok(uri)
        }
    }
}

fn write_local(dest: &Path, files: &[(String, PathBuf)]) -> Result<(), OutputError> {
    let dir = dest.parent().expect("a path under <job>/output");
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".model.tar.gz.")
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    build_tarball(tmp.as_file_mut(), files)?;
    tmp.persist(dest).map_err(|e| io_err(dest)(e.error))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes a gzip'd tar of `files` into `out` and syncs it.
fn build_tarball(out: &mut std::fs::File, files: &[(String, PathBuf)]) -> Result<(), OutputError> {
    let gz = flate2::write::GzEncoder::new(
        std::io::BufWriter::new(&mut *out),
        flate2::Compression::default(),
    );
    let mut tar = tar::Builder::new(gz);
    for (name, path) in files {
        let mut file = std::fs::File::open(path).map_err(io_err(path))?;
        let meta = file.metadata().map_err(io_err(path))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(meta.len());
        header.set_mode(0o644);
        header.set_mtime(
            meta.modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs()),
        );
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, (&mut file).take(meta.len()))
            .map_err(io_err(path))?;
    }
    let gz = tar.into_inner().map_err(io_err(Path::new(MODEL_TARBALL)))?;
    let mut buffered = gz.finish().map_err(io_err(Path::new(MODEL_TARBALL)))?;
    buffered.flush().map_err(io_err(Path::new(MODEL_TARBALL)))?;
    drop(buffered);
    out.sync_all().map_err(io_err(Path::new(MODEL_TARBALL)))
}

pub(crate) enum Upload {
    Io(std::io::Error),
    Store(object_store::Error),
}

/// Uploads the file at `src` to `path`: one PUT, or a multipart upload for large files.
pub(crate) async fn upload(
    store: &dyn ObjectStore,
    path: &ObjectPath,
    src: &Path,
) -> Result<(), Upload> {
    let mut file = std::fs::File::open(src).map_err(Upload::Io)?;
    let size = file.metadata().map_err(Upload::Io)?.len();
    if size <= MULTIPART_THRESHOLD as u64 {
        let (_, bytes) = read_part(file).await.map_err(Upload::Io)?;
        store
            .put(path, PutPayload::from(bytes))
            .await
            .map_err(Upload::Store)?;
        return Ok(());
    }
    let mut up = store.put_multipart(path).await.map_err(Upload::Store)?;
    let outcome = async {
        loop {
            let (rest, part) = read_part(file).await.map_err(Upload::Io)?;
            file = rest;
            if part.is_empty() {
                break;
            }
            up.put_part(PutPayload::from(part))
                .await
                .map_err(Upload::Store)?;
        }
        up.complete().await.map_err(Upload::Store)
    }
    .await;
    if outcome.is_err() {
        let _ = up.abort().await;
    }
    outcome.map(|_| ())
}

/// Reads the next [`MULTIPART_THRESHOLD`] bytes of `file` on a blocking thread.
async fn read_part(mut file: std::fs::File) -> std::io::Result<(std::fs::File, Vec<u8>)> {
    tokio::task::spawn_blocking(move || {
        let mut part = Vec::new();
        (&mut file)
            .take(MULTIPART_THRESHOLD as u64)
            .read_to_end(&mut part)?;
        Ok((file, part))
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Appends `chunks` to `file` on a blocking thread.
async fn write_chunks(
    mut file: std::fs::File,
    chunks: Vec<bytes::Bytes>,
) -> std::io::Result<std::fs::File> {
    tokio::task::spawn_blocking(move || {
        for c in &chunks {
            file.write_all(c)?;
        }
        Ok(file)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Resolves a `ModelDataUrl` to a local source the store can import; see the module docs.
pub async fn fetch_model_data(
    url: &str,
    scratch: &Path,
    policy: &ImportPolicy,
    limits: &ImportLimits,
    s3: &S3Config,
) -> Result<LocalSource, OutputError> {
    let bad = |reason: String| OutputError::BadUri {
        what: "ModelDataUrl",
        uri: url.to_owned(),
        reason,
    };
    match Location::parse(url).map_err(bad)? {
        Location::Local(path) => {
            let (policy, limits) = (policy.clone(), *limits);
            Ok(
                tokio::task::spawn_blocking(move || LocalSource::scan(&path, &policy, &limits))
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?,
            )
        }
        Location::S3 { bucket, key } => {
            let file_name = key.rsplit('/').next().unwrap_or("").to_owned();
            let lower = file_name.to_ascii_lowercase();
            let gzip = if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
                true
            } else if lower.ends_with(".tar") {
                false
            } else {
                return Err(bad(
                    "does not name a model archive (…/model.tar.gz, .tgz or .tar)".into(),
                ));
            };
            let store = s3.client(&bucket).map_err(|reason| OutputError::S3 {
                uri: url.to_owned(),
                reason,
            })?;
            let got = store
                .get(&ObjectPath::from(key.as_str()))
                .await
                .map_err(|e| s3_err(&bucket, url, e))?;
            let too_large = || OutputError::TooLarge {
                uri: url.to_owned(),
                limit: limits.max_bytes,
            };
            if got.meta.size > limits.max_bytes {
                return Err(too_large());
            }
            let dest = scratch.join(&file_name);
            let mut out = std::fs::File::create(&dest).map_err(io_err(&dest))?;
            let mut stream = got.into_stream();
            let (mut seen, mut pending, mut pending_bytes) = (0u64, Vec::new(), 0usize);
            loop {
                let chunk = futures::StreamExt::next(&mut stream).await;
                let end = chunk.is_none();
                if let Some(chunk) = chunk {
                    let chunk = chunk.map_err(|e| s3_err(&bucket, url, e))?;
                    seen += chunk.len() as u64;
                    if seen > limits.max_bytes {
                        return Err(too_large());
                    }
                    pending_bytes += chunk.len();
                    pending.push(chunk);
                }
                if end || pending_bytes >= 8 << 20 {
                    out = write_chunks(out, std::mem::take(&mut pending))
                        .await
                        .map_err(io_err(&dest))?;
                    pending_bytes = 0;
                }
                if end {
                    break;
                }
            }
            out.sync_all().map_err(io_err(&dest))?;
            Ok(LocalSource::Archive { path: dest, gzip })
        }
    }
}

/// Unpacks (or copies) `source` into a new staging version of `store`, under `budget`, with
/// the store's archive rules. The caller inspects the files, then publishes or drops it.
pub fn stage_model_data(
    store: &ModelStore,
    source: &LocalSource,
    budget: &mut Budget,
) -> Result<Staging, OutputError> {
    let mut staging = store.stage()?;
    staging.add_source(source, budget)?;
    Ok(staging)
}
