//! Hyperparameter tuning jobs end to end on a real server: CreateHyperParameterTuningJob over
//! local channels → the in-process runner's search → children as ordinary training jobs →
//! DescribeHyperParameterTuningJob's counters and best job, ListTrainingJobsFor… sorted and
//! paged, Stop, SageMaker's refusals, a failing child that does not fail the search, a search
//! whose every child failed, Hyperband and the median rule stopping jobs from their
//! intermediate points, warm start, and a search whose runner died continuing from the
//! database.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::TestServer;
use pier_db::{Db, JobKind};
use pier_jobs::tuning::TuningJob;
use pier_jobs::tuning::record::Trial;
use serde_json::{Value, json};

fn builtin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/builtin")
        .join(name)
}

fn channel(name: &str, file: &str) -> Value {
    json!({
        "ChannelName": name,
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix",
            "S3Uri": builtin(file).display().to_string(),
            "S3DataDistributionType": "FullyReplicated"}},
        "ContentType": "text/csv"
    })
}

/// An XGBoost search on the breast cancer set, maximising `validation:auc`.
fn request(name: &str, out: &Path, config: Value) -> Value {
    let mut r = json!({
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:auc"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 5, "MaxParallelTrainingJobs": 2},
            "ParameterRanges": {
                "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "1", "MaxValue": "4"}],
                "ContinuousParameterRanges": [{"Name": "eta", "MinValue": "0.05", "MaxValue": "0.5",
                                                "ScalingType": "Logarithmic"}]
            },
            "RandomSeed": 7
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": {"num_round": "6", "objective": "binary:logistic",
                                      "_tuning_objective_metric": "validation:auc"},
            "AlgorithmSpecification": {"TrainingImage":
                "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1",
                "TrainingInputMode": "File"},
            "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
            "InputDataConfig": [channel("train", "breast_cancer_train.csv"),
                                channel("validation", "breast_cancer_test.csv")],
            "OutputDataConfig": {"S3OutputPath": format!("file://{}", out.display())},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
            "StoppingCondition": {"MaxRuntimeInSeconds": 600}
        }
    });
    if let (Some(c), Value::Object(extra)) =
        (r["HyperParameterTuningJobConfig"].as_object_mut(), config)
    {
        for (k, v) in extra {
            c.insert(k, v);
        }
    }
    r
}

async fn start(data: &Path, slots: usize) -> TestServer {
    let mut config = common::config(data);
    config.jobs.slots = slots;
    config.jobs.training_threads = 1;
    TestServer::start_with(config).await
}

/// Waits until the search ends; returns its description. Checks on the way that no more
/// than `parallel` children ran at once.
async fn wait_tuning(s: &TestServer, name: &str, parallel: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let d = s
            .ok(
                "DescribeHyperParameterTuningJob",
                json!({"HyperParameterTuningJobName": name}),
            )
            .await;
        let running = d["TrainingJobStatusCounters"]["InProgress"]
            .as_i64()
            .unwrap();
        assert!(running <= parallel, "{running} children at once: {d}");
        let status = d["HyperParameterTuningJobStatus"]
            .as_str()
            .unwrap()
            .to_owned();
        if matches!(status.as_str(), "Completed" | "Failed" | "Stopped") {
            return d;
        }
        assert!(Instant::now() < deadline, "{name} still {status}: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn children(s: &TestServer, name: &str, extra: Value) -> Vec<Value> {
    let mut body = json!({"HyperParameterTuningJobName": name, "MaxResults": 100});
    if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
        for (k, v) in extra {
            b.insert(k, v);
        }
    }
    s.ok("ListTrainingJobsForHyperParameterTuningJob", body)
        .await["TrainingJobSummaries"]
        .as_array()
        .unwrap()
        .clone()
}

/// 20k rows of 8 features whose label is a noisy-free threshold of x0 + x1·x2.
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

fn objective(summary: &Value) -> Option<f64> {
    summary["FinalHyperParameterTuningJobObjectiveMetric"]["Value"].as_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bayesian_search_runs_its_children_and_reports_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let s = start(&dir.path().join("data"), 2).await;
    let arn = s
        .ok(
            "CreateHyperParameterTuningJob",
            request("bayes", &out, json!({})),
        )
        .await;
    assert_eq!(
        arn["HyperParameterTuningJobArn"],
        "arn:aws:sagemaker:local:000000000000:hyper-parameter-tuning-job/bayes"
    );
    let d = wait_tuning(&s, "bayes", 2).await;
    assert_eq!(d["HyperParameterTuningJobStatus"], "Completed", "{d}");
    assert_eq!(d["TrainingJobStatusCounters"]["Completed"], 5, "{d}");
    assert_eq!(d["ObjectiveStatusCounters"]["Succeeded"], 5, "{d}");
    assert!(
        d.get("PierTrials").is_none(),
        "the search's state is not shown"
    );
    assert!(d["HyperParameterTuningEndTime"].as_f64().is_some());
    let all = children(&s, "bayes", json!({})).await;
    assert_eq!(all.len(), 5);
    let names: BTreeSet<&str> = all
        .iter()
        .map(|c| c["TrainingJobName"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 5);
    for (i, n) in names.iter().enumerate() {
        let rest = n
            .strip_prefix(&format!("bayes-{:03}-", i + 1))
            .unwrap_or_else(|| panic!("{n}"));
        assert!(
            rest.len() == 8 && rest.bytes().all(|b| b.is_ascii_hexdigit()),
            "{n}"
        );
    }
    // Distinct points, each within its range.
    let points: BTreeSet<String> = all
        .iter()
        .map(|c| c["TunedHyperParameters"].to_string())
        .collect();
    assert_eq!(points.len(), 5, "{points:?}");
    for c in &all {
        let eta: f64 = c["TunedHyperParameters"]["eta"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let depth: i64 = c["TunedHyperParameters"]["max_depth"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (0.05..=0.5).contains(&eta) && (1..=4).contains(&depth),
            "{c}"
        );
        assert_eq!(c["ObjectiveStatus"], "Succeeded");
        assert_eq!(
            c["FinalHyperParameterTuningJobObjectiveMetric"]["MetricName"],
            "validation:auc"
        );
    }
    // Best first by the objective; the best is Describe's BestTrainingJob.
    let sorted = children(
        &s,
        "bayes",
        json!({"SortBy": "FinalObjectiveMetricValue", "SortOrder": "Descending"}),
    )
    .await;
    let values: Vec<f64> = sorted.iter().map(|c| objective(c).unwrap()).collect();
    assert!(values.windows(2).all(|w| w[0] >= w[1]), "{values:?}");
    assert_eq!(
        d["BestTrainingJob"]["TrainingJobName"],
        sorted[0]["TrainingJobName"]
    );
    assert!((0.8..=1.0).contains(&values[0]), "{values:?}");
    // Children are ordinary training jobs carrying the tuning job's ARN.
    let best = sorted[0]["TrainingJobName"].as_str().unwrap();
    let t = s
        .ok("DescribeTrainingJob", json!({"TrainingJobName": best}))
        .await;
    assert_eq!(t["TuningJobArn"], arn["HyperParameterTuningJobArn"]);
    assert_eq!(t["TrainingJobStatus"], "Completed");
    assert!(
        t["HyperParameters"]
            .get("_tuning_objective_metric")
            .is_none()
    );
    assert_eq!(t["HyperParameters"]["num_round"], "6");
    let listed = s
        .ok(
            "ListTrainingJobs",
            json!({"NameContains": "bayes-", "MaxResults": 100}),
        )
        .await;
    assert_eq!(listed["TrainingJobSummaries"].as_array().unwrap().len(), 5);
    // Paging and filters.
    let page = s
        .ok(
            "ListTrainingJobsForHyperParameterTuningJob",
            json!({"HyperParameterTuningJobName": "bayes", "MaxResults": 3}),
        )
        .await;
    assert_eq!(page["TrainingJobSummaries"].as_array().unwrap().len(), 3);
    let next = s
        .ok(
            "ListTrainingJobsForHyperParameterTuningJob",
            json!({"HyperParameterTuningJobName": "bayes", "MaxResults": 3,
                   "NextToken": page["NextToken"]}),
        )
        .await;
    assert_eq!(next["TrainingJobSummaries"].as_array().unwrap().len(), 2);
    assert!(next.get("NextToken").is_none());
    assert!(
        children(&s, "bayes", json!({"StatusEquals": "Failed"}))
            .await
            .is_empty()
    );
    let by_time = children(
        &s,
        "bayes",
        json!({"SortBy": "CreationTime", "SortOrder": "Descending"}),
    )
    .await;
    assert_eq!(
        by_time.last().unwrap()["TrainingJobName"],
        *names.first().unwrap()
    );
    // ListHyperParameterTuningJobs.
    let list = s
        .ok(
            "ListHyperParameterTuningJobs",
            json!({"StatusEquals": "Completed"}),
        )
        .await;
    let summaries = list["HyperParameterTuningJobSummaries"].as_array().unwrap();
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0]["Strategy"], "Bayesian");
    assert_eq!(summaries[0]["ResourceLimits"]["MaxParallelTrainingJobs"], 2);
    assert_eq!(summaries[0]["TrainingJobStatusCounters"]["Completed"], 5);
    let none = s
        .ok(
            "ListHyperParameterTuningJobs",
            json!({"NameContains": "nothing"}),
        )
        .await;
    assert!(
        none["HyperParameterTuningJobSummaries"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Stopping a finished search is refused.
    let (status, e) = s
        .api(
            "StopHyperParameterTuningJob",
            json!({"HyperParameterTuningJobName": "bayes"}),
        )
        .await;
    assert_eq!(
        (status, e["__type"].as_str()),
        (400, Some("ValidationException")),
        "{e}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_refuses_what_sagemaker_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let s = start(&dir.path().join("data"), 0).await;
    let cases = [
        (request(&"x".repeat(33), &out, json!({})), "1 to 32"),
        (
            request("t", &out, json!({"Strategy": "Grid"})),
            "ContinuousParameterRanges names \"eta\"",
        ),
        (
            request(
                "t",
                &out,
                json!({"Strategy": "Grid", "ParameterRanges": {"IntegerParameterRanges": [
                {"Name": "max_depth", "MinValue": "1", "MaxValue": "40"},
                {"Name": "num_class", "MinValue": "1", "MaxValue": "40"}]}}),
            ),
            "1600 combinations",
        ),
        (
            request(
                "t",
                &out,
                json!({"ParameterRanges": {"ContinuousParameterRanges": [
                {"Name": "eta", "MinValue": "0", "MaxValue": "0.5", "ScalingType": "Logarithmic"}]}}),
            ),
            "greater than 0",
        ),
        (
            request(
                "t",
                &out,
                json!({"ResourceLimits": {"MaxNumberOfTrainingJobs": 5, "MaxParallelTrainingJobs": 0}}),
            ),
            "MaxParallelTrainingJobs",
        ),
        (
            request(
                "t",
                &out,
                json!({"HyperParameterTuningJobObjective": {"Type": "Largest", "MetricName": "validation:auc"}}),
            ),
            "Maximize or Minimize",
        ),
        (request("t", &out, json!({"Surprise": 1})), "Surprise"),
        (
            request("t", &out, json!({"WarmStartConfig": 1})),
            "WarmStartConfig",
        ),
    ];
    for (body, needle) in cases {
        let (status, e) = s.api("CreateHyperParameterTuningJob", body).await;
        assert_eq!(status, 400, "{needle}: {e}");
        assert_eq!(e["__type"], "ValidationException", "{e}");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{needle}: {e}"
        );
    }
    let mut bad_image = request("t", &out, json!({}));
    bad_image["TrainingJobDefinition"]["AlgorithmSpecification"]["TrainingImage"] =
        json!("tensorflow");
    let (status, e) = s.api("CreateHyperParameterTuningJob", bad_image).await;
    assert!(
        status == 400 && e["message"].as_str().unwrap().contains("TrainingImage"),
        "{e}"
    );
    let mut warm = request("w", &out, json!({}));
    warm["WarmStartConfig"] = json!({"ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "absent"}],
                                     "WarmStartType": "IdenticalDataAndAlgorithm"});
    let (status, e) = s.api("CreateHyperParameterTuningJob", warm).await;
    assert!(
        status == 400 && e["message"].as_str().unwrap().contains("absent"),
        "{e}"
    );
    // Duplicates, missing jobs.
    s.ok(
        "CreateHyperParameterTuningJob",
        request("dup", &out, json!({})),
    )
    .await;
    let (status, e) = s
        .api(
            "CreateHyperParameterTuningJob",
            request("dup", &out, json!({})),
        )
        .await;
    assert_eq!(
        (status, e["__type"].as_str()),
        (400, Some("ResourceInUse")),
        "{e}"
    );
    for action in [
        "DescribeHyperParameterTuningJob",
        "StopHyperParameterTuningJob",
        "ListTrainingJobsForHyperParameterTuningJob",
    ] {
        let (status, e) = s
            .api(action, json!({"HyperParameterTuningJobName": "absent"}))
            .await;
        assert_eq!(status, 400, "{action}");
        assert_eq!(
            e["message"], "Requested resource not found.",
            "{action}: {e}"
        );
    }
    let (status, e) = s
        .api(
            "ListTrainingJobsForHyperParameterTuningJob",
            json!({"HyperParameterTuningJobName": "dup", "SortBy": "Size"}),
        )
        .await;
    assert!(
        status == 400
            && e["message"]
                .as_str()
                .unwrap()
                .contains("FinalObjectiveMetricValue"),
        "{e}"
    );
    // No runner here: the search stays queued; Stop ends it at once.
    let d = s
        .ok(
            "DescribeHyperParameterTuningJob",
            json!({"HyperParameterTuningJobName": "dup"}),
        )
        .await;
    assert_eq!(d["HyperParameterTuningJobStatus"], "InProgress");
    assert_eq!(d["TrainingJobStatusCounters"]["InProgress"], 0);
    s.ok(
        "StopHyperParameterTuningJob",
        json!({"HyperParameterTuningJobName": "dup"}),
    )
    .await;
    let d = s
        .ok(
            "DescribeHyperParameterTuningJob",
            json!({"HyperParameterTuningJobName": "dup"}),
        )
        .await;
    assert_eq!(d["HyperParameterTuningJobStatus"], "Stopped");
    s.stop().await;
}

fn diabetes_grid(name: &str, out: &Path, objectives: &[&str]) -> Value {
    let mut r = request(
        name,
        out,
        json!({"Strategy": "Grid",
               "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "validation:rmse"},
               "ResourceLimits": {"MaxParallelTrainingJobs": 2},
               "ParameterRanges": {
                   "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "1", "MaxValue": "2"}],
                   "CategoricalParameterRanges": [{"Name": "objective", "Values": objectives}]}}),
    );
    let def = &mut r["TrainingJobDefinition"];
    def["StaticHyperParameters"] = json!({"num_round": "4"});
    def["InputDataConfig"] = json!([
        channel("train", "diabetes_train.csv"),
        channel("validation", "diabetes_test.csv")
    ]);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_child_counts_and_the_search_goes_on_but_all_failing_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let s = start(&dir.path().join("data"), 2).await;
    // binary:logistic refuses the diabetes set's labels: half the grid fails.
    s.ok(
        "CreateHyperParameterTuningJob",
        diabetes_grid("half", &out, &["reg:squarederror", "binary:logistic"]),
    )
    .await;
    s.ok(
        "CreateHyperParameterTuningJob",
        diabetes_grid("none", &out, &["binary:logistic"]),
    )
    .await;
    let d = wait_tuning(&s, "half", 2).await;
    assert_eq!(d["HyperParameterTuningJobStatus"], "Completed", "{d}");
    let c = &d["TrainingJobStatusCounters"];
    assert_eq!(
        (c["Completed"].as_i64(), c["NonRetryableError"].as_i64()),
        (Some(2), Some(2)),
        "{d}"
    );
    assert_eq!(d["ObjectiveStatusCounters"]["Failed"], 2, "{d}");
    assert_eq!(
        d["BestTrainingJob"]["TunedHyperParameters"]["objective"],
        "reg:squarederror"
    );
    let all = children(&s, "half", json!({"SortBy": "Name"})).await;
    // SageMaker's grid order: max_depth, then objective, the last fastest.
    let order: Vec<(String, String)> = all
        .iter()
        .map(|c| {
            let hp = &c["TunedHyperParameters"];
            (
                hp["max_depth"].as_str().unwrap().into(),
                hp["objective"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            ("1", "reg:squarederror"),
            ("1", "binary:logistic"),
            ("2", "reg:squarederror"),
            ("2", "binary:logistic")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let failed = children(&s, "half", json!({"StatusEquals": "Failed"})).await;
    assert_eq!(failed.len(), 2);
    assert!(
        failed[0]["FailureReason"]
            .as_str()
            .unwrap()
            .contains("label"),
        "{}",
        failed[0]
    );
    assert_eq!(failed[0]["ObjectiveStatus"], "Failed");
    let d = wait_tuning(&s, "none", 2).await;
    assert_eq!(d["HyperParameterTuningJobStatus"], "Failed", "{d}");
    let reason = d["FailureReason"].as_str().unwrap();
    assert!(
        reason.contains("All 2 training jobs failed") && reason.contains("label"),
        "{reason}"
    );
    assert!(d.get("BestTrainingJob").is_none());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stop_stops_every_child() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let s = start(&dir.path().join("data"), 2).await;
    let mut r = request(
        "halt",
        &out,
        json!({"ResourceLimits": {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 2}}),
    );
    // Many rounds: the children are still running when the stop comes.
    r["TrainingJobDefinition"]["StaticHyperParameters"]["num_round"] = json!("100000");
    s.ok("CreateHyperParameterTuningJob", r).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = children(&s, "halt", json!({"StatusEquals": "InProgress"})).await;
        if running.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no children started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.ok(
        "StopHyperParameterTuningJob",
        json!({"HyperParameterTuningJobName": "halt"}),
    )
    .await;
    let d = wait_tuning(&s, "halt", 2).await;
    assert_eq!(d["HyperParameterTuningJobStatus"], "Stopped", "{d}");
    let all = children(&s, "halt", json!({})).await;
    assert_eq!(all.len(), 2, "no child launched after the stop: {all:?}");
    for c in &all {
        let t = s
            .ok(
                "DescribeTrainingJob",
                json!({"TrainingJobName": c["TrainingJobName"]}),
            )
            .await;
        assert_eq!(t["TrainingJobStatus"], "Stopped", "{t}");
    }
    assert_eq!(d["TrainingJobStatusCounters"]["Stopped"], 2, "{d}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hyperband_and_the_median_rule_stop_jobs_from_their_intermediate_points() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let data = dir.path().join("data");
    let mut config = common::config(&data);
    config.jobs.slots = 2;
    config.jobs.training_threads = 1;
    // Ticks and metric flushes often enough to see every epoch of these short jobs.
    config.jobs.heartbeat = Duration::from_millis(20);
    let s = TestServer::start_with(config).await;
    let csv = slow_data(dir.path());
    // Linear learner epochs on 20k rows; a wide learning-rate range makes some jobs clearly
    // worse early on.
    let linear = |name: &str, config: Value| {
        let mut r = request(name, &out, config);
        let def = &mut r["TrainingJobDefinition"];
        def["AlgorithmSpecification"]["TrainingImage"] = json!("linear-learner");
        def["StaticHyperParameters"] = json!({"predictor_type": "binary_classifier",
            "epochs": "27", "early_stopping_patience": "100", "mini_batch_size": "200"});
        for (i, c) in ["train", "validation"].iter().enumerate() {
            def["InputDataConfig"][i]["DataSource"]["S3DataSource"]["S3Uri"] =
                json!(csv.display().to_string());
            assert_eq!(def["InputDataConfig"][i]["ChannelName"], *c);
        }
        r["HyperParameterTuningJobConfig"]["HyperParameterTuningJobObjective"] =
            json!({"Type": "Minimize", "MetricName": "validation:objective_loss"});
        r["HyperParameterTuningJobConfig"]["ParameterRanges"] = json!({
            "ContinuousParameterRanges": [{"Name": "learning_rate", "MinValue": "0.00001",
                "MaxValue": "1", "ScalingType": "Logarithmic"}]});
        r
    };
    s.ok(
        "CreateHyperParameterTuningJob",
        linear(
            "hb",
            json!({"Strategy": "Hyperband",
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 9, "MaxParallelTrainingJobs": 2},
            "StrategyConfig": {"HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": 27}}}),
        ),
    )
    .await;
    let d = wait_tuning(&s, "hb", 2).await;
    assert_eq!(d["HyperParameterTuningJobStatus"], "Completed", "{d}");
    let all = children(&s, "hb", json!({})).await;
    assert_eq!(all.len(), 9);
    let db = Db::open(&data).await.unwrap();
    let row = db
        .get_job::<TuningJob>(JobKind::Tuning, "hb")
        .await
        .unwrap()
        .unwrap();
    let stopped: Vec<&Trial> = row
        .body
        .pier_trials
        .iter()
        .filter(|t| t.early_stopped_at.is_some())
        .collect();
    assert!(
        !stopped.is_empty(),
        "Hyperband stopped no job: {:?}",
        row.body.pier_trials
    );
    for t in &stopped {
        assert_eq!(t.status, "Stopped", "{t:?}");
        assert!(
            t.objective.is_some(),
            "an early-stopped job keeps its last objective: {t:?}"
        );
        let points = db
            .read_metrics(
                JobKind::Training,
                &t.training_job_name,
                Some("validation:objective_loss"),
            )
            .await
            .unwrap();
        assert!(points.len() < 27, "{} ran every epoch", t.training_job_name);
        // Stopped at a rung: its loss there was outside the best third of its bracket.
        let (rung, loss) = *t.rungs.last().unwrap();
        let peers: Vec<f64> = row
            .body
            .pier_trials
            .iter()
            .filter(|p| p.bracket == t.bracket)
            .filter_map(|p| p.rungs.iter().find(|r| r.0 == rung).map(|r| r.1))
            .collect();
        assert!(
            !pier_jobs::tuning::strategy::hyperband::promote(loss, &peers),
            "{t:?} {peers:?}"
        );
    }
    // Each child ran with MaxResource epochs.
    let t = s
        .ok(
            "DescribeTrainingJob",
            json!({"TrainingJobName": all[0]["TrainingJobName"]}),
        )
        .await;
    assert_eq!(t["HyperParameters"]["epochs"], "27");
    s.ok(
        "CreateHyperParameterTuningJob",
        linear(
            "median",
            json!({"Strategy": "Random", "TrainingJobEarlyStoppingType": "Auto",
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 8, "MaxParallelTrainingJobs": 1}}),
        ),
    )
    .await;
    let d = wait_tuning(&s, "median", 1).await;
    assert_eq!(d["HyperParameterTuningJobStatus"], "Completed", "{d}");
    let row = db
        .get_job::<TuningJob>(JobKind::Tuning, "median")
        .await
        .unwrap()
        .unwrap();
    let stopped: Vec<&Trial> = row
        .body
        .pier_trials
        .iter()
        .filter(|t| t.early_stopped_at.is_some())
        .collect();
    assert!(
        !stopped.is_empty(),
        "the median rule stopped no job: {:?}",
        row.body.pier_trials
    );
    for t in stopped {
        assert_eq!(t.status, "Stopped");
        assert!(
            row.body
                .pier_trials
                .iter()
                .filter(|p| p.status == "Completed")
                .count()
                >= 3
        );
    }
    db.close().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_search_whose_runner_died_continues_without_losing_or_repeating_a_child() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let data = dir.path().join("data");
    // Queued with no runner.
    let s = start(&data, 0).await;
    s.ok(
        "CreateHyperParameterTuningJob",
        request(
            "again",
            &out,
            json!({"Strategy": "Random",
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 3, "MaxParallelTrainingJobs": 1}}),
        ),
    )
    .await;
    s.stop().await;
    // A runner that died after planning the first child, before inserting it.
    let db = Db::open(&data).await.unwrap();
    let owner = format!("{}/4194305/dead", pier_jobs::runner::host());
    let mut claimed = db
        .claim_job::<TuningJob>(JobKind::Tuning, &owner, 2.0, 3600.0)
        .await
        .unwrap()
        .unwrap();
    let planned = "again-001-0000abcd".to_owned();
    claimed.body.pier_trials.push(Trial {
        training_job_name: planned.clone(),
        definition: 0,
        tuned_hyper_parameters: [
            ("eta".to_string(), "0.2".to_string()),
            ("max_depth".to_string(), "2".to_string()),
        ]
        .into(),
        creation_time: 2.0,
        status: "InProgress".into(),
        ..Default::default()
    });
    assert!(
        db.update_job_body(JobKind::Tuning, "again", &owner, &claimed.body)
            .await
            .unwrap()
    );
    db.close().await;
    let s = start(&data, 1).await;
    let d = wait_tuning(&s, "again", 1).await;
    assert_eq!(d["HyperParameterTuningJobStatus"], "Completed", "{d}");
    let all = children(&s, "again", json!({})).await;
    let names: Vec<&str> = all
        .iter()
        .map(|c| c["TrainingJobName"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.contains(&planned.as_str()), "{names:?}");
    let planned_job = s
        .ok("DescribeTrainingJob", json!({"TrainingJobName": planned}))
        .await;
    assert_eq!(planned_job["HyperParameters"]["eta"], "0.2");
    assert_eq!(planned_job["TrainingJobStatus"], "Completed");
    let listed = s
        .ok(
            "ListTrainingJobs",
            json!({"NameContains": "again-", "MaxResults": 100}),
        )
        .await;
    assert_eq!(
        listed["TrainingJobSummaries"].as_array().unwrap().len(),
        3,
        "each child once"
    );
    let db = Db::open(&data).await.unwrap();
    for n in &names {
        let row = db
            .get_job::<pier_jobs::training::TrainingJob>(JobKind::Training, n)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.attempts, 1, "{n} ran once");
    }
    // A warm start from it seeds a new search with its three results.
    let mut warm = request(
        "warm",
        &out,
        json!({"Strategy": "Bayesian",
        "ResourceLimits": {"MaxNumberOfTrainingJobs": 1, "MaxParallelTrainingJobs": 1}}),
    );
    warm["WarmStartConfig"] = json!({"ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "again"}],
                                     "WarmStartType": "IdenticalDataAndAlgorithm"});
    s.ok("CreateHyperParameterTuningJob", warm).await;
    let row = db
        .get_job::<TuningJob>(JobKind::Tuning, "warm")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.body.pier_warm_start.len(), 3);
    let d = wait_tuning(&s, "warm", 1).await;
    assert_eq!(d["HyperParameterTuningJobStatus"], "Completed", "{d}");
    assert_eq!(
        d["WarmStartConfig"]["WarmStartType"],
        "IdenticalDataAndAlgorithm"
    );
    let child = &children(&s, "warm", json!({})).await[0];
    let parent_points: BTreeSet<String> = all
        .iter()
        .map(|c| c["TunedHyperParameters"].to_string())
        .collect();
    assert!(
        !parent_points.contains(&child["TunedHyperParameters"].to_string()),
        "a parent's point is not tried again"
    );
    db.close().await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reached_target_ends_the_search_and_definitions_take_turns() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let s = start(&dir.path().join("data"), 1).await;
    s.ok(
        "CreateHyperParameterTuningJob",
        request(
            "target",
            &out,
            json!({"Strategy": "Random",
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 1},
            "TuningJobCompletionCriteria": {"TargetObjectiveMetricValue": 0.5}}),
        ),
    )
    .await;
    let d = wait_tuning(&s, "target", 1).await;
    assert_eq!(d["HyperParameterTuningJobStatus"], "Completed", "{d}");
    assert_eq!(
        children(&s, "target", json!({})).await.len(),
        1,
        "the first job reached AUC 0.5"
    );
    // TrainingJobDefinitions: two definitions, each its own ranges, searched in turn.
    let mut r = request(
        "defs",
        &out,
        json!({"Strategy": "Random",
        "ResourceLimits": {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 1}}),
    );
    let config = r["HyperParameterTuningJobConfig"].as_object_mut().unwrap();
    let objective = config.remove("HyperParameterTuningJobObjective").unwrap();
    config.remove("ParameterRanges");
    let def = r
        .as_object_mut()
        .unwrap()
        .remove("TrainingJobDefinition")
        .unwrap();
    let mut shallow = def.clone();
    shallow["DefinitionName"] = json!("shallow");
    shallow["TuningObjective"] = objective.clone();
    shallow["HyperParameterRanges"] = json!({"IntegerParameterRanges": [
        {"Name": "max_depth", "MinValue": "1", "MaxValue": "2"}]});
    let mut deep = def;
    deep["DefinitionName"] = json!("deep");
    deep["TuningObjective"] = objective;
    deep["HyperParameterRanges"] = json!({"IntegerParameterRanges": [
        {"Name": "max_depth", "MinValue": "5", "MaxValue": "8"}]});
    r["TrainingJobDefinitions"] = json!([shallow, deep]);
    s.ok("CreateHyperParameterTuningJob", r).await;
    let d = wait_tuning(&s, "defs", 1).await;
    assert_eq!(d["HyperParameterTuningJobStatus"], "Completed", "{d}");
    assert_eq!(d["TrainingJobDefinitions"].as_array().unwrap().len(), 2);
    for c in children(&s, "defs", json!({})).await {
        let depth: i64 = c["TunedHyperParameters"]["max_depth"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let want = if depth <= 2 { "shallow" } else { "deep" };
        assert_eq!(c["TrainingJobDefinitionName"], want, "{c}");
    }
    assert_eq!(
        children(&s, "defs", json!({}))
            .await
            .iter()
            .filter(|c| c["TrainingJobDefinitionName"] == "deep")
            .count(),
        2
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_search_continues_after_its_server_shuts_down_and_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let data = dir.path().join("data");
    let s = start(&data, 1).await;
    s.ok(
        "CreateHyperParameterTuningJob",
        request(
            "restart",
            &out,
            json!({"Strategy": "Bayesian",
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 1}}),
        ),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while children(&s, "restart", json!({})).await.len() < 2 {
        assert!(Instant::now() < deadline, "the search did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A graceful shutdown hands the search and its running child back to the queue.
    s.stop().await;
    let db = Db::open(&data).await.unwrap();
    let row = db
        .get_job::<TuningJob>(JobKind::Tuning, "restart")
        .await
        .unwrap()
        .unwrap();
    assert!(row.owner.is_none(), "handed back: {:?}", row.owner);
    db.close().await;
    let s = start(&data, 1).await;
    let d = wait_tuning(&s, "restart", 1).await;
    assert_eq!(d["HyperParameterTuningJobStatus"], "Completed", "{d}");
    assert_eq!(d["TrainingJobStatusCounters"]["Completed"], 4, "{d}");
    let listed = s
        .ok(
            "ListTrainingJobs",
            json!({"NameContains": "restart-", "MaxResults": 100}),
        )
        .await;
    assert_eq!(listed["TrainingJobSummaries"].as_array().unwrap().len(), 4);
    let db = Db::open(&data).await.unwrap();
    for c in children(&s, "restart", json!({})).await {
        let n = c["TrainingJobName"].as_str().unwrap();
        let row = db
            .get_job::<pier_jobs::training::TrainingJob>(JobKind::Training, n)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.attempts, 1, "{n} ran once");
    }
    db.close().await;
    s.stop().await;
}
