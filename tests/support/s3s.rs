//! A real S3-compatible server for tests: `s3s-fs` over a temporary folder on a free loopback
//! port, which a test may stop and start again on the same port and folder (S3 lost while
//! serving, then back). Included by any crate's tests with
//! `#[path = "…/tests/support/s3s.rs"] mod s3s;` (model-store, jobs and server tests share it).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;

use pier_model_store::S3Config;

/// The access key the test server accepts.
pub const ACCESS_KEY: &str = "pier-test-key";
/// Its secret.
pub const SECRET_KEY: &str = "pier-test-secret";

const INSTALL: &str = "cargo install --locked s3s-fs --version 0.14.1 --features binary";

/// The `s3s-fs` binary: `$S3S_FS`, else on `PATH`, else `~/.cargo/bin/s3s-fs`.
fn binary() -> PathBuf {
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

/// A running (or stopped) `s3s-fs`; killed on drop.
pub struct S3Server {
    child: Option<Child>,
    /// The folder it serves: a bucket is a sub-folder, an object a file under it.
    pub root: tempfile::TempDir,
    /// Its port.
    pub port: u16,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

impl S3Server {
    /// Starts one with the bucket `bucket` and waits until it accepts connections.
    pub fn start(bucket: &str) -> Self {
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join(bucket)).expect("bucket folder");
        let mut server = S3Server {
            child: None,
            root,
            port: 0,
            endpoint: String::new(),
        };
        for _attempt in 0..5 {
            server.port = {
                let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
                l.local_addr().expect("local addr").port()
            };
            server.endpoint = format!("http://127.0.0.1:{}", server.port);
            // Most likely the port was taken meanwhile when it fails: try another.
            if server.try_start() {
                return server;
            }
        }
        panic!("s3s-fs could not be started on a free port");
    }

    /// Starts the process on `self.port`; false if it exited (the port taken).
    fn try_start(&mut self) -> bool {
        let bin = binary();
        let mut child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {}: {e} (install: `{INSTALL}`)", bin.display())
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if child.try_wait().expect("try_wait").is_some() {
                return false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                self.child = Some(child);
                return true;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "s3s-fs did not accept connections on port {} within 10 s",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id (0 when stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Stops the server (S3 lost); its folder stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and folder (retrying while the port is released).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.try_start() {
            assert!(
                Instant::now() < deadline,
                "s3s-fs could not start again on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Client settings for this server.
    pub fn config(&self) -> S3Config {
        S3Config::default()
            .with_endpoint(&self.endpoint)
            .with_credentials(ACCESS_KEY, SECRET_KEY)
    }

    /// Creates another bucket (a folder under the root, as s3s-fs keeps buckets).
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
        self.stop();
    }
}
