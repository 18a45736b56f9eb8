//! Per model name and version inference statistics for Triton's ModelStatistics: real counts
//! (successes, failures, rows, executions, total time, last inference). Queue and
//! compute-phase times are not measured separately: the whole request time is reported as
//! compute_infer, and queue/compute_input/compute_output count every success with zero time
//! (perf_analyzer requires the phase counts to agree).
//!
//! Concurrency: one mutex around a small map, held only to add to or copy counters. The map
//! is keyed by name, then version, so a request's lookup borrows them (no key allocated).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Counters of one model name and version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModelStats {
    /// Model name as asked.
    pub name: String,
    /// Version that answered.
    pub version: String,
    /// Milliseconds since the epoch of the last inference (0: none yet).
    pub last_inference_ms: u64,
    /// Rows inferred.
    pub inference_count: u64,
    /// Model executions (one per request: no batching across requests yet).
    pub execution_count: u64,
    /// Successful requests and their total nanoseconds.
    pub success: (u64, u64),
    /// Failed requests and their total nanoseconds.
    pub fail: (u64, u64),
}

/// All counters.
#[derive(Debug, Default)]
pub struct Stats {
    by_model: Mutex<HashMap<String, HashMap<String, ModelStats>>>,
}

impl Stats {
    /// Adds one request: `rows` is `None` for a failure.
    pub fn record(&self, name: &str, version: &str, rows: Option<usize>, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let add = |entry: &mut ModelStats| match rows {
            Some(rows) => {
                entry.success.0 += 1;
                entry.success.1 += ns;
                entry.inference_count += rows as u64;
                entry.execution_count += 1;
                entry.last_inference_ms = now;
            }
            None => {
                entry.fail.0 += 1;
                entry.fail.1 += ns;
            }
        };
        let mut map = self.by_model.lock().expect("stats lock");
        // Found by borrowed name and version; only a first request allocates its keys.
        if let Some(entry) = map.get_mut(name).and_then(|v| v.get_mut(version)) {
            add(entry);
            return;
        }
        let mut stats = ModelStats {
            name: name.to_owned(),
            version: version.to_owned(),
            ..ModelStats::default()
        };
        add(&mut stats);
        map.entry(name.to_owned())
            .or_default()
            .insert(version.to_owned(), stats);
    }

    /// Counters of one name and version (zeros when never used).
    pub fn get(&self, name: &str, version: &str) -> ModelStats {
        self.by_model
            .lock()
            .expect("stats lock")
            .get(name)
            .and_then(|versions| versions.get(version))
            .cloned()
            .unwrap_or_else(|| ModelStats {
                name: name.to_owned(),
                version: version.to_owned(),
                ..ModelStats::default()
            })
    }

    /// Every name and version used so far, sorted.
    pub fn all(&self) -> Vec<ModelStats> {
        let mut all: Vec<ModelStats> = self
            .by_model
            .lock()
            .expect("stats lock")
            .values()
            .flat_map(HashMap::values)
            .cloned()
            .collect();
        all.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rows_and_failures() {
        let s = Stats::default();
        s.record("m", "1", Some(3), Duration::from_nanos(10));
        s.record("m", "1", None, Duration::from_nanos(5));
        let m = s.get("m", "1");
        assert_eq!((m.inference_count, m.execution_count), (3, 1));
        assert_eq!((m.success, m.fail), ((1, 10), (1, 5)));
        assert_eq!(s.get("m", "2").inference_count, 0);
        assert_eq!(s.all().len(), 1);
        // Versions of one name, and names, are counted apart and listed sorted.
        s.record("m", "2", Some(2), Duration::from_nanos(7));
        s.record("a", "1", Some(1), Duration::from_nanos(1));
        let all: Vec<_> = s
            .all()
            .into_iter()
            .map(|m| (m.name, m.version, m.inference_count))
            .collect();
        let want = [("a", "1", 1), ("m", "1", 3), ("m", "2", 2)]
            .map(|(n, v, c)| (n.to_owned(), v.to_owned(), c));
        assert_eq!(all, want);
    }
}
