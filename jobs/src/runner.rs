//! The runner: a durable queue of jobs in `pier-db`, claimed atomically by any number of
//! runners sharing the database (`pier serve --job-slots N` in-process, `pier worker` alone).
//!
//! One tokio task loops: reconcile (jobs whose runner died: their lease ran out, or their
//! process on this host is gone), then claim queued jobs while a slot is free, then sleep
//! until woken ([`Runner::wake`], called by CreateTrainingJob in the same process), a slot
//! frees, or the poll interval passes (jobs queued by another process). Each claimed job runs
//! as its own task (training jobs first, then transform jobs: [`crate::training::run`],
//! `crate::transform::job`; a tuning job's task, which only plans and watches its children,
//! holds one of `tuning_slots` rather than a training slot); training itself runs on the
//! runner's rayon pool of `training_threads`, never the global pool nor the server's compute
//! threads. Transform jobs get their models from the [`crate::transform::ModelSource`] given
//! with [`Runner::set_model_source`].
//!
//! Runners name themselves `HOST/PID/NONCE`. A runner never reconciles its own jobs; a job
//! whose owner is a process of this host that no longer exists is reconciled at once (a
//! `kill -9`ed `pier serve` restarted), others when their lease ends.
//!
//! Shutdown ([`RunnerHandle::shutdown`]) stops claiming, cancels running jobs at their next
//! unit of work and hands them back to the queue without counting the attempt.

use std::sync::Arc;
use std::time::Duration;

use pier_db::{Db, JobKind, JobStatus};
use pier_model_store::{ImportPolicy, ModelStore};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::channels::S3Config;
use crate::error::{JobsError, Result};
use crate::training::TrainingJob;
use crate::tuning::TuningJob;

/// How a runner runs jobs.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Jobs run at once.
    pub slots: usize,
    /// Threads of the training pool (shared by this runner's jobs).
    pub training_threads: usize,
    /// How long a claim holds without a heartbeat.
    pub lease: Duration,
    /// How often a running job renews its lease, checks for a stop request and its
    /// `MaxRuntimeInSeconds`, and logs progress.
    pub heartbeat: Duration,
    /// How often the queue is checked when nothing wakes the runner.
    pub poll: Duration,
    /// Which local paths channels may name: the server's import roots (`--import-root`), as
    /// for CreateModel's `ModelDataUrl`.
    pub import_policy: ImportPolicy,
    /// Most bytes (decompressed) one channel may hold.
    pub max_channel_bytes: u64,
    /// How channels and outputs reach S3 (the AWS environment variables by default).
    pub s3: S3Config,
    /// How script jobs run (interpreter, grace period, job folders, whether at all).
    pub script: crate::script::ScriptConfig,
    /// Tuning jobs coordinated at once. A tuning job's task only plans and watches its
    /// children (which take training slots like any training job), so it holds no slot.
    pub tuning_slots: usize,
}

/// The default of [`RunnerConfig::max_channel_bytes`]: 16 GiB.
pub const MAX_CHANNEL_BYTES: u64 = 16 << 30;

impl Default for RunnerConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            slots: 1,
            training_threads: (cores / 2).max(1),
            lease: Duration::from_secs(15),
            heartbeat: Duration::from_millis(250),
            poll: Duration::from_millis(500),
            import_policy: ImportPolicy::anywhere(),
            max_channel_bytes: MAX_CHANNEL_BYTES,
            s3: S3Config::from_env(),
            script: crate::script::ScriptConfig::default(),
            tuning_slots: 16,
        }
    }
}

/// A runner. Cheap to clone.
#[derive(Clone)]
pub struct Runner(pub(crate) Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) db: Db,
    pub(crate) store: ModelStore,
    pub(crate) pool: rayon::ThreadPool,
    pub(crate) config: RunnerConfig,
    pub(crate) owner: String,
    /// Where transform jobs get their models (set by whoever starts the runner).
    pub(crate) models: std::sync::OnceLock<Arc<dyn crate::transform::ModelSource>>,
    wake: Notify,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("owner", &self.0.owner)
            .field("config", &self.0.config)
            .finish()
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// This host's name as runners write it in their owner name (`HOST/PID/NONCE`).
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty() && !h.contains('/'))
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Whether `owner` (`HOST/PID/NONCE`) is a process of this host that no longer exists.
fn owner_is_gone(owner: &str) -> bool {
    let mut parts = owner.split('/');
    let (Some(h), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    if h != host() || pid == std::process::id().to_string() {
        return false;
    }
    cfg!(target_os = "linux")
        && pid.bytes().all(|b| b.is_ascii_digit())
        && !std::path::Path::new("/proc").join(pid).exists()
}

impl Runner {
    /// A runner over a database and store; builds its training pool.
    pub fn new(db: Db, store: ModelStore, config: RunnerConfig) -> Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.training_threads.max(1))
            .thread_name(|i| format!("pier-train-{i}"))
            .build()
            .map_err(|e| JobsError::Pool(e.to_string()))?;
        let owner = format!(
            "{}/{}/{:08x}",
            host(),
            std::process::id(),
            fastrand::u32(..)
        );
        Ok(Self(Arc::new(Inner {
            db,
            store,
            pool,
            config,
            owner,
            models: std::sync::OnceLock::new(),
            wake: Notify::new(),
        })))
    }

    /// This runner's name in the `owner` column.
    pub fn owner(&self) -> &str {
        &self.0.owner
    }

    /// Gives transform jobs their models (the server's control-plane Models); without it they
    /// fail saying so. Set once; later calls are ignored.
    pub fn set_model_source(&self, models: Arc<dyn crate::transform::ModelSource>) {
        let _ = self.0.models.set(models);
    }

    /// Looks at the queue now (a job was just queued).
    pub fn wake(&self) {
        self.0.wake.notify_one();
    }

    /// Starts the loop.
    pub fn start(&self) -> RunnerHandle {
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(run_loop(self.clone(), rx));
        tracing::info!(owner = %self.0.owner, slots = self.0.config.slots,
            training_threads = self.0.config.training_threads, "job runner started");
        RunnerHandle { stop, task }
    }

    /// Ends or requeues jobs whose runner died; returns how many it took over.
    pub async fn reconcile(&self) -> Result<usize> {
        let db = &self.0.db;
        let at = now();
        let held = db
            .expired_jobs::<TrainingJob>(JobKind::Training, f64::MAX)
            .await?;
        let mut taken = 0;
        for job in held {
            let owner = job.owner.clone().unwrap_or_default();
            if owner == self.0.owner {
                continue;
            }
            let gone = owner_is_gone(&owner);
            let expired = job.lease_expires_at.is_some_and(|t| t < at);
            if !gone && !expired {
                continue;
            }
            let why = if gone {
                format!("the process running it ({owner}) ended before the job did")
            } else {
                format!("the runner running it ({owner}) stopped renewing its lease")
            };
            let mut body = job.body;
            let container = crate::script::is_container_job(&body);
            let script = crate::script::script_kind(&body).is_some() || container;
            let max_retries = body.max_retries();
            let (status, line) = if job.status == JobStatus::Stopping {
                body.transition("Stopped", format!("Training job stopped ({why})"), at);
                body.end(JobStatus::Stopped, at);
                (JobStatus::Stopped, format!("Stopped: {why}"))
            } else if job.attempts <= max_retries {
                let message = format!(
                    "Retrying (attempt {} of {}): {why}",
                    job.attempts + 1,
                    max_retries + 1
                );
                body.transition("Starting", message.clone(), at);
                (JobStatus::InProgress, message)
            } else {
                let reason = if max_retries > 0 {
                    format!("{why}; all {} attempts were used", max_retries + 1)
                } else {
                    format!("{why}; set RetryStrategy to retry")
                };
                body.failure_reason = Some(reason.clone());
                body.transition("Failed", reason.clone(), at);
                body.end(JobStatus::Failed, at);
                (JobStatus::Failed, format!("Failed: {reason}"))
            };
            let bound = if gone { f64::MAX } else { at };
            if db
                .reclaim(JobKind::Training, &job.name, &owner, bound, status, &body)
                .await?
            {
                tracing::warn!(job = %job.name, %owner, status = status.as_str(), "reconciled a job whose runner died");
                if script {
                    // A script the dead runner started may still run on this host.
                    let (config, name) = (self.0.config.script.clone(), job.name.clone());
                    let reaped = tokio::task::spawn_blocking(move || {
                        crate::script::reap(&config, &name, container)
                    })
                    .await
                    .unwrap_or(0);
                    if reaped > 0 {
                        tracing::warn!(job = %job.name, reaped, "killed the processes of a script job whose runner died");
                    }
                }
                let _ = db
                    .append_log(JobKind::Training, &job.name, (at * 1000.0) as i64, &line)
                    .await;
                taken += 1;
            }
        }
        taken += crate::transform::job::reconcile(self, owner_is_gone).await?;
        for job in db
            .expired_jobs::<TuningJob>(JobKind::Tuning, f64::MAX)
            .await?
        {
            let owner = job.owner.clone().unwrap_or_default();
            if owner == self.0.owner {
                continue;
            }
            let gone = owner_is_gone(&owner);
            if !gone && !job.lease_expires_at.is_some_and(|t| t < at) {
                continue;
            }
            let bound = if gone { f64::MAX } else { at };
            let name = job.name.clone();
            if crate::tuning::run::reconcile(db, job, &owner, bound).await? {
                tracing::warn!(job = %name, %owner, "reconciled a tuning job whose runner died");
                taken += 1;
            }
        }
        Ok(taken)
    }
}

/// A started runner.
#[derive(Debug)]
pub struct RunnerHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl RunnerHandle {
    /// Stops claiming, cancels running jobs and hands them back to the queue; returns when
    /// they have.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "job runner task failed");
        }
    }
}

/// Claims the oldest queued job of each kind in turn and starts it; `Ok(false)` when none is
/// queued.
async fn claim(
    runner: &Runner,
    permit: tokio::sync::OwnedSemaphorePermit,
    stop: &watch::Receiver<bool>,
    running: &mut JoinSet<()>,
) -> Result<bool> {
    let (db, owner) = (&runner.0.db, runner.0.owner.as_str());
    let lease = runner.0.config.lease.as_secs_f64();
    if let Some(job) = db
        .claim_job::<TrainingJob>(JobKind::Training, owner, now(), lease)
        .await?
    {
        tracing::info!(job = %job.name, attempt = job.attempts, "training job claimed");
        running.spawn(crate::training::run::run_job(
            runner.clone(),
            job,
            stop.clone(),
            permit,
        ));
        return Ok(true);
    }
    if let Some(job) = db
        .claim_job::<crate::transform::TransformJob>(JobKind::Transform, owner, now(), lease)
        .await?
    {
        tracing::info!(job = %job.name, attempt = job.attempts, "transform job claimed");
        running.spawn(crate::transform::job::run_job(
            runner.clone(),
            job,
            stop.clone(),
            permit,
        ));
        return Ok(true);
    }
    Ok(false)
}

async fn run_loop(runner: Runner, mut stop: watch::Receiver<bool>) {
    let config = runner.0.config.clone();
    let slots = Arc::new(Semaphore::new(config.slots));
    let tuning_slots = Arc::new(Semaphore::new(config.tuning_slots.max(1)));
    let mut running = JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        if let Err(e) = runner.reconcile().await {
            tracing::warn!(error = %e, "job reconciliation failed");
        }
        while let Ok(permit) = slots.clone().try_acquire_owned() {
            match claim(&runner, permit, &stop, &mut running).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim a job");
                    break;
                }
            }
        }
        while let Ok(permit) = tuning_slots.clone().try_acquire_owned() {
            let claimed = runner
                .0
                .db
                .claim_job::<TuningJob>(
                    JobKind::Tuning,
                    &runner.0.owner,
                    now(),
                    config.lease.as_secs_f64(),
                )
                .await;
            match claimed {
                Ok(Some(job)) => {
                    tracing::info!(job = %job.name, attempt = job.attempts, "tuning job claimed");
                    running.spawn(crate::tuning::run::run_tuning(
                        runner.clone(),
                        job,
                        stop.clone(),
                        permit,
                    ));
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot claim a tuning job");
                    break;
                }
            }
        }
        while let Some(done) = running.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "a job task failed");
            }
        }
        tokio::select! {
            _ = runner.0.wake.notified() => {}
            _ = tokio::time::sleep(config.poll) => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a job task failed");
                }
            }
        }
    }
    while let Some(done) = running.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "a job task failed");
        }
    }
    tracing::info!(owner = %runner.0.owner, "job runner stopped");
}
