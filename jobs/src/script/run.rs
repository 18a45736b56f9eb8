//! Running one claimed script job, between the runner's transitions (the heartbeat, stop
//! reasons, the end of the job and its record are [`crate::training::run`]'s, as for the
//! built-ins):
//!
//! Downloading (leftover processes of an earlier attempt killed, the job folder made anew,
//! `input/config/*.json` written, each channel's objects copied into `input/data/<channel>/`,
//! `sourcedir.tar.gz` unpacked into `code/`) → Training (`requirements.txt` installed into a
//! cached virtual environment, then the entry point run as a managed process: its lines into
//! the job's log, `MetricDefinitions` matched on each, stopped with SIGTERM then SIGKILL when
//! the cancel flag is set) → Uploading (`model/` packed as `model.tar.gz` to the output path,
//! its top-level files published to the store with the runtime detected from content).
//!
//! Nothing half-published: the store's publish is atomic, and a version whose tarball could
//! not be written is removed again. The job folder is removed when the job ends.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use pier_db::MetricPoint;

use super::contract::{self, JobFolder};
use super::metrics::MetricScanner;
use super::process::{self, Line, LineSink, Spec, Stream};
use super::publish::{publish, walk};
use super::source::{self, SourceLimits};
use super::{ScriptJob, check, check_container, container, is_container_job};
use crate::channels::{ChannelError, ReadOptions, download_channel};
use crate::error::JobsError;
use crate::runner::Runner;
use crate::training::TrainingJob;
use crate::training::run::{Control, Failure, Log, StopReason, transition};

/// Longest `FailureReason` (SageMaker's limit).
const MAX_REASON: usize = 1024;

/// Log lines kept for a failure's reason.
const TAIL_LINES: usize = 20;

type Outcome = Result<(String, String, BTreeMap<String, f64>), Failure>;

pub(super) fn script_error(message: impl Into<String>) -> Failure {
    Failure::Error(JobsError::Script(message.into()))
}

/// The marker of a job's processes (see [`process`]): the job folder, unique per data folder
/// and job name.
pub(crate) fn marker(folder: &JobFolder) -> String {
    folder.root.display().to_string()
}

/// Kills what is left of a job's processes (a runner that died mid-job) and removes its
/// container, if it ran in one; returns how many processes were killed. Blocking.
pub fn reap(config: &super::ScriptConfig, job: &str, container_job: bool) -> usize {
    let folder = JobFolder::new(&config.work_dir, job);
    let killed = process::sweep(&marker(&folder));
    if container_job {
        let name = container::container_name(job, &folder.root);
        for engine in &config.container_engines {
            container::remove(engine, &name);
        }
    }
    killed
}

pub(crate) async fn steps(
    runner: &Runner,
    log: &Log,
    control: &Arc<Control>,
    body: &mut TrainingJob,
    attempt: u32,
) -> Outcome {
    let config = runner.0.config.script.clone();
    let name = body.training_job_name.clone();
    if !config.allowed {
        return Err(script_error(
            "this job runner does not run script jobs (they run users' code as its user): \
             start pier worker with --allow-scripts, or let pier serve run it (its admin port \
             on loopback, or --allow-scripts)",
        ));
    }
    let script = if is_container_job(body) {
        check_container(body)?
    } else {
        check(body)?
    };
    log.line(format!(
        "Pier script job {name}: {} entry point {} (attempt {attempt}) on runner {}",
        script.framework,
        script.entry_point,
        runner.owner()
    ))
    .await;
    let folder = JobFolder::new(&config.work_dir, &name);
    let outcome = run_in(runner, log, control, body, &script, &folder).await;
    // The folder goes with the job (its channels may be large); its processes went already.
    let root = folder.root.clone();
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(root)).await;
    outcome
}

async fn run_in(
    runner: &Runner,
    log: &Log,
    control: &Arc<Control>,
    body: &mut TrainingJob,
    script: &ScriptJob,
    folder: &JobFolder,
) -> Outcome {
    let inner = &runner.0;
    let config = &inner.config.script;
    let marker = marker(folder);
    let reaped = {
        let marker = marker.clone();
        tokio::task::spawn_blocking(move || process::sweep(&marker))
            .await
            .unwrap_or(0)
    };
    if reaped > 0 {
        log.line(format!(
            "Killed {reaped} processes left by an earlier attempt of this job"
        ))
        .await;
    }
    let channel_names: Vec<String> = script.channels.iter().map(|c| c.name.clone()).collect();
    {
        let (at, body) = (folder.clone(), body.clone());
        tokio::task::spawn_blocking(move || {
            at.create(&channel_names)?;
            contract::write_config(&at, &body)
        })
        .await
        .map_err(|e| script_error(format!("preparing the job folder panicked: {e}")))?
        .map_err(|e| {
            script_error(format!(
                "cannot prepare the job folder {}: {e}",
                folder.root.display()
            ))
        })?;
    }
    transition(runner, body, "Downloading", "Downloading input data").await?;
    let mut options = ReadOptions::new(false, &[]);
    options.s3 = inner.config.s3.clone();
    options.local = inner.config.import_policy.clone();
    options.max_bytes = Some(inner.config.max_channel_bytes);
    options.cancel = Some(control.cancel.clone());
    for channel in &script.channels {
        let dest = folder.channel(&channel.name);
        match download_channel(channel, &dest, &options).await {
            Ok(done) => {
                log.line(format!(
                    "Downloaded channel {} ({}): {} files, {} bytes",
                    channel.name, channel.uri, done.files, done.bytes
                ))
                .await
            }
            Err(ChannelError::Cancelled { .. }) => {
                control.check()?;
                return Err(Failure::Stopped(StopReason::Stop));
            }
            Err(e) => return Err(JobsError::from(e).into()),
        }
    }
    let (spec, engine) = match &script.container {
        Some(image) => {
            let (spec, engine) =
                container_spec(runner, control, body, script, folder, image, &marker).await?;
            (spec, Some(engine))
        }
        None => (
            script_spec(runner, log, control, body, script, folder, &marker).await?,
            None,
        ),
    };
    log.line(format!(
        "Invoking script with the following command: {}",
        shown_command(&spec)
    ))
    .await;
    let managed = process::spawn(&spec).map_err(|e| {
        script_error(format!(
            "cannot start {}: {e} (set the interpreter with --python)",
            spec.program.display()
        ))
    })?;
    let mut sink = ScriptSink::new(log, control, MetricScanner::new(script.metrics.clone()));
    let finished = process::drive(managed, &control.cancel, config.grace, &mut sink).await;
    if let Some(engine) = engine {
        // However it ended, the container goes (SIGKILL reached only the engine's CLI).
        let name = container::container_name(&body.training_job_name, &folder.root);
        let _ = tokio::task::spawn_blocking(move || container::remove(&engine, &name)).await;
    }
    if finished.swept > 0 {
        log.line(format!(
            "Killed {} processes of the job that had left its process group",
            finished.swept
        ))
        .await;
    }
    if finished.stopped {
        let how = if finished.killed {
            format!(
                "did not end within the {} s grace period after SIGTERM and was killed (SIGKILL)",
                config.grace.as_secs_f64()
            )
        } else {
            "ended after SIGTERM".to_owned()
        };
        log.line(format!("The script {how}")).await;
        return Err(Failure::Stopped(
            control.reason().unwrap_or(StopReason::Stop),
        ));
    }
    let status = finished
        .status
        .map_err(|e| script_error(format!("cannot wait for the script: {e}")))?;
    if !status.success() {
        let exit = match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => format!("ExitCode {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            _ => status.to_string(),
        };
        let failure = std::fs::read_to_string(folder.failure())
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty());
        let message = match failure {
            Some(text) => format!("AlgorithmError: {text} ({exit})"),
            None => {
                let tail = sink.error_message();
                format!(
                    "AlgorithmError: ExecuteUserScriptError: {exit}, ErrorMessage {:?}, Command {:?}",
                    tail,
                    shown_command(&spec)
                )
            }
        };
        return Err(script_error(truncate(message, MAX_REASON)));
    }
    let metrics = sink.scanner.last().clone();
    control.check()?;
    transition(
        runner,
        body,
        "Uploading",
        "Uploading generated training model",
    )
    .await?;
    let (location, artifact) = publish(runner, log, body, script, folder).await?;
    Ok((location, artifact, metrics))
}

/// A script's command: its source fetched and unpacked into `code/`, its entry point checked,
/// the job moved to Training, its `requirements.txt` environment made.
async fn script_spec(
    runner: &Runner,
    log: &Log,
    control: &Arc<Control>,
    body: &mut TrainingJob,
    script: &ScriptJob,
    folder: &JobFolder,
    marker: &str,
) -> Result<Spec, Failure> {
    let inner = &runner.0;
    let config = &inner.config.script;
    let limits = SourceLimits {
        max_bytes: config.max_source_bytes,
        max_files: config.max_source_files,
    };
    let scratch = folder.root.join(".source");
    std::fs::create_dir_all(&scratch)
        .map_err(|e| script_error(format!("cannot create {}: {e}", scratch.display())))?;
    let archive = source::fetch(
        &script.submit_directory,
        &scratch,
        &inner.config.import_policy,
        &inner.config.s3,
        limits,
    )
    .await
    .map_err(|e| script_error(e.0))?;
    let unpacked = {
        let (archive, uri, code, cancel) = (
            archive.clone(),
            script.submit_directory.clone(),
            folder.code(),
            control.cancel.clone(),
        );
        tokio::task::spawn_blocking(move || source::unpack(&archive, &uri, &code, limits, &cancel))
            .await
            .map_err(|e| script_error(format!("unpacking the source panicked: {e}")))?
    };
    control.check()?;
    let files = unpacked.map_err(|e| script_error(e.0))?;
    let _ = std::fs::remove_dir_all(&scratch);
    log.line(format!(
        "Unpacked {} ({files} entries) into the code folder",
        script.submit_directory
    ))
    .await;
    let entry = folder.code().join(&script.entry_point);
    if !entry.is_file() {
        let mut present: Vec<String> = walk(&folder.code())
            .into_iter()
            .map(|(n, _)| n)
            .take(20)
            .collect();
        present.sort();
        return Err(script_error(format!(
            "HyperParameters.sagemaker_program {:?} is not a file of {} (it holds: {})",
            script.entry_point,
            script.submit_directory,
            if present.is_empty() {
                "nothing".to_owned()
            } else {
                present.join(", ")
            }
        )));
    }
    control.check()?;
    transition(
        runner,
        body,
        "Training",
        "Training image download completed. Training in progress.",
    )
    .await?;
    let python = python_for(runner, log, control, folder, marker).await?;
    control.check()?;
    if !script.entry_point.ends_with(".py") && !script.entry_point.ends_with(".sh") {
        // Run as an executable, as the toolkit does: make it one.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o755));
    }
    let command = command_for(&python, &script.entry_point, script);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut env = contract::environment(body, script, folder, cpus);
    env.extend(body.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
    let spec = Spec {
        program: command.0.clone(),
        args: command.1.clone(),
        env,
        cwd: folder.code(),
        marker: marker.to_owned(),
    };
    Ok(spec)
}

/// A container job's command: `ENGINE run … IMAGE train`, with the engine that has the image.
async fn container_spec(
    runner: &Runner,
    control: &Arc<Control>,
    body: &mut TrainingJob,
    script: &ScriptJob,
    folder: &JobFolder,
    image: &str,
    marker: &str,
) -> Result<(Spec, String), Failure> {
    let engines = runner.0.config.script.container_engines.clone();
    let wanted = image.to_owned();
    let engine = tokio::task::spawn_blocking(move || container::availability(&wanted, &engines))
        .await
        .map_err(|e| script_error(format!("asking the container engines panicked: {e}")))?
        .map_err(script_error)?;
    control.check()?;
    transition(
        runner,
        body,
        "Training",
        "Training image download completed. Training in progress.",
    )
    .await?;
    let mut env = vec![
        (
            "TRAINING_JOB_NAME".to_owned(),
            body.training_job_name.clone(),
        ),
        ("TRAINING_JOB_ARN".to_owned(), body.training_job_arn.clone()),
    ];
    env.extend(body.environment.iter().map(|(k, v)| (k.clone(), v.clone())));
    let name = container::container_name(&body.training_job_name, &folder.root);
    let _ = script;
    let spec = Spec {
        program: PathBuf::from(&engine),
        args: container::run_args(&name, &folder.root, image, &env),
        env: Vec::new(),
        cwd: folder.root.clone(),
        marker: marker.to_owned(),
    };
    Ok((spec, engine))
}

/// The interpreter: the runner's (`--python`), or a cached virtual environment with the
/// source folder's `requirements.txt` installed.
async fn python_for(
    runner: &Runner,
    log: &Log,
    control: &Arc<Control>,
    folder: &JobFolder,
    marker: &str,
) -> Result<PathBuf, Failure> {
    let config = &runner.0.config.script;
    let requirements = folder.code().join("requirements.txt");
    let Ok(content) = std::fs::read(&requirements) else {
        return Ok(PathBuf::from(&config.python));
    };
    let venv = source::venv_dir(&config.work_dir, &config.python, &content);
    let python = venv.join("bin/python");
    let Some(_lock) = source::lock_venv(&venv, &control.cancel)
        .await
        .map_err(|e| script_error(format!("cannot lock {}: {e}", venv.display())))?
    else {
        control.check()?;
        return Err(Failure::Stopped(StopReason::Stop));
    };
    if venv.join(source::VENV_READY).is_file() {
        log.line(format!(
            "requirements.txt: reusing the environment {}",
            venv.display()
        ))
        .await;
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(&venv);
    log.line(format!(
        "requirements.txt: building the environment {} (python -m venv --system-site-packages, pip install -r requirements.txt)",
        venv.display()
    ))
    .await;
    let steps: [(PathBuf, Vec<String>); 2] = [
        (
            PathBuf::from(&config.python),
            vec![
                "-m".into(),
                "venv".into(),
                "--system-site-packages".into(),
                venv.display().to_string(),
            ],
        ),
        (
            python.clone(),
            vec![
                "-m".into(),
                "pip".into(),
                "install".into(),
                "--disable-pip-version-check".into(),
                "--no-input".into(),
                "-r".into(),
                requirements.display().to_string(),
            ],
        ),
    ];
    for ((program, args), what) in steps.into_iter().zip([
        "python -m venv --system-site-packages",
        "pip install -r requirements.txt",
    ]) {
        let spec = Spec {
            program,
            args,
            env: vec![("PIP_NO_INPUT".into(), "1".into())],
            cwd: folder.code(),
            marker: marker.to_owned(),
        };
        let shown = shown_command(&spec);
        log.line(format!("Running {shown}")).await;
        let managed = process::spawn(&spec)
            .map_err(|e| script_error(format!("requirements.txt: cannot run {shown}: {e}")))?;
        let mut sink = ScriptSink::new(log, control, MetricScanner::default());
        let finished = process::drive(
            managed,
            &control.cancel,
            runner.0.config.script.grace,
            &mut sink,
        )
        .await;
        if finished.stopped {
            let _ = std::fs::remove_dir_all(&venv);
            return Err(Failure::Stopped(
                control.reason().unwrap_or(StopReason::Stop),
            ));
        }
        let ok = finished.status.as_ref().is_ok_and(|s| s.success());
        if !ok {
            let _ = std::fs::remove_dir_all(&venv);
            let status = match &finished.status {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            };
            return Err(script_error(truncate(
                format!(
                    "requirements.txt could not be installed: {what} failed ({status}): {}",
                    sink.error_message()
                ),
                MAX_REASON,
            )));
        }
    }
    std::fs::write(venv.join(source::VENV_READY), b"")
        .map_err(|e| script_error(format!("cannot finish {}: {e}", venv.display())))?;
    Ok(python)
}

/// How the toolkit runs an entry point: Python for `.py`, `/bin/sh` for `.sh`, else the file
/// itself (made executable).
fn command_for(python: &Path, entry_point: &str, script: &ScriptJob) -> (PathBuf, Vec<String>) {
    let args = contract::user_args(&script.user_hyperparameters());
    let with = |first: Vec<String>| first.into_iter().chain(args.clone()).collect::<Vec<_>>();
    if entry_point.ends_with(".py") {
        (python.to_path_buf(), with(vec![entry_point.to_owned()]))
    } else if entry_point.ends_with(".sh") {
        (PathBuf::from("/bin/sh"), with(vec![entry_point.to_owned()]))
    } else {
        (PathBuf::from(format!("./{entry_point}")), args)
    }
}

fn shown_command(spec: &Spec) -> String {
    std::iter::once(spec.program.display().to_string())
        .chain(spec.args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max.saturating_sub(3);
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Lines into the job's log (in batches: one transaction every 50 ms or [`LOG_BATCH`] lines),
/// metric points into the control's queue (the heartbeat records them), and the last lines
/// kept for a failure's reason.
struct ScriptSink<'a> {
    log: &'a Log,
    control: &'a Arc<Control>,
    scanner: MetricScanner,
    tail: VecDeque<String>,
    stderr_tail: VecDeque<String>,
    pending: Vec<(i64, String)>,
}

/// Most log lines written in one transaction.
const LOG_BATCH: usize = 512;

impl<'a> ScriptSink<'a> {
    fn new(log: &'a Log, control: &'a Arc<Control>, scanner: MetricScanner) -> Self {
        Self {
            log,
            control,
            scanner,
            tail: VecDeque::new(),
            stderr_tail: VecDeque::new(),
            pending: Vec::new(),
        }
    }
}

impl LineSink for ScriptSink<'_> {
    async fn line(&mut self, line: Line) {
        let found = self.scanner.scan(&line.text);
        if !found.is_empty() {
            self.control
                .points
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(found.into_iter().map(|(name, step, value)| MetricPoint {
                    name,
                    step,
                    at: line.at,
                    value,
                }));
            self.control.progress_seq.fetch_add(1, Ordering::Relaxed);
        }
        if !line.text.trim().is_empty() {
            let keep = |q: &mut VecDeque<String>| {
                if q.len() == TAIL_LINES {
                    q.pop_front();
                }
                q.push_back(line.text.clone());
            };
            keep(&mut self.tail);
            if line.stream == Stream::Stderr {
                keep(&mut self.stderr_tail);
            }
        }
        self.pending.push(((line.at * 1000.0) as i64, line.text));
        if self.pending.len() >= LOG_BATCH {
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        if !self.pending.is_empty() {
            let lines = std::mem::take(&mut self.pending);
            self.log.lines(&lines).await;
        }
    }
}

impl ScriptSink<'_> {
    /// What a failed script said last: a Python traceback's last line (the exception), else
    /// the last lines of stderr (or of the log).
    fn error_message(&self) -> String {
        let lines = if self.stderr_tail.is_empty() {
            &self.tail
        } else {
            &self.stderr_tail
        };
        if lines.iter().any(|l| l.starts_with("Traceback"))
            && let Some(last) = lines.iter().rev().find(|l| !l.starts_with(' '))
        {
            return last.clone();
        }
        let n = lines.len().min(5);
        lines
            .iter()
            .skip(lines.len() - n)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }
}
