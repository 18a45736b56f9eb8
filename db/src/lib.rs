//! Pier's control-plane and job persistence in an embedded SQLite file through `sqlx`, shared
//! by the server (`pier serve`) and the job runner (`pier worker`), neither of which this crate
//! knows.
//!
//! Records (models, endpoint configs, endpoints, tags) are one row `(name, body)` with the
//! record as JSON, one table per kind (tags are keyed by the resource's ARN). Jobs ([`jobs`])
//! are rows with real columns for what the runner coordinates on (status, owner, lease expiry,
//! heartbeat, attempts) beside the JSON body, so claiming a job is one atomic statement. The SQL
//! is kept portable (no SQLite-only syntax, `$n` placeholders, `RETURNING`) so a PostgreSQL
//! pool can follow with the same statements. Writes are single statements, so a crash leaves
//! either the old or the new row.
//!
//! Errors are a typed [`DbError`] naming the operation and the table; the server turns them
//! into its API's 500 in one place. `pier serve` opens the database with
//! [`Db::open_exclusive`], which holds an exclusive lock on `pier.lock` next to `pier.db` for
//! the server's life, so a second server on the same folder is refused. Tests can make the
//! next writes fail ([`Db::fail_next_writes`]) as a full disk would.

pub mod jobs;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// The lock file next to `pier.db` that one `pier serve` holds for its life.
pub const LOCK_FILE: &str = "pier.lock";

pub use jobs::{
    ClaimedJob, JobKind, JobLogEvent, JobRow, JobStatus, LogQuery, MetricPoint, StopOutcome,
};

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
    /// The database could not be opened or its tables created.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The database file.
        path: PathBuf,
        /// The error.
        #[source]
        source: sqlx::Error,
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
    fn name(self) -> &'static str {
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

/// A handle to the control-plane database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    pool: SqlitePool,
    /// The serve lock, when this handle holds it; released by [`Db::close`].
    lock: Arc<Mutex<Option<File>>>,
    /// Writes left to fail (fault injection for tests).
    failing_writes: Arc<AtomicU32>,
}

impl Db {
    /// Opens (creating if needed) `<dir>/pier.db`, shared: other processes may open it too.
    pub async fn open(dir: &Path) -> Result<Self, DbError> {
        let path = dir.join("pier.db");
        let open_err = |source| DbError::Open {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(sqlx::Error::Io(e)))?;
        let url = format!("sqlite://{}", path.display());
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(open_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(open_err)?;
        for table in [
            Table::Models,
            Table::EndpointConfigs,
            Table::Endpoints,
            Table::Tags,
            Table::ScalableTargets,
            Table::ScalingPolicies,
            Table::ScalingActivities,
        ] {
            sqlx::query(&format!(
                "CREATE TABLE IF NOT EXISTS {} (name TEXT PRIMARY KEY, body TEXT NOT NULL)",
                table.name()
            ))
            .execute(&pool)
            .await
            .map_err(open_err)?;
        }
        for statement in jobs::SCHEMA {
            sqlx::query(statement)
                .execute(&pool)
                .await
                .map_err(open_err)?;
        }
        Ok(Self {
            pool,
            lock: Arc::default(),
            failing_writes: Arc::default(),
        })
    }

    /// Opens the database for `pier serve`: first takes an exclusive lock on
    /// `<dir>/pier.lock`, held until [`Db::close`], so a second server on the same data folder
    /// is refused with [`DbError::InUse`] (other processes that share the folder by design,
    /// such as `pier models push` and `pier train`, take no such lock).
    pub async fn open_exclusive(dir: &Path) -> Result<Self, DbError> {
        std::fs::create_dir_all(dir).map_err(|source| DbError::Lock {
            path: dir.join(LOCK_FILE),
            source,
        })?;
        let lock = lock_data_dir(dir)?;
        let db = Self::open(dir).await?;
        *db.lock.lock().unwrap_or_else(|e| e.into_inner()) = Some(lock);
        Ok(db)
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
        let done = sqlx::query(&sql)
            .bind(name)
            .bind(body)
            .execute(&self.pool)
            .await
            .map_err(Self::query_err(DbOp::Insert, table, Some(name)))?;
        Ok(done.rows_affected() == 1)
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
        sqlx::query(&sql)
            .bind(name)
            .bind(body)
            .execute(&self.pool)
            .await
            .map_err(Self::query_err(DbOp::Update, table, Some(name)))?;
        Ok(())
    }

    /// Reads one record.
    pub async fn get<T: DeserializeOwned>(
        &self,
        table: Table,
        name: &str,
    ) -> Result<Option<T>, DbError> {
        let sql = format!("SELECT body FROM {} WHERE name = $1", table.name());
        let row: Option<(String,)> = sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
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
        let row: Option<(String,)> = sqlx::query_as(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
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
        let done = sqlx::query(&sql)
            .bind(name)
            .bind(body)
            .bind(&seen.0)
            .execute(&self.pool)
            .await
            .map_err(Self::query_err(DbOp::Update, table, Some(name)))?;
        Ok(done.rows_affected() == 1)
    }

    /// Reads every record of a table, by name.
    pub async fn list<T: DeserializeOwned>(&self, table: Table) -> Result<Vec<T>, DbError> {
        let sql = format!("SELECT name, body FROM {} ORDER BY name", table.name());
        let rows: Vec<(String, String)> = sqlx::query_as(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(Self::query_err(DbOp::List, table, None))?;
        rows.into_iter()
            .map(|(name, body)| decode(table, &name, &body))
            .collect()
    }

    /// Deletes a record; `Ok(false)` if there was none.
    pub async fn delete(&self, table: Table, name: &str) -> Result<bool, DbError> {
        self.injected_fault(DbOp::Delete, table, name)?;
        let sql = format!("DELETE FROM {} WHERE name = $1", table.name());
        let done = sqlx::query(&sql)
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(Self::query_err(DbOp::Delete, table, Some(name)))?;
        Ok(done.rows_affected() == 1)
    }

    /// Closes the pool, flushing the write-ahead log, and releases the serve lock.
    pub async fn close(&self) {
        self.pool.close().await;
        self.lock.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
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
