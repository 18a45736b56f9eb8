//! Serving replicas on one database: their heartbeats, and the changes they tell each other
//! about.
//!
//! Each `pier serve` upserts a row of `replicas` every few seconds ([`Db::beat_replica`]);
//! [`Db::live_replicas`] lists those that beat recently, by the database's clock (so replicas
//! on hosts with skewed clocks agree), and a replica that stops cleanly removes its row
//! ([`Db::remove_replica`]).
//!
//! Every write of a record (models, endpoint configs, endpoints, tags, scaling) is announced on
//! PostgreSQL with `NOTIFY pier_changes, '<table>:<name>'` in the writing transaction.
//! [`Db::subscribe_changes`] hands out receivers of those announcements, fed by one listener
//! task per [`Db`] with a connection of its own. When the listener (re)connects it sends a
//! [`Change::ALL`] (`table` `*`): announcements made while it was away are lost, so the
//! subscriber reconciles everything. On SQLite (one server per database) nothing is
//! announced, and the receivers never yield.

use std::sync::Mutex;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::{
    Backend, CHANGES_CHANNEL, Db, DbError, DbOp, Pool, decode_named, encode_named, on_pool,
};

const REPLICAS: &str = "replicas";

/// How many changes a slow subscriber may fall behind before it sees
/// [`broadcast::error::RecvError::Lagged`] (and should reconcile everything).
const CHANGES_BUFFER: usize = 1024;

/// One replica's heartbeat, as it writes it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaBeat {
    /// The replica's id (unique per process: host, pid and a nonce, say).
    pub id: String,
    /// When the replica started, in seconds since the epoch.
    pub started_at: f64,
    /// Where it listens (data plane, control plane, gRPC), as the server lays them out.
    pub addresses: serde_json::Value,
    /// What it serves (endpoints and their configs), as the server lays it out.
    pub serving: serde_json::Value,
}

/// One replica's row: its last heartbeat.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaRow {
    /// The replica's id.
    pub id: String,
    /// When it started (seconds since the epoch).
    pub started_at: f64,
    /// When it last beat, by the database's clock (seconds since the epoch).
    pub at: f64,
    /// Where it listens.
    pub addresses: serde_json::Value,
    /// What it serves.
    pub serving: serde_json::Value,
}

/// A record that changed: `table` is a [`crate::Table`]'s name and `name` the record's (for
/// tags, the resource's ARN). `table` `*` means "anything may have changed".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The table (`models`, `endpoint_configs`, `endpoints`, `tags`, `scalable_targets`,
    /// `scaling_policies`, `scaling_activities`), or `*`.
    pub table: String,
    /// The record's name (empty with `*`).
    pub name: String,
}

impl Change {
    /// The `table` of a change that asks for a full reconcile.
    pub const ALL: &'static str = "*";

    fn all() -> Self {
        Self {
            table: Self::ALL.to_owned(),
            name: String::new(),
        }
    }

    /// Parses a notification's payload, `<table>:<name>`.
    fn parse(payload: &str) -> Option<Self> {
        let (table, name) = payload.split_once(':')?;
        Some(Self {
            table: table.to_owned(),
            name: name.to_owned(),
        })
    }

    /// Whether this asks for a full reconcile.
    pub fn is_all(&self) -> bool {
        self.table == Self::ALL
    }
}

/// The change feed of one [`Db`]: the broadcast sender (kept here so receivers stay open on
/// SQLite) and the PostgreSQL listener task, started by the first subscriber.
#[derive(Debug)]
pub(crate) struct Changes {
    tx: broadcast::Sender<Change>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Default for Changes {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(CHANGES_BUFFER).0,
            task: Mutex::new(None),
        }
    }
}

impl Changes {
    pub(crate) fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.stop();
    }
}

type ReplicaTuple = (String, f64, f64, String, String);

impl Db {
    /// The database's clock expression, in seconds since the epoch.
    fn now_sql(&self) -> &'static str {
        match self.backend() {
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)",
            Backend::Sqlite => "((julianday('now') - 2440587.5) * 86400.0)",
        }
    }

    /// The database's clock, in seconds since the epoch (what [`ReplicaRow::at`] is measured
    /// by).
    pub async fn clock(&self) -> Result<f64, DbError> {
        let sql = format!("SELECT {}", self.now_sql());
        let (now,): (f64,) = on_pool!(self, p => sqlx::query_as(&sql).fetch_one(p).await)
            .map_err(crate::jobs::err(DbOp::Get, "clock", None))?;
        Ok(now)
    }

    /// Records a replica's heartbeat: inserts or replaces its row, `at` set to the database's
    /// clock now.
    pub async fn beat_replica(&self, beat: &ReplicaBeat) -> Result<(), DbError> {
        let now = self.now_sql();
        let sql = format!(
            "INSERT INTO replicas (id, started_at, at, addresses, serving)
             VALUES ($1, $2, {now}, $3, $4)
             ON CONFLICT (id) DO UPDATE SET started_at = $2, at = {now}, addresses = $3,
                 serving = $4"
        );
        let addresses = encode_named(REPLICAS, &beat.addresses)?;
        let serving = encode_named(REPLICAS, &beat.serving)?;
        on_pool!(self, p => sqlx::query(&sql)
            .bind(&beat.id)
            .bind(beat.started_at)
            .bind(&addresses)
            .bind(&serving)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(crate::jobs::err(DbOp::Update, REPLICAS, Some(&beat.id)))?;
        Ok(())
    }

    /// The replicas whose last heartbeat is at most `max_age` old, by id.
    pub async fn live_replicas(&self, max_age: Duration) -> Result<Vec<ReplicaRow>, DbError> {
        let sql = format!(
            "SELECT id, started_at, at, addresses, serving FROM replicas
             WHERE at >= {} - $1 ORDER BY id",
            self.now_sql()
        );
        let rows: Vec<ReplicaTuple> = on_pool!(self, p => sqlx::query_as(&sql)
            .bind(max_age.as_secs_f64())
            .fetch_all(p)
            .await)
        .map_err(crate::jobs::err(DbOp::List, REPLICAS, None))?;
        rows.into_iter()
            .map(|(id, started_at, at, addresses, serving)| {
                Ok(ReplicaRow {
                    addresses: decode_named(REPLICAS, &id, &addresses)?,
                    serving: decode_named(REPLICAS, &id, &serving)?,
                    id,
                    started_at,
                    at,
                })
            })
            .collect()
    }

    /// Removes a replica's row (it is stopping); `Ok(false)` if there was none.
    pub async fn remove_replica(&self, id: &str) -> Result<bool, DbError> {
        let done = on_pool!(self, p => sqlx::query("DELETE FROM replicas WHERE id = $1")
            .bind(id)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(crate::jobs::err(DbOp::Delete, REPLICAS, Some(id)))?;
        Ok(done == 1)
    }

    /// Removes the rows of replicas silent for longer than `max_age` (they died without
    /// removing their own); returns how many.
    pub async fn prune_replicas(&self, max_age: Duration) -> Result<u64, DbError> {
        let sql = format!("DELETE FROM replicas WHERE at < {} - $1", self.now_sql());
        let done = on_pool!(self, p => sqlx::query(&sql)
            .bind(max_age.as_secs_f64())
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(crate::jobs::err(DbOp::Delete, REPLICAS, None))?;
        Ok(done)
    }

    /// A receiver of record changes made by any process on this database (this one
    /// included). On PostgreSQL the first call starts the listener task (it must be called
    /// within a tokio runtime); the first [`Change::ALL`] arrives once it listens, and another
    /// after every reconnect. On SQLite the receiver never yields.
    pub fn subscribe_changes(&self) -> broadcast::Receiver<Change> {
        let rx = self.changes.tx.subscribe();
        if let Pool::Postgres(pool) = &self.pool {
            let mut task = self.changes.task.lock().unwrap_or_else(|e| e.into_inner());
            if task.is_none() {
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        // A pool of its own, so the listener never takes one of the pool's
                        // connections for good.
                        let options = (*pool.connect_options()).clone();
                        let listen_pool = PgPoolOptions::new()
                            .max_connections(1)
                            .acquire_timeout(crate::ACQUIRE_TIMEOUT)
                            .connect_lazy_with(options);
                        let tx = self.changes.tx.clone();
                        *task = Some(rt.spawn(listen(listen_pool, tx, self.url().to_owned())));
                    }
                    Err(_) => tracing::error!(
                        "subscribe_changes outside a tokio runtime: no change notifications"
                    ),
                }
            }
        }
        rx
    }
}

/// The listener task: LISTEN, forward each notification, and on any loss reconnect with a
/// growing pause (up to 2 s), announcing [`Change::ALL`] each time it listens again.
async fn listen(pool: PgPool, tx: broadcast::Sender<Change>, url: String) {
    let mut pause = Duration::from_millis(100);
    loop {
        let listener = async {
            let mut l = PgListener::connect_with(&pool).await?;
            l.listen(CHANGES_CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        }
        .await;
        let mut listener = match listener {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, database = %url, "cannot listen for changes; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        tracing::debug!(database = %url, "listening for changes");
        pause = Duration::from_millis(100);
        let _ = tx.send(Change::all());
        loop {
            match listener.try_recv().await {
                Ok(Some(n)) => match Change::parse(n.payload()) {
                    Some(change) => {
                        let _ = tx.send(change);
                    }
                    None => tracing::warn!(payload = n.payload(), "unexpected change notification"),
                },
                Ok(None) => {
                    tracing::warn!(database = %url, "lost the change listener's connection; reconnecting");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, database = %url, "change listener failed; reconnecting");
                    break;
                }
            }
        }
        drop(listener);
        tokio::time::sleep(pause).await;
    }
}
