//! Batch transform benchmark: one generated CSV through (a) `pier_jobs::transform::run_local`
//! (the job's pipeline: read → split → decode → predict → encode → write), (b) the raw
//! `Model::predict` tight loop on the same batches (decoded beforehand, not timed), on as many
//! threads as the transform's `MaxConcurrentTransforms`, and (c) Pier's own HTTP endpoint fed
//! the same data in MultiRecord payloads of `MaxPayloadInMB` by as many concurrent clients
//! (SageMaker's batch transform does this against a container). Each row: records/s, wall
//! seconds and the process's CPU seconds (user + system, from /proc/self/stat) for that phase.
//!
//! The CSV (random features, the model's feature count) is written to
//! `$TMPDIR/pier-transform-bench/`, never into the repository.
//!
//! Run (release): `cargo build --release --workspace --example transform_bench` then
//! `target/release/examples/transform_bench [rows] [MaxPayloadInMB] [threads]`
//! (defaults 1000000, 6, the number of cores).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use pier_jobs::transform::engine::{Predictor, Progress};
use pier_jobs::transform::record::{
    TransformDataSource, TransformInput, TransformOutput, TransformResources, TransformS3DataSource,
};
use pier_jobs::transform::{LocalOptions, ShardSpec, TransformJob, run_local};
use pier_model_store::{
    ArtifactFile, ImportPolicy, ManifestDraft, ManifestSignature, ModelStore, VersionSelector,
};
use pier_runtimes::codec::Format;
use pier_runtimes::{LoadOptions, Model, Tensor};
use pier_server::ServerConfig;
use serde_json::{Value, json};

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

/// A `/proc/self/status` figure in MB (`VmRSS`, `VmHWM`).
fn status_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Phase {
    wall: f64,
    cpu: f64,
}

fn measure<T>(f: impl FnOnce() -> T) -> (T, Phase) {
    let (w, c) = (Instant::now(), cpu_seconds());
    let out = f();
    (
        out,
        Phase {
            wall: w.elapsed().as_secs_f64(),
            cpu: cpu_seconds() - c,
        },
    )
}

fn generate(path: &Path, rows: usize, features: usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state = 0x2545F4914F6CDD1Du64;
    let mut line = String::new();
    for _ in 0..rows {
        line.clear();
        for j in 0..features {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = (state % 100_000) as f64 / 1000.0;
            if j > 0 {
                line.push(',');
            }
            line.push_str(&format!("{v:.3}"));
        }
        line.push('\n');
        out.write_all(line.as_bytes()).unwrap();
    }
    out.flush().unwrap();
}

/// The CSV split as the transform splits it: payloads of at most `limit` bytes, whole lines.
fn payloads(csv: &[u8], limit: usize) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < csv.len() {
        let mut end = (start + limit).min(csv.len());
        if end < csv.len() {
            end = start + csv[start..end].iter().rposition(|&b| b == b'\n').unwrap() + 1;
        }
        out.push(&csv[start..end]);
        start = end;
    }
    out
}

fn publish(store: &ModelStore, name: &str, dir: &Path) -> Arc<dyn Model> {
    let signature: ManifestSignature =
        serde_json::from_str(&std::fs::read_to_string(dir.join("signature.json")).unwrap())
            .unwrap();
    let draft = ManifestDraft {
        runtime: "onnx".into(),
        signature,
        ..Default::default()
    };
    store
        .publish(
            name,
            vec![ArtifactFile::from_path(
                "model.onnx",
                dir.join("model.onnx"),
            )],
            draft,
        )
        .unwrap();
    let artifact = store.open_version(name, VersionSelector::Latest).unwrap();
    pier_runtimes::load(&artifact, &LoadOptions::default()).unwrap()
}

async fn api(client: &reqwest::Client, admin: std::net::SocketAddr, action: &str, body: Value) {
    let r = client
        .post(format!("http://{admin}/"))
        .header("X-Amz-Target", format!("SageMaker.{action}"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "{action}: {}",
        r.text().await.unwrap()
    );
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let rows: usize = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mb: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(6);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(cores);
    let root = std::env::temp_dir().join("pier-transform-bench");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/onnx");
    let data = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(data.path().join("data"));
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    config.admin_addr = "127.0.0.1:0".parse().unwrap();
    config.limits.max_body_bytes = (mb << 20) + 1024;
    config.jobs.slots = 0;
    let server = pier_server::start(config).await.unwrap();
    let (http, admin) = (server.http_addr, server.admin_addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .unwrap();
    let store = ModelStore::open(data.path().join("direct")).unwrap();
    println!(
        "{rows} rows, MaxPayloadInMB {mb}, {threads} threads (MaxConcurrentTransforms, tight-loop threads, HTTP clients), {cores} cores"
    );
    println!(
        "| model | path | records/s | wall s | CPU s | vs tight loop |\n|---|---|---:|---:|---:|---:|"
    );
    for (name, fixture) in [("mlp", "mlp"), ("gbc100", "cancer-gbc100")] {
        let model = publish(&store, name, &fixtures.join(fixture));
        let features = model.signature().inputs[0].features().unwrap();
        let dir = root.join(name);
        let input: PathBuf = dir.join("in");
        std::fs::create_dir_all(&input).unwrap();
        let csv_path = input.join("data.csv");
        let fresh = std::fs::metadata(&csv_path)
            .map(|m| m.len() > 0)
            .unwrap_or(false)
            && std::fs::read(&csv_path)
                .map(|b| b.iter().filter(|&&c| c == b'\n').count() == rows)
                .unwrap_or(false);
        if !fresh {
            generate(&csv_path, rows, features);
        }
        let out = dir.join("out");
        let _ = std::fs::remove_dir_all(&out);

        // (a) the transform job's pipeline.
        let job = TransformJob {
            transform_job_name: "bench".into(),
            model_name: name.into(),
            max_concurrent_transforms: Some(threads as i64),
            max_payload_in_mb: Some(mb as i64),
            batch_strategy: Some("MultiRecord".into()),
            transform_input: TransformInput {
                data_source: TransformDataSource {
                    s3_data_source: TransformS3DataSource {
                        s3_data_type: "S3Prefix".into(),
                        s3_uri: input.display().to_string(),
                    },
                },
                content_type: Some("text/csv".into()),
                compression_type: None,
                split_type: Some("Line".into()),
            },
            transform_output: TransformOutput {
                s3_output_path: out.display().to_string(),
                accept: Some("text/csv".into()),
                assemble_with: Some("Line".into()),
                kms_key_id: None,
            },
            transform_resources: TransformResources {
                instance_type: "local".into(),
                instance_count: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        let options = LocalOptions {
            s3: Default::default(),
            policy: ImportPolicy::anywhere(),
            shard: ShardSpec::ALL,
            progress: Arc::new(Progress::default()),
            cancel: Arc::new(AtomicBool::new(false)),
        };
        // Peak RSS of the transform phase: the high-water mark is reset first (Linux's
        // clear_refs 5), so VmHWM afterwards is the peak while the job ran.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let rss_before = status_mb("VmRSS");
        let (w, c) = (Instant::now(), cpu_seconds());
        let summary = run_local(&job, model.clone(), options, &|_, _| {})
            .await
            .unwrap();
        let rss_peak = status_mb("VmHWM");
        let transform = Phase {
            wall: w.elapsed().as_secs_f64(),
            cpu: cpu_seconds() - c,
        };
        assert_eq!(summary.records, rows as u64);

        // (b) predict alone on the same batches, decoded beforehand.
        let csv = std::fs::read(&csv_path).unwrap();
        let parts = payloads(&csv, mb << 20);
        let predictor = Predictor::new(model.clone()).unwrap();
        let (batches, decode) = measure(|| {
            parts
                .iter()
                .map(|p| {
                    pier_runtimes::codec::decode_features(Format::Csv, p, Some(features)).unwrap()
                })
                .collect::<Vec<Tensor>>()
        });
        // Each thread's inputs are copied beforehand, so the timed loop is `predict` alone.
        let mut inputs: Vec<Vec<Tensor>> = (0..threads)
            .map(|t| batches.iter().skip(t).step_by(threads).cloned().collect())
            .collect();
        let ((), tight) = measure(|| {
            std::thread::scope(|s| {
                for mine in inputs.drain(..) {
                    let model = model.clone();
                    s.spawn(move || {
                        for b in mine {
                            model.predict(vec![b]).unwrap();
                        }
                    });
                }
            })
        });
        let outputs: Vec<Vec<Tensor>> = batches
            .iter()
            .map(|b| model.predict(vec![b.clone()]).unwrap())
            .collect();
        let (_, encode) = measure(|| {
            for o in &outputs {
                predictor.encode(Format::Csv, o).unwrap();
            }
        });

        // (c) the same payloads through the HTTP endpoint.
        let model_name = format!("{name}-http");
        api(
            &client,
            admin,
            "CreateModel",
            json!({"ModelName": model_name, "PrimaryContainer": {"Image": "onnx",
                   "ModelDataUrl": format!("file://{}", fixtures.join(fixture).join("model.onnx").display())}}),
        )
        .await;
        api(&client, admin, "CreateEndpointConfig", json!({"EndpointConfigName": model_name,
            "ProductionVariants": [{"VariantName": "v", "ModelName": model_name,
            "InitialInstanceCount": 1, "InstanceType": "ml.m5.large", "InitialVariantWeight": 1.0}]})).await;
        api(
            &client,
            admin,
            "CreateEndpoint",
            json!({"EndpointName": model_name, "EndpointConfigName": model_name}),
        )
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let owned: Arc<Vec<bytes::Bytes>> = Arc::new(
            parts
                .iter()
                .map(|p| bytes::Bytes::copy_from_slice(p))
                .collect(),
        );
        let url = format!("http://{http}/endpoints/{model_name}/invocations");
        let (w, c) = (Instant::now(), cpu_seconds());
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..threads {
            let (client, owned, url) = (client.clone(), owned.clone(), url.clone());
            tasks.spawn(async move {
                for body in owned.iter().skip(t).step_by(threads) {
                    let r = client
                        .post(&url)
                        .header("Content-Type", "text/csv")
                        .header("Accept", "text/csv")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success(), "{}", r.status());
                    r.bytes().await.unwrap();
                }
            });
        }
        while let Some(t) = tasks.join_next().await {
            t.unwrap();
        }
        let http_phase = Phase {
            wall: w.elapsed().as_secs_f64(),
            cpu: cpu_seconds() - c,
        };
        println!(
            "| {name} | transform peak RSS {rss_peak:.0} MB, {:.0} MB over the {rss_before:.0} MB before it (bound: {threads} × {mb} MB × 4 = {} MB plus the model) | | | | |",
            rss_peak - rss_before,
            threads * mb * 4
        );
        for (path, p) in [
            ("transform job (run_local)", &transform),
            ("Model::predict tight loop", &tight),
            ("HTTP MultiRecord payloads", &http_phase),
            ("(CSV decode alone, 1 thread)", &decode),
            ("(CSV encode alone, 1 thread)", &encode),
        ] {
            println!(
                "| {name} | {path} | {:.0} | {:.2} | {:.2} | {:.0} % |",
                rows as f64 / p.wall,
                p.wall,
                p.cpu,
                100.0 * tight.wall / p.wall
            );
        }
    }
    server.shutdown().await;
}
