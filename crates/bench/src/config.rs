//! `ringcache bench` flags and the validated configuration of a run.

use std::time::Duration;

use crate::proto::Protocol;
use crate::workload::{DistributionName, KeyDistribution, Ratio, ValueSize, MAX_KEYS};
use crate::{Error, Result};

/// Most connections one run opens.
pub const MAX_CONNECTIONS: usize = 10_000;
/// Deepest pipeline accepted.
pub const MAX_PIPELINE: usize = 100_000;

/// `ringcache bench` flags.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    ringcache bench --prefill --keys 100000 --duration 10s\n  \
    ringcache bench --protocol memcache --pipeline 16 --distribution zipf --json\n  \
    ringcache bench --rate 50000 --connections 20 --pipeline 8 --duration 30s")]
pub struct BenchArgs {
    /// Server host name or address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Server port [default: 6379, or 11211 with --protocol memcache].
    #[arg(long)]
    pub port: Option<u16>,
    /// Wire protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Resp)]
    pub protocol: Protocol,
    /// Connections, one task each.
    #[arg(long, default_value_t = 50)]
    pub connections: usize,
    /// Requests in flight per connection: the batch size in a closed loop, the most
    /// outstanding requests with --rate.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Runtime worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Size of the key space: keys key:000000000000, key:000000000001, ... (key:%012d).
    #[arg(long, default_value_t = 1_000_000)]
    pub keys: u64,
    /// How keys are picked.
    #[arg(long, value_enum, default_value_t = DistributionName::Uniform)]
    pub distribution: DistributionName,
    /// Zipf exponent for --distribution zipf (0 is uniform; larger is more skewed).
    #[arg(long, default_value_t = 0.99)]
    pub zipf_s: f64,
    /// Value size in bytes, or a range drawn uniformly, e.g. 64-1024.
    #[arg(long, default_value = "100")]
    pub value_size: ValueSize,
    /// GET:SET mix, e.g. 9:1, 1:0 (reads only), 0:1 (writes only).
    #[arg(long, default_value = "9:1")]
    pub ratio: Ratio,
    /// Warm-up before measuring (requests sent, not recorded), e.g. 2s, 500ms, 0.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// How long to measure after the warm-up, e.g. 10s, 1m [default: 10s].
    #[arg(long, value_parser = parse_duration, conflicts_with = "requests")]
    pub duration: Option<Duration>,
    /// Measure this many requests (all connections together) instead of a duration.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Before the run, SET every key once (pipelined) so GETs hit.
    #[arg(long)]
    pub prefill: bool,
    /// Cache-aside: after a GET misses, SET that key (the connection's next request), as an
    /// application filling its cache would; measures hit ratios under eviction.
    #[arg(long)]
    pub set_on_miss: bool,
    /// Open loop: send this many requests per second in total on a fixed schedule, and
    /// measure latency from each request's scheduled time (no coordinated omission).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Fail the run when connecting takes longer than this, or when requests wait this long
    /// with no byte arriving.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Seed of the request generators; equal seeds send equal requests.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Print the results as one JSON object on stdout instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Redis Cluster mode: read the slot map from the node given, send each key to its owner
    /// (one socket per primary per connection), follow -MOVED and -ASK. RESP, closed loop.
    #[arg(long)]
    pub cluster: bool,
}

/// When a run stops measuring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// After this long past the warm-up.
    After(Duration),
    /// After this many requests past the warm-up, all connections together.
    Requests(u64),
}

/// A validated run configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// Wire protocol.
    pub protocol: Protocol,
    /// Connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Runtime worker threads.
    pub threads: usize,
    /// Size of the key space.
    pub keys: u64,
    /// How keys are picked.
    pub distribution: KeyDistribution,
    /// Value sizes.
    pub value_size: ValueSize,
    /// GET:SET mix.
    pub ratio: Ratio,
    /// Unrecorded warm-up.
    pub warmup: Duration,
    /// When measuring stops.
    pub stop: Stop,
    /// SET every key before the run.
    pub prefill: bool,
    /// SET a key after its GET missed.
    pub set_on_miss: bool,
    /// Open-loop rate in requests per second, all connections together; `None` for a closed
    /// loop.
    pub rate: Option<u64>,
    /// Longest wait for a connection or a reply.
    pub timeout: Duration,
    /// Seed of the request generators.
    pub seed: u64,
    /// No progress line.
    pub quiet: bool,
    /// JSON output.
    pub json: bool,
    /// Redis Cluster mode.
    pub cluster: bool,
}

impl Config {
    /// Fills in defaults and checks every flag's range.
    pub fn resolve(args: BenchArgs) -> Result<Config> {
        let invalid = |message: String| Err(Error::Config(message));
        if !(1..=MAX_CONNECTIONS).contains(&args.connections) {
            return invalid(format!("--connections must be 1..={MAX_CONNECTIONS}"));
        }
        if !(1..=MAX_PIPELINE).contains(&args.pipeline) {
            return invalid(format!("--pipeline must be 1..={MAX_PIPELINE}"));
        }
        if !(1..=256).contains(&args.threads) {
            return invalid("--threads must be 1..=256".into());
        }
        if !(1..=MAX_KEYS).contains(&args.keys) {
            return invalid(format!(
                "--keys must be 1..={MAX_KEYS} (12-digit key names)"
            ));
        }
        let distribution = match args.distribution {
            DistributionName::Uniform => KeyDistribution::Uniform,
            DistributionName::Zipf if args.zipf_s.is_finite() && args.zipf_s >= 0.0 => {
                KeyDistribution::Zipf { s: args.zipf_s }
            }
            DistributionName::Zipf => {
                return invalid("--zipf-s must be a finite number >= 0".into());
            }
        };
        let stop = match (args.duration, args.requests) {
            (_, Some(0)) => return invalid("--requests must be positive".into()),
            (_, Some(n)) => Stop::Requests(n),
            (Some(d), None) if d.is_zero() => return invalid("--duration must be positive".into()),
            (Some(d), None) => Stop::After(d),
            (None, None) => Stop::After(Duration::from_secs(10)),
        };
        if args.rate == Some(0) {
            return invalid("--rate must be positive".into());
        }
        if args.timeout.is_zero() {
            return invalid("--timeout must be positive".into());
        }
        if args.host.is_empty() {
            return invalid("--host must not be empty".into());
        }
        if args.cluster && (args.rate.is_some() || args.protocol != Protocol::Resp) {
            return invalid(
                "--cluster supports RESP in a closed loop (no --rate, no memcache)".into(),
            );
        }
        Ok(Config {
            port: args.port.unwrap_or(args.protocol.default_port()),
            host: args.host,
            protocol: args.protocol,
            connections: args.connections,
            pipeline: args.pipeline,
            threads: args.threads,
            keys: args.keys,
            distribution,
            value_size: args.value_size,
            ratio: args.ratio,
            warmup: args.warmup,
            stop,
            prefill: args.prefill,
            set_on_miss: args.set_on_miss,
            rate: args.rate,
            timeout: args.timeout,
            seed: args.seed,
            quiet: args.quiet,
            json: args.json,
            cluster: args.cluster,
        })
    }
}

/// Parses a duration: a number with a unit (`us`, `ms`, `s`, `m`, `h`), e.g. `2s`, `1.5s`,
/// `500ms`, `1m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let invalid = || format!("invalid duration {text:?} (use e.g. 10s, 500ms, 1m)");
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let seconds_per_unit = match unit.trim() {
        "us" => 1e-6,
        "ms" => 1e-3,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(invalid()),
    };
    Duration::try_from_secs_f64(number * seconds_per_unit).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn resolve(flags: &[&str]) -> Result<Config> {
        let argv = std::iter::once("bench").chain(flags.iter().copied());
        Config::resolve(Cli::try_parse_from(argv).expect("flags parse").args)
    }

    #[test]
    fn durations_take_common_units() {
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "s", "ten", "5 days", "-1s", "1.2.3s", "2sec", "1e999"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_match_the_documentation() {
        let c = resolve(&[]).expect("valid");
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 6379));
        assert_eq!(c.protocol, Protocol::Resp);
        assert_eq!((c.connections, c.pipeline, c.threads), (50, 1, 1));
        assert_eq!(c.keys, 1_000_000);
        assert_eq!(c.distribution, KeyDistribution::Uniform);
        assert_eq!(c.value_size, ValueSize { min: 100, max: 100 });
        assert_eq!(c.ratio, Ratio { get: 9, set: 1 });
        assert_eq!(c.warmup, Duration::from_secs(2));
        assert_eq!(c.stop, Stop::After(Duration::from_secs(10)));
        assert_eq!(c.rate, None);
        assert!(!c.prefill && !c.quiet && !c.json);
    }

    #[test]
    fn memcache_defaults_to_port_11211_unless_given() {
        assert_eq!(
            resolve(&["--protocol", "memcache"]).expect("valid").port,
            11211
        );
        let c = resolve(&["--protocol", "memcache", "--port", "7000"]).expect("valid");
        assert_eq!(c.port, 7000);
    }

    #[test]
    fn flags_map_onto_the_config() {
        let c = resolve(&[
            "--distribution",
            "zipf",
            "--zipf-s",
            "1.2",
            "--value-size",
            "64-1024",
            "--ratio",
            "0:1",
            "--requests",
            "5000",
            "--rate",
            "1000",
        ])
        .expect("valid");
        assert_eq!(c.distribution, KeyDistribution::Zipf { s: 1.2 });
        assert_eq!(c.value_size, ValueSize { min: 64, max: 1024 });
        assert_eq!(c.ratio, Ratio { get: 0, set: 1 });
        assert_eq!(c.stop, Stop::Requests(5000));
        assert_eq!(c.rate, Some(1000));
    }

    #[test]
    fn out_of_range_flags_are_refused() {
        for flags in [
            &["--connections", "0"][..],
            &["--pipeline", "0"],
            &["--threads", "0"],
            &["--keys", "0"],
            &["--keys", "1000000000001"],
            &["--distribution", "zipf", "--zipf-s=-1"],
            &["--requests", "0"],
            &["--duration", "0s"],
            &["--rate", "0"],
            &["--timeout", "0"],
        ] {
            assert!(resolve(flags).is_err(), "{flags:?}");
        }
        let both = ["bench", "--duration", "1s", "--requests", "5"];
        assert!(Cli::try_parse_from(both).is_err());
        assert!(Cli::try_parse_from(["bench", "--ratio", "0:0"]).is_err());
    }
}
