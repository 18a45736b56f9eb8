//! Shared by the channel and output tests: a real S3-compatible server (`s3s-fs`) started on a
//! free loopback port over a temporary folder, and a [`Store`] that puts objects either there
//! or in a local folder, so each test runs the same case over both.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use object_store::path::Path as ObjectPath;
use pier_jobs::channels::{ContentKind, ReadOptions, S3Config};

#[path = "../../../tests/support/s3s.rs"]
mod s3s;
#[allow(unused_imports)]
pub use s3s::{ACCESS_KEY, S3Server, SECRET_KEY};

/// The bucket [`Store::s3`] creates.
pub const BUCKET: &str = "pier-data";

/// Where a test's objects live: a local folder or a bucket of a real S3 server.
pub enum Store {
    /// A local folder; keys are relative paths.
    Local(tempfile::TempDir),
    /// [`BUCKET`] of an `s3s-fs`.
    S3(S3Server),
}

impl Store {
    /// A fresh local folder.
    pub fn local() -> Self {
        Store::Local(tempfile::tempdir().expect("temp dir"))
    }

    /// A fresh `s3s-fs` with an empty [`BUCKET`].
    pub fn s3() -> Self {
        Store::S3(S3Server::start(BUCKET))
    }

    /// Both kinds.
    pub fn both() -> [Store; 2] {
        [Store::local(), Store::s3()]
    }

    /// "local" or "s3", for assertion messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Local(_) => "local",
            Store::S3(_) => "s3",
        }
    }

    /// Puts an object (S3: a PUT through the S3 API).
    pub async fn put(&self, key: &str, bytes: &[u8]) {
        match self {
            Store::Local(dir) => {
                let p = dir.path().join(key);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, bytes).unwrap();
            }
            Store::S3(server) => {
                server
                    .client(BUCKET)
                    .put(&ObjectPath::from(key), bytes.to_vec().into())
                    .await
                    .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
            }
        }
    }

    /// The URI of `key` (a key prefix on S3; a path locally).
    pub fn uri(&self, key: &str) -> String {
        match self {
            Store::Local(dir) => dir.path().join(key).display().to_string(),
            Store::S3(_) => format!("s3://{BUCKET}/{key}"),
        }
    }

    /// The local root (for a manifest's prefix), or the S3 bucket URI.
    pub fn root_uri(&self) -> String {
        match self {
            Store::Local(dir) => format!("{}/", dir.path().display()),
            Store::S3(_) => format!("s3://{BUCKET}/"),
        }
    }

    /// The S3 settings (the server's for S3; unused locally).
    pub fn s3_config(&self) -> S3Config {
        match self {
            Store::Local(_) => S3Config::default(),
            Store::S3(server) => server.config(),
        }
    }

    /// Read options for an algorithm reading `accepts`.
    pub fn opts(&self, has_label: bool, accepts: &[ContentKind]) -> ReadOptions {
        let mut o = ReadOptions::new(has_label, accepts);
        o.s3 = self.s3_config();
        o
    }
}

/// gzip of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A fixture file of this crate's `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}
