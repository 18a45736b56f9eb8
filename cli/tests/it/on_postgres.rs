//! Pier on PostgreSQL as a user runs it: a `pier serve --job-slots 0` and `pier worker`s on
//! one PostgreSQL database share the job queue (each job is claimed by one worker; a worker
//! killed with SIGKILL mid-job has its job retried or failed as the runner defines, never run
//! twice at once), and a server whose database goes away keeps serving, answers control calls
//! with 503, and recovers when the database is back, with no restart.

use crate::common;

use crate::postgres;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::PIER;
use serde_json::{Value, json};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `pier ARGS --data-dir DATA --database-url URL` and returns it with the first line it
/// printed.
fn start(args: &[&str], data: &Path, url: &str) -> (Proc, String) {
    let mut child = Command::new(PIER)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .args(["--database-url", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("pier printed nothing").unwrap();
    std::thread::spawn(move || lines.for_each(drop));
    (Proc(child), first)
}

fn field(banner: &str, key: &str) -> String {
    banner
        .split_whitespace()
        .find_map(|p| p.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {banner}"))
        .to_owned()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/builtin")
        .join(name)
}

/// A SageMaker control-plane call: (HTTP status, body).
fn call(admin: &str, action: &str, body: Value) -> (u16, Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("http://{admin}/"))
        .header("X-Amz-Target", format!("SageMaker.{action}"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(body.to_string())
        .timeout(Duration::from_secs(30))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn api(admin: &str, action: &str, body: Value) -> Value {
    let (status, body) = call(admin, action, body);
    assert_eq!(status, 200, "{action}: {body}");
    body
}

fn create(admin: &str, name: &str, rounds: &str, out: &Path, retries: Option<u32>) {
    let mut body = json!({
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": "xgboost", "TrainingInputMode": "File"},
        "HyperParameters": {"objective": "binary:logistic", "num_round": rounds, "max_depth": "4"},
        "InputDataConfig": [{"ChannelName": "train", "ContentType": "text/csv",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
                "S3Uri": fixture("breast_cancer_train.csv").display().to_string()}}}],
        "OutputDataConfig": {"S3OutputPath": out.display().to_string()},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600}
    });
    if let Some(n) = retries {
        body["RetryStrategy"] = json!({"MaximumRetryAttempts": n});
    }
    api(admin, "CreateTrainingJob", body);
}

fn wait_until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `(owner, attempts, status)` of a training job, from the database itself.
fn row(pg: &postgres::Postgres, job: &str) -> (String, u32, String) {
    let out = pg.psql(
        "pier",
        &format!(
            "SELECT coalesce(owner, ''), attempts, status FROM jobs \
             WHERE kind = 'training' AND name = '{job}'"
        ),
    );
    let mut parts = out.trim().split('|');
    (
        parts.next().unwrap_or_default().to_owned(),
        parts.next().and_then(|a| a.parse().ok()).unwrap_or(0),
        parts.next().unwrap_or_default().to_owned(),
    )
}

fn log_count(pg: &postgres::Postgres, job: &str, like: &str) -> u32 {
    pg.psql(
        "pier",
        &format!(
            "SELECT count(*) FROM job_logs WHERE kind = 'training' AND job = '{job}' \
             AND message LIKE '{like}'"
        ),
    )
    .trim()
    .parse()
    .unwrap()
}

#[test]
fn workers_on_postgres_share_the_queue_and_a_killed_workers_job_runs_once_per_attempt() {
    let pg = postgres::Postgres::start();
    let url = pg.url();
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
        &url,
    );
    let admin = field(&banner, "admin=");
    let worker = |_: ()| start(&["worker", "--training-threads", "1"], &data, &url);
    let (a, a_line) = worker(());
    let (b, b_line) = worker(());
    let (a_owner, b_owner) = (field(&a_line, "owner="), field(&b_line, "owner="));

    // A long job (one retry allowed) takes one worker; quick jobs queued behind it go to
    // the other, while it runs.
    create(&admin, "long", "1000000", &out, Some(1));
    let (first, _, _) = wait_until("a worker to claim the long job", 60, || {
        let (owner, attempts, _) = row(&pg, "long");
        (!owner.is_empty() && attempts == 1).then_some(row(&pg, "long"))
    });
    let quick: Vec<String> = (0..4).map(|i| format!("quick-{i}")).collect();
    for name in &quick {
        create(&admin, name, "5", &out, None);
    }
    for name in &quick {
        wait_until("the quick jobs to complete", 120, || {
            (row(&pg, name).2 == "Completed").then_some(())
        });
    }
    let other = if first == a_owner { &b_owner } else { &a_owner };
    for name in &quick {
        let (owner, attempts, _) = row(&pg, name);
        assert_eq!(
            (&owner, attempts),
            (other, 1),
            "{name} ran once, on the free worker"
        );
        assert_eq!(log_count(&pg, name, "Training job completed"), 1, "{name}");
    }

    // SIGKILL the long job's worker mid-job: the other one retries it (attempt 2 of 2).
    let (mut holder, mut survivor) = if first == a_owner { (a, b) } else { (b, a) };
    holder.0.kill().unwrap();
    holder.0.wait().unwrap();
    let second = wait_until("the surviving worker to retry the long job", 60, || {
        let (owner, attempts, status) = row(&pg, "long");
        (attempts == 2 && !owner.is_empty() && status == "InProgress").then_some(owner)
    });
    assert_eq!(&second, other, "the survivor took it over");
    assert_eq!(log_count(&pg, "long", "Retrying (attempt 2 of 2)%"), 1);

    // Kill that one too; a new worker finds both attempts used and fails the job.
    survivor.0.kill().unwrap();
    survivor.0.wait().unwrap();
    let (_c, _) = worker(());
    let status = wait_until("the long job to end", 60, || {
        let (_, _, status) = row(&pg, "long");
        (status != "InProgress").then_some(status)
    });
    assert_eq!(status, "Failed");
    let d = api(
        &admin,
        "DescribeTrainingJob",
        json!({"TrainingJobName": "long"}),
    );
    let reason = d["FailureReason"].as_str().unwrap();
    assert!(
        reason.contains("ended before the job did") && reason.contains("all 2 attempts were used"),
        "{d}"
    );
    let (_, attempts, _) = row(&pg, "long");
    assert_eq!(attempts, 2, "two attempts, one per worker, never more");
    assert_eq!(log_count(&pg, "long", "Retrying%"), 1);
    assert!(!out.join("long").exists(), "nothing was published");
    // Every job was claimed as many times as it was attempted, and each quick one once.
    let total: u32 = pg
        .psql("pier", "SELECT sum(attempts) FROM jobs")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(total, 4 + 2);
}

fn invoke(http: &str) -> u16 {
    reqwest::blocking::Client::new()
        .post(format!("http://{http}/endpoints/demo/invocations"))
        .header("Content-Type", "text/csv")
        .body("5.1,3.5,1.4,0.2")
        .timeout(Duration::from_secs(30))
        .send()
        .map_or(0, |r| r.status().as_u16())
}

#[test]
fn a_server_on_postgres_serves_on_when_the_database_goes_away_and_recovers() {
    let pg = postgres::Postgres::start();
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_server, banner) = start(
        &[
            "serve",
            "--demo",
            "--http",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--grpc",
            "127.0.0.1:0",
        ],
        &data,
        &url,
    );
    let (http, admin) = (field(&banner, "http="), field(&banner, "admin="));
    assert_eq!(invoke(&http), 200);
    let model = |name: &str| {
        json!({
            "ModelName": name,
            "PrimaryContainer": {"Image": "onnx", "ModelDataUrl": "pier://demo-iris-logreg/1"},
            "ExecutionRoleArn": "arn:aws:iam::000000000000:role/pier"
        })
    };

    pg.stop();
    for _ in 0..3 {
        assert_eq!(invoke(&http), 200, "serving goes on from what is loaded");
    }
    let started = Instant::now();
    let (status, body) = call(&admin, "CreateModel", model("while-down"));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["__type"], "ServiceUnavailable", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("the database is unavailable"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answered within the pool's timeout"
    );

    pg.restart();
    wait_until("control calls to work again", 30, || {
        let (status, _) = call(&admin, "CreateModel", model("after"));
        (status == 200).then_some(())
    });
    let d = api(&admin, "DescribeModel", json!({"ModelName": "after"}));
    assert_eq!(d["ModelName"], "after");
    assert_eq!(invoke(&http), 200);
}

#[test]
fn an_unreachable_database_at_start_is_named_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("postgres://pier:hunter2@127.0.0.1:{port}/pier");
    for args in [
        &[
            "serve",
            "--http",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--grpc",
            "127.0.0.1:0",
        ][..],
        &["worker"][..],
    ] {
        let out = Command::new(PIER)
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--database-url", &url])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr.contains(&format!(
                "cannot connect to the database postgres://pier:***@127.0.0.1:{port}/pier"
            )) && !stderr.contains("hunter2"),
            "{args:?}: {stderr}"
        );
    }
}
