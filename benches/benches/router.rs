//! The router's weighted variant choice (`pier_server::serving::WeightedChoice`), as a
//! request without `X-Amzn-SageMaker-Target-Variant` makes it: one uniform sample, one
//! pick. Two variants (a 70/30 A/B test), ten, and a hundred (the linear scan's worst case
//! that SageMaker's 10-variant limit never reaches).
//!
//! `cargo bench -p pier-benches --bench router`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use pier_server::serving::WeightedChoice;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("router_pick");
    for variants in [2usize, 10, 100] {
        let weights: Vec<f64> = if variants == 2 {
            vec![70.0, 30.0]
        } else {
            (1..=variants).map(|w| w as f64).collect()
        };
        let choice = WeightedChoice::new(&weights).expect("valid weights");
        group.bench_with_input(
            BenchmarkId::new("seeded_rng", variants),
            &choice,
            |b, choice| {
                let mut rng = fastrand::Rng::with_seed(7);
                b.iter(|| choice.pick_with(&mut rng))
            },
        );
        // What the data plane does: the thread-local generator, then `pick`.
        group.bench_with_input(
            BenchmarkId::new("thread_rng", variants),
            &choice,
            |b, choice| b.iter(|| choice.pick(black_box(fastrand::f64()))),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = pier_benches::criterion();
    targets = bench
}
criterion_main!(benches);
