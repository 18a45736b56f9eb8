//! Records outcomes into HDR histograms: one for the whole measurement, one per second for
//! the time series. Pure and synchronous (offsets from the measurement start, no clock), so
//! the maths is unit-tested; the runner shares one behind a mutex (a few hundred nanoseconds
//! per request, far below a network round trip).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::report::{CurvePoint, LatencySummary, TimelinePoint};

/// Why one request failed. Each kind is a key of the report's `errors` map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No connection could be made (refused, unreachable, DNS).
    Connect,
    /// No answer within `--timeout` (connection included).
    Timeout,
    /// The connection broke while the request was in flight.
    Io,
    /// An HTTP answer with a non-2xx status; the key is its class (`http_4xx`, `http_5xx`).
    HttpStatus(u16),
    /// A gRPC status other than OK; the key is the code (`grpc_unavailable`, ...).
    Grpc(tonic::Code),
    /// A 2xx answer whose body lacked the expected text.
    BodyMismatch,
    /// Open loop only: the request was due but `--max-outstanding` were already waiting or in
    /// flight, so it was not sent.
    NotSent,
}

impl ErrorKind {
    /// The report key.
    pub fn key(self) -> String {
        match self {
            Self::Connect => "connect".into(),
            Self::Timeout => "timeout".into(),
            Self::Io => "connection_broken".into(),
            Self::HttpStatus(s) => format!("http_{}xx", s / 100),
            Self::Grpc(code) => format!("grpc_{}", grpc_code_name(code)),
            Self::BodyMismatch => "body_mismatch".into(),
            Self::NotSent => "not_sent".into(),
        }
    }

    /// Whether the connection that saw this error must be dropped and made anew.
    pub fn breaks_connection(self) -> bool {
        matches!(self, Self::Connect | Self::Timeout | Self::Io)
    }
}

fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}

/// Highest latency the histograms hold (one hour); longer ones are recorded as this.
const MAX_US: u64 = 3_600_000_000;

fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, sigfig).expect("constant histogram bounds are valid")
}

/// Latency in whole microseconds, at least 1 (the histograms' lowest value).
pub fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, MAX_US)
}

/// The measurement's histograms and counters.
#[derive(Debug)]
pub struct Recorder {
    all: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    second: Histogram<u64>,
    second_index: u64,
    second_ok: u64,
    second_errors: u64,
    timeline: Vec<TimelinePoint>,
    last: Duration,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self {
            all: histogram(3),
            ok: 0,
            errors: BTreeMap::new(),
            second: histogram(2),
            second_index: 0,
            second_ok: 0,
            second_errors: 0,
            timeline: Vec::new(),
            last: Duration::ZERO,
        }
    }

    /// Records one measured request that finished `at` (since the measurement start) after
    /// `latency`. Successful latencies go to the histograms; failures are counted by kind.
    /// The per-second series buckets by finish time; a report arriving late (finish time in
    /// a second already closed) counts in the current second.
    pub fn record(&mut self, at: Duration, latency: Duration, outcome: Result<(), ErrorKind>) {
        self.roll_to(at.as_secs());
        self.last = self.last.max(at);
        match outcome {
            Ok(()) => {
                let us = micros(latency);
                self.all.saturating_record(us);
                self.second.saturating_record(us);
                self.ok += 1;
                self.second_ok += 1;
            }
            Err(kind) => {
                *self.errors.entry(kind.key()).or_default() += 1;
                self.second_errors += 1;
            }
        }
    }

    fn roll_to(&mut self, second: u64) {
        while self.second_index < second {
            self.close_second();
        }
    }

    fn close_second(&mut self) {
        let h = &self.second;
        let q = |p: f64| {
            if h.is_empty() {
                0
            } else {
                h.value_at_quantile(p)
            }
        };
        self.timeline.push(TimelinePoint {
            t_s: self.second_index,
            ok: self.second_ok,
            errors: self.second_errors,
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            max_us: if h.is_empty() { 0 } else { h.max() },
        });
        self.second.reset();
        self.second_ok = 0;
        self.second_errors = 0;
        self.second_index += 1;
    }

    /// Successful requests so far.
    pub fn ok(&self) -> u64 {
        self.ok
    }

    /// Failed requests so far.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The p99 so far, in microseconds (0 before the first success).
    pub fn p99_us(&self) -> u64 {
        if self.all.is_empty() {
            0
        } else {
            self.all.value_at_quantile(0.99)
        }
    }

    /// Time of the last finished request since the measurement start.
    pub fn last_finish(&self) -> Duration {
        self.last
    }

    /// Closes the series: every second up to `end` (a partial last second included when it
    /// saw requests).
    pub fn finish(mut self, end: Duration) -> Measured {
        let whole = end.as_secs();
        self.roll_to(whole);
        if self.second_ok + self.second_errors > 0 {
            self.close_second();
        }
        Measured {
            latency: summary(&self.all),
            curve: curve(&self.all),
            ok: self.ok,
            errors: self.errors,
            timeline: self.timeline,
        }
    }
}

/// What a finished [`Recorder`] holds.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Successful latencies summarized.
    pub latency: LatencySummary,
    /// The percentile curve.
    pub curve: Vec<CurvePoint>,
    /// Successful requests.
    pub ok: u64,
    /// Failures by kind.
    pub errors: BTreeMap<String, u64>,
    /// Per-second series.
    pub timeline: Vec<TimelinePoint>,
}

/// p50/p90/p99/p99.9, max, mean and min of `h` (all zero when empty).
pub fn summary(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    LatencySummary {
        p50: h.value_at_quantile(0.5),
        p90: h.value_at_quantile(0.9),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        min: h.min(),
        mean: (h.mean() * 10.0).round() / 10.0,
    }
}

/// The HDR percentile curve: 5 points per halving of the distance to 100%, as HdrHistogram's
/// percentile distribution output, ending at the maximum.
pub fn curve(h: &Histogram<u64>) -> Vec<CurvePoint> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points: Vec<CurvePoint> = h
        .iter_quantiles(5)
        .map(|v| CurvePoint {
            percentile: (v.quantile_iterated_to() * 100.0 * 1e6).round() / 1e6,
            latency_us: h.highest_equivalent(v.value_iterated_to()),
        })
        .collect();
    points.dedup_by(|b, a| a.percentile == b.percentile);
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut r = Recorder::new();
        // 1..=1000 ms, one each: p50 = 500 ms, p99 = 990 ms, max = 1000 ms.
        for i in 1..=1000u64 {
            r.record(Duration::from_millis(i), MS * i as u32, Ok(()));
        }
        let m = r.finish(Duration::from_secs(1));
        let close = |got: u64, want: u64| {
            let err = (got as f64 - want as f64).abs() / want as f64;
            assert!(err < 0.001, "{got} vs {want}");
        };
        close(m.latency.p50, 500_000);
        close(m.latency.p90, 900_000);
        close(m.latency.p99, 990_000);
        close(m.latency.p999, 999_000);
        close(m.latency.max, 1_000_000);
        close(m.latency.mean as u64, 500_500);
        assert!(m.latency.p50 <= m.latency.p99 && m.latency.p99 <= m.latency.max);
        // The curve rises monotonically from p0 to p100 and ends at the max.
        assert_eq!(m.curve[0].percentile, 0.0);
        let last = m.curve.last().unwrap();
        assert_eq!(last.percentile, 100.0);
        close(last.latency_us, 1_000_000);
        assert!(
            m.curve
                .windows(2)
                .all(|w| w[0].latency_us <= w[1].latency_us && w[0].percentile < w[1].percentile)
        );
    }

    #[test]
    fn errors_are_counted_by_kind_and_not_in_the_latencies() {
        let mut r = Recorder::new();
        r.record(MS, MS, Ok(()));
        r.record(MS, MS * 1000, Err(ErrorKind::Timeout));
        r.record(MS, MS, Err(ErrorKind::HttpStatus(503)));
        r.record(MS, MS, Err(ErrorKind::HttpStatus(500)));
        r.record(MS, MS, Err(ErrorKind::Grpc(tonic::Code::Unavailable)));
        r.record(MS, MS, Err(ErrorKind::NotSent));
        assert_eq!((r.ok(), r.failed()), (1, 5));
        let m = r.finish(MS * 2);
        assert_eq!(m.errors["http_5xx"], 2);
        assert_eq!(m.errors["timeout"], 1);
        assert_eq!(m.errors["grpc_unavailable"], 1);
        assert_eq!(m.errors["not_sent"], 1);
        assert_eq!(m.latency.max, 1000, "the timeout's second is not a latency");
    }

    #[test]
    fn the_timeline_has_one_point_per_second_including_quiet_ones() {
        let mut r = Recorder::new();
        for _ in 0..10 {
            r.record(MS * 100, MS * 2, Ok(()));
        }
        r.record(MS * 2500, MS * 50, Ok(()));
        r.record(MS * 2600, MS, Err(ErrorKind::Connect));
        let m = r.finish(MS * 2700);
        let t = &m.timeline;
        assert_eq!(t.len(), 3);
        assert_eq!((t[0].t_s, t[0].ok, t[0].errors), (0, 10, 0));
        assert_eq!(
            (t[1].ok, t[1].p99_us),
            (0, 0),
            "a quiet second is a zero point"
        );
        assert_eq!((t[2].ok, t[2].errors), (1, 1));
        assert!((t[2].max_us as i64 - 50_000).abs() < 500);
        assert!((t[0].p50_us as i64 - 2000).abs() < 20);
    }
}
