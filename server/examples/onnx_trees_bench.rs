//! ONNX tree ensembles served on the default build against the same model on the ort backend:
//! the 100-tree `cancer-gbc100` fixture (a scikit-learn GradientBoostingClassifier exported to
//! ONNX), one-row CSV requests from `c` closed-loop clients, batching on (MaxBatchSize 64,
//! MaxQueueDelayMicroseconds 0, as the table) and off, the two endpoints measured in
//! alternating rounds so that a busy machine hurts both alike. Prints rows/s, p99, the
//! process's CPU seconds per cell and the default/ort ratio; then `predict` in a tight loop
//! on one thread at 1 and 64 rows, with tract alone (what the default build ran before) for
//! reference.
//!
//! Run (release, with the ONNX Runtime library):
//! `ORT_DYLIB_PATH=…/libonnxruntime.so.1.32.0 cargo run --release --features pier-server/ort --example onnx_trees_bench -- [seconds-per-cell] [rounds] [clients]`
//!
//! Concurrency: one tokio runtime for server and clients (the load generator shares the
//! cores, as in the measurement); model code on Pier's compute pool.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pier_model_store::{
    ArtifactFile, ManifestDraft, ManifestSignature, ModelStore, VersionSelector,
};
use pier_runtimes::{Backend, LoadOptions, Model, Tensor};
use pier_server::ServerConfig;
use serde_json::{Value, json};

const FEATURES: usize = 30;

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/onnx/cancer-gbc100")
}

fn csv_row(seed: usize) -> String {
    let row: Vec<String> = (0..FEATURES)
        .map(|i| format!("{:.3}", ((seed * 31 + i * 7) % 97) as f64 / 9.7))
        .collect();
    row.join(",") + "\n"
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields after the command: state is 0, utime 11, stime 12; 100 ticks a second.
    (ticks(11) + ticks(12)) / 100.0
}

async fn api(client: &reqwest::Client, admin: std::net::SocketAddr, action: &str, body: Value) {
    let r = client
        .post(format!("http://{admin}/"))
        .header("X-Amz-Target", format!("SageMaker.{action}"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(body.to_string())
        .send()
        .await
        .expect("control plane answers");
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    assert!(status.is_success(), "{action}: {status} {text}");
}

async fn wait_in_service(client: &reqwest::Client, admin: std::net::SocketAddr, name: &str) {
    loop {
        let r: Value = client
            .post(format!("http://{admin}/"))
            .header("X-Amz-Target", "SageMaker.DescribeEndpoint")
            .body(json!({"EndpointName": name}).to_string())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        match r["EndpointStatus"].as_str() {
            Some("InService") => return,
            Some("Failed") => panic!("endpoint {name} failed: {r}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// (rows/s, p99 µs, CPU s) of a closed loop of `c` one-row clients for `secs`.
async fn drive(client: &reqwest::Client, url: &str, c: usize, secs: f64) -> (f64, f64, f64) {
    let cpu = cpu_seconds();
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..c)
        .map(|t| {
            let (client, url) = (client.clone(), url.to_owned());
            let body = bytes::Bytes::from(csv_row(t));
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < until {
                    let start = Instant::now();
                    let r = client
                        .post(&url)
                        .header("Content-Type", "text/csv")
                        .body(body.clone())
                        .send()
                        .await
                        .expect("data plane answers");
                    assert!(r.status().is_success(), "{}", r.status());
                    r.bytes().await.unwrap();
                    latencies.push(start.elapsed().as_secs_f64() * 1e6);
                }
                latencies
            })
        })
        .collect();
    let begun = Instant::now();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = begun.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    let p99 = all[((all.len() as f64 * 0.99) as usize).min(all.len() - 1)];
    (all.len() as f64 / elapsed, p99, cpu_seconds() - cpu)
}

fn load_direct(backend: Backend, store: &ModelStore) -> Arc<dyn Model> {
    let dir = fixture();
    let signature: ManifestSignature =
        serde_json::from_str(&std::fs::read_to_string(dir.join("signature.json")).unwrap())
            .unwrap();
    let draft = ManifestDraft {
        runtime: "onnx".into(),
        signature,
        ..Default::default()
    };
    let name = format!("gbc-{}", backend.as_str());
    store
        .publish(
            &name,
            vec![ArtifactFile::from_path(
                "model.onnx",
                dir.join("model.onnx"),
            )],
            draft,
        )
        .unwrap();
    let artifact = store.open_version(&name, VersionSelector::Latest).unwrap();
    pier_runtimes::load(&artifact, &LoadOptions::with_backend(backend)).unwrap()
}

/// Rows/s of `predict` on one thread on batches of `rows`, for `secs`.
fn tight_loop(model: &dyn Model, rows: usize, secs: f64) -> f64 {
    let data: Vec<f32> = (0..rows * FEATURES)
        .map(|i| (i % 13) as f32 / 3.0)
        .collect();
    let input = Tensor::from_f32_rows(rows, FEATURES, data).unwrap();
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let begun = Instant::now();
    let mut n = 0usize;
    while Instant::now() < until {
        model.predict(vec![input.clone()]).unwrap();
        n += 1;
    }
    (n * rows) as f64 / begun.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let arg = |i: usize, default: f64| {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (secs, rounds, clients) = (arg(1, 3.0), arg(2, 3.0) as usize, arg(3, 64.0) as usize);
    Backend::Ort
        .check_available()
        .expect("set ORT_DYLIB_PATH to libonnxruntime.so (the ort rows are the baseline)");
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path().join("data"));
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    config.admin_addr = "127.0.0.1:0".parse().unwrap();
    let threads = config.compute.threads;
    let server = pier_server::start(config).await.expect("server starts");
    let (http, admin) = (server.http_addr, server.admin_addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap();
    let url = format!("file://{}", fixture().join("model.onnx").display());
    let mut endpoints = Vec::new();
    for backend in [Backend::Tract, Backend::Ort] {
        let model = format!("gbc-{}", backend.as_str());
        api(
            &client,
            admin,
            "CreateModel",
            json!({"ModelName": model, "PrimaryContainer": {"Image": "onnx", "ModelDataUrl": url,
                   "Environment": {"PIER_BACKEND": backend.as_str()}}}),
        )
        .await;
        for batching in [true, false] {
            let name = format!("{model}-{}", if batching { "on" } else { "off" });
            let mut variant =
                json!({"VariantName": "main", "ModelName": model, "InitialVariantWeight": 1.0});
            if batching {
                variant["PierBatching"] =
                    json!({"MaxBatchSize": 64, "MaxQueueDelayMicroseconds": 0});
            }
            api(
                &client,
                admin,
                "CreateEndpointConfig",
                json!({"EndpointConfigName": name, "ProductionVariants": [variant]}),
            )
            .await;
            api(
                &client,
                admin,
                "CreateEndpoint",
                json!({"EndpointName": name, "EndpointConfigName": name}),
            )
            .await;
            wait_in_service(&client, admin, &name).await;
            endpoints.push((backend, batching, name));
        }
    }
    println!(
        "cancer-gbc100, one-row CSV requests, c={clients}, {secs} s per cell, {rounds} rounds, compute threads {threads}, cores {}",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| round | batching | default build (native trees) rows/s | p99 µs | CPU s | ort rows/s | p99 µs | CPU s | default / ort |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    // Per batching setting: (default rows, default CPU s, ort rows, ort CPU s, default rows/s, ort rows/s).
    let mut totals = std::collections::BTreeMap::<bool, [f64; 6]>::new();
    for round in 1..=rounds {
        for batching in [true, false] {
            let mut cells = Vec::new();
            // Alternate which backend goes first.
            let order: Vec<Backend> = if round % 2 == 1 {
                vec![Backend::Tract, Backend::Ort]
            } else {
                vec![Backend::Ort, Backend::Tract]
            };
            for backend in order {
                let (_, _, name) = endpoints
                    .iter()
                    .find(|(b, on, _)| *b == backend && *on == batching)
                    .unwrap();
                let url = format!("http://{http}/endpoints/{name}/invocations");
                cells.push((backend, drive(&client, &url, clients, secs).await));
            }
            let get = |b: Backend| cells.iter().find(|(x, _)| *x == b).unwrap().1;
            let (d, o) = (get(Backend::Tract), get(Backend::Ort));
            let t = totals.entry(batching).or_default();
            for (k, v) in [d.0 * secs, d.2, o.0 * secs, o.2, d.0, o.0]
                .into_iter()
                .enumerate()
            {
                t[k] += v;
            }
            println!(
                "| {round} | {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.2} | {:.2} |",
                if batching { "on" } else { "off" },
                d.0,
                d.1,
                d.2,
                o.0,
                o.1,
                o.2,
                d.0 / o.0
            );
        }
    }
    // The load generator shares the cores with the server, and on a busy machine the
    // process gets a varying share of them: rows per CPU second of the whole process is
    // the steadier comparison, rows/s the one the table reports.
    for (batching, t) in &totals {
        println!(
            "batching {}: mean default {:.0} rows/s, ort {:.0} rows/s, ratio {:.2}; rows per CPU second: default {:.0}, ort {:.0}, ratio {:.2}",
            if *batching { "on" } else { "off" },
            t[4] / rounds as f64,
            t[5] / rounds as f64,
            t[4] / t[5],
            t[0] / t[1],
            t[2] / t[3],
            (t[0] / t[1]) / (t[2] / t[3])
        );
    }
    server.shutdown().await;
    let store = ModelStore::open(dir.path().join("direct")).unwrap();
    let native = load_direct(Backend::Tract, &store);
    let ort = load_direct(Backend::Ort, &store);
    println!(
        "\npredict in a tight loop, one thread (backend {} vs {}):",
        native.backend(),
        ort.backend()
    );
    // What the default build ran before tree ensembles were compiled: tract alone.
    let tract = pier_runtimes::onnx::tract::TractModel::load(
        &fixture().join("model.onnx"),
        None,
        "gbc-tract-alone",
    )
    .unwrap();
    println!(
        "| rows per call | default build rows/s | ort rows/s | default / ort | tract alone rows/s |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for rows in [1usize, 64] {
        let d = tight_loop(native.as_ref(), rows, secs);
        let o = tight_loop(ort.as_ref(), rows, secs);
        let t = tight_loop(&tract, rows, secs);
        println!("| {rows} | {d:.0} | {o:.0} | {:.2} | {t:.0} |", d / o);
    }
}
