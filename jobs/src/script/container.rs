//! Training images that are neither built-ins nor script-mode framework images: SageMaker
//! runs them as containers (`train` as the argument, the job folder at `/opt/ml`). Pier can
//! only do that through a local container engine, and never pulls: [`availability`] says
//! which engine has the image locally, or why the job cannot run (no engine answers
//! `docker info` / `podman info`, or the image is not present), in words CreateTrainingJob
//! returns as its ValidationException.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A local container engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// `docker`.
    Docker,
    /// `podman`.
    Podman,
}

impl Engine {
    /// The command.
    pub fn command(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
        }
    }
}

/// How long one engine query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `program args` with a timeout; `Ok(())` on exit 0, else what went wrong (the last
/// line of its stderr, or why it could not run).
fn query(program: &str, args: &[&str]) -> Result<(), String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => "not installed".to_owned(),
            _ => e.to_string(),
        })?;
    let deadline = Instant::now() + QUERY_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                if status.success() {
                    return Ok(());
                }
                let last = err
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim()
                    .chars()
                    .take(300)
                    .collect::<String>();
                return Err(if last.is_empty() {
                    format!("exited with {status}")
                } else {
                    last
                });
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {} s", QUERY_TIMEOUT.as_secs()));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The engine that has `image` locally, or why none can run it. Blocking (runs the engines'
/// CLIs, each bounded by a timeout).
pub fn availability(image: &str) -> Result<Engine, String> {
    let mut why = Vec::new();
    for engine in [Engine::Docker, Engine::Podman] {
        let cmd = engine.command();
        match query(cmd, &["info"]) {
            Ok(()) => match query(cmd, &["image", "inspect", image]) {
                Ok(()) => return Ok(engine),
                Err(e) => why.push(format!(
                    "{cmd} runs but does not have the image locally ({e}); Pier never pulls: \
                     run `{cmd} pull {image}` first"
                )),
            },
            Err(e) => why.push(format!("`{cmd} info` failed: {e}")),
        }
    }
    Err(format!(
        "AlgorithmSpecification.TrainingImage {image:?} is neither a Pier built-in nor a \
         script-mode framework image (sagemaker-scikit-learn, sagemaker-xgboost with \
         sagemaker_program, pytorch-training, tensorflow-training, huggingface-pytorch-training, \
         pier-script), and Pier runs other images only in a local container engine that has \
         them: {}",
        why.join("; ")
    ))
}
