//! Tree-ensemble predict, two ways:
//! - `tree_predict`: the kernel (`pier_algorithms::trees::TreeEnsemble::predict_into`) on
//!   the reference shape of the trees issue — 100 trees of depth 6 over 50 features,
//!   `binary:logistic`, built here as an XGBoost JSON document (random splits, no Python
//!   needed) and loaded through `load_xgboost` — at 1 to 100k rows, dense and 10% NaN;
//! - `tree_runtime`: committed XGBoost fixtures (`fixtures/trees/`) through Pier's native
//!   runtime (`pier_runtimes::native::load`, `Model::predict` with tensors in and out, as
//!   the server calls it) at batch 1 and 64.
//!
//! `cargo bench -p pier-benches --bench tree_predict`
//!
//! For the head-to-head against XGBoost itself see `scripts/trees/bench_vs_xgboost.py`.

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use pier_algorithms::trees::{TreeEnsemble, load_xgboost};
use pier_benches::{ROWS, feature_tensor, fixtures};
use serde_json::json;

const FEATURES: usize = 50;
const TREES: usize = 100;
const DEPTH: u32 = 6;

struct Rng(u64);

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // Roughly normal: sum of uniforms, centred.
        let u = |v: u64| (v & 0xffff) as f32 / 65536.0;
        u(self.0) + u(self.0 >> 16) + u(self.0 >> 32) + u(self.0 >> 48) - 2.0
    }
    fn below(&mut self, n: usize) -> usize {
        self.next_f32();
        (self.0 >> 33) as usize % n
    }
}

/// A complete depth-`DEPTH` tree in XGBoost's JSON tree schema.
fn tree(rng: &mut Rng, id: usize) -> serde_json::Value {
    let internal = (1usize << DEPTH) - 1;
    let n = 2 * internal + 1;
    let is_leaf = |i: usize| i >= internal;
    json!({
        "id": id,
        "left_children": (0..n).map(|i| if is_leaf(i) { -1 } else { 2 * i as i64 + 1 }).collect::<Vec<_>>(),
        "right_children": (0..n).map(|i| if is_leaf(i) { -1 } else { 2 * i as i64 + 2 }).collect::<Vec<_>>(),
        "split_indices": (0..n).map(|i| if is_leaf(i) { 0 } else { rng.below(FEATURES) }).collect::<Vec<_>>(),
        "split_conditions": (0..n).map(|i| if is_leaf(i) { rng.next_f32() * 0.1 } else { rng.next_f32() * 0.5 }).collect::<Vec<_>>(),
        "default_left": (0..n).map(|_| rng.below(2)).collect::<Vec<_>>(),
        "split_type": vec![0; n],
        "tree_param": {"num_nodes": n.to_string(), "num_feature": FEATURES.to_string(), "size_leaf_vector": "1"},
    })
}

fn model() -> TreeEnsemble {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let trees: Vec<_> = (0..TREES).map(|t| tree(&mut rng, t)).collect();
    let doc = json!({
        "learner": {
            "learner_model_param": {"base_score": "[5E-1]", "num_class": "0", "num_feature": FEATURES.to_string(), "num_target": "1"},
            "objective": {"name": "binary:logistic"},
            "gradient_booster": {
                "name": "gbtree",
                "model": {"tree_info": vec![0; TREES], "trees": trees, "gbtree_model_param": {"num_trees": TREES.to_string(), "num_parallel_tree": "1"}},
            },
        },
        "version": [3, 2, 0],
    });
    load_xgboost(doc.to_string().as_bytes()).expect("the generated model loads")
}

fn bench(c: &mut Criterion) {
    let model = model();
    let mut rng = Rng(42);
    let max_rows = 100_000;
    let rows: Vec<f32> = (0..max_rows * FEATURES).map(|_| rng.next_f32()).collect();
    let with_nan: Vec<f32> = rows
        .iter()
        .enumerate()
        .map(|(i, &x)| if i % 10 == 3 { f32::NAN } else { x })
        .collect();
    let mut group = c.benchmark_group("tree_predict");
    // Flat sampling and 10 samples keep the 100k-row cells to about a second each.
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    for (name, data) in [("dense", &rows), ("10pct_nan", &with_nan)] {
        for n in [1usize, 64, 1024, max_rows] {
            let mut out = vec![0.0f32; n * model.num_outputs()];
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new(name, n), &n, |b, &n| {
                b.iter(|| {
                    model
                        .predict_into(&data[..n * FEATURES], n, FEATURES, &mut out)
                        .unwrap()
                });
            });
        }
    }
    group.finish();
}

fn runtime(c: &mut Criterion) {
    let mut group = c.benchmark_group("tree_runtime");
    for (name, file) in [
        ("xgb_binary_logistic", "xgb_binary_logistic.model.json"),
        ("xgb_multi_softprob", "xgb_multi_softprob.model.json"),
        ("xgb_sagemaker", "xgb_sagemaker/xgboost-model"),
    ] {
        let model = pier_benches::load_xgboost(&fixtures().join("trees").join(file));
        let features = model.signature().inputs[0]
            .features()
            .expect("a [-1, features] input");
        for rows in ROWS {
            let input = feature_tensor(rows, features);
            group.throughput(Throughput::Elements(rows as u64));
            group.bench_with_input(BenchmarkId::new(name, rows), &input, |b, input| {
                b.iter(|| model.predict(vec![input.clone()]).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = pier_benches::criterion();
    targets = bench, runtime
}
criterion_main!(benches);
