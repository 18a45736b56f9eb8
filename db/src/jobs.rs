//! Jobs (training, and later tuning and transform) as a durable queue, and their logs.
//!
//! A job is one row of `jobs` keyed by `(kind, name)`: its SageMaker status and what runners
//! coordinate on are real columns (`status`, `owner`, `lease_expires_at`, `heartbeat_at`,
//! `attempts`, `created_at`), the rest of the record is the JSON `body`. A queued job is
//! `InProgress` with no owner. A runner takes one with [`Db::claim_job`], a single
//! `UPDATE … WHERE owner IS NULL … RETURNING` statement (its subquery `FOR UPDATE SKIP
//! LOCKED` on PostgreSQL), so two runners (threads, or processes on any hosts sharing the
//! database) never get the same job. While it runs, the runner renews
//! its lease ([`Db::heartbeat`]), which also tells it whether StopTrainingJob asked it to stop
//! (`Stopping`). Every later write by the runner is guarded by `owner = me`, so a runner that
//! lost its lease (it stalled and another reconciled the job) can no longer change the job.
//! A job whose lease expired is found by [`Db::expired_jobs`] and handed back to the queue or
//! ended by [`Db::reclaim`], guarded by the same lease check.
//!
//! Logs are rows of `job_logs` `(kind, job, seq, at_ms, message)`, appended by the job's
//! runner and read in order by `seq`.
//!
//! Times are seconds since the epoch (`f64`, as SageMaker's timestamps), log times
//! milliseconds (as CloudWatch's).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Backend, Db, DbError, DbOp, decode_named, encode_named, on_pool};

const JOBS: &str = "jobs";
const LOGS: &str = "job_logs";
const METRICS: &str = "job_metrics";
const COLUMNS: &str =
    "name, status, owner, attempts, lease_expires_at, heartbeat_at, created_at, body";

/// One intermediate metric point of a job (see [`Db::record_metric`]).
#[derive(Clone, Debug, PartialEq)]
pub struct MetricPoint {
    /// SageMaker's metric name (`validation:auc`, or a `MetricDefinitions` name).
    pub name: String,
    /// The epoch, boosting round or match number it was measured at (1-based).
    pub step: u64,
    /// When, in seconds since the epoch.
    pub at: f64,
    /// The value.
    pub value: f64,
}

/// What kind of job a row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// A training job.
    Training,
    /// A hyperparameter tuning job.
    Tuning,
    /// A batch transform job.
    Transform,
}

impl JobKind {
    /// The `kind` column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Training => "training",
            JobKind::Tuning => "tuning",
            JobKind::Transform => "transform",
        }
    }
}

/// SageMaker's job statuses (the same for training, tuning and transform jobs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub enum JobStatus {
    /// Queued or running.
    InProgress,
    /// Finished and published.
    Completed,
    /// Ended with an error (`FailureReason`).
    Failed,
    /// A stop was asked for; the runner has not ended the job yet.
    Stopping,
    /// Stopped by StopTrainingJob or its stopping condition.
    Stopped,
}

impl JobStatus {
    /// Every status, in SageMaker's order.
    pub const ALL: [JobStatus; 5] = [
        JobStatus::InProgress,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Stopping,
        JobStatus::Stopped,
    ];

    /// SageMaker's name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::InProgress => "InProgress",
            JobStatus::Completed => "Completed",
            JobStatus::Failed => "Failed",
            JobStatus::Stopping => "Stopping",
            JobStatus::Stopped => "Stopped",
        }
    }

    /// Parses SageMaker's name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Stopped
        )
    }
}

/// One job row: the coordination columns and the decoded body.
#[derive(Clone, Debug, PartialEq)]
pub struct JobRow<T> {
    /// The job's name.
    pub name: String,
    /// Its status (the column is the truth; a body's copy may lag behind a stop request).
    pub status: JobStatus,
    /// The runner that holds it, if any.
    pub owner: Option<String>,
    /// How many times a runner has claimed it.
    pub attempts: u32,
    /// When the holder's lease ends (seconds since the epoch).
    pub lease_expires_at: Option<f64>,
    /// The holder's last heartbeat.
    pub heartbeat_at: Option<f64>,
    /// When the job was created.
    pub created_at: f64,
    /// The job record.
    pub body: T,
}

/// A claimed job: the row as it was claimed.
pub type ClaimedJob<T> = JobRow<T>;

/// One log line of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobLogEvent {
    /// Position in the job's log, from 1.
    pub seq: i64,
    /// When it was written, in milliseconds since the epoch.
    pub at_ms: i64,
    /// The line.
    pub message: String,
}

/// Which log lines [`Db::read_logs`] returns.
#[derive(Clone, Debug, Default)]
pub struct LogQuery {
    /// Only lines after this `seq`.
    pub after_seq: Option<i64>,
    /// Only lines before this `seq`.
    pub before_seq: Option<i64>,
    /// Only lines at or after this time (ms).
    pub start_ms: Option<i64>,
    /// Only lines before this time (ms).
    pub end_ms: Option<i64>,
    /// At most this many lines.
    pub limit: u32,
    /// The first lines of the range when true, the last ones when false.
    pub from_head: bool,
}

/// What asking a job to stop did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// A runner holds it: its status is now `Stopping` and the runner will end it.
    Stopping,
    /// Nobody held it: it was taken off the queue (`Stopped`).
    Stopped,
    /// It was not in progress (already ended or stopping): nothing changed.
    NotInProgress,
}

type Row = (
    String,
    String,
    Option<String>,
    i64,
    Option<f64>,
    Option<f64>,
    f64,
    String,
);

fn row<T: DeserializeOwned>(r: Row) -> Result<JobRow<T>, DbError> {
    let (name, status, owner, attempts, lease_expires_at, heartbeat_at, created_at, body) = r;
    let body = decode_named(JOBS, &name, &body)?;
    let status = JobStatus::parse(&status).ok_or_else(|| DbError::Corrupt {
        table: JOBS,
        name: name.clone(),
        source: <serde_json::Error as serde::de::Error>::custom(format!(
            "unknown status {status:?}"
        )),
    })?;
    Ok(JobRow {
        name,
        status,
        owner,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        lease_expires_at,
        heartbeat_at,
        created_at,
        body,
    })
}

pub(crate) fn err(
    op: DbOp,
    table: &'static str,
    name: Option<&str>,
) -> impl FnOnce(sqlx::Error) -> DbError {
    let name = name.map(str::to_owned);
    move |source| DbError::Query {
        op,
        table,
        name,
        source,
    }
}

impl Db {
    /// Queues a new job (`InProgress`, no owner); `Ok(false)` if the name is taken.
    pub async fn insert_job<T: Serialize>(
        &self,
        kind: JobKind,
        name: &str,
        created_at: f64,
        body: &T,
    ) -> Result<bool, DbError> {
        self.injected_fault_named(DbOp::Insert, JOBS, name)?;
        let body = encode_named(JOBS, body)?;
        let done = on_pool!(self, p => sqlx::query(
            "INSERT INTO jobs (kind, name, status, attempts, created_at, body)
             VALUES ($1, $2, 'InProgress', 0, $3, $4) ON CONFLICT (kind, name) DO NOTHING",
        )
        .bind(kind.as_str())
        .bind(name)
        .bind(created_at)
        .bind(body)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(err(DbOp::Insert, JOBS, Some(name)))?;
        Ok(done == 1)
    }

    /// Reads one job.
    pub async fn get_job<T: DeserializeOwned>(
        &self,
        kind: JobKind,
        name: &str,
    ) -> Result<Option<JobRow<T>>, DbError> {
        let r: Option<Row> = on_pool!(self, p => sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE kind = $1 AND name = $2"
        ))
        .bind(kind.as_str())
        .bind(name)
        .fetch_optional(p)
        .await)
        .map_err(err(DbOp::Get, JOBS, Some(name)))?;
        r.map(row).transpose()
    }

    /// Reads every job of a kind, oldest first.
    pub async fn list_jobs<T: DeserializeOwned>(
        &self,
        kind: JobKind,
    ) -> Result<Vec<JobRow<T>>, DbError> {
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM jobs WHERE kind = $1 ORDER BY created_at, name"
        ))
        .bind(kind.as_str())
        .fetch_all(p)
        .await)
        .map_err(err(DbOp::List, JOBS, None))?;
        rows.into_iter().map(row).collect()
    }

    /// Claims the oldest queued job of `kind` for `owner`, with a lease until `now + lease`,
    /// counting the attempt: one atomic statement, so no two claimers get the same job.
    pub async fn claim_job<T: DeserializeOwned>(
        &self,
        kind: JobKind,
        owner: &str,
        now: f64,
        lease: f64,
    ) -> Result<Option<ClaimedJob<T>>, DbError> {
        self.injected_fault_named(DbOp::Update, JOBS, owner)?;
        // SQLite runs one writer at a time, so the statement alone is atomic. PostgreSQL runs
        // claimers side by side: the subquery locks the row it picks and skips rows another
        // claimer has locked, so concurrent claimers take different jobs (without it the
        // second would wait for the first, then find its pick taken and claim nothing).
        let lock = match self.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let r: Option<Row> = on_pool!(self, p => sqlx::query_as(&format!(
            "UPDATE jobs SET owner = $2, heartbeat_at = $3, lease_expires_at = $4,
                 attempts = attempts + 1
             WHERE kind = $1 AND status = 'InProgress' AND owner IS NULL AND name = (
                 SELECT name FROM jobs
                 WHERE kind = $1 AND status = 'InProgress' AND owner IS NULL
                 ORDER BY created_at, name LIMIT 1 {lock})
             RETURNING {COLUMNS}"
        ))
        .bind(kind.as_str())
        .bind(owner)
        .bind(now)
        .bind(now + lease)
        .fetch_optional(p)
        .await)
        .map_err(err(DbOp::Update, JOBS, None))?;
        r.map(row).transpose()
    }

    /// Renews `owner`'s lease on a running job and returns its status (`Stopping` when a
    /// stop was asked for); `None` when `owner` no longer holds it.
    pub async fn heartbeat(
        &self,
        kind: JobKind,
        name: &str,
        owner: &str,
        now: f64,
        lease: f64,
    ) -> Result<Option<JobStatus>, DbError> {
        let status: Option<(String,)> = on_pool!(self, p => sqlx::query_as(
            "UPDATE jobs SET heartbeat_at = $4, lease_expires_at = $5
             WHERE kind = $1 AND name = $2 AND owner = $3
               AND status IN ('InProgress', 'Stopping')
             RETURNING status",
        )
        .bind(kind.as_str())
        .bind(name)
        .bind(owner)
        .bind(now)
        .bind(now + lease)
        .fetch_optional(p)
        .await)
        .map_err(err(DbOp::Update, JOBS, Some(name)))?;
        Ok(status.and_then(|(s,)| JobStatus::parse(&s)))
    }

    /// Replaces a running job's body (a transition), if `owner` still holds it.
    pub async fn update_job_body<T: Serialize>(
        &self,
        kind: JobKind,
        name: &str,
        owner: &str,
        body: &T,
    ) -> Result<bool, DbError> {
        self.injected_fault_named(DbOp::Update, JOBS, name)?;
        let body = encode_named(JOBS, body)?;
        let done = on_pool!(self, p => sqlx::query(
            "UPDATE jobs SET body = $4
             WHERE kind = $1 AND name = $2 AND owner = $3
               AND status IN ('InProgress', 'Stopping')",
        )
        .bind(kind.as_str())
        .bind(name)
        .bind(owner)
        .bind(body)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(err(DbOp::Update, JOBS, Some(name)))?;
        Ok(done == 1)
    }

    /// Ends a running job with a terminal `status` and its final body, if `owner` still
    /// holds it; the lease is dropped.
    pub async fn finish_job<T: Serialize>(
        &self,
        kind: JobKind,
        name: &str,
        owner: &str,
        status: JobStatus,
        body: &T,
    ) -> Result<bool, DbError> {
        self.injected_fault_named(DbOp::Update, JOBS, name)?;
        let body = encode_named(JOBS, body)?;
        let done = on_pool!(self, p => sqlx::query(
            "UPDATE jobs SET status = $4, body = $5, lease_expires_at = NULL
             WHERE kind = $1 AND name = $2 AND owner = $3
               AND status IN ('InProgress', 'Stopping')",
        )
        .bind(kind.as_str())
        .bind(name)
        .bind(owner)
        .bind(status.as_str())
        .bind(body)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(err(DbOp::Update, JOBS, Some(name)))?;
        Ok(done == 1)
    }

    /// Asks a job to stop. A held job becomes `Stopping` (its runner ends it); a queued one
    /// becomes `Stopped` at once with `stopped_body` (built from the queued body).
    pub async fn stop_job<T: Serialize + DeserializeOwned>(
        &self,
        kind: JobKind,
        name: &str,
        stopped_body: impl FnOnce(T) -> T,
    ) -> Result<StopOutcome, DbError> {
        self.injected_fault_named(DbOp::Update, JOBS, name)?;
        let held = on_pool!(self, p => sqlx::query(
            "UPDATE jobs SET status = 'Stopping'
             WHERE kind = $1 AND name = $2 AND status = 'InProgress' AND owner IS NOT NULL",
        )
        .bind(kind.as_str())
        .bind(name)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(err(DbOp::Update, JOBS, Some(name)))?;
        if held == 1 {
            return Ok(StopOutcome::Stopping);
        }
        let Some(job) = self.get_job::<T>(kind, name).await? else {
            return Ok(StopOutcome::NotInProgress);
        };
        if job.status != JobStatus::InProgress || job.owner.is_some() {
            // Ended, stopping, or claimed since the first statement: ask again once.
            return self.stop_held(kind, name).await;
        }
        let body = encode_named(JOBS, &stopped_body(job.body))?;
        let queued = on_pool!(self, p => sqlx::query(
            "UPDATE jobs SET status = 'Stopped', body = $3
             WHERE kind = $1 AND name = $2 AND status = 'InProgress' AND owner IS NULL",
        )
        .bind(kind.as_str())
        .bind(name)
        .bind(body)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(err(DbOp::Update, JOBS, Some(name)))?;
        if queued == 1 {
            return Ok(StopOutcome::Stopped);
        }
        // Claimed between the read and the write.
        self.stop_held(kind, name).await
    }

    async fn stop_held(&self, kind: JobKind, name: &str) -> Result<StopOutcome, DbError> {
        let held = on_pool!(self, p => sqlx::query(
            "UPDATE jobs SET status = 'Stopping'
             WHERE kind = $1 AND name = $2 AND status = 'InProgress' AND owner IS NOT NULL",
        )
        .bind(kind.as_str())
        .bind(name)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(err(DbOp::Update, JOBS, Some(name)))?;
        Ok(if held == 1 {
            StopOutcome::Stopping
        } else {
            StopOutcome::NotInProgress
        })
    }

    /// Hands a running job back to the queue (its runner is shutting down), with `body`; the
    /// attempt is not counted. `Ok(false)` if `owner` no longer holds it in progress (a stop
    /// was asked for, or it was reclaimed).
    pub async fn release_job<T: Serialize>(
        &self,
        kind: JobKind,
        name: &str,
        owner: &str,
        body: &T,
    ) -> Result<bool, DbError> {
        let body = encode_named(JOBS, body)?;
        let done = on_pool!(self, p => sqlx::query(
            "UPDATE jobs SET owner = NULL, lease_expires_at = NULL, heartbeat_at = NULL,
                 attempts = attempts - 1, body = $4
             WHERE kind = $1 AND name = $2 AND owner = $3 AND status = 'InProgress'",
        )
        .bind(kind.as_str())
        .bind(name)
        .bind(owner)
        .bind(body)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(err(DbOp::Update, JOBS, Some(name)))?;
        Ok(done == 1)
    }

    /// Running jobs of `kind` whose holder's lease ended before `now` (their runner died
    /// or stalled).
    pub async fn expired_jobs<T: DeserializeOwned>(
        &self,
        kind: JobKind,
        now: f64,
    ) -> Result<Vec<JobRow<T>>, DbError> {
        let rows: Vec<Row> = on_pool!(self, p => sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM jobs
             WHERE kind = $1 AND status IN ('InProgress', 'Stopping')
               AND owner IS NOT NULL AND lease_expires_at < $2
             ORDER BY created_at, name"
        ))
        .bind(kind.as_str())
        .bind(now)
        .fetch_all(p)
        .await)
        .map_err(err(DbOp::List, JOBS, None))?;
        rows.into_iter().map(row).collect()
    }

    /// Takes a job away from `owner` whose lease ended before `now`: back to the queue
    /// (`status` `InProgress`) or ended (`Failed`, `Stopped`), with `body`. `Ok(false)` when
    /// the lease was renewed or another runner reclaimed it first.
    pub async fn reclaim<T: Serialize>(
        &self,
        kind: JobKind,
        name: &str,
        owner: &str,
        now: f64,
        status: JobStatus,
        body: &T,
    ) -> Result<bool, DbError> {
        self.injected_fault_named(DbOp::Update, JOBS, name)?;
        let body = encode_named(JOBS, body)?;
        let done = on_pool!(self, p => sqlx::query(
            "UPDATE jobs SET owner = NULL, lease_expires_at = NULL, heartbeat_at = NULL,
                 status = $5, body = $6
             WHERE kind = $1 AND name = $2 AND owner = $3 AND lease_expires_at < $4
               AND status IN ('InProgress', 'Stopping')",
        )
        .bind(kind.as_str())
        .bind(name)
        .bind(owner)
        .bind(now)
        .bind(status.as_str())
        .bind(body)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(err(DbOp::Update, JOBS, Some(name)))?;
        Ok(done == 1)
    }

    /// Records an intermediate metric point of a job: `name` (SageMaker's, `validation:auc`)
    /// was `value` at `step` (an epoch, a boosting round, or the n-th match of a
    /// `MetricDefinitions` regex), measured at `at` (seconds since the epoch). A point
    /// recorded again for the same step replaces the earlier one.
    pub async fn record_metric(
        &self,
        kind: JobKind,
        job: &str,
        point: &MetricPoint,
    ) -> Result<(), DbError> {
        self.record_metrics(kind, job, std::slice::from_ref(point))
            .await
    }

    /// A job's intermediate metric points, by name then step; only `name`'s when given.
    pub async fn read_metrics(
        &self,
        kind: JobKind,
        job: &str,
        name: Option<&str>,
    ) -> Result<Vec<MetricPoint>, DbError> {
        // Two statements rather than `$3 IS NULL OR …`, which PostgreSQL cannot type.
        let filter = if name.is_some() { "AND name = $3" } else { "" };
        let sql = format!(
            "SELECT name, step, at, value FROM job_metrics
             WHERE kind = $1 AND job = $2 {filter} ORDER BY name, step"
        );
        let rows = on_pool!(self, p => {
            let mut query = sqlx::query_as::<_, (String, i64, f64, f64)>(&sql)
                .bind(kind.as_str())
                .bind(job);
            if let Some(name) = name {
                query = query.bind(name);
            }
            query.fetch_all(p).await
        })
        .map_err(err(DbOp::List, METRICS, Some(job)))?;
        Ok(rows
            .into_iter()
            .map(|(name, step, at, value)| MetricPoint {
                name,
                step: u64::try_from(step).unwrap_or(0),
                at,
                value,
            })
            .collect())
    }

    /// Appends lines (`(at_ms, message)`, in order) to a job's log in one transaction: one
    /// disk sync for the lot, where [`Db::append_log`] costs one a line (a script printing
    /// thousands of lines).
    pub async fn append_logs(
        &self,
        kind: JobKind,
        job: &str,
        lines: &[(i64, String)],
    ) -> Result<(), DbError> {
        if lines.is_empty() {
            return Ok(());
        }
        on_pool!(self, p => async {
            let mut tx = p.begin().await?;
            for (at_ms, message) in lines {
                sqlx::query(
                    "INSERT INTO job_logs (kind, job, seq, at_ms, message)
                     VALUES ($1, $2,
                         (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_logs
                          WHERE kind = $1 AND job = $2),
                         $3, $4)",
                )
                .bind(kind.as_str())
                .bind(job)
                .bind(*at_ms)
                .bind(message)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        }
        .await)
        .map_err(err(DbOp::Insert, LOGS, Some(job)))?;
        Ok(())
    }

    /// Records metric points as [`Db::record_metric`] does, in one transaction.
    pub async fn record_metrics(
        &self,
        kind: JobKind,
        job: &str,
        points: &[MetricPoint],
    ) -> Result<(), DbError> {
        if points.is_empty() {
            return Ok(());
        }
        on_pool!(self, p => async {
            let mut tx = p.begin().await?;
            for point in points {
                let step = i64::try_from(point.step).unwrap_or(i64::MAX);
                sqlx::query(
                    "INSERT INTO job_metrics (kind, job, name, step, at, value)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (kind, job, name, step) DO UPDATE SET at = $5, value = $6",
                )
                .bind(kind.as_str())
                .bind(job)
                .bind(&point.name)
                .bind(step)
                .bind(point.at)
                .bind(point.value)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await
        }
        .await)
        .map_err(err(DbOp::Insert, METRICS, Some(job)))?;
        Ok(())
    }

    /// Appends a line to a job's log.
    pub async fn append_log(
        &self,
        kind: JobKind,
        job: &str,
        at_ms: i64,
        message: &str,
    ) -> Result<(), DbError> {
        on_pool!(self, p => sqlx::query(
            "INSERT INTO job_logs (kind, job, seq, at_ms, message)
             VALUES ($1, $2,
                 (SELECT COALESCE(MAX(seq), 0) + 1 FROM job_logs WHERE kind = $1 AND job = $2),
                 $3, $4)",
        )
        .bind(kind.as_str())
        .bind(job)
        .bind(at_ms)
        .bind(message)
        .execute(p)
        .await
        .map(|r| r.rows_affected()))
        .map_err(err(DbOp::Insert, LOGS, Some(job)))?;
        Ok(())
    }

    /// Reads a job's log lines, in order.
    pub async fn read_logs(
        &self,
        kind: JobKind,
        job: &str,
        q: &LogQuery,
    ) -> Result<Vec<JobLogEvent>, DbError> {
        let order = if q.from_head { "ASC" } else { "DESC" };
        let rows: Vec<(i64, i64, String)> = on_pool!(self, p => sqlx::query_as(&format!(
            "SELECT seq, at_ms, message FROM job_logs
             WHERE kind = $1 AND job = $2 AND seq > $3 AND seq < $4 AND at_ms >= $5 AND at_ms < $6
             ORDER BY seq {order} LIMIT $7"
        ))
        .bind(kind.as_str())
        .bind(job)
        .bind(q.after_seq.unwrap_or(0))
        .bind(q.before_seq.unwrap_or(i64::MAX))
        .bind(q.start_ms.unwrap_or(i64::MIN))
        .bind(q.end_ms.unwrap_or(i64::MAX))
        .bind(i64::from(q.limit))
        .fetch_all(p)
        .await)
        .map_err(err(DbOp::List, LOGS, Some(job)))?;
        let mut events: Vec<JobLogEvent> = rows
            .into_iter()
            .map(|(seq, at_ms, message)| JobLogEvent {
                seq,
                at_ms,
                message,
            })
            .collect();
        if !q.from_head {
            events.reverse();
        }
        Ok(events)
    }

    /// The first and last log times (ms) and the last `seq` of a job's log; `None` when it
    /// has no lines.
    pub async fn log_span(
        &self,
        kind: JobKind,
        job: &str,
    ) -> Result<Option<(i64, i64, i64)>, DbError> {
        let r: (Option<i64>, Option<i64>, Option<i64>) = on_pool!(self, p => sqlx::query_as(
            "SELECT MIN(at_ms), MAX(at_ms), MAX(seq) FROM job_logs WHERE kind = $1 AND job = $2",
        )
        .bind(kind.as_str())
        .bind(job)
        .fetch_one(p)
        .await)
        .map_err(err(DbOp::Get, LOGS, Some(job)))?;
        Ok(match r {
            (Some(a), Some(b), Some(c)) => Some((a, b, c)),
            _ => None,
        })
    }
}
