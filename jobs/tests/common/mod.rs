//! Shared by the channel and output tests: a real S3-compatible server (`s3s-fs`) started on a
//! free loopback port over a temporary folder, and a [`Store`] that puts objects either there
//! or in a local folder, so each test runs the same case over both.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use pier_jobs::channels::{ContentKind, ReadOptions, S3Config};

/// The access key the test server accepts.
pub const ACCESS_KEY: &str = "pier-test-key";
/// Its secret.
pub const SECRET_KEY: &str = "pier-test-secret";
/// The bucket [`Store::s3`] creates.
pub const BUCKET: &str = "pier-data";

const INSTALL: &str = "cargo install --locked s3s-fs --version 0.14.1 --features binary";

/// The `s3s-fs` binary: `$S3S_FS`, else on `PATH`, else `~/.cargo/bin/s3s-fs`.
fn s3s_fs_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("S3S_FS") {
        return PathBuf::from(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("s3s-fs"))
            .find(|p| p.is_file())
    });
    if let Some(p) = on_path {
        return p;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let p = home.join(".cargo/bin/s3s-fs");
    assert!(
        p.is_file(),
        "s3s-fs is not installed, and the S3 tests need it: install it with `{INSTALL}` \
         (or set S3S_FS to its path)"
    );
    p
}

/// A running `s3s-fs` over a temporary folder; killed on drop.
pub struct S3Server {
    child: Child,
    /// The folder it serves: a bucket is a sub-folder, an object a file under it.
    pub root: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl S3Server {
    /// Starts one and waits until it accepts connections (10 s at most).
    pub fn start() -> Self {
        let bin = s3s_fs_binary();
        let root = tempfile::tempdir().expect("temp dir");
        for _attempt in 0..5 {
            let port = {
                let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
                l.local_addr().expect("local addr").port()
            };
            let mut child = Command::new(&bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(root.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start {}: {e} (install: `{INSTALL}`)", bin.display())
                });
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if let Some(status) = child.try_wait().expect("try_wait") {
                    // Most likely the port was taken meanwhile: try another.
                    eprintln!("s3s-fs exited at start ({status}); retrying on another port");
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return S3Server {
                        child,
                        root,
                        endpoint: format!("http://127.0.0.1:{port}"),
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("s3s-fs did not accept connections on port {port} within 10 s");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("s3s-fs could not be started on a free port");
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Client settings for this server.
    pub fn config(&self) -> S3Config {
        S3Config::default()
            .with_endpoint(&self.endpoint)
            .with_credentials(ACCESS_KEY, SECRET_KEY)
    }

    /// Creates `bucket` (a folder under the root, as s3s-fs keeps buckets).
    pub fn create_bucket(&self, bucket: &str) {
        std::fs::create_dir_all(self.root.path().join(bucket)).expect("create bucket folder");
    }

    /// A client for `bucket`.
    pub fn client(&self, bucket: &str) -> Arc<dyn ObjectStore> {
        self.config().client(bucket).expect("S3 client")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
        let server = S3Server::start();
        server.create_bucket(BUCKET);
        Store::S3(server)
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
