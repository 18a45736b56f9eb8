//! The batcher's synchronous core, without tokio or a model: push N one-row requests into a
//! `BatchQueue` and take batches until it is empty (`max_batch_size` 64, no preferred sizes,
//! every batch full or taken at its deadline), then the row-wise combine and exact split
//! that `run_batch` does around `predict` (`Tensor::concat_rows`, `split_rows`) for a
//! batch of 64 one-row requests of 30 features.
//!
//! `cargo bench -p pier-benches --bench batcher`

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use pier_benches::feature_tensor;
use pier_runtimes::Tensor;
use pier_server::serving::batcher::{BatchQueue, BatchSettings};

const FEATURES: usize = 30;

fn settings() -> BatchSettings {
    BatchSettings {
        max_batch_size: 64,
        max_queue_delay: Duration::from_micros(500),
        preferred_batch_sizes: Vec::new(),
        max_queue_size: 4096,
    }
}

fn queue(c: &mut Criterion) {
    let mut group = c.benchmark_group("batcher_queue");
    for n in [64usize, 1024] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("push_then_batch", n), &n, |b, &n| {
            let t0 = Instant::now();
            let late = t0 + Duration::from_millis(1);
            b.iter(|| {
                let mut q = BatchQueue::new(settings());
                for i in 0..n {
                    q.push(i, 1, t0).unwrap();
                }
                let mut batches = 0;
                while let Some(batch) = q.take_batch(late) {
                    batches += batch.len();
                }
                batches
            })
        });
        // Arrivals interleaved with batch formation, as under steady load: each push is
        // followed by a check that forms a batch whenever 64 rows have gathered.
        group.bench_with_input(BenchmarkId::new("interleaved", n), &n, |b, &n| {
            let t0 = Instant::now();
            b.iter(|| {
                let mut q = BatchQueue::new(settings());
                let mut taken = 0;
                for i in 0..n {
                    q.push(i, 1, t0).unwrap();
                    if let Some(batch) = q.take_batch(t0) {
                        taken += batch.len();
                    }
                }
                taken
            })
        });
    }
    group.finish();
}

fn combine_split(c: &mut Criterion) {
    let mut group = c.benchmark_group("batcher_combine_split");
    let requests: Vec<Tensor> = (0..64).map(|_| feature_tensor(1, FEATURES)).collect();
    let counts = vec![1usize; requests.len()];
    group.throughput(Throughput::Elements(requests.len() as u64));
    group.bench_function("concat_rows_64x1", |b| {
        b.iter(|| Tensor::concat_rows(&requests).unwrap())
    });
    let combined = Tensor::concat_rows(&requests).unwrap();
    group.bench_function("split_rows_64x1", |b| {
        b.iter(|| combined.split_rows(&counts).unwrap())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = pier_benches::criterion();
    targets = queue, combine_split
}
criterion_main!(benches);
