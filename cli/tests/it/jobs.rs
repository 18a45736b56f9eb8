//! `pier worker` and `pier jobs` as a user runs them: a server that runs no jobs itself
//! (`--job-slots 0`), workers on the same data folder, a job waited for, listed, described
//! and its log printed; a worker killed with SIGKILL mid-job (the next worker fails the job
//! with a reason) and one stopped with SIGTERM (it hands its job back to the queue).

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{PIER, pier};
use serde_json::{Value, json};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `pier ARGS` and returns it with the first line it printed.
fn start(args: &[&str], data: &Path) -> (Proc, String) {
    let mut child = Command::new(PIER)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("pier printed nothing").unwrap();
    std::thread::spawn(move || lines.for_each(drop));
    (Proc(child), first)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/builtin")
        .join(name)
}

fn api(admin: &str, action: &str, body: Value) -> Value {
    let r = reqwest::blocking::Client::new()
        .post(format!("http://{admin}/"))
        .header("X-Amz-Target", format!("SageMaker.{action}"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(body.to_string())
        .send()
        .unwrap();
    let status = r.status();
    let body: Value = r.json().unwrap();
    assert!(status.is_success(), "{action}: {body}");
    body
}

fn create(admin: &str, name: &str, rounds: &str, out: &Path) {
    api(
        admin,
        "CreateTrainingJob",
        json!({
            "TrainingJobName": name,
            "AlgorithmSpecification": {"TrainingImage": "xgboost", "TrainingInputMode": "File"},
            "HyperParameters": {"objective": "binary:logistic", "num_round": rounds, "max_depth": "4"},
            "InputDataConfig": [{"ChannelName": "train", "ContentType": "text/csv",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                    "S3Uri": fixture("breast_cancer_train.csv").display().to_string()}}}],
            "OutputDataConfig": {"S3OutputPath": out.display().to_string()},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600}
        }),
    );
}

fn describe(admin: &str, name: &str) -> Value {
    api(
        admin,
        "DescribeTrainingJob",
        json!({"TrainingJobName": name}),
    )
}

fn wait_for(admin: &str, name: &str, what: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = describe(admin, name);
        if what(&d) {
            return d;
        }
        assert!(Instant::now() < deadline, "{name}: {d}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn workers_run_jobs_and_the_cli_follows_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    let (_server, banner) = start(
        &[
            "serve",
            "--job-slots",
            "0",
            "--http",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--grpc",
            "127.0.0.1:0",
        ],
        &data,
    );
    let admin = banner
        .split_whitespace()
        .find_map(|p| p.strip_prefix("admin="))
        .unwrap()
        .to_owned();
    let admin_url = format!("http://{admin}");
    let (worker, line) = start(&["worker", "--training-threads", "1"], &data);
    assert!(line.starts_with("pier: worker owner="), "{line}");

    create(&admin, "quick", "10", &out);
    let (ok, stdout, stderr) = pier(&["jobs", "wait", "quick", "--admin-url", &admin_url]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "quick: Completed pier://quick/1");
    let (ok, stdout, _) = pier(&["jobs", "list", "--admin-url", &admin_url]);
    assert!(
        ok && stdout
            .lines()
            .any(|l| l.starts_with("quick ") && l.contains("Completed")),
        "{stdout}"
    );
    let (ok, stdout, _) = pier(&["jobs", "logs", "quick", "--admin-url", &admin_url]);
    assert!(
        ok && stdout.contains("#progress 10/10")
            && stdout.trim_end().ends_with("Training job completed"),
        "{stdout}"
    );
    let (ok, stdout, stderr) = pier(&[
        "jobs",
        "logs",
        "quick",
        "--follow",
        "--admin-url",
        &admin_url,
    ]);
    assert!(
        ok && stdout.contains("Training job completed") && stderr.contains("quick: Completed"),
        "{stdout}{stderr}"
    );
    let (ok, stdout, _) = pier(&["jobs", "describe", "quick", "--admin-url", &admin_url]);
    assert!(ok);
    let d: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(d["SecondaryStatus"], "Completed");
    let (ok, _, stderr) = pier(&["jobs", "describe", "ghost", "--admin-url", &admin_url]);
    assert!(
        !ok && stderr.contains("Requested resource not found."),
        "{stderr}"
    );

    // SIGKILL mid-job: the next worker fails the job with a reason at once.
    create(&admin, "killed", "1000000", &out);
    wait_for(&admin, "killed", |d| d["SecondaryStatus"] == "Training");
    let mut worker = worker;
    worker.0.kill().unwrap();
    worker.0.wait().unwrap();
    let (worker, _) = start(&["worker", "--training-threads", "1"], &data);
    let d = wait_for(&admin, "killed", |d| d["TrainingJobStatus"] != "InProgress");
    assert_eq!(d["TrainingJobStatus"], "Failed", "{d}");
    assert!(
        d["FailureReason"]
            .as_str()
            .unwrap()
            .contains("ended before the job did"),
        "{d}"
    );
    let (ok, _, stderr) = pier(&["jobs", "wait", "killed", "--admin-url", &admin_url]);
    assert!(
        !ok && stderr.contains("Failed: the process running it"),
        "{stderr}"
    );
    assert!(!out.join("killed").exists(), "nothing was written");

    // SIGTERM mid-job: the worker hands the job back and exits 0; with no runner it stays
    // queued until stopped.
    create(&admin, "handed-back", "1000000", &out);
    wait_for(&admin, "handed-back", |d| {
        d["SecondaryStatus"] == "Training"
    });
    let mut worker = worker;
    assert!(
        Command::new("kill")
            .args(["-TERM", &worker.0.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        worker.0.wait().unwrap().success(),
        "the worker exits 0 after SIGTERM"
    );
    let d = describe(&admin, "handed-back");
    assert_eq!(
        (
            d["TrainingJobStatus"].as_str(),
            d["SecondaryStatus"].as_str()
        ),
        (Some("InProgress"), Some("Starting")),
        "{d}"
    );
    let (ok, stdout, _) = pier(&["jobs", "stop", "handed-back", "--admin-url", &admin_url]);
    assert!(ok, "{stdout}");
    assert_eq!(
        describe(&admin, "handed-back")["TrainingJobStatus"],
        "Stopped"
    );
}
