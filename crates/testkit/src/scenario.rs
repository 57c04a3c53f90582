//! The fault scenarios: a partitioned primary (split brain), acknowledged writes across a
//! `kill -9` (with and without `WAIT`), and a long run of random faults under load
//! (availability). Each returns a report; the tests and the `chaos` binary decide what to
//! assert and print.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use rand::prelude::*;

use crate::client::{Budget, ClusterClient, Outcome};
use crate::history::{check, value_of, Op, Status, Verdict};
use crate::mc::ForwardingClient;
use crate::net::Partitions;
use crate::node::{Cluster, Topology};
use crate::resp::{Conn, Reply};

/// The write lease a primary holds after its last grant (the node's default), in ms: imported,
/// so a change of the node's lease can't leave the checker on the old one.
pub use cluster::failover::DEFAULT_LEASE_MS as LEASE_MS;

/// How far a node's millisecond clocks (wall and monotonic, truncated) may put a lease's end
/// past the exact time.
pub const CLOCK_MARGIN_MS: u64 = 5;

/// Microseconds since a run started.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn us(&self) -> u64 {
        self.0.elapsed().as_micros() as u64
    }
}

/// A recorded value: the number before any `:` padding.
fn parse_text(text: &str) -> Option<u64> {
    text.split(':').next()?.parse().ok()
}

fn parse_value(reply: &Reply) -> Option<u64> {
    reply.text().as_deref().and_then(parse_text)
}

/// `count` keys whose slots the primary `id` serves, named `<prefix><n>`.
fn keys_of(topology: &Topology, id: &str, prefix: &str, count: usize) -> Vec<String> {
    (0u64..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|k| {
            topology
                .owner(store::key_slot(k.as_bytes()))
                .is_some_and(|o| o.id == id)
        })
        .take(count)
        .collect()
}

/// A primary that is not the Raft leader, chosen at random.
struct Picked {
    /// Its index in the cluster.
    index: usize,
    /// Its RESP address.
    addr: SocketAddr,
    /// Its node id.
    id: String,
    /// The topology it was picked from.
    topology: Topology,
}

fn pick_primary(cluster: &Cluster, rng: &mut impl Rng) -> Result<Picked> {
    let topology = cluster.topology()?;
    let candidates: Vec<(usize, String)> = topology
        .nodes
        .iter()
        .filter(|n| n.primary && n.id != topology.leader)
        .filter_map(|n| Some((cluster.index_of(&n.addr)?, n.id.clone())))
        .collect();
    let (index, id) = candidates
        .choose(rng)
        .context("no primary apart from the leader")?
        .clone();
    Ok(Picked {
        index,
        addr: cluster.nodes[index].addr(),
        id,
        topology,
    })
}

/// Reads the final value of every key through a routing client.
fn finals(seeds: Vec<SocketAddr>, keys: &[String]) -> Result<HashMap<u32, Option<u64>>> {
    let mut client = ClusterClient::new(seeds, Budget::default());
    let mut out = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        match client.get(key.as_bytes()) {
            Outcome::Done(Reply::Bulk(b), _) => {
                let value = b.and_then(|b| parse_text(&String::from_utf8_lossy(&b)));
                out.insert(i as u32, value);
            }
            other => bail!("final read of {key} failed: {other:?}"),
        }
    }
    Ok(out)
}

fn record_write(
    client: u32,
    key: u32,
    value: u64,
    start_us: u64,
    clock: Clock,
    outcome: &Outcome,
) -> Op {
    let (status, node) = match outcome {
        Outcome::Done(Reply::Error(_), at) => (Status::Refused, Some(*at)),
        Outcome::Done(_, at) => (Status::Ok, Some(*at)),
        Outcome::Failed(_) => (Status::Unknown, None),
    };
    Op {
        client,
        key,
        write: true,
        value: Some(value),
        start_us,
        end_us: clock.us(),
        status,
        node,
    }
}

/// What the split-brain scenario saw.
#[derive(Debug)]
pub struct SplitBrain {
    /// The partitioned primary.
    pub primary: SocketAddr,
    /// When the partition began and healed (ms from the start).
    pub partition_ms: (u64, u64),
    /// Writes the cut-off primary acknowledged after the partition began, and the latest
    /// start of one (ms after the partition).
    pub minority_acks: u64,
    /// The latest start of a write it acknowledged, in ms after the partition began.
    pub last_minority_ack_ms: Option<u64>,
    /// Writes it acknowledged that *started* after its lease had run out: must be 0.
    pub acks_after_lease: u64,
    /// Reads it answered that started after its lease had run out: must be 0.
    pub reads_after_lease: u64,
    /// Keys whose final value comes from the minority side: must be 0.
    pub minority_finals: u64,
    /// The history checker's verdict (writes acknowledged by the cut-off primary during its
    /// last lease are lost, as the documented bound allows).
    pub verdict: Verdict,
    /// When the majority side first wrote to the shard's new primary (ms after the partition).
    pub majority_writable_ms: Option<u64>,
}

/// Cuts a primary (not the Raft leader) off from every other node while one client writes
/// and reads directly on it and another writes the same keys through the majority; heals;
/// then checks what each side saw and what the keys hold.
pub fn split_brain(
    cluster: &Cluster,
    partitions: &Partitions,
    keys: usize,
    hold: Duration,
) -> Result<SplitBrain> {
    let mut rng = rand::thread_rng();
    let Picked {
        index: p,
        addr: primary,
        id: primary_id,
        topology,
    } = pick_primary(cluster, &mut rng)?;
    let keys = Arc::new(keys_of(&topology, &primary_id, "sb", keys));
    let seeds: Vec<SocketAddr> = cluster
        .addrs()
        .into_iter()
        .filter(|a| *a != primary)
        .collect();
    let clock = Clock(Instant::now());
    let stop = Arc::new(AtomicBool::new(false));

    // The minority client: talks to the cut-off primary only, follows nothing.
    let minority = {
        let (keys, stop) = (keys.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut ops = Vec::new();
            let mut conn: Option<Conn> = None;
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let key = (seq as usize / 2) % keys.len();
                let write = seq.is_multiple_of(2);
                let value = value_of(1, seq);
                let start_us = clock.us();
                if conn.is_none() {
                    conn = Conn::connect(primary, Duration::from_millis(250)).ok();
                }
                let reply = match conn.as_mut() {
                    Some(c) if write => c.call(&["SET", &keys[key], &value.to_string()]),
                    Some(c) => c.call(&["GET", &keys[key]]),
                    None => Err(std::io::ErrorKind::NotConnected.into()),
                };
                let (status, read) = match &reply {
                    Ok(Reply::Error(_)) => (Status::Refused, None),
                    Ok(r) => (Status::Ok, parse_value(r)),
                    Err(_) => {
                        conn = None;
                        (Status::Unknown, None)
                    }
                };
                ops.push(Op {
                    client: 1,
                    key: key as u32,
                    write,
                    value: if write { Some(value) } else { read },
                    start_us,
                    end_us: clock.us(),
                    status,
                    node: Some(primary),
                });
                std::thread::sleep(Duration::from_millis(1));
            }
            ops
        })
    };
    // The majority client: a routing client that never asks the cut-off primary for the map.
    let majority = {
        let (keys, stop, seeds) = (keys.clone(), stop.clone(), seeds.clone());
        std::thread::spawn(move || {
            let mut client = ClusterClient::new(seeds, Budget::default());
            let mut ops = Vec::new();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let key = seq as usize % keys.len();
                let value = value_of(2, seq);
                let start_us = clock.us();
                let outcome = client.set(keys[key].as_bytes(), value.to_string().as_bytes(), 0);
                ops.push(record_write(
                    2, key as u32, value, start_us, clock, &outcome,
                ));
                std::thread::sleep(Duration::from_millis(1));
            }
            ops
        })
    };

    std::thread::sleep(Duration::from_secs(1));
    let others: Vec<&str> = cluster
        .nodes
        .iter()
        .filter(|n| n.addr() != primary)
        .map(|n| n.ip.as_str())
        .collect();
    let cut_us = clock.us();
    partitions.isolate(&cluster.nodes[p].ip, &others)?;
    let cut_done_us = clock.us();
    std::thread::sleep(hold);
    let heal_us = clock.us();
    partitions.heal()?;
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let mut ops = minority
        .join()
        .map_err(|_| anyhow::anyhow!("minority client panicked"))?;
    ops.extend(
        majority
            .join()
            .map_err(|_| anyhow::anyhow!("majority client panicked"))?,
    );
    cluster.wait_healthy(Duration::from_secs(30))?;

    // The last lease was granted by a ping sent before the rule went in: it ends by then +
    // lease, give or take the nodes' millisecond clocks (a few ms of margin).
    let expiry_us = cut_done_us + (LEASE_MS + CLOCK_MARGIN_MS) * 1000;
    let on_primary = |o: &&Op| {
        o.node == Some(primary)
            && o.status == Status::Ok
            && o.start_us >= cut_us
            && o.start_us < heal_us
    };
    let minority_writes: Vec<&Op> = ops.iter().filter(|o| o.write).filter(on_primary).collect();
    let acks_after_lease = minority_writes
        .iter()
        .filter(|o| o.start_us > expiry_us)
        .count() as u64;
    let reads_after_lease = ops
        .iter()
        .filter(|o| !o.write)
        .filter(on_primary)
        .filter(|o| o.start_us > expiry_us)
        .count() as u64;
    let finals = finals(seeds, &keys)?;
    let minority_finals = finals
        .values()
        .filter(|v| v.is_some_and(|v| v >> 40 == 1))
        .count() as u64;
    let majority_writable_ms = ops
        .iter()
        .filter(|o| {
            o.write
                && o.client == 2
                && o.status == Status::Ok
                && o.node != Some(primary)
                && o.start_us >= cut_us
        })
        .map(|o| (o.end_us - cut_us) / 1000)
        .min();
    Ok(SplitBrain {
        primary,
        partition_ms: (cut_us / 1000, heal_us / 1000),
        minority_acks: minority_writes.len() as u64,
        last_minority_ack_ms: minority_writes
            .iter()
            .map(|o| (o.start_us - cut_us) / 1000)
            .max(),
        acks_after_lease,
        reads_after_lease,
        minority_finals,
        verdict: check(&ops, &finals),
        majority_writable_ms,
    })
}

/// One `kill -9` trial's result.
#[derive(Debug)]
pub struct LostWrites {
    /// The killed primary.
    pub primary: SocketAddr,
    /// Writes acknowledged in the trial.
    pub acked: u64,
    /// Acknowledged writes lost.
    pub lost: u64,
    /// Keys holding a value no write produced, or a refused one.
    pub phantoms: u64,
    /// How long before the kill the earliest lost write was acknowledged (ms): the window
    /// of asynchronous replication.
    pub window_ms: Option<f64>,
    /// From the kill to the first write acknowledged by another node (ms).
    pub recovery_ms: Option<u64>,
    /// Writes that ran out of the retry budget.
    pub failed: u64,
    /// Reads that returned an overwritten value.
    pub stale_reads: u64,
}

/// Writers (each owning its keys, all in one primary's slots) write as fast as they can, with
/// `WAIT 1` after each write when `wait`; the primary is killed with `kill -9` after a second;
/// after three more seconds the final values are checked against what was acknowledged. The
/// killed node is restarted and the cluster waited on before returning.
pub fn lost_writes(
    cluster: &mut Cluster,
    wait: bool,
    writers: u32,
    keys_per_writer: usize,
) -> Result<LostWrites> {
    let mut rng = rand::thread_rng();
    let Picked {
        index: p,
        addr: primary,
        id: primary_id,
        topology,
    } = pick_primary(cluster, &mut rng)?;
    let prefix = format!("lw{}-", rng.gen::<u32>());
    let keys = Arc::new(keys_of(
        &topology,
        &primary_id,
        &prefix,
        keys_per_writer * writers as usize,
    ));
    let seeds = cluster.addrs();
    let clock = Clock(Instant::now());
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for w in 0..writers {
        let (keys, stop, seeds) = (keys.clone(), stop.clone(), seeds.clone());
        threads.push(std::thread::spawn(move || {
            let mut client = ClusterClient::new(seeds, Budget::default());
            let mut ops = Vec::new();
            let mut seq = 0u64;
            let mine = w as usize * keys_per_writer;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let key = mine + seq as usize % keys_per_writer;
                let value = value_of(w + 1, seq);
                let start_us = clock.us();
                let outcome = client.set(
                    keys[key].as_bytes(),
                    value.to_string().as_bytes(),
                    u32::from(wait),
                );
                ops.push(record_write(
                    w + 1,
                    key as u32,
                    value,
                    start_us,
                    clock,
                    &outcome,
                ));
            }
            ops
        }));
    }
    std::thread::sleep(Duration::from_secs(1));
    let kill_us = clock.us();
    cluster.nodes[p].kill();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let mut ops = Vec::new();
    for t in threads {
        ops.extend(t.join().map_err(|_| anyhow::anyhow!("writer panicked"))?);
    }
    let recovery_ms = ops
        .iter()
        .filter(|o| o.status == Status::Ok && o.end_us > kill_us && o.node != Some(primary))
        .map(|o| (o.end_us - kill_us) / 1000)
        .min();
    let finals = finals(seeds, &keys)?;
    let verdict = check(&ops, &finals);
    cluster.nodes[p].start()?;
    cluster.wait_healthy(Duration::from_secs(30))?;
    Ok(LostWrites {
        primary,
        acked: verdict.acked_writes,
        lost: verdict.lost.len() as u64,
        phantoms: verdict.phantoms.len() as u64,
        window_ms: verdict
            .lost
            .iter()
            .map(|l| kill_us.saturating_sub(l.acked_us) as f64 / 1000.0)
            .reduce(f64::max),
        recovery_ms,
        failed: ops.iter().filter(|o| o.status != Status::Ok).count() as u64,
        stale_reads: verdict.stale_reads,
    })
}

/// Retrying clients issuing a steady mix of reads and writes over named keys, recording
/// every operation.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(Vec<Op>, u64)>>,
}

/// One load client: cluster-aware (RESP, following redirects) or forwarding (memcached
/// protocol, any node serves any key).
enum AnyClient {
    Cluster(ClusterClient),
    Forwarding(ForwardingClient),
}

impl AnyClient {
    fn set(&mut self, key: &[u8], value: &[u8]) -> Outcome {
        match self {
            AnyClient::Cluster(c) => c.set(key, value, 0),
            AnyClient::Forwarding(c) => c.set(key, value),
        }
    }

    fn get(&mut self, key: &[u8]) -> Outcome {
        match self {
            AnyClient::Cluster(c) => c.get(key),
            AnyClient::Forwarding(c) => c.get(key),
        }
    }

    fn retries(&self) -> u64 {
        match self {
            AnyClient::Cluster(c) => c.retries,
            AnyClient::Forwarding(c) => c.retries,
        }
    }
}

impl Load {
    /// Starts `clients` threads issuing `rate` operations per second in all, half `SET`s (of
    /// unique values) and half `GET`s, of keys chosen uniformly from `names`. The clients are
    /// cluster-aware RESP clients of `seeds`, except that when `forwarding` (memcached
    /// addresses) is not empty, every other one is a memcached client of those nodes.
    fn start(
        seeds: Vec<SocketAddr>,
        forwarding: Vec<SocketAddr>,
        names: Arc<Vec<String>>,
        clients: u32,
        rate: u32,
        clock: Clock,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let interval = Duration::from_secs_f64(f64::from(clients) / f64::from(rate.max(1)));
        let mut threads = Vec::new();
        for c in 0..clients {
            let (names, stop, seeds) = (names.clone(), stop.clone(), seeds.clone());
            let forwarding = forwarding.clone();
            threads.push(std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(c));
                let mut client = if c % 2 == 1 && !forwarding.is_empty() {
                    AnyClient::Forwarding(ForwardingClient::new(
                        forwarding,
                        c as usize / 2,
                        Budget::default(),
                    ))
                } else {
                    AnyClient::Cluster(ClusterClient::new(seeds, Budget::default()))
                };
                let mut ops = Vec::new();
                let mut retried = 0u64;
                let mut next = Instant::now();
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    }
                    next = next.max(now - interval * 10) + interval;
                    seq += 1;
                    let key = rng.gen_range(0..names.len());
                    let write = rng.gen_bool(0.5);
                    let before = client.retries();
                    let start_us = clock.us();
                    let op = if write {
                        let value = value_of(c + 1, seq);
                        let outcome =
                            client.set(names[key].as_bytes(), value.to_string().as_bytes());
                        record_write(c + 1, key as u32, value, start_us, clock, &outcome)
                    } else {
                        let outcome = client.get(names[key].as_bytes());
                        let (status, value, node) = match &outcome {
                            Outcome::Done(Reply::Error(_), at) => {
                                (Status::Refused, None, Some(*at))
                            }
                            Outcome::Done(r, at) => (Status::Ok, parse_value(r), Some(*at)),
                            Outcome::Failed(_) => (Status::Unknown, None, None),
                        };
                        Op {
                            client: c + 1,
                            key: key as u32,
                            write: false,
                            value,
                            start_us,
                            end_us: clock.us(),
                            status,
                            node,
                        }
                    };
                    if client.retries() > before {
                        retried += 1;
                    }
                    ops.push(op);
                }
                (ops, retried)
            }));
        }
        Load { stop, threads }
    }

    /// Stops the clients: every operation, and how many needed more than one attempt.
    fn finish(self) -> Result<(Vec<Op>, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut ops = Vec::new();
        let mut retried = 0;
        for t in self.threads {
            let (o, r) = t.join().map_err(|_| anyhow::anyhow!("client panicked"))?;
            ops.extend(o);
            retried += r;
        }
        Ok((ops, retried))
    }
}

/// A fault the availability run injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9`, restarted after the hold.
    Kill,
    /// `SIGSTOP`, `SIGCONT` after the hold.
    Pause,
    /// Cut off from every other node, healed after the hold.
    Partition,
}

/// One injected fault.
#[derive(Debug, Clone)]
pub struct Injected {
    /// What.
    pub fault: Fault,
    /// On which node.
    pub node: SocketAddr,
    /// Its role then: primary, replica, and whether it led Raft.
    pub role: String,
    /// When it began and when the cluster was whole again (ms from the start).
    pub window_ms: (u64, u64),
    /// Acknowledged writes lost that were acknowledged in this window.
    pub lost: u64,
}

/// What the availability run saw.
#[derive(Debug)]
pub struct Availability {
    /// Operations issued.
    pub ops: u64,
    /// Operations that did not succeed within the retry budget.
    pub failed: u64,
    /// Operations that needed more than one attempt.
    pub retried: u64,
    /// Latency of successful operations, in µs: p50, p99, p99.9, max.
    pub latency_us: [u64; 4],
    /// p99 (µs) of operations outside every fault window, and how many those were.
    pub quiet_p99_us: u64,
    /// Operations outside every fault window.
    pub quiet_ops: u64,
    /// The faults, in order.
    pub faults: Vec<Injected>,
    /// The history checker's verdict.
    pub verdict: Verdict,
    /// How long the run lasted.
    pub elapsed: Duration,
}

impl Availability {
    /// Successful operations over all, in percent.
    pub fn percent(&self) -> f64 {
        100.0 * (self.ops - self.failed) as f64 / self.ops.max(1) as f64
    }
}

/// The shape of an availability run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// How long faults are injected.
    pub duration: Duration,
    /// Retrying clients.
    pub clients: u32,
    /// Operations per second, all clients together: half reads, half writes.
    pub rate: u32,
    /// Keys, chosen uniformly.
    pub keys: usize,
    /// How long a fault lasts before it is healed.
    pub hold: Duration,
    /// Quiet time after the cluster is whole again, before the next fault.
    pub quiet: Duration,
}

/// Random faults (a kill, a pause or a partition of a random node, one at a time, each held
/// for `plan.hold` and then healed, the next only after the cluster is whole again and
/// `plan.quiet` has passed) under load from retrying clients.
pub fn availability(
    cluster: &mut Cluster,
    partitions: &Partitions,
    plan: Plan,
    mut log: impl FnMut(&Injected),
) -> Result<Availability> {
    let Plan {
        duration,
        clients,
        rate,
        keys,
        hold,
        quiet,
    } = plan;
    let mut rng = rand::thread_rng();
    let names: Arc<Vec<String>> = Arc::new((0..keys).map(|i| format!("av{i}")).collect());
    let seeds = cluster.addrs();
    let clock = Clock(Instant::now());
    let load = Load::start(
        seeds.clone(),
        Vec::new(),
        names.clone(),
        clients,
        rate,
        clock,
    );

    let roles = |cluster: &Cluster, addr: SocketAddr| -> String {
        match cluster.topology() {
            Ok(t) => match t.by_addr(addr) {
                Some(n) => format!(
                    "{}{}",
                    if n.primary { "primary" } else { "replica" },
                    if n.id == t.leader {
                        ", Raft leader"
                    } else {
                        ""
                    }
                ),
                None => "unknown".into(),
            },
            Err(_) => "unknown".into(),
        }
    };
    let mut faults = Vec::new();
    let started = Instant::now();
    std::thread::sleep(quiet);
    while started.elapsed() + hold < duration {
        let fault = *[Fault::Kill, Fault::Pause, Fault::Partition]
            .choose(&mut rng)
            .expect("three faults");
        let i = rng.gen_range(0..cluster.nodes.len());
        let node = cluster.nodes[i].addr();
        let role = roles(cluster, node);
        let begin = clock.us() / 1000;
        match fault {
            Fault::Kill => cluster.nodes[i].kill(),
            Fault::Pause => cluster.nodes[i].pause()?,
            Fault::Partition => {
                let others: Vec<&str> = cluster
                    .nodes
                    .iter()
                    .filter(|n| n.addr() != node)
                    .map(|n| n.ip.as_str())
                    .collect();
                partitions.isolate(&cluster.nodes[i].ip, &others)?;
            }
        }
        std::thread::sleep(hold);
        match fault {
            Fault::Kill => cluster.nodes[i].start()?,
            Fault::Pause => cluster.nodes[i].resume()?,
            Fault::Partition => partitions.heal()?,
        }
        cluster.wait_healthy(Duration::from_secs(60))?;
        let injected = Injected {
            fault,
            node,
            role,
            window_ms: (begin, clock.us() / 1000),
            lost: 0,
        };
        log(&injected);
        faults.push(injected);
        std::thread::sleep(quiet);
    }
    let (ops, retried) = load.finish()?;
    let elapsed = started.elapsed();
    let written: Vec<u32> = {
        let mut k: Vec<u32> = ops.iter().filter(|o| o.write).map(|o| o.key).collect();
        k.sort_unstable();
        k.dedup();
        k
    };
    let finals_list: Vec<String> = written.iter().map(|&k| names[k as usize].clone()).collect();
    let read = finals(seeds, &finals_list)?;
    let finals: HashMap<u32, Option<u64>> = written
        .iter()
        .enumerate()
        .map(|(i, &k)| (k, read.get(&(i as u32)).copied().flatten()))
        .collect();
    let verdict = check(&ops, &finals);
    for lost in &verdict.lost {
        let ms = lost.acked_us / 1000;
        if let Some(f) = faults
            .iter_mut()
            .find(|f| f.window_ms.0 <= ms && ms <= f.window_ms.1)
        {
            f.lost += 1;
        }
    }

    let mut all = Histogram::<u64>::new(3)?;
    let mut quiet_hist = Histogram::<u64>::new(3)?;
    let windows: Vec<(u64, u64)> = faults
        .iter()
        .map(|f| (f.window_ms.0 * 1000, f.window_ms.1 * 1000))
        .collect();
    for o in ops.iter().filter(|o| o.status == Status::Ok) {
        let latency = o.end_us - o.start_us;
        all.record(latency.max(1))?;
        if !windows
            .iter()
            .any(|&(a, b)| o.start_us <= b && o.end_us >= a)
        {
            quiet_hist.record(latency.max(1))?;
        }
    }
    Ok(Availability {
        ops: ops.len() as u64,
        failed: ops.iter().filter(|o| o.status != Status::Ok).count() as u64,
        retried,
        latency_us: [
            all.value_at_quantile(0.5),
            all.value_at_quantile(0.99),
            all.value_at_quantile(0.999),
            all.max(),
        ],
        quiet_p99_us: quiet_hist.value_at_quantile(0.99),
        quiet_ops: quiet_hist.len(),
        faults,
        verdict,
        elapsed,
    })
}

/// One step of a scaling run.
#[derive(Debug, Clone)]
pub struct Step {
    /// What was done.
    pub action: String,
    /// Shards after it.
    pub shards: usize,
    /// Slots whose owner changed.
    pub slots_moved: usize,
    /// Keys moved, as the CLI reported them, and the keys in the cluster before.
    pub keys_moved: u64,
    /// Keys in the cluster before the step.
    pub keys_before: u64,
    /// The fewest keys the step could move (the new shard's fair share on an add, the
    /// leaving shard's keys on a remove).
    pub keys_optimal: u64,
    /// How long the command took, and its window (ms from the start).
    pub window_ms: (u64, u64),
    /// Operations per second completed, and their p99 (µs), during the step.
    pub ops_per_s: f64,
    /// The p99 latency of operations during the step, in µs.
    pub p99_us: u64,
    /// The same p99 for the cluster-aware and for the forwarding (memcached) clients.
    pub p99_by_kind_us: (u64, u64),
}

/// What a scaling run saw.
#[derive(Debug)]
pub struct Scaling {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Operations issued, failed beyond the retry budget, and issued outside any step.
    pub ops: u64,
    /// Operations that failed beyond the retry budget.
    pub failed: u64,
    /// Operations per second and p99 (µs) outside the steps.
    pub steady: (f64, u64),
    /// The history checker's verdict (every key written before or during the moves).
    pub verdict: Verdict,
}

fn keys_in_cluster(cluster: &Cluster) -> Result<u64> {
    let topology = cluster.topology()?;
    let mut total = 0;
    for line in topology
        .nodes
        .iter()
        .filter(|n| n.primary && !n.ranges.is_empty())
    {
        let i = cluster
            .index_of(&line.addr)
            .context("primary is a known node")?;
        match cluster.nodes[i].call(&["DBSIZE"])? {
            Reply::Int(n) => total += n as u64,
            other => bail!("DBSIZE answered {other:?}"),
        }
    }
    Ok(total)
}

fn slot_owners(cluster: &Cluster) -> Result<Vec<String>> {
    let topology = cluster.topology()?;
    Ok((0..16384u16)
        .map(|s| topology.owner(s).map(|o| o.id.clone()).unwrap_or_default())
        .collect())
}

/// Gives every key a first value (client 0) before anything happens; the writes' history.
fn preload(cluster: &Cluster, names: &[String], clock: Clock) -> Vec<Op> {
    let mut client = ClusterClient::new(cluster.addrs(), Budget::default());
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let value = value_of(0, i as u64);
            let start_us = clock.us();
            let outcome = client.set(name.as_bytes(), value.to_string().as_bytes(), 0);
            record_write(0, i as u32, value, start_us, clock, &outcome)
        })
        .collect()
}

/// Grows the cluster by one shard per pair of `extra` addresses (add-node), then shrinks it
/// back (remove-node of each added shard's primary, then of its replica), under a steady
/// load of retrying clients over `keys` keys, all written once before the first step. Checks
/// every key against the writers' history at the end.
pub fn elastic(
    cluster: &mut Cluster,
    extra: &[String],
    clients: u32,
    rate: u32,
    keys: usize,
) -> Result<Scaling> {
    let seed = cluster.nodes[0].cluster_addr();
    let names: Arc<Vec<String>> = Arc::new((0..keys).map(|i| format!("el{i}")).collect());
    let clock = Clock(Instant::now());
    let preload = preload(cluster, &names, clock);
    let load = Load::start(
        cluster.addrs(),
        cluster.memcache_addrs(),
        names.clone(),
        clients,
        rate,
        clock,
    );
    std::thread::sleep(Duration::from_secs(2));
    let mut steps = Vec::new();
    // `optimal`: the fewest keys the step can move; by default the new shard's fair share.
    let mut step = |cluster: &mut Cluster,
                    action: String,
                    args: Vec<String>,
                    optimal: Option<u64>|
     -> Result<()> {
        let before = slot_owners(cluster)?;
        let keys_before = keys_in_cluster(cluster)?;
        let shards_before = before
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let begin = clock.us() / 1000;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = cluster.admin(&args)?;
        let end = clock.us() / 1000;
        let after = slot_owners(cluster)?;
        let shards = after
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        // The progress lines count up: the last one has the total.
        let keys_moved = out
            .lines()
            .filter_map(|l| l.split(" slots, ").nth(1))
            .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
            .next_back()
            .unwrap_or(0);
        steps.push(Step {
            action,
            shards,
            slots_moved: before.iter().zip(&after).filter(|(a, b)| a != b).count(),
            keys_moved,
            keys_before,
            keys_optimal: optimal.unwrap_or(keys_before / (shards_before as u64 + 1)),
            window_ms: (begin, end),
            ops_per_s: 0.0,
            p99_us: 0,
            p99_by_kind_us: (0, 0),
        });
        Ok(())
    };
    // Grow, one shard (a primary and a replica) at a time.
    let mut added = Vec::new();
    for pair in extra.chunks(2) {
        let mut args = vec!["add-node".to_string()];
        for ip in pair {
            let i = cluster.start_node(ip)?;
            args.push(cluster.nodes[i].cluster_addr());
            added.push(cluster.nodes[i].addr());
        }
        args.extend(["--to".to_string(), seed.clone()]);
        step(cluster, format!("add {}", pair.join(" ")), args, None)?;
        cluster.wait_healthy(Duration::from_secs(30))?;
    }
    // Shrink: the newest shard first.
    for pair in added.chunks(2).rev() {
        let topology = cluster.topology()?;
        let primary = pair
            .iter()
            .find(|a| topology.by_addr(**a).is_some_and(|n| n.primary))
            .copied()
            .context("an added shard has a primary")?;
        let primary_index = cluster.index_of(&primary.to_string()).context("known")?;
        let leaving_keys = match cluster.nodes[primary_index].call(&["DBSIZE"])? {
            Reply::Int(n) => n as u64,
            other => bail!("DBSIZE answered {other:?}"),
        };
        step(
            cluster,
            format!("remove {primary}"),
            vec![
                "remove-node".into(),
                primary.to_string(),
                "--to".into(),
                seed.clone(),
            ],
            Some(leaving_keys),
        )?;
        cluster.forget_node(primary_index);
        for other in pair.iter().filter(|a| **a != primary) {
            // Without --to: the CLI goes through another member the node names.
            let i = cluster.index_of(&other.to_string()).context("known")?;
            cluster.admin(&["remove-node", &cluster.nodes[i].cluster_addr()])?;
            cluster.forget_node(i);
        }
        cluster.wait_healthy(Duration::from_secs(30))?;
    }
    std::thread::sleep(Duration::from_secs(1));
    let (mut ops, _) = load.finish()?;
    ops.extend(preload);
    let finals = finals(cluster.addrs(), &names)?;
    let verdict = check(&ops, &finals);
    let window_stats = |inside: &dyn Fn(&Op) -> bool, span_ms: u64| -> Result<(f64, u64)> {
        let mut h = Histogram::<u64>::new(3)?;
        let mut n = 0u64;
        for o in ops
            .iter()
            .filter(|o| o.client != 0 && o.status == Status::Ok && inside(o))
        {
            h.record((o.end_us - o.start_us).max(1))?;
            n += 1;
        }
        Ok((
            n as f64 * 1000.0 / span_ms.max(1) as f64,
            h.value_at_quantile(0.99),
        ))
    };
    for s in &mut steps {
        let (a, b) = (s.window_ms.0 * 1000, s.window_ms.1 * 1000);
        let (rate, p99) = window_stats(
            &|o: &Op| o.start_us >= a && o.end_us <= b,
            s.window_ms.1 - s.window_ms.0,
        )?;
        s.ops_per_s = rate;
        s.p99_us = p99;
        // Forwarding clients have even ids (see `Load::start`).
        let span = s.window_ms.1 - s.window_ms.0;
        let (_, cluster_p99) = window_stats(
            &|o: &Op| o.client % 2 == 1 && o.start_us >= a && o.end_us <= b,
            span,
        )?;
        let (_, forwarding_p99) = window_stats(
            &|o: &Op| o.client.is_multiple_of(2) && o.start_us >= a && o.end_us <= b,
            span,
        )?;
        s.p99_by_kind_us = (cluster_p99, forwarding_p99);
    }
    let load_ops: Vec<&Op> = ops.iter().filter(|o| o.client != 0).collect();
    let first = load_ops.iter().map(|o| o.start_us).min().unwrap_or(0);
    let last = load_ops.iter().map(|o| o.end_us).max().unwrap_or(0);
    let in_steps: u64 = steps.iter().map(|s| s.window_ms.1 - s.window_ms.0).sum();
    let windows: Vec<(u64, u64)> = steps
        .iter()
        .map(|s| (s.window_ms.0 * 1000, s.window_ms.1 * 1000))
        .collect();
    let steady = window_stats(
        &|o: &Op| {
            !windows
                .iter()
                .any(|&(a, b)| o.start_us <= b && o.end_us >= a)
        },
        ((last - first) / 1000).saturating_sub(in_steps),
    )?;
    Ok(Scaling {
        ops: load_ops.len() as u64,
        failed: load_ops.iter().filter(|o| o.status != Status::Ok).count() as u64,
        steps,
        steady,
        verdict,
    })
}

/// Which node a migration crash test kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Victim {
    /// The primary of a shard giving slots away (not the Raft leader).
    Source,
    /// The primary of the new shard, importing.
    Target,
    /// The Raft leader, which drives the migration.
    Leader,
}

/// What a migration crash run saw.
#[derive(Debug)]
pub struct MigrationCrash {
    /// The killed node.
    pub victim: SocketAddr,
    /// When it was killed and when `add-node` finished (ms from the start).
    pub killed_ms: u64,
    /// When `add-node` finished.
    pub done_ms: u64,
    /// Slots still migrating at the end: must be 0.
    pub migrations_left: usize,
    /// Shards serving slots at the end.
    pub shards: usize,
    /// Operations issued and failed beyond the retry budget.
    pub ops: u64,
    /// Operations that failed beyond the retry budget.
    pub failed: u64,
    /// The history checker's verdict.
    pub verdict: Verdict,
    /// Lost acknowledged writes that the killed node acknowledged (a failover's bound).
    pub lost_on_victim: usize,
}

/// Adds a shard (two nodes from `extra`) with a rate-limited migration (the cluster's nodes
/// should run with `--migration-rate`), kills the source or the target primary with
/// `kill -9` in the middle, lets `add-node` finish, restarts the node, and checks every key.
pub fn migration_crash(
    cluster: &mut Cluster,
    extra: &[String],
    victim: Victim,
    keys: usize,
    value_bytes: usize,
) -> Result<MigrationCrash> {
    let clock = Clock(Instant::now());
    let names: Arc<Vec<String>> = Arc::new((0..keys).map(|i| format!("mc{i}")).collect());
    let pad = "x".repeat(value_bytes);
    let mut preload = Vec::with_capacity(keys);
    {
        let mut client = ClusterClient::new(cluster.addrs(), Budget::default());
        for (i, name) in names.iter().enumerate() {
            let value = value_of(0, i as u64);
            let start_us = clock.us();
            let text = format!("{value}:{pad}");
            let outcome = client.set(name.as_bytes(), text.as_bytes(), 0);
            preload.push(record_write(0, i as u32, value, start_us, clock, &outcome));
        }
    }
    let topology = cluster.topology()?;
    // The CLI talks to a node that survives: not the victim, which is chosen below among
    // the nodes other than the first.
    let seed = cluster.nodes[0].cluster_addr();
    let load = Load::start(
        cluster.addrs(),
        cluster.memcache_addrs(),
        names.clone(),
        2,
        400,
        clock,
    );
    let mut args = vec!["cluster".to_string(), "add-node".to_string()];
    let mut added = Vec::new();
    for ip in extra.iter().take(2) {
        let i = cluster.start_node(ip)?;
        args.push(cluster.nodes[i].cluster_addr());
        added.push(cluster.nodes[i].addr());
    }
    args.extend(["--to".to_string(), seed.clone()]);
    let bin = cluster.bin().to_path_buf();
    let cli = std::thread::spawn(move || std::process::Command::new(bin).args(&args).output());
    std::thread::sleep(Duration::from_millis(1500));
    let victim_addr = match victim {
        Victim::Source => {
            let old = topology
                .nodes
                .iter()
                .filter(|n| n.primary && n.id != topology.leader)
                .filter(|n| cluster.index_of(&n.addr).is_some_and(|i| i != 0))
                .map(|n| n.addr.clone())
                .next()
                .context("a source primary to kill")?;
            old.parse::<SocketAddr>()?
        }
        Victim::Leader => {
            let leader = topology
                .nodes
                .iter()
                .find(|n| n.id == topology.leader)
                .context("the Raft leader")?;
            leader.addr.parse::<SocketAddr>()?
        }
        Victim::Target => {
            let now = cluster.topology()?;
            *added
                .iter()
                .find(|a| now.by_addr(**a).is_some_and(|n| n.primary))
                .context("the new shard's primary")?
        }
    };
    let v = cluster
        .index_of(&victim_addr.to_string())
        .context("victim is a node")?;
    let killed_ms = clock.us() / 1000;
    cluster.nodes[v].kill();
    let out = cli
        .join()
        .map_err(|_| anyhow::anyhow!("cli thread panicked"))??;
    let done_ms = clock.us() / 1000;
    if !out.status.success() {
        bail!(
            "add-node failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    cluster.nodes[v].start()?;
    cluster.wait_healthy(Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(1));
    let (mut ops, _) = load.finish()?;
    ops.extend(preload);
    let finals = finals(cluster.addrs(), &names)?;
    let verdict = check(&ops, &finals);
    let end = cluster.topology()?;
    let migrations_left = cluster.nodes[0]
        .call(&["CLUSTER", "INFO"])?
        .text()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("cluster_slots_migrating:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0);
    let shards = end
        .nodes
        .iter()
        .filter(|n| n.primary && !n.ranges.is_empty())
        .count();
    let load_ops: Vec<&Op> = ops.iter().filter(|o| o.client != 0).collect();
    Ok(MigrationCrash {
        victim: victim_addr,
        killed_ms,
        done_ms,
        migrations_left,
        shards,
        ops: load_ops.len() as u64,
        failed: load_ops.iter().filter(|o| o.status != Status::Ok).count() as u64,
        lost_on_victim: verdict
            .lost
            .iter()
            .filter(|l| l.node == Some(victim_addr))
            .count(),
        verdict,
    })
}

/// One node's turn in a rolling restart.
#[derive(Debug)]
pub struct Restart {
    /// The node.
    pub node: SocketAddr,
    /// Whether it was a primary when it got SIGTERM.
    pub was_primary: bool,
    /// Whether, being a primary, it had handed its slots to a replica when it exited.
    pub handed_over: bool,
    /// From SIGTERM to the process's exit (a primary hands its slots over first).
    pub stop: Duration,
    /// From its start again to the cluster's being healthy (every replica in sync).
    pub back: Duration,
}

/// What a rolling restart saw.
#[derive(Debug)]
pub struct RollingRestart {
    /// The nodes' turns, in order.
    pub restarts: Vec<Restart>,
    /// Operations issued by the load.
    pub ops: u64,
    /// Operations that failed beyond the retry budget.
    pub failed: u64,
    /// The history check of every key.
    pub verdict: Verdict,
}

/// Restarts every node in turn as an orchestrator's rolling update does: `SIGTERM` (a primary
/// hands its slots to a replica before it exits), start again, and wait until the cluster is
/// healthy (every replica in sync) before the next. Meanwhile retrying clients (half
/// cluster-aware, half memcached clients of any node) read and write `keys` keys; at the end
/// every key is checked against their history.
pub fn rolling_restart(
    cluster: &mut Cluster,
    clients: u32,
    rate: u32,
    keys: usize,
) -> Result<RollingRestart> {
    let names: Arc<Vec<String>> = Arc::new((0..keys).map(|i| format!("rr{i}")).collect());
    let clock = Clock(Instant::now());
    let preload = preload(cluster, &names, clock);
    let load = Load::start(
        cluster.addrs(),
        cluster.memcache_addrs(),
        names.clone(),
        clients,
        rate,
        clock,
    );
    std::thread::sleep(Duration::from_secs(1));
    let mut restarts = Vec::new();
    for i in 0..cluster.nodes.len() {
        let node = cluster.nodes[i].addr();
        let was_primary = cluster.topology()?.by_addr(node).is_some_and(|n| n.primary);
        let stop = cluster.nodes[i].terminate(Duration::from_secs(30))?;
        // Handed over: the freshest view (the Raft leader's, at least) has it a replica as
        // soon as it has exited. A primary that just died is still a primary there until
        // failure detection acts, most of a second later.
        let handed_over =
            was_primary && !cluster.topology()?.by_addr(node).is_some_and(|n| n.primary);
        let started = Instant::now();
        cluster.nodes[i].start()?;
        cluster.wait_healthy(Duration::from_secs(60))?;
        restarts.push(Restart {
            node,
            was_primary,
            handed_over,
            stop,
            back: started.elapsed(),
        });
    }
    std::thread::sleep(Duration::from_secs(1));
    let (mut ops, _) = load.finish()?;
    let load_ops = ops.len() as u64;
    let failed = ops.iter().filter(|o| o.status != Status::Ok).count() as u64;
    ops.extend(preload);
    let finals = finals(cluster.addrs(), &names)?;
    Ok(RollingRestart {
        restarts,
        ops: load_ops,
        failed,
        verdict: check(&ops, &finals),
    })
}
