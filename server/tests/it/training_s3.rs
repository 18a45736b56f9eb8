//! Training jobs over a real S3-compatible store (`s3s-fs`, started by the test on a free
//! loopback port): `s3://` CSV and RecordIO-protobuf channels, the model written to
//! `<S3OutputPath>/<job>/output/model.tar.gz` in the bucket, CreateModel from that
//! `S3ModelArtifacts` with SageMaker's image URI, an endpoint and invocations; and bad S3
//! input (no objects under a prefix, an unknown bucket) failing the job with a FailureReason
//! naming the channel and the location, with nothing published. Also: a local channel outside
//! the import roots is refused at create.

use crate::common;
use crate::s3;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::TestServer;
use object_store::path::Path as ObjectPath;
use pier_jobs::channels::recordio::{Float32Tensor, Record, Value as RioValue, ValueKind};
use pier_model_store::ModelStore;
use prost::Message;
use s3::{BUCKET, S3Server};
use serde_json::{Value, json};

const LINEAR_LEARNER: &str = "382416733822.dkr.ecr.us-east-1.amazonaws.com/linear-learner:1";

fn builtin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/builtin")
        .join(name)
}

fn job(name: &str, train: &str, content_type: Option<&str>, output: &str) -> Value {
    let mut channel = json!({
        "ChannelName": "train",
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": train}},
    });
    if let Some(ct) = content_type {
        channel["ContentType"] = json!(ct);
    }
    json!({
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": LINEAR_LEARNER, "TrainingInputMode": "File"},
        "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole",
        "HyperParameters": {"predictor_type": "binary_classifier", "epochs": "5", "mini_batch_size": "50"},
        "InputDataConfig": [channel],
        "OutputDataConfig": {"S3OutputPath": output},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600}
    })
}

async fn wait_job(s: &TestServer, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The CSV's rows as RecordIO-protobuf records (label first column), as the SDK's
/// `write_numpy_to_dense_tensor` frames them.
fn csv_to_recordio(csv: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in csv.lines().filter(|l| !l.trim().is_empty()) {
        let mut values = line.split(',').map(|v| v.trim().parse::<f32>().unwrap());
        let label = values.next().unwrap();
        let tensor = |values: Vec<f32>| RioValue {
            value: Some(ValueKind::Float32Tensor(Float32Tensor {
                values,
                keys: vec![],
                shape: vec![],
            })),
        };
        let record = Record {
            features: HashMap::from([("values".to_string(), tensor(values.collect()))]),
            label: HashMap::from([("values".to_string(), tensor(vec![label]))]),
            uid: None,
            metadata: None,
            configuration: None,
        };
        pier_jobs::channels::recordio::write_frame(&mut out, &record.encode_to_vec());
    }
    out
}

async fn put(server: &S3Server, key: &str, bytes: Vec<u8>) {
    server
        .client(BUCKET)
        .put(&ObjectPath::from(key), bytes.into())
        .await
        .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_channels_train_write_model_tar_gz_and_deploy_through_create_model() {
    let s3 = S3Server::start(BUCKET);
    let csv = std::fs::read_to_string(builtin("breast_cancer_train.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    // Two objects under the prefix: read in key order as one data set.
    put(
        &s3,
        "csv/part-0.csv",
        (lines[..200].join("\n") + "\n").into(),
    )
    .await;
    put(
        &s3,
        "csv/part-1.csv",
        (lines[200..].join("\n") + "\n").into(),
    )
    .await;
    put(&s3, "rio/train.pbr", csv_to_recordio(&csv)).await;

    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(&dir.path().join("data"));
    config.jobs.s3 = s3.config();
    let s = TestServer::start_with(config).await;
    let output = format!("s3://{BUCKET}/models/");
    s.ok(
        "CreateTrainingJob",
        job(
            "ll-csv",
            &format!("s3://{BUCKET}/csv/"),
            Some("text/csv"),
            &output,
        ),
    )
    .await;
    // No ContentType: the first-party algorithms read RecordIO-protobuf, as SageMaker's do
    // (the SDK's record_set() names none).
    s.ok(
        "CreateTrainingJob",
        job("ll-rio", &format!("s3://{BUCKET}/rio/"), None, &output),
    )
    .await;
    let mut deployed = Vec::new();
    for name in ["ll-csv", "ll-rio"] {
        let d = wait_job(&s, name).await;
        assert_eq!(d["TrainingJobStatus"], "Completed", "{d}");
        let artifacts = format!("s3://{BUCKET}/models/{name}/output/model.tar.gz");
        assert_eq!(d["ModelArtifacts"]["S3ModelArtifacts"], artifacts.as_str());
        // The object is in the bucket (s3s-fs keeps it as a file), holding SageMaker's name.
        let tarball = s3
            .root
            .path()
            .join(BUCKET)
            .join(format!("models/{name}/output/model.tar.gz"));
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(&tarball).unwrap(),
        ));
        let entries: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(entries, ["model_algo-1"]);
        let model = format!("{name}-model");
        s.ok(
            "CreateModel",
            json!({"ModelName": model, "PrimaryContainer": {"Image": LINEAR_LEARNER, "ModelDataUrl": artifacts}}),
        )
        .await;
        let m = s.ok("DescribeModel", json!({"ModelName": model})).await;
        assert_eq!(m["PrimaryContainer"]["ModelDataUrl"], artifacts.as_str());
        s.create_config(&format!("{name}-config"), &[("v", &model, 1.0)])
            .await;
        s.create_endpoint(&format!("{name}-ep"), &format!("{name}-config"))
            .await;
        deployed.push(format!("{name}-ep"));
    }
    let test = std::fs::read_to_string(builtin("breast_cancer_test.csv")).unwrap();
    let (labels, rows): (Vec<f64>, String) = test
        .lines()
        .take(40)
        .map(|l| {
            let (label, rest) = l.split_once(',').unwrap();
            (label.parse::<f64>().unwrap(), rest.to_owned() + "\n")
        })
        .unzip();
    let mut answers = Vec::new();
    for endpoint in &deployed {
        let r = s
            .invoke(
                endpoint,
                "text/csv",
                rows.clone(),
                &[("Accept", "application/json")],
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        answers.push(r.json());
    }
    // The same records through CSV and RecordIO train the same model.
    assert_eq!(answers[0], answers[1]);
    let predictions = answers[0]["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), labels.len());
    let correct = predictions
        .iter()
        .zip(&labels)
        .filter(|(p, l)| p["predicted_label"].as_f64() == Some(**l))
        .count();
    assert!(
        correct * 10 >= labels.len() * 8,
        "{correct}/{}",
        labels.len()
    );

    // CreateModel from an archive that is not there names it.
    let (status, body) = s
        .api(
            "CreateModel",
            json!({"ModelName": "missing", "PrimaryContainer": {"Image": LINEAR_LEARNER,
                   "ModelDataUrl": format!("s3://{BUCKET}/models/nope/output/model.tar.gz")}}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("models/nope/output/model.tar.gz"),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_s3_input_fails_naming_channel_and_location_and_publishes_nothing() {
    let s3 = S3Server::start(BUCKET);
    put(&s3, "other/x.csv", b"1,2,3\n".to_vec()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(&dir.path().join("data"));
    config.jobs.s3 = s3.config();
    let s = TestServer::start_with(config).await;
    let output = format!("s3://{BUCKET}/models");
    let cases = [
        (
            "no-objects",
            format!("s3://{BUCKET}/nothing/"),
            format!("channel 'train': no objects under s3://{BUCKET}/nothing/"),
        ),
        (
            "no-bucket",
            "s3://no-such-bucket/train/".to_owned(),
            "channel 'train': the bucket 'no-such-bucket' does not exist".to_owned(),
        ),
    ];
    for (name, uri, _) in &cases {
        s.ok(
            "CreateTrainingJob",
            job(name, uri, Some("text/csv"), &output),
        )
        .await;
    }
    for (name, _, want) in &cases {
        let d = wait_job(&s, name).await;
        assert_eq!(d["TrainingJobStatus"], "Failed", "{d}");
        let reason = d["FailureReason"].as_str().unwrap();
        assert!(reason.starts_with(want.as_str()), "{name}: {reason}");
        assert!(
            !s3.root
                .path()
                .join(BUCKET)
                .join(format!("models/{name}"))
                .exists(),
            "nothing is written for {name}"
        );
    }
    let store = ModelStore::open(s.data.join("store")).unwrap();
    assert!(
        store.list_names().unwrap().is_empty(),
        "nothing is published"
    );
    // A content type the algorithm does not read is refused at create.
    let mut bad = job(
        "bad-type",
        &format!("s3://{BUCKET}/other/"),
        Some("text/csv"),
        &output,
    );
    bad["AlgorithmSpecification"]["TrainingImage"] = json!("xgboost");
    bad["HyperParameters"] = json!({"num_round": "2"});
    bad["InputDataConfig"][0]["ContentType"] = json!("application/x-recordio-protobuf");
    let (status, _) = s.api("CreateTrainingJob", bad.clone()).await;
    assert_eq!(status, 200, "XGBoost reads RecordIO-protobuf too");
    bad["TrainingJobName"] = json!("bad-type-2");
    bad["InputDataConfig"][0]["ContentType"] = json!("application/x-parquet");
    let (status, body) = s.api("CreateTrainingJob", bad).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("InputDataConfig.0.ContentType"),
        "{body}"
    );
    s.stop().await;
}

#[tokio::test]
async fn local_channels_outside_the_import_roots_are_refused_at_create() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("allowed");
    let elsewhere = dir.path().join("elsewhere");
    for d in [&root, &elsewhere] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("train.csv"), "1,0.5\n0,0.1\n").unwrap();
    }
    let mut config = common::config(&dir.path().join("data"));
    config.import.roots = vec![root.clone()];
    let s = TestServer::start_with(config).await;
    let out = format!("file://{}", root.join("out").display());
    let (status, body) = s
        .api(
            "CreateTrainingJob",
            job(
                "outside",
                elsewhere.to_str().unwrap(),
                Some("text/csv"),
                &out,
            ),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("InputDataConfig channel 'train': ")
            && message.contains("may not be read"),
        "{body}"
    );
    s.ok(
        "CreateTrainingJob",
        job("inside", root.to_str().unwrap(), Some("text/csv"), &out),
    )
    .await;
    s.stop().await;
}
