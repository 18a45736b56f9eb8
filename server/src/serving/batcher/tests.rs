//! Actor tests with tokio's paused clock: deadlines, full batches, exact splitting, a full
//! queue, and callers that leave before compute.

use std::sync::Mutex as StdMutex;
use std::time::Duration;

use pier_runtimes::{DataType, Signature, TensorData, TensorSpec};

use super::*;

/// Doubles its input and records the batch sizes it saw.
#[derive(Debug)]
struct Doubler {
    signature: Signature,
    seen: StdMutex<Vec<usize>>,
}

impl Doubler {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            signature: Signature {
                inputs: vec![TensorSpec::new("x", DataType::Fp32, vec![-1, 2])],
                outputs: vec![TensorSpec::new("y", DataType::Fp32, vec![-1, 2])],
            },
            seen: StdMutex::new(Vec::new()),
        })
    }

    fn seen(&self) -> Vec<usize> {
        self.seen.lock().unwrap().clone()
    }
}

impl Model for Doubler {
    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn predict(&self, inputs: Vec<Tensor>) -> pier_runtimes::Result<Vec<Tensor>> {
        let x = &inputs[0];
        self.seen.lock().unwrap().push(x.rows());
        let data: Vec<f32> = x.as_f32().unwrap().iter().map(|v| v * 2.0).collect();
        Ok(vec![Tensor::new(
            x.shape().to_vec(),
            TensorData::Fp32(data),
        )?])
    }

    fn backend(&self) -> &'static str {
        "test"
    }
}

fn rows(first: f32, n: usize) -> Vec<Tensor> {
    let data: Vec<f32> = (0..n * 2).map(|i| first + i as f32).collect();
    vec![Tensor::from_f32_rows(n, 2, data).unwrap()]
}

fn settings(max: usize, delay_ms: u64, queue: usize) -> BatchSettings {
    BatchSettings {
        max_batch_size: max,
        max_queue_delay: Duration::from_millis(delay_ms),
        preferred_batch_sizes: Vec::new(),
        max_queue_size: queue,
    }
}

fn batcher(model: &Arc<Doubler>, s: BatchSettings) -> Batcher {
    Batcher::start(
        model.clone(),
        ModelLabels::default(),
        s,
        ComputePool::new(1, 16),
    )
}

#[tokio::test(start_paused = true)]
async fn requests_within_the_delay_share_one_batch_and_split_back_exactly() {
    let model = Doubler::new();
    let b = batcher(&model, settings(16, 5, 100));
    let (a, c) = tokio::join!(b.infer(rows(0.0, 1)), b.infer(rows(100.0, 3)));
    let (a, c) = (a.unwrap(), c.unwrap());
    assert_eq!(model.seen(), [4], "one batch of 1 + 3 rows");
    assert_eq!(a[0].shape(), [1, 2]);
    assert_eq!(a[0].as_f32().unwrap(), [0.0, 2.0]);
    assert_eq!(c[0].shape(), [3, 2]);
    assert_eq!(
        c[0].as_f32().unwrap(),
        [200.0, 202.0, 204.0, 206.0, 208.0, 210.0]
    );
}

#[tokio::test(start_paused = true)]
async fn a_lone_request_waits_for_the_deadline_only() {
    let model = Doubler::new();
    let b = batcher(&model, settings(16, 50, 100));
    let start = Instant::now();
    b.infer(rows(1.0, 1)).await.unwrap();
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(50), "{waited:?}");
    assert!(waited < Duration::from_millis(60), "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_full_batch_goes_before_the_deadline() {
    let model = Doubler::new();
    let b = batcher(&model, settings(4, 10_000, 100));
    let start = Instant::now();
    let (x, y) = tokio::join!(b.infer(rows(0.0, 2)), b.infer(rows(0.0, 2)));
    x.unwrap();
    y.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(model.seen(), [4]);
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_is_refused_at_once() {
    let model = Doubler::new();
    let b = batcher(&model, settings(64, 1_000, 2));
    let first = b.infer(rows(0.0, 1));
    let second = b.infer(rows(0.0, 1));
    tokio::pin!(first, second);
    // Poll both once so they are queued, then a third finds the queue full.
    assert!(futures_poll(&mut first).await.is_none());
    assert!(futures_poll(&mut second).await.is_none());
    let err = b.infer(rows(0.0, 1)).await.unwrap_err();
    assert!(matches!(err, ServeError::QueueFull { max: 2 }), "{err}");
    assert_eq!(err.status().http.as_u16(), 429);
    first.await.unwrap();
    second.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_leaves_is_dropped_before_compute() {
    let model = Doubler::new();
    let b = batcher(&model, settings(64, 20, 100));
    let mut gone = Box::pin(b.infer(rows(0.0, 5)));
    assert!(futures_poll(&mut gone).await.is_none());
    assert_eq!(b.queued(), 1);
    drop(gone);
    let kept = b.infer(rows(0.0, 1)).await.unwrap();
    assert_eq!(kept[0].rows(), 1);
    assert_eq!(
        model.seen(),
        [1],
        "the abandoned 5 rows never reached the model"
    );
}

/// Polls a future once (yielding to let the actor run first).
async fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
    tokio::task::yield_now().await;
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *f).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}
