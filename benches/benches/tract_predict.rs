//! ONNX predict through the tract backend, loaded as the server loads it (store +
//! `pier_runtimes::load`), at batch 1 and 64: `fixtures/onnx/mlp` (4-16-3 MLP),
//! `iris-logreg` (scikit-learn LogisticRegression) and `iris-mlp` (scikit-learn
//! MLPClassifier, 16 hidden units — the model `benches/peers/run.sh` serves).
//!
//! `cargo bench -p pier-benches --bench tract_predict`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pier_benches::{ROWS, feature_tensor, load_onnx};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("tract_predict");
    for name in ["mlp", "iris-logreg", "iris-mlp"] {
        let model = load_onnx(name);
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
    targets = bench
}
criterion_main!(benches);
