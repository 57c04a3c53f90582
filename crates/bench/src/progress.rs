//! The live progress line: once per second on stderr, the throughput of the last second and
//! the p99 latency measured so far.
//!
//! Connections count replies into one relaxed atomic once per read (not per reply) and fold
//! their recent latencies into the shared histogram about once per second, so the line costs
//! the request path nearly nothing. The p99 shown lags by up to a second for that reason; the
//! final report is exact.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::report::{merge_histogram, new_histogram};

/// Counters shared by the connections and the progress printer.
#[derive(Debug)]
pub struct Progress {
    replies: AtomicU64,
    latency_us: Mutex<Histogram<u64>>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            replies: AtomicU64::new(0),
            latency_us: Mutex::new(new_histogram()),
        }
    }
}

impl Progress {
    /// Counts `n` replies (any phase).
    pub fn add_replies(&self, n: u64) {
        self.replies.fetch_add(n, Relaxed);
    }

    /// Adds measured latencies.
    pub fn add_latencies(&self, latencies: &Histogram<u64>) {
        let mut shared = self
            .latency_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        merge_histogram(&mut shared, latencies);
    }

    /// Prints a progress line every second, counting from `start`; lines before
    /// `measure_start` are marked as warm-up. Runs until the task is dropped.
    pub async fn print_every_second(&self, start: Instant, measure_start: Instant) {
        let mut ticks = tokio::time::interval_at(
            tokio::time::Instant::from_std(start + Duration::from_secs(1)),
            Duration::from_secs(1),
        );
        let (mut last_replies, mut last_at) = (self.replies.load(Relaxed), start);
        loop {
            ticks.tick().await;
            let now = Instant::now();
            let replies = self.replies.load(Relaxed);
            let secs = now.duration_since(last_at).as_secs_f64().max(1e-9);
            let rate = (replies - last_replies) as f64 / secs;
            (last_replies, last_at) = (replies, now);
            let p99 = {
                let latency = self
                    .latency_us
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                (!latency.is_empty()).then(|| latency.value_at_quantile(0.99))
            };
            eprintln!(
                "{}",
                line(now.duration_since(start), rate, p99, now < measure_start)
            );
        }
    }
}

/// Formats one progress line.
fn line(elapsed: Duration, ops_per_sec: f64, p99_us: Option<u64>, warmup: bool) -> String {
    let p99 = p99_us.map_or_else(|| "-".to_owned(), |us| format!("{us} us"));
    format!(
        "[{:>4}s] {:>10.0} ops/s  p99 so far {p99}{}",
        elapsed.as_secs_f64().round(),
        ops_per_sec,
        if warmup { "  (warm-up)" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_show_rate_and_p99() {
        assert_eq!(
            line(Duration::from_millis(3_010), 1234.4, Some(512), false),
            "[   3s]       1234 ops/s  p99 so far 512 us"
        );
        assert_eq!(
            line(Duration::from_secs(1), 10.0, None, true),
            "[   1s]         10 ops/s  p99 so far -  (warm-up)"
        );
    }

    #[test]
    fn latencies_accumulate() {
        let progress = Progress::default();
        let mut recent = new_histogram();
        recent.saturating_record(100);
        progress.add_latencies(&recent);
        progress.add_latencies(&recent);
        progress.add_replies(5);
        assert_eq!(progress.latency_us.lock().expect("not poisoned").len(), 2);
        assert_eq!(progress.replies.load(Relaxed), 5);
    }
}
