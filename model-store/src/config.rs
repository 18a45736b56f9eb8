//! Where a store lives ([`StoreLocation`]: a local folder, or `s3://bucket/prefix`) and how it
//! is opened ([`StoreConfig`]: the location, the local cache of an object-storage store and
//! its bound, how to reach S3).

use std::fmt;
use std::path::PathBuf;

use crate::s3::S3Config;

/// The default bound of an object-storage store's local cache: 10 GiB.
pub const DEFAULT_CACHE_BYTES: u64 = 10 << 30;

/// Where a store's versions live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLocation {
    /// A local folder (`file:///abs/path` or a plain path).
    Local(PathBuf),
    /// An S3 bucket (or an S3-compatible store) under a key prefix (possibly empty).
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, without leading or trailing `/`.
        prefix: String,
    },
}

impl StoreLocation {
    /// Parses `s3://bucket[/prefix]`, `file:///abs/path` or a local path; the error says what
    /// is wrong with it.
    pub fn parse(uri: &str) -> Result<Self, String> {
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let bucket_ok = (3..=63).contains(&bucket.len())
                && bucket.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-')
                })
                && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
                && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
            if !bucket_ok {
                return Err(format!(
                    "{uri:?} does not name a valid bucket ('{bucket}': 3 to 63 lower-case letters, digits, dots and hyphens)"
                ));
            }
            let prefix = prefix.trim_matches('/');
            if !prefix.is_empty()
                && prefix
                    .split('/')
                    .any(|p| p.is_empty() || p == "." || p == ".." || p.starts_with('.'))
            {
                return Err(format!(
                    "{uri:?} has an invalid key prefix: empty, '.' and '..' segments and segments starting with '.' are refused"
                ));
            }
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        if let Some(path) = uri.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "{uri:?} is not a file:// URI of an absolute path (file:///abs/path)"
                ));
            }
            return Ok(Self::Local(PathBuf::from(path)));
        }
        if uri.is_empty() {
            return Err("the store location is empty".into());
        }
        if let Some((scheme, _)) = uri.split_once("://") {
            return Err(format!(
                "{uri:?} has the scheme '{scheme}'; use s3://bucket/prefix, file:///abs/path or a local path"
            ));
        }
        Ok(Self::Local(PathBuf::from(uri)))
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(p) => write!(f, "{}", p.display()),
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// How to open a store; see [`crate::ModelStore::open_with`].
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Where the versions live.
    pub location: StoreLocation,
    /// The local read-through cache of an object-storage store: versions are materialised
    /// here (verified) for the runtimes to load, and publishes are staged here. Unused by a
    /// local store.
    pub cache_dir: PathBuf,
    /// Bound of the cache in bytes (the files of the versions it holds); past it the least
    /// recently used versions that no one is loading are removed.
    pub cache_bytes: u64,
    /// How to reach S3.
    pub s3: S3Config,
}

impl StoreConfig {
    /// A local store at `root`.
    pub fn local(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        Self {
            cache_dir: root.join(".cache"),
            location: StoreLocation::Local(root),
            cache_bytes: DEFAULT_CACHE_BYTES,
            s3: S3Config::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_locations() {
        assert_eq!(
            StoreLocation::parse("s3://models/prod/a/").unwrap(),
            StoreLocation::S3 {
                bucket: "models".into(),
                prefix: "prod/a".into()
            }
        );
        assert_eq!(
            StoreLocation::parse("s3://models").unwrap().to_string(),
            "s3://models"
        );
        assert_eq!(
            StoreLocation::parse("file:///srv/store").unwrap(),
            StoreLocation::Local("/srv/store".into())
        );
        assert_eq!(
            StoreLocation::parse("data/store").unwrap(),
            StoreLocation::Local("data/store".into())
        );
        for bad in [
            "",
            "s3://",
            "s3://Bad_Bucket/x",
            "s3://ok-bucket/a//b",
            "s3://ok-bucket/../x",
            "file://rel",
            "gs://b/p",
        ] {
            let err = StoreLocation::parse(bad).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
    }
}
