//! The load loops, generic over a [`Transport`] so tests drive them with a fake target on a
//! paused clock.
//!
//! Concurrency design: a multi-thread tokio runtime (the caller's). Closed loop: one task per
//! client, each owning its connection. Open loop: one scheduler task wakes at each due time
//! (computed as `start + i / rate`, so a late wake-up never shifts later due times) and spawns
//! a task per request; a semaphore of `connections` permits bounds requests in flight (idle
//! connections wait in a pool), a second of `max_outstanding` permits bounds waiting plus in
//! flight: a due request that finds it exhausted is recorded as `not_sent` at once. Every
//! attempt, connecting included, is bounded by the timeout. Results go to one
//! [`Recorder`] behind a mutex.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::ProgressBar;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::config::{LoadShape, StopAt};
use crate::recorder::{ErrorKind, Measured, Recorder};

/// A way to send one request. `Conn` is what a client keeps between requests (an HTTP/1.1
/// keep-alive connection, a gRPC channel handle).
pub trait Transport: Send + Sync + 'static {
    /// Per-client connection state.
    type Conn: Send + 'static;
    /// Opens a connection.
    fn connect(&self) -> impl Future<Output = Result<Self::Conn, ErrorKind>> + Send;
    /// Sends one request on `conn` and reads the whole answer.
    fn call(&self, conn: &mut Self::Conn) -> impl Future<Output = Result<(), ErrorKind>> + Send;
}

/// The timing part of a run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Load shape.
    pub load: LoadShape,
    /// Warm-up.
    pub warmup: Duration,
    /// End of the measurement.
    pub stop: StopAt,
    /// Bound on each attempt.
    pub timeout: Duration,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// Histograms, counts, series.
    pub measured: Measured,
    /// From the end of the warm-up to the last measured finish.
    pub duration: Duration,
}

/// After a failed connect a closed-loop client waits this long, so a dead target is not
/// hammered in a busy loop.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_millis(10);

struct Shared<T: Transport> {
    transport: Arc<T>,
    timeout: Duration,
    warm_end: Instant,
    deadline: Option<Instant>,
    remaining: AtomicI64,
    recorder: Mutex<Recorder>,
}

impl<T: Transport> Shared<T> {
    /// Whether a request sent (or due) at `at` is part of the run: `Some(false)` during the
    /// warm-up, `Some(true)` when measured, `None` once the measurement is complete.
    fn admit(&self, at: Instant) -> Option<bool> {
        if at < self.warm_end {
            return Some(false);
        }
        match self.deadline {
            Some(deadline) => (at < deadline).then_some(true),
            None => (self.remaining.fetch_sub(1, Ordering::Relaxed) > 0).then_some(true),
        }
    }

    fn finish(&self, measured: bool, from: Instant, now: Instant, outcome: Result<(), ErrorKind>) {
        if measured {
            let at = now.saturating_duration_since(self.warm_end);
            let latency = now.saturating_duration_since(from);
            self.recorder
                .lock()
                .expect("recorder lock")
                .record(at, latency, outcome);
        }
    }

    /// One bounded attempt on `conn`, connecting first when there is none; a connection that
    /// broke or timed out is dropped.
    async fn attempt(&self, conn: &mut Option<T::Conn>) -> Result<(), ErrorKind> {
        let t = &*self.transport;
        let result = tokio::time::timeout(self.timeout, async {
            let c = match conn {
                Some(c) => c,
                None => conn.insert(t.connect().await?),
            };
            t.call(c).await
        })
        .await
        .unwrap_or(Err(ErrorKind::Timeout));
        if let Err(kind) = result
            && kind.breaks_connection()
        {
            *conn = None;
        }
        result
    }
}

/// Runs `plan` against `transport`, updating `progress` (hidden bars cost nothing).
pub async fn run<T: Transport>(transport: Arc<T>, plan: Plan, progress: ProgressBar) -> RunOutcome {
    let start = Instant::now();
    let warm_end = start + plan.warmup;
    let (deadline, remaining) = match plan.stop {
        StopAt::Duration(d) => (Some(warm_end + d), 0),
        StopAt::Requests(n) => (None, i64::try_from(n).unwrap_or(i64::MAX)),
    };
    let shared = Arc::new(Shared {
        transport,
        timeout: plan.timeout,
        warm_end,
        deadline,
        remaining: AtomicI64::new(remaining),
        recorder: Mutex::new(Recorder::new()),
    });
    let ticker = tokio::spawn(tick_progress(shared.clone(), plan.stop, progress.clone()));
    match plan.load {
        LoadShape::Closed { concurrency } => {
            tracing::debug!(concurrency, "closed loop starts");
            let clients: Vec<_> = (0..concurrency)
                .map(|_| tokio::spawn(closed_client(shared.clone())))
                .collect();
            for c in clients {
                let _ = c.await;
            }
        }
        LoadShape::Open {
            rate,
            connections,
            max_outstanding,
        } => {
            tracing::debug!(rate, connections, max_outstanding, "open loop starts");
            open_loop(&shared, start, rate, connections, max_outstanding).await;
        }
    }
    ticker.abort();
    progress.finish_and_clear();
    let recorder = std::mem::take(&mut *shared.recorder.lock().expect("recorder lock"));
    let duration = recorder.last_finish();
    RunOutcome {
        measured: recorder.finish(duration),
        duration,
    }
}

async fn closed_client<T: Transport>(shared: Arc<Shared<T>>) {
    let mut conn = None;
    while let Some(measured) = shared.admit(Instant::now()) {
        let sent = Instant::now();
        let outcome = shared.attempt(&mut conn).await;
        shared.finish(measured, sent, Instant::now(), outcome);
        if outcome == Err(ErrorKind::Connect) {
            tokio::time::sleep(CONNECT_RETRY_PAUSE).await;
        }
    }
}

/// Due time of the `i`th request of an open loop started at `start`.
pub fn due_time(start: Instant, rate: f64, i: u64) -> Instant {
    start + Duration::from_secs_f64(i as f64 / rate)
}

async fn open_loop<T: Transport>(
    shared: &Arc<Shared<T>>,
    start: Instant,
    rate: f64,
    connections: u64,
    max_outstanding: u64,
) {
    let in_flight = Arc::new(Semaphore::new(connections as usize));
    let outstanding = Arc::new(Semaphore::new(max_outstanding as usize));
    let pool: Arc<Mutex<Vec<T::Conn>>> = Arc::new(Mutex::new(Vec::new()));
    for i in 0.. {
        let due = due_time(start, rate, i);
        let Some(measured) = shared.admit(due) else {
            break;
        };
        tokio::time::sleep_until(due).await;
        let Ok(permit) = outstanding.clone().try_acquire_owned() else {
            shared.finish(measured, due, due, Err(ErrorKind::NotSent));
            continue;
        };
        let (shared, in_flight, pool) = (shared.clone(), in_flight.clone(), pool.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _slot = in_flight.acquire().await.expect("semaphore never closed");
            let mut conn = pool.lock().expect("pool lock").pop();
            let outcome = shared.attempt(&mut conn).await;
            if let Some(c) = conn {
                pool.lock().expect("pool lock").push(c);
            }
            shared.finish(measured, due, Instant::now(), outcome);
        });
    }
    // Every spawned request holds an outstanding permit until it is recorded.
    let _ = outstanding.acquire_many(max_outstanding as u32).await;
}

async fn tick_progress<T: Transport>(shared: Arc<Shared<T>>, stop: StopAt, bar: ProgressBar) {
    if bar.is_hidden() {
        return;
    }
    match stop {
        StopAt::Duration(d) => bar.set_length(d.as_secs().max(1)),
        StopAt::Requests(n) => bar.set_length(n),
    }
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now < shared.warm_end {
            bar.set_message(format!(
                "warming up, {:.0} s left",
                (shared.warm_end - now).as_secs_f64()
            ));
            continue;
        }
        let (ok, failed, p99) = {
            let r = shared.recorder.lock().expect("recorder lock");
            (r.ok(), r.failed(), r.p99_us())
        };
        let elapsed = (now - shared.warm_end).as_secs_f64();
        match stop {
            StopAt::Duration(_) => bar.set_position(elapsed as u64),
            StopAt::Requests(_) => bar.set_position(ok + failed),
        }
        bar.set_message(format!(
            "{:.0} req/s, p99 {:.2} ms, {failed} errors",
            ok as f64 / elapsed.max(1e-3),
            p99 as f64 / 1000.0
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target that answers after a fixed service time, one request at a time per
    /// connection; `connect_fails` makes every connect fail.
    struct Slow {
        service: Duration,
        connect_fails: bool,
    }

    impl Transport for Slow {
        type Conn = ();
        async fn connect(&self) -> Result<(), ErrorKind> {
            if self.connect_fails {
                Err(ErrorKind::Connect)
            } else {
                Ok(())
            }
        }
        async fn call(&self, _: &mut ()) -> Result<(), ErrorKind> {
            tokio::time::sleep(self.service).await;
            Ok(())
        }
    }

    const MS: Duration = Duration::from_millis(1);

    fn plan(load: LoadShape, stop: StopAt) -> Plan {
        Plan {
            load,
            warmup: Duration::ZERO,
            stop,
            timeout: Duration::from_secs(5),
        }
    }

    async fn go(service: Duration, plan: Plan) -> RunOutcome {
        let t = Arc::new(Slow {
            service,
            connect_fails: false,
        });
        run(t, plan, ProgressBar::hidden()).await
    }

    #[test]
    fn due_times_do_not_drift() {
        let start = Instant::now();
        assert_eq!(due_time(start, 1000.0, 0), start);
        assert_eq!(due_time(start, 1000.0, 1500) - start, MS * 1500);
        assert_eq!(due_time(start, 3.0, 3) - start, Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn closed_loop_sends_exactly_the_requests_asked() {
        let out = go(
            MS * 10,
            plan(LoadShape::Closed { concurrency: 4 }, StopAt::Requests(50)),
        )
        .await;
        assert_eq!(out.measured.ok, 50);
        assert!(out.measured.errors.is_empty());
        // 4 clients, 10 ms each: 50 requests take 13 rounds.
        assert_eq!(out.duration, MS * 130);
        assert!((out.measured.latency.p50 as i64 - 10_000).abs() < 20);
    }

    #[tokio::test(start_paused = true)]
    async fn warm_up_is_not_recorded() {
        let mut p = plan(
            LoadShape::Closed { concurrency: 1 },
            StopAt::Duration(MS * 100),
        );
        p.warmup = MS * 50;
        let out = go(MS * 10, p).await;
        // 100 ms of 10 ms requests after 50 ms of warm-up: 10 measured.
        assert_eq!(out.measured.ok, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_latency_counts_from_the_due_time() {
        // Plenty of connections: each request waits for nothing, latency = service time.
        let load = LoadShape::Open {
            rate: 1000.0,
            connections: 100,
            max_outstanding: 100,
        };
        let out = go(MS * 10, plan(load, StopAt::Requests(100))).await;
        assert_eq!(out.measured.ok, 100);
        assert!(
            out.measured.latency.max < 10_100,
            "{:?}",
            out.measured.latency
        );

        // One connection for 1000 req/s of 10 ms requests: requests queue behind it. Latency
        // from the due time shows the queueing (a latency from the actual send would show
        // 10 ms throughout: coordinated omission); past 20 outstanding, requests are not
        // sent and are counted, not dropped silently.
        let load = LoadShape::Open {
            rate: 1000.0,
            connections: 1,
            max_outstanding: 20,
        };
        let out = go(MS * 10, plan(load, StopAt::Requests(100))).await;
        let not_sent = out.measured.errors.get("not_sent").copied().unwrap_or(0);
        assert_eq!(out.measured.ok + not_sent, 100);
        assert!(not_sent > 50, "{not_sent}");
        assert!(
            out.measured.latency.p50 >= 100_000,
            "{:?}",
            out.measured.latency
        );
        assert!(
            out.measured.latency.max >= 180_000,
            "{:?}",
            out.measured.latency
        );
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_and_connect_failures_are_errors_by_kind() {
        let mut p = plan(LoadShape::Closed { concurrency: 2 }, StopAt::Requests(6));
        p.timeout = MS * 5;
        let out = go(MS * 50, p).await;
        assert_eq!(out.measured.errors["timeout"], 6);
        let t = Arc::new(Slow {
            service: MS,
            connect_fails: true,
        });
        let load = LoadShape::Open {
            rate: 100.0,
            connections: 2,
            max_outstanding: 4,
        };
        let out = run(t, plan(load, StopAt::Requests(5)), ProgressBar::hidden()).await;
        assert_eq!(out.measured.errors["connect"], 5);
        assert_eq!(out.measured.ok, 0);
    }
}
