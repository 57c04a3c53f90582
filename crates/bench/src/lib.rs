//! `ringcache bench`: the project's load generator, for RESP and memcached servers.
//!
//! Goals: measure a cache node's throughput and latency honestly and cheaply.
//! - Honest: latencies go into HDR histograms (1 us resolution, 3 significant digits, up to
//!   60 s and beyond); with `--rate` the load is open loop and each request is timed from
//!   when it was *due*, so a stalled server cannot hide its tail (no coordinated omission);
//!   every error reply is counted and reported with its message; a server that closes a
//!   connection, stops answering or sends garbage fails the run with a message.
//! - Cheap: one tokio task per connection on a small runtime (`--threads`, default 1, to
//!   leave the cores to the server on a small box); requests are encoded into a reusable
//!   buffer, replies parsed straight from the read buffer; statistics are connection-local
//!   and merged once at the end (no lock per request).
//! - Bounded: every run stops by itself (a duration or a request count, plus `--timeout` for
//!   a silent server) and talks only to the host it is given (default 127.0.0.1).
//!
//! Non-goals: other commands than GET and SET, cluster routing, TLS, distributed load.
//!
//! ```text
//!  run(args) ── Config::resolve ── tokio runtime (--threads workers) ── execute(config)
//!    execute: resolve host ─> connect all ─> [prefill: each connection SETs its key range]
//!             ─> spawn one task per connection ──────────────────────────────────────────┐
//!                  conn i: Workload (own seeded rng) ─> encode ─> socket ─> parse replies│
//!                          Stats (counters + HDR histogram), ~1/s to the progress line   │
//!             ─> progress task: one stderr line per second (unless --quiet)              │
//!             ─> --rate: pacer thread wakes each connection when its next request is due │
//!             <─ join: merge Stats (the first failing connection aborts the rest) <──────┘
//!             ─> Report: summary on stdout, or one JSON object (--json)
//! ```
//!
//! Modules, in reading order:
//! - [`config`]: the flags ([`BenchArgs`]) and the validated [`Config`].
//! - [`workload`]: keys (`key:%012d`, uniform or Zipf), value sizes, the GET:SET mix.
//! - [`proto`]: request encoders and reply parsers, [`proto::resp`] and [`proto::memcache`].
//! - [`conn`]: the per-connection driver: closed loop, open loop, prefill.
//! - [`pacer`]: the open-loop schedule, and the thread that wakes connections on time.
//! - [`report`]: per-connection statistics, the merged [`Report`], summary and JSON.
//! - [`progress`]: the once-a-second progress line.

pub mod cluster;
pub mod config;
pub mod conn;
pub mod pacer;
pub mod progress;
pub mod proto;
pub mod report;
pub mod workload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::task::{JoinHandle, JoinSet};

pub use config::{BenchArgs, Config, Stop};
use conn::{Conn, Plan, Until};
use pacer::{Pacer, Schedule};
use progress::Progress;
pub use proto::Protocol;
pub use report::{Latency, Report};
use report::{Prefill, Stats};
use workload::{KeyGen, Workload};

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag is out of range or flags contradict each other.
    #[error("invalid option: {0}")]
    Config(String),
    /// The host name did not resolve to an address.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host as given.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// The server refused a connection or did not accept it in time.
    #[error("cannot connect to {addr}: {reason}")]
    Connect {
        /// The server address.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
    /// The server closed a connection during the run.
    #[error("server closed connection {conn} with {outstanding} requests outstanding{detail}")]
    Closed {
        /// Connection number.
        conn: usize,
        /// Requests that got no reply.
        outstanding: usize,
        /// Extra context, e.g. the last error reply (empty or starting with a space).
        detail: String,
    },
    /// No byte moved for `timeout` while requests were outstanding.
    #[error("connection {conn}: no reply for {timeout:?} with {outstanding} requests outstanding")]
    Stalled {
        /// Connection number.
        conn: usize,
        /// The `--timeout` in force.
        timeout: Duration,
        /// Requests waiting.
        outstanding: usize,
    },
    /// The server sent bytes that are not a reply of the protocol.
    #[error("connection {conn}: invalid reply: {reason}")]
    Protocol {
        /// Connection number.
        conn: usize,
        /// What was wrong.
        reason: String,
    },
    /// A socket error.
    #[error("connection {conn}: {source}")]
    Io {
        /// Connection number.
        conn: usize,
        /// The error.
        source: std::io::Error,
    },
    /// A connection task panicked, or a thread could not be started.
    #[error("connection task failed: {0}")]
    Task(String),
}

/// Result of the load generator's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs `ringcache bench`: validates the flags, runs the load on its own runtime, prints the
/// summary (or JSON) on stdout. Fails on invalid flags, an unreachable server, or a server
/// that closes connections or stops answering.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let config = Config::resolve(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime.block_on(execute(&config))?;
    if config.json {
        println!("{}", report.to_json());
        let errors = report.errors + report.warmup_errors;
        if errors > 0 {
            let first = report
                .error_samples
                .first()
                .map_or("", |s| s.message.as_str());
            eprintln!("warning: {errors} error replies (first: {first:?})");
        }
    } else {
        print!("{}", report.summary());
    }
    Ok(())
}

/// Runs the load described by `config` on the current tokio runtime and returns the results.
pub async fn execute(config: &Config) -> Result<Report> {
    if config.cluster {
        return execute_cluster(config).await;
    }
    let addr = resolve(&config.host, config.port).await?;
    let keys = KeyGen::new(config.keys, config.distribution)
        .ok_or_else(|| Error::Config("invalid key space or Zipf exponent".into()))?;
    let filler: Arc<[u8]> = workload::filler(config.value_size.max).into();
    let mut conns = Vec::with_capacity(config.connections);
    let mut works = Vec::with_capacity(config.connections);
    for id in 0..config.connections {
        conns.push(Conn::connect(id, addr, config.protocol, config.timeout).await?);
        // Distinct, reproducible streams per connection.
        let seed = config.seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        works.push(Workload::new(
            keys.clone(),
            config.value_size,
            config.ratio,
            filler.clone(),
            seed,
        ));
    }

    let prefill = if config.prefill {
        let (back, prefill) = prefill_all(config, conns, works).await?;
        (conns, works) = back;
        Some(prefill)
    } else {
        None
    };

    let start = Instant::now();
    let measure_start = start + config.warmup;
    let progress = (!config.quiet).then(|| Arc::new(Progress::default()));
    let _printer = progress.clone().map(|progress| {
        AbortOnDrop(tokio::spawn(async move {
            progress.print_every_second(start, measure_start).await;
        }))
    });
    // Open loop: the pacer thread wakes connections when requests are due; it stops when
    // dropped, on any return from here.
    let pacer = match config.rate {
        Some(rate) => {
            let schedule = Schedule::new(start, rate, config.connections);
            let pacer = Pacer::start(schedule)
                .map_err(|err| Error::Task(format!("starting the pacer thread: {err}")))?;
            Some((schedule, pacer))
        }
        None => None,
    };
    let mut tasks = JoinSet::new();
    for (id, (mut conn, mut work)) in conns.into_iter().zip(works).enumerate() {
        let plan = Plan {
            start,
            measure_start,
            until: match config.stop {
                Stop::After(duration) => Until::Time(measure_start + duration),
                Stop::Requests(n) => Until::Count(share(n, id, config.connections)),
            },
            pipeline: config.pipeline,
            set_on_miss: config.set_on_miss,
        };
        let open = pacer
            .as_ref()
            .map(|(schedule, pacer)| (*schedule, pacer.waker(id)));
        let progress = progress.clone();
        tasks.spawn(async move {
            let mut stats = Stats::default();
            let progress = progress.as_deref();
            match open {
                Some((schedule, waker)) => {
                    conn.open_loop(&plan, &schedule, &waker, &mut work, &mut stats, progress)
                        .await?
                }
                None => {
                    conn.closed_loop(&plan, &mut work, &mut stats, progress)
                        .await?
                }
            }
            Ok::<_, Error>(stats)
        });
    }
    let mut total = Stats::default();
    while let Some(joined) = tasks.join_next().await {
        // Returning early drops `tasks`, which aborts the other connections.
        let stats = joined.map_err(|err| Error::Task(err.to_string()))??;
        total.merge(&stats);
    }
    Ok(Report::new(config, &total, measure_start, prefill))
}

/// Cluster mode: as [`execute`], with cluster-aware connections (closed loop only).
async fn execute_cluster(config: &Config) -> Result<Report> {
    let addr = resolve(&config.host, config.port).await?;
    let map = cluster::read_slot_map(addr, config.timeout).await?;
    let keys = KeyGen::new(config.keys, config.distribution)
        .ok_or_else(|| Error::Config("invalid key space or Zipf exponent".into()))?;
    let filler: Arc<[u8]> = workload::filler(config.value_size.max).into();
    let mut fleet = Vec::with_capacity(config.connections);
    for id in 0..config.connections {
        let conn = cluster::ClusterConn::connect(id, &map, config.timeout).await?;
        let seed = config.seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let work = Workload::new(
            keys.clone(),
            config.value_size,
            config.ratio,
            filler.clone(),
            seed,
        );
        fleet.push((conn, work));
    }
    let prefill = if config.prefill {
        let started = Instant::now();
        let count = fleet.len() as u64;
        let mut tasks = JoinSet::new();
        for (id, (mut conn, mut work)) in fleet.into_iter().enumerate() {
            let id = id as u64;
            let range = config.keys * id / count..config.keys * (id + 1) / count;
            tasks.spawn(async move {
                let mut stats = Stats::default();
                conn.prefill(range, &mut work, &mut stats).await?;
                Ok::<_, Error>((id, conn, work, stats))
            });
        }
        let mut done = Vec::new();
        let mut errors = 0;
        while let Some(joined) = tasks.join_next().await {
            let (id, conn, work, stats) = joined.map_err(|err| Error::Task(err.to_string()))??;
            errors += stats.measured.errors;
            done.push((id, conn, work));
        }
        done.sort_by_key(|(id, _, _)| *id);
        fleet = done.into_iter().map(|(_, c, w)| (c, w)).collect();
        Some(Prefill {
            keys: config.keys,
            secs: started.elapsed().as_secs_f64(),
            errors,
        })
    } else {
        None
    };
    let start = Instant::now();
    let measure_start = start + config.warmup;
    let progress = (!config.quiet).then(|| Arc::new(Progress::default()));
    let _printer = progress.clone().map(|progress| {
        AbortOnDrop(tokio::spawn(async move {
            progress.print_every_second(start, measure_start).await;
        }))
    });
    let mut tasks = JoinSet::new();
    for (id, (mut conn, mut work)) in fleet.into_iter().enumerate() {
        let plan = Plan {
            start,
            measure_start,
            until: match config.stop {
                Stop::After(duration) => Until::Time(measure_start + duration),
                Stop::Requests(n) => Until::Count(share(n, id, config.connections)),
            },
            pipeline: config.pipeline,
            set_on_miss: config.set_on_miss,
        };
        let progress = progress.clone();
        tasks.spawn(async move {
            let mut stats = Stats::default();
            conn.closed_loop(&plan, &mut work, &mut stats, progress.as_deref())
                .await?;
            Ok::<_, Error>(stats)
        });
    }
    let mut total = Stats::default();
    while let Some(joined) = tasks.join_next().await {
        let stats = joined.map_err(|err| Error::Task(err.to_string()))??;
        total.merge(&stats);
    }
    let mut report = Report::new(config, &total, measure_start, prefill);
    report.cluster_primaries = map.primaries.len();
    Ok(report)
}

/// Connections and their generators, handed to the prefill and back.
type Fleet = (Vec<Conn>, Vec<Workload>);

/// SETs every key once, each connection a contiguous share of the key space.
async fn prefill_all(
    config: &Config,
    conns: Vec<Conn>,
    works: Vec<Workload>,
) -> Result<(Fleet, Prefill)> {
    let started = Instant::now();
    let count = conns.len() as u64;
    let mut tasks = JoinSet::new();
    for (id, (mut conn, mut work)) in conns.into_iter().zip(works).enumerate() {
        let id = id as u64;
        let keys = config.keys * id / count..config.keys * (id + 1) / count;
        tasks.spawn(async move {
            let mut stats = Stats::default();
            conn.prefill(keys, &mut work, &mut stats).await?;
            Ok::<_, Error>((id, conn, work, stats))
        });
    }
    let mut done = Vec::with_capacity(count as usize);
    let mut total = Stats::default();
    while let Some(joined) = tasks.join_next().await {
        let (id, conn, work, stats) = joined.map_err(|err| Error::Task(err.to_string()))??;
        total.merge(&stats);
        done.push((id, conn, work));
    }
    // Back in connection order, so connection numbers in messages stay meaningful.
    done.sort_by_key(|(id, _, _)| *id);
    let (conns, works) = done.into_iter().map(|(_, c, w)| (c, w)).unzip();
    let prefill = Prefill {
        keys: config.keys,
        secs: started.elapsed().as_secs_f64(),
        errors: total.measured.errors,
    };
    if !config.quiet {
        eprintln!(
            "prefill: {} keys in {:.2} s ({:.0} sets/s)",
            prefill.keys,
            prefill.secs,
            prefill.keys as f64 / prefill.secs.max(1e-9)
        );
    }
    if prefill.errors > 0 {
        let first = total
            .errors
            .samples
            .first()
            .map_or("", |s| s.message.as_str());
        eprintln!(
            "warning: prefill got {} error replies (first: {first:?})",
            prefill.errors
        );
    }
    Ok(((conns, works), prefill))
}

/// Returns connection `id`'s share of `total` requests split over `connections`.
fn share(total: u64, id: usize, connections: usize) -> u64 {
    let (connections, id) = (connections as u64, id as u64);
    total / connections + u64::from(id < total % connections)
}

/// Resolves `host:port` to the first address it names.
async fn resolve(host: &str, port: u16) -> Result<SocketAddr> {
    let failed = |reason: String| Error::Resolve {
        host: host.to_owned(),
        reason,
    };
    tokio::net::lookup_host((host, port))
        .await
        .map_err(|err| failed(err.to_string()))?
        .next()
        .ok_or_else(|| failed("no addresses".into()))
}

/// Aborts a background task when dropped, including on an early error return.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counts_split_evenly_over_connections() {
        let shares: Vec<u64> = (0..4).map(|id| share(10, id, 4)).collect();
        assert_eq!(shares, [3, 3, 2, 2]);
        assert_eq!((0..3).map(|id| share(2, id, 3)).sum::<u64>(), 2);
    }

    #[tokio::test]
    async fn an_unreachable_server_fails_with_a_message() {
        // Bind then drop a listener: its port is (almost certainly) closed now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("ephemeral port")
            .port();
        let args = BenchArgs {
            host: "127.0.0.1".into(),
            port: Some(port),
            protocol: Protocol::Resp,
            connections: 2,
            pipeline: 1,
            threads: 1,
            keys: 10,
            distribution: workload::DistributionName::Uniform,
            zipf_s: 0.99,
            value_size: "10".parse().expect("valid"),
            ratio: "1:1".parse().expect("valid"),
            warmup: Duration::ZERO,
            duration: Some(Duration::from_millis(100)),
            requests: None,
            prefill: false,
            set_on_miss: false,
            rate: None,
            timeout: Duration::from_secs(2),
            seed: 1,
            quiet: true,
            json: false,
            cluster: false,
        };
        let config = Config::resolve(args).expect("valid");
        let err = execute(&config).await.expect_err("nobody listens");
        assert!(matches!(err, Error::Connect { .. }), "{err}");
        assert!(
            err.to_string().starts_with("cannot connect to 127.0.0.1:"),
            "{err}"
        );
    }

    /// A node that claims every slot in `CLUSTER SLOTS` but answers every other command with
    /// `-MOVED <slot> <real>`: the bench must follow the redirect to the real node.
    async fn redirecting_node(real: std::net::SocketAddr) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let me = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while let Ok(n) = s.read(&mut chunk).await {
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        // Requests are `*N` arrays of bulk strings; answer each complete one.
                        while let Some((args, used)) = split_request(&buf) {
                            buf.drain(..used);
                            let reply = if args[0].eq_ignore_ascii_case(b"CLUSTER") {
                                format!(
                                    "*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:{}\r\n",
                                    me.port()
                                )
                            } else {
                                let slot = store::key_slot(&args[1]);
                                format!("-MOVED {slot} {real}\r\n")
                            };
                            if s.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        me
    }

    fn split_request(buf: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
        let line = |at: usize| -> Option<(usize, usize)> {
            let end = at + buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
            let n = std::str::from_utf8(&buf[at + 1..end]).ok()?.parse().ok()?;
            Some((n, end + 2))
        };
        let (count, mut at) = line(0)?;
        let mut args = Vec::new();
        for _ in 0..count {
            let (len, start) = line(at)?;
            args.push(buf.get(start..start + len)?.to_vec());
            at = start + len + 2;
            if buf.len() < at {
                return None;
            }
        }
        Some((args, at))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cluster_mode_follows_moved_to_the_owner() {
        let config = server::Config {
            port: 0,
            memcache_port: None,
            admin_port: None,
            ..server::Config::default()
        };
        let real = server::start(config).await.expect("node");
        let fake = redirecting_node(real.resp_addr).await;
        let args = BenchArgs {
            host: "127.0.0.1".into(),
            port: Some(fake.port()),
            protocol: Protocol::Resp,
            connections: 2,
            pipeline: 4,
            threads: 1,
            keys: 50,
            distribution: workload::DistributionName::Uniform,
            zipf_s: 0.99,
            value_size: "10".parse().expect("valid"),
            ratio: "1:1".parse().expect("valid"),
            warmup: Duration::ZERO,
            duration: None,
            requests: Some(400),
            prefill: true,
            set_on_miss: false,
            rate: None,
            timeout: Duration::from_secs(5),
            seed: 1,
            quiet: true,
            json: false,
            cluster: true,
        };
        let config = Config::resolve(args).expect("valid");
        let report = execute(&config).await.expect("run");
        assert_eq!(report.ops, 400);
        assert_eq!(report.errors, 0, "{:?}", report.error_samples);
        assert_eq!(
            report.hits, report.gets,
            "prefilled keys all found through the redirect"
        );
        // A connection follows a slot's MOVED once, then sends there directly: at most one
        // redirect per key per connection over prefill and run (the prefill's own aren't
        // in the report).
        assert!(
            (1..=2 * 50).contains(&report.redirects),
            "redirects during the run: {}",
            report.redirects
        );
        assert_eq!(report.cluster_primaries, 1);
        assert_eq!(real.node.store.len(), 50);
    }
}
