//! Training images that are neither built-ins nor script-mode framework images: SageMaker
//! runs them as containers (`train` as the argument, the job folder at `/opt/ml`). Pier can
//! only do that through a local container engine, and never pulls: [`availability`] says
//! which engine has the image locally, or why the job cannot run (no engine answers
//! `docker info` / `podman info`, or the image is not present), in words CreateTrainingJob
//! returns as its ValidationException. A job whose engine has the image runs as
//! `ENGINE run --rm --name pier-<job>-<hash> -v <job folder>:/opt/ml … IMAGE train` under the
//! same managed process as a script (the CLI forwards SIGTERM to the container); when it ends,
//! however it ends, `ENGINE rm -f` removes the container.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// The first of `engines` (`docker`, `podman`, or paths to them) that has `image` locally,
/// or why none can run it. Blocking (runs the engines' CLIs, each bounded by a timeout).
pub fn availability(image: &str, engines: &[String]) -> Result<String, String> {
    let mut why = Vec::new();
    for cmd in engines {
        match query(cmd, &["info"]) {
            Ok(()) => match query(cmd, &["image", "inspect", image]) {
                Ok(()) => return Ok(cmd.clone()),
                Err(e) => why.push(format!(
                    "{cmd} runs but does not have the image locally ({e}); Pier never pulls: \
                     run `{cmd} pull {image}` first"
                )),
            },
            Err(e) => why.push(format!("`{cmd} info` failed: {e}")),
        }
    }
    if why.is_empty() {
        why.push("no container engine is configured".into());
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

/// The container's name for a job: `pier-<job>-<8 hex of the job folder>` (unique per data
/// folder, so two servers on one host never share one).
pub fn container_name(job: &str, folder: &std::path::Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(folder.display().to_string().as_bytes());
    format!("pier-{job}-{}", &hex::encode(digest)[..8])
}

/// The arguments of `ENGINE run` for a job: removed when it ends, named, the job folder at
/// `/opt/ml`, the job's environment, `train` as SageMaker gives it.
pub fn run_args(
    name: &str,
    folder: &std::path::Path,
    image: &str,
    env: &[(String, String)],
) -> Vec<String> {
    let mut args = vec![
        "run".to_owned(),
        "--rm".to_owned(),
        "--name".to_owned(),
        name.to_owned(),
        "-v".to_owned(),
        format!("{}:/opt/ml", folder.display()),
    ];
    for (k, v) in env {
        args.push("-e".to_owned());
        args.push(format!("{k}={v}"));
    }
    args.push(image.to_owned());
    args.push("train".to_owned());
    args
}

/// Removes the job's container, whatever state it is in (`ENGINE rm -f NAME`); errors are
/// ignored (it is usually gone already). Blocking, bounded by a timeout.
pub fn remove(engine: &str, name: &str) {
    let _ = query(engine, &["rm", "-f", name]);
}
