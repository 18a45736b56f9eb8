//! `pier worker` (a job runner alone, on a data folder) and `pier jobs list | describe | logs
//! | stop | wait` (clients of the control API: SageMaker's training and transform job actions
//! and the CloudWatch Logs subset; a name is looked up as a training job, then a transform
//! job). `wait` and `logs --follow` draw a progress bar (indicatif, on
//! stderr) from the job's `#progress DONE/TOTAL` log lines.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::{AdminArgs, api};

/// Options of `pier worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Data folder shared with `pier serve` (pier.db and store/).
    #[arg(long, env = "PIER_DATA_DIR", default_value = "./pier-data")]
    data_dir: PathBuf,
    #[command(flatten)]
    store: crate::store::StoreArgs,
    #[command(flatten)]
    database: crate::database::DatabaseArgs,
    /// Jobs run at once.
    #[arg(long, default_value_t = 1)]
    job_slots: usize,
    /// Threads of the training pool (default: half the cores).
    #[arg(long)]
    training_threads: Option<usize>,
    /// Folder that local training channels and transform inputs and outputs must be under
    /// (repeatable), as `pier serve --import-root`. Without one, any local path.
    #[arg(long = "import-root", value_name = "DIR")]
    import_roots: Vec<PathBuf>,
    #[command(flatten)]
    scripts: ScriptArgs,
}

/// Script jobs' options, shared by `pier serve` and `pier worker`.
#[derive(Debug, Args)]
pub struct ScriptArgs {
    /// Run script jobs (users' training code, run as this process's user). `pier serve` runs
    /// them without this flag while --admin is on loopback; beyond loopback, and for `pier
    /// worker`, they need it.
    #[arg(long)]
    pub allow_scripts: bool,
    /// The Python interpreter of script jobs' `.py` entry points and of their
    /// requirements.txt environments.
    #[arg(long, value_name = "PATH", default_value = "python3")]
    pub python: String,
    /// Seconds a stopped script job (StopTrainingJob, MaxRuntimeInSeconds, shutdown) has
    /// between SIGTERM and SIGKILL.
    #[arg(long, value_name = "SECONDS", default_value_t = 120.0)]
    pub script_grace: f64,
}

impl ScriptArgs {
    /// Applies the options; `allowed_by_default` is whether scripts run without the flag.
    pub fn apply(
        &self,
        config: &mut pier_jobs::script::ScriptConfig,
        allowed_by_default: bool,
    ) -> anyhow::Result<()> {
        if !(self.script_grace >= 0.0 && self.script_grace.is_finite()) {
            bail!("--script-grace must be a number of seconds, 0 or more");
        }
        if self.python.trim().is_empty() {
            bail!("--python must name an interpreter");
        }
        config.allowed = self.allow_scripts || allowed_by_default;
        config.python = self.python.clone();
        config.grace = Duration::from_secs_f64(self.script_grace);
        Ok(())
    }
}

/// The kinds of job `pier jobs` covers, and their API's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Training,
    Transform,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Training => "Training",
            Kind::Transform => "Transform",
        }
    }

    fn log_group(self) -> &'static str {
        match self {
            Kind::Training => "/aws/sagemaker/TrainingJobs",
            Kind::Transform => "/aws/sagemaker/TransformJobs",
        }
    }

    /// `TrainingJobStatus`, `TransformJobName`, …
    fn field(self, what: &str) -> String {
        format!("{}Job{what}", self.prefix())
    }
}

/// `pier jobs …`.
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List training and transform jobs, then hyperparameter tuning jobs, newest first.
    List {
        /// Only jobs in this status (InProgress, Completed, Failed, Stopping, Stopped).
        #[arg(long)]
        status: Option<String>,
        /// Only jobs whose name contains this.
        #[arg(long)]
        name_contains: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show a training or transform job (Describe*Job's JSON), or a hyperparameter tuning
    /// job: its leaderboard (best first) and the best job's hyperparameters.
    Describe {
        /// Job name.
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print a training or transform job's log.
    Logs {
        /// Job name.
        name: String,
        /// Keep printing new lines until the job ends (with a progress bar).
        #[arg(long)]
        follow: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Stop a training or transform job (it ends Stopped at its next unit of work), or a
    /// tuning job and every child it runs.
    Stop {
        /// Job name.
        name: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Wait for a training or transform job to end, with a progress bar; fails if the job
    /// failed.
    Wait {
        /// Job name.
        name: String,
        /// Give up after this many seconds.
        #[arg(long)]
        timeout: Option<f64>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

pub async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let mut config = pier_jobs::RunnerConfig {
        slots: args.job_slots.max(1),
        ..Default::default()
    };
    if let Some(threads) = args.training_threads {
        if threads == 0 {
            bail!("--training-threads must be at least 1");
        }
        config.training_threads = threads;
    }
    if !args.import_roots.is_empty() {
        config.import_policy = pier_model_store::ImportPolicy::under_roots(&args.import_roots)
            .context("--import-root")?;
    }
    args.scripts.apply(&mut config.script, false)?;
    config.script.work_dir = args.data_dir.join("jobs");
    let db = args.database.open(&args.data_dir).await?;
    let store = args.store.open(&args.data_dir)?;
    let runner = pier_jobs::Runner::new(db.clone(), store.clone(), config)?;
    runner.set_model_source(std::sync::Arc::new(pier_server::control::Models(
        pier_server::control::ControlPlaneModels::standalone(db.clone(), store),
    )));
    let handle = runner.start();
    println!("pier: worker owner={}", runner.owner());
    crate::commands::shutdown_signal().await;
    tracing::info!("worker shutting down: requeueing running jobs");
    handle.shutdown().await;
    db.close().await;
    Ok(())
}

pub async fn jobs(cmd: JobsCommand) -> anyhow::Result<()> {
    match cmd {
        JobsCommand::List {
            status,
            name_contains,
            admin,
        } => {
            list(&admin, status.clone(), name_contains.clone()).await?;
            crate::tuning::list(&admin, status.as_deref(), name_contains.as_deref()).await
        }
        JobsCommand::Describe { name, admin } => {
            // A tuning job: its leaderboard; else the training job's JSON.
            if let Some(text) = crate::tuning::describe(&admin, &name).await? {
                print!("{text}");
                return Ok(());
            }
            let (_, job) = find(&admin, &name).await?;
            println!("{}", serde_json::to_string_pretty(&job)?);
            Ok(())
        }
        JobsCommand::Logs {
            name,
            follow,
            admin,
        } => {
            let mut tail = Tail::new(&admin, &name).await?;
            if !follow {
                tail.poll(None).await?;
                return Ok(());
            }
            let bar = bar(&name)?;
            let status = watch(&admin, &name, &mut tail, &bar, None).await?;
            bar.finish_and_clear();
            eprintln!("{name}: {status}");
            Ok(())
        }
        JobsCommand::Stop { name, admin } => {
            match find(&admin, &name).await {
                Ok((kind, _)) => {
                    let mut body = json!({});
                    body[kind.field("Name")] = json!(name);
                    api::call(
                        &admin.admin_url,
                        admin.token.as_deref(),
                        &format!("Stop{}Job", kind.prefix()),
                        body,
                    )
                    .await?;
                }
                // Neither a training nor a transform job: a tuning job of that name (its
                // children stop too).
                Err(e) if e.to_string().contains("Requested resource not found.") => {
                    api::call(
                        &admin.admin_url,
                        admin.token.as_deref(),
                        "StopHyperParameterTuningJob",
                        json!({ "HyperParameterTuningJobName": name }),
                    )
                    .await?;
                }
                Err(e) => return Err(e),
            }
            println!("stopping {name}");
            Ok(())
        }
        JobsCommand::Wait {
            name,
            timeout,
            admin,
        } => {
            let deadline = match timeout {
                Some(t) if t > 0.0 && t.is_finite() => {
                    Some(tokio::time::Instant::now() + Duration::from_secs_f64(t))
                }
                Some(t) => bail!("--timeout must be a positive number of seconds, not {t}"),
                None => None,
            };
            let mut tail = Tail::new(&admin, &name).await?;
            tail.print = false;
            let bar = bar(&name)?;
            let status = watch(&admin, &name, &mut tail, &bar, deadline).await;
            bar.finish_and_clear();
            let status = status?;
            let (_, job) = find(&admin, &name).await?;
            match status.as_str() {
                "Completed" => {
                    println!(
                        "{name}: Completed {}",
                        job["PierArtifact"]
                            .as_str()
                            .or(job["TransformOutput"]["S3OutputPath"].as_str())
                            .unwrap_or("")
                    );
                    Ok(())
                }
                "Failed" => bail!(
                    "{name}: Failed: {}",
                    job["FailureReason"].as_str().unwrap_or("(no reason)")
                ),
                other => {
                    println!(
                        "{name}: {other} ({})",
                        job["SecondaryStatus"].as_str().unwrap_or("")
                    );
                    Ok(())
                }
            }
        }
    }
}

async fn describe(admin: &AdminArgs, kind: Kind, name: &str) -> anyhow::Result<Value> {
    let mut body = json!({});
    body[kind.field("Name")] = json!(name);
    api::call(
        &admin.admin_url,
        admin.token.as_deref(),
        &format!("Describe{}Job", kind.prefix()),
        body,
    )
    .await
}

/// The job named `name`: a training job, else a transform job.
async fn find(admin: &AdminArgs, name: &str) -> anyhow::Result<(Kind, Value)> {
    match describe(admin, Kind::Training, name).await {
        Ok(job) => Ok((Kind::Training, job)),
        Err(e) if e.to_string().contains("Requested resource not found.") => Ok((
            Kind::Transform,
            describe(admin, Kind::Transform, name).await?,
        )),
        Err(e) => Err(e),
    }
}

async fn list(
    admin: &AdminArgs,
    status: Option<String>,
    name_contains: Option<String>,
) -> anyhow::Result<()> {
    println!(
        "{:<40} {:<10} {:<11} {:<20} CREATED",
        "NAME", "KIND", "STATUS", "SECONDARY"
    );
    for kind in [Kind::Training, Kind::Transform] {
        list_kind(admin, kind, &status, &name_contains).await?;
    }
    Ok(())
}

async fn list_kind(
    admin: &AdminArgs,
    kind: Kind,
    status: &Option<String>,
    name_contains: &Option<String>,
) -> anyhow::Result<()> {
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({ "MaxResults": 100 });
        if let Some(s) = &status {
            body["StatusEquals"] = json!(s);
        }
        if let Some(n) = &name_contains {
            body["NameContains"] = json!(n);
        }
        if let Some(t) = &token {
            body["NextToken"] = json!(t);
        }
        let page = api::call(
            &admin.admin_url,
            admin.token.as_deref(),
            &format!("List{}Jobs", kind.prefix()),
            body,
        )
        .await?;
        for job in page[kind.field("Summaries")]
            .as_array()
            .into_iter()
            .flatten()
        {
            println!(
                "{:<40} {:<10} {:<11} {:<20} {:.0}",
                job[kind.field("Name")].as_str().unwrap_or(""),
                kind.prefix().to_ascii_lowercase(),
                job[kind.field("Status")].as_str().unwrap_or(""),
                job["SecondaryStatus"].as_str().unwrap_or(""),
                job["CreationTime"].as_f64().unwrap_or(0.0)
            );
        }
        match page["NextToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => return Ok(()),
        }
    }
}

fn bar(name: &str) -> anyhow::Result<ProgressBar> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix} {msg:20} [{bar:30}] {pos}/{len}")
            .context("progress bar template")?
            .progress_chars("=> "),
    );
    bar.set_prefix(name.to_owned());
    Ok(bar)
}

/// Reads a job's log forward through GetLogEvents.
struct Tail<'a> {
    admin: &'a AdminArgs,
    kind: Kind,
    stream: Option<String>,
    job: String,
    token: Option<String>,
    print: bool,
}

impl<'a> Tail<'a> {
    async fn new(admin: &'a AdminArgs, job: &str) -> anyhow::Result<Self> {
        // Fails with "Requested resource not found." for a job that does not exist.
        let (kind, _) = find(admin, job).await?;
        Ok(Self {
            admin,
            kind,
            stream: None,
            job: job.to_owned(),
            token: None,
            print: true,
        })
    }

    async fn call(&self, action: &str, body: Value) -> anyhow::Result<Value> {
        api::call_target(
            &self.admin.admin_url,
            self.admin.token.as_deref(),
            &format!("Logs_20140328.{action}"),
            body,
        )
        .await
    }

    /// Reads the lines written since the last call; prints them (above `bar`, when given)
    /// and moves `bar` to the latest `#progress`.
    async fn poll(&mut self, bar: Option<&ProgressBar>) -> anyhow::Result<usize> {
        if self.stream.is_none() {
            let streams = self
                .call(
                    "DescribeLogStreams",
                    json!({ "logGroupName": self.kind.log_group(),
                            "logStreamNamePrefix": format!("{}/", self.job) }),
                )
                .await?;
            self.stream = streams["logStreams"][0]["logStreamName"]
                .as_str()
                .map(str::to_owned);
        }
        let Some(stream) = self.stream.clone() else {
            return Ok(0);
        };
        let mut seen = 0;
        loop {
            let mut body = json!({ "logGroupName": self.kind.log_group(),
                                   "logStreamName": stream, "startFromHead": true });
            if let Some(t) = &self.token {
                body["nextToken"] = json!(t);
            }
            let page = self.call("GetLogEvents", body).await?;
            let events = page["events"].as_array().cloned().unwrap_or_default();
            self.token = page["nextForwardToken"].as_str().map(str::to_owned);
            if events.is_empty() {
                return Ok(seen);
            }
            seen += events.len();
            for event in events {
                let line = event["message"].as_str().unwrap_or("");
                if let (Some(bar), Some((done, total))) = (bar, parse_progress(line)) {
                    bar.set_length(total);
                    bar.set_position(done);
                }
                if self.print {
                    // Above the bar on a terminal; plain stdout when the bar is hidden.
                    match bar {
                        Some(bar) => bar.suspend(|| println!("{line}")),
                        None => println!("{line}"),
                    }
                }
            }
        }
    }
}

/// `#progress DONE/TOTAL …` → (done, total).
fn parse_progress(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("#progress ")?;
    let (done, total) = rest.split_whitespace().next()?.split_once('/')?;
    Some((done.parse().ok()?, total.parse().ok()?))
}

/// Follows a job until it ends (or `deadline`); returns its final status.
async fn watch(
    admin: &AdminArgs,
    name: &str,
    tail: &mut Tail<'_>,
    bar: &ProgressBar,
    deadline: Option<tokio::time::Instant>,
) -> anyhow::Result<String> {
    loop {
        let job = describe(admin, tail.kind, name).await?;
        let status = job[tail.kind.field("Status")]
            .as_str()
            .unwrap_or("")
            .to_owned();
        bar.set_message(job["SecondaryStatus"].as_str().unwrap_or("").to_owned());
        tail.poll(Some(bar)).await?;
        if matches!(status.as_str(), "Completed" | "Failed" | "Stopped") {
            tail.poll(Some(bar)).await?;
            return Ok(status);
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            bail!("{name} is still {status} after --timeout");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_parse() {
        assert_eq!(
            parse_progress("#progress 3/10 train:progress=30.0"),
            Some((3, 10))
        );
        assert_eq!(parse_progress("Training job completed"), None);
        assert_eq!(parse_progress("#progress x/10"), None);
    }
}
