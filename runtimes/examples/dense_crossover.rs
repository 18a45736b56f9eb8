//! Where tract's packed kernels start to beat the native dense layers: times one call of
//! `fixtures/onnx/mlp` (4 → 16 → 3, 112 multiply-adds a row) and of skl2onnx's iris
//! `MLPClassifier` on both paths for growing batches, interleaved, best of several rounds.
//!
//! usage: cargo run --release -p pier-runtimes --example dense_crossover [MODEL.onnx ...]
//! (more networks to time, e.g. a wider one: `MatMul`/`Add`/`Relu` layers, FP32 `[rows, k]`)
use std::path::PathBuf;
use std::time::Instant;

use pier_runtimes::Model;
use pier_runtimes::Tensor;
use pier_runtimes::onnx::{OnnxGraph, dense::DenseModel, tract::TractModel};

fn main() {
    let fixtures = ["mlp", "iris-mlp"].map(|name| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("../fixtures/onnx/{name}/model.onnx"))
    });
    let more = std::env::args().skip(1).map(PathBuf::from);
    for path in fixtures.into_iter().chain(more) {
        let name = &path.display().to_string();
        let graph = OnnxGraph::read(&path, name).expect("fixture");
        let signature = graph.declared_signature().expect("signature");
        let native = DenseModel::plan(&graph, &signature, name)
            .expect("plan")
            .expect("a dense chain");
        let width = usize::try_from(signature.inputs[0].shape[1]).expect("[rows, k] input");
        let tract = TractModel::load(&path, Some(signature), name).expect("tract");
        println!("{name}: rows, native µs/call, tract µs/call, tract/native");
        for rows in [1usize, 4, 16, 64, 128, 256, 512, 1024, 4096] {
            let x = Tensor::from_f32_rows(
                rows,
                width,
                (0..rows * width).map(|i| (i % 7) as f32).collect(),
            )
            .expect("tensor");
            let calls = (200_000 / rows).max(20);
            let (mut best_n, mut best_t) = (f64::MAX, f64::MAX);
            for _ in 0..5 {
                for (model, best) in [
                    (&native as &dyn Model, &mut best_n),
                    (&tract as &dyn Model, &mut best_t),
                ] {
                    let start = Instant::now();
                    for _ in 0..calls {
                        std::hint::black_box(model.predict(vec![x.clone()]).expect("predict"));
                    }
                    *best = best.min(start.elapsed().as_secs_f64() * 1e6 / calls as f64);
                }
            }
            println!(
                "{rows:>6} {best_n:>10.2} {best_t:>10.2} {:>6.2}",
                best_t / best_n
            );
        }
    }
}
