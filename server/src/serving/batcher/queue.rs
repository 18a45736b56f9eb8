//! The batcher's pure synchronous core: a bounded queue of requests and the rule that turns
//! it into batches. No tokio, no clock: every call that depends on time is handed `now`, so
//! tests drive it with plain `Instant`s.
//!
//! Batch formation follows Triton's dynamic batcher:
//! - a request is admitted only while fewer than `max_queue_size` requests wait (a full queue
//!   is refused at once, never grown);
//! - a batch is taken as soon as the queued rows fill `max_batch_size` or reach the largest
//!   preferred batch size that fits;
//! - otherwise the oldest request may wait up to `max_queue_delay` for company, after which
//!   whatever is queued (up to `max_batch_size` rows) goes;
//! - requests stay in arrival order; a single request larger than `max_batch_size` runs alone.
//!
//! Concurrency: none here. The driver ([`super::Batcher`]) owns the queue behind one mutex
//! and only takes a batch when a compute slot is free, so batches grow while the model is
//! busy and stay small (low latency) while it is idle.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Dynamic batching settings, named as Triton's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchSettings {
    /// Most rows in one batch.
    pub max_batch_size: usize,
    /// Longest the oldest queued request waits for others before its batch goes anyway.
    /// Zero by default (Triton's default): a batch is whatever is queued when a compute slot
    /// frees, so closed-loop clients never wait for company that cannot come.
    pub max_queue_delay: Duration,
    /// Batch sizes (rows) the model runs best at; a batch of one of these goes at once.
    pub preferred_batch_sizes: Vec<usize>,
    /// Most requests waiting at once; more are refused (429 / RESOURCE_EXHAUSTED).
    pub max_queue_size: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            max_batch_size: 64,
            max_queue_delay: Duration::ZERO,
            preferred_batch_sizes: Vec::new(),
            max_queue_size: 1024,
        }
    }
}

/// Largest `MaxBatchSize` accepted.
pub const MAX_BATCH_SIZE: usize = 65_536;
/// Largest `MaxQueueSize` accepted.
pub const MAX_QUEUE_SIZE: usize = 1_000_000;
/// Longest `MaxQueueDelayMicroseconds` accepted (10 s).
pub const MAX_QUEUE_DELAY: Duration = Duration::from_secs(10);

impl BatchSettings {
    /// Checks the settings, naming the first bad field.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_BATCH_SIZE).contains(&self.max_batch_size) {
            return Err(format!(
                "MaxBatchSize {} must be between 1 and {MAX_BATCH_SIZE}",
                self.max_batch_size
            ));
        }
        if !(1..=MAX_QUEUE_SIZE).contains(&self.max_queue_size) {
            return Err(format!(
                "MaxQueueSize {} must be between 1 and {MAX_QUEUE_SIZE}",
                self.max_queue_size
            ));
        }
        if self.max_queue_delay > MAX_QUEUE_DELAY {
            return Err(format!(
                "MaxQueueDelayMicroseconds {} must be at most {} (every request would wait that long for a fuller batch)",
                self.max_queue_delay.as_micros(),
                MAX_QUEUE_DELAY.as_micros()
            ));
        }
        if let Some(p) = self
            .preferred_batch_sizes
            .iter()
            .find(|&&p| p == 0 || p > self.max_batch_size)
        {
            return Err(format!(
                "PreferredBatchSizes entry {p} must be between 1 and MaxBatchSize ({})",
                self.max_batch_size
            ));
        }
        Ok(())
    }
}

/// Why a request was not queued; the request comes back with it.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejected<T> {
    /// `max_queue_size` requests already wait.
    Full(T),
}

/// One queued request.
#[derive(Debug)]
pub struct Entry<T> {
    /// The caller's payload (inputs and reply channel in the driver).
    pub item: T,
    /// Rows it carries.
    pub rows: usize,
    /// When it was queued.
    pub enqueued: Instant,
}

/// A bounded FIFO of requests and the batch-formation rule.
#[derive(Debug)]
pub struct BatchQueue<T> {
    settings: BatchSettings,
    entries: VecDeque<Entry<T>>,
    rows: usize,
}

impl<T> BatchQueue<T> {
    /// An empty queue. `settings` should have passed [`BatchSettings::validate`].
    pub fn new(mut settings: BatchSettings) -> Self {
        settings.preferred_batch_sizes.sort_unstable();
        settings.preferred_batch_sizes.dedup();
        Self {
            settings,
            entries: VecDeque::new(),
            rows: 0,
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &BatchSettings {
        &self.settings
    }

    /// Requests waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Rows waiting.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Queues a request of `rows` rows, or refuses it at once when the queue is full.
    pub fn push(&mut self, item: T, rows: usize, now: Instant) -> Result<(), Rejected<T>> {
        if self.entries.len() >= self.settings.max_queue_size {
            return Err(Rejected::Full(item));
        }
        self.rows += rows;
        self.entries.push_back(Entry {
            item,
            rows,
            enqueued: now,
        });
        Ok(())
    }

    /// Drops every request for which `keep` is false (callers that have gone away);
    /// returns how many were dropped.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| keep(&e.item));
        self.rows = self.entries.iter().map(|e| e.rows).sum();
        before - self.entries.len()
    }

    /// When the oldest request's wait runs out (`None` when empty).
    pub fn deadline(&self) -> Option<Instant> {
        self.entries
            .front()
            .map(|e| e.enqueued + self.settings.max_queue_delay)
    }

    /// The batch to run now, if the rule says one is ready; `None` means wait until
    /// [`deadline`](Self::deadline) or the next push.
    pub fn take_batch(&mut self, now: Instant) -> Option<Vec<Entry<T>>> {
        let oldest = self.entries.front()?;
        let max = self.settings.max_batch_size;
        let expired = now >= oldest.enqueued + self.settings.max_queue_delay;
        let limit = if self.rows >= max {
            max
        } else if let Some(&p) = self
            .settings
            .preferred_batch_sizes
            .iter()
            .rev()
            .find(|&&p| p <= self.rows && self.prefix_fits(p))
        {
            p
        } else if expired {
            max
        } else {
            return None;
        };
        Some(self.take_prefix(limit))
    }

    /// True when some prefix of the queue holds exactly `rows` rows.
    fn prefix_fits(&self, rows: usize) -> bool {
        let mut sum = 0;
        for e in &self.entries {
            sum += e.rows;
            if sum >= rows {
                return sum == rows;
            }
        }
        false
    }

    /// Takes requests from the front while they fit in `limit` rows (at least one).
    fn take_prefix(&mut self, limit: usize) -> Vec<Entry<T>> {
        let mut batch = Vec::new();
        let mut rows = 0;
        while let Some(e) = self.entries.front() {
            if !batch.is_empty() && rows + e.rows > limit {
                break;
            }
            rows += e.rows;
            batch.push(self.entries.pop_front().expect("front exists"));
            if rows >= limit {
                break;
            }
        }
        self.rows -= rows;
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max: usize, delay_us: u64, preferred: &[usize], queue: usize) -> BatchSettings {
        BatchSettings {
            max_batch_size: max,
            max_queue_delay: Duration::from_micros(delay_us),
            preferred_batch_sizes: preferred.to_vec(),
            max_queue_size: queue,
        }
    }

    fn ids(batch: &[Entry<u32>]) -> Vec<u32> {
        batch.iter().map(|e| e.item).collect()
    }

    #[test]
    fn waits_for_the_delay_then_takes_what_is_queued() {
        let t0 = Instant::now();
        let mut q = BatchQueue::new(settings(8, 1000, &[], 100));
        q.push(1, 1, t0).unwrap();
        q.push(2, 2, t0 + Duration::from_micros(300)).unwrap();
        assert!(q.take_batch(t0 + Duration::from_micros(999)).is_none());
        assert_eq!(q.deadline(), Some(t0 + Duration::from_micros(1000)));
        let batch = q.take_batch(t0 + Duration::from_micros(1000)).unwrap();
        assert_eq!(ids(&batch), [1, 2]);
        assert!(q.is_empty());
        assert_eq!(q.rows(), 0);
        assert_eq!(q.deadline(), None);
    }

    #[test]
    fn a_full_batch_goes_at_once_and_respects_max_rows() {
        let t0 = Instant::now();
        let mut q = BatchQueue::new(settings(4, 1_000_000, &[], 100));
        for (i, rows) in [(1, 2), (2, 1), (3, 2), (4, 1)] {
            q.push(i, rows, t0).unwrap();
        }
        // 6 rows queued: [1,2] make 3 rows, adding 3 (2 rows) would exceed 4.
        let batch = q.take_batch(t0).unwrap();
        assert_eq!(ids(&batch), [1, 2]);
        assert_eq!(q.rows(), 3);
        assert!(q.take_batch(t0).is_none(), "3 rows < 4 and no deadline yet");
    }

    #[test]
    fn an_oversized_request_runs_alone() {
        let t0 = Instant::now();
        let mut q = BatchQueue::new(settings(4, 1000, &[], 100));
        q.push(1, 10, t0).unwrap();
        q.push(2, 1, t0).unwrap();
        assert_eq!(ids(&q.take_batch(t0).unwrap()), [1]);
        assert_eq!(q.rows(), 1);
    }

    #[test]
    fn preferred_sizes_go_before_the_deadline() {
        let t0 = Instant::now();
        let mut q = BatchQueue::new(settings(16, 1_000_000, &[2, 4], 100));
        q.push(1, 1, t0).unwrap();
        assert!(q.take_batch(t0).is_none());
        q.push(2, 1, t0).unwrap();
        q.push(3, 1, t0).unwrap();
        // 3 rows: the largest preferred size that a prefix fills exactly is 2.
        assert_eq!(ids(&q.take_batch(t0).unwrap()), [1, 2]);
        q.push(4, 3, t0).unwrap();
        // rows 1 + 3 = 4 is preferred.
        assert_eq!(ids(&q.take_batch(t0).unwrap()), [3, 4]);
    }

    #[test]
    fn zero_delay_dispatches_immediately() {
        let t0 = Instant::now();
        let mut q = BatchQueue::new(settings(8, 0, &[], 100));
        q.push(1, 1, t0).unwrap();
        assert_eq!(ids(&q.take_batch(t0).unwrap()), [1]);
    }

    #[test]
    fn a_full_queue_refuses_and_returns_the_item() {
        let t0 = Instant::now();
        let mut q = BatchQueue::new(settings(8, 1000, &[], 2));
        q.push(1, 1, t0).unwrap();
        q.push(2, 1, t0).unwrap();
        assert_eq!(q.push(3, 1, t0), Err(Rejected::Full(3)));
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn retain_drops_abandoned_requests_and_recounts_rows() {
        let t0 = Instant::now();
        let mut q = BatchQueue::new(settings(8, 1000, &[], 10));
        for i in 1..=4u32 {
            q.push(i, i as usize, t0 + Duration::from_micros(u64::from(i)))
                .unwrap();
        }
        assert_eq!(q.retain(|&i| i % 2 == 0), 2);
        assert_eq!(q.rows(), 6);
        assert_eq!(q.deadline(), Some(t0 + Duration::from_micros(1002)));
    }

    #[test]
    fn validate_names_the_bad_field() {
        assert!(
            settings(0, 0, &[], 1)
                .validate()
                .unwrap_err()
                .contains("MaxBatchSize")
        );
        assert!(
            settings(4, 0, &[], 0)
                .validate()
                .unwrap_err()
                .contains("MaxQueueSize")
        );
        assert!(
            settings(4, 0, &[8], 1)
                .validate()
                .unwrap_err()
                .contains("PreferredBatchSizes")
        );
        settings(4, 0, &[2, 4], 1).validate().unwrap();
        let mut s = settings(4, 0, &[], 1);
        s.max_queue_delay = Duration::from_micros(1 << 62);
        let err = s.validate().unwrap_err();
        assert!(err.contains("MaxQueueDelayMicroseconds"), "{err}");
        s.max_queue_delay = MAX_QUEUE_DELAY;
        s.validate().unwrap();
        assert!(
            settings(1 << 40, 0, &[], 1)
                .validate()
                .unwrap_err()
                .contains("MaxBatchSize")
        );
    }
}
