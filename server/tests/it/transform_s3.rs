//! Batch transform over a real S3-compatible store (`s3s-fs` on a free loopback port):
//! `S3Prefix` and `ManifestFile` inputs, gzip, outputs PUT whole as `<key>.out` under
//! `S3OutputPath` and compared with the endpoint's answers for the same rows; a missing bucket
//! fails naming it; StopTransformJob ends a running job Stopped with no partial output.

use crate::common;
use crate::s3;

use std::time::{Duration, Instant};

use common::TestServer;
use object_store::path::Path as ObjectPath;
use s3::{BUCKET, S3Server};
use serde_json::{Value, json};

async fn put(server: &S3Server, key: &str, bytes: Vec<u8>) {
    server
        .client(BUCKET)
        .put(&ObjectPath::from(key), bytes.into())
        .await
        .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
}

async fn get(server: &S3Server, key: &str) -> Option<Vec<u8>> {
    match server.client(BUCKET).get(&ObjectPath::from(key)).await {
        Ok(r) => Some(r.bytes().await.unwrap().to_vec()),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => panic!("GET {key}: {e}"),
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

fn job(name: &str, data_type: &str, uri: &str, output: &str, extra: Value) -> Value {
    let mut j = json!({
        "TransformJobName": name,
        "ModelName": "iris",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": data_type, "S3Uri": uri}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        "TransformOutput": {"S3OutputPath": output, "Accept": "text/csv", "AssembleWith": "Line"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 2},
        "BatchStrategy": "MultiRecord",
    });
    if let (Value::Object(j), Value::Object(extra)) = (&mut j, extra) {
        j.extend(extra);
    }
    j
}

fn rows(n: usize, seed: usize) -> String {
    (0..n)
        .map(|i| {
            let x = ((i + seed) % 50) as f32 / 10.0;
            format!(
                "{},{},{},{}\n",
                4.0 + x,
                2.0 + x / 2.0,
                1.0 + x,
                0.1 + x / 3.0
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_prefix_and_manifest_outputs_match_the_endpoint() {
    let s3 = S3Server::start(BUCKET);
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(&dir.path().join("data"));
    config.jobs.s3 = s3.config();
    let s = TestServer::start_with(config).await;
    s.create_model("iris", "iris-logreg").await;
    s.create_config("iris-config", &[("v", "iris", 1.0)]).await;
    s.create_endpoint("iris-ep", "iris-config").await;
    let parts: Vec<String> = (0..3).map(|k| rows(50 + k * 7, k)).collect();
    put(&s3, "in/part-0.csv", parts[0].clone().into_bytes()).await;
    put(&s3, "in/part-1.csv", parts[1].clone().into_bytes()).await;
    let gz = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(parts[2].as_bytes()).unwrap();
        e.finish().unwrap()
    };
    put(&s3, "gz/deep/part-2.csv.gz", gz).await;
    let manifest = json!([{"prefix": format!("s3://{BUCKET}/in/")}, "part-1.csv", "part-0.csv"]);
    put(&s3, "manifest.json", manifest.to_string().into_bytes()).await;

    let out = format!("s3://{BUCKET}/out");
    s.ok(
        "CreateTransformJob",
        job(
            "prefix",
            "S3Prefix",
            &format!("s3://{BUCKET}/in/part"),
            &out,
            json!({}),
        ),
    )
    .await;
    s.ok(
        "CreateTransformJob",
        job(
            "manifest",
            "ManifestFile",
            &format!("s3://{BUCKET}/manifest.json"),
            &format!("s3://{BUCKET}/out-manifest/"),
            json!({}),
        ),
    )
    .await;
    let mut gz_job = job(
        "gz",
        "S3Prefix",
        &format!("s3://{BUCKET}/gz/"),
        &out,
        json!({}),
    );
    gz_job["TransformInput"]["CompressionType"] = json!("Gzip");
    s.ok("CreateTransformJob", gz_job).await;
    for name in ["prefix", "manifest", "gz"] {
        let d = wait(&s, name).await;
        assert_eq!(d["TransformJobStatus"], "Completed", "{d}");
    }
    let answer = |body: String| {
        let s = &s;
        async move {
            let r = s
                .invoke("iris-ep", "text/csv", body, &[("Accept", "text/csv")])
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            r.body.into_bytes()
        }
    };
    for (key, part) in [
        ("out/part-0.csv.out", &parts[0]),
        ("out/part-1.csv.out", &parts[1]),
        ("out-manifest/part-0.csv.out", &parts[0]),
        ("out-manifest/part-1.csv.out", &parts[1]),
        ("out/deep/part-2.csv.gz.out", &parts[2]),
    ] {
        let got = get(&s3, key)
            .await
            .unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(got, answer(part.clone()).await, "{key}");
    }
    let d = s
        .ok(
            "DescribeTransformJob",
            json!({"TransformJobName": "manifest"}),
        )
        .await;
    assert_eq!(d["PierProgress"]["ObjectsDone"], 2, "{d}");

    // A bucket that does not exist is named.
    s.ok(
        "CreateTransformJob",
        job(
            "nobucket",
            "S3Prefix",
            "s3://no-such-bucket/in/",
            &out,
            json!({}),
        ),
    )
    .await;
    let d = wait(&s, "nobucket").await;
    assert_eq!(d["TransformJobStatus"], "Failed", "{d}");
    assert!(
        d["FailureReason"]
            .as_str()
            .unwrap()
            .contains("no-such-bucket"),
        "{d}"
    );

    // Stopped while running: Stopped, and no partial output.
    put(&s3, "slow/big.csv", rows(40_000, 3).into_bytes()).await;
    s.ok(
        "CreateTransformJob",
        job(
            "slow",
            "S3Prefix",
            &format!("s3://{BUCKET}/slow/"),
            &out,
            json!({"BatchStrategy": "SingleRecord", "MaxConcurrentTransforms": 1}),
        ),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = s
            .ok("DescribeTransformJob", json!({"TransformJobName": "slow"}))
            .await;
        if d["PierProgress"]["RecordsDone"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert_eq!(d["TransformJobStatus"], "InProgress", "{d}");
        assert!(Instant::now() < deadline, "no progress: {d}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.ok("StopTransformJob", json!({"TransformJobName": "slow"}))
        .await;
    let d = wait(&s, "slow").await;
    assert_eq!(d["TransformJobStatus"], "Stopped", "{d}");
    assert!(get(&s3, "out/big.csv.out").await.is_none());
    s.stop().await;
}
