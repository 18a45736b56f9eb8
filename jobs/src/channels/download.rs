//! A channel's objects copied as files into a folder (script mode's `input/data/<channel>/`),
//! as SageMaker's File mode does: every object of the prefix (or the manifest) under its key
//! relative to the objects' common folder, bytes as stored (no decompression: the script
//! reads them as it likes). Local paths obey the import policy, link by link; the channel's
//! bytes are bounded by the byte limit; the cancel flag is checked between chunks.

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering;

use futures::StreamExt;

use super::ReadOptions;
use super::error::ChannelError;
use super::location::{self, Object, check_local};
use super::spec::Channel;

/// What a download wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Downloaded {
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// Copies every object of `channel` into `dest` (which must exist); see the module docs.
pub async fn download_channel(
    channel: &Channel,
    dest: &Path,
    opts: &ReadOptions,
) -> Result<Downloaded, ChannelError> {
    let name = channel.name.as_str();
    let objects = super::read::list_objects(channel, opts).await?;
    let keys: Vec<String> = objects.iter().map(key_of).collect();
    let common = common_folder(&keys);
    let (mut done, limit) = (Downloaded { files: 0, bytes: 0 }, opts.max_bytes);
    let too_large = |_object: &str| ChannelError::TooLarge {
        channel: name.to_owned(),
        limit: limit.unwrap_or(u64::MAX),
    };
    let cancelled = || {
        opts.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    };
    for (object, key) in objects.iter().zip(&keys) {
        let rel = relative(key, &common).ok_or_else(|| ChannelError::Access {
            channel: name.to_owned(),
            location: object.name(),
            reason: "its key cannot be a file name under the channel's folder".into(),
        })?;
        let target = dest.join(&rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_error(name, &target, e))?;
        }
        match object {
            Object::S3 {
                uri,
                bucket,
                store,
                path,
                ..
            } => {
                let got = store
                    .get(path)
                    .await
                    .map_err(|e| location::store_error(name, bucket, uri, e))?;
                let mut stream = got.into_stream();
                let mut out =
                    std::fs::File::create(&target).map_err(|e| io_error(name, &target, e))?;
                while let Some(chunk) = stream.next().await {
                    if cancelled() {
                        return Err(ChannelError::Cancelled {
                            channel: name.to_owned(),
                        });
                    }
                    let chunk = chunk.map_err(|e| location::store_error(name, bucket, uri, e))?;
                    done.bytes += chunk.len() as u64;
                    if limit.is_some_and(|l| done.bytes > l) {
                        return Err(too_large(uri));
                    }
                    // Chunks are small (the store's, tens of KiB); a blocking write is brief.
                    out.write_all(&chunk)
                        .map_err(|e| io_error(name, &target, e))?;
                }
            }
            Object::Local(path) => {
                let (channel_name, policy, path, target) = (
                    name.to_owned(),
                    opts.local.clone(),
                    path.clone(),
                    target.clone(),
                );
                let room = limit.map(|l| l.saturating_sub(done.bytes));
                let copied = tokio::task::spawn_blocking(move || {
                    let resolved = check_local(&channel_name, &policy, &path)?;
                    let mut src = std::fs::File::open(&resolved)
                        .map_err(|e| io_error(&channel_name, &path, e))?;
                    let mut out = std::fs::File::create(&target)
                        .map_err(|e| io_error(&channel_name, &target, e))?;
                    let cap = room.map_or(u64::MAX, |r| r.saturating_add(1));
                    std::io::copy(&mut std::io::Read::take(&mut src, cap), &mut out)
                        .map_err(|e| io_error(&channel_name, &path, e))
                })
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
                done.bytes += copied;
                if limit.is_some_and(|l| done.bytes > l) {
                    return Err(too_large(&object.name()));
                }
            }
        }
        done.files += 1;
        if cancelled() {
            return Err(ChannelError::Cancelled {
                channel: name.to_owned(),
            });
        }
    }
    Ok(done)
}

fn io_error(channel: &str, path: &Path, e: std::io::Error) -> ChannelError {
    ChannelError::Access {
        channel: channel.to_owned(),
        location: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// An object's key with '/' separators (a local file's path).
fn key_of(object: &Object) -> String {
    match object {
        Object::S3 { path, .. } => path.as_ref().to_owned(),
        Object::Local(p) => p.display().to_string(),
    }
}

/// The longest folder (ending in '/', or empty) that holds every key.
fn common_folder(keys: &[String]) -> String {
    let Some(first) = keys.first() else {
        return String::new();
    };
    let mut prefix: &str = match first.rfind('/') {
        Some(i) => &first[..=i],
        None => "",
    };
    for key in &keys[1..] {
        while !key.starts_with(prefix) {
            let trimmed = &prefix[..prefix.len() - 1];
            prefix = match trimmed.rfind('/') {
                Some(i) => &trimmed[..=i],
                None => "",
            };
        }
    }
    prefix.to_owned()
}

/// `key` under `folder`, as a relative path of plain components.
fn relative(key: &str, folder: &str) -> Option<PathBuf> {
    let rest = key.strip_prefix(folder)?;
    let path = PathBuf::from(rest);
    let plain = path.components().all(|c| matches!(c, Component::Normal(_)));
    (plain && !rest.is_empty()).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_relative_to_their_common_folder() {
        let keys = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(common_folder(&keys(&["data/train/a.csv"])), "data/train/");
        assert_eq!(
            common_folder(&keys(&["data/train/a.csv", "data/train/sub/b.csv"])),
            "data/train/"
        );
        assert_eq!(
            common_folder(&keys(&["data/train.csv", "data/tr/x.csv"])),
            "data/"
        );
        assert_eq!(common_folder(&keys(&["a.csv", "b/c.csv"])), "");
        assert_eq!(
            relative("data/train/sub/b.csv", "data/train/"),
            Some(PathBuf::from("sub/b.csv"))
        );
        assert_eq!(relative("data/train/../x", "data/train/"), None);
    }
}
