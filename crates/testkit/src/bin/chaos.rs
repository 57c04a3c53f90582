//! `chaos`: the fault-injection suite's long forms, printing the figures of
//! `docs/reliability.md`. Runs real `ringcache` node processes on 127.0.0.x addresses and
//! needs root for iptables (partitions).
//!
//! ```text
//! chaos split-brain  --trials 5
//! chaos lost-writes  --trials 20            # asynchronous replication
//! chaos lost-writes  --trials 20 --wait     # WAIT 1 after every write
//! chaos availability --minutes 10
//! chaos elastic --keys 100000           # grow 3 -> 5 shards and back under load
//! ```
//!
//! Exits non-zero when a target is missed: a write or read served by a primary after its lease
//! ran out, a minority value surviving, an acknowledged write lost under `WAIT`, or
//! availability under 99.99%.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use testkit::net::Partitions;
use testkit::node::Cluster;
use testkit::scenario::{self, Fault};

#[derive(Parser)]
#[command(about = "ringcache fault-injection runs (needs root for iptables)")]
struct Args {
    /// The ringcache binary the nodes run.
    #[arg(long, default_value = "target/release/ringcache")]
    bin: PathBuf,
    /// The nodes' addresses: `127.0.0.<first>` onwards.
    #[arg(long, default_value_t = 41)]
    first: u8,
    /// How many nodes (3 shards of 2 with the default 6).
    #[arg(long, default_value_t = 6)]
    nodes: u8,
    #[command(subcommand)]
    run: Run,
}

#[derive(Subcommand)]
enum Run {
    /// Partition a primary (with its own client) from the majority, then heal.
    SplitBrain {
        #[arg(long, default_value_t = 5)]
        trials: u32,
        /// How long the partition lasts, in ms.
        #[arg(long, default_value_t = 3000)]
        hold_ms: u64,
    },
    /// `kill -9` a primary under a write load; count acknowledged writes lost.
    LostWrites {
        #[arg(long, default_value_t = 20)]
        trials: u32,
        /// `WAIT 1` after every write.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 3)]
        writers: u32,
    },
    /// Grow 3 -> 4 -> 5 shards and shrink back to 3 under load (needs 4 more addresses after
    /// the cluster's).
    Elastic {
        #[arg(long, default_value_t = 100_000)]
        keys: usize,
        #[arg(long, default_value_t = 4)]
        clients: u32,
        /// Operations per second, all clients together.
        #[arg(long, default_value_t = 2000)]
        rate: u32,
    },
    /// Random kills, pauses and partitions under load.
    Availability {
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        #[arg(long, default_value_t = 4)]
        clients: u32,
        /// Operations per second, all clients together.
        #[arg(long, default_value_t = 2000)]
        rate: u32,
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        /// How long each fault lasts before it is healed, in ms.
        #[arg(long, default_value_t = 2000)]
        hold_ms: u64,
        /// Quiet time after the cluster is whole again, before the next fault, in ms.
        #[arg(long, default_value_t = 3000)]
        quiet_ms: u64,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    let ips: Vec<String> = (0..args.nodes)
        .map(|i| format!("127.0.0.{}", args.first + i))
        .collect();
    let mut cluster = Cluster::start(&args.bin, &ips, 1, "chaos")?;
    println!(
        "cluster of {} nodes on {}..{}",
        ips.len(),
        ips[0],
        ips[ips.len() - 1]
    );
    match args.run {
        Run::SplitBrain { trials, hold_ms } => {
            let partitions = Partitions::new()?;
            let mut bad = 0;
            for t in 1..=trials {
                let r = scenario::split_brain(
                    &cluster,
                    &partitions,
                    100,
                    Duration::from_millis(hold_ms),
                )?;
                println!(
                    "trial {t}: primary {} cut off for {} ms: it acknowledged {} writes, the last \
                     started {:?} ms in (lease {} ms); after its lease: {} writes, {} reads; \
                     majority writable after {:?} ms; minority values kept: {}; acknowledged \
                     writes lost: {} (all within the lease: {}); stale reads: {}",
                    r.primary,
                    r.partition_ms.1 - r.partition_ms.0,
                    r.minority_acks,
                    r.last_minority_ack_ms,
                    scenario::LEASE_MS,
                    r.acks_after_lease,
                    r.reads_after_lease,
                    r.majority_writable_ms,
                    r.minority_finals,
                    r.verdict.lost.len(),
                    r.verdict.lost.iter().all(|l| l.node == Some(r.primary)),
                    r.verdict.stale_reads,
                );
                if r.acks_after_lease + r.reads_after_lease + r.minority_finals > 0
                    || !r.verdict.phantoms.is_empty()
                {
                    bad += 1;
                }
            }
            if bad > 0 {
                bail!("{bad} trials broke the split-brain guarantees");
            }
        }
        Run::LostWrites {
            trials,
            wait,
            writers,
        } => {
            let mut lost_total = 0;
            let mut recoveries = Vec::new();
            for t in 1..=trials {
                let r = scenario::lost_writes(&mut cluster, wait, writers, 50)?;
                println!(
                    "trial {t}: killed {}: acknowledged {}, lost {}, window {:?} ms, writable \
                     again after {:?} ms, failed {}, stale reads {}",
                    r.primary, r.acked, r.lost, r.window_ms, r.recovery_ms, r.failed, r.stale_reads
                );
                lost_total += r.lost + r.phantoms;
                recoveries.extend(r.recovery_ms);
            }
            recoveries.sort_unstable();
            println!(
                "{} trials ({}): {lost_total} acknowledged writes lost; writable again p50 {:?} ms, max {:?} ms",
                trials,
                if wait { "WAIT 1 after each write" } else { "asynchronous replication" },
                recoveries.get(recoveries.len() / 2),
                recoveries.last()
            );
            if wait && lost_total > 0 {
                bail!("acknowledged writes lost under WAIT");
            }
        }
        Run::Elastic {
            keys,
            clients,
            rate,
        } => {
            let extra: Vec<String> = (args.nodes..args.nodes + 4)
                .map(|i| format!("127.0.0.{}", args.first + i))
                .collect();
            let r = scenario::elastic(&mut cluster, &extra, clients, rate, keys)?;
            println!(
                "| step | shards | slots moved | keys moved | optimum | took | ops/s | p99 \
                 | p99 cluster clients | p99 forwarding clients |"
            );
            println!("|---|---|---|---|---|---|---|---|---|---|");
            for s in &r.steps {
                println!(
                    "| {} | {} | {} | {} | {} | {:.2} s | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms |",
                    s.action,
                    s.shards,
                    s.slots_moved,
                    s.keys_moved,
                    s.keys_optimal,
                    (s.window_ms.1 - s.window_ms.0) as f64 / 1000.0,
                    s.ops_per_s,
                    s.p99_us as f64 / 1000.0,
                    s.p99_by_kind_us.0 as f64 / 1000.0,
                    s.p99_by_kind_us.1 as f64 / 1000.0
                );
            }
            println!(
                "steady (outside the steps): {:.0} ops/s, p99 {:.2} ms; {} operations, {} failed \
                 beyond the retry budget; acknowledged writes lost {}, stale reads {}, phantoms {}",
                r.steady.0,
                r.steady.1 as f64 / 1000.0,
                r.ops,
                r.failed,
                r.verdict.lost.len(),
                r.verdict.stale_reads,
                r.verdict.phantoms.len()
            );
            if r.failed > 0 || !r.verdict.lost.is_empty() || !r.verdict.phantoms.is_empty() {
                bail!("keys lost or operations failed while scaling");
            }
        }
        Run::Availability {
            minutes,
            clients,
            rate,
            keys,
            hold_ms,
            quiet_ms,
        } => {
            let partitions = Partitions::new()?;
            let r = scenario::availability(
                &mut cluster,
                &partitions,
                scenario::Plan {
                    duration: Duration::from_secs_f64(minutes * 60.0),
                    clients,
                    rate,
                    keys,
                    hold: Duration::from_millis(hold_ms),
                    quiet: Duration::from_millis(quiet_ms),
                },
                |f| {
                    println!(
                        "  {:?} {} ({}): whole again after {} ms",
                        f.fault,
                        f.node,
                        f.role,
                        f.window_ms.1 - f.window_ms.0
                    )
                },
            )?;
            for kind in [Fault::Kill, Fault::Pause, Fault::Partition] {
                for role in ["primary", "replica"] {
                    let of: Vec<_> = r
                        .faults
                        .iter()
                        .filter(|f| f.fault == kind && f.role.starts_with(role))
                        .collect();
                    let mut whole: Vec<u64> =
                        of.iter().map(|f| f.window_ms.1 - f.window_ms.0).collect();
                    whole.sort_unstable();
                    println!(
                        "{kind:?} of a {role}: {} times, whole again p50 {:?} ms max {:?} ms, \
                         acknowledged writes lost in those windows {}",
                        of.len(),
                        whole.get(whole.len() / 2),
                        whole.last(),
                        of.iter().map(|f| f.lost).sum::<u64>()
                    );
                }
            }
            let [p50, p99, p999, max] = r.latency_us;
            println!(
                "{:.1} s, {} faults, {} operations: {} failed within the retry budget \
                 ({:.4}% succeeded), {} retried; latency p50 {p50} us, p99 {p99} us, p99.9 \
                 {p999} us, max {max} us; outside fault windows ({} ops) p99 {} us; \
                 acknowledged writes lost {}, stale reads {}, phantoms {}",
                r.elapsed.as_secs_f64(),
                r.faults.len(),
                r.ops,
                r.failed,
                r.percent(),
                r.retried,
                r.quiet_ops,
                r.quiet_p99_us,
                r.verdict.lost.len(),
                r.verdict.stale_reads,
                r.verdict.phantoms.len(),
            );
            if r.percent() < 99.99 {
                bail!("availability {:.4}% under 99.99%", r.percent());
            }
        }
    }
    Ok(())
}
