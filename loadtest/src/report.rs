//! The report of one run: a stable JSON document (`schema` 1, documented field by field below
//! and in the README) and the table printed at the end of a run.
//!
//! Latencies are microseconds. For a closed loop they run from the moment a request was sent;
//! for an open loop from the moment it was *due* on the schedule, so time spent waiting for a
//! free connection counts (no coordinated omission). Only successful requests have latencies.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{LoadtestError, Result};

/// Version of the JSON layout; bumped only when a field changes meaning or disappears.
pub const SCHEMA: u32 = 1;

/// One run's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// Layout version ([`SCHEMA`]).
    pub schema: u32,
    /// Name of the run in tables and charts.
    pub label: String,
    /// Server URL the load went to.
    pub target: String,
    /// Endpoint or model name.
    pub model: String,
    /// `sagemaker`, `v2-json`, `v2-binary` or `v2-grpc`.
    pub protocol: String,
    /// `closed` (fixed concurrency) or `open` (fixed arrival rate).
    pub mode: String,
    /// Closed loop: clients, each sending its next request when the previous one answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u64>,
    /// Open loop: requests per second on the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Open loop: requests in flight at once (HTTP connections, gRPC streams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<u64>,
    /// Open loop: most requests waiting or in flight; more are counted as `not_sent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_outstanding: Option<u64>,
    /// Seconds of warm-up before the measurement (not recorded).
    pub warmup_s: f64,
    /// Seconds measured: from the end of the warm-up until the last measured request finished.
    pub duration_s: f64,
    /// Measured requests (successes plus failures of every kind).
    pub requests: u64,
    /// Successful requests.
    pub ok: u64,
    /// Rows (batch size) per request.
    pub rows_per_request: u64,
    /// Successful requests per second (`ok / duration_s`).
    pub throughput_rps: f64,
    /// Successful rows per second.
    pub throughput_rows_per_s: f64,
    /// Latency of successful requests, microseconds.
    pub latency_us: LatencySummary,
    /// Failed requests by kind: `connect`, `timeout`, `connection_broken`, `http_4xx`,
    /// `http_5xx`, `grpc_<code>`, `body_mismatch`, `not_sent`.
    pub errors: BTreeMap<String, u64>,
    /// One point per second of the measurement, by finish time.
    pub timeline: Vec<TimelinePoint>,
    /// HDR percentile curve of the successful latencies.
    pub percentile_curve: Vec<CurvePoint>,
    /// When the run started, seconds since the Unix epoch.
    pub started_unix_s: u64,
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencySummary {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Highest.
    pub max: u64,
    /// Lowest.
    pub min: u64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// One second of the measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelinePoint {
    /// Second since the measurement start (0, 1, ...).
    pub t_s: u64,
    /// Successful requests that finished in this second (its throughput).
    pub ok: u64,
    /// Failed requests that finished in this second.
    pub errors: u64,
    /// Median latency of this second's successes (0 when none).
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Highest.
    pub max_us: u64,
}

/// A point of the percentile curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurvePoint {
    /// Percentile, 0 to 100.
    pub percentile: f64,
    /// Latency at or below which that share of requests finished.
    pub latency_us: u64,
}

impl Report {
    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("a report always serializes");
        std::fs::write(path, text + "\n").map_err(|source| LoadtestError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads a report written by [`Report::write_json`].
    pub fn read_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadtestError::Io {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| LoadtestError::Report {
            path: path.to_owned(),
            source,
        })
    }

    /// Load shape in words: `closed c=8` or `open 500 req/s`.
    pub fn load_shape(&self) -> String {
        match (self.concurrency, self.rate) {
            (Some(c), _) => format!("closed c={c}"),
            (_, Some(r)) => format!("open {r} req/s"),
            _ => self.mode.clone(),
        }
    }

    /// The summary table printed at the end of a run.
    pub fn table(&self) -> String {
        let ms = |us: u64| format!("{:.3} ms", us as f64 / 1000.0);
        let l = &self.latency_us;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "{} — {} {} → {} ({})",
            self.label,
            self.protocol,
            self.model,
            self.target,
            self.load_shape()
        );
        let _ = writeln!(
            t,
            "  duration     {:.2} s (warm-up {:.1} s not counted)",
            self.duration_s, self.warmup_s
        );
        let _ = writeln!(
            t,
            "  requests     {} ({} ok, {} failed)",
            self.requests,
            self.ok,
            self.requests - self.ok
        );
        let _ = writeln!(
            t,
            "  throughput   {:.1} req/s, {:.1} rows/s",
            self.throughput_rps, self.throughput_rows_per_s
        );
        let _ = writeln!(
            t,
            "  latency      p50 {}   p90 {}   p99 {}   p99.9 {}",
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.p999)
        );
        let _ = writeln!(
            t,
            "               max {}   mean {:.3} ms   min {}",
            ms(l.max),
            l.mean / 1000.0,
            ms(l.min)
        );
        if self.errors.is_empty() {
            let _ = writeln!(t, "  errors       none");
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(t, "  errors       {}", list.join(", "));
        }
        t
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(label: &str, p50: u64) -> Report {
        Report {
            schema: SCHEMA,
            label: label.into(),
            target: "http://127.0.0.1:8080".into(),
            model: "demo".into(),
            protocol: "v2-json".into(),
            mode: "closed".into(),
            concurrency: Some(8),
            rate: None,
            connections: None,
            max_outstanding: None,
            warmup_s: 1.0,
            duration_s: 2.0,
            requests: 101,
            ok: 100,
            rows_per_request: 2,
            throughput_rps: 50.0,
            throughput_rows_per_s: 100.0,
            latency_us: LatencySummary {
                p50,
                p90: p50 * 2,
                p99: p50 * 3,
                p999: p50 * 4,
                max: p50 * 5,
                min: 1,
                mean: p50 as f64 * 1.1,
            },
            errors: [("http_5xx".to_string(), 1)].into(),
            timeline: vec![
                TimelinePoint {
                    t_s: 0,
                    ok: 50,
                    errors: 1,
                    p50_us: p50,
                    p90_us: p50,
                    p99_us: p50 * 3,
                    max_us: p50 * 5,
                },
                TimelinePoint {
                    t_s: 1,
                    ok: 50,
                    errors: 0,
                    p50_us: p50,
                    p90_us: p50,
                    p99_us: p50 * 2,
                    max_us: p50 * 3,
                },
            ],
            percentile_curve: vec![
                CurvePoint {
                    percentile: 0.0,
                    latency_us: 1,
                },
                CurvePoint {
                    percentile: 50.0,
                    latency_us: p50,
                },
                CurvePoint {
                    percentile: 99.0,
                    latency_us: p50 * 3,
                },
                CurvePoint {
                    percentile: 100.0,
                    latency_us: p50 * 5,
                },
            ],
            started_unix_s: 1_700_000_000,
        }
    }

    #[test]
    fn json_round_trip_keeps_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let report = sample("a", 1000);
        report.write_json(&path).unwrap();
        assert_eq!(Report::read_json(&path).unwrap(), report);
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for field in [
            "label",
            "target",
            "protocol",
            "mode",
            "concurrency",
            "duration_s",
            "requests",
            "throughput_rps",
            "latency_us",
            "errors",
            "timeline",
            "percentile_curve",
        ] {
            assert!(doc.get(field).is_some(), "{field}");
        }
        assert!(doc.get("rate").is_none(), "absent load fields are left out");
        for p in ["p50", "p90", "p99", "p999", "max", "mean"] {
            assert!(doc["latency_us"].get(p).is_some(), "{p}");
        }
        std::fs::write(&path, "{\"label\": 1}").unwrap();
        assert!(
            Report::read_json(&path)
                .unwrap_err()
                .to_string()
                .contains("not a load-test report")
        );
    }

    #[test]
    fn the_table_names_throughput_percentiles_and_errors() {
        let t = sample("a", 1500).table();
        assert!(t.contains("50.0 req/s, 100.0 rows/s"), "{t}");
        assert!(t.contains("p99 4.500 ms"), "{t}");
        assert!(t.contains("http_5xx 1"), "{t}");
    }
}
