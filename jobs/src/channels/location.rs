//! Where a channel's data is, and reaching it: `s3://bucket/prefix` through `object_store`'s
//! S3 client ([`S3Config`]: the standard AWS credential chain and `AWS_*` variables, a custom
//! endpoint from `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` with path-style addressing,
//! plain HTTP allowed for an `http://` endpoint), `file:///abs/path`, or a plain local path.
//!
//! Listing follows S3's semantics: an `S3Prefix` is a string prefix of keys (`s3://b/data/tr`
//! takes `data/train.csv` and `data/tr/x.csv`), objects are taken in key order, and empty
//! objects — S3 "folder markers" (`dir/`) among them — are left out. A local folder gives every
//! file under it (recursively, hidden names left out) in path order; a local file, itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;

pub use pier_model_store::S3Config;
pub(crate) use pier_model_store::error_chain;
use pier_model_store::{ImportPolicy, StoreError};

use super::error::ChannelError;

/// A parsed `S3Uri`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `s3://bucket/key-prefix`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key or key prefix (may be empty: the whole bucket).
        key: String,
    },
    /// A local file or folder (`file:///abs/path` or a plain path).
    Local(PathBuf),
}

impl Location {
    /// Parses `s3://bucket[/prefix]`, `file:///abs/path` or a local path; the error says what
    /// is wrong.
    pub fn parse(uri: &str) -> Result<Self, String> {
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            check_bucket(bucket)?;
            return Ok(Location::S3 {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            });
        }
        if let Some(path) = uri.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err("is not a file:// URI of an absolute path (file:///abs/path)".into());
            }
            return Ok(Location::Local(PathBuf::from(path)));
        }
        if uri.is_empty() {
            return Err("is empty".into());
        }
        if let Some((scheme, _)) = uri.split_once("://") {
            return Err(format!(
                "has the scheme '{scheme}'; use s3://bucket/prefix, file:///abs/path or a local path"
            ));
        }
        Ok(Location::Local(PathBuf::from(uri)))
    }

    /// `self` with `suffix` appended to the key or path (for `<S3OutputPath>/<job>/…`).
    pub fn join(&self, suffix: &str) -> Location {
        match self {
            Location::S3 { bucket, key } => {
                let key = if key.is_empty() || key.ends_with('/') {
                    format!("{key}{suffix}")
                } else {
                    format!("{key}/{suffix}")
                };
                Location::S3 {
                    bucket: bucket.clone(),
                    key,
                }
            }
            Location::Local(p) => Location::Local(p.join(suffix)),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
            Location::Local(p) => write!(f, "{}", p.display()),
        }
    }
}

fn check_bucket(bucket: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-'))
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "does not name a valid bucket ('{bucket}': 3 to 63 lower-case letters, digits, dots and hyphens)"
        ))
    }
}

/// One object of a channel, to read.
#[derive(Clone, Debug)]
pub(crate) enum Object {
    /// An S3 object.
    S3 {
        /// Its `s3://` URI (for messages).
        uri: String,
        /// Its bucket.
        bucket: String,
        /// The bucket's client.
        store: Arc<dyn ObjectStore>,
        /// Its key.
        path: ObjectPath,
        /// Its size and ETag, when listed (a manifest's objects are not).
        listed: Option<(u64, Option<String>)>,
    },
    /// A local file.
    Local(PathBuf),
}

impl Object {
    /// The URI or path that messages name.
    pub(crate) fn name(&self) -> String {
        match self {
            Object::S3 { uri, .. } => uri.clone(),
            Object::Local(p) => p.display().to_string(),
        }
    }
}

/// Maps an `object_store` error of a request on `location` (in `bucket`) to a clear message.
pub(crate) fn store_error(
    channel: &str,
    bucket: &str,
    location: &str,
    err: object_store::Error,
) -> ChannelError {
    let text = error_chain(&err);
    if text.contains("NoSuchBucket") || text.contains("bucket does not exist") {
        return ChannelError::NoSuchBucket {
            channel: channel.to_owned(),
            bucket: bucket.to_owned(),
            uri: location.to_owned(),
        };
    }
    match err {
        object_store::Error::NotFound { .. } => ChannelError::NotFound {
            channel: channel.to_owned(),
            location: location.to_owned(),
        },
        _ => ChannelError::Access {
            channel: channel.to_owned(),
            location: location.to_owned(),
            reason: text,
        },
    }
}

/// Resolves a local `path` the channel names and checks it against `policy` (symbolic links
/// resolved first, so a link out of the roots is refused).
pub(crate) fn check_local(
    channel: &str,
    policy: &ImportPolicy,
    path: &Path,
) -> Result<PathBuf, ChannelError> {
    policy.check(path).map_err(|e| {
        let reason = match e {
            StoreError::ImportRefused { reason, .. } => reason,
            other => other.to_string(),
        };
        // Outside the roots is decided before the file system is asked; only then may a
        // missing path be told apart.
        if !reason.starts_with("it is outside") && matches!(path.try_exists(), Ok(false)) {
            ChannelError::NotFound {
                channel: channel.to_owned(),
                location: path.display().to_string(),
            }
        } else {
            ChannelError::Refused {
                channel: channel.to_owned(),
                location: path.display().to_string(),
                reason,
            }
        }
    })
}

/// Every object under an `S3Prefix` location, in key order.
pub(crate) async fn list_prefix(
    channel: &str,
    uri: &str,
    location: &Location,
    s3: &S3Config,
    policy: &ImportPolicy,
) -> Result<Vec<Object>, ChannelError> {
    match location {
        Location::S3 { bucket, key } => {
            let store = s3.client(bucket).map_err(|reason| ChannelError::Access {
                channel: channel.to_owned(),
                location: uri.to_owned(),
                reason,
            })?;
            // object_store lists whole "folders": list the one holding the prefix, then keep
            // the keys that start with it.
            let folder = match key.rfind('/') {
                Some(i) => &key[..i],
                None => "",
            };
            let folder = (!folder.is_empty()).then(|| ObjectPath::from(folder));
            let mut metas: Vec<_> = store
                .list(folder.as_ref())
                .try_filter(|m| {
                    futures::future::ready(
                        m.size > 0 && m.location.as_ref().starts_with(key.as_str()),
                    )
                })
                .try_collect()
                .await
                .map_err(|e| store_error(channel, bucket, uri, e))?;
            metas.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
            Ok(metas
                .into_iter()
                .map(|m| Object::S3 {
                    uri: format!("s3://{bucket}/{}", m.location),
                    bucket: bucket.clone(),
                    store: store.clone(),
                    path: m.location,
                    listed: Some((m.size, m.e_tag)),
                })
                .collect())
        }
        Location::Local(path) => {
            let (path, policy) = (path.clone(), policy.clone());
            let (channel, uri) = (channel.to_owned(), uri.to_owned());
            tokio::task::spawn_blocking(move || {
                check_local(&channel, &policy, &path)?;
                list_local(&channel, &uri, &path)
            })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        }
    }
}

fn list_local(channel: &str, uri: &str, path: &Path) -> Result<Vec<Object>, ChannelError> {
    let io_err = |p: &Path, e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ChannelError::NotFound {
                channel: channel.to_owned(),
                location: p.display().to_string(),
            }
        } else {
            ChannelError::Access {
                channel: channel.to_owned(),
                location: p.display().to_string(),
                reason: e.to_string(),
            }
        }
    };
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    if meta.is_file() {
        return Ok(if meta.len() > 0 {
            vec![Object::Local(path.to_path_buf())]
        } else {
            Vec::new()
        });
    }
    if !meta.is_dir() {
        return Err(ChannelError::Access {
            channel: channel.to_owned(),
            location: uri.to_owned(),
            reason: "not a regular file or folder".into(),
        });
    }
    // (relative key with '/' separators, path), so the order is S3's key order.
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut stack = vec![(String::new(), path.to_path_buf())];
    while let Some((rel, dir)) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| io_err(&dir, e))? {
            let entry = entry.map_err(|e| io_err(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let p = entry.path();
            let meta = std::fs::metadata(&p).map_err(|e| io_err(&p, e))?;
            let key = format!("{rel}{name}");
            if meta.is_dir() {
                stack.push((format!("{key}/"), p));
            } else if meta.is_file() && meta.len() > 0 {
                files.push((key, p));
            }
        }
    }
    files.sort();
    Ok(files.into_iter().map(|(_, p)| Object::Local(p)).collect())
}

/// Reads a whole small object (a manifest) of at most `limit` bytes.
pub(crate) async fn read_small(
    channel: &str,
    uri: &str,
    location: &Location,
    s3: &S3Config,
    policy: &ImportPolicy,
    limit: u64,
) -> Result<Vec<u8>, ChannelError> {
    let too_large = || ChannelError::Manifest {
        channel: channel.to_owned(),
        location: uri.to_owned(),
        reason: format!("larger than {limit} bytes"),
    };
    match location {
        Location::S3 { bucket, key } => {
            let store = s3.client(bucket).map_err(|reason| ChannelError::Access {
                channel: channel.to_owned(),
                location: uri.to_owned(),
                reason,
            })?;
            let got = store
                .get(&ObjectPath::from(key.as_str()))
                .await
                .map_err(|e| store_error(channel, bucket, uri, e))?;
            if got.meta.size > limit {
                return Err(too_large());
            }
            let bytes = got
                .bytes()
                .await
                .map_err(|e| store_error(channel, bucket, uri, e))?;
            Ok(bytes.to_vec())
        }
        Location::Local(path) => {
            let resolved = {
                let (channel, policy, path) = (channel.to_owned(), policy.clone(), path.clone());
                tokio::task::spawn_blocking(move || check_local(&channel, &policy, &path))
                    .await
                    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?
            };
            let path = resolved;
            let outcome = tokio::task::spawn_blocking(move || {
                let meta = std::fs::metadata(&path)?;
                if meta.len() > limit {
                    return Ok(None);
                }
                std::fs::read(&path).map(Some)
            })
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
            match outcome {
                Ok(Some(bytes)) => Ok(bytes),
                Ok(None) => Err(too_large()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ChannelError::NotFound {
                    channel: channel.to_owned(),
                    location: uri.to_owned(),
                }),
                Err(e) => Err(ChannelError::Access {
                    channel: channel.to_owned(),
                    location: uri.to_owned(),
                    reason: e.to_string(),
                }),
            }
        }
    }
}

/// The objects a SageMaker manifest names: `[{"prefix": "s3://bucket/prefix/"}, "key", …]`, in
/// its order. The prefix may also be a `file://` URI or a local folder.
pub(crate) fn parse_manifest(
    channel: &str,
    uri: &str,
    bytes: &[u8],
    s3: &S3Config,
) -> Result<Vec<Object>, ChannelError> {
    let bad = |reason: String| ChannelError::Manifest {
        channel: channel.to_owned(),
        location: uri.to_owned(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let entries = value
        .as_array()
        .ok_or_else(|| bad("not a JSON array".into()))?;
    let prefix = entries
        .first()
        .and_then(|e| e.get("prefix"))
        .and_then(|p| p.as_str())
        .ok_or_else(|| {
            bad("its first entry is not {\"prefix\": \"s3://bucket/prefix/\"}".into())
        })?;
    let base = Location::parse(prefix).map_err(|r| bad(format!("prefix '{prefix}' {r}")))?;
    let mut objects = Vec::with_capacity(entries.len() - 1);
    let mut stores: Option<Arc<dyn ObjectStore>> = None;
    for (i, entry) in entries.iter().enumerate().skip(1) {
        let rel = entry
            .as_str()
            .ok_or_else(|| bad(format!("entry {} is not a string", i + 1)))?;
        objects.push(match &base {
            Location::S3 { bucket, key } => {
                let store = match &stores {
                    Some(s) => s.clone(),
                    None => {
                        let s = s3.client(bucket).map_err(bad)?;
                        stores = Some(s.clone());
                        s
                    }
                };
                let full = format!("{key}{rel}");
                Object::S3 {
                    uri: format!("s3://{bucket}/{full}"),
                    bucket: bucket.clone(),
                    store,
                    path: ObjectPath::from(full.as_str()),
                    listed: None,
                }
            }
            Location::Local(dir) => {
                let mut p = dir.clone().into_os_string();
                p.push(rel);
                Object::Local(PathBuf::from(p))
            }
        });
    }
    Ok(objects)
}
