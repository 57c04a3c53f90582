//! A replica's lag in time: how long after the primary made a change the replica applied it.
//!
//! Every record of the replication stream carries the primary's wall-clock time of the change
//! (`made_at_us`). When a replica has applied a batch, it reads its own clock once and records
//! `now - made_at_us` for each record of the batch. The two clocks are different machines' in
//! production, so the figure is only as good as their synchronisation (NTP keeps a LAN
//! within a millisecond or so); on one machine it is exact.
//!
//! The windows are log-linear histograms ([`Histogram`], about 1.6% resolution), kept here
//! rather than with `hdrhistogram` so that the server crate needs no new dependency.
//!
//! Two views:
//! - `INFO replication` shows the last lag and the p50, p99 and max of the changes applied in
//!   the last 10 to 20 s: two 10 s windows, the current one and the one before, rotated as time
//!   passes. An idle replica records nothing, so an idle stretch doesn't dilute the figures.
//! - `/metrics` has `ringcache_replication_lag_seconds`, a histogram with fixed buckets
//!   counting every change since the start, for `histogram_quantile` over any range.

use std::time::{Duration, Instant};

/// Upper bounds of the Prometheus buckets, in microseconds (0.25 ms to 10 s; fine around
/// the 1-25 ms where a healthy replica's p99 lies).
pub const BUCKETS_US: [u64; 18] = [
    250, 500, 1_000, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Sub-buckets per power of two: values below `2^SUB_BITS` are exact, larger ones fall in
/// buckets `1/2^SUB_BITS` (1.6%) of their magnitude wide.
const SUB_BITS: u32 = 6;
/// Values are counted up to `2^MAX_BITS - 1` µs (19 hours); larger ones as that.
const MAX_BITS: u32 = 36;

/// A log-linear histogram of microseconds: HdrHistogram's layout with 64 sub-buckets per
/// power of two (16 KB).
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; Self::index((1 << MAX_BITS) - 1) + 1],
            total: 0,
            max: 0,
        }
    }
}

impl Histogram {
    /// The bucket of `v`: exact below `2^SUB_BITS`; above, `SUB_BITS` bits after the leading
    /// one select a sub-bucket of the value's power of two.
    fn index(v: u64) -> usize {
        let sub = 1u64 << SUB_BITS;
        if v < sub {
            return v as usize;
        }
        let exp = 63 - v.leading_zeros(); // >= SUB_BITS
        let mantissa = v >> (exp - SUB_BITS); // in [sub, 2 * sub)
        ((u64::from(exp - SUB_BITS) + 1) * sub + (mantissa - sub)) as usize
    }

    /// The largest value in bucket `i`.
    fn highest(i: usize) -> u64 {
        let sub = 1u64 << SUB_BITS;
        let i = i as u64;
        if i < sub {
            return i;
        }
        let octave = i >> SUB_BITS; // >= 1
        let exp = octave - 1 + u64::from(SUB_BITS);
        let width = 1u64 << (exp - u64::from(SUB_BITS));
        (sub + (i & (sub - 1))) * width + width - 1
    }

    /// Counts one value.
    pub fn record(&mut self, v: u64) {
        let v = v.min((1 << MAX_BITS) - 1);
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    /// Values counted.
    pub fn len(&self) -> u64 {
        self.total
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The largest value counted (exact); 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0 to 1): the top of its bucket, at most the maximum; 0 when
    /// empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::highest(i).min(self.max);
            }
        }
        self.max
    }

    /// Adds `other`'s counts to this one.
    pub fn add(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Forgets every value.
    pub fn reset(&mut self) {
        self.counts.fill(0);
        self.total = 0;
        self.max = 0;
    }
}

/// Lag figures over the recent window, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LagSummary {
    /// The lag of the last change applied.
    pub last_us: u64,
    /// Median over the window.
    pub p50_us: u64,
    /// 99th percentile over the window.
    pub p99_us: u64,
    /// Largest over the window.
    pub max_us: u64,
    /// Changes in the window.
    pub samples: u64,
}

/// A replica's lag statistics.
#[derive(Debug)]
pub struct ReplicaLag {
    window: Duration,
    current: Histogram,
    previous: Histogram,
    /// When `current` began.
    current_since: Instant,
    last_us: u64,
    /// Per bucket of [`BUCKETS_US`] (and one past the last), changes since the start.
    buckets: [u64; BUCKETS_US.len() + 1],
    sum_us: u64,
    count: u64,
}

impl ReplicaLag {
    /// Empty statistics with windows of `window`, starting at `now`.
    pub fn new(window: Duration, now: Instant) -> ReplicaLag {
        ReplicaLag {
            window,
            current: Histogram::default(),
            previous: Histogram::default(),
            current_since: now,
            last_us: 0,
            buckets: [0; BUCKETS_US.len() + 1],
            sum_us: 0,
            count: 0,
        }
    }

    fn rotate(&mut self, now: Instant) {
        let age = now.saturating_duration_since(self.current_since);
        if age < self.window {
            return;
        }
        std::mem::swap(&mut self.current, &mut self.previous);
        self.current.reset();
        if age >= 2 * self.window {
            // Nothing recorded for a whole window: the previous one is stale too.
            self.previous.reset();
        }
        self.current_since = now;
    }

    /// Records one applied change whose lag was `lag_us`, at `now`.
    pub fn record(&mut self, lag_us: u64, now: Instant) {
        self.rotate(now);
        self.current.record(lag_us);
        self.last_us = lag_us;
        let bucket = BUCKETS_US.partition_point(|bound| *bound < lag_us);
        self.buckets[bucket] += 1;
        self.sum_us += lag_us;
        self.count += 1;
    }

    /// The figures over the last one to two windows, as of `now`.
    pub fn summary(&mut self, now: Instant) -> LagSummary {
        self.rotate(now);
        let mut both = self.previous.clone();
        both.add(&self.current);
        LagSummary {
            last_us: self.last_us,
            p50_us: both.quantile(0.5),
            p99_us: both.quantile(0.99),
            max_us: both.max(),
            samples: both.len(),
        }
    }

    /// The histogram since the start: `(upper bound in seconds, changes in this bucket)` per
    /// bucket (not cumulative: the encoder sums them), the last one unbounded; the sum in
    /// seconds; the count.
    pub fn histogram(&self) -> (Vec<(f64, u64)>, f64, u64) {
        let out = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let bound = BUCKETS_US
                    .get(i)
                    .map_or(f64::INFINITY, |us| *us as f64 / 1e6);
                (bound, *n)
            })
            .collect();
        (out, self.sum_us as f64 / 1e6, self.count)
    }
}

/// Milliseconds with three decimals, for `INFO`.
pub fn ms(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(10);

    #[test]
    fn the_window_holds_recent_changes_and_forgets_old_ones() {
        let t0 = Instant::now();
        let mut lag = ReplicaLag::new(W, t0);
        for i in 1..=100u64 {
            lag.record(i * 100, t0); // 0.1 ms .. 10 ms
        }
        let s = lag.summary(t0 + Duration::from_secs(1));
        assert_eq!(s.samples, 100);
        assert_eq!(s.last_us, 10_000);
        assert!((4_900..=5_100).contains(&s.p50_us), "{s:?}");
        assert!((9_800..=10_100).contains(&s.p99_us), "{s:?}");
        assert!((9_900..=10_100).contains(&s.max_us), "{s:?}");
        // One window later the changes are in the previous window: still counted.
        lag.record(1_000, t0 + Duration::from_secs(11));
        assert_eq!(lag.summary(t0 + Duration::from_secs(12)).samples, 101);
        // Two windows later they are gone; an idle replica shows what it last did.
        let s = lag.summary(t0 + Duration::from_secs(35));
        assert_eq!(s.samples, 0);
        assert_eq!((s.p99_us, s.max_us, s.last_us), (0, 0, 1_000));
    }

    #[test]
    fn the_prometheus_histogram_counts_every_change_since_the_start() {
        let t0 = Instant::now();
        let mut lag = ReplicaLag::new(W, t0);
        for us in [100, 500, 501, 20_000, 90_000_000] {
            lag.record(us, t0);
        }
        let (buckets, sum, count) = lag.histogram();
        assert_eq!(count, 5);
        assert!((sum - 90.021_101).abs() < 1e-6, "{sum}");
        assert_eq!(buckets[0], (0.00025, 1));
        assert_eq!(
            buckets[1],
            (0.0005, 1),
            "a lag equal to a bound is in its bucket"
        );
        assert_eq!(buckets[2], (0.001, 1));
        assert_eq!(buckets[9], (0.025, 1));
        assert_eq!(buckets[17], (10.0, 0));
        assert_eq!(buckets[18], (f64::INFINITY, 1));
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), count);
        // A lag past the windowed histograms' range still counts, as their largest value.
        assert_eq!(lag.summary(t0).samples, 5);
    }

    #[test]
    fn histogram_buckets_are_exact_when_small_and_within_two_percent_above() {
        let mut previous = None;
        for v in (0..70).chain([100, 1_000, 4_095, 4_096, 123_456, 9_999_999]) {
            let i = Histogram::index(v);
            let top = Histogram::highest(i);
            assert!(top >= v && (v < 64 && top == v || (top - v) as f64 <= v as f64 / 64.0));
            if let Some(p) = previous {
                assert!(i >= p, "buckets grow with values");
            }
            previous = Some(i);
        }
        // Every bucket's top is the value just below the next bucket.
        for i in 0..Histogram::index(1 << 20) {
            assert_eq!(Histogram::index(Histogram::highest(i)), i);
            assert_eq!(Histogram::index(Histogram::highest(i) + 1), i + 1);
        }
        let mut h = Histogram::default();
        assert_eq!((h.quantile(0.99), h.max(), h.is_empty()), (0, 0, true));
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.0), 1);
        assert!(
            (500..=508).contains(&h.quantile(0.5)),
            "{}",
            h.quantile(0.5)
        );
        assert!(
            (990..=1000).contains(&h.quantile(0.99)),
            "{}",
            h.quantile(0.99)
        );
        assert_eq!(h.quantile(1.0), 1000);
        h.record(u64::MAX);
        assert_eq!(h.max(), (1 << MAX_BITS) - 1);
    }

    #[test]
    fn ms_has_three_decimals() {
        assert_eq!(ms(0), "0.000");
        assert_eq!(ms(1_234), "1.234");
        assert_eq!(ms(12_000_005), "12000.005");
    }
}
