//! Helpers shared by the CLI test binaries: `pier serve --demo` on loopback ports chosen by
//! the OS, and one-shot `pier` commands.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The binary under test.
pub const PIER: &str = env!("CARGO_BIN_EXE_pier");

/// A running `pier serve --demo`; dropped without [`Served::stop`], it is sent SIGTERM.
pub struct Served {
    child: Option<Child>,
    /// Data-plane address.
    pub http: String,
    /// Control-plane address.
    pub admin: String,
    /// gRPC address.
    pub grpc: String,
    /// What it printed up to and including its "Stop with" line.
    pub banner: String,
}

impl Served {
    /// Sends SIGTERM and asserts a clean exit 0.
    pub fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        assert!(
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
        assert!(
            child.wait().unwrap().success(),
            "pier exits 0 after SIGTERM"
        );
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// Starts `pier serve --demo` on `data` with every listener on `127.0.0.1:0` and waits for
/// its banner.
pub fn serve_demo(data: &Path) -> Served {
    let mut child = Command::new(PIER)
        .args([
            "serve",
            "--demo",
            "--http",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
        ])
        .args(["--grpc", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("pier printed nothing").unwrap();
    let field = |k: &str| {
        first
            .split_whitespace()
            .find_map(|p| p.strip_prefix(k))
            .unwrap()
            .to_owned()
    };
    let (http, admin, grpc) = (field("http="), field("admin="), field("grpc="));
    let mut banner = first;
    for line in lines.by_ref() {
        let line = line.unwrap();
        banner.push('\n');
        banner.push_str(&line);
        if line.starts_with("Stop with") {
            break;
        }
    }
    // Keep reading so the child never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Served {
        child: Some(child),
        http,
        admin,
        grpc,
        banner,
    }
}

/// Runs `pier ARGS` with extra environment `env`: (success, stdout, stderr).
pub fn pier_with_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(PIER)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `pier ARGS`: (success, stdout, stderr).
pub fn pier(args: &[&str]) -> (bool, String, String) {
    pier_with_env(args, &[])
}
