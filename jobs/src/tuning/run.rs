//! A tuning job's task on the runner: a loop, once per heartbeat, that
//!
//! 1. renews the tuning job's lease (and learns of StopHyperParameterTuningJob),
//! 2. reads its children's rows: a planned child without a row is inserted (a runner died
//!    between planning and inserting it), an ended child's objective is recorded (its
//!    `FinalMetricDataList`, or for a job stopped early its last intermediate point),
//! 3. stops running children that Hyperband's rungs or the median rule
//!    (`TrainingJobEarlyStoppingType=Auto`) rule out, from their intermediate metric points,
//! 4. checks the completion criteria and `MaxRuntimeInSeconds` (then stops what runs),
//! 5. plans new children up to `MaxParallelTrainingJobs` running and
//!    `MaxNumberOfTrainingJobs` in all, from [`super::strategy::propose`] over the history,
//!    writes them into its record, then inserts them into the queue,
//! 6. ends the search (Completed; Failed when no child reported the objective; Stopped)
//!    once nothing runs and nothing more will be launched.
//!
//! Every change is written to the tuning job's record (guarded by this runner's ownership)
//! before the children are touched, so a runner that restarts continues the search: no
//! child is lost or run twice. The task does no training itself and holds no training slot.

use std::collections::{HashMap, HashSet};

use pier_db::{JobKind, JobRow, JobStatus, StopOutcome};
use tokio::sync::{OwnedSemaphorePermit, watch};

use super::record::{
    CompletionDetails, ConsumedResources, ObjectiveCounters, StatusCounters, Trial, TuningJob,
};
use super::strategy::{self, Kind, Observation, Outcome, hyperband};
use super::{Plan, best_trial, check, child_job, child_name, summary};
use crate::runner::{Runner, now};
use crate::training::TrainingJob;

/// How a tick ended.
enum Tick {
    Continue,
    Done,
}

pub(crate) async fn run_tuning(
    runner: Runner,
    job: JobRow<TuningJob>,
    stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let name = job.name.clone();
    let mut task = Task {
        runner: runner.clone(),
        name: name.clone(),
        body: job.body,
        curves: HashMap::new(),
        rungs_read: HashSet::new(),
    };
    let plan = match check(&task.body) {
        Ok(plan) => plan,
        Err(e) => {
            let at = now();
            task.body.failure_reason = Some(e.to_string());
            task.end(JobStatus::Failed, at).await;
            return;
        }
    };
    if task.body.pier_start_time.is_none() {
        task.body.pier_start_time = Some(now());
    }
    tracing::info!(job = %name, strategy = ?plan.kind, max_jobs = plan.max_jobs,
        parallel = plan.parallel, "tuning job running");
    let period = runner.0.config.heartbeat;
    let mut stop = stop;
    loop {
        if *stop.borrow() {
            task.release().await;
            return;
        }
        match task.tick(&plan).await {
            Ok(Tick::Continue) => {}
            Ok(Tick::Done) => return,
            Err(()) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => {}
        }
    }
}

struct Task {
    runner: Runner,
    name: String,
    body: TuningJob,
    /// Completed children's objective curves (losses by step), for the median rule.
    curves: HashMap<String, Vec<(u64, f64)>>,
    /// Ended children whose Hyperband rungs were filled in.
    rungs_read: HashSet<String>,
}

impl Task {
    fn db(&self) -> &pier_db::Db {
        &self.runner.0.db
    }

    /// One pass of the loop; `Err` when the job was lost (another runner holds it).
    async fn tick(&mut self, plan: &Plan) -> Result<Tick, ()> {
        let inner = self.runner.0.clone();
        let at = now();
        let status = match self
            .db()
            .heartbeat(
                JobKind::Tuning,
                &self.name,
                &inner.owner,
                at,
                inner.config.lease.as_secs_f64(),
            )
            .await
        {
            Ok(Some(s)) => s,
            Ok(None) => {
                tracing::warn!(job = %self.name, "lost the tuning job to another runner");
                return Err(());
            }
            Err(e) => {
                tracing::warn!(job = %self.name, error = %e, "tuning heartbeat failed");
                return Ok(Tick::Continue);
            }
        };
        let before = self.body.clone();
        self.refresh(plan, status != JobStatus::Stopping).await;
        if status == JobStatus::Stopping {
            self.body
                .pier_ending
                .get_or_insert_with(|| "stopped".into());
        }
        if self.body.pier_ending.is_none() {
            self.early_stop(plan).await;
            self.completion(plan, at);
        }
        self.account(plan, at);
        let running = self.running();
        if let Some(ending) = self.body.pier_ending.clone() {
            self.save_if_changed(&before).await?;
            if running > 0 {
                self.stop_children(&ending).await;
                return Ok(Tick::Continue);
            }
            let status = if status == JobStatus::Stopping {
                JobStatus::Stopped
            } else {
                self.outcome(plan)
            };
            self.end(status, now()).await;
            return Ok(Tick::Done);
        }
        // Launch.
        let mut launched = Vec::new();
        if running < plan.parallel && self.body.pier_trials.len() < plan.max_jobs {
            let want = (plan.parallel - running).min(plan.max_jobs - self.body.pier_trials.len());
            launched = self.plan_children(plan, want, now()).await;
        }
        let planned_nothing = launched.is_empty();
        if planned_nothing && running == 0 {
            // Everything planned has ended and nothing more will be launched.
            self.save_if_changed(&before).await?;
            let status = self.outcome(plan);
            self.end(status, now()).await;
            return Ok(Tick::Done);
        }
        self.account(plan, now());
        self.save_if_changed(&before).await?;
        for i in launched {
            self.insert_child(plan, i).await;
        }
        if !planned_nothing {
            self.runner.wake();
        }
        Ok(Tick::Continue)
    }

    fn running(&self) -> usize {
        self.body
            .pier_trials
            .iter()
            .filter(|t| !is_terminal(&t.status))
            .count()
    }

    /// Completed when some child reported the objective, else Failed with a reason.
    fn outcome(&mut self, plan: &Plan) -> JobStatus {
        let trials = &self.body.pier_trials;
        if trials.iter().any(|t| t.objective.is_some()) {
            return JobStatus::Completed;
        }
        let reason = if trials.is_empty() {
            "No training job was launched".to_owned()
        } else if trials.iter().all(|t| t.status == "Failed") {
            format!(
                "All {} training jobs failed; the first: {}",
                trials.len(),
                trials[0].failure_reason.as_deref().unwrap_or("(no reason)")
            )
        } else {
            let metrics: Vec<&str> = plan.definitions.iter().map(|d| d.metric.as_str()).collect();
            format!(
                "No training job reported the objective metric {}",
                metrics.join(", ")
            )
        };
        self.body.failure_reason = Some(reason);
        JobStatus::Failed
    }

    /// Updates the trials from their children's rows; inserts planned children that have none
    /// (`insert`; not once a stop was asked for: such a child ends Stopped unstarted).
    async fn refresh(&mut self, plan: &Plan, insert: bool) {
        for i in 0..self.body.pier_trials.len() {
            if is_terminal(&self.body.pier_trials[i].status) {
                continue;
            }
            let child = self.body.pier_trials[i].training_job_name.clone();
            let row = match self
                .db()
                .get_job::<TrainingJob>(JobKind::Training, &child)
                .await
            {
                Ok(row) => row,
                Err(e) => {
                    tracing::warn!(job = %self.name, %child, error = %e, "cannot read a child");
                    continue;
                }
            };
            let Some(row) = row else {
                // Planned but never inserted (the runner died in between): insert it now.
                if insert {
                    self.insert_child(plan, i).await;
                } else {
                    let trial = &mut self.body.pier_trials[i];
                    trial.status = JobStatus::Stopped.as_str().to_owned();
                    trial.failure_reason =
                        Some("Stopped by StopHyperParameterTuningJob before it started".into());
                }
                continue;
            };
            let metric = plan
                .definitions
                .get(self.body.pier_trials[i].definition)
                .map(|d| d.metric.clone())
                .unwrap_or_default();
            let trial = &mut self.body.pier_trials[i];
            trial.training_start_time = row.body.training_start_time;
            trial.training_end_time = row.body.training_end_time;
            if !row.status.is_terminal() {
                trial.status = row.status.as_str().to_owned();
                continue;
            }
            let objective = match row.status {
                JobStatus::Completed => row
                    .body
                    .final_metric_data_list
                    .iter()
                    .find(|m| m.metric_name == metric)
                    .map(|m| m.value),
                _ => None,
            };
            let objective = match objective {
                Some(v) => Some(v),
                None if row.status != JobStatus::Failed => self
                    .db()
                    .read_metrics(JobKind::Training, &child, Some(&metric))
                    .await
                    .ok()
                    .and_then(|points| points.last().map(|p| p.value)),
                None => None,
            };
            let trial = &mut self.body.pier_trials[i];
            trial.objective = objective.filter(|v| v.is_finite());
            trial.failure_reason = row.body.failure_reason.clone();
            trial.status = row.status.as_str().to_owned();
        }
    }

    /// Hyperband's rungs and the median rule over the running children's points.
    async fn early_stop(&mut self, plan: &Plan) {
        if plan.hyperband.is_none() && !plan.median_rule {
            return;
        }
        let mut to_stop: Vec<(usize, u64)> = Vec::new();
        for i in 0..self.body.pier_trials.len() {
            let trial = &self.body.pier_trials[i];
            if trial.early_stopped_at.is_some() {
                continue;
            }
            let running = trial.status == "InProgress";
            // An ended job's rungs still count for its peers (read once).
            let backfill = !running
                && plan.hyperband.is_some()
                && !self.rungs_read.contains(&trial.training_job_name);
            if !running && !backfill {
                continue;
            }
            if backfill {
                self.rungs_read.insert(trial.training_job_name.clone());
            }
            let Some(def) = plan.definitions.get(trial.definition) else {
                continue;
            };
            let child = trial.training_job_name.clone();
            let Ok(points) = self
                .db()
                .read_metrics(JobKind::Training, &child, Some(&def.metric))
                .await
            else {
                continue;
            };
            let curve: Vec<(u64, f64)> = points
                .iter()
                .filter(|p| p.value.is_finite())
                .map(|p| (p.step, def.direction.loss(p.value)))
                .collect();
            let Some(&(last_step, last_loss)) = curve.last() else {
                continue;
            };
            if let Some((rungs, _)) = plan.hyperband {
                let bracket = self.body.pier_trials[i].bracket.unwrap_or(0);
                for rung in rungs.rungs(bracket) {
                    if self.body.pier_trials[i]
                        .rungs
                        .iter()
                        .any(|(s, _)| *s == rung)
                    {
                        continue;
                    }
                    let Some(&(_, loss)) = curve.iter().find(|(s, _)| *s >= rung) else {
                        break;
                    };
                    self.body.pier_trials[i].rungs.push((rung, loss));
                    let peers: Vec<f64> = self
                        .body
                        .pier_trials
                        .iter()
                        .filter(|t| t.bracket == Some(bracket))
                        .filter_map(|t| t.rungs.iter().find(|(s, _)| *s == rung).map(|r| r.1))
                        .collect();
                    if running && !hyperband::promote(loss, &peers) {
                        to_stop.push((i, rung));
                        break;
                    }
                }
            } else if running {
                let completed: Vec<Vec<(u64, f64)>> = self
                    .completed_curves(plan, trial_def(&self.body.pier_trials[i]))
                    .await;
                if hyperband::median_stops(last_loss, last_step, &completed) {
                    to_stop.push((i, last_step));
                }
            }
        }
        for (i, step) in to_stop {
            self.body.pier_trials[i].early_stopped_at = Some(step);
            let child = self.body.pier_trials[i].training_job_name.clone();
            tracing::info!(job = %self.name, %child, step, "early stopping a training job");
        }
    }

    /// The loss curves of the completed children of definition `def` (cached).
    async fn completed_curves(&mut self, plan: &Plan, def: usize) -> Vec<Vec<(u64, f64)>> {
        let Some(d) = plan.definitions.get(def) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let names: Vec<String> = self
            .body
            .pier_trials
            .iter()
            .filter(|t| t.definition == def && t.status == "Completed")
            .map(|t| t.training_job_name.clone())
            .collect();
        for child in names {
            if !self.curves.contains_key(&child) {
                let Ok(points) = self
                    .db()
                    .read_metrics(JobKind::Training, &child, Some(&d.metric))
                    .await
                else {
                    continue;
                };
                let curve = points
                    .iter()
                    .filter(|p| p.value.is_finite())
                    .map(|p| (p.step, d.direction.loss(p.value)))
                    .collect();
                self.curves.insert(child.clone(), curve);
            }
            out.push(self.curves[&child].clone());
        }
        out
    }

    /// Sets `pier_ending` when a completion criterion or the run-time limit is met.
    fn completion(&mut self, plan: &Plan, at: f64) {
        if let Some(why) = ending(plan, &self.body.pier_trials, self.body.pier_start_time, at) {
            self.body.pier_ending = Some(why);
        }
    }

    /// Counters, best job, consumed time.
    fn account(&mut self, plan: &Plan, at: f64) {
        let mut status = StatusCounters::default();
        let mut objective = ObjectiveCounters::default();
        for t in &self.body.pier_trials {
            match t.status.as_str() {
                "Completed" => status.completed += 1,
                "Failed" => status.non_retryable_error += 1,
                "Stopped" => status.stopped += 1,
                _ => status.in_progress += 1,
            }
            match (t.objective, is_terminal(&t.status)) {
                (Some(_), _) => objective.succeeded += 1,
                (None, false) => objective.pending += 1,
                (None, true) => objective.failed += 1,
            }
        }
        let best = best_trial(plan, &self.body.pier_trials).map(|t| summary(&self.body, plan, t));
        let changed = status != self.body.training_job_status_counters
            || objective != self.body.objective_status_counters
            || best != self.body.best_training_job;
        self.body.training_job_status_counters = status;
        self.body.objective_status_counters = objective;
        self.body.best_training_job = best;
        if self.body.warm_start_config.is_some() {
            self.body.overall_best_training_job = self.body.best_training_job.clone();
        }
        self.body.tuning_job_completion_details = Some(CompletionDetails {
            number_of_training_jobs_objective_not_improving: not_improving(
                plan,
                &self.body.pier_trials,
            ) as i64,
            convergence_detected_time: None,
        });
        if changed {
            self.body.last_modified_time = at;
        }
        if let Some(start) = self.body.pier_start_time {
            self.body.consumed_resources = Some(ConsumedResources {
                runtime_in_seconds: (at - start).max(0.0) as i64,
            });
        }
    }

    /// Plans up to `want` new children (written to the record by the caller before they are
    /// inserted); returns their indices. The strategy runs on a blocking thread (a Bayesian
    /// proposal over hundreds of trials takes a while), never on the async workers.
    async fn plan_children(&mut self, plan: &Plan, want: usize, at: f64) -> Vec<usize> {
        let (body, owned_plan) = (self.body.clone(), plan.clone());
        let planned =
            tokio::task::spawn_blocking(move || plan_trials(&body, &owned_plan, want, at)).await;
        let trials = match planned {
            Ok(trials) => trials,
            Err(e) => {
                tracing::error!(job = %self.name, error = %e, "the strategy panicked");
                Vec::new()
            }
        };
        if plan.kind == Kind::Grid && trials.is_empty() {
            tracing::info!(job = %self.name, "the grid is exhausted");
        }
        let first = self.body.pier_trials.len();
        self.body.pier_trials.extend(trials);
        (first..self.body.pier_trials.len()).collect()
    }

    /// Inserts trial `i`'s child into the queue (idempotent by name).
    async fn insert_child(&self, plan: &Plan, i: usize) {
        let trial = &self.body.pier_trials[i];
        let defs = self.body.definitions();
        let Some(def) = defs.get(trial.definition) else {
            return;
        };
        let resource = plan.hyperband.map(|(rungs, name)| (name, rungs.max));
        let child = child_job(
            &self.body,
            def,
            trial.definition,
            &trial.training_job_name,
            &trial.tuned_hyper_parameters,
            resource,
            trial.creation_time,
        );
        match self
            .db()
            .insert_job(
                JobKind::Training,
                &trial.training_job_name,
                trial.creation_time,
                &child,
            )
            .await
        {
            Ok(true) => {
                tracing::info!(job = %self.name, child = %trial.training_job_name, "training job launched")
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(job = %self.name, child = %trial.training_job_name, error = %e, "cannot launch a training job")
            }
        }
    }

    /// Stops every running child (and those early stopping ruled out).
    async fn stop_children(&self, why: &str) {
        for t in &self.body.pier_trials {
            if !is_terminal(&t.status) {
                stop_child(self.db(), &t.training_job_name, why).await;
            }
        }
    }

    async fn save_if_changed(&mut self, before: &TuningJob) -> Result<(), ()> {
        // Early-stopped children are stopped once the decision is written.
        let newly: Vec<String> = self
            .body
            .pier_trials
            .iter()
            .zip(
                before
                    .pier_trials
                    .iter()
                    .map(Some)
                    .chain(std::iter::repeat(None)),
            )
            .filter(|(t, b)| {
                t.early_stopped_at.is_some() && b.is_none_or(|b| b.early_stopped_at.is_none())
            })
            .map(|(t, _)| t.training_job_name.clone())
            .collect();
        if self.body != *before {
            let inner = &self.runner.0;
            match self
                .db()
                .update_job_body(JobKind::Tuning, &self.name, &inner.owner, &self.body)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    // Stopping is still ours; anything else means the job was taken over.
                    match self
                        .db()
                        .get_job::<TuningJob>(JobKind::Tuning, &self.name)
                        .await
                    {
                        Ok(Some(row)) if row.owner.as_deref() == Some(&inner.owner) => {}
                        _ => return Err(()),
                    }
                }
                Err(e) => {
                    tracing::warn!(job = %self.name, error = %e, "cannot record the search");
                    return Err(());
                }
            }
        }
        for child in newly {
            stop_child(self.db(), &child, "early stopping").await;
        }
        Ok(())
    }

    /// Hands the job back to the queue (the runner is shutting down).
    async fn release(&mut self) {
        let inner = &self.runner.0;
        match self
            .db()
            .release_job(JobKind::Tuning, &self.name, &inner.owner, &self.body)
            .await
        {
            Ok(true) => tracing::info!(job = %self.name, "tuning job requeued (shutdown)"),
            Ok(false) => {}
            Err(e) => tracing::warn!(job = %self.name, error = %e, "cannot requeue the tuning job"),
        }
    }

    async fn end(&mut self, status: JobStatus, at: f64) {
        let inner = self.runner.0.clone();
        self.body.hyper_parameter_tuning_job_status = status.as_str().to_owned();
        self.body.hyper_parameter_tuning_end_time = Some(at);
        self.body.last_modified_time = at;
        match self
            .db()
            .finish_job(
                JobKind::Tuning,
                &self.name,
                &inner.owner,
                status,
                &self.body,
            )
            .await
        {
            Ok(true) => {
                tracing::info!(job = %self.name, status = status.as_str(), "tuning job ended")
            }
            Ok(false) => {
                tracing::warn!(job = %self.name, "the tuning job was taken over before it ended")
            }
            Err(e) => {
                tracing::error!(job = %self.name, error = %e, "cannot record the tuning job's end")
            }
        }
    }
}

/// The next `want` trials of the search whose record is `body` (pure: the strategy over the
/// warm-start points and each definition's trials so far).
fn plan_trials(body: &TuningJob, plan: &Plan, want: usize, at: f64) -> Vec<Trial> {
    let mut trials = body.pier_trials.clone();
    let first = trials.len();
    for _ in 0..want {
        let index = trials.len();
        let def = index % plan.definitions.len();
        let d = &plan.definitions[def];
        let mut history: Vec<Observation> = body
            .pier_warm_start
            .iter()
            .filter(|w| d.space.to_unit(&w.hyper_parameters).is_some())
            .map(|w| Observation {
                point: w.hyper_parameters.clone(),
                outcome: Outcome::Value(w.value),
            })
            .collect();
        history.extend(
            trials
                .iter()
                .filter(|t| t.definition == def)
                .map(|t| Observation {
                    point: t.tuned_hyper_parameters.clone(),
                    outcome: match (t.objective, is_terminal(&t.status)) {
                        (Some(v), _) => Outcome::Value(v),
                        (None, false) => Outcome::Pending,
                        (None, true) => Outcome::Failed,
                    },
                }),
        );
        let seed = strategy::mix(plan.seed, def as u64);
        let Some(point) =
            strategy::propose(plan.kind, &d.space, d.direction, &history, 1, seed).pop()
        else {
            break;
        };
        trials.push(Trial {
            training_job_name: child_name(&body.hyper_parameter_tuning_job_name, index, &point),
            definition: def,
            tuned_hyper_parameters: point,
            creation_time: at,
            bracket: plan.hyperband.map(|(rungs, _)| index % rungs.brackets()),
            status: "InProgress".to_owned(),
            ..Default::default()
        });
    }
    trials.split_off(first)
}

fn trial_def(t: &Trial) -> usize {
    t.definition
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "Completed" | "Failed" | "Stopped")
}

/// Why the search stops launching jobs at `at`, if it does: `MaxRuntimeInSeconds` past since
/// `start`, `TargetObjectiveMetricValue` reached, or too many jobs without improvement.
pub(crate) fn ending(plan: &Plan, trials: &[Trial], start: Option<f64>, at: f64) -> Option<String> {
    if let (Some(max), Some(start)) = (plan.max_runtime, start)
        && at - start > max
    {
        return Some(format!(
            "ResourceLimits.MaxRuntimeInSeconds ({max} s) reached"
        ));
    }
    if let Some(target) = plan.target
        && trials.iter().any(|t| {
            let Some(d) = plan.definitions.get(t.definition) else {
                return false;
            };
            t.objective.is_some_and(|v| !d.direction.better(target, v))
        })
    {
        return Some(format!(
            "TuningJobCompletionCriteria.TargetObjectiveMetricValue {target} reached"
        ));
    }
    if let Some(n) = plan.not_improving
        && not_improving(plan, trials) >= n
    {
        return Some(format!(
            "{n} training jobs in a row did not improve the best objective"
        ));
    }
    None
}

/// Completed children since the best one (in planning order), across definitions.
fn not_improving(plan: &Plan, trials: &[Trial]) -> usize {
    let mut best: Option<f64> = None;
    let mut since = 0;
    for t in trials {
        let (Some(v), Some(d)) = (t.objective, plan.definitions.get(t.definition)) else {
            continue;
        };
        let loss = d.direction.loss(v);
        if best.is_none_or(|b| loss < b) {
            best = Some(loss);
            since = 0;
        } else {
            since += 1;
        }
    }
    since
}

/// Asks a child to stop (queued: Stopped at once; running: Stopping, its runner ends it).
pub(crate) async fn stop_child(db: &pier_db::Db, child: &str, why: &str) {
    let why = why.to_owned();
    let outcome = db
        .stop_job::<TrainingJob>(JobKind::Training, child, |mut job| {
            let at = now();
            job.transition(
                "Stopped",
                format!("Training job stopped by its tuning job ({why})"),
                at,
            );
            job.end(JobStatus::Stopped, at);
            job
        })
        .await;
    match outcome {
        Ok(StopOutcome::NotInProgress) | Ok(StopOutcome::Stopped) | Ok(StopOutcome::Stopping) => {}
        Err(e) => tracing::warn!(%child, error = %e, "cannot stop a training job"),
    }
}

/// Ends a tuning job whose runner died: a running search goes back to the queue (its record
/// holds the search), a stopping one ends Stopped (StopHyperParameterTuningJob stopped its
/// children). Returns whether it took the job.
pub(crate) async fn reconcile(
    db: &pier_db::Db,
    row: JobRow<TuningJob>,
    owner: &str,
    bound: f64,
) -> Result<bool, pier_db::DbError> {
    let mut body = row.body;
    let at = now();
    let status = if row.status == JobStatus::Stopping {
        body.hyper_parameter_tuning_job_status = "Stopped".into();
        body.hyper_parameter_tuning_end_time = Some(at);
        body.last_modified_time = at;
        JobStatus::Stopped
    } else {
        JobStatus::InProgress
    };
    db.reclaim(JobKind::Tuning, &row.name, owner, bound, status, &body)
        .await
}
