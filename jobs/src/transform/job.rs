//! A claimed transform job on the runner: its start written before acting, a heartbeat that
//! renews the lease, turns StopTransformJob (or the runner's shutdown) into the cancel flag and
//! writes progress to the record (`PierProgress`) and the log every second, the work itself
//! ([`super::run::execute`]), and its end (Completed, Failed with the reason, Stopped, or handed
//! back to the queue on shutdown); and the reconciliation of transform jobs whose runner died.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pier_db::{JobKind, JobRow, JobStatus};
use tokio::sync::{OwnedSemaphorePermit, watch};

use super::engine::{Predictor, Progress};
use super::record::PierProgress;
use super::run::{Context, ShardSpec, execute};
use super::{TransformJob, check};
use crate::runner::{Runner, now};

/// Why a running job's cancel flag was set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopReason {
    Stop,
    LeaseLost,
    Shutdown,
}

struct Control {
    cancel: Arc<AtomicBool>,
    reason: std::sync::Mutex<Option<StopReason>>,
}

impl Control {
    fn stop(&self, reason: StopReason) {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(reason);
        self.cancel.store(true, Ordering::SeqCst);
    }

    fn reason(&self) -> Option<StopReason> {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn log_line(runner: &Runner, job: &str, message: impl AsRef<str>) {
    let at = (now() * 1000.0) as i64;
    if let Err(e) = runner
        .0
        .db
        .append_log(JobKind::Transform, job, at, message.as_ref())
        .await
    {
        tracing::warn!(job, error = %e, "cannot write the job's log");
    }
}

fn snapshot(p: &Progress, totals: (u64, u64), started: f64) -> PierProgress {
    let records = p.records.load(Ordering::Relaxed);
    let secs = (now() - started).max(1e-3);
    PierProgress {
        objects_done: p.objects.load(Ordering::Relaxed),
        objects_total: totals.0,
        records_done: records,
        bytes_done: p.bytes.load(Ordering::Relaxed),
        bytes_total: totals.1,
        records_failed: p.failed.load(Ordering::Relaxed),
        records_per_second: (records as f64 / secs * 10.0).round() / 10.0,
    }
}

/// The log line of a progress report: `#progress BYTES_DONE/BYTES_TOTAL records=N …`.
pub fn progress_line(p: &PierProgress) -> String {
    format!(
        "#progress {}/{} records={} objects={}/{} records_per_second={}",
        p.bytes_done,
        p.bytes_total,
        p.records_done,
        p.objects_done,
        p.objects_total,
        p.records_per_second
    )
}

/// Runs a claimed transform job (see the module docs).
pub(crate) async fn run_job(
    runner: Runner,
    job: JobRow<TransformJob>,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let name = job.name.clone();
    let mut body = job.body;
    let started = now();
    body.transform_start_time = Some(started);
    body.last_modified_time = started;
    let inner = &runner.0;
    let control = Arc::new(Control {
        cancel: Arc::new(AtomicBool::new(false)),
        reason: std::sync::Mutex::new(None),
    });
    let progress = Arc::new(Progress::default());
    let totals = Arc::new(std::sync::Mutex::new((0u64, 0u64)));
    if !matches!(
        inner
            .db
            .update_job_body(JobKind::Transform, &name, &inner.owner, &body)
            .await,
        Ok(true)
    ) {
        tracing::warn!(job = %name, "cannot record the transform job's start");
        return;
    }
    log_line(
        &runner,
        &name,
        format!(
            "Pier transform job {name}: model {} (attempt {}) on runner {}",
            body.model_name, job.attempts, inner.owner
        ),
    )
    .await;
    // Heartbeat: lease, stop requests, progress.
    let heartbeat = {
        let (runner, name, control, progress, totals) = (
            runner.clone(),
            name.clone(),
            control.clone(),
            progress.clone(),
            totals.clone(),
        );
        let body = body.clone();
        tokio::spawn(async move {
            let config = runner.0.config.clone();
            let mut body = body;
            let mut last_write = 0.0;
            let mut last_line = String::new();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(config.heartbeat) => {}
                    changed = stop.changed() => {
                        if changed.is_err() || *stop.borrow() {
                            control.stop(StopReason::Shutdown);
                        }
                        if changed.is_err() {
                            tokio::time::sleep(config.heartbeat).await;
                        }
                    }
                }
                if *stop.borrow() {
                    control.stop(StopReason::Shutdown);
                }
                let at = now();
                match runner
                    .0
                    .db
                    .heartbeat(
                        JobKind::Transform,
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
                if at - last_write >= 1.0 {
                    last_write = at;
                    let t = *totals.lock().unwrap_or_else(|e| e.into_inner());
                    let p = snapshot(&progress, t, started);
                    let line = progress_line(&p);
                    body.pier_progress = Some(p);
                    body.last_modified_time = at;
                    let _ = runner
                        .0
                        .db
                        .update_job_body(JobKind::Transform, &name, &runner.0.owner, &body)
                        .await;
                    if line != last_line {
                        log_line(&runner, &name, &line).await;
                        last_line = line;
                    }
                }
            }
        })
    };
    let result = async {
        let plan = Arc::new(check(&body).map_err(|e| e.to_string())?);
        let models = inner
            .models
            .get()
            .ok_or("this runner has no model source (start it from pier serve, pier worker or pier transform)")?;
        let model = models.load(&body.model_name).await?;
        let predictor =
            Predictor::new(model).map_err(|e| format!("model {}: {e}", body.model_name))?;
        let ctx = Arc::new(Context {
            predictor,
            s3: inner.config.s3.clone(),
            policy: inner.config.import_policy.clone(),
            shard: ShardSpec::ALL,
            progress: progress.clone(),
            cancel: control.cancel.clone(),
        });
        let totals = totals.clone();
        let listed = move |objects: u64, bytes: u64| {
            *totals.lock().unwrap_or_else(|e| e.into_inner()) = (objects, bytes);
        };
        execute(plan, ctx, &listed).await
    }
    .await;
    heartbeat.abort();
    let at = now();
    let t = *totals.lock().unwrap_or_else(|e| e.into_inner());
    let p = snapshot(&progress, t, started);
    log_line(&runner, &name, progress_line(&p)).await;
    body.pier_progress = Some(p);
    let status = match (result, control.reason()) {
        (_, Some(StopReason::LeaseLost)) => {
            tracing::warn!(job = %name, "lost the job to another runner; leaving it");
            return;
        }
        (_, Some(StopReason::Shutdown)) => {
            body.transform_start_time = None;
            match inner
                .db
                .release_job(JobKind::Transform, &name, &inner.owner, &body)
                .await
            {
                Ok(true) => {
                    log_line(&runner, &name, "Requeued: the runner shut down").await;
                    return;
                }
                _ => {
                    body.end(JobStatus::Stopped, at);
                    JobStatus::Stopped
                }
            }
        }
        (_, Some(StopReason::Stop)) => {
            body.end(JobStatus::Stopped, at);
            log_line(&runner, &name, "Transform job stopped by StopTransformJob").await;
            JobStatus::Stopped
        }
        (Ok(summary), None) => {
            body.end(JobStatus::Completed, at);
            log_line(
                &runner,
                &name,
                format!(
                    "Transform job completed: {} objects, {} records ({} skipped)",
                    summary.objects, summary.records, summary.failed
                ),
            )
            .await;
            JobStatus::Completed
        }
        (Err(reason), None) => {
            body.failure_reason = Some(reason.clone());
            body.end(JobStatus::Failed, at);
            log_line(&runner, &name, format!("Transform job failed: {reason}")).await;
            JobStatus::Failed
        }
    };
    match inner
        .db
        .finish_job(JobKind::Transform, &name, &inner.owner, status, &body)
        .await
    {
        Ok(true) => tracing::info!(job = %name, status = status.as_str(), "transform job ended"),
        Ok(false) => tracing::warn!(job = %name, "the job was taken over before it ended"),
        Err(e) => tracing::error!(job = %name, error = %e, "cannot record the job's end"),
    }
}

/// Ends transform jobs whose runner died (their lease lapsed, or their process on this host is
/// gone): Stopped if a stop was asked for, else Failed with the reason (transform jobs have no
/// `RetryStrategy`; their outputs are whole or absent, so rerunning is safe).
pub(crate) async fn reconcile(
    runner: &Runner,
    gone: impl Fn(&str) -> bool,
) -> crate::Result<usize> {
    let db = &runner.0.db;
    let at = now();
    let mut taken = 0;
    for job in db
        .expired_jobs::<TransformJob>(JobKind::Transform, f64::MAX)
        .await?
    {
        let owner = job.owner.clone().unwrap_or_default();
        if owner == runner.0.owner {
            continue;
        }
        let is_gone = gone(&owner);
        if !is_gone && !job.lease_expires_at.is_some_and(|t| t < at) {
            continue;
        }
        let why = if is_gone {
            format!("the process running it ({owner}) ended before the job did")
        } else {
            format!("the runner running it ({owner}) stopped renewing its lease")
        };
        let mut body = job.body;
        let status = if job.status == JobStatus::Stopping {
            JobStatus::Stopped
        } else {
            body.failure_reason = Some(why.clone());
            JobStatus::Failed
        };
        body.end(status, at);
        let bound = if is_gone { f64::MAX } else { at };
        if db
            .reclaim(JobKind::Transform, &job.name, &owner, bound, status, &body)
            .await?
        {
            let _ = db
                .append_log(
                    JobKind::Transform,
                    &job.name,
                    (at * 1000.0) as i64,
                    &format!("{}: {why}", status.as_str()),
                )
                .await;
            taken += 1;
        }
    }
    Ok(taken)
}
