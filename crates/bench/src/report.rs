//! Counting and reporting: per-connection statistics, their merge, the final [`Report`] and
//! its two renderings (a human summary and one JSON object).
//!
//! Every connection owns its [`Stats`]: counters and an HDR histogram of latencies in
//! microseconds (1 us .. 60 s at 3 significant digits, growing past 60 s if a stalled server
//! needs it). Nothing is shared per request; the run merges the connections' statistics once
//! at the end.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::config::{Config, Stop};
use crate::progress::Progress;
use crate::proto::{classify, error_text, Outcome, Reply};
use crate::workload::{DistributionName, KeyDistribution, OpKind};

/// Highest latency the histograms start out tracking, in microseconds (60 s); they grow
/// beyond it on demand.
const HISTOGRAM_HIGH_US: u64 = 60_000_000;
/// Distinct error messages kept as samples; further ones are only counted.
const MAX_ERROR_SAMPLES: usize = 8;
/// Longest error message kept, in bytes.
const MAX_ERROR_TEXT: usize = 200;

/// Returns an empty latency histogram (microseconds).
pub fn new_histogram() -> Histogram<u64> {
    let mut histogram = Histogram::new_with_bounds(1, HISTOGRAM_HIGH_US, 3)
        .unwrap_or_else(|_| unreachable!("1 us .. 60 s at 3 digits are valid bounds"));
    histogram.auto(true);
    histogram
}

/// Adds `from` into `into`. Both are auto-resizing, which is what makes the merge infallible.
pub fn merge_histogram(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    into.add(from)
        .unwrap_or_else(|_| unreachable!("auto-resizing histograms accept any value"));
}

/// Request counters of one phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// GET replies.
    pub gets: u64,
    /// SET replies.
    pub sets: u64,
    /// GETs that found their key.
    pub hits: u64,
    /// GETs that found nothing.
    pub misses: u64,
    /// Error replies, and replies that do not answer their request.
    pub errors: u64,
}

impl Counts {
    /// Returns all replies counted.
    pub fn ops(&self) -> u64 {
        self.gets + self.sets
    }

    fn add(&mut self, other: &Counts) {
        self.gets += other.gets;
        self.sets += other.sets;
        self.hits += other.hits;
        self.misses += other.misses;
        self.errors += other.errors;
    }
}

/// A distinct error message and how often it came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorSample {
    /// The error reply's text, or a description of an unexpected reply.
    pub message: String,
    /// Replies with this message, all phases together.
    pub count: u64,
}

/// The first few distinct error messages of a connection or a run, with counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorSamples {
    /// Distinct messages, in order of first appearance.
    pub samples: Vec<ErrorSample>,
    /// Errors whose message did not fit in the samples.
    pub unsampled: u64,
    /// Index in `samples` of the latest error's message, if it was kept.
    last: Option<usize>,
}

impl ErrorSamples {
    /// Counts one error with `message`.
    pub fn add(&mut self, message: &str, count: u64) {
        let message = truncate(message);
        if let Some(i) = self.samples.iter().position(|s| s.message == message) {
            self.samples[i].count += count;
            self.last = Some(i);
        } else if self.samples.len() < MAX_ERROR_SAMPLES {
            self.samples.push(ErrorSample {
                message: message.to_owned(),
                count,
            });
            self.last = Some(self.samples.len() - 1);
        } else {
            self.unsampled += count;
        }
    }

    /// Returns the latest error's message, if it was kept.
    pub fn last(&self) -> Option<&str> {
        self.last.map(|i| self.samples[i].message.as_str())
    }

    fn merge(&mut self, other: &ErrorSamples) {
        for sample in &other.samples {
            self.add(&sample.message, sample.count);
        }
        self.unsampled += other.unsampled;
    }
}

fn truncate(message: &str) -> &str {
    if message.len() <= MAX_ERROR_TEXT {
        return message;
    }
    let mut end = MAX_ERROR_TEXT;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// One connection's (or, merged, one run's) statistics.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Replies to recorded requests (sent after the warm-up).
    pub measured: Counts,
    /// Error replies to warm-up requests.
    pub warmup_errors: u64,
    /// Open loop: requests due before the end that were never sent because the connection
    /// had `pipeline` requests outstanding until the end.
    pub unsent: u64,
    /// Latency of recorded requests, microseconds.
    pub latency_us: Histogram<u64>,
    /// Recent latencies not yet folded into `latency_us` (see [`Stats::flush`]).
    pub recent_us: Histogram<u64>,
    /// Error messages seen.
    pub errors: ErrorSamples,
    /// When the last reply to a recorded request arrived.
    pub last_reply: Option<Instant>,
    /// Cluster mode: `-MOVED`/`-ASK` redirects followed.
    pub redirects: u64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            measured: Counts::default(),
            warmup_errors: 0,
            unsent: 0,
            redirects: 0,
            latency_us: new_histogram(),
            recent_us: new_histogram(),
            errors: ErrorSamples::default(),
            last_reply: None,
        }
    }
}

impl Stats {
    /// Counts the reply to a request of kind `op` sent (or due) at `sent`, received at
    /// `now`; `recorded` is false for warm-up requests.
    pub fn observe(
        &mut self,
        op: OpKind,
        reply: &Reply<'_>,
        sent: Instant,
        now: Instant,
        recorded: bool,
    ) {
        let outcome = classify(op, reply);
        if outcome == Outcome::Error {
            self.errors.add(&error_text(op, reply), 1);
        }
        if !recorded {
            self.warmup_errors += u64::from(outcome == Outcome::Error);
            return;
        }
        let latency = now.saturating_duration_since(sent);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        // `record` grows the histogram past 60 s when needed (`saturating_record` would clamp
        // to its current top); it can only fail for values beyond any histogram's reach.
        if self.recent_us.record(micros).is_err() {
            self.recent_us.saturating_record(micros);
        }
        self.last_reply = Some(now);
        let counts = &mut self.measured;
        match op {
            OpKind::Get => counts.gets += 1,
            OpKind::Set => counts.sets += 1,
        }
        match outcome {
            Outcome::Hit => counts.hits += 1,
            Outcome::Miss => counts.misses += 1,
            Outcome::Stored => {}
            Outcome::Error => counts.errors += 1,
        }
    }

    /// Folds the recent latencies into the run's histogram, and into the progress line's if
    /// there is one, then clears them. Called about once per second, so the progress line
    /// costs one lock per connection per second, not one per request.
    pub fn flush(&mut self, progress: Option<&Progress>) {
        merge_histogram(&mut self.latency_us, &self.recent_us);
        if let Some(progress) = progress {
            progress.add_latencies(&self.recent_us);
        }
        self.recent_us.reset();
    }

    /// Adds another connection's statistics.
    pub fn merge(&mut self, other: &Stats) {
        self.measured.add(&other.measured);
        self.warmup_errors += other.warmup_errors;
        self.unsent += other.unsent;
        self.redirects += other.redirects;
        merge_histogram(&mut self.latency_us, &other.latency_us);
        merge_histogram(&mut self.latency_us, &other.recent_us);
        self.errors.merge(&other.errors);
        self.last_reply = self.last_reply.max(other.last_reply);
    }
}

/// Latency percentiles of a run, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// Reads the percentiles of `histogram` (all zero when it is empty).
    pub fn of(histogram: &Histogram<u64>) -> Latency {
        if histogram.is_empty() {
            return Latency {
                p50: 0,
                p90: 0,
                p99: 0,
                p999: 0,
                max: 0,
                mean: 0.0,
            };
        }
        Latency {
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
            mean: histogram.mean(),
        }
    }
}

/// The prefill phase's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prefill {
    /// Keys written.
    pub keys: u64,
    /// Seconds it took.
    pub secs: f64,
    /// Error replies.
    pub errors: u64,
}

/// The results of a run, with its configuration. Serialises to the `--json` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// `resp` or `memcache`.
    pub protocol: &'static str,
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Load-generator worker threads.
    pub threads: usize,
    /// `closed` (as fast as replies come) or `open` (fixed rate).
    pub mode: &'static str,
    /// Open loop: target requests per second.
    pub rate: Option<u64>,
    /// Key space size.
    pub keys: u64,
    /// `uniform` or `zipf`.
    pub distribution: DistributionName,
    /// Zipf exponent (zipf only).
    pub zipf_s: Option<f64>,
    /// Smallest value size, bytes.
    pub value_size_min: usize,
    /// Largest value size, bytes.
    pub value_size_max: usize,
    /// GET:SET mix as given, e.g. `9:1`.
    pub ratio: String,
    /// Warm-up, seconds.
    pub warmup_secs: f64,
    /// Requested measuring time, seconds (duration runs).
    pub target_duration_secs: Option<f64>,
    /// Requested request count (count runs).
    pub target_requests: Option<u64>,
    /// Seed of the request generators.
    pub seed: u64,
    /// The prefill, if one ran.
    pub prefill: Option<Prefill>,
    /// Requests measured (replies to requests sent after the warm-up).
    pub ops: u64,
    /// Seconds from the end of the warm-up to the last measured reply.
    pub duration_secs: f64,
    /// `ops / duration_secs`.
    pub ops_per_sec: f64,
    /// GET replies.
    pub gets: u64,
    /// SET replies.
    pub sets: u64,
    /// GETs that found their key.
    pub hits: u64,
    /// GETs that found nothing.
    pub misses: u64,
    /// Error replies and replies that do not answer their request.
    pub errors: u64,
    /// Error replies during the warm-up.
    pub warmup_errors: u64,
    /// Open loop: requests due before the end but never sent (the server fell behind).
    pub unsent: u64,
    /// Distinct error messages, all phases, with counts.
    pub error_samples: Vec<ErrorSample>,
    /// Latency of measured requests, microseconds.
    pub latency_us: Latency,
    /// Cluster mode: the primaries the slot map named (0 when not in cluster mode).
    pub cluster_primaries: usize,
    /// Cluster mode: `-MOVED`/`-ASK` redirects followed.
    pub redirects: u64,
}

impl Report {
    /// Builds the report of a run configured by `config` whose connections' merged
    /// statistics are `stats` and whose measuring began at `measure_start`.
    pub fn new(
        config: &Config,
        stats: &Stats,
        measure_start: Instant,
        prefill: Option<Prefill>,
    ) -> Report {
        let duration = stats.last_reply.map_or(Duration::ZERO, |last| {
            last.saturating_duration_since(measure_start)
        });
        let ops = stats.measured.ops();
        let secs = duration.as_secs_f64();
        let c = stats.measured;
        Report {
            protocol: config.protocol.name(),
            host: config.host.clone(),
            port: config.port,
            connections: config.connections,
            pipeline: config.pipeline,
            threads: config.threads,
            mode: if config.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            rate: config.rate,
            keys: config.keys,
            distribution: match config.distribution {
                KeyDistribution::Uniform => DistributionName::Uniform,
                KeyDistribution::Zipf { .. } => DistributionName::Zipf,
            },
            zipf_s: match config.distribution {
                KeyDistribution::Uniform => None,
                KeyDistribution::Zipf { s } => Some(s),
            },
            value_size_min: config.value_size.min,
            value_size_max: config.value_size.max,
            ratio: config.ratio.to_string(),
            warmup_secs: config.warmup.as_secs_f64(),
            target_duration_secs: match config.stop {
                Stop::After(d) => Some(d.as_secs_f64()),
                Stop::Requests(_) => None,
            },
            target_requests: match config.stop {
                Stop::After(_) => None,
                Stop::Requests(n) => Some(n),
            },
            seed: config.seed,
            prefill,
            ops,
            duration_secs: secs,
            ops_per_sec: if secs > 0.0 { ops as f64 / secs } else { 0.0 },
            gets: c.gets,
            sets: c.sets,
            hits: c.hits,
            misses: c.misses,
            errors: c.errors,
            warmup_errors: stats.warmup_errors,
            unsent: stats.unsent,
            error_samples: stats.errors.samples.clone(),
            latency_us: Latency::of(&stats.latency_us),
            cluster_primaries: 0,
            redirects: stats.redirects,
        }
    }

    /// Returns the report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| unreachable!("plain data serialises"))
    }

    /// Returns the human-readable summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let percent = |part: u64, whole: u64| {
            if whole == 0 {
                0.0
            } else {
                100.0 * part as f64 / whole as f64
            }
        };
        let _ = writeln!(
            out,
            "ringcache bench: {} {}:{}, {} connections, pipeline {}, {} thread{}",
            self.protocol,
            self.host,
            self.port,
            self.connections,
            self.pipeline,
            self.threads,
            if self.threads == 1 { "" } else { "s" }
        );
        let keys = match self.zipf_s {
            Some(s) => format!("{} keys (zipf s={s})", self.keys),
            None => format!("{} keys (uniform)", self.keys),
        };
        let values = if self.value_size_min == self.value_size_max {
            format!("{} B", self.value_size_min)
        } else {
            format!("{}-{} B", self.value_size_min, self.value_size_max)
        };
        let mut mode = match self.rate {
            Some(rate) => format!("open loop at {rate} ops/s"),
            None => "closed loop".to_owned(),
        };
        if self.cluster_primaries > 0 {
            mode.push_str(&format!(
                ", cluster of {} primaries, {} redirects followed",
                self.cluster_primaries, self.redirects
            ));
        }
        let _ = writeln!(
            out,
            "  workload: {keys}, values {values}, GET:SET {}, {mode}",
            self.ratio
        );
        if let Some(p) = &self.prefill {
            let _ = writeln!(
                out,
                "  prefill:  {} keys in {:.2} s, {} errors",
                p.keys, p.secs, p.errors
            );
        }
        let _ = writeln!(
            out,
            "  measured {:.2} s after {:.2} s of warm-up\n",
            self.duration_secs, self.warmup_secs
        );
        let _ = writeln!(
            out,
            "  ops      {:>12}  ({:.1} ops/s)",
            self.ops, self.ops_per_sec
        );
        let _ = writeln!(
            out,
            "  gets     {:>12}  hits {} ({:.1}%), misses {}",
            self.gets,
            self.hits,
            percent(self.hits, self.gets),
            self.misses
        );
        let _ = writeln!(out, "  sets     {:>12}", self.sets);
        let _ = writeln!(out, "  errors   {:>12}", self.errors);
        if self.warmup_errors > 0 {
            let _ = writeln!(out, "  warm-up errors {}", self.warmup_errors);
        }
        for sample in &self.error_samples {
            let _ = writeln!(out, "    {:>8} x {:?}", sample.count, sample.message);
        }
        if self.unsent > 0 {
            let _ = writeln!(
                out,
                "  unsent   {:>12}  (due before the end but never sent: the server fell behind \
                 the rate)",
                self.unsent
            );
        }
        let l = &self.latency_us;
        let _ = writeln!(
            out,
            "  latency (us)  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.1}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        );
        if self.rate.is_some() {
            let _ = writeln!(
                out,
                "  (open loop: latency counts from each request's scheduled time)"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_counted_by_phase_and_outcome() {
        let mut stats = Stats::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_micros(250);
        stats.observe(OpKind::Get, &Reply::Value, t0, t1, true);
        stats.observe(OpKind::Get, &Reply::Nil, t0, t1, true);
        stats.observe(OpKind::Set, &Reply::Done, t0, t1, true);
        stats.observe(OpKind::Set, &Reply::Error(b"OOM no"), t0, t1, true);
        stats.observe(OpKind::Get, &Reply::Error(b"OOM no"), t0, t1, false);
        stats.observe(OpKind::Get, &Reply::Value, t0, t1, false);
        let c = stats.measured;
        assert_eq!(
            (c.gets, c.sets, c.hits, c.misses, c.errors),
            (2, 2, 1, 1, 1)
        );
        assert_eq!(stats.warmup_errors, 1);
        assert_eq!(stats.errors.samples.len(), 1);
        assert_eq!(stats.errors.samples[0].count, 2);
        assert_eq!(stats.errors.last(), Some("OOM no"));
        stats.flush(None);
        assert_eq!(stats.latency_us.len(), 4);
        assert_eq!(stats.latency_us.value_at_quantile(0.5), 250);
    }

    #[test]
    fn error_samples_keep_a_few_distinct_messages() {
        let mut samples = ErrorSamples::default();
        for i in 0..20 {
            samples.add(&format!("ERR {}", i % 10), 1);
        }
        assert_eq!(samples.samples.len(), MAX_ERROR_SAMPLES);
        assert_eq!(samples.unsampled, 4);
        assert_eq!(samples.samples[0].count, 2);
        samples.add(&"x".repeat(1000), 1);
        assert_eq!(samples.unsampled, 5);
        let mut long = ErrorSamples::default();
        long.add(&"é".repeat(1000), 1);
        assert!(long.samples[0].message.len() <= MAX_ERROR_TEXT);
    }

    #[test]
    fn merged_stats_add_up_and_latencies_beyond_60s_are_kept() {
        let t0 = Instant::now();
        let mut a = Stats::default();
        let mut b = Stats::default();
        a.observe(
            OpKind::Get,
            &Reply::Value,
            t0,
            t0 + Duration::from_millis(1),
            true,
        );
        b.observe(
            OpKind::Get,
            &Reply::Nil,
            t0,
            t0 + Duration::from_secs(90),
            true,
        );
        b.unsent = 3;
        a.merge(&b);
        assert_eq!(a.measured.ops(), 2);
        assert_eq!(a.unsent, 3);
        assert_eq!(a.last_reply, Some(t0 + Duration::from_secs(90)));
        a.flush(None);
        let latency = Latency::of(&a.latency_us);
        assert!(latency.max >= 89_000_000, "{latency:?}");
        assert!(latency.p50 <= 1_001, "{latency:?}");
    }

    #[test]
    fn empty_histograms_report_zeros() {
        let latency = Latency::of(&new_histogram());
        assert_eq!((latency.p50, latency.max), (0, 0));
        assert_eq!(latency.mean, 0.0);
    }
}
