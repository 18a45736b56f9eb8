//! Model load time from the model store on S3 (`s3s-fs` on loopback, started here): cold
//! (an empty cache: list, read the manifest, download and verify every file, load the
//! runtime) against cached (list, read the manifest, verify the cached copy, load) and the
//! local store (verify, load). Prints the median wall and CPU milliseconds of each, CPU split
//! between this process and the S3 server.
//!
//! ```text
//! cargo run --release --example store_load_bench -- [MODEL_DIR] [RUNS]
//! ```
//!
//! `MODEL_DIR` holds `model.onnx` and `signature.json` (default `fixtures/onnx/iris-logreg`);
//! `benches/store_model.py` writes a large one (a 64 MiB MatMul).

#[path = "../../tests/support/s3s.rs"]
mod s3s;

use std::path::{Path, PathBuf};
use std::time::Instant;

use pier_model_store::{
    ArtifactFile, ManifestDraft, ManifestSignature, ModelStore, StoreConfig, StoreLocation,
    VersionSelector,
};
use pier_runtimes::LoadOptions;

const BUCKET: &str = "bench";

/// User + system CPU seconds of a process, from `/proc/<pid>/stat` (clock ticks of 10 ms).
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // After the command: field 3 is index 0, utime (14) index 11, stime (15) index 12.
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    ticks as f64 / 100.0
}

struct Sample {
    wall: f64,
    cpu: f64,
    s3_cpu: f64,
}

fn measure(s3_pid: &str, f: impl FnOnce()) -> Sample {
    let (cpu0, s30, t0) = (cpu_seconds("self"), cpu_seconds(s3_pid), Instant::now());
    f();
    Sample {
        wall: t0.elapsed().as_secs_f64(),
        cpu: cpu_seconds("self") - cpu0,
        s3_cpu: cpu_seconds(s3_pid) - s30,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn load(store: &ModelStore) {
    let artifact = store
        .open_version("bench", VersionSelector::Latest)
        .unwrap();
    let model = pier_runtimes::load(&artifact, &LoadOptions::default()).unwrap();
    std::hint::black_box(model);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/onnx/iris-logreg"),
        PathBuf::from,
    );
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let signature: ManifestSignature =
        serde_json::from_str(&std::fs::read_to_string(dir.join("signature.json")).unwrap())
            .unwrap();
    let draft = ManifestDraft {
        runtime: "onnx".into(),
        signature,
        ..Default::default()
    };
    let size = std::fs::metadata(dir.join("model.onnx")).unwrap().len();
    let server = s3s::S3Server::start(BUCKET);
    let pid = server.pid().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let config = |cache: &Path| StoreConfig {
        location: StoreLocation::parse(&format!("s3://{BUCKET}/models")).unwrap(),
        cache_dir: cache.to_path_buf(),
        cache_bytes: 8 << 30,
        s3: server.config(),
    };
    let files = vec![ArtifactFile::from_path(
        "model.onnx",
        dir.join("model.onnx"),
    )];
    let publisher = ModelStore::open_with(&config(&tmp.path().join("publisher"))).unwrap();
    publisher
        .publish("bench", files.clone(), draft.clone())
        .unwrap();
    let local = ModelStore::open(tmp.path().join("local")).unwrap();
    local.publish("bench", files, draft).unwrap();
    let reader = ModelStore::open_with(&config(&tmp.path().join("reader"))).unwrap();
    load(&reader); // fills its cache

    let mut rows: Vec<(&str, Vec<Sample>)> =
        vec![("cold", vec![]), ("cached", vec![]), ("local", vec![])];
    for run in 0..runs {
        let cache = tmp.path().join(format!("cold-{run}"));
        let cold = ModelStore::open_with(&config(&cache)).unwrap();
        rows[0].1.push(measure(&pid, || load(&cold)));
        drop(cold);
        std::fs::remove_dir_all(&cache).unwrap();
        rows[1].1.push(measure(&pid, || load(&reader)));
        rows[2].1.push(measure(&pid, || load(&local)));
    }
    println!(
        "model {} ({size} bytes), {runs} runs, medians:",
        dir.display()
    );
    println!(
        "{:<8} {:>10} {:>12} {:>14}",
        "store", "wall ms", "pier CPU ms", "s3s-fs CPU ms"
    );
    for (name, samples) in rows {
        let wall = median(samples.iter().map(|s| s.wall).collect());
        let cpu = median(samples.iter().map(|s| s.cpu).collect());
        let s3 = median(samples.iter().map(|s| s.s3_cpu).collect());
        println!(
            "{name:<8} {:>10.1} {:>12.0} {:>14.0}",
            wall * 1e3,
            cpu * 1e3,
            s3 * 1e3
        );
    }
}
