//! Helpers shared by Pier's criterion benches (`benches/benches/*.rs`): the committed
//! fixtures, loading one through the same path the server uses (publish into a model store,
//! then `pier_runtimes::load`), deterministic feature rows, request bodies, and one
//! criterion configuration with short measurement times so that
//! `cargo bench -p pier-benches` finishes in a few minutes.
//!
//! Concurrency: none; benches are single-threaded and build their inputs before timing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use pier_model_store::{
    ArtifactFile, ManifestDraft, ManifestSignature, ModelStore, VersionSelector,
};
use pier_runtimes::{LoadOptions, Model, Signature, Tensor};

/// The row counts every per-request bench runs at: one-row requests and a full batch.
pub const ROWS: [usize; 2] = [1, 64];

/// Criterion settings for every bench here: 0.5 s warm-up, 1.5 s measurement, 30 samples.
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
}

/// The repository's `fixtures/` folder.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// `rows * features` deterministic values in roughly the range of standardised features.
pub fn feature_rows(rows: usize, features: usize) -> Vec<f32> {
    (0..rows * features)
        .map(|i| ((i * 37 + 11) % 101) as f32 / 25.0 - 2.0)
        .collect()
}

/// A `[rows, features]` `FP32` tensor of [`feature_rows`].
pub fn feature_tensor(rows: usize, features: usize) -> Tensor {
    Tensor::from_f32_rows(rows, features, feature_rows(rows, features)).expect("shape matches")
}

/// A `text/csv` body of `rows` records.
pub fn csv_body(rows: usize, features: usize) -> Vec<u8> {
    let values = feature_rows(rows, features);
    let mut out = String::new();
    for row in values.chunks(features) {
        let fields: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        out.push_str(&fields.join(","));
        out.push('\n');
    }
    out.into_bytes()
}

/// An `application/json` body `{"instances": [[...], ...]}` of `rows` records.
pub fn json_body(rows: usize, features: usize) -> Vec<u8> {
    let values = feature_rows(rows, features);
    let instances: Vec<&[f32]> = values.chunks(features).collect();
    serde_json::to_vec(&serde_json::json!({ "instances": instances })).expect("serialisable")
}

/// Loads ONNX fixture `fixtures/onnx/<name>` with tract, as the server does: published into
/// a temporary model store with its `signature.json`, then `pier_runtimes::load`.
pub fn load_onnx(name: &str) -> Arc<dyn Model> {
    let dir = fixtures().join("onnx").join(name);
    let signature: ManifestSignature = serde_json::from_str(
        &std::fs::read_to_string(dir.join("signature.json")).expect("signature.json"),
    )
    .expect("signature.json parses");
    let draft = ManifestDraft {
        runtime: "onnx".into(),
        signature,
        ..Default::default()
    };
    load_published(
        name,
        ArtifactFile::from_path("model.onnx", dir.join("model.onnx")),
        draft,
    )
}

/// Loads an XGBoost model file through Pier's native runtime (`runtime = "xgboost"`), as
/// `pier models push NAME PATH --runtime xgboost` and the server do.
pub fn load_xgboost(path: &Path) -> Arc<dyn Model> {
    let label = path.display().to_string();
    pier_runtimes::native::load("xgboost", path, &Signature::default(), &label)
        .expect("the XGBoost fixture loads")
}

fn load_published(name: &str, file: ArtifactFile, draft: ManifestDraft) -> Arc<dyn Model> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = ModelStore::open(dir.path().join("store")).expect("store opens");
    store.publish(name, vec![file], draft).expect("publish");
    let artifact = store
        .open_version(name, VersionSelector::Latest)
        .expect("the version just published opens");
    pier_runtimes::load(&artifact, &LoadOptions::default()).expect("the fixture loads")
}
