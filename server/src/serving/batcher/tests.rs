//! Driver tests on the real clock (the core's rules are tested with injected instants in
//! `queue.rs`): deadlines, full batches, exact splitting under concurrency, a full queue,
//! callers that leave before compute, and fairness between models sharing a pool. Time
//! bounds here are generous correctness bounds (a deadline is kept, nothing hangs), not
//! speed targets.

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
        Arc::default(),
        s,
        ComputePool::new(1, 16),
        1,
    )
}

/// No delay, a large queue, two slots on a pool of two threads: for callers that race.
fn two_slots(model: &Arc<Doubler>) -> Arc<Batcher> {
    Arc::new(Batcher::start(
        model.clone(),
        ModelLabels::default(),
        Arc::default(),
        settings(16, 0, 4096),
        ComputePool::new(2, 64),
        2,
    ))
}

#[tokio::test]
async fn requests_within_the_delay_share_one_batch_and_split_back_exactly() {
    let model = Doubler::new();
    let b = batcher(&model, settings(16, 200, 100));
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

#[tokio::test]
async fn a_lone_request_waits_for_the_deadline_only() {
    let model = Doubler::new();
    let b = batcher(&model, settings(16, 50, 100));
    let start = Instant::now();
    b.infer(rows(1.0, 1)).await.unwrap();
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(50), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

#[tokio::test]
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

#[tokio::test]
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

#[tokio::test]
async fn a_caller_that_leaves_is_dropped_before_compute() {
    let model = Doubler::new();
    let b = batcher(&model, settings(64, 100, 100));
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_each_get_exactly_their_rows_back() {
    let model = Doubler::new();
    let b = two_slots(&model);
    let tasks: Vec<_> = (0..32)
        .map(|t| {
            let b = b.clone();
            tokio::spawn(async move {
                for i in 0..40 {
                    let n = 1 + (t + i) % 3;
                    let first = (t * 1000 + i * 10) as f32;
                    let out = b.infer(rows(first, n)).await.unwrap();
                    let want: Vec<f32> = (0..n * 2).map(|k| 2.0 * (first + k as f32)).collect();
                    assert_eq!(
                        out[0].as_f32().unwrap(),
                        want.as_slice(),
                        "task {t} request {i}"
                    );
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let seen = model.seen();
    let total: usize = seen.iter().sum();
    let expected: usize = (0..32)
        .flat_map(|t| (0..40).map(move |i| 1 + (t + i) % 3))
        .sum();
    assert_eq!(total, expected, "every row predicted exactly once");
    assert!(seen.iter().all(|&n| n <= 16), "no batch above MaxBatchSize");
}

/// Logs a tag per predict into a shared log, blocking while the gate is shut.
#[derive(Debug)]
struct Tagged {
    inner: Arc<Doubler>,
    tag: char,
    log: Arc<StdMutex<Vec<char>>>,
    gate: Arc<(StdMutex<bool>, std::sync::Condvar)>,
}

impl Model for Tagged {
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn predict(&self, inputs: Vec<Tensor>) -> pier_runtimes::Result<Vec<Tensor>> {
        let (lock, cv) = &*self.gate;
        let mut open = lock.lock().unwrap();
        while !*open {
            open = cv.wait(open).unwrap();
        }
        drop(open);
        self.log.lock().unwrap().push(self.tag);
        self.inner.predict(inputs)
    }

    fn backend(&self) -> &'static str {
        "test"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_model_does_not_starve_another_on_the_same_pool() {
    // One compute thread. Model A has a deep queue; model B's single request must run
    // right after A's current batch, not after A's whole queue.
    let pool = ComputePool::new(1, 64);
    let gate = Arc::new((StdMutex::new(false), std::sync::Condvar::new()));
    let log = Arc::new(StdMutex::new(Vec::new()));
    let tagged = |tag| {
        Arc::new(Tagged {
            inner: Doubler::new(),
            tag,
            log: log.clone(),
            gate: gate.clone(),
        })
    };
    let a = Arc::new(Batcher::start(
        tagged('A'),
        ModelLabels::default(),
        Arc::default(),
        settings(1, 0, 4096),
        pool.clone(),
        pool.threads(),
    ));
    let b = Batcher::start(
        tagged('B'),
        ModelLabels::default(),
        Arc::default(),
        settings(1, 0, 16),
        pool.clone(),
        pool.threads(),
    );
    let a_tasks: Vec<_> = (0..100)
        .map(|i| {
            let a = a.clone();
            tokio::spawn(async move { a.infer(rows(i as f32, 1)).await.unwrap() })
        })
        .collect();
    // A's first batch blocks the only thread at the gate; the rest queue up.
    while a.queued() < 99 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let b_call = tokio::spawn(async move { b.infer(rows(7.0, 1)).await.unwrap() });
    // B's batch waits in the pool's queue behind A's blocked one.
    while pool.waiting() < 1 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    {
        let (lock, cv) = &*gate;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
    let out = b_call.await.unwrap();
    assert_eq!(out[0].as_f32().unwrap(), [14.0, 16.0]);
    for t in a_tasks {
        t.await.unwrap();
    }
    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 101);
    let b_at = log.iter().position(|&t| t == 'B').unwrap();
    assert_eq!(
        b_at, 1,
        "B ran after A's first batch, not after its queue: {log:?}"
    );
}

/// Doubles its input once the test lets it: `predict` waits for one message per call.
#[derive(Debug)]
struct Gated {
    inner: Arc<Doubler>,
    gate: StdMutex<std::sync::mpsc::Receiver<()>>,
}

impl Model for Gated {
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn predict(&self, inputs: Vec<Tensor>) -> pier_runtimes::Result<Vec<Tensor>> {
        self.gate.lock().unwrap().recv().unwrap();
        self.inner.predict(inputs)
    }

    fn backend(&self) -> &'static str {
        "test"
    }
}

#[tokio::test]
async fn an_idle_model_runs_a_lone_request_where_it_stands() {
    let model = Doubler::new();
    let pool = ComputePool::new(1, 16);
    let start = |cost: Arc<PredictCost>, s: BatchSettings| {
        Batcher::start(
            model.clone(),
            ModelLabels::default(),
            cost,
            s,
            pool.clone(),
            2,
        )
    };

    // A caller on a compute thread runs the batch of its own request at once.
    let b = start(Arc::default(), settings(16, 0, 100));
    let reply = b.submit(rows(1.0, 2), RunHere::Always).unwrap();
    assert!(reply.ran_here());
    let out = reply.outputs().await.unwrap();
    assert_eq!(out[0].as_f32().unwrap(), [2.0, 4.0, 6.0, 8.0]);
    assert_eq!(pool.submitted(), 0, "no pool job");

    // A caller on a tokio worker only once the model's cost is measured and fits.
    let cost = Arc::new(PredictCost::default());
    let b = start(cost.clone(), settings(16, 0, 100));
    let within = RunHere::Within(Duration::from_secs(1));
    let first = b.submit(rows(0.0, 1), within).unwrap();
    assert!(!first.ran_here(), "the first call's cost is unknown");
    first.outputs().await.unwrap();
    assert_eq!(pool.submitted(), 1);
    // The pool's job gives its slot back just after answering.
    wait_at_rest(&b).await;
    assert!(
        cost.within(1, Duration::from_secs(1)),
        "a batch run is measured"
    );
    let second = b.submit(rows(3.0, 1), within).unwrap();
    assert!(second.ran_here());
    assert_eq!(
        second.outputs().await.unwrap()[0].as_f32().unwrap(),
        [6.0, 8.0]
    );
    let over = b
        .submit(rows(0.0, 1), RunHere::Within(Duration::ZERO))
        .unwrap();
    assert!(!over.ran_here(), "over the budget");
    over.outputs().await.unwrap();
    wait_at_rest(&b).await;
    let never = b.submit(rows(0.0, 1), RunHere::Never).unwrap();
    assert!(!never.ran_here());
    never.outputs().await.unwrap();
    assert_eq!(pool.submitted(), 3);

    // With a delay, a lone request is not a batch yet: it waits for the delay on the pool.
    let b = start(Arc::default(), settings(16, 50, 100));
    let begun = Instant::now();
    let waits = b.submit(rows(0.0, 1), RunHere::Always).unwrap();
    assert!(!waits.ran_here());
    waits.outputs().await.unwrap();
    assert!(begun.elapsed() >= Duration::from_millis(50));
    assert_eq!(model.seen(), [2, 1, 1, 1, 1, 1]);
}

#[tokio::test]
async fn a_request_behind_a_busy_slot_waits_for_the_pool() {
    let (open, gate) = std::sync::mpsc::channel();
    let inner = Doubler::new();
    let model = Arc::new(Gated {
        inner: inner.clone(),
        gate: StdMutex::new(gate),
    });
    let pool = ComputePool::new(1, 16);
    let b = Batcher::start(
        model,
        ModelLabels::default(),
        Arc::default(),
        settings(16, 0, 100),
        pool.clone(),
        1,
    );
    let busy = b.submit(rows(0.0, 1), RunHere::Never).unwrap();
    // The one slot is taken (the pool's batch waits at the gate), so even a compute
    // thread's caller only queues.
    let behind = b.submit(rows(5.0, 2), RunHere::Always).unwrap();
    assert!(!behind.ran_here());
    assert_eq!(b.queued(), 1);
    assert!(!b.is_at_rest());
    open.send(()).unwrap();
    open.send(()).unwrap();
    assert_eq!(
        busy.outputs().await.unwrap()[0].as_f32().unwrap(),
        [0.0, 2.0]
    );
    let out = behind.outputs().await.unwrap();
    assert_eq!(out[0].as_f32().unwrap(), [10.0, 12.0, 14.0, 16.0]);
    assert_eq!(
        inner.seen(),
        [1, 2],
        "the queued request ran after the first"
    );
}

#[test]
fn callers_on_many_threads_each_get_exactly_their_rows_back() {
    // Compute-thread callers (`RunHere::Always`) racing each other and the pool: some run
    // their batch where they stand, some are batched with others on the pool.
    let model = Doubler::new();
    let b = two_slots(&model);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let b = b.clone();
            std::thread::spawn(move || {
                let mut here = 0;
                for i in 0..200 {
                    let (first, n) = ((t * 1000 + i) as f32, 1 + i % 3);
                    let reply = b.submit(rows(first, n), RunHere::Always).unwrap();
                    here += usize::from(reply.ran_here());
                    let out = futures::executor::block_on(reply.outputs()).unwrap();
                    let want: Vec<f32> = rows(first, n)[0]
                        .as_f32()
                        .unwrap()
                        .iter()
                        .map(|v| v * 2.0)
                        .collect();
                    assert_eq!(out[0].as_f32().unwrap(), want);
                }
                here
            })
        })
        .collect();
    let here: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(here > 0, "some requests ran where they stood");
    let rows: usize = model.seen().iter().sum();
    assert_eq!(rows, 4 * (0..200).map(|i| 1 + i % 3).sum::<usize>());
}

/// Waits (bounded) until `b` has nothing queued or running.
async fn wait_at_rest(b: &Batcher) {
    for _ in 0..5000 {
        if b.is_at_rest() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("the batcher never came to rest");
}

/// Polls a future once (yielding first so other tasks run).
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
