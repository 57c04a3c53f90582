//! ringcache's admin commands: `ringcache cluster create|status|add-node|remove-node|rebalance`
//! and `ringcache demo`.
//!
//! The admin commands speak the cluster bus (the same framed protocol nodes use, opening with
//! a hello that names no cluster) for topology, and RESP for per-node figures (keys, memory).
//!
//! Modules:
//! - [`resp_client`]: a minimal blocking RESP client for the figures and readiness checks.
//! - [`demo`]: the local 6-node cluster.
//! - [`scale`]: add-node, remove-node, rebalance, with live slot migration.

pub mod demo;
pub mod plan;
pub mod resp_client;
pub mod scale;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use cluster::bus::{Client, Request, Response};
use cluster::node::parse_node_addr;
use cluster::{ClusterState, NodeStatus};

/// `ringcache cluster ...`.
#[derive(Debug, clap::Args)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ClusterCommand {
    /// Create a cluster from nodes started with --cluster-enabled (like
    /// `redis-cli --cluster create`).
    Create {
        /// The nodes, `host:port` (RESP port) or `host:port@busport`.
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Replicas per shard.
        #[arg(long, alias = "cluster-replicas", default_value_t = 1)]
        replicas: usize,
    },
    /// Add nodes (started with --cluster-enabled) to a cluster: new shards form from the
    /// spare nodes and slots move onto them, live.
    AddNode {
        /// The new nodes, `host:port` or `host:port@busport`.
        #[arg(required = true)]
        nodes: Vec<String>,
        /// Any node of the cluster.
        #[arg(long)]
        to: String,
        /// Replicas per new shard (default: as the cluster's shards have).
        #[arg(long)]
        replicas: Option<usize>,
        /// Only join them (as spares or empty shards); move no slot.
        #[arg(long)]
        no_rebalance: bool,
    },
    /// Remove a node: a primary's shard is drained onto the others first; a replica's seat
    /// goes to a spare.
    RemoveNode {
        /// The node: `host:port`, `host:port@busport` or its id.
        node: String,
        /// Any other node of the cluster [default: one the node names, when NODE is an
        /// address].
        #[arg(long)]
        to: Option<String>,
    },
    /// Even out the slots over the shards, moving the fewest, live.
    Rebalance {
        /// Any node of the cluster.
        #[arg(long)]
        to: String,
        /// `slots`: the same number on every shard; `memory`: in proportion to each shard
        /// primary's maxmemory.
        #[arg(long, value_enum, default_value = "slots")]
        weight: scale::Weight,
    },
    /// Show the nodes, roles, zones, slots, health, keys, memory, epoch and Raft leader.
    Status {
        /// Any node of the cluster, `host:port` or `host:port@busport`.
        node: String,
        /// Print the cluster state as JSON instead.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `ringcache cluster ...`.
pub fn run_cluster(args: ClusterArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match args.command {
            ClusterCommand::Create { nodes, replicas } => {
                create(&nodes, replicas, Duration::from_secs(30)).await?;
                let state = topology(&nodes[0]).await?;
                print!("{}", render_status(&state, &statuses(&state).await));
                Ok(())
            }
            ClusterCommand::AddNode {
                nodes,
                to,
                replicas,
                no_rebalance,
            } => scale::add_nodes(&to, &nodes, replicas, !no_rebalance).await,
            ClusterCommand::RemoveNode { node, to } => {
                scale::remove_node(to.as_deref(), &node).await
            }
            ClusterCommand::Rebalance { to, weight } => {
                scale::rebalance_over(&to, None, weight).await
            }
            ClusterCommand::Status { node, json } => {
                let state = topology(&node).await?;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&status_json(
                            &state,
                            &statuses(&state).await
                        ))?
                    );
                } else {
                    print!("{}", render_status(&state, &statuses(&state).await));
                }
                Ok(())
            }
        }
    })
}

pub(crate) fn admin_client(node: &str) -> anyhow::Result<Client> {
    let (host, _, bus) = parse_node_addr(node).map_err(|e| anyhow!(e))?;
    Ok(Client::new(
        format!("{host}:{bus}"),
        Arc::new(Mutex::new(None)),
        None,
        false,
    ))
}

/// Creates a cluster of `nodes` (the first one coordinates) and waits until every node has
/// applied the slot table.
pub async fn create(
    nodes: &[String],
    replicas: usize,
    timeout: Duration,
) -> anyhow::Result<String> {
    let seed = admin_client(&nodes[0])?;
    let request = Request::Create {
        nodes: nodes.to_vec(),
        replicas,
    };
    let cluster_id = match seed.call(request, timeout).await? {
        Response::Created(Ok(id)) => id,
        Response::Created(Err(why)) => bail!("cluster create failed: {why}"),
        other => bail!("unexpected answer {other:?}"),
    };
    let deadline = Instant::now() + timeout;
    for node in nodes {
        loop {
            // Ready: the slot table is applied and, on a primary, the first write lease from
            // the Raft leader has arrived (until then it answers CLUSTERDOWN).
            let ready = match topology(node).await {
                Ok(state) => {
                    let me = status(node).await.ok();
                    let primary = me
                        .as_ref()
                        .and_then(|m| state.seat_of(m.id))
                        .is_some_and(|(_, p)| p);
                    state.is_laid_out() && (!primary || me.is_some_and(|m| m.lease_ms_left > 0))
                }
                Err(_) => false,
            };
            if ready {
                break;
            }
            if Instant::now() > deadline {
                bail!("{node} has not applied the slot table in time");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(cluster_id)
}

/// The cluster state as `node` has applied it.
pub async fn topology(node: &str) -> anyhow::Result<ClusterState> {
    let client = admin_client(node)?;
    match client
        .call(Request::Topology, Duration::from_secs(2))
        .await
        .with_context(|| format!("asking {node} for the topology"))?
    {
        Response::Topology(state) => Ok(*state),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// The status `node` reports.
pub async fn status(node: &str) -> anyhow::Result<NodeStatus> {
    match admin_client(node)?
        .call(Request::Status, Duration::from_secs(2))
        .await?
    {
        Response::Status(s) => Ok(*s),
        other => bail!("unexpected answer {other:?}"),
    }
}

/// What one node reports, or why it couldn't be reached.
pub struct Observed {
    status: Result<NodeStatus, String>,
    keys: Option<u64>,
    used_memory: Option<u64>,
}

async fn statuses(state: &ClusterState) -> Vec<Observed> {
    let mut out = Vec::new();
    for m in state.members.values() {
        let client = Client::new(m.bus_addr(), Arc::new(Mutex::new(None)), None, false);
        let status = match client.call(Request::Status, Duration::from_secs(1)).await {
            Ok(Response::Status(s)) => Ok(*s),
            Ok(other) => Err(format!("unexpected {other:?}")),
            Err(e) => Err(e.to_string()),
        };
        let addr = m.client_addr();
        let figures = tokio::task::spawn_blocking(move || {
            let mut c = resp_client::Conn::connect(&addr, Duration::from_secs(1)).ok()?;
            let keys = c.integer(&["DBSIZE"]).ok();
            let info = c.bulk(&["INFO", "memory"]).ok().flatten();
            let used = info.and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("used_memory:"))
                    .and_then(|v| v.trim().parse().ok())
            });
            Some((keys, used))
        })
        .await
        .ok()
        .flatten();
        out.push(Observed {
            status,
            keys: figures.and_then(|f| f.0).map(|k| k as u64),
            used_memory: figures.and_then(|f| f.1),
        });
    }
    out
}

fn human_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1}G", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1}M", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1}K", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}

/// The `cluster status` table.
pub fn render_status(state: &ClusterState, observed: &[Observed]) -> String {
    let leader = observed
        .iter()
        .filter_map(|o| o.status.as_ref().ok())
        .find_map(|s| s.leader);
    let cluster_id = observed
        .iter()
        .filter_map(|o| o.status.as_ref().ok())
        .find_map(|s| s.cluster_id.clone())
        .unwrap_or_default();
    let mut out = format!(
        "cluster {cluster_id}  epoch {}  raft leader {}  slots assigned {}\n",
        state.epoch,
        leader
            .map(|l| format!("{l:016x}"))
            .unwrap_or_else(|| "none".into()),
        if state.is_laid_out() {
            cluster::SLOT_COUNT
        } else {
            0
        },
    );
    out.push_str(&format!(
        "{:<16}  {:<21}  {:<6}  {:<8}  {:<5}  {:>6}  {:<7}  {:<7}  {:>9}  {:>8}\n",
        "NODE", "ADDRESS", "ZONE", "ROLE", "SHARD", "SLOTS", "RAFT", "HEALTH", "KEYS", "MEMORY"
    ));
    for (m, o) in state.members.values().zip(observed) {
        let (role, shard, slots) = match state.seat_of(m.id) {
            Some((s, primary)) => (
                if primary { "primary" } else { "replica" },
                s.id.to_string(),
                if primary {
                    state
                        .slots
                        .iter()
                        .filter(|x| **x == s.id)
                        .count()
                        .to_string()
                } else {
                    "-".into()
                },
            ),
            None => ("spare", "-".into(), "-".into()),
        };
        let (raft, health) = match &o.status {
            Ok(s) => {
                let raft = if s.voters.contains(&m.id) {
                    "voter"
                } else {
                    "learner"
                };
                (
                    if s.leader == Some(m.id) {
                        "leader"
                    } else {
                        raft
                    },
                    "ok",
                )
            }
            Err(_) => ("?", "down"),
        };
        out.push_str(&format!(
            "{:016x}  {:<21}  {:<6}  {:<8}  {:<5}  {:>6}  {:<7}  {:<7}  {:>9}  {:>8}\n",
            m.id,
            m.client_addr(),
            if m.zone.is_empty() { "-" } else { &m.zone },
            role,
            shard,
            slots,
            raft,
            health,
            o.keys.map(|k| k.to_string()).unwrap_or_else(|| "?".into()),
            o.used_memory.map(human_bytes).unwrap_or_else(|| "?".into()),
        ));
    }
    if !state.migrations.is_empty() {
        let mut moves = std::collections::BTreeMap::<(u32, u32), usize>::new();
        for m in state.migrations.values() {
            *moves.entry((m.from, m.to)).or_default() += 1;
        }
        let moves: Vec<String> = moves
            .iter()
            .map(|((from, to), n)| format!("shard {from} -> {to}: {n}"))
            .collect();
        out.push_str(&format!(
            "migrating {} slots ({})\n",
            state.migrations.len(),
            moves.join(", ")
        ));
    }
    out
}

fn status_json(state: &ClusterState, observed: &[Observed]) -> serde_json::Value {
    let nodes: Vec<serde_json::Value> = state
        .members
        .values()
        .zip(observed)
        .map(|(m, o)| {
            serde_json::json!({
                "id": format!("{:016x}", m.id),
                "address": m.client_addr(),
                "bus": m.bus_addr(),
                "zone": m.zone,
                "seat": state.seat_of(m.id).map(|(s, p)| serde_json::json!({"shard": s.id, "primary": p})),
                "status": o.status.as_ref().ok(),
                "error": o.status.as_ref().err(),
                "keys": o.keys,
                "used_memory": o.used_memory,
            })
        })
        .collect();
    let migrations: Vec<serde_json::Value> = state
        .migrations
        .iter()
        .map(|(slot, m)| serde_json::json!({"slot": slot, "from": m.from, "to": m.to}))
        .collect();
    serde_json::json!({ "epoch": state.epoch, "shards": state.shards.values().collect::<Vec<_>>(), "nodes": nodes, "migrations": migrations })
}
