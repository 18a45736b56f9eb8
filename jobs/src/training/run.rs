//! Running one claimed training job: Downloading (read the channels with
//! [`crate::channels::read_channel`]: S3 or local under the runner's import policy, bounded by
//! its byte limit, stopped by the job's cancel flag) → Training (on the runner's pool,
//! cancellable between units of work) → Uploading (publish to the store under the job's name,
//! then `model.tar.gz` through [`crate::output::write_model_tarball`], to S3 or a local folder)
//! → Completed, each transition written before its work starts, each step logged to the job's
//! log.
//!
//! A heartbeat task renews the lease every `heartbeat`, and sets the cancel flag with its
//! reason when StopTrainingJob asked (`Stopping`), `MaxRuntimeInSeconds` passed, the lease
//! was lost, or the runner shuts down; it also writes the latest training progress to the
//! log. The job ends as its reason says: Stopped, Stopped/MaxRuntimeExceeded, handed back to
//! the queue (shutdown), or untouched (lease lost: another runner owns it now). Every write
//! is guarded by this runner's ownership, so a runner that lost its job changes nothing.
//!
//! Nothing half-written is published: the store's publish is atomic, the tarball is built from
//! a scratch folder of this run's own and appears whole (one PUT, a completed multipart
//! upload, or a local rename), and a store version whose tarball could not be written is
//! removed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use pier_algorithms::builtin::{Algorithm, Dataset, Progress, TrainError, train_cancellable};
use pier_db::{JobKind, JobRow, JobStatus, MetricPoint};
use tokio::sync::{OwnedSemaphorePermit, watch};

use super::record::{MetricData, ModelArtifacts};
use super::test_channel::test_metrics;
use super::{TrainingJob, check, sagemaker_file_name};
use crate::channels::{ChannelError, read_channel};
use crate::error::JobsError;
use crate::output::write_model_tarball;
use crate::runner::{Runner, now};

/// Why a job's cancel flag was set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StopReason {
    /// StopTrainingJob.
    Stop,
    /// `MaxRuntimeInSeconds` passed.
    MaxRuntime,
    /// Another runner took the job over.
    LeaseLost,
    /// This runner is shutting down.
    Shutdown,
}

/// What the heartbeat and the training thread share.
#[derive(Default)]
pub(crate) struct Control {
    pub(crate) cancel: Arc<AtomicBool>,
    reason: Mutex<Option<StopReason>>,
    progress: Mutex<Option<Progress>>,
    pub(crate) progress_seq: AtomicU64,
    /// Every report's metrics since the last flush, as intermediate metric points (tuning's
    /// early stopping and Hyperband read them).
    pub(crate) points: Mutex<Vec<MetricPoint>>,
}

impl Control {
    fn stop(&self, reason: StopReason) {
        let mut r = self.reason.lock().unwrap_or_else(|e| e.into_inner());
        r.get_or_insert(reason);
        self.cancel.store(true, Ordering::SeqCst);
    }

    pub(crate) fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn check(&self) -> Result<(), Failure> {
        match self.reason() {
            Some(r) => Err(Failure::Stopped(r)),
            None => Ok(()),
        }
    }
}

/// How a run ended early.
pub(crate) enum Failure {
    Stopped(StopReason),
    Error(JobsError),
    /// The database refused a write; the job is left to reconciliation.
    Lost,
}

impl From<JobsError> for Failure {
    fn from(e: JobsError) -> Self {
        Failure::Error(e)
    }
}

/// The job's log writer.
pub(crate) struct Log {
    runner: Runner,
    job: String,
}

impl Log {
    pub(crate) async fn line(&self, message: impl AsRef<str>) {
        let at = (now() * 1000.0) as i64;
        if let Err(e) = self
            .runner
            .0
            .db
            .append_log(JobKind::Training, &self.job, at, message.as_ref())
            .await
        {
            tracing::warn!(job = %self.job, error = %e, "cannot write the job's log");
        }
    }
}

impl Log {
    /// Appends many lines at once (one transaction): a script's output.
    pub(crate) async fn lines(&self, lines: &[(i64, String)]) {
        if let Err(e) = self
            .runner
            .0
            .db
            .append_logs(JobKind::Training, &self.job, lines)
            .await
        {
            tracing::warn!(job = %self.job, error = %e, "cannot write the job's log");
        }
    }
}

/// The line a progress report is logged as: `#progress DONE/TOTAL name=value …`.
pub fn progress_line(p: &Progress) -> String {
    let mut line = format!("#progress {}/{}", p.done, p.total);
    for (k, v) in &p.metrics {
        line.push_str(&format!(" {k}={v:.6}"));
    }
    line
}

pub(crate) async fn run_job(
    runner: Runner,
    job: JobRow<TrainingJob>,
    stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let name = job.name.clone();
    let log = Log {
        runner: runner.clone(),
        job: name.clone(),
    };
    let control = Arc::new(Control::default());
    let mut body = job.body;
    let started = now();
    body.training_start_time = Some(started);
    let (done, finished) = tokio::sync::oneshot::channel();
    let heartbeat = tokio::spawn(heartbeat(
        runner.clone(),
        name.clone(),
        control.clone(),
        stop,
        finished,
        started,
        body.stopping_condition.max_runtime_in_seconds,
    ));
    let result = steps(&runner, &log, &control, &mut body, job.attempts).await;
    // The heartbeat is told to end, not aborted: an abort could cancel it while it records
    // the metric points it has taken, and those points would be lost.
    let _ = done.send(());
    let _ = heartbeat.await;
    flush_progress(&log, &control, &mut 0).await;
    finish(&runner, &log, body, result).await;
}

/// The job's work; `body` carries the transitions written so far.
async fn steps(
    runner: &Runner,
    log: &Log,
    control: &Arc<Control>,
    body: &mut TrainingJob,
    attempt: u32,
) -> Result<(String, String, BTreeMap<String, f64>), Failure> {
    if crate::script::script_kind(body).is_some() || crate::script::is_container_job(body) {
        return crate::script::run::steps(runner, log, control, body, attempt).await;
    }
    let inner = &runner.0;
    let name = body.training_job_name.clone();
    let checked = check(body)?;
    let algorithm = checked.algorithm;
    log.line(format!(
        "Pier training job {name}: {algorithm} (attempt {attempt}) on runner {}",
        inner.owner
    ))
    .await;
    transition(runner, body, "Downloading", "Downloading input data").await?;
    let mut options = super::read_options(algorithm);
    options.s3 = inner.config.s3.clone();
    options.local = inner.config.import_policy.clone();
    options.max_bytes = Some(inner.config.max_channel_bytes);
    options.cancel = Some(control.cancel.clone());
    let mut sets: BTreeMap<String, Dataset> = BTreeMap::new();
    for channel in &checked.channels {
        let set = match read_channel(channel, &options).await {
            Ok(set) => set,
            Err(ChannelError::Cancelled { .. }) => {
                control.check()?;
                return Err(Failure::Stopped(StopReason::Stop));
            }
            Err(e) => return Err(JobsError::from(e).into()),
        };
        log.line(format!(
            "Read channel {} ({}): {} records of {} features",
            channel.name,
            channel.uri,
            set.n_rows(),
            set.n_cols()
        ))
        .await;
        sets.insert(channel.name.clone(), set);
    }
    let Some(train_set) = sets.remove("train") else {
        return Err(JobsError::Invalid("InputDataConfig has no \"train\" channel".into()).into());
    };
    let (validation_set, test_set) = (sets.remove("validation"), sets.remove("test"));
    control.check()?;
    transition(
        runner,
        body,
        "Training",
        "Training image download completed. Training in progress.",
    )
    .await?;
    log.line(format!(
        "Training {algorithm} with hyperparameters {}",
        serde_json::to_string(&body.hyper_parameters).unwrap_or_default()
    ))
    .await;
    let trained = train_on_pool(
        runner,
        algorithm,
        body.hyper_parameters.clone(),
        train_set,
        validation_set,
        test_set,
        control.clone(),
    )
    .await?;
    control.check()?;
    transition(
        runner,
        body,
        "Uploading",
        "Uploading generated training model",
    )
    .await?;
    let (store, hp) = (inner.store.clone(), body.hyper_parameters.clone());
    let job_name = name.clone();
    let channels_json: Vec<(String, serde_json::Value)> = checked
        .channels
        .iter()
        .map(|c| (c.name.clone(), serde_json::json!(c.uri)))
        .collect();
    // The artifact goes into model.tar.gz from a file of its own, unique to this run.
    let scratch = tempfile::Builder::new()
        .prefix(&format!(".pier-job-{name}-"))
        .tempdir()
        .map_err(|e| JobsError::Invalid(format!("cannot create a scratch folder: {e}")))?;
    let file_name = sagemaker_file_name(algorithm);
    let artifact_path = scratch.path().join(file_name);
    let outcome = tokio::task::spawn_blocking({
        let artifact_path = artifact_path.clone();
        move || {
            std::fs::write(&artifact_path, &trained.artifact).map_err(|e| {
                JobsError::Invalid(format!("cannot write {}: {e}", artifact_path.display()))
            })?;
            let channels: Vec<(&str, serde_json::Value)> = channels_json
                .iter()
                .map(|(k, v)| (k.as_str(), v.clone()))
                .collect();
            crate::train::publish_trained(
                &store,
                &job_name,
                &hp,
                trained,
                &channels,
                Some(&job_name),
            )
        }
    })
    .await
    .map_err(|e| JobsError::Invalid(format!("publishing panicked: {e}")))??;
    let written = write_model_tarball(
        &body.output_data_config.s3_output_path,
        &name,
        &[(file_name.to_owned(), artifact_path)],
        &inner.config.s3,
    )
    .await;
    drop(scratch);
    let location = match written {
        Ok(location) => location,
        Err(e) => {
            // Nothing half-published: the store's version goes with the failed upload.
            let m = &outcome.manifest;
            if let Err(d) = inner.store.delete_version(&m.name, m.version) {
                tracing::warn!(error = %d, "cannot remove the version of a failed upload");
            }
            return Err(JobsError::from(e).into());
        }
    };
    let artifact = format!(
        "pier://{}/{}",
        outcome.manifest.name, outcome.manifest.version
    );
    log.line(format!("Published {artifact} and {location}"))
        .await;
    Ok((location, artifact, outcome.metrics))
}

/// Trains on the runner's pool, on a blocking thread; progress goes to `control`.
async fn train_on_pool(
    runner: &Runner,
    algorithm: Algorithm,
    hyperparameters: BTreeMap<String, String>,
    train_set: Dataset,
    validation_set: Option<Dataset>,
    test_set: Option<Dataset>,
    control: Arc<Control>,
) -> Result<pier_algorithms::builtin::TrainedModel, Failure> {
    let runner = runner.clone();
    let result = tokio::task::spawn_blocking(move || {
        let progress = |p: Progress| {
            let at = now();
            let step = p.done as u64;
            control
                .points
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(
                    p.metrics
                        .iter()
                        .filter(|(name, _)| *name != "train:progress")
                        .map(|(name, &value)| MetricPoint {
                            name: name.clone(),
                            step,
                            at,
                            value,
                        }),
                );
            *control.progress.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
            control.progress_seq.fetch_add(1, Ordering::Relaxed);
        };
        let trained = runner.0.pool.install(|| {
            let mut trained = train_cancellable(
                algorithm,
                &hyperparameters,
                &train_set,
                validation_set.as_ref(),
                &progress,
                &control.cancel,
            )
            .map_err(JobsError::from)?;
            if let Some(test) = &test_set {
                let metrics = test_metrics(algorithm, &trained.artifact, test)?;
                trained.metrics.extend(metrics);
            }
            Ok::<_, JobsError>(trained)
        });
        (trained, control)
    })
    .await
    .map_err(|e| JobsError::Invalid(format!("training panicked: {e}")))?;
    match result {
        (Ok(trained), _) => Ok(trained),
        (Err(JobsError::Train(TrainError::Cancelled)), control) => Err(Failure::Stopped(
            control.reason().unwrap_or(StopReason::Stop),
        )),
        (Err(e), _) => Err(Failure::Error(e)),
    }
}

/// Writes a transition (before its work starts).
pub(crate) async fn transition(
    runner: &Runner,
    body: &mut TrainingJob,
    status: &str,
    message: &str,
) -> Result<(), Failure> {
    body.transition(status, message, now());
    let written = runner
        .0
        .db
        .update_job_body(
            JobKind::Training,
            &body.training_job_name,
            &runner.0.owner,
            body,
        )
        .await;
    match written {
        Ok(true) => Ok(()),
        Ok(false) => Err(Failure::Stopped(StopReason::LeaseLost)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot record a job transition");
            Err(Failure::Lost)
        }
    }
}

async fn flush_progress(log: &Log, control: &Control, last: &mut u64) {
    let seq = control.progress_seq.load(Ordering::Relaxed);
    if seq == *last {
        return;
    }
    let points = std::mem::take(&mut *control.points.lock().unwrap_or_else(|e| e.into_inner()));
    if let Err(e) = log
        .runner
        .0
        .db
        .record_metrics(JobKind::Training, &log.job, &points)
        .await
    {
        tracing::warn!(job = %log.job, error = %e, "cannot record metric points");
    }
    *last = seq;
    let line = control
        .progress
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(progress_line);
    if let Some(line) = line {
        log.line(line).await;
    }
}

async fn heartbeat(
    runner: Runner,
    name: String,
    control: Arc<Control>,
    mut stop: watch::Receiver<bool>,
    mut finished: tokio::sync::oneshot::Receiver<()>,
    started: f64,
    max_runtime: Option<i64>,
) {
    let config = runner.0.config.clone();
    let log = Log {
        runner: runner.clone(),
        job: name.clone(),
    };
    let mut logged = 0;
    loop {
        if *stop.borrow() {
            control.stop(StopReason::Shutdown);
        }
        tokio::select! {
            _ = tokio::time::sleep(config.heartbeat) => {}
            _ = &mut finished => return,
            changed = stop.changed() => {
                if changed.is_err() {
                    // The runner's handle is gone: stop, and keep the heartbeat's pace.
                    control.stop(StopReason::Shutdown);
                    tokio::select! {
                        _ = tokio::time::sleep(config.heartbeat) => {}
                        _ = &mut finished => return,
                    }
                } else if *stop.borrow() {
                    control.stop(StopReason::Shutdown);
                }
            }
        }
        flush_progress(&log, &control, &mut logged).await;
        let at = now();
        match runner
            .0
            .db
            .heartbeat(
                JobKind::Training,
                &name,
                &runner.0.owner,
                at,
                config.lease.as_secs_f64(),
            )
            .await
        {
            Ok(Some(JobStatus::Stopping)) => control.stop(StopReason::Stop),
            Ok(Some(_)) => {}
            Ok(None) => control.stop(StopReason::LeaseLost),
            Err(e) => tracing::warn!(job = %name, error = %e, "heartbeat failed"),
        }
        if let Some(max) = max_runtime
            && at - started > max as f64
        {
            control.stop(StopReason::MaxRuntime);
        }
    }
}

/// Records how the run ended.
async fn finish(
    runner: &Runner,
    log: &Log,
    mut body: TrainingJob,
    result: Result<(String, String, BTreeMap<String, f64>), Failure>,
) {
    let inner = &runner.0;
    let name = body.training_job_name.clone();
    let at = now();
    let status = match result {
        Ok((location, artifact, metrics)) => {
            body.model_artifacts = ModelArtifacts {
                s3_model_artifacts: location,
            };
            body.pier_artifact = Some(artifact);
            body.final_metric_data_list = metrics
                .iter()
                .map(|(k, v)| MetricData {
                    metric_name: k.clone(),
                    value: *v,
                    timestamp: at,
                })
                .collect();
            for (k, v) in &metrics {
                log.line(format!("#metric {k}={v}")).await;
            }
            body.transition("Completed", "Training job completed", at);
            body.end(JobStatus::Completed, at);
            log.line("Training job completed").await;
            JobStatus::Completed
        }
        Err(Failure::Stopped(StopReason::Stop)) => {
            body.transition("Stopped", "Training job stopped by StopTrainingJob", at);
            body.end(JobStatus::Stopped, at);
            log.line("Training job stopped by StopTrainingJob").await;
            JobStatus::Stopped
        }
        Err(Failure::Stopped(StopReason::MaxRuntime)) => {
            let max = body.stopping_condition.max_runtime_in_seconds.unwrap_or(0);
            let message = format!(
                "Training job stopped: it ran longer than StoppingCondition.MaxRuntimeInSeconds ({max} s)"
            );
            body.transition("MaxRuntimeExceeded", message.clone(), at);
            body.end(JobStatus::Stopped, at);
            log.line(message).await;
            JobStatus::Stopped
        }
        Err(Failure::Stopped(StopReason::LeaseLost)) | Err(Failure::Lost) => {
            tracing::warn!(job = %name, "lost the job to another runner; leaving it");
            return;
        }
        Err(Failure::Stopped(StopReason::Shutdown)) => {
            body.transition("Starting", "Requeued: the runner running it shut down", at);
            body.training_start_time = None;
            match inner
                .db
                .release_job(JobKind::Training, &name, &inner.owner, &body)
                .await
            {
                Ok(true) => {
                    log.line("Requeued: the runner shut down").await;
                    return;
                }
                Ok(false) => {
                    // A stop was asked for meanwhile: end it as stopped.
                    body.transition("Stopped", "Training job stopped by StopTrainingJob", at);
                    body.end(JobStatus::Stopped, at);
                    JobStatus::Stopped
                }
                Err(e) => {
                    tracing::warn!(job = %name, error = %e, "cannot requeue the job");
                    return;
                }
            }
        }
        Err(Failure::Error(e)) => {
            let reason = e.to_string();
            body.failure_reason = Some(reason.clone());
            body.transition("Failed", reason.clone(), at);
            body.end(JobStatus::Failed, at);
            log.line(format!("Training job failed: {reason}")).await;
            JobStatus::Failed
        }
    };
    match inner
        .db
        .finish_job(JobKind::Training, &name, &inner.owner, status, &body)
        .await
    {
        Ok(true) => tracing::info!(job = %name, status = status.as_str(), "training job ended"),
        Ok(false) => tracing::warn!(job = %name, "the job was taken over before it ended"),
        Err(e) => tracing::error!(job = %name, error = %e, "cannot record the job's end"),
    }
}
