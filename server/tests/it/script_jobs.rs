//! Script mode end to end on a real server: small Python scripts written here into a
//! `sourcedir.tar.gz`, run by the in-process runner under the sagemaker-training toolkit's
//! contract (the script itself checks the folder, the `SM_*` variables, the config files and
//! its arguments), their metrics matched on the log, their model packed, published with the
//! runtime detected and served. Also every way a script job can go wrong (raises, writes
//! `output/failure`, writes no model, a pickle, a missing entry point, a source that is not a
//! tar.gz, a bad requirements.txt), StopTrainingJob / MaxRuntimeInSeconds / shutdown against
//! scripts that ignore SIGTERM and leave children (none may survive), the requirements
//! environment cache, and the refusals (scripts beyond loopback, container images).
//!
//! The scripts use only Python's standard library (`python3` on PATH); models are copied
//! from the committed fixtures.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::TestServer;
use pier_db::{Db, JobKind};
use pier_model_store::{ModelStore, VersionSelector};
use serde_json::{Value, json};

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(path)
}

const SKLEARN: &str =
    "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3";

/// A server whose scripts get a 1 s grace period.
async fn server(dir: &Path) -> TestServer {
    let mut config = common::config(&dir.join("data"));
    config.jobs.script.grace = Duration::from_secs(1);
    TestServer::start_with(config).await
}

/// Writes `files` as a gzip'd tar (the SDK's `sourcedir.tar.gz`) under `dir`.
fn tarball(dir: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let path = dir.join(name);
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    for (file, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, file, content.as_bytes())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    path
}

/// The SDK's hyperparameters: every value JSON-encoded, plus its `sagemaker_*` ones.
fn hyperparameters(program: &str, source: &Path, user: Value) -> Value {
    let mut hp = serde_json::Map::new();
    for (k, v) in user.as_object().unwrap() {
        hp.insert(k.clone(), json!(v.to_string()));
    }
    hp.insert(
        "sagemaker_program".into(),
        json!(json!(program).to_string()),
    );
    hp.insert(
        "sagemaker_submit_directory".into(),
        json!(json!(format!("file://{}", source.display())).to_string()),
    );
    hp.insert("sagemaker_container_log_level".into(), json!("20"));
    hp.insert("sagemaker_region".into(), json!("\"us-east-1\""));
    Value::Object(hp)
}

fn request(name: &str, image: &str, hp: Value, channels: &[(&str, &Path)], out: &Path) -> Value {
    let channels: Vec<Value> = channels
        .iter()
        .map(|(c, p)| {
            json!({"ChannelName": c, "ContentType": "text/csv", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": format!("file://{}", p.display()),
                "S3DataDistributionType": "FullyReplicated"}}})
        })
        .collect();
    json!({
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
        "HyperParameters": hp,
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": format!("file://{}", out.display())},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600}
    })
}

/// A one-file script job over one small channel.
fn simple(dir: &Path, name: &str, script: &str, user: Value) -> Value {
    let data = dir.join(format!("{name}-data"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("train.csv"), "1,2\n").unwrap();
    let source = tarball(dir, &format!("{name}.tar.gz"), &[("train.py", script)]);
    request(
        name,
        "pier-script",
        hyperparameters("train.py", &source, user),
        &[("train", &data)],
        &dir.join("out"),
    )
}

async fn wait_job(s: &TestServer, name: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let d = s
            .ok("DescribeTrainingJob", json!({"TrainingJobName": name}))
            .await;
        if matches!(
            d["TrainingJobStatus"].as_str(),
            Some("Completed" | "Failed" | "Stopped")
        ) {
            return d;
        }
        assert!(Instant::now() < deadline, "{name} did not end: {d}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The job's log lines, through CloudWatch Logs' API.
async fn job_log(s: &TestServer, name: &str) -> Vec<String> {
    let call = |action: &str, body: Value| {
        s.client
            .post(format!("http://{}/", s.admin))
            .header("X-Amz-Target", format!("Logs_20140328.{action}"))
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(body.to_string())
            .send()
    };
    let streams: Value = call(
        "DescribeLogStreams",
        json!({"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamNamePrefix": format!("{name}/")}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let stream = streams["logStreams"][0]["logStreamName"].as_str().unwrap();
    let page: Value = call(
        "GetLogEvents",
        json!({"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamName": stream,
               "startFromHead": true, "limit": 10000}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect()
}

/// Waits until a file appears (a script's PIDs), returns its content.
async fn wait_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.is_empty()
        {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts every PID is gone (zombies count as gone), within a few seconds.
async fn assert_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive: Vec<u32> = pids
            .iter()
            .copied()
            .filter(|&p| pier_jobs::script::process::alive(p))
            .collect();
        if alive.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes left behind: {alive:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pids(text: &str) -> Vec<u32> {
    text.split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect()
}

const CONTRACT_SCRIPT: &str = r#"
import argparse, json, os, shutil, sys
from lib.helper import NAME
p = argparse.ArgumentParser()
p.add_argument("--epochs", type=int)
p.add_argument("--name")
p.add_argument("--fixture")
a = p.parse_args()
env = os.environ
base = env["SAGEMAKER_BASE_DIR"]
def need(ok, what):
    if not ok:
        print("contract broken: " + what, file=sys.stderr)
        sys.exit(3)
need(NAME == "helper", "the code folder's modules import")
need(a.epochs == 3 and a.name == "forest", "arguments %r" % sys.argv)
need(os.getcwd() == base + "/code", "cwd " + os.getcwd())
need(env["SM_MODEL_DIR"] == base + "/model" and os.path.isdir(env["SM_MODEL_DIR"]), "SM_MODEL_DIR")
need(json.loads(env["SM_CHANNELS"]) == ["train", "validation"], "SM_CHANNELS " + env["SM_CHANNELS"])
train = env["SM_CHANNEL_TRAIN"]
need(train == base + "/input/data/train", "SM_CHANNEL_TRAIN")
need(sorted(os.listdir(train)) == ["a.csv", "sub"], "train files %r" % os.listdir(train))
need(open(os.path.join(train, "sub", "b.csv")).read() == "3,4\n", "train content")
need(os.listdir(env["SM_CHANNEL_VALIDATION"]) == ["valid.csv"], "validation files")
need(json.loads(env["SM_HPS"]) == {"epochs": 3, "name": "forest", "fixture": a.fixture}, "SM_HPS " + env["SM_HPS"])
need(env["SM_HP_EPOCHS"] == "3" and env["SM_HP_NAME"] == "forest", "SM_HP_*")
need(json.loads(env["SM_USER_ARGS"]) == ["--epochs", "3", "--fixture", a.fixture, "--name", "forest"], "SM_USER_ARGS")
config = env["SM_INPUT_CONFIG_DIR"]
hp = json.load(open(config + "/hyperparameters.json"))
need(hp["epochs"] == "3" and json.loads(hp["sagemaker_program"]) == "train.py", "hyperparameters.json %r" % hp)
rc = json.load(open(config + "/resourceconfig.json"))
need(rc["current_host"] == "algo-1" and rc["hosts"] == ["algo-1"], "resourceconfig.json")
idc = json.load(open(config + "/inputdataconfig.json"))
need(idc["train"]["ContentType"] == "text/csv" and idc["train"]["TrainingInputMode"] == "File", "inputdataconfig.json")
need(os.path.isdir(env["SM_OUTPUT_DATA_DIR"]) and env["SM_OUTPUT_DIR"] == base + "/output", "output dirs")
need(env["SM_INPUT_DIR"] == base + "/input" and env["SM_CURRENT_HOST"] == "algo-1", "input dir, host")
need(int(env["SM_NUM_CPUS"]) >= 1 and env["SM_NUM_GPUS"].isdigit(), "cpus, gpus")
need(env["SM_MODULE_DIR"].endswith("/source.tar.gz") and env["SM_LOG_LEVEL"] == "20", "module dir, log level")
te = json.loads(env["SM_TRAINING_ENV"])
need(te["hyperparameters"]["epochs"] == 3 and te["job_name"] == env["TRAINING_JOB_NAME"] == "contract", "SM_TRAINING_ENV")
need(env["MY_VAR"] == "from-environment", "the job's Environment")
for epoch in range(1, a.epochs + 1):
    print(f"epoch {epoch}: loss={1.0 / epoch:.4f} val_acc={0.5 + epoch / 10:.2f}")
print("a warning on stderr", file=sys.stderr)
shutil.copy(a.fixture, os.path.join(env["SM_MODEL_DIR"], "model.onnx"))
open(os.path.join(env["SM_OUTPUT_DATA_DIR"], "report.txt"), "w").write("accuracy 0.8")
os.makedirs(os.path.join(env["SM_MODEL_DIR"], "extra"))
open(os.path.join(env["SM_MODEL_DIR"], "extra", "notes.txt"), "w").write("notes")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_script_sees_the_contract_reports_metrics_and_its_model_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let train = dir.path().join("train");
    std::fs::create_dir_all(train.join("sub")).unwrap();
    std::fs::write(train.join("a.csv"), "1,2\n").unwrap();
    std::fs::write(train.join("sub/b.csv"), "3,4\n").unwrap();
    let valid = dir.path().join("valid.csv");
    std::fs::write(&valid, "5,6\n").unwrap();
    let source = tarball(
        dir.path(),
        "source.tar.gz",
        &[
            ("train.py", CONTRACT_SCRIPT),
            ("lib/__init__.py", ""),
            ("lib/helper.py", "NAME = 'helper'\n"),
        ],
    );
    let onnx = fixture("onnx/iris-logreg/model.onnx");
    let hp = hyperparameters(
        "train.py",
        &source,
        json!({"epochs": 3, "name": "forest", "fixture": onnx.display().to_string()}),
    );
    let out = dir.path().join("out");
    let mut req = request(
        "contract",
        SKLEARN,
        hp.clone(),
        &[("train", &train), ("validation", &valid)],
        &out,
    );
    req["AlgorithmSpecification"]["MetricDefinitions"] = json!([
        {"Name": "train:loss", "Regex": "loss=([0-9.]+)"},
        {"Name": "validation:accuracy", "Regex": "val_acc=([0-9.]+)"}
    ]);
    req["Environment"] = json!({"MY_VAR": "from-environment"});
    s.ok("CreateTrainingJob", req).await;
    let d = wait_job(&s, "contract", Duration::from_secs(120)).await;
    assert_eq!(
        d["TrainingJobStatus"],
        "Completed",
        "{}\n{:#?}",
        d["FailureReason"],
        job_log(&s, "contract").await
    );
    let transitions: Vec<&str> = d["SecondaryStatusTransitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["Status"].as_str().unwrap())
        .collect();
    assert_eq!(
        transitions,
        [
            "Starting",
            "Downloading",
            "Training",
            "Uploading",
            "Completed"
        ]
    );
    assert_eq!(d["HyperParameters"], hp);
    let mut finals: Vec<(String, f64)> = d["FinalMetricDataList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["MetricName"].as_str().unwrap().to_owned(),
                m["Value"].as_f64().unwrap(),
            )
        })
        .collect();
    finals.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        finals,
        [
            ("train:loss".to_string(), 0.3333),
            ("validation:accuracy".to_string(), 0.8)
        ]
    );
    assert_eq!(d["PierArtifact"], "pier://contract/1");
    let location = format!("file://{}/contract/output/model.tar.gz", out.display());
    assert_eq!(d["ModelArtifacts"]["S3ModelArtifacts"], location.as_str());

    // The script's output is the job's log, stdout and stderr.
    let log = job_log(&s, "contract").await;
    assert!(
        log.iter().any(|l| l == "epoch 2: loss=0.5000 val_acc=0.70"),
        "{log:#?}"
    );
    assert!(log.iter().any(|l| l == "a warning on stderr"), "{log:#?}");

    // model/ went whole into model.tar.gz; the store holds its top-level files, as onnx.
    let tar = flate2::read::GzDecoder::new(
        std::fs::File::open(out.join("contract/output/model.tar.gz")).unwrap(),
    );
    let mut names: Vec<String> = tar::Archive::new(tar)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["extra/notes.txt", "model.onnx"]);
    // output/data beside it, as SageMaker's output.tar.gz.
    let tar = flate2::read::GzDecoder::new(
        std::fs::File::open(out.join("contract/output/output.tar.gz")).unwrap(),
    );
    let mut report = String::new();
    for entry in tar::Archive::new(tar).entries().unwrap() {
        let mut entry = entry.unwrap();
        assert_eq!(entry.path().unwrap().display().to_string(), "report.txt");
        std::io::Read::read_to_string(&mut entry, &mut report).unwrap();
    }
    assert_eq!(report, "accuracy 0.8");
    let store = ModelStore::open(s.data.join("store")).unwrap();
    let version = store
        .open_version("contract", VersionSelector::Exact(1))
        .unwrap();
    assert_eq!(version.manifest().runtime, "onnx");
    assert_eq!(
        std::fs::read(version.primary_path().unwrap()).unwrap(),
        std::fs::read(&onnx).unwrap()
    );
    assert_eq!(version.manifest().provenance["training_job"], "contract");
    // The job folder went with the job.
    assert!(!s.data.join("jobs/contract").exists());

    // CreateModel with the framework image and the tarball: served as onnx.
    s.ok(
        "CreateModel",
        json!({"ModelName": "contract-model", "PrimaryContainer": {"Image": SKLEARN, "ModelDataUrl": location}}),
    )
    .await;
    let described = s
        .ok("DescribeModel", json!({"ModelName": "contract-model"}))
        .await;
    assert_eq!(described["PrimaryContainer"]["Image"], "onnx");
    s.create_config("contract-config", &[("v", "contract-model", 1.0)])
        .await;
    s.create_endpoint("contract-endpoint", "contract-config")
        .await;
    let answer = s
        .invoke("contract-endpoint", "text/csv", "5.1,3.5,1.4,0.2\n", &[])
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    s.stop().await;

    // Every match of each MetricDefinition is a point, step by step.
    let db = Db::open(&dir.path().join("data")).await.unwrap();
    let points = db
        .read_metrics(JobKind::Training, "contract", Some("train:loss"))
        .await
        .unwrap();
    let steps: Vec<(u64, f64)> = points.iter().map(|p| (p.step, p.value)).collect();
    assert_eq!(steps, [(1, 1.0), (2, 0.5), (3, 0.3333)]);
    assert!(points.windows(2).all(|w| w[0].at <= w[1].at));
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn models_are_detected_by_content_or_named_and_pickles_are_stored_but_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let copy = r#"
import argparse, os, shutil
p = argparse.ArgumentParser()
p.add_argument("--src")
p.add_argument("--dst")
a = p.parse_args()
shutil.copy(a.src, os.path.join(os.environ["SM_MODEL_DIR"], a.dst))
"#;
    let xgb_image = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1";
    for (job, src, dst, runtime, image) in [
        (
            "xgb-json",
            "trees/xgb_reg_squarederror.model.json",
            "xgboost-model.json",
            "xgboost",
            xgb_image,
        ),
        (
            "lgb-text",
            "trees/lgb_regression.txt",
            "model.txt",
            "lightgbm",
            "pier-script",
        ),
    ] {
        let mut req = simple(
            dir.path(),
            job,
            copy,
            json!({"src": fixture(src).display().to_string(), "dst": dst}),
        );
        req["AlgorithmSpecification"]["TrainingImage"] = json!(image);
        s.ok("CreateTrainingJob", req).await;
        let d = wait_job(&s, job, Duration::from_secs(60)).await;
        assert_eq!(d["TrainingJobStatus"], "Completed", "{job}: {d}");
        let store = ModelStore::open(s.data.join("store")).unwrap();
        let v = store.open_version(job, VersionSelector::Exact(1)).unwrap();
        assert_eq!(v.manifest().runtime, runtime, "{job}");
        assert!(!v.manifest().signature.inputs.is_empty(), "{job}");
    }

    // A shell entry point runs with /bin/sh, the hyperparameters as its arguments.
    let source = tarball(
        dir.path(),
        "shell.tar.gz",
        &[(
            "train.sh",
            "[ \"$*\" = \"--depth 4 -k 2\" ] || { echo \"args: $*\" > \"$SM_OUTPUT_DIR/failure\"; exit 1; }\n\
             cp \"$FIXTURE\" \"$SM_MODEL_DIR/model.onnx\"\n",
        )],
    );
    let data = dir.path().join("shell.csv");
    std::fs::write(&data, "1,2\n").unwrap();
    let mut req = request(
        "shell",
        "pier-script",
        hyperparameters("train.sh", &source, json!({"depth": 4, "k": 2})),
        &[("train", &data)],
        &dir.path().join("out"),
    );
    req["Environment"] =
        json!({"FIXTURE": fixture("onnx/iris-logreg/model.onnx").display().to_string()});
    s.ok("CreateTrainingJob", req).await;
    let d = wait_job(&s, "shell", Duration::from_secs(60)).await;
    assert_eq!(d["TrainingJobStatus"], "Completed", "{d}");

    // PIER_RUNTIME names it (no extension to go by).
    let mut req = simple(
        dir.path(),
        "named",
        copy,
        json!({"src": fixture("onnx/iris-logreg/model.onnx").display().to_string(), "dst": "weights"}),
    );
    req["Environment"] = json!({"PIER_RUNTIME": "onnx"});
    s.ok("CreateTrainingJob", req).await;
    let d = wait_job(&s, "named", Duration::from_secs(60)).await;
    assert_eq!(d["TrainingJobStatus"], "Completed", "{d}");

    // A pickle: stored and downloadable, but CreateModel says why not and what instead.
    let pickle = r#"
import os, pickle
pickle.dump({"coef": [1, 2]}, open(os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"), "wb"))
"#;
    s.ok(
        "CreateTrainingJob",
        simple(dir.path(), "pickled", pickle, json!({})),
    )
    .await;
    let d = wait_job(&s, "pickled", Duration::from_secs(60)).await;
    assert_eq!(d["TrainingJobStatus"], "Completed", "{d}");
    assert_eq!(d["PierArtifact"], "pier://pickled/1");
    let store = ModelStore::open(s.data.join("store")).unwrap();
    let v = store
        .open_version("pickled", VersionSelector::Exact(1))
        .unwrap();
    assert!(v.file_path("model.joblib").unwrap().is_file());
    let location = d["ModelArtifacts"]["S3ModelArtifacts"].as_str().unwrap();
    for url in [location, "pier://pickled/1"] {
        let (status, err) = s
            .api(
                "CreateModel",
                json!({"ModelName": "pickled-model", "PrimaryContainer": {"Image": SKLEARN, "ModelDataUrl": url}}),
            )
            .await;
        assert_eq!(status, 400, "{err}");
        let message = err["Message"]
            .as_str()
            .unwrap_or_else(|| err["message"].as_str().unwrap());
        assert!(
            message.contains("model.joblib")
                && message.contains("pickle")
                && message.contains("ONNX"),
            "{message}"
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_name_their_reason_and_publish_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "raises",
            simple(
                dir.path(),
                "raises",
                "def train():\n    raise ValueError('boom in train')\ntrain()\n",
                json!({}),
            ),
            "ValueError: boom in train",
        ),
        (
            "failure-file",
            simple(
                dir.path(),
                "failure-file",
                "import os, sys\nopen(os.environ['SM_OUTPUT_DIR'] + '/failure', 'w').write('bad row 7 in train.csv')\nsys.exit(2)\n",
                json!({}),
            ),
            "AlgorithmError: bad row 7 in train.csv (ExitCode 2)",
        ),
        (
            "no-model",
            simple(
                dir.path(),
                "no-model",
                "print('trained, saved nothing')\n",
                json!({}),
            ),
            "wrote nothing to SM_MODEL_DIR",
        ),
        (
            "no-entry",
            {
                let mut r = simple(dir.path(), "no-entry", "print(1)\n", json!({}));
                r["HyperParameters"]["sagemaker_program"] = json!("\"missing.py\"");
                r
            },
            "\"missing.py\" is not a file of",
        ),
        (
            "not-tar",
            {
                let mut r = simple(dir.path(), "not-tar", "print(1)\n", json!({}));
                let plain = dir.path().join("plain.py");
                std::fs::write(&plain, "print(1)\n").unwrap();
                r["HyperParameters"]["sagemaker_submit_directory"] =
                    json!(json!(format!("file://{}", plain.display())).to_string());
                r
            },
            "is not a tar.gz",
        ),
        (
            "bad-requirements",
            {
                let source = tarball(
                    dir.path(),
                    "bad-req.tar.gz",
                    &[
                        ("train.py", "print(1)\n"),
                        ("requirements.txt", "this is not ( a requirement\n"),
                    ],
                );
                let data = dir.path().join("raises-data");
                request(
                    "bad-requirements",
                    "pier-script",
                    hyperparameters("train.py", &source, json!({})),
                    &[("train", &data)],
                    &dir.path().join("out"),
                )
            },
            "requirements.txt could not be installed",
        ),
    ];
    for (job, req, needle) in cases {
        s.ok("CreateTrainingJob", req).await;
        let d = wait_job(&s, job, Duration::from_secs(120)).await;
        assert_eq!(d["TrainingJobStatus"], "Failed", "{job}: {d}");
        assert_eq!(d["SecondaryStatus"], "Failed");
        let reason = d["FailureReason"].as_str().unwrap();
        assert!(reason.contains(needle), "{job}: {reason}");
        assert!(reason.len() <= 1024, "{job}");
        assert!(d.get("PierArtifact").is_none(), "{job}: {d}");
        assert!(
            !dir.path()
                .join(format!("out/{job}/output/model.tar.gz"))
                .exists(),
            "{job}"
        );
        assert!(!s.data.join("store").join(job).exists(), "{job}");
    }
    s.stop().await;
}

/// A script that ignores SIGTERM, starts a child that ignores it too and one that leaves the
/// process group, writes the three PIDs, and never ends.
const STUBBORN: &str = r#"
import argparse, os, signal, subprocess, sys, time
p = argparse.ArgumentParser()
p.add_argument("--pids")
a = p.parse_args()
signal.signal(signal.SIGTERM, signal.SIG_IGN)
loop = "import time\nwhile True: time.sleep(0.2)"
child = subprocess.Popen([sys.executable, "-c", loop])
escapee = subprocess.Popen([sys.executable, "-c", loop], start_new_session=True)
open(a.pids + ".tmp", "w").write(f"{os.getpid()} {child.pid} {escapee.pid}")
os.rename(a.pids + ".tmp", a.pids)
print("ready", flush=True)
while True:
    time.sleep(0.2)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_and_max_runtime_end_every_process_of_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;

    // StopTrainingJob: SIGTERM (ignored), SIGKILL after the 1 s grace, nothing left.
    let pid_file = dir.path().join("stop.pids");
    s.ok(
        "CreateTrainingJob",
        simple(
            dir.path(),
            "stubborn",
            STUBBORN,
            json!({"pids": pid_file.display().to_string()}),
        ),
    )
    .await;
    let running = pids(&wait_file(&pid_file).await);
    assert_eq!(running.len(), 3);
    assert!(
        running
            .iter()
            .all(|&p| pier_jobs::script::process::alive(p))
    );
    let asked = Instant::now();
    s.ok("StopTrainingJob", json!({"TrainingJobName": "stubborn"}))
        .await;
    let d = wait_job(&s, "stubborn", Duration::from_secs(30)).await;
    let took = asked.elapsed();
    assert_eq!(d["TrainingJobStatus"], "Stopped", "{d}");
    assert_eq!(d["SecondaryStatus"], "Stopped");
    assert!(
        took >= Duration::from_millis(900),
        "stopped before the grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_gone(&running).await;
    let log = job_log(&s, "stubborn").await;
    assert!(
        log.iter().any(|l| l.contains("was killed (SIGKILL)")),
        "{log:#?}"
    );

    // MaxRuntimeInSeconds: the same, ending MaxRuntimeExceeded.
    let pid_file = dir.path().join("max.pids");
    let mut req = simple(
        dir.path(),
        "too-long",
        STUBBORN,
        json!({"pids": pid_file.display().to_string()}),
    );
    // Long enough for the script to start and write its PIDs on a loaded machine.
    req["StoppingCondition"]["MaxRuntimeInSeconds"] = json!(6);
    s.ok("CreateTrainingJob", req).await;
    let running = pids(&wait_file(&pid_file).await);
    let d = wait_job(&s, "too-long", Duration::from_secs(30)).await;
    assert_eq!(d["TrainingJobStatus"], "Stopped", "{d}");
    assert_eq!(d["SecondaryStatus"], "MaxRuntimeExceeded");
    assert_gone(&running).await;

    // A script that forks a child and exits: the child goes with it.
    let pid_file = dir.path().join("fork.pids");
    let forks = r#"
import argparse, os, subprocess, sys
p = argparse.ArgumentParser()
p.add_argument("--pids")
a = p.parse_args()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(a.pids, "w").write(str(child.pid))
open(os.path.join(os.environ["SM_MODEL_DIR"], "model.onnx"), "wb").write(open(os.environ["FIXTURE"], "rb").read())
"#;
    let mut req = simple(
        dir.path(),
        "forks",
        forks,
        json!({"pids": pid_file.display().to_string()}),
    );
    req["Environment"] =
        json!({"FIXTURE": fixture("onnx/iris-logreg/model.onnx").display().to_string()});
    s.ok("CreateTrainingJob", req).await;
    let d = wait_job(&s, "forks", Duration::from_secs(60)).await;
    assert_eq!(d["TrainingJobStatus"], "Completed", "{d}");
    assert_gone(&pids(&std::fs::read_to_string(&pid_file).unwrap())).await;

    // Shutdown: the script is stopped and the job handed back to the queue.
    let pid_file = dir.path().join("shutdown.pids");
    s.ok(
        "CreateTrainingJob",
        simple(
            dir.path(),
            "at-shutdown",
            STUBBORN,
            json!({"pids": pid_file.display().to_string()}),
        ),
    )
    .await;
    let running = pids(&wait_file(&pid_file).await);
    s.stop().await;
    assert_gone(&running).await;
    let db = Db::open(&dir.path().join("data")).await.unwrap();
    let row = db
        .get_job::<pier_jobs::training::TrainingJob>(JobKind::Training, "at-shutdown")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status.as_str(), "InProgress");
    assert_eq!(row.body.secondary_status, "Starting");
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requirements_install_into_a_cached_environment() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let script = r#"
import os, sys
assert sys.prefix != sys.base_prefix, "not in a virtual environment"
assert "/jobs/.venvs/" in sys.prefix, sys.prefix
open(os.path.join(os.environ["SM_MODEL_DIR"], "model.onnx"), "wb").write(open(os.environ["FIXTURE"], "rb").read())
"#;
    for job in ["venv-1", "venv-2"] {
        let source = tarball(
            dir.path(),
            &format!("{job}.tar.gz"),
            &[("train.py", script), ("requirements.txt", "pip\n")],
        );
        let data = dir.path().join("data.csv");
        std::fs::write(&data, "1,2\n").unwrap();
        let mut req = request(
            job,
            "pier-script",
            hyperparameters("train.py", &source, json!({})),
            &[("train", &data)],
            &dir.path().join("out"),
        );
        req["Environment"] =
            json!({"FIXTURE": fixture("onnx/iris-logreg/model.onnx").display().to_string()});
        s.ok("CreateTrainingJob", req).await;
        let d = wait_job(&s, job, Duration::from_secs(180)).await;
        assert_eq!(
            d["TrainingJobStatus"],
            "Completed",
            "{d}\n{:#?}",
            job_log(&s, job).await
        );
    }
    let first = job_log(&s, "venv-1").await;
    assert!(
        first
            .iter()
            .any(|l| l.contains("requirements.txt: building the environment")),
        "{first:#?}"
    );
    let second = job_log(&s, "venv-2").await;
    assert!(
        second
            .iter()
            .any(|l| l.contains("requirements.txt: reusing the environment")),
        "{second:#?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_beyond_loopback_need_allow_scripts_and_other_images_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let roots = dir.path().join("roots");
    std::fs::create_dir_all(&roots).unwrap();
    for allow in [false, true] {
        let mut config = common::config(&dir.path().join(format!("data-{allow}")));
        config.admin_addr = "0.0.0.0:0".parse().unwrap();
        config.auth.insecure_admin = true;
        config.import.roots = vec![roots.clone()];
        config.allow_scripts = allow;
        let mut s = TestServer::start_with(config).await;
        s.admin = format!("127.0.0.1:{}", s.admin.port()).parse().unwrap();
        let req = simple(&roots, &format!("beyond-{allow}"), "print(1)\n", json!({}));
        let (status, answer) = s.api("CreateTrainingJob", req).await;
        if allow {
            assert_eq!(status, 200, "{answer}");
        } else {
            assert_eq!(status, 400, "{answer}");
            let text = answer.to_string();
            assert!(text.contains("--allow-scripts"), "{text}");
        }
        s.stop().await;
    }

    // An image that is neither a built-in nor a framework image: run only by a local
    // container engine that has it; this machine's answer names why not.
    let s = server(dir.path()).await;
    let mut req = simple(dir.path(), "container", "print(1)\n", json!({}));
    req["AlgorithmSpecification"]["TrainingImage"] = json!("registry.example.com/team/trainer:1");
    let (status, answer) = s.api("CreateTrainingJob", req).await;
    assert_eq!(status, 400, "{answer}");
    let text = answer.to_string();
    assert!(
        text.contains("registry.example.com/team/trainer:1"),
        "{text}"
    );
    assert!(text.contains("docker") && text.contains("podman"), "{text}");
    s.stop().await;
}

/// A stand-in for `docker`: answers `info` and `image inspect` (it has `local/trainer:1`
/// only), runs a "container" as a local process over the folder mounted at /opt/ml with the
/// `-e` variables, and records every call in `calls` beside itself.
const FAKE_ENGINE: &str = r#"#!/bin/sh
dir=$(dirname "$0")
echo "$*" >> "$dir/calls"
case "$1" in
  info) exit 0 ;;
  image) [ "$3" = "local/trainer:1" ] && exit 0; echo "Error: No such image: $3" >&2; exit 1 ;;
  rm) exit 0 ;;
  run)
    shift
    while [ $# -gt 0 ]; do
      case "$1" in
        --rm) shift ;;
        --name) shift 2 ;;
        -v) mount=${2%:/opt/ml}; shift 2 ;;
        -e) export "$2"; shift 2 ;;
        *) break ;;
      esac
    done
    shift
    exec python3 "$dir/container.py" "$mount" "$@"
    ;;
esac
exit 2
"#;

const FAKE_CONTAINER: &str = r#"
import os, shutil, sys, time
root, args = sys.argv[1], sys.argv[2:]
assert args == ["train"], args
assert os.listdir(os.path.join(root, "input", "data", "train")) == ["train.csv"]
print("in the container of", os.environ["TRAINING_JOB_NAME"], flush=True)
if os.environ.get("MODE") == "forever":
    open(os.environ["PIDS"], "w").write(str(os.getpid()))
    while True:
        time.sleep(0.2)
for i in (1, 2):
    print(f"step {i} rmse={1.0 / i}")
shutil.copy(os.environ["FIXTURE"], os.path.join(root, "model", "model.onnx"))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn images_run_in_a_container_engine_that_has_them_and_never_pulled() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let engine = dir.path().join("engine");
    std::fs::create_dir_all(&engine).unwrap();
    let fake = engine.join("docker");
    std::fs::write(&fake, FAKE_ENGINE).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(engine.join("container.py"), FAKE_CONTAINER).unwrap();
    let mut config = common::config(&dir.path().join("data"));
    config.jobs.script.grace = Duration::from_secs(1);
    config.jobs.script.container_engines = vec![fake.display().to_string()];
    let s = TestServer::start_with(config).await;
    let onnx = fixture("onnx/iris-logreg/model.onnx").display().to_string();

    let mut req = simple(dir.path(), "boxed", "unused", json!({"epochs": 2}));
    req["AlgorithmSpecification"]["TrainingImage"] = json!("local/trainer:1");
    req["AlgorithmSpecification"]["MetricDefinitions"] =
        json!([{"Name": "train:rmse", "Regex": "rmse=([0-9.]+)"}]);
    req["Environment"] = json!({"FIXTURE": onnx});
    s.ok("CreateTrainingJob", req).await;
    let d = wait_job(&s, "boxed", Duration::from_secs(60)).await;
    assert_eq!(
        d["TrainingJobStatus"],
        "Completed",
        "{d}\n{:#?}",
        job_log(&s, "boxed").await
    );
    assert_eq!(d["FinalMetricDataList"][0]["MetricName"], "train:rmse");
    assert_eq!(d["FinalMetricDataList"][0]["Value"], 0.5);
    let log = job_log(&s, "boxed").await;
    assert!(
        log.iter().any(|l| l == "in the container of boxed"),
        "{log:#?}"
    );
    let store = ModelStore::open(s.data.join("store")).unwrap();
    let v = store
        .open_version("boxed", VersionSelector::Exact(1))
        .unwrap();
    assert_eq!(v.manifest().runtime, "onnx");
    let calls = std::fs::read_to_string(engine.join("calls")).unwrap();
    let run = calls.lines().find(|l| l.starts_with("run ")).unwrap();
    let folder = s.data.join("jobs/boxed");
    assert!(run.starts_with("run --rm --name pier-boxed-"), "{run}");
    assert!(
        run.contains(&format!("-v {}:/opt/ml", folder.display())),
        "{run}"
    );
    assert!(run.contains("-e TRAINING_JOB_NAME=boxed"), "{run}");
    assert!(run.ends_with(" local/trainer:1 train"), "{run}");
    assert!(
        calls.lines().any(|l| l.starts_with("rm -f pier-boxed-")),
        "{calls}"
    );
    assert!(!calls.contains("pull"), "{calls}");

    // An image the engine does not have is refused at create: Pier never pulls.
    let mut req = simple(dir.path(), "absent", "unused", json!({}));
    req["AlgorithmSpecification"]["TrainingImage"] = json!("local/absent:2");
    let (status, answer) = s.api("CreateTrainingJob", req).await;
    assert_eq!(status, 400, "{answer}");
    let text = answer.to_string();
    assert!(
        text.contains("does not have the image locally") && text.contains("never pulls"),
        "{text}"
    );

    // StopTrainingJob: the container's process ends and the container is removed.
    let pid_file = dir.path().join("boxed.pid");
    let mut req = simple(dir.path(), "boxed-forever", "unused", json!({}));
    req["AlgorithmSpecification"]["TrainingImage"] = json!("local/trainer:1");
    req["Environment"] = json!({"MODE": "forever", "PIDS": pid_file.display().to_string()});
    s.ok("CreateTrainingJob", req).await;
    let running = pids(&wait_file(&pid_file).await);
    s.ok(
        "StopTrainingJob",
        json!({"TrainingJobName": "boxed-forever"}),
    )
    .await;
    let d = wait_job(&s, "boxed-forever", Duration::from_secs(30)).await;
    assert_eq!(d["TrainingJobStatus"], "Stopped", "{d}");
    assert_gone(&running).await;
    let calls = std::fs::read_to_string(engine.join("calls")).unwrap();
    assert!(
        calls
            .lines()
            .any(|l| l.starts_with("rm -f pier-boxed-forever-")),
        "{calls}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_without_allow_scripts_fails_script_jobs_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The server queues (its admin port is on loopback) but runs nothing itself.
    let mut config = common::config(&data);
    config.jobs.slots = 0;
    let s = TestServer::start_with(config).await;
    // A `pier worker` without --allow-scripts.
    let mut worker_config = pier_jobs::RunnerConfig::default();
    worker_config.script.allowed = false;
    worker_config.script.work_dir = data.join("jobs");
    let worker = pier_jobs::Runner::new(
        Db::open(&data).await.unwrap(),
        ModelStore::open(data.join("store")).unwrap(),
        worker_config,
    )
    .unwrap()
    .start();
    s.ok(
        "CreateTrainingJob",
        simple(dir.path(), "refused", "print(1)\n", json!({})),
    )
    .await;
    let d = wait_job(&s, "refused", Duration::from_secs(30)).await;
    assert_eq!(d["TrainingJobStatus"], "Failed", "{d}");
    let reason = d["FailureReason"].as_str().unwrap();
    assert!(reason.contains("--allow-scripts"), "{reason}");
    assert!(!data.join("jobs/refused").exists());
    worker.shutdown().await;
    s.stop().await;
}

const QUADRATIC: &str = r#"
import argparse, os
p = argparse.ArgumentParser()
p.add_argument("-x", type=float)  # the toolkit passes one-letter names with one dash
a, _ = p.parse_known_args()
print("loss=%.6f" % ((a.x - 3.0) ** 2), flush=True)
open(os.path.join(os.environ["SM_MODEL_DIR"], "model.pkl"), "wb").write(b"not served")
"#;

/// A tuning job over a script job: the objective is a `MetricDefinitions` metric matched on
/// the scripts' logs, and the best job is the one whose tuned value gave the lowest.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tuning_job_searches_over_a_script_by_its_metric_definitions() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path()).await;
    let mut child = simple(dir.path(), "quad", QUADRATIC, json!({}));
    let fields = child.as_object_mut().unwrap();
    fields.remove("TrainingJobName");
    let mut spec = fields.remove("AlgorithmSpecification").unwrap();
    spec["MetricDefinitions"] = json!([{"Name": "loss", "Regex": "loss=([0-9.]+)"}]);
    let statics = fields.remove("HyperParameters").unwrap();
    fields.insert("AlgorithmSpecification".into(), spec);
    fields.insert("StaticHyperParameters".into(), statics);
    s.ok(
        "CreateHyperParameterTuningJob",
        json!({
            "HyperParameterTuningJobName": "quad-search",
            "HyperParameterTuningJobConfig": {
                "Strategy": "Random", "RandomSeed": 7,
                "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "loss"},
                "ResourceLimits": {"MaxNumberOfTrainingJobs": 3, "MaxParallelTrainingJobs": 1},
                "ParameterRanges": {"ContinuousParameterRanges": [
                    {"Name": "x", "MinValue": "0", "MaxValue": "6"}]}},
            "TrainingJobDefinition": child,
        }),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(180);
    let d = loop {
        let d = s
            .ok(
                "DescribeHyperParameterTuningJob",
                json!({"HyperParameterTuningJobName": "quad-search"}),
            )
            .await;
        if matches!(
            d["HyperParameterTuningJobStatus"].as_str(),
            Some("Completed" | "Failed" | "Stopped")
        ) {
            break d;
        }
        assert!(Instant::now() < deadline, "the search did not end: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(d["HyperParameterTuningJobStatus"], "Completed", "{d}");
    let children = s
        .ok(
            "ListTrainingJobsForHyperParameterTuningJob",
            json!({"HyperParameterTuningJobName": "quad-search"}),
        )
        .await;
    let summaries = children["TrainingJobSummaries"].as_array().unwrap();
    assert_eq!(summaries.len(), 3, "{children}");
    let mut best = f64::INFINITY;
    for c in summaries {
        let x: f64 = c["TunedHyperParameters"]["x"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let loss = c["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
            .as_f64()
            .unwrap();
        assert!((loss - (x - 3.0).powi(2)).abs() < 1e-4, "{c}");
        best = best.min(loss);
    }
    let reported = d["BestTrainingJob"]["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        .as_f64()
        .unwrap();
    assert!((reported - best).abs() < 1e-9, "{d}");
    s.stop().await;
}
