//! Checks of a tuning job request, and child naming.

use serde_json::json;

use super::*;
use record::Trial;

fn job(config: serde_json::Value) -> TuningJob {
    let mut v = json!({
        "HyperParameterTuningJobName": "tune",
        "HyperParameterTuningJobArn": "arn:aws:sagemaker:local:000000000000:hyper-parameter-tuning-job/tune",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:auc"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 2},
            "ParameterRanges": {
                "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "2", "MaxValue": "6"}],
                "ContinuousParameterRanges": [{"Name": "eta", "MinValue": "0.01", "MaxValue": "0.5",
                                                "ScalingType": "Logarithmic"}]
            }
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": {"num_round": "5", "objective": "binary:logistic",
                                      "_tuning_objective_metric": "validation:auc"},
            "AlgorithmSpecification": {"TrainingImage": "xgboost", "TrainingInputMode": "File"},
            "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": "/data/train.csv"}}, "ContentType": "text/csv"}],
            "OutputDataConfig": {"S3OutputPath": "/out"},
            "StoppingCondition": {"MaxRuntimeInSeconds": 600}
        },
        "HyperParameterTuningJobStatus": "InProgress",
        "CreationTime": 1.0,
        "LastModifiedTime": 1.0,
        "TrainingJobStatusCounters": {"Completed": 0, "InProgress": 0, "RetryableError": 0,
                                      "NonRetryableError": 0, "Stopped": 0},
        "ObjectiveStatusCounters": {"Succeeded": 0, "Pending": 0, "Failed": 0}
    });
    merge(&mut v["HyperParameterTuningJobConfig"], config);
    serde_json::from_value(v).unwrap()
}

fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (into.as_object_mut(), from) {
        for (k, v) in b {
            a.insert(k, v);
        }
    }
}

#[test]
fn a_valid_search_plans_and_children_drop_the_sdk_objective_hyperparameter() {
    let j = job(json!({}));
    let plan = check(&j).unwrap();
    assert_eq!(plan.max_jobs, 6);
    assert_eq!(plan.parallel, 2);
    assert_eq!(plan.definitions[0].direction, Direction::Maximize);
    let point: Point = [
        ("eta".into(), "0.1".into()),
        ("max_depth".into(), "3".into()),
    ]
    .into();
    let name = child_name("tune", 0, &point);
    assert!(
        name.starts_with("tune-001-") && name.len() == "tune-001-".len() + 8,
        "{name}"
    );
    assert_ne!(name, child_name("tune", 0, &BTreeMap::new()));
    let child = child_job(
        &j,
        j.definitions()[0],
        0,
        &name,
        &point,
        Some(("num_round", 9)),
        2.0,
    );
    assert_eq!(child.hyper_parameters["eta"], "0.1");
    assert_eq!(child.hyper_parameters["num_round"], "9");
    assert!(
        !child
            .hyper_parameters
            .contains_key(OBJECTIVE_HYPERPARAMETER)
    );
    assert_eq!(
        child.tuning_job_arn.as_deref(),
        Some(j.hyper_parameter_tuning_job_arn.as_str())
    );
    crate::training::check(&child).unwrap();
}

#[test]
fn bad_searches_are_refused_naming_the_field() {
    let too_long = {
        let mut j = job(json!({}));
        j.hyper_parameter_tuning_job_name = "a".repeat(33);
        j
    };
    assert!(
        check(&too_long)
            .unwrap_err()
            .to_string()
            .contains("1 to 32")
    );
    for (config, needle) in [
        (json!({"Strategy": "Annealing"}), "Strategy"),
        (
            json!({"ResourceLimits": {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 0}}),
            "MaxParallelTrainingJobs",
        ),
        (
            json!({"ResourceLimits": {"MaxNumberOfTrainingJobs": 501, "MaxParallelTrainingJobs": 1}}),
            "MaxNumberOfTrainingJobs",
        ),
        (
            json!({"ResourceLimits": {"MaxParallelTrainingJobs": 1}}),
            "MaxNumberOfTrainingJobs is required",
        ),
        (
            json!({"ResourceLimits": {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 1, "MaxRuntimeInSeconds": 5}}),
            "MaxRuntimeInSeconds",
        ),
        (
            json!({"HyperParameterTuningJobObjective": {"Type": "Best", "MetricName": "validation:auc"}}),
            "Maximize or Minimize",
        ),
        (
            json!({"Strategy": "Grid"}),
            "ContinuousParameterRanges names \"eta\"",
        ),
        (
            json!({"Strategy": "Grid", "ParameterRanges": {"IntegerParameterRanges": [
            {"Name": "max_depth", "MinValue": "1", "MaxValue": "30"},
            {"Name": "min_child_weight", "MinValue": "1", "MaxValue": "30"}]}}),
            "900 combinations",
        ),
        (
            json!({"ParameterRanges": {"ContinuousParameterRanges": [
            {"Name": "eta", "MinValue": "0", "MaxValue": "1", "ScalingType": "Logarithmic"}]}}),
            "greater than 0",
        ),
        (
            json!({"ParameterRanges": {"IntegerParameterRanges": [
            {"Name": "num_round", "MinValue": "1", "MaxValue": "3"}]}}),
            "both static and tuned",
        ),
        (
            json!({"ParameterRanges": {"IntegerParameterRanges": [
            {"Name": "bogus", "MinValue": "1", "MaxValue": "3"}]}}),
            "bogus",
        ),
        (
            json!({"TrainingJobEarlyStoppingType": "Sometimes"}),
            "Off or Auto",
        ),
        (
            json!({"Strategy": "Hyperband", "StrategyConfig": {"HyperbandStrategyConfig": {"MinResource": 5, "MaxResource": 2}}}),
            "MaxResource",
        ),
        (
            json!({"StrategyConfig": {"HyperbandStrategyConfig": {"MinResource": 1, "MaxResource": 9}}}),
            "only for the Hyperband",
        ),
        (
            json!({"TuningJobCompletionCriteria": {"BestObjectiveNotImproving": {"MaxNumberOfTrainingJobsNotImproving": 1}}}),
            "at least 3",
        ),
        (json!({"RandomSeed": -1}), "RandomSeed"),
    ] {
        let e = check(&job(config.clone())).unwrap_err().to_string();
        assert!(e.contains(needle), "{config}: {needle}: {e}");
    }
}

#[test]
fn grid_runs_its_size_and_hyperband_takes_the_static_resource() {
    let grid = check(&job(json!({"Strategy": "Grid", "ResourceLimits": {"MaxParallelTrainingJobs": 2},
        "ParameterRanges": {"IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "2", "MaxValue": "4"}],
                            "CategoricalParameterRanges": [{"Name": "tree_method", "Values": ["hist", "auto"]}]}})))
    .unwrap();
    assert_eq!(grid.max_jobs, 6);
    let hb = check(&job(json!({"Strategy": "Hyperband"}))).unwrap();
    let (rungs, resource) = hb.hyperband.unwrap();
    assert_eq!((rungs.min, rungs.max, resource), (1, 5, "num_round"));
}

#[test]
fn the_search_ends_at_its_run_time_limit_target_or_when_it_stops_improving() {
    use super::run::ending;
    let plan = check(&job(json!({
        "ResourceLimits": {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 2,
                           "MaxRuntimeInSeconds": 300},
        "TuningJobCompletionCriteria": {"TargetObjectiveMetricValue": 0.95,
            "BestObjectiveNotImproving": {"MaxNumberOfTrainingJobsNotImproving": 3}}})))
    .unwrap();
    let trial = |v: Option<f64>| Trial {
        objective: v,
        status: if v.is_some() {
            "Completed"
        } else {
            "InProgress"
        }
        .into(),
        ..Default::default()
    };
    let mut trials = vec![trial(Some(0.9)), trial(None)];
    assert_eq!(ending(&plan, &trials, Some(0.0), 299.0), None);
    let why = ending(&plan, &trials, Some(0.0), 301.0).unwrap();
    assert!(why.contains("MaxRuntimeInSeconds"), "{why}");
    trials.push(trial(Some(0.96)));
    let why = ending(&plan, &trials, Some(0.0), 10.0).unwrap();
    assert!(why.contains("TargetObjectiveMetricValue 0.95"), "{why}");
    let flat = vec![
        trial(Some(0.9)),
        trial(Some(0.8)),
        trial(Some(0.85)),
        trial(None),
    ];
    assert_eq!(ending(&plan, &flat, Some(0.0), 10.0), None);
    let flat = [flat, vec![trial(Some(0.7))]].concat();
    let why = ending(&plan, &flat, Some(0.0), 10.0).unwrap();
    assert!(why.contains("3 training jobs in a row"), "{why}");
}
