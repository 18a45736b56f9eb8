//! Serving benchmark: batching off, on with the default delay (0) and on with a 200 µs delay;
//! tract vs ort; concurrency 1, 8 and 64; the `mlp` fixture and the 100-tree `cancer-gbc100`
//! fixture — all in one run.
//!
//! Starts Pier in-process on 127.0.0.1:0, creates one endpoint per (model, backend,
//! batching) and drives each with a closed-loop HTTP client (each of `c` tasks sends a
//! one-row CSV request, waits for the answer, repeats) for a fixed time. Each cell (rows a
//! request, concurrency) runs its three batching modes in turn, `rounds` times, the order
//! rotated every round, so a slow spell of the machine falls on all modes alike; on/off is
//! the median of the rounds' own ratios. Reports rows/s, p99 latency and the mean batch size
//! the batcher formed (from `/metrics`), then measures the same runtime in a tight loop —
//! `predict` on batches of that size on as many threads as the compute pool has — and prints
//! served rows/s as a share of it.
//!
//! `SERVING_BENCH_MODELS` (`mlp`, `cancer-gbc100`) and `SERVING_BENCH_BACKENDS` (`tract`,
//! `ort`), comma-separated, keep only those.
//!
//! Run (release, with the ONNX Runtime library for the ort rows):
//! `ORT_DYLIB_PATH=…/libonnxruntime.so.1.32.0 cargo run --release -p pier-server --features ort --example serving_bench -- [seconds-per-cell (2)] [rounds (3)]`
//!
//! Concurrency: one tokio runtime for server and clients; model code on Pier's compute
//! pool; the tight loop on plain threads after the server's cells are done.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pier_model_store::{
    ArtifactFile, ManifestDraft, ManifestSignature, ModelStore, VersionSelector,
};
use pier_runtimes::{Backend, LoadOptions, Model, Tensor};
use pier_server::ServerConfig;
use serde_json::{Value, json};

const CONCURRENCY: [usize; 3] = [1, 8, 64];
/// Rows per request: one (latency-bound clients) and 16 (clients that batch a little).
const ROWS_PER_REQUEST: [usize; 2] = [1, 16];
const MAX_BATCH: usize = 64;
const DELAY_US: u64 = 200;

struct Fixture {
    name: &'static str,
    path: PathBuf,
    features: usize,
}

fn fixtures() -> Vec<Fixture> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
    vec![
        Fixture {
            name: "mlp",
            path: root.join("onnx/mlp"),
            features: 4,
        },
        Fixture {
            name: "cancer-gbc100",
            path: root.join("onnx/cancer-gbc100"),
            features: 30,
        },
    ]
}

fn csv_rows(features: usize, rows: usize, seed: usize) -> String {
    (0..rows)
        .map(|r| {
            let row: Vec<String> = (0..features)
                .map(|i| format!("{:.3}", (((seed + r) * 31 + i * 7) % 97) as f64 / 9.7))
                .collect();
            row.join(",") + "\n"
        })
        .collect()
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

/// (rows/s, p50 µs, p99 µs) of a closed loop at concurrency `c` for `secs`, each request
/// carrying `rows` rows.
async fn drive(
    client: &reqwest::Client,
    url: &str,
    features: usize,
    rows: usize,
    c: usize,
    secs: f64,
) -> (f64, f64, f64) {
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..c)
        .map(|t| {
            let (client, url) = (client.clone(), url.to_owned());
            let body = bytes::Bytes::from(csv_rows(features, rows, t));
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
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    ((all.len() * rows) as f64 / elapsed, pct(0.5), pct(0.99))
}

/// Sum and count of the batch-size histogram for `endpoint`.
async fn batch_stats(
    client: &reqwest::Client,
    http: std::net::SocketAddr,
    endpoint: &str,
) -> (f64, f64) {
    let text = client
        .get(format!("http://{http}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let label = format!("endpoint=\"{endpoint}\"");
    let get = |name: &str| {
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(&label))
            .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (get("pier_batch_size_sum"), get("pier_batch_size_count"))
}

/// Rows/s of `predict` on batches of `batch` rows, on `threads` threads, for `secs`.
fn tight_loop(
    model: Arc<dyn Model>,
    features: usize,
    batch: usize,
    threads: usize,
    secs: f64,
) -> f64 {
    let data: Vec<f32> = (0..batch * features)
        .map(|i| (i % 13) as f32 / 3.0)
        .collect();
    let input = Tensor::from_f32_rows(batch, features, data).unwrap();
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let begun = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (model, input) = (model.clone(), input.clone());
            std::thread::spawn(move || {
                let mut n = 0usize;
                while Instant::now() < until {
                    model.predict(vec![input.clone()]).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let batches: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    (batches * batch) as f64 / begun.elapsed().as_secs_f64()
}

fn load_direct(
    fixture: &Fixture,
    backend: Backend,
    store: &ModelStore,
) -> Result<Arc<dyn Model>, pier_runtimes::RuntimeError> {
    let signature: ManifestSignature = serde_json::from_str(
        &std::fs::read_to_string(fixture.path.join("signature.json")).unwrap(),
    )
    .unwrap();
    let draft = ManifestDraft {
        runtime: "onnx".into(),
        signature,
        ..Default::default()
    };
    let name = format!("{}-{}", fixture.name, backend.as_str());
    store
        .publish(
            &name,
            vec![ArtifactFile::from_path(
                "model.onnx",
                fixture.path.join("model.onnx"),
            )],
            draft,
        )
        .unwrap();
    let artifact = store.open_version(&name, VersionSelector::Latest).unwrap();
    pier_runtimes::load(&artifact, &LoadOptions::with_backend(backend))
}

/// One cell's measurement for one batching mode in one round.
#[derive(Clone, Copy)]
struct Cell {
    rows_per_s: f64,
    p99: f64,
    mean_batch: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

const BATCHING: [&str; 3] = ["off", "on", "on-delay"];

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path().join("data"));
    config.http_addr = "127.0.0.1:0".parse().unwrap();
    config.admin_addr = "127.0.0.1:0".parse().unwrap();
    let threads = config.compute.threads;
    let server = pier_server::start(config).await.expect("server starts");
    let (http, admin) = (server.http_addr, server.admin_addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let backends = Backend::available();
    let store = ModelStore::open(dir.path().join("direct")).unwrap();

    println!(
        "compute threads: {threads}; {secs} s per cell; {rounds} rounds, the three batching modes interleaved in each (order rotated); batching MaxBatchSize={MAX_BATCH}; on: default MaxQueueDelayMicroseconds (0); on-delay: {DELAY_US}"
    );
    println!(
        "rows/s: median of the rounds; on/off: the median of each round's ratio (lowest–highest)"
    );
    println!(
        "| model | backend | rows/req | c | off rows/s | on / off | on-delay / off | p99 µs off / on | mean batch on | tight loop rows/s at it | on served / tight |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // Optional filters, for a longer look at a few cells: comma-separated names.
    let only = |var: &str, name: &str| {
        std::env::var(var).map_or(true, |list| list.split(',').any(|n| n == name))
    };
    for fixture in fixtures() {
        if !only("SERVING_BENCH_MODELS", fixture.name) {
            continue;
        }
        for &backend in &backends {
            if !only("SERVING_BENCH_BACKENDS", backend.as_str()) {
                continue;
            }
            let direct = match load_direct(&fixture, backend, &store) {
                Ok(m) => m,
                Err(e) => {
                    println!(
                        "| {} | {} | — | — | cannot load: {e} | | | | | | |",
                        fixture.name,
                        backend.as_str()
                    );
                    continue;
                }
            };
            let model_name = format!("{}-{}", fixture.name, backend.as_str());
            let url = format!("file://{}", fixture.path.join("model.onnx").display());
            api(&client, admin, "CreateModel", json!({"ModelName": model_name, "PrimaryContainer": {"Image": "onnx", "ModelDataUrl": url, "Environment": {"PIER_BACKEND": backend.as_str()}}})).await;
            // Batching off; on with the default delay (0); on with an explicit delay.
            let mut targets = Vec::new();
            for batching in BATCHING {
                let endpoint = format!("{model_name}-{batching}");
                let mut variant = json!({"VariantName": "main", "ModelName": model_name});
                match batching {
                    "on" => {
                        variant["PierBatching"] =
                            json!({"MaxBatchSize": MAX_BATCH, "MaxQueueSize": 4096})
                    }
                    "on-delay" => {
                        variant["PierBatching"] = json!({"MaxBatchSize": MAX_BATCH, "MaxQueueDelayMicroseconds": DELAY_US, "MaxQueueSize": 4096})
                    }
                    _ => {}
                }
                api(
                    &client,
                    admin,
                    "CreateEndpointConfig",
                    json!({"EndpointConfigName": endpoint, "ProductionVariants": [variant]}),
                )
                .await;
                api(
                    &client,
                    admin,
                    "CreateEndpoint",
                    json!({"EndpointName": endpoint, "EndpointConfigName": endpoint}),
                )
                .await;
                wait_in_service(&client, admin, &endpoint).await;
                let target = format!("http://{http}/endpoints/{endpoint}/invocations");
                drive(&client, &target, fixture.features, 1, 8, secs.min(1.0)).await; // warm up
                targets.push((endpoint, target));
            }
            for (rows_per_request, c) in ROWS_PER_REQUEST
                .into_iter()
                .flat_map(|r| CONCURRENCY.map(|c| (r, c)))
            {
                // cells[mode][round]
                let mut cells: Vec<Vec<Cell>> = vec![Vec::new(); BATCHING.len()];
                for round in 0..rounds {
                    for k in 0..BATCHING.len() {
                        let mode = (k + round) % BATCHING.len();
                        let (endpoint, target) = &targets[mode];
                        let (sum0, count0) = batch_stats(&client, http, endpoint).await;
                        let (rows_per_s, _p50, p99) =
                            drive(&client, target, fixture.features, rows_per_request, c, secs)
                                .await;
                        let (sum1, count1) = batch_stats(&client, http, endpoint).await;
                        let mean_batch = if count1 > count0 {
                            (sum1 - sum0) / (count1 - count0)
                        } else {
                            rows_per_request as f64
                        };
                        cells[mode].push(Cell {
                            rows_per_s,
                            p99,
                            mean_batch,
                        });
                    }
                }
                let ratio = |mode: usize| {
                    let r: Vec<f64> = (0..rounds)
                        .map(|i| cells[mode][i].rows_per_s / cells[0][i].rows_per_s)
                        .collect();
                    let (lo, hi) = r
                        .iter()
                        .fold((f64::MAX, f64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
                    format!("{:.2} ({lo:.2}–{hi:.2})", median(r))
                };
                let of =
                    |mode: usize, f: fn(&Cell) -> f64| median(cells[mode].iter().map(f).collect());
                let mean_on = of(1, |c| c.mean_batch);
                let tight = tight_loop(
                    direct.clone(),
                    fixture.features,
                    mean_on.round().max(1.0) as usize,
                    threads,
                    secs.min(1.0),
                );
                let on_rows = of(1, |c| c.rows_per_s);
                println!(
                    "| {} | {} | {rows_per_request} | {c} | {:.0} | {} | {} | {:.0} / {:.0} | {mean_on:.1} | {tight:.0} | {:.0}% |",
                    fixture.name,
                    backend.as_str(),
                    of(0, |c| c.rows_per_s),
                    ratio(1),
                    ratio(2),
                    of(0, |c| c.p99),
                    of(1, |c| c.p99),
                    100.0 * on_rows / tight
                );
            }
        }
    }
    server.shutdown().await;
}
