//! Pier's control-plane and job persistence through `sqlx`, on an embedded SQLite file (the
//! default, `<data-dir>/pier.db`) or a PostgreSQL database (`postgres://…`) that any number
//! of `pier serve` replicas and `pier worker` processes share. This crate knows neither.
//!
//! Records (models, endpoint configs, endpoints, tags, scaling) are one row `(name, body)` with
//! the record as JSON, one table per kind (tags are keyed by the resource's ARN). Jobs ([`jobs`])
//! are rows with real columns for what the runner coordinates on (status, owner, lease expiry,
//! heartbeat, attempts) beside the JSON body, so claiming a job is one atomic statement.
//! Replicas ([`replicas`]) beat into a table of their own, and every record write tells the
//! other replicas what changed (PostgreSQL `NOTIFY`, [`Db::subscribe_changes`]).
//!
//! One schema serves both backends: the migrations in `db/migrations` (`sqlx::migrate!`,
//! embedded at build time) are portable SQL, applied when the database is opened, and every
//! statement is written once with `$n` placeholders. The pool is an enum of the two native
//! pools ([`on_pool!`] runs a statement on whichever it is) rather than `sqlx`'s `Any`
//! driver: SQLite keeps its own connection settings (write-ahead log, full sync, busy
//! timeout, which `Any` can only take from a URL), PostgreSQL its listener for `NOTIFY`, and
//! both their native types; the few statements that differ (claims lock rows with
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL, the database clock) ask [`Db::backend`].
//! Writes are single statements or transactions, so a crash leaves the old or the new row.
//!
//! Errors are a typed [`DbError`] naming the operation and the table (or the database, with
//! its password redacted); [`DbError::is_unavailable`] tells an unreachable database from a
//! failed statement, which the server answers with 503 while it keeps serving. `pier serve`
//! on SQLite opens the database with [`Db::connect_serving`], which holds an exclusive lock on
//! `pier.lock` next to `pier.db` for the server's life, so a second server on the same folder
//! is refused; on PostgreSQL several servers share the database by design. Tests can make the
//! next writes fail ([`Db::fail_next_writes`]) as a full disk would.

pub mod jobs;
pub mod replicas;
mod url;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// The lock file next to `pier.db` that one `pier serve` holds for its life.
pub const LOCK_FILE: &str = "pier.lock";

/// The PostgreSQL channel record writes are announced on (`NOTIFY pier_changes,
/// '<table>:<name>'`).
pub const CHANGES_CHANNEL: &str = "pier_changes";

/// How long a statement waits for a connection before the database counts as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long opening a PostgreSQL database waits for its server to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub use jobs::{
    ClaimedJob, JobKind, JobLogEvent, JobRow, JobStatus, LogQuery, MetricPoint, StopOutcome,
};
pub use replicas::{Change, ReplicaBeat, ReplicaRow};
pub use url::redact as redact_url;

/// The schema, the same for both backends (`db/migrations`, embedded at build time).
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A record as it was stored when read ([`Db::get_versioned`]), for a conditional write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored(String);

/// What can go wrong in the database layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Another server holds the data folder's lock.
    #[error(
        "another pier serve ({holder}) is serving the data folder {}; stop it first, or give this one another --data-dir",
        dir.display()
    )]
    InUse {
        /// The data folder.
        dir: PathBuf,
        /// Who holds it, as its lock file says (`pid N`).
        holder: String,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The SQLite database could not be opened.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// The error.
        #[source]
        source: sqlx::Error,
    },
    /// A `--database-url` that names no database Pier can use.
    #[error("invalid database URL {url}: {reason}")]
    Url {
        /// The URL, password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The database server could not be reached (or refused us) at start.
    #[error("cannot connect to the database {url}: {source}")]
    Connect {
        /// The URL, password redacted.
        url: String,
        /// The error.
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be brought up to date.
    #[error("cannot migrate the database {url} to Pier's schema: {source}")]
    Migrate {
        /// The URL, password redacted.
        url: String,
        /// The error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A statement failed.
    #[error("database {op} of {table} failed: {source}")]
    Query {
        /// What was done.
        op: DbOp,
        /// The table.
        table: &'static str,
        /// The record, when one.
        name: Option<String>,
        /// The error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored record that does not parse.
    #[error("record {name:?} of {table} is not valid JSON: {source}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The record.
        name: String,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
    /// A record that does not serialise (a bug).
    #[error("cannot encode a record of {table}: {source}")]
    Encode {
        /// The table.
        table: &'static str,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
}

impl DbError {
    /// Whether the database could not be reached (connection refused, reset or closed, no
    /// connection within the pool's timeout, the server shutting down), as opposed to a
    /// statement that failed on a working database. The pool reconnects by itself, so such
    /// an error passes once the database is back; the server answers it with 503.
    pub fn is_unavailable(&self) -> bool {
        match self {
            DbError::Connect { .. } => true,
            DbError::Query { source, .. } | DbError::Open { source, .. } => unavailable(source),
            DbError::Migrate {
                source: sqlx::migrate::MigrateError::Execute(e),
                ..
            } => unavailable(e),
            _ => false,
        }
    }
}

/// Whether a `sqlx` error means the database is out of reach.
fn unavailable(e: &sqlx::Error) -> bool {
    use std::io::ErrorKind as K;
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(io) => matches!(
            io.kind(),
            K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::NotConnected
                | K::BrokenPipe
                | K::UnexpectedEof
                | K::TimedOut
                | K::HostUnreachable
                | K::NetworkUnreachable
                | K::AddrNotAvailable
        ),
        // PostgreSQL's connection exceptions (08…), and the server shutting down or starting
        // (57P01-57P03), or full of connections (53300).
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

/// A database operation, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbOp {
    /// Insert.
    Insert,
    /// Update.
    Update,
    /// Read one.
    Get,
    /// Read all.
    List,
    /// Delete.
    Delete,
}

impl std::fmt::Display for DbOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DbOp::Insert => "insert",
            DbOp::Update => "update",
            DbOp::Get => "read",
            DbOp::List => "listing",
            DbOp::Delete => "delete",
        })
    }
}

/// The tables, one per record kind.
#[derive(Clone, Copy, Debug)]
pub enum Table {
    /// Models.
    Models,
    /// Endpoint configs.
    EndpointConfigs,
    /// Endpoints.
    Endpoints,
    /// Tags, one row per resource ARN.
    Tags,
    /// Application Auto Scaling's scalable targets, by `ResourceId|ScalableDimension`.
    ScalableTargets,
    /// Application Auto Scaling's policies, by `ResourceId|ScalableDimension|PolicyName`.
    ScalingPolicies,
    /// Application Auto Scaling's activities, by `ResourceId|StartTime|ActivityId`.
    ScalingActivities,
}

impl Table {
    /// The table's SQL name, as [`Change::table`] names it.
    pub fn name(self) -> &'static str {
        match self {
            Table::Models => "models",
            Table::EndpointConfigs => "endpoint_configs",
            Table::Endpoints => "endpoints",
            Table::Tags => "tags",
            Table::ScalableTargets => "scalable_targets",
            Table::ScalingPolicies => "scaling_policies",
            Table::ScalingActivities => "scaling_activities",
        }
    }
}

/// Which database a [`Db`] is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// The two native pools.
#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to the native pool, whichever backend it is: the same tokens
/// compile once per backend, so a statement is written once for both.
macro_rules! on_pool {
    ($db:expr, $p:ident => $body:expr) => {
        match &$db.pool {
            $crate::Pool::Sqlite($p) => $body,
            $crate::Pool::Postgres($p) => $body,
        }
    };
}
pub(crate) use on_pool;

/// A handle to the control-plane database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pub(crate) pool: Pool,
    /// The URL it was opened with, password redacted (for messages).
    url: Arc<str>,
    /// The serve lock, when this handle holds it; released by [`Db::close`].
    lock: Arc<Mutex<Option<File>>>,
    /// Writes left to fail (fault injection for tests).
    failing_writes: Arc<AtomicU32>,
    /// Record changes, fed by the PostgreSQL listener ([`Db::subscribe_changes`]).
    pub(crate) changes: Arc<replicas::Changes>,
}

impl Db {
    /// Opens (creating if needed) `<dir>/pier.db`, shared: other processes may open it too.
    pub async fn open(dir: &Path) -> Result<Self, DbError> {
        Self::open_sqlite(&dir.join("pier.db")).await
    }

    /// Opens the database a `--database-url` names: `sqlite://PATH` (the file, created if
    /// needed) or `postgres://USER:PASSWORD@HOST:PORT/DB` (also `postgresql://`, with
    /// libpq's parameters such as `?host=/socket/dir` or `?sslmode=require`), and brings its
    /// schema up to date. A PostgreSQL server that cannot be reached is
    /// [`DbError::Connect`] naming the URL with its password redacted.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        match parse_url(url)? {
            Target::Sqlite(path) => Self::open_sqlite(&path).await,
            Target::Postgres(options) => Self::open_postgres(url, *options).await,
        }
    }

    /// Opens the database for `pier serve`. On SQLite it first takes an exclusive lock on
    /// `pier.lock` in the database file's folder, held until [`Db::close`], so a second server
    /// on the same data folder is refused with [`DbError::InUse`] (other processes that share
    /// the folder by design, such as `pier models push` and `pier worker`, take no such lock).
    /// On PostgreSQL several servers share the database: no lock.
    pub async fn connect_serving(url: &str) -> Result<Self, DbError> {
        match parse_url(url)? {
            Target::Sqlite(path) => {
                let dir = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                Self::open_locked(&dir, &path).await
            }
            Target::Postgres(options) => Self::open_postgres(url, *options).await,
        }
    }

    /// [`Db::connect_serving`] on `<dir>/pier.db`.
    pub async fn open_exclusive(dir: &Path) -> Result<Self, DbError> {
        Self::open_locked(dir, &dir.join("pier.db")).await
    }

    /// The URL of SQLite's default database in a data folder, `sqlite://<dir>/pier.db`.
    pub fn default_url(data_dir: &Path) -> String {
        format!("sqlite://{}", data_dir.join("pier.db").display())
    }

    async fn open_locked(dir: &Path, path: &Path) -> Result<Self, DbError> {
        std::fs::create_dir_all(dir).map_err(|source| DbError::Lock {
            path: dir.join(LOCK_FILE),
            source,
        })?;
        let lock = lock_data_dir(dir)?;
        let db = Self::open_sqlite(path).await?;
        *db.lock.lock().unwrap_or_else(|e| e.into_inner()) = Some(lock);
        Ok(db)
    }

    async fn open_sqlite(path: &Path) -> Result<Self, DbError> {
        let open_err = |source| DbError::Open {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(sqlx::Error::Io(e)))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(open_err)?;
        let url = format!("sqlite://{}", path.display());
        let db = Self::with_pool(Pool::Sqlite(pool), url);
        db.migrate().await?;
        Ok(db)
    }

    async fn open_postgres(url: &str, options: PgConnectOptions) -> Result<Self, DbError> {
        let shown = url::redact(url);
        let connect_err = |source| DbError::Connect {
            url: shown.clone(),
            source,
        };
        // One connection first, so an unreachable server is its own error ("connection
        // refused", "password authentication failed") rather than the pool's timeout.
        let first = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                connect_err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
                )))
            })?
            .map_err(connect_err)?;
        let _ = first.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        let db = Self::with_pool(Pool::Postgres(pool), shown);
        db.migrate().await?;
        Ok(db)
    }

    fn with_pool(pool: Pool, url: String) -> Self {
        Self {
            pool,
            url: url.into(),
            lock: Arc::default(),
            failing_writes: Arc::default(),
            changes: Arc::default(),
        }
    }

    /// Applies the migrations not yet applied. Several processes may open a fresh database
    /// at once: PostgreSQL serialises them with an advisory lock; on SQLite the loser of the
    /// race finds the migration recorded when it retries.
    async fn migrate(&self) -> Result<(), DbError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let done = on_pool!(self, p => MIGRATOR.run(p).await);
            match done {
                Ok(()) => return Ok(()),
                Err(e) if tries < 3 && matches!(e, sqlx::migrate::MigrateError::Execute(_)) => {
                    tracing::debug!(error = %e, "migration raced another opener; retrying");
                    tokio::time::sleep(Duration::from_millis(50 * tries)).await;
                }
                Err(source) => {
                    return Err(DbError::Migrate {
                        url: self.url.to_string(),
                        source,
                    });
                }
            }
        }
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The URL the database was opened with, its password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fault injection for tests: the next `n` writes (insert, update, delete) fail as a full
    /// disk would, without touching the database.
    pub fn fail_next_writes(&self, n: u32) {
        self.failing_writes.store(n, Ordering::SeqCst);
    }

    fn injected_fault(&self, op: DbOp, table: Table, name: &str) -> Result<(), DbError> {
        self.injected_fault_named(op, table.name(), name)
    }

    fn injected_fault_named(
        &self,
        op: DbOp,
        table: &'static str,
        name: &str,
    ) -> Result<(), DbError> {
        let took = self
            .failing_writes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if took.is_ok() {
            return Err(DbError::Query {
                op,
                table,
                name: Some(name.to_owned()),
                // ENOSPC, as SQLite would meet it.
                source: sqlx::Error::Io(std::io::Error::from_raw_os_error(28)),
            });
        }
        Ok(())
    }

    fn query_err(
        op: DbOp,
        table: Table,
        name: Option<&str>,
    ) -> impl FnOnce(sqlx::Error) -> DbError {
        move |source| DbError::Query {
            op,
            table: table.name(),
            name: name.map(str::to_owned),
            source,
        }
    }

    /// Runs one write of a record (`sql` binding `$1` name and, when given, `$2` body) and
    /// returns the rows it changed. On PostgreSQL a write that changed a row also does
    /// `NOTIFY pier_changes, '<table>:<name>'` in the same transaction, so other replicas hear
    /// of exactly the committed writes.
    async fn write_record(
        &self,
        op: DbOp,
        table: Table,
        name: &str,
        sql: &str,
        binds: &[&str],
    ) -> Result<u64, DbError> {
        let fail = || Self::query_err(op, table, Some(name));
        match &self.pool {
            Pool::Sqlite(p) => {
                let mut q = sqlx::query(sql).bind(name);
                for b in binds {
                    q = q.bind(*b);
                }
                Ok(q.execute(p).await.map_err(fail())?.rows_affected())
            }
            Pool::Postgres(p) => {
                let mut tx = p.begin().await.map_err(fail())?;
                let mut q = sqlx::query(sql).bind(name);
                for b in binds {
                    q = q.bind(*b);
                }
                let n = q.execute(&mut *tx).await.map_err(fail())?.rows_affected();
                if n > 0 {
                    sqlx::query("SELECT pg_notify($1, $2)")
                        .bind(CHANGES_CHANNEL)
                        .bind(format!("{}:{name}", table.name()))
                        .execute(&mut *tx)
                        .await
                        .map_err(fail())?;
                }
                tx.commit().await.map_err(fail())?;
                Ok(n)
            }
        }
    }

    /// Inserts a new record; `Ok(false)` if the name is taken.
    pub async fn insert<T: Serialize>(
        &self,
        table: Table,
        name: &str,
        record: &T,
    ) -> Result<bool, DbError> {
        self.injected_fault(DbOp::Insert, table, name)?;
        let body = encode(table, record)?;
        let sql = format!(
            "INSERT INTO {} (name, body) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            table.name()
        );
        let n = self
            .write_record(DbOp::Insert, table, name, &sql, &[&body])
            .await?;
        Ok(n == 1)
    }

    /// Replaces an existing record.
    pub async fn update<T: Serialize>(
        &self,
        table: Table,
        name: &str,
        record: &T,
    ) -> Result<(), DbError> {
        self.injected_fault(DbOp::Update, table, name)?;
        let body = encode(table, record)?;
        let sql = format!("UPDATE {} SET body = $2 WHERE name = $1", table.name());
        self.write_record(DbOp::Update, table, name, &sql, &[&body])
            .await?;
        Ok(())
    }

    /// Reads one record.
    pub async fn get<T: DeserializeOwned>(
        &self,
        table: Table,
        name: &str,
    ) -> Result<Option<T>, DbError> {
        let sql = format!("SELECT body FROM {} WHERE name = $1", table.name());
        let row: Option<(String,)> = on_pool!(self, p => sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(p)
            .await)
        .map_err(Self::query_err(DbOp::Get, table, Some(name)))?;
        row.map(|(body,)| decode(table, name, &body)).transpose()
    }

    /// Reads one record with the stored text it came from, for [`Db::update_if`].
    pub async fn get_versioned<T: DeserializeOwned>(
        &self,
        table: Table,
        name: &str,
    ) -> Result<Option<(T, Stored)>, DbError> {
        let sql = format!("SELECT body FROM {} WHERE name = $1", table.name());
        let row: Option<(String,)> =
            on_pool!(self, p => sqlx::query_as(&sql).bind(name).fetch_optional(p).await)
                .map_err(Self::query_err(DbOp::Get, table, Some(name)))?;
        row.map(|(body,)| Ok((decode(table, name, &body)?, Stored(body))))
            .transpose()
    }

    /// Replaces a record only if it is still what `seen` read (compare-and-swap: of several
    /// servers on one database changing the same record, one wins); `Ok(false)` when another
    /// writer changed or removed it first.
    pub async fn update_if<T: Serialize>(
        &self,
        table: Table,
        name: &str,
        seen: &Stored,
        record: &T,
    ) -> Result<bool, DbError> {
        self.injected_fault(DbOp::Update, table, name)?;
        let body = encode(table, record)?;
        let sql = format!(
            "UPDATE {} SET body = $2 WHERE name = $1 AND body = $3",
            table.name()
        );
        let done = self
            .write_record(DbOp::Update, table, name, &sql, &[&body, &seen.0])
            .await?;
        Ok(done == 1)
    }

    /// Reads every record of a table, by name.
    pub async fn list<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<T>, DbError> {
        let sql = format!("SELECT name, body FROM {} ORDER BY name", table.name());
        let rows: Vec<(String, String)> =
            on_pool!(self, p => sqlx::query_as(&sql).fetch_all(p).await)
                .map_err(Self::query_err(DbOp::List, table, None))?;
        rows.into_iter()
            .map(|(name, body)| decode(table, &name, &body))
            .collect()
    }

    /// Deletes a record; `Ok(false)` if there was none.
    pub async fn delete(&self, table: Table, name: &str) -> Result<bool, DbError> {
        self.injected_fault(DbOp::Delete, table, name)?;
        let sql = format!("DELETE FROM {} WHERE name = $1", table.name());
        let n = self
            .write_record(DbOp::Delete, table, name, &sql, &[])
            .await?;
        Ok(n == 1)
    }

    /// Closes the pool (on SQLite flushing the write-ahead log), stops the change listener
    /// and releases the serve lock.
    pub async fn close(&self) {
        self.changes.stop();
        on_pool!(self, p => p.close().await);
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// What a database URL names.
enum Target {
    Sqlite(PathBuf),
    Postgres(Box<PgConnectOptions>),
}

fn parse_url(url: &str) -> Result<Target, DbError> {
    let bad = |reason: &str| DbError::Url {
        url: url::redact(url),
        reason: reason.to_owned(),
    };
    if let Some(rest) = url.strip_prefix("sqlite:") {
        let path = rest.strip_prefix("//").unwrap_or(rest);
        if path.contains('?') {
            return Err(bad("SQLite URLs take no parameters (sqlite://PATH)"));
        }
        if path.is_empty() || path == ":memory:" {
            return Err(bad(
                "name the database file (sqlite://PATH); an in-memory database would not be shared",
            ));
        }
        return Ok(Target::Sqlite(PathBuf::from(path)));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return url
            .parse::<PgConnectOptions>()
            .map(|o| Target::Postgres(Box::new(o)))
            .map_err(|e| bad(&e.to_string()));
    }
    Err(bad(
        "expected sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE",
    ))
}

fn encode<T: Serialize>(table: Table, record: &T) -> Result<String, DbError> {
    encode_named(table.name(), record)
}

fn decode<T: DeserializeOwned>(table: Table, name: &str, body: &str) -> Result<T, DbError> {
    decode_named(table.name(), name, body)
}

fn encode_named<T: Serialize>(table: &'static str, record: &T) -> Result<String, DbError> {
    serde_json::to_string(record).map_err(|source| DbError::Encode { table, source })
}

fn decode_named<T: DeserializeOwned>(
    table: &'static str,
    name: &str,
    body: &str,
) -> Result<T, DbError> {
    serde_json::from_str(body).map_err(|source| DbError::Corrupt {
        table,
        name: name.to_owned(),
        source,
    })
}

/// Takes the exclusive, non-blocking lock on `<dir>/pier.lock` and writes our pid into it.
/// The lock goes with the returned file (closing it releases the lock, as does the process
/// ending, however it ends).
fn lock_data_dir(dir: &Path) -> Result<File, DbError> {
    use std::io::{Read, Seek, Write};
    let path = dir.join(LOCK_FILE);
    let lock_err = |source| DbError::Lock {
        path: path.clone(),
        source,
    };
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(lock_err)?;
    #[cfg(unix)]
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(DbError::InUse {
                dir: dir.to_path_buf(),
                holder: if holder.is_empty() {
                    "another process".to_owned()
                } else {
                    holder.to_owned()
                },
            });
        }
        Err(e) => return Err(lock_err(e.into())),
    }
    file.set_len(0).map_err(lock_err)?;
    file.rewind().map_err(lock_err)?;
    writeln!(file, "pid {}", std::process::id()).map_err(lock_err)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn insert_get_update_delete_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).await.unwrap();
        assert!(
            db.insert(Table::Models, "a", &serde_json::json!({"x": 1}))
                .await
                .unwrap()
        );
        assert!(
            !db.insert(Table::Models, "a", &serde_json::json!({"x": 2}))
                .await
                .unwrap(),
            "names are unique"
        );
        db.update(Table::Models, "a", &serde_json::json!({"x": 3}))
            .await
            .unwrap();
        db.close().await;

        let db = Db::open(dir.path()).await.unwrap();
        let got: serde_json::Value = db.get(Table::Models, "a").await.unwrap().unwrap();
        assert_eq!(got["x"], 3);
        assert_eq!(
            db.list::<serde_json::Value>(Table::Models)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(db.delete(Table::Models, "a").await.unwrap());
        assert!(
            db.get::<serde_json::Value>(Table::Models, "a")
                .await
                .unwrap()
                .is_none()
        );
        assert!(!db.delete(Table::Models, "a").await.unwrap());
    }

    #[tokio::test]
    async fn injected_write_faults_name_the_operation_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).await.unwrap();
        db.fail_next_writes(1);
        let err = db
            .insert(Table::Models, "a", &serde_json::json!({"x": 1}))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DbError::Query { op: DbOp::Insert, table: "models", name: Some(n), .. } if n == "a"),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("database insert of models failed"),
            "{err}"
        );
        assert!(
            db.get::<serde_json::Value>(Table::Models, "a")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            db.insert(Table::Models, "a", &serde_json::json!({"x": 1}))
                .await
                .unwrap(),
            "only the next write fails"
        );
    }

    #[tokio::test]
    async fn one_exclusive_opener_per_folder_until_it_closes() {
        let dir = tempfile::tempdir().unwrap();
        let first = Db::open_exclusive(dir.path()).await.unwrap();
        let err = Db::open_exclusive(dir.path()).await.unwrap_err();
        assert!(matches!(err, DbError::InUse { .. }), "{err}");
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        // Shared openers (push, train) are not refused.
        Db::open(dir.path()).await.unwrap().close().await;
        first.close().await;
        Db::open_exclusive(dir.path()).await.unwrap().close().await;
    }
}
