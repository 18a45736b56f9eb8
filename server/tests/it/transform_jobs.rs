//! Batch transform jobs over local folders, against the real server: CreateTransformJob runs
//! on the in-process runner with the same codecs and `Model` code as the endpoint, so every
//! `.out` is compared byte for byte with what `POST /endpoints/{name}/invocations` answers for
//! the same rows. Also: DataProcessing (InputFilter, JoinSource, OutputFilter), gzip, several
//! objects in key order, skipping bad records into `.errors`, bad input failing the job with a
//! FailureReason naming the object and line and leaving no `.out`, the API's errors, and a job
//! whose runner died failed by reconciliation.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::TestServer;
use serde_json::{Value, json};

fn builtin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/builtin")
        .join(name)
}

/// The breast-cancer test rows: (label + features lines, features-only lines).
fn cancer_rows() -> (Vec<String>, Vec<String>) {
    let csv = std::fs::read_to_string(builtin("breast_cancer_test.csv")).unwrap();
    let full: Vec<String> = csv.lines().map(str::to_owned).collect();
    let features = full
        .iter()
        .map(|l| l.split_once(',').unwrap().1.to_owned())
        .collect();
    (full, features)
}

fn job(name: &str, model: &str, input: &Path, output: &Path, extra: Value) -> Value {
    let mut j = json!({
        "TransformJobName": name,
        "ModelName": model,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input.display().to_string()}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": format!("file://{}", output.display()), "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        "BatchStrategy": "MultiRecord",
    });
    merge(&mut j, extra);
    j
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

async fn wait(s: &TestServer, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let d = s
            .ok("DescribeTransformJob", json!({"TransformJobName": name}))
            .await;
        if matches!(
            d["TransformJobStatus"].as_str(),
            Some("Completed" | "Failed" | "Stopped")
        ) {
            return d;
        }
        assert!(Instant::now() < deadline, "{name} did not end: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn setup(dir: &Path) -> TestServer {
    let s = TestServer::start(&dir.join("data")).await;
    s.create_model("gbc", "cancer-gbc100").await;
    s.create_config("gbc-config", &[("v", "gbc", 1.0)]).await;
    s.create_endpoint("gbc-ep", "gbc-config").await;
    s
}

async fn http(s: &TestServer, rows: &str, accept: &str) -> Vec<u8> {
    let r = s
        .invoke("gbc-ep", "text/csv", rows.to_owned(), &[("Accept", accept)])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.body.into_bytes()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outputs_match_http_invocations_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path()).await;
    let (_, features) = cancer_rows();
    let input = dir.path().join("in");
    std::fs::create_dir_all(input.join("sub")).unwrap();
    let (a, b) = features.split_at(40);
    let a_text = a.join("\n") + "\n";
    // A blank line and CRLF line ends are records' separators, not records.
    let b_text = b.join("\r\n") + "\r\n\r\n";
    std::fs::write(input.join("a.csv"), &a_text).unwrap();
    std::fs::write(input.join("sub/b.csv"), &b_text).unwrap();
    let out = dir.path().join("out");
    s.ok(
        "CreateTransformJob",
        job(
            "csv",
            "gbc",
            &input,
            &out,
            json!({"TransformOutput": {"Accept": "text/csv"}}),
        ),
    )
    .await;
    let d = wait(&s, "csv").await;
    assert_eq!(d["TransformJobStatus"], "Completed", "{d}");
    assert!(d["TransformStartTime"].is_number() && d["TransformEndTime"].is_number());
    let p = &d["PierProgress"];
    assert_eq!(p["ObjectsDone"], 2, "{d}");
    assert_eq!(p["RecordsDone"], features.len() as u64, "{d}");
    assert_eq!(d["ModelName"], "gbc");
    assert_eq!(d["TransformInput"]["SplitType"], "Line");
    assert_eq!(
        std::fs::read(out.join("a.csv.out")).unwrap(),
        http(&s, &a_text, "text/csv").await
    );
    assert_eq!(
        std::fs::read(out.join("sub/b.csv.out")).unwrap(),
        http(&s, &(b.join("\n") + "\n"), "text/csv").await
    );
    // No temporary file is left beside the outputs.
    let names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
    // Outputs are readable by others, not a temporary file's 0600.
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("a.csv.out"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o044, 0o044, "{mode:o}");
    }

    // JSON out, gzip in, one request per object when it fits (SageMaker's MultiRecord): the
    // response is what the endpoint answers, then a line end (AssembleWith Line).
    let gz = dir.path().join("gz");
    std::fs::create_dir_all(&gz).unwrap();
    std::fs::write(gz.join("a.csv.gz"), gzip(a_text.as_bytes())).unwrap();
    s.ok(
        "CreateTransformJob",
        job(
            "json-gz",
            "gbc",
            &gz,
            &out,
            json!({"TransformInput": {"CompressionType": "Gzip"},
                   "TransformOutput": {"Accept": "application/json"}}),
        ),
    )
    .await;
    let d = wait(&s, "json-gz").await;
    assert_eq!(d["TransformJobStatus"], "Completed", "{d}");
    let mut want = http(&s, &a_text, "application/json").await;
    want.push(b'\n');
    assert_eq!(std::fs::read(out.join("a.csv.gz.out")).unwrap(), want);

    // SingleRecord: one request per record, so one JSON response per line.
    s.ok(
        "CreateTransformJob",
        job(
            "single",
            "gbc",
            &input.join("a.csv"),
            &dir.path().join("out-single"),
            json!({"BatchStrategy": "SingleRecord", "MaxConcurrentTransforms": 3,
                   "TransformOutput": {"Accept": "application/json"}}),
        ),
    )
    .await;
    let d = wait(&s, "single").await;
    assert_eq!(d["TransformJobStatus"], "Completed", "{d}");
    let got = std::fs::read_to_string(dir.path().join("out-single/a.csv.out")).unwrap();
    let lines: Vec<&str> = got.lines().collect();
    assert_eq!(lines.len(), a.len());
    for (line, row) in lines.iter().zip(a) {
        let want = http(&s, &format!("{row}\n"), "application/json").await;
        assert_eq!(line.as_bytes(), &want[..]);
    }

    // Many requests per object (MaxPayloadInMB 1 over a 3 MB object), in input order.
    let big: String = (0..(3 << 20) / (a_text.len()) + 1)
        .map(|_| a_text.as_str())
        .collect();
    let bigdir = dir.path().join("big");
    std::fs::create_dir_all(&bigdir).unwrap();
    std::fs::write(bigdir.join("big.csv"), &big).unwrap();
    s.ok(
        "CreateTransformJob",
        job(
            "big",
            "gbc",
            &bigdir,
            &out,
            json!({"MaxPayloadInMB": 1, "MaxConcurrentTransforms": 4}),
        ),
    )
    .await;
    let d = wait(&s, "big").await;
    assert_eq!(d["TransformJobStatus"], "Completed", "{d}");
    let got = std::fs::read(out.join("big.csv.out")).unwrap();
    let one = http(&s, &a_text, "text/csv").await;
    let want: Vec<u8> = (0..big.len() / a_text.len())
        .flat_map(|_| one.iter().copied())
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "rows out of order or changed");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn data_processing_filters_and_joins() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path()).await;
    let (full, features) = cancer_rows();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let rows = &full[..30];
    std::fs::write(input.join("labelled.csv"), rows.join("\n") + "\n").unwrap();
    let out = dir.path().join("out");
    // Drop the label for the model, join the output to the input, keep label and output.
    s.ok(
        "CreateTransformJob",
        job(
            "join",
            "gbc",
            &input,
            &out,
            json!({"DataProcessing": {"InputFilter": "$[1:]", "JoinSource": "Input",
                                       "OutputFilter": "$[0,31:]"},
                   "TransformOutput": {"Accept": "text/csv"}}),
        ),
    )
    .await;
    let d = wait(&s, "join").await;
    assert_eq!(d["TransformJobStatus"], "Completed", "{d}");
    assert_eq!(d["DataProcessing"]["JoinSource"], "Input");
    let predicted = http(&s, &(features[..30].join("\n") + "\n"), "text/csv").await;
    let want: String = String::from_utf8(predicted)
        .unwrap()
        .lines()
        .zip(rows)
        .map(|(p, r)| format!("{},{p}\n", r.split(',').next().unwrap()))
        .collect();
    assert_eq!(
        std::fs::read_to_string(out.join("labelled.csv.out")).unwrap(),
        want
    );

    // JSON Lines: the features under a key, the output joined as SageMakerOutput.
    let jl = dir.path().join("jl");
    std::fs::create_dir_all(&jl).unwrap();
    let lines: String = features[..5]
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{{\"id\":{i},\"features\":[{f}]}}\n"))
        .collect();
    std::fs::write(jl.join("x.jsonl"), &lines).unwrap();
    s.ok(
        "CreateTransformJob",
        job(
            "join-json",
            "gbc",
            &jl,
            &out,
            json!({"TransformInput": {"ContentType": "application/jsonlines"},
                   "DataProcessing": {"InputFilter": "$.features", "JoinSource": "Input",
                                      "OutputFilter": "$['id','SageMakerOutput']"},
                   "TransformOutput": {"Accept": "application/jsonlines"}}),
        ),
    )
    .await;
    let d = wait(&s, "join-json").await;
    assert_eq!(d["TransformJobStatus"], "Completed", "{d}");
    let got = std::fs::read_to_string(out.join("x.jsonl.out")).unwrap();
    let predicted = http(
        &s,
        &(features[..5].join("\n") + "\n"),
        "application/jsonlines",
    )
    .await;
    let predicted = String::from_utf8(predicted).unwrap();
    for (i, (g, p)) in got.lines().zip(predicted.lines()).enumerate() {
        let g: Value = serde_json::from_str(g).unwrap();
        let p: Value = serde_json::from_str(p).unwrap();
        assert_eq!(g, json!({"id": i, "SageMakerOutput": p}));
    }
    assert_eq!(got.lines().count(), 5);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_fails_naming_object_and_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path()).await;
    let (_, features) = cancer_rows();
    let good = features[..3].join("\n") + "\n";
    let short = format!("{good}1,2,3\n{good}");
    let cases: Vec<(&str, &str, Vec<u8>, Value, String)> = vec![
        (
            "wrong-fields",
            "x.csv",
            short.clone().into_bytes(),
            json!({}),
            "x.csv: line 4: column 4: the record has 3 features but the model takes 30".into(),
        ),
        (
            "not-gzip",
            "x.csv.gz",
            good.clone().into_bytes(),
            json!({"TransformInput": {"CompressionType": "Gzip"}}),
            "x.csv.gz: cannot be read: not valid gzip data".into(),
        ),
        (
            "not-json",
            "x.jsonl",
            format!("[{}]\n\"abc\"\n", features[0]).into_bytes(),
            json!({"TransformInput": {"ContentType": "application/jsonlines"}}),
            "x.jsonl: line 2: $ must be an array of numbers, found a string".into(),
        ),
        (
            "empty",
            "x.csv",
            b"\n \n".to_vec(),
            json!({}),
            "x.csv: holds no records".into(),
        ),
        (
            "too-large",
            "x.csv",
            format!("{good}{}\n", "1,".repeat(600_000)).into_bytes(),
            json!({"MaxPayloadInMB": 1}),
            "x.csv: line 4: the record is larger than MaxPayloadInMB (1 MB)".into(),
        ),
        (
            "whole-too-large",
            "x.csv",
            format!("{good}{}\n", "1,".repeat(600_000)).into_bytes(),
            json!({"MaxPayloadInMB": 1, "TransformInput": {"SplitType": "None"}}),
            "x.csv: the object is larger than MaxPayloadInMB (1 MB)".into(),
        ),
    ];
    for (name, file, bytes, extra, needle) in &cases {
        let input = dir.path().join(format!("in-{name}"));
        std::fs::create_dir_all(&input).unwrap();
        std::fs::write(input.join(file), bytes).unwrap();
        let out = dir.path().join(format!("out-{name}"));
        s.ok(
            "CreateTransformJob",
            job(name, "gbc", &input, &out, extra.clone()),
        )
        .await;
        let d = wait(&s, name).await;
        assert_eq!(d["TransformJobStatus"], "Failed", "{name}: {d}");
        let reason = d["FailureReason"].as_str().unwrap();
        assert!(reason.contains(needle.as_str()), "{name}: {reason}");
        assert!(
            reason.contains(&input.join(file).display().to_string()),
            "{reason}"
        );
        assert!(
            !out.join(format!("{file}.out")).exists(),
            "{name}: a partial output was left"
        );
        let listed = s
            .ok(
                "ListTransformJobs",
                json!({"NameContains": name, "StatusEquals": "Failed"}),
            )
            .await;
        assert_eq!(listed["TransformJobSummaries"][0]["FailureReason"], reason);
    }

    // An output path that cannot be written: a file where its folder should be.
    let input = dir.path().join("in-ok");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("x.csv"), &good).unwrap();
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"").unwrap();
    s.ok(
        "CreateTransformJob",
        job("unwritable", "gbc", &input, &blocker.join("out"), json!({})),
    )
    .await;
    let d = wait(&s, "unwritable").await;
    assert_eq!(d["TransformJobStatus"], "Failed", "{d}");
    assert!(
        d["FailureReason"]
            .as_str()
            .unwrap()
            .contains("its output cannot be written"),
        "{d}"
    );

    // PIER_SKIP_BAD_RECORDS: the bad record goes to .errors with its line; the rest is
    // transformed.
    let input = dir.path().join("in-skip");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("x.csv"), &short).unwrap();
    let out = dir.path().join("out-skip");
    s.ok(
        "CreateTransformJob",
        job(
            "skip",
            "gbc",
            &input,
            &out,
            json!({"Environment": {"PIER_SKIP_BAD_RECORDS": "true"}}),
        ),
    )
    .await;
    let d = wait(&s, "skip").await;
    assert_eq!(d["TransformJobStatus"], "Completed", "{d}");
    assert_eq!(d["PierProgress"]["RecordsFailed"], 1, "{d}");
    let errors = std::fs::read_to_string(out.join("x.csv.errors")).unwrap();
    assert_eq!(
        errors,
        "line 4: column 4: the record has 3 features but the model takes 30\n"
    );
    let mut want = http(&s, &good, "text/csv").await;
    want.extend(http(&s, &good, "text/csv").await);
    assert_eq!(std::fs::read(out.join("x.csv.out")).unwrap(), want);

    // The server kept serving throughout.
    assert_eq!(http(&s, &good, "text/csv").await.len(), want.len() / 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn api_errors_as_sagemaker() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path()).await;
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let out = dir.path().join("out");
    let expect = |r: (u16, Value), code: &str, needle: &str| {
        assert_eq!((r.0, r.1["__type"].as_str()), (400, Some(code)), "{}", r.1);
        assert!(
            r.1["message"].as_str().unwrap().contains(needle),
            "{needle}: {}",
            r.1
        );
    };
    expect(
        s.api("DescribeTransformJob", json!({"TransformJobName": "nope"}))
            .await,
        "ValidationException",
        "Requested resource not found.",
    );
    expect(
        s.api("StopTransformJob", json!({"TransformJobName": "nope"}))
            .await,
        "ValidationException",
        "Requested resource not found.",
    );
    expect(
        s.api(
            "CreateTransformJob",
            job("m", "no-model", &input, &out, json!({})),
        )
        .await,
        "ValidationException",
        "Could not find model",
    );
    for (extra, needle) in [
        (json!({"BatchStrategy": "Bulk"}), "BatchStrategy"),
        (json!({"MaxPayloadInMB": 101}), "MaxPayloadInMB"),
        (
            json!({"TransformInput": {"SplitType": "Paragraph"}}),
            "SplitType",
        ),
        (
            json!({"TransformInput": {"CompressionType": "Zip"}}),
            "CompressionType",
        ),
        (
            json!({"TransformInput": {"ContentType": "image/png"}}),
            "ContentType",
        ),
        (
            json!({"TransformOutput": {"AssembleWith": "Comma"}}),
            "AssembleWith",
        ),
        (
            json!({"DataProcessing": {"InputFilter": "features"}}),
            "InputFilter",
        ),
        (
            json!({"DataProcessing": {"InputFilter": "$.features"}}),
            "index paths",
        ),
        (
            json!({"DataProcessing": {"JoinSource": "Output"}}),
            "JoinSource",
        ),
        (
            json!({"TransformResources": {"InstanceCount": 0}}),
            "InstanceCount",
        ),
        (json!({"Bogus": 1}), "Bogus"),
    ] {
        expect(
            s.api("CreateTransformJob", job("bad", "gbc", &input, &out, extra))
                .await,
            "ValidationException",
            needle,
        );
    }
    std::fs::write(input.join("x.csv"), "1\n").unwrap();
    s.ok(
        "CreateTransformJob",
        job("dup", "gbc", &input, &out, json!({})),
    )
    .await;
    expect(
        s.api(
            "CreateTransformJob",
            job("dup", "gbc", &input, &out, json!({})),
        )
        .await,
        "ResourceInUse",
        "already exists",
    );
    let d = wait(&s, "dup").await;
    assert_eq!(d["TransformJobStatus"], "Failed", "{d}");
    expect(
        s.api("StopTransformJob", json!({"TransformJobName": "dup"}))
            .await,
        "ValidationException",
        "cannot be stopped",
    );
    let listed = s
        .ok(
            "ListTransformJobs",
            json!({"SortBy": "Name", "SortOrder": "Ascending", "MaxResults": 1}),
        )
        .await;
    assert_eq!(listed["TransformJobSummaries"].as_array().unwrap().len(), 1);
    assert!(listed["NextToken"].is_null(), "{listed}");
    expect(
        s.api("ListTransformJobs", json!({"StatusEquals": "Done"}))
            .await,
        "ValidationException",
        "statusEquals",
    );
    // The job's log, through the CloudWatch Logs subset.
    let r = s
        .client
        .post(format!("http://{}/", s.admin))
        .header("X-Amz-Target", "Logs_20140328.DescribeLogStreams")
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(
            json!({"logGroupName": "/aws/sagemaker/TransformJobs", "logStreamNamePrefix": "dup/"})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let streams: Value = r.json().await.unwrap();
    let stream = streams["logStreams"][0]["logStreamName"].as_str().unwrap();
    let r = s
        .client
        .post(format!("http://{}/", s.admin))
        .header("X-Amz-Target", "Logs_20140328.GetLogEvents")
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(
            json!({"logGroupName": "/aws/sagemaker/TransformJobs", "logStreamName": stream,
                   "startFromHead": true})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let events: Value = r.json().await.unwrap();
    let text: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        text.iter().any(|l| l.starts_with("Transform job failed:")),
        "{text:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_whose_runner_died_is_failed_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // A job held by a runner of another host whose lease ran out, as the database would hold
    // it after that runner's machine died.
    {
        let db = pier_db::Db::open(&data).await.unwrap();
        let input = dir.path().join("in");
        let body: pier_jobs::transform::TransformJob = serde_json::from_value({
            let mut j = job("orphan", "gbc", &input, &dir.path().join("out"), json!({}));
            j["TransformJobArn"] =
                json!("arn:aws:sagemaker:us-east-1:000000000000:transform-job/orphan");
            j["TransformJobStatus"] = json!("InProgress");
            j["CreationTime"] = json!(1.0);
            j["LastModifiedTime"] = json!(1.0);
            j
        })
        .unwrap();
        assert!(
            db.insert_job(pier_db::JobKind::Transform, "orphan", 1.0, &body)
                .await
                .unwrap()
        );
        let claimed = db
            .claim_job::<pier_jobs::transform::TransformJob>(
                pier_db::JobKind::Transform,
                "elsewhere/1/dead",
                2.0,
                0.001,
            )
            .await
            .unwrap();
        assert!(claimed.is_some());
        db.close().await;
    }
    let s = TestServer::start(&data).await;
    let d = wait(&s, "orphan").await;
    assert_eq!(d["TransformJobStatus"], "Failed", "{d}");
    assert!(
        d["FailureReason"]
            .as_str()
            .unwrap()
            .contains("the runner running it (elsewhere/1/dead) stopped renewing its lease"),
        "{d}"
    );
    s.stop().await;
}
