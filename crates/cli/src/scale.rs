//! `ringcache cluster add-node | remove-node | rebalance`: elastic scaling from the command
//! line. The CLI plans with the same pure functions the nodes use (`cluster::migrate`),
//! proposes the changes to the Raft leader over the bus, and follows the migrations the
//! leader then drives, with a progress line (slots, bytes, rate, time left).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use cluster::bus::{Client, Request, Response};
use cluster::node::parse_node_addr;
use cluster::{migrate, Change, ClusterState, NodeId, ShardId};

use crate::{resp_client, status, topology};

/// How long the CLI follows a migration before giving up (it goes on in the cluster).
const FOLLOW_LIMIT: Duration = Duration::from_secs(3600);

/// A bus client that introduces itself as a member of `cluster_id` (needed to propose).
fn member_client(bus_addr: &str, cluster_id: &str) -> Client {
    Client::new(
        bus_addr.to_string(),
        Arc::new(Mutex::new(Some(cluster_id.to_string()))),
        None,
        false,
    )
}

fn bus_addr(node: &str) -> anyhow::Result<String> {
    let (host, _, bus) = parse_node_addr(node).map_err(|e| anyhow!(e))?;
    Ok(format!("{host}:{bus}"))
}

/// Proposes `change` to the Raft leader (found through `seed`); the new epoch.
pub async fn propose(seed: &str, change: Change) -> anyhow::Result<u64> {
    let me = status(seed).await?;
    let cluster_id = me
        .cluster_id
        .ok_or_else(|| anyhow!("{seed} is in no cluster"))?;
    let mut target = bus_addr(seed)?;
    for _ in 0..20 {
        let answer = member_client(&target, &cluster_id)
            .call(Request::Propose(change.clone()), Duration::from_secs(10))
            .await;
        match answer {
            Ok(Response::Proposed(Ok(epoch))) => return Ok(epoch),
            Ok(Response::Proposed(Err(why))) => bail!("refused: {why}"),
            Ok(Response::NotLeader(Some((_, addr)))) => target = addr,
            Ok(Response::NotLeader(None)) | Err(_) => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Ok(other) => bail!("unexpected answer {other:?}"),
        }
    }
    bail!("no Raft leader accepted the change")
}

/// Finds a member by `host:port`, `host:port@bus` or its id in hex.
fn find_member(state: &ClusterState, node: &str) -> anyhow::Result<NodeId> {
    if let Ok(id) = u64::from_str_radix(node, 16) {
        if state.members.contains_key(&id) {
            return Ok(id);
        }
    }
    let (host, port, _) = parse_node_addr(node).map_err(|e| anyhow!(e))?;
    state
        .members
        .values()
        .find(|m| m.host == host && m.port == port)
        .map(|m| m.id)
        .ok_or_else(|| anyhow!("{node} is not a member"))
}

/// Another member of the cluster of `node` (an address), to drive its removal through: the
/// leaving node stops hearing from the cluster once it is out.
async fn other_member(node: &str) -> anyhow::Result<String> {
    if parse_node_addr(node).is_err() {
        bail!("{node} is not an address: name a member to go through with --to SEED");
    }
    let state = topology(node).await?;
    let id = find_member(&state, node)?;
    let mut others: Vec<_> = state.members.values().filter(|m| m.id != id).collect();
    // A primary first: it stays a member throughout.
    others.sort_by_key(|m| !state.seat_of(m.id).is_some_and(|(_, primary)| primary));
    others
        .first()
        .map(|m| format!("{}:{}@{}", m.host, m.port, m.bus_port))
        .ok_or_else(|| anyhow!("{node} is the cluster's only member"))
}

/// Adds `nodes` (started with `--cluster-enabled`, in no cluster) through `seed`, forms new
/// shards from the spare nodes (`replicas` each, by default as many as the cluster's shards
/// have), and unless `rebalance` is false moves slots onto them.
pub async fn add_nodes(
    seed: &str,
    nodes: &[String],
    replicas: Option<usize>,
    rebalance: bool,
) -> anyhow::Result<()> {
    let cluster_id = status(seed)
        .await?
        .cluster_id
        .ok_or_else(|| anyhow!("{seed} is in no cluster"))?;
    for node in nodes {
        let st = status(node).await?;
        match &st.cluster_id {
            Some(c) if *c == cluster_id => {}
            Some(c) => bail!("{node} is in another cluster ({c})"),
            None => {
                let meet = Request::Meet {
                    cluster_id: cluster_id.clone(),
                };
                match crate::admin_client(node)?
                    .call(meet, Duration::from_secs(5))
                    .await?
                {
                    Response::Ok => {}
                    other => bail!("{node} refused to join: {other:?}"),
                }
            }
        }
        let epoch = propose(seed, Change::Join(st.member.clone())).await?;
        println!("{node} joined as {:016x} (epoch {epoch})", st.id);
    }
    let state = topology(seed).await?;
    let replicas =
        replicas.unwrap_or_else(|| state.shards.values().next().map_or(1, |s| s.replicas.len()));
    let shards = migrate::new_shards(&state, replicas).map_err(|e| anyhow!(e))?;
    if shards.is_empty() {
        println!(
            "{} spare node(s): too few for a new shard of 1 primary and {replicas} replica(s); \
             they stand by to replace failed replicas",
            state.spares().len()
        );
    }
    for shard in shards {
        let epoch = propose(seed, Change::AddShard(shard.clone())).await?;
        println!(
            "shard {} formed: primary {:016x}, replicas {:?} (epoch {epoch})",
            shard.id,
            shard.primary,
            shard
                .replicas
                .iter()
                .map(|r| format!("{r:016x}"))
                .collect::<Vec<_>>()
        );
    }
    if rebalance {
        rebalance_over(seed, None, Weight::Slots).await?;
    }
    Ok(())
}

/// What a rebalance evens out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Weight {
    /// The same number of slots on every shard.
    Slots,
    /// Slots in proportion to each shard primary's `maxmemory`.
    Memory,
}

/// Each shard's weight: 1 for `Slots`; its primary's `maxmemory` for `Memory`.
async fn weights(
    state: &ClusterState,
    shards: &[ShardId],
    weight: Weight,
) -> anyhow::Result<BTreeMap<ShardId, u64>> {
    let mut out = BTreeMap::new();
    for &id in shards {
        if weight == Weight::Slots {
            out.insert(id, 1);
            continue;
        }
        let primary = state
            .shards
            .get(&id)
            .and_then(|s| state.members.get(&s.primary))
            .ok_or_else(|| anyhow!("shard {id} has no primary"))?;
        let addr = primary.client_addr();
        let asked = addr.clone();
        let max = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
            let mut c = resp_client::Conn::connect(&asked, Duration::from_secs(2))?;
            let info = c.bulk(&["INFO", "memory"])?.unwrap_or_default();
            info.lines()
                .find_map(|l| l.strip_prefix("maxmemory:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| anyhow!("no maxmemory in INFO memory"))
        })
        .await??;
        if max == 0 {
            bail!(
                "shard {id}'s primary {addr} has no maxmemory: weighting by memory needs one on                  every primary"
            );
        }
        println!("shard {id}: maxmemory {max} bytes ({addr})");
        out.insert(id, max);
    }
    Ok(out)
}

/// Evens out the slots over every shard (but `without`), or weights them by memory, moving
/// the fewest, and follows the migrations to the end.
pub async fn rebalance_over(
    seed: &str,
    without: Option<ShardId>,
    weight: Weight,
) -> anyhow::Result<()> {
    let state = topology(seed).await?;
    let shards: Vec<ShardId> = state
        .shards
        .keys()
        .copied()
        .filter(|s| Some(*s) != without)
        .collect();
    let plan = migrate::plan_weighted(&state, &weights(&state, &shards, weight).await?);
    // Counted before anything moves: the leader starts draining at the first commit.
    let baseline = moved_bytes(&state).await;
    let mut moving: BTreeSet<u16> = state.migrations.keys().copied().collect();
    for (to, slots) in plan {
        println!("moving {} slots to shard {to}", slots.len());
        moving.extend(slots.iter().copied());
        propose(seed, Change::Migrate { slots, to }).await?;
    }
    if moving.is_empty() {
        println!("the slots are balanced already");
        return Ok(());
    }
    follow(seed, &moving, baseline).await
}

/// Removes a member: a primary's whole shard is drained onto the others first (its replicas
/// become spares); a replica's seat goes to a spare; then the member leaves.
pub async fn remove_node(seed: Option<&str>, node: &str) -> anyhow::Result<()> {
    let picked;
    let seed = match seed {
        Some(seed) => seed,
        None => {
            picked = other_member(node).await?;
            picked.as_str()
        }
    };
    let state = topology(seed).await?;
    let id = find_member(&state, node)?;
    match state.seat_of(id).map(|(s, p)| (s.clone(), p)) {
        Some((shard, true)) => {
            println!(
                "{node} is the primary of shard {}: draining its {} slots",
                shard.id,
                state.slots.iter().filter(|s| **s == shard.id).count()
            );
            rebalance_over(seed, Some(shard.id), Weight::Slots).await?;
            propose(seed, Change::RemoveShard(shard.id)).await?;
            println!(
                "shard {} removed; its replicas {:?} are spares now",
                shard.id,
                shard
                    .replicas
                    .iter()
                    .map(|r| format!("{r:016x}"))
                    .collect::<Vec<_>>()
            );
        }
        Some((shard, false)) => {
            let Some(spare) = state.spares().into_iter().next() else {
                bail!(
                    "{node} is a replica of shard {} and no spare can take its seat: add a \
                     node first, or remove the shard's primary (the whole shard)",
                    shard.id
                );
            };
            propose(
                seed,
                Change::Reseat {
                    shard: shard.id,
                    old: id,
                    new: spare,
                },
            )
            .await?;
            println!("spare {spare:016x} took its seat in shard {}", shard.id);
        }
        None => {}
    }
    let epoch = propose(seed, Change::Leave(id)).await?;
    println!("{node} left the cluster (epoch {epoch}); its process can be stopped");
    Ok(())
}

/// Follows the migrations of `slots` until none is left, printing progress (keys and bytes
/// moved since `baseline`).
async fn follow(seed: &str, slots: &BTreeSet<u16>, baseline: (u64, u64)) -> anyhow::Result<()> {
    let started = Instant::now();
    let total = slots.len();
    let tty = std::io::stdout().is_terminal();
    let mut last_print = Instant::now() - Duration::from_secs(10);
    // Any member can report progress: the seed may fail during the move.
    let mut nodes = vec![seed.to_string()];
    loop {
        let state = topology_any(&nodes).await?;
        nodes = std::iter::once(seed.to_string())
            .chain(
                state
                    .members
                    .values()
                    .map(|m| format!("{}:{}@{}", m.host, m.port, m.bus_port)),
            )
            .collect();
        let left = slots
            .iter()
            .filter(|s| state.migrations.contains_key(s))
            .count();
        let (keys, bytes) = moved_bytes(&state).await;
        let (keys, bytes) = (
            keys.saturating_sub(baseline.0),
            bytes.saturating_sub(baseline.1),
        );
        let done = total - left;
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let eta = if done > 0 {
            format!("{:.0} s", secs * left as f64 / done as f64)
        } else {
            "?".into()
        };
        let width = 30;
        let filled = width * done / total.max(1);
        let line = format!(
            "[{}{}] {done}/{total} slots, {keys} keys, {:.1} MB, {:.1} MB/s, {:.0} keys/s, {eta} left",
            "#".repeat(filled),
            "-".repeat(width - filled),
            bytes as f64 / 1e6,
            bytes as f64 / 1e6 / secs,
            keys as f64 / secs,
        );
        if tty {
            print!("\r{line}");
            std::io::stdout().flush()?;
        } else if left == 0 || last_print.elapsed() >= Duration::from_secs(1) {
            println!("{line}");
            last_print = Instant::now();
        }
        if left == 0 {
            if tty {
                println!();
            }
            settle(&state).await;
            println!("done in {:.2} s", started.elapsed().as_secs_f64());
            return Ok(());
        }
        if started.elapsed() > FOLLOW_LIMIT {
            bail!("{left} slots still migrating; the cluster goes on with them");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (up to 5 s) until every member has applied `state`'s epoch, so that a client
/// asking any node right after the command gets the new picture.
async fn settle(state: &ClusterState) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for m in state.members.values() {
        let client = Client::new(m.bus_addr(), Arc::new(Mutex::new(None)), None, false);
        while Instant::now() < deadline {
            match client.call(Request::Status, Duration::from_secs(1)).await {
                Ok(Response::Status(s)) if s.epoch >= state.epoch => break,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

/// The topology from the first of `nodes` that answers.
async fn topology_any(nodes: &[String]) -> anyhow::Result<ClusterState> {
    let mut last = anyhow!("no node to ask");
    for node in nodes {
        match topology(node).await {
            Ok(state) => return Ok(state),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Keys and bytes moved out by every member, as their statuses report.
async fn moved_bytes(state: &ClusterState) -> (u64, u64) {
    let mut total = (0, 0);
    for m in state.members.values() {
        let client = Client::new(m.bus_addr(), Arc::new(Mutex::new(None)), None, false);
        if let Ok(Response::Status(s)) = client.call(Request::Status, Duration::from_secs(1)).await
        {
            total.0 += s.migrated.0;
            total.1 += s.migrated.1;
        }
    }
    total
}
