//! A throwaway PostgreSQL server for tests: Debian's `postgresql` (15 or later) started on a
//! free loopback port in a temporary folder, with its socket there too, stopped and removed
//! when dropped.
//!
//! Include it from any crate's tests with
//! `#[path = "../../tests/support/postgres.rs"] mod postgres;` (the crate needs `tempfile` as a
//! dev-dependency). `initdb` runs once per machine and PostgreSQL version: its cluster is kept
//! as a template under the system's temporary folder (`pier-postgres-template-…`) and each
//! [`Postgres::start`] copies it, which takes a fraction of a second where `initdb` takes
//! seconds. As root, the server runs as the `postgres` user (`runuser -u postgres --`), as
//! PostgreSQL refuses to run as root; otherwise as the current user. The binaries are found
//! in `$PIER_PG_BIN`, else the newest `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`.
//! Without them the test fails, saying to install Debian's `postgresql`: it is never skipped.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// A running PostgreSQL server with one database, `pier`, that trusts loopback connections.
pub struct Postgres {
    dir: Option<tempfile::TempDir>,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// Serialises template creation within one test binary (other processes race through the
/// atomic rename).
static TEMPLATE: Mutex<()> = Mutex::new(());

impl Postgres {
    /// Starts a fresh server (an empty cluster with a `pier` database), or panics saying what
    /// is missing.
    pub fn start() -> Self {
        let bin = bin_dir();
        let as_postgres = is_root();
        let template = template(&bin, as_postgres);
        let dir = tempfile::Builder::new()
            .prefix("pier-postgres-")
            .tempdir()
            .expect("cannot make a temporary folder for PostgreSQL");
        let data = dir.path().join("data");
        run(Command::new("cp").arg("-a").arg(&template).arg(&data));
        if as_postgres {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(dir.path()));
        }
        let pg = Self {
            dir: Some(dir),
            bin,
            port: free_port(),
            as_postgres,
        };
        pg.start_server();
        pg.psql("postgres", "CREATE DATABASE pier");
        pg
    }

    /// `postgres://postgres@127.0.0.1:PORT/pier`.
    pub fn url(&self) -> String {
        self.url_of("pier")
    }

    /// The URL of another database on this server.
    pub fn url_of(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates another database and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        self.url_of(name)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs SQL with `psql` on `database` and returns what it printed (unaligned, tuples
    /// only).
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = run(self
            .pg_command("psql")
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                sql,
            ]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the server at once, as a crash or an outage would (`pg_ctl stop -m immediate`);
    /// [`Postgres::restart`] brings it back on the same port with the same data.
    pub fn stop(&self) {
        run(self.pg_command("pg_ctl").arg("-D").arg(self.data()).args([
            "-m",
            "immediate",
            "-w",
            "stop",
        ]));
    }

    /// Starts the server again after [`Postgres::stop`].
    pub fn restart(&self) {
        self.start_server();
    }

    fn data(&self) -> PathBuf {
        self.dir.as_ref().expect("running").path().join("data")
    }

    fn start_server(&self) {
        let dir = self.dir.as_ref().expect("running").path();
        let options = format!(
            // No fsync (a test's data need not survive the machine), but every commit is
            // written before it returns, so a crash (`stop`) loses nothing committed.
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off \
             -c max_connections=200",
            self.port,
            dir.display()
        );
        let status = self
            .pg_command("pg_ctl")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .output()
            .expect("cannot run pg_ctl");
        if !status.status.success() {
            let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
            panic!(
                "PostgreSQL did not start on port {}: {}{}\n{log}",
                self.port,
                String::from_utf8_lossy(&status.stdout),
                String::from_utf8_lossy(&status.stderr)
            );
        }
    }

    fn pg_command(&self, program: &str) -> Command {
        pg_command(&self.bin, program, self.as_postgres)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.dir.is_some() {
            let _ = self
                .pg_command("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
        // The TempDir removes the folder.
        self.dir.take();
    }
}

fn pg_command(bin: &Path, program: &str, as_postgres: bool) -> Command {
    let path = bin.join(program);
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

/// Runs a command; panics with its output when it fails.
fn run(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const MISSING: &str = "PostgreSQL's server binaries (initdb, pg_ctl, postgres, psql) were not \
    found: install Debian's `postgresql` package (apt-get install -y postgresql), or point \
    PIER_PG_BIN at a folder that holds them";

/// The folder with `initdb` and `pg_ctl`.
fn bin_dir() -> PathBuf {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PIER_PG_BIN") {
        let dir = PathBuf::from(dir);
        assert!(has(&dir), "PIER_PG_BIN={}: {MISSING}", dir.display());
        return dir;
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has(&bin).then_some((version, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return bin;
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has(&dir) {
            return dir;
        }
    }
    panic!("{MISSING}");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The initdb'd cluster this machine's tests copy, made once.
fn template(bin: &Path, as_postgres: bool) -> PathBuf {
    let _one = TEMPLATE.lock().unwrap_or_else(|e| e.into_inner());
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .map_or_else(|| "pg".to_owned(), |v| v.to_string_lossy().into_owned());
    let user = if as_postgres { "postgres" } else { "user" };
    let cached = std::env::temp_dir().join(format!("pier-postgres-template-{version}-{user}"));
    if cached.join("PG_VERSION").is_file() {
        return cached;
    }
    let staging = tempfile::Builder::new()
        .prefix("pier-postgres-initdb-")
        .tempdir()
        .expect("cannot make a temporary folder for initdb");
    if as_postgres {
        run(Command::new("chown").arg("postgres:").arg(staging.path()));
    }
    let data = staging.path().join("data");
    run(pg_command(bin, "initdb", as_postgres)
        .arg("-D")
        .arg(&data)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
            "--locale=C",
        ]));
    // Another process may have made it meanwhile: then ours goes with the staging folder.
    if std::fs::rename(&data, &cached).is_err() && !cached.join("PG_VERSION").is_file() {
        panic!(
            "cannot keep the PostgreSQL template in {}",
            cached.display()
        );
    }
    cached
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}
