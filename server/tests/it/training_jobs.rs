//! Training jobs end to end on a real server: CreateTrainingJob over local channels → the
//! in-process runner → DescribeTrainingJob's statuses, transitions, metrics and artifacts →
//! CreateModel from `S3ModelArtifacts` with SageMaker's image URI → an endpoint → invocations
//! that match `pier train` on the same data. Also: SageMaker's errors, List filters and
//! paging, the CloudWatch Logs subset, StopTrainingJob and MaxRuntimeInSeconds, bad data,
//! reconciliation of a job whose runner died, and two runners sharing one queue.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::TestServer;
use pier_db::{Db, JobKind, JobStatus};
use pier_jobs::training::TrainingJob;
use pier_model_store::{ModelStore, VersionSelector};
use serde_json::{Value, json};

fn builtin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/builtin")
        .join(name)
}

fn job_request(name: &str, image: &str, train: &str, out: &Path, hp: Value) -> Value {
    json!({
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
        "HyperParameters": hp,
        "InputDataConfig": [{
            "ChannelName": "train",
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": train,
                                            "S3DataDistributionType": "FullyReplicated"}},
            "ContentType": "text/csv",
            "CompressionType": "None"
        }],
        "OutputDataConfig": {"S3OutputPath": format!("file://{}", out.display())},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600}
    })
}

/// Waits until the job ends; returns its description.
async fn wait_job(s: &TestServer, name: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let d = s
            .ok("DescribeTrainingJob", json!({"TrainingJobName": name}))
            .await;
        let status = d["TrainingJobStatus"].as_str().unwrap().to_owned();
        if matches!(status.as_str(), "Completed" | "Failed" | "Stopped") {
            return d;
        }
        assert!(Instant::now() < deadline, "{name} still {status}: {d}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the job's secondary status is `status`.
async fn wait_secondary(s: &TestServer, name: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = s
            .ok("DescribeTrainingJob", json!({"TrainingJobName": name}))
            .await;
        if d["SecondaryStatus"] == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never reached {status}: {d}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn logs(s: &TestServer, action: &str, body: Value) -> (u16, Value) {
    let r = s
        .client
        .post(format!("http://{}/", s.admin))
        .header("X-Amz-Target", format!("Logs_20140328.{action}"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A CSV that takes the debug build many seconds to fit with xgboost.
fn slow_data(dir: &Path) -> PathBuf {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut csv = String::new();
    for _ in 0..20_000 {
        let x: Vec<f32> = (0..8).map(|_| rng.f32()).collect();
        let y = u8::from(x[0] + x[1] * x[2] > 0.7);
        csv.push_str(&y.to_string());
        for v in x {
            csv.push_str(&format!(",{v}"));
        }
        csv.push('\n');
    }
    let path = dir.join("slow.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_trains_publishes_and_deploys_like_pier_train() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let s = TestServer::start(&dir.path().join("data")).await;
    let train = builtin("breast_cancer_train.csv");
    let hp = json!({"objective": "binary:logistic", "num_round": "20", "max_depth": "3"});
    let image = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1";
    let created = s
        .ok(
            "CreateTrainingJob",
            job_request("xgb-job", image, train.to_str().unwrap(), &out, hp.clone()),
        )
        .await;
    assert_eq!(
        created["TrainingJobArn"],
        "arn:aws:sagemaker:local:000000000000:training-job/xgb-job"
    );
    let d = wait_job(&s, "xgb-job", Duration::from_secs(120)).await;
    assert_eq!(d["TrainingJobStatus"], "Completed", "{d}");
    assert_eq!(d["SecondaryStatus"], "Completed");
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
    for t in d["SecondaryStatusTransitions"].as_array().unwrap() {
        assert!(
            t["StartTime"].as_f64().unwrap() <= t["EndTime"].as_f64().unwrap(),
            "{t}"
        );
        assert!(t["StatusMessage"].is_string());
    }
    let location = format!("file://{}/xgb-job/output/model.tar.gz", out.display());
    assert_eq!(d["ModelArtifacts"]["S3ModelArtifacts"], location.as_str());
    assert_eq!(d["PierArtifact"], "pier://xgb-job/1");
    assert_eq!(d["HyperParameters"], hp);
    assert_eq!(d["AlgorithmSpecification"]["TrainingImage"], image);
    assert_eq!(d["ResourceConfig"]["InstanceType"], "ml.m5.large");
    assert_eq!(d["StoppingCondition"]["MaxRuntimeInSeconds"], 3600);
    assert_eq!(d["RoleArn"], "arn:aws:iam::123456789012:role/SageMakerRole");
    let (start, end) = (
        d["TrainingStartTime"].as_f64().unwrap(),
        d["TrainingEndTime"].as_f64().unwrap(),
    );
    assert!(d["CreationTime"].as_f64().unwrap() <= start && start <= end);
    assert!(d["TrainingTimeInSeconds"].as_i64().unwrap() >= 0);
    assert_eq!(d["BillableTimeInSeconds"], d["TrainingTimeInSeconds"]);
    let metrics = d["FinalMetricDataList"].as_array().unwrap();
    assert!(!metrics.is_empty(), "{d}");
    assert!(
        metrics
            .iter()
            .all(|m| m["MetricName"].is_string() && m["Value"].is_number())
    );

    // The same artifact as `pier train` on the same data.
    let reference = dir.path().join("reference");
    let store = ModelStore::open(&reference).unwrap();
    let spec = pier_jobs::train::TrainSpec {
        algorithm: pier_algorithms::builtin::Algorithm::XGBoost,
        hyperparameters: serde_json::from_value(hp).unwrap(),
        train: train.clone(),
        validation: None,
        model_name: "reference".into(),
        training_job: None,
    };
    let want = tokio::task::spawn_blocking(move || {
        let outcome = pier_jobs::train::train_and_publish(&store, &spec, &|_| {}).unwrap();
        let artifact = store
            .open_version(&outcome.manifest.name, VersionSelector::Latest)
            .unwrap();
        std::fs::read(artifact.primary_path().unwrap()).unwrap()
    })
    .await
    .unwrap();
    let job_store = ModelStore::open(s.data.join("store")).unwrap();
    let published = job_store
        .open_version("xgb-job", VersionSelector::Exact(1))
        .unwrap();
    assert_eq!(
        std::fs::read(published.primary_path().unwrap()).unwrap(),
        want
    );
    assert_eq!(published.manifest().provenance["training_job"], "xgb-job");

    // CreateModel from the tarball with the SDK's image URI; deploy; invoke.
    s.ok(
        "CreateModel",
        json!({"ModelName": "xgb-model", "PrimaryContainer": {"Image": image, "ModelDataUrl": location}}),
    )
    .await;
    s.create_config("xgb-config", &[("v", "xgb-model", 1.0)])
        .await;
    s.create_endpoint("xgb-endpoint", "xgb-config").await;
    let rows: String = std::fs::read_to_string(builtin("breast_cancer_test.csv"))
        .unwrap()
        .lines()
        .take(5)
        .map(|l| l.split_once(',').unwrap().1.to_owned() + "\n")
        .collect();
    let from_tarball = s
        .invoke("xgb-endpoint", "text/csv", rows.clone(), &[])
        .await;
    assert_eq!(from_tarball.status, 200, "{}", from_tarball.body);
    s.ok(
        "CreateModel",
        json!({"ModelName": "xgb-store", "PrimaryContainer": {"Image": "xgboost", "ModelDataUrl": "pier://xgb-job/1"}}),
    )
    .await;
    s.create_config("store-config", &[("v", "xgb-store", 1.0)])
        .await;
    s.create_endpoint("store-endpoint", "store-config").await;
    let from_store = s.invoke("store-endpoint", "text/csv", rows, &[]).await;
    assert_eq!(from_tarball.body, from_store.body);

    // Its log, through CloudWatch's API as the SageMaker SDK reads it.
    let (status, streams) = logs(
        &s,
        "DescribeLogStreams",
        json!({"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamNamePrefix": "xgb-job/",
               "orderBy": "LogStreamName"}),
    )
    .await;
    assert_eq!(status, 200, "{streams}");
    let stream = streams["logStreams"][0]["logStreamName"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(stream.starts_with("xgb-job/algo-1-"), "{stream}");
    let (status, page) = logs(
        &s,
        "GetLogEvents",
        json!({"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamName": stream,
               "startFromHead": true, "limit": 3}),
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    let mut lines: Vec<String> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    let mut token = page["nextForwardToken"].as_str().unwrap().to_owned();
    loop {
        let (_, page) = logs(
            &s,
            "GetLogEvents",
            json!({"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamName": stream,
                   "startFromHead": true, "nextToken": token}),
        )
        .await;
        let events = page["events"].as_array().unwrap();
        let next = page["nextForwardToken"].as_str().unwrap().to_owned();
        if events.is_empty() {
            assert_eq!(next, token, "the end returns the same token");
            break;
        }
        lines.extend(
            events
                .iter()
                .map(|e| e["message"].as_str().unwrap().to_owned()),
        );
        token = next;
    }
    assert!(
        lines.iter().any(|l| l.starts_with("#progress ")),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("#metric ")), "{lines:?}");
    assert_eq!(lines.last().unwrap(), "Training job completed");
    let (status, missing) = logs(
        &s,
        "GetLogEvents",
        json!({"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamName": "nope/algo-1-1"}),
    )
    .await;
    assert_eq!(
        (status, missing["__type"].as_str()),
        (400, Some("ResourceNotFoundException"))
    );
    s.stop().await;
}

#[tokio::test]
async fn create_refuses_what_sagemaker_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let s = TestServer::start(&dir.path().join("data")).await;
    let train = builtin("wine_train.csv");
    let train = train.to_str().unwrap();
    let ok = job_request(
        "dup",
        "linear-learner",
        train,
        &out,
        json!({"predictor_type": "multiclass_classifier", "num_classes": "3", "epochs": "2"}),
    );
    s.ok("CreateTrainingJob", ok.clone()).await;
    let (status, e) = s.api("CreateTrainingJob", ok).await;
    assert_eq!(
        (status, e["__type"].as_str()),
        (400, Some("ResourceInUse")),
        "{e}"
    );

    for (hp, needle) in [
        (
            json!({"predictor_type": "binary_classifier", "bogus_knob": "1"}),
            "bogus_knob",
        ),
        (
            json!({"predictor_type": "binary_classifier", "epochs": "many"}),
            "epochs",
        ),
    ] {
        let (status, e) = s
            .api(
                "CreateTrainingJob",
                job_request("bad-hp", "linear-learner", train, &out, hp),
            )
            .await;
        assert_eq!(
            (status, e["__type"].as_str()),
            (400, Some("ValidationException"))
        );
        assert!(e["message"].as_str().unwrap().contains(needle), "{e}");
    }
    let (status, e) = s
        .api(
            "CreateTrainingJob",
            job_request(
                "bad-image",
                // Neither a built-in nor a script-mode framework image (tensorflow-training
                // now is one), and no container engine here has it.
                "123.dkr.ecr.us-east-1.amazonaws.com/my-own-algorithm:2",
                train,
                &out,
                json!({}),
            ),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        e["message"].as_str().unwrap().contains("TrainingImage"),
        "{e}"
    );
    let (status, e) = s
        .api("CreateTrainingJob", json!({"TrainingJobName": "x", "AlgorithmSpecification": {"TrainingImage": "pca"}, "Surprise": 1}))
        .await;
    assert_eq!(status, 400);
    assert!(e["message"].as_str().unwrap().contains("Surprise"), "{e}");

    for action in ["DescribeTrainingJob", "StopTrainingJob"] {
        let (status, e) = s.api(action, json!({"TrainingJobName": "missing"})).await;
        assert_eq!(status, 400);
        assert_eq!(e["__type"], "ValidationException");
        assert_eq!(e["message"], "Requested resource not found.", "{action}");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_filters_sorts_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut config = common::config(&dir.path().join("data"));
    config.jobs.slots = 0; // Nothing runs: every job stays InProgress until stopped.
    let s = TestServer::start_with(config).await;
    let train = builtin("wine_train.csv");
    for name in ["alpha-1", "beta-2", "alpha-3"] {
        s.ok(
            "CreateTrainingJob",
            job_request(
                name,
                "kmeans",
                train.to_str().unwrap(),
                &out,
                json!({"k": "3", "feature_dim": "13"}),
            ),
        )
        .await;
    }
    // A queued job stops at once.
    s.ok("StopTrainingJob", json!({"TrainingJobName": "beta-2"}))
        .await;
    let d = s
        .ok("DescribeTrainingJob", json!({"TrainingJobName": "beta-2"}))
        .await;
    assert_eq!(
        (
            d["TrainingJobStatus"].as_str(),
            d["SecondaryStatus"].as_str()
        ),
        (Some("Stopped"), Some("Stopped"))
    );
    let (status, e) = s
        .api("StopTrainingJob", json!({"TrainingJobName": "beta-2"}))
        .await;
    assert_eq!(status, 400, "{e}");

    let names = |page: &Value| -> Vec<String> {
        page["TrainingJobSummaries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["TrainingJobName"].as_str().unwrap().to_owned())
            .collect()
    };
    let all = s.ok("ListTrainingJobs", json!({})).await;
    assert_eq!(
        names(&all),
        ["alpha-3", "beta-2", "alpha-1"],
        "newest first"
    );
    let page = s
        .ok(
            "ListTrainingJobs",
            json!({"NameContains": "ALPHA", "SortBy": "Name", "SortOrder": "Ascending"}),
        )
        .await;
    assert_eq!(names(&page), ["alpha-1", "alpha-3"]);
    let page = s
        .ok("ListTrainingJobs", json!({"StatusEquals": "Stopped"}))
        .await;
    assert_eq!(names(&page), ["beta-2"]);
    let page = s
        .ok(
            "ListTrainingJobs",
            json!({"StatusEquals": "InProgress", "SortBy": "Status"}),
        )
        .await;
    assert_eq!(names(&page).len(), 2);
    let created = all["TrainingJobSummaries"][1]["CreationTime"]
        .as_f64()
        .unwrap();
    let page = s
        .ok("ListTrainingJobs", json!({"CreationTimeAfter": created}))
        .await;
    assert_eq!(names(&page), ["alpha-3"]);
    let page = s
        .ok("ListTrainingJobs", json!({"CreationTimeBefore": created}))
        .await;
    assert_eq!(names(&page), ["alpha-1"]);
    let first = s.ok("ListTrainingJobs", json!({"MaxResults": 2})).await;
    assert_eq!(names(&first).len(), 2);
    let rest = s
        .ok(
            "ListTrainingJobs",
            json!({"MaxResults": 2, "NextToken": first["NextToken"]}),
        )
        .await;
    assert_eq!(names(&rest), ["alpha-1"]);
    assert!(rest.get("NextToken").is_none());
    let (status, e) = s
        .api("ListTrainingJobs", json!({"StatusEquals": "Done"}))
        .await;
    assert_eq!(status, 400, "{e}");
    let (status, _) = s.api("ListTrainingJobs", json!({"SortBy": "Size"})).await;
    assert_eq!(status, 400);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_data_fails_naming_channel_object_and_line_and_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let s = TestServer::start(&dir.path().join("data")).await;
    let channel = dir.path().join("channel");
    std::fs::create_dir_all(&channel).unwrap();
    std::fs::write(channel.join("part-1.csv"), "1,0.5,0.25\n0,0.1,0.2\n").unwrap();
    std::fs::write(channel.join("part-2.csv"), "1,0.5,0.25\n0,0.1\n").unwrap();
    let uri = format!("file://{}", channel.display());
    s.ok(
        "CreateTrainingJob",
        job_request("bad-data", "xgboost", &uri, &out, json!({"num_round": "2"})),
    )
    .await;
    let d = wait_job(&s, "bad-data", Duration::from_secs(60)).await;
    assert_eq!(d["TrainingJobStatus"], "Failed", "{d}");
    assert_eq!(d["SecondaryStatus"], "Failed");
    let reason = d["FailureReason"].as_str().unwrap();
    assert!(reason.starts_with("channel 'train', "), "{reason}");
    assert!(reason.contains("part-2.csv, line 2"), "{reason}");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    s.ok(
        "CreateTrainingJob",
        job_request(
            "no-objects",
            "xgboost",
            empty.to_str().unwrap(),
            &out,
            json!({"num_round": "2"}),
        ),
    )
    .await;
    let d = wait_job(&s, "no-objects", Duration::from_secs(60)).await;
    assert!(
        d["FailureReason"]
            .as_str()
            .unwrap()
            .contains("no objects under"),
        "{d}"
    );
    let store = ModelStore::open(s.data.join("store")).unwrap();
    assert!(
        store.list_names().unwrap().is_empty(),
        "nothing is published"
    );
    assert!(
        !out.join("bad-data").exists(),
        "nothing is written to the output path"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_ends_a_running_job_within_two_seconds_and_max_runtime_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut config = common::config(&dir.path().join("data"));
    config.jobs.slots = 2;
    let s = TestServer::start_with(config).await;
    let data = slow_data(dir.path());
    let hp = json!({"objective": "binary:logistic", "num_round": "100000", "max_depth": "6"});
    s.ok(
        "CreateTrainingJob",
        job_request("long", "xgboost", data.to_str().unwrap(), &out, hp.clone()),
    )
    .await;
    let mut limited = job_request("limited", "xgboost", data.to_str().unwrap(), &out, hp);
    limited["StoppingCondition"]["MaxRuntimeInSeconds"] = json!(2);
    s.ok("CreateTrainingJob", limited).await;
    wait_secondary(&s, "long", "Training").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    s.ok("StopTrainingJob", json!({"TrainingJobName": "long"}))
        .await;
    let d = s
        .ok("DescribeTrainingJob", json!({"TrainingJobName": "long"}))
        .await;
    assert_eq!(d["TrainingJobStatus"], "Stopping", "{d}");
    let d = wait_job(&s, "long", Duration::from_secs(30)).await;
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(2), "stopped after {took:?}");
    assert_eq!(
        (
            d["TrainingJobStatus"].as_str(),
            d["SecondaryStatus"].as_str()
        ),
        (Some("Stopped"), Some("Stopped")),
        "{d}"
    );
    assert!(d.get("PierArtifact").is_none());

    let d = wait_job(&s, "limited", Duration::from_secs(30)).await;
    assert_eq!(d["TrainingJobStatus"], "Stopped", "{d}");
    assert_eq!(d["SecondaryStatus"], "MaxRuntimeExceeded", "{d}");
    let ran = d["TrainingEndTime"].as_f64().unwrap() - d["TrainingStartTime"].as_f64().unwrap();
    assert!((2.0..10.0).contains(&ran), "ran {ran} s");
    let store = ModelStore::open(s.data.join("store")).unwrap();
    assert!(
        store.list_names().unwrap().is_empty(),
        "a stopped job publishes nothing"
    );
    assert!(!out.join("long").exists() && !out.join("limited").exists());
    s.stop().await;
}

/// A job held by a process that no longer exists, as a `kill -9`ed server leaves it.
async fn orphan(db: &Db, name: &str, out: &Path, retries: Option<i64>) {
    let mut request = job_request(
        name,
        "linear-learner",
        builtin("breast_cancer_train.csv").to_str().unwrap(),
        out,
        json!({"predictor_type": "binary_classifier", "epochs": "2"}),
    );
    if let Some(r) = retries {
        request["RetryStrategy"] = json!({"MaximumRetryAttempts": r});
    }
    let mut job: TrainingJob = serde_json::from_value(json!({
        "TrainingJobName": name,
        "TrainingJobArn": format!("arn:aws:sagemaker:local:000000000000:training-job/{name}"),
        "ModelArtifacts": {"S3ModelArtifacts": "x"},
        "TrainingJobStatus": "InProgress",
        "SecondaryStatus": "Starting",
        "AlgorithmSpecification": request["AlgorithmSpecification"],
        "HyperParameters": request["HyperParameters"],
        "InputDataConfig": request["InputDataConfig"],
        "OutputDataConfig": request["OutputDataConfig"],
        "RetryStrategy": request.get("RetryStrategy"),
        "CreationTime": 1.0,
        "LastModifiedTime": 1.0
    }))
    .unwrap();
    job.transition("Starting", "Launching requested ML instances", 1.0);
    assert!(
        db.insert_job(JobKind::Training, name, 1.0, &job)
            .await
            .unwrap()
    );
    // pid 4194305 is above Linux's pid_max: that process cannot exist.
    let owner = format!("{}/4194305/dead", pier_jobs::runner::host());
    let claimed = db
        .claim_job::<TrainingJob>(JobKind::Training, &owner, 2.0, 3600.0)
        .await
        .unwrap();
    assert_eq!(claimed.unwrap().name, name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_whose_process_died_fails_with_a_reason_or_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    let db = Db::open(&data).await.unwrap();
    orphan(&db, "orphan-fails", &out, None).await;
    orphan(&db, "orphan-retries", &out, Some(1)).await;
    db.close().await;
    let s = TestServer::start(&data).await;
    let failed = wait_job(&s, "orphan-fails", Duration::from_secs(30)).await;
    assert_eq!(failed["TrainingJobStatus"], "Failed", "{failed}");
    let reason = failed["FailureReason"].as_str().unwrap();
    assert!(reason.contains("ended before the job did"), "{reason}");
    let retried = wait_job(&s, "orphan-retries", Duration::from_secs(120)).await;
    assert_eq!(retried["TrainingJobStatus"], "Completed", "{retried}");
    let messages: Vec<&str> = retried["SecondaryStatusTransitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["StatusMessage"].as_str().unwrap())
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("Retrying (attempt 2 of 2)")),
        "{messages:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_runners_on_one_database_run_each_job_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    let mut config = common::config(&data);
    config.jobs.slots = 2;
    let s = TestServer::start_with(config).await;
    // Two more runners, as `pier worker`s on the same folder would be.
    let mut workers = Vec::new();
    for _ in 0..2 {
        let db = Db::open(&data).await.unwrap();
        let store = ModelStore::open(data.join("store")).unwrap();
        let runner = pier_jobs::Runner::new(
            db,
            store,
            pier_jobs::RunnerConfig {
                slots: 2,
                training_threads: 1,
                ..Default::default()
            },
        )
        .unwrap();
        workers.push(runner.start());
    }
    let names: Vec<String> = (0..8).map(|i| format!("many-{i}")).collect();
    for name in &names {
        s.ok(
            "CreateTrainingJob",
            job_request(
                name,
                "linear-learner",
                builtin("breast_cancer_train.csv").to_str().unwrap(),
                &out,
                json!({"predictor_type": "binary_classifier", "epochs": "3"}),
            ),
        )
        .await;
    }
    for name in &names {
        let d = wait_job(&s, name, Duration::from_secs(180)).await;
        assert_eq!(d["TrainingJobStatus"], "Completed", "{d}");
        assert_eq!(d["PierArtifact"], format!("pier://{name}/1"), "ran once");
    }
    for w in workers {
        w.shutdown().await;
    }
    let store = ModelStore::open(data.join("store")).unwrap();
    for name in &names {
        assert_eq!(
            store.list_versions(name).unwrap().len(),
            1,
            "{name} ran once"
        );
    }
    let db = Db::open(&data).await.unwrap();
    for name in &names {
        let row = db
            .get_job::<TrainingJob>(JobKind::Training, name)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((row.status, row.attempts), (JobStatus::Completed, 1));
    }
    db.close().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_test_channel_adds_test_metrics_where_the_algorithm_reads_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let s = TestServer::start(&dir.path().join("data")).await;
    let train = builtin("breast_cancer_train.csv");
    let test = builtin("breast_cancer_test.csv");
    let with_test = |name: &str, image: &str, hp: Value| {
        let mut request = job_request(name, image, train.to_str().unwrap(), &out, hp);
        let mut channel = request["InputDataConfig"][0].clone();
        channel["ChannelName"] = json!("test");
        channel["DataSource"]["S3DataSource"]["S3Uri"] = json!(test.display().to_string());
        request["InputDataConfig"]
            .as_array_mut()
            .unwrap()
            .push(channel);
        request
    };
    s.ok(
        "CreateTrainingJob",
        with_test(
            "ll-test",
            "linear-learner",
            json!({"predictor_type": "binary_classifier", "epochs": "5"}),
        ),
    )
    .await;
    let d = wait_job(&s, "ll-test", Duration::from_secs(120)).await;
    assert_eq!(d["TrainingJobStatus"], "Completed", "{d}");
    let accuracy = d["FinalMetricDataList"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["MetricName"] == "test:binary_classification_accuracy")
        .unwrap_or_else(|| panic!("{d}"))["Value"]
        .as_f64()
        .unwrap();
    assert!((0.8..=1.0).contains(&accuracy), "{accuracy}");
    let (status, e) = s
        .api(
            "CreateTrainingJob",
            with_test("xgb-test", "xgboost", json!({"num_round": "2"})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        e["message"].as_str().unwrap().contains("channel \"test\""),
        "{e}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_epoch_is_recorded_as_an_intermediate_metric_point() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    let s = TestServer::start(&data).await;
    let train = builtin("breast_cancer_train.csv");
    let mut request = job_request(
        "points",
        "linear-learner",
        train.to_str().unwrap(),
        &out,
        json!({"predictor_type": "binary_classifier", "epochs": "4",
               "early_stopping_patience": "10"}),
    );
    let mut validation = request["InputDataConfig"][0].clone();
    validation["ChannelName"] = json!("validation");
    validation["DataSource"]["S3DataSource"]["S3Uri"] =
        json!(builtin("breast_cancer_test.csv").display().to_string());
    request["InputDataConfig"]
        .as_array_mut()
        .unwrap()
        .push(validation);
    s.ok("CreateTrainingJob", request).await;
    let d = wait_job(&s, "points", Duration::from_secs(120)).await;
    assert_eq!(d["TrainingJobStatus"], "Completed", "{d}");
    let db = Db::open(&data).await.unwrap();
    let points = db
        .read_metrics(JobKind::Training, "points", None)
        .await
        .unwrap();
    let steps = |name: &str| -> Vec<u64> {
        points
            .iter()
            .filter(|p| p.name == name)
            .map(|p| p.step)
            .collect()
    };
    assert_eq!(steps("train:objective_loss"), [1, 2, 3, 4], "{points:?}");
    assert_eq!(
        steps("validation:binary_classification_accuracy"),
        [1, 2, 3, 4],
        "{points:?}"
    );
    assert!(
        steps("train:progress").is_empty(),
        "progress is not a metric"
    );
    let last = points
        .iter()
        .rfind(|p| p.name == "validation:binary_classification_accuracy")
        .unwrap();
    assert!((0.5..=1.0).contains(&last.value), "{last:?}");
    assert!(
        points
            .windows(2)
            .all(|w| w[0].name != w[1].name || w[0].at <= w[1].at)
    );
    db.close().await;
    s.stop().await;
}
