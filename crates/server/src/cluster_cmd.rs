//! `CLUSTER` subcommands, in Redis Cluster's formats, from the Raft-agreed state.
//!
//! Node ids are shown as 40 hex digits (Redis's length), the 64-bit id zero-padded. The epoch
//! shown as `cluster_current_epoch` and `config-epoch` is the topology epoch: it grows with
//! every committed change, as clients expect. `CLUSTER FAILOVER` is the one subcommand that
//! changes the topology: it asks the Raft leader for the change.

use bytes::Bytes;
use cluster::{ClusterState, Member, NodeId};
use command::table::Ctx;
use resp::Reply;

use crate::cluster::Glue;

/// A node id as Redis shows one.
pub fn node_name(id: NodeId) -> String {
    format!("{id:040x}")
}

fn int(v: impl TryInto<i64>) -> Reply {
    Reply::Integer(v.try_into().unwrap_or(i64::MAX))
}

fn err(text: &str) -> Reply {
    Reply::Error(text.to_string().into())
}

const HELP: &[&str] = &[
    "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "COUNTKEYSINSLOT <slot>",
    "    Return the number of keys in <slot>.",
    "GETKEYSINSLOT <slot> <count>",
    "    Return key names stored by current node in a slot.",
    "INFO",
    "    Return information about the cluster.",
    "KEYSLOT <key>",
    "    Return the hash slot for <key>.",
    "MYID",
    "    Return the node id.",
    "MYSHARDID",
    "    Return the node's shard id.",
    "NODES",
    "    Return cluster configuration seen by node. Output format:",
    "    <id> <ip:port@bus-port> <flags> <master> <pings> <pongs> <epoch> <link> <slot> ...",
    "SHARDS",
    "    Return information about slot range mappings and the nodes associated with them.",
    "SLOT-STATS SLOTSRANGE <start> <end> | ORDERBY key-count [LIMIT <n>] [ASC|DESC]",
    "    Return per-slot statistics (key-count) for the slots of this node's shard.",
    "SLOTS",
    "    Return information about slots range mappings. Each range is made of:",
    "    start, end, master and replicas IP addresses, ports and ids",
    "FAILOVER [FORCE|TAKEOVER]",
    "    Promote current replica node to being a master.",
    "Membership and slots are changed with `ringcache cluster ...` (agreed through Raft),",
    "not with MEET, ADDSLOTS or SETSLOT.",
    "HELP",
    "    Print this help.",
];

/// Runs `CLUSTER <subcommand>`.
pub fn run(glue: &Glue, ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let sub = String::from_utf8_lossy(&args[1]).to_ascii_lowercase();
    let state = glue.state();
    let me = glue.control().id;
    let arity = |n: usize| args.len() == n;
    let wrong_arity = || {
        Reply::Error(
            format!("ERR unknown subcommand or wrong number of arguments for '{sub}'. Try CLUSTER HELP.")
                .into(),
        )
    };
    match sub.as_str() {
        "help" if arity(2) => {
            Reply::Array(HELP.iter().map(|l| Reply::Simple((*l).into())).collect())
        }
        "myid" if arity(2) => Reply::bulk(node_name(me)),
        "myshardid" if arity(2) => match state.seat_of(me) {
            Some((shard, _)) => Reply::bulk(format!("{:040x}", u64::from(shard.id) + 1)),
            None => Reply::bulk(format!("{:040x}", 0)),
        },
        "info" if arity(2) => Reply::Verbatim("txt", Bytes::from(info(glue, &state))),
        "keyslot" if arity(3) => int(store::key_slot(&args[2])),
        "countkeysinslot" if arity(3) => match parse_slot(&args[2]) {
            Some(slot) => int(ctx.node.store.count_in_slot(slot)),
            None => err("ERR Invalid slot"),
        },
        "getkeysinslot" if arity(4) => {
            let Some(slot) = parse_slot(&args[2]) else {
                return err("ERR Invalid slot");
            };
            let count = match std::str::from_utf8(&args[3])
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
            {
                Some(c) if c >= 0 => c as usize,
                _ => return err("ERR Invalid number of keys"),
            };
            let keys = ctx.node.store.keys_in_slot(slot, count, ctx.now_ms);
            Reply::Array(keys.into_iter().map(Reply::Bulk).collect())
        }
        "nodes" if arity(2) => Reply::Verbatim("txt", Bytes::from(nodes(&state, me))),
        "slots" if arity(2) => slots(&state),
        "slot-stats" if args.len() >= 4 => slot_stats(&state, me, ctx, &args[2..]),
        "shards" if arity(2) => shards(&state),
        "failover" if arity(2) || arity(3) => failover(glue, &state, args.get(2)),
        "meet" | "addslots" | "addslotsrange" | "delslots" | "delslotsrange" | "setslot"
        | "forget" | "replicate" | "reset" | "flushslots" | "bumpepoch" | "set-config-epoch" => {
            Reply::Error(
                format!(
                "ERR CLUSTER {} is not supported: ringcache's topology is agreed through Raft; \
                 use `ringcache cluster ...`",
                sub.to_ascii_uppercase()
            )
                .into(),
            )
        }
        "help" | "myid" | "myshardid" | "info" | "keyslot" | "countkeysinslot"
        | "getkeysinslot" | "nodes" | "slots" | "shards" | "failover" | "slot-stats" => {
            wrong_arity()
        }
        _ => Reply::Error(
            format!(
                "ERR unknown subcommand '{}'. Try CLUSTER HELP.",
                String::from_utf8_lossy(&args[1])
            )
            .into(),
        ),
    }
}

/// `CLUSTER FAILOVER [FORCE|TAKEOVER]`: Redis's checks and replies; the failover itself is
/// asked of the Raft leader and goes on in the background (`cluster::manual`), as in Redis,
/// which also answers `+OK` once it has started. `TAKEOVER` is `FORCE` here.
fn failover(glue: &Glue, state: &ClusterState, option: Option<&Bytes>) -> Reply {
    let force = match option.map(|o| o.to_ascii_lowercase()) {
        None => false,
        Some(o) if o == b"force" || o == b"takeover" => true,
        Some(_) => return err("ERR syntax error"),
    };
    let control = glue.control().clone();
    match state.seat_of(control.id) {
        Some((_, false)) => {}
        // A primary, a spare (listed as a master without slots) or a node in no cluster.
        _ => return err("ERR You should send CLUSTER FAILOVER to a replica"),
    }
    if !force && !glue.link_up() {
        return err("ERR Master is down or failed, please use CLUSTER FAILOVER FORCE");
    }
    tokio::spawn(async move {
        match control.request_manual_failover(force).await {
            Ok(()) => tracing::info!(force, "manual failover started"),
            Err(why) => tracing::warn!(why, force, "manual failover not started"),
        }
    });
    Reply::ok()
}

/// `CLUSTER SLOT-STATS SLOTSRANGE start end` or `ORDERBY key-count [LIMIT n] [ASC|DESC]`,
/// as in Redis 8: per-slot statistics for the slots of this node's shard. `key-count` is the
/// one metric kept (Redis's CPU and network metrics are off unless configured).
fn slot_stats(state: &ClusterState, me: NodeId, ctx: &Ctx<'_>, args: &[Bytes]) -> Reply {
    let mine: Vec<u16> = match state.seat_of(me) {
        Some((shard, _)) => (0..cluster::SLOT_COUNT as u16)
            .filter(|&s| state.slots.get(usize::from(s)) == Some(&shard.id))
            .collect(),
        None => Vec::new(),
    };
    let word = |a: &Bytes| a.to_ascii_lowercase();
    let picked: Vec<u16> = match word(&args[0]).as_slice() {
        b"slotsrange" if args.len() == 3 => {
            let (Some(start), Some(end)) = (parse_slot(&args[1]), parse_slot(&args[2])) else {
                return err("ERR Invalid or out of range slot");
            };
            if start > end {
                return err("ERR Start slot number is greater than end slot number");
            }
            mine.into_iter()
                .filter(|s| (start..=end).contains(s))
                .collect()
        }
        b"orderby" => {
            if word(&args[1]) != b"key-count" {
                return err("ERR Unrecognized sort metric for ORDERBY.");
            }
            let (mut limit, mut descending) = (16usize, true);
            let mut rest = args[2..].iter();
            while let Some(option) = rest.next() {
                match word(option).as_slice() {
                    b"limit" => {
                        match rest
                            .next()
                            .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
                        {
                            Some(n) if (1..=cluster::SLOT_COUNT).contains(&n) => limit = n,
                            _ => return err("ERR Limit has to lie in between 1 and 16384."),
                        }
                    }
                    b"asc" => descending = false,
                    b"desc" => descending = true,
                    _ => return err("ERR syntax error"),
                }
            }
            let mut counted: Vec<(usize, u16)> = mine
                .into_iter()
                .map(|s| (ctx.node.store.count_in_slot(s), s))
                .collect();
            // Ties in slot order, as Redis lists them.
            if descending {
                counted.sort_by_key(|&(n, s)| (std::cmp::Reverse(n), s));
            } else {
                counted.sort_by_key(|&(n, s)| (n, s));
            }
            counted.into_iter().take(limit).map(|(_, s)| s).collect()
        }
        _ => return err("ERR syntax error"),
    };
    Reply::Array(
        picked
            .into_iter()
            .map(|slot| {
                Reply::Array(vec![
                    int(slot),
                    Reply::Map(vec![(
                        Reply::bulk("key-count"),
                        int(ctx.node.store.count_in_slot(slot)),
                    )]),
                ])
            })
            .collect(),
    )
}

fn parse_slot(arg: &[u8]) -> Option<u16> {
    let slot: i64 = std::str::from_utf8(arg).ok()?.parse().ok()?;
    (0..cluster::SLOT_COUNT as i64)
        .contains(&slot)
        .then_some(slot as u16)
}

fn info(glue: &Glue, state: &ClusterState) -> String {
    let status = glue.control().status();
    let assigned = if state.is_laid_out() {
        cluster::SLOT_COUNT
    } else {
        0
    };
    let ok = assigned == cluster::SLOT_COUNT;
    let size = state
        .shards
        .values()
        .filter(|s| state.slots.contains(&s.id))
        .count();
    let my_epoch = state.epoch;
    format!(
        "cluster_state:{}\r\ncluster_slots_assigned:{assigned}\r\ncluster_slots_ok:{assigned}\r\n\
         cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:{}\r\n\
         cluster_size:{size}\r\ncluster_current_epoch:{}\r\ncluster_my_epoch:{my_epoch}\r\n\
         cluster_stats_messages_sent:0\r\ncluster_stats_messages_received:0\r\n\
         total_cluster_links_buffer_limit_exceeded:0\r\ncluster_id:{}\r\n\
         cluster_raft_leader:{}\r\ncluster_raft_role:{}\r\ncluster_raft_term:{}\r\n\
         cluster_slots_migrating:{}\r\n",
        if ok { "ok" } else { "fail" },
        state.members.len(),
        state.epoch,
        status.cluster_id.unwrap_or_default(),
        status.leader.map(node_name).unwrap_or_default(),
        status.raft_role.to_ascii_lowercase(),
        status.term,
        state.migrations.len(),
    )
}

fn endpoint(m: &Member) -> String {
    format!("{}:{}@{}", m.host, m.port, m.bus_port)
}

fn nodes(state: &ClusterState, me: NodeId) -> String {
    let mut out = String::new();
    for m in state.members.values() {
        let seat = state.seat_of(m.id);
        let mut flags = Vec::new();
        if m.id == me {
            flags.push("myself");
        }
        let (role, master) = match seat {
            Some((_, true)) | None => ("master", "-".to_string()),
            Some((shard, false)) => ("slave", node_name(shard.primary)),
        };
        flags.push(role);
        let mut line = format!(
            "{} {} {} {} 0 0 {} connected",
            node_name(m.id),
            endpoint(m),
            flags.join(","),
            master,
            state.epoch
        );
        if let Some((shard, true)) = seat {
            for (a, b) in state.ranges_of(shard.id) {
                if a == b {
                    line.push_str(&format!(" {a}"));
                } else {
                    line.push_str(&format!(" {a}-{b}"));
                }
            }
            // As in Redis, the node's own line lists the slots it is migrating out
            // (`[slot->-target]`) and in (`[slot-<-source]`).
            if m.id == me {
                let primary = |id| state.shards.get(&id).map(|s| node_name(s.primary));
                for (slot, migration) in &state.migrations {
                    if migration.from == shard.id {
                        if let Some(to) = primary(migration.to) {
                            line.push_str(&format!(" [{slot}->-{to}]"));
                        }
                    } else if migration.to == shard.id {
                        if let Some(from) = primary(migration.from) {
                            line.push_str(&format!(" [{slot}-<-{from}]"));
                        }
                    }
                }
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

fn node_entry(m: &Member) -> Vec<Reply> {
    vec![
        Reply::bulk(&m.host),
        int(m.port),
        Reply::bulk(node_name(m.id)),
        Reply::Map(Vec::new()),
    ]
}

fn slots(state: &ClusterState) -> Reply {
    let mut out = Vec::new();
    for (a, b, shard_id) in cluster::placement::ranges(&state.slot_table()) {
        let Some(shard) = state.shards.get(&shard_id) else {
            continue;
        };
        let mut entry = vec![int(a), int(b)];
        for id in std::iter::once(&shard.primary).chain(&shard.replicas) {
            if let Some(m) = state.members.get(id) {
                entry.push(Reply::Array(node_entry(m)));
            }
        }
        out.push(Reply::Array(entry));
    }
    Reply::Array(out)
}

fn shards(state: &ClusterState) -> Reply {
    let mut out = Vec::new();
    for shard in state.shards.values() {
        let ranges: Vec<Reply> = state
            .ranges_of(shard.id)
            .into_iter()
            .flat_map(|(a, b)| [int(a), int(b)])
            .collect();
        let mut nodes = Vec::new();
        for (id, role) in std::iter::once((&shard.primary, "master"))
            .chain(shard.replicas.iter().map(|r| (r, "replica")))
        {
            let Some(m) = state.members.get(id) else {
                continue;
            };
            nodes.push(Reply::Map(vec![
                (Reply::bulk("id"), Reply::bulk(node_name(m.id))),
                (Reply::bulk("port"), int(m.port)),
                (Reply::bulk("ip"), Reply::bulk(&m.host)),
                (Reply::bulk("endpoint"), Reply::bulk(&m.host)),
                (Reply::bulk("role"), Reply::bulk(role)),
                (Reply::bulk("replication-offset"), int(0)),
                (Reply::bulk("health"), Reply::bulk("online")),
            ]));
        }
        out.push(Reply::Map(vec![
            (Reply::bulk("slots"), Reply::Array(ranges)),
            (Reply::bulk("nodes"), Reply::Array(nodes)),
        ]));
    }
    Reply::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster::topology::{Change, Shard};

    fn member(id: NodeId, port: u16) -> Member {
        Member {
            id,
            host: "127.0.0.1".into(),
            port,
            bus_port: port + 10000,
            memcache_port: None,
            forward_port: None,
            admin_port: None,
            zone: String::new(),
        }
    }

    #[test]
    fn nodes_lists_roles_masters_and_slot_ranges_like_redis() {
        let mut state = ClusterState::default();
        for (id, port) in [(1, 7000), (2, 7001)] {
            state.apply(&Change::Join(member(id, port)));
        }
        let mut slots = vec![0; cluster::SLOT_COUNT];
        slots[100] = 1;
        state.apply(&Change::Layout {
            shards: vec![
                Shard {
                    id: 0,
                    primary: 1,
                    replicas: vec![],
                },
                Shard {
                    id: 1,
                    primary: 2,
                    replicas: vec![],
                },
            ],
            slots,
        });
        let text = nodes(&state, 1);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "{} 127.0.0.1:7000@17000 myself,master - 0 0 3 connected 0-99 101-16383",
                node_name(1)
            )
        );
        assert_eq!(
            lines[1],
            format!(
                "{} 127.0.0.1:7001@17001 master - 0 0 3 connected 100",
                node_name(2)
            )
        );
        // Slots 5 and 6 migrating from shard 0 to shard 1: each side's own line says so.
        state.apply(&Change::Migrate {
            slots: vec![5, 6],
            to: 1,
        });
        let source = nodes(&state, 1);
        assert!(
            source.lines().next().is_some_and(
                |l| l.ends_with(&format!("0-99 101-16383 [5->-{0}] [6->-{0}]", node_name(2)))
            ),
            "{source}"
        );
        let target = nodes(&state, 2);
        assert!(
            target.lines().nth(1).is_some_and(
                |l| l.ends_with(&format!("connected 100 [5-<-{0}] [6-<-{0}]", node_name(1)))
            ),
            "{target}"
        );
        assert!(
            !target.lines().next().is_some_and(|l| l.contains('[')),
            "only the node's own line lists migrations"
        );
    }
}
