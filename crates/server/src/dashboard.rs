//! The dashboard on the admin port: one page (`/`, embedded in the binary) and the two JSON
//! documents it polls every second.
//!
//! - `/api/cluster`: this node's view of the cluster: members, shards, the slot map as
//!   ranges, migrations in progress, and the topology changes it has seen (failovers,
//!   migrations, joins), newest first.
//! - `/api/node`: this node's own figures: role, Raft role, epoch, keys, memory against
//!   `maxmemory`, hit and miss, eviction and command counters, and the latency histogram. The
//!   page fetches it from every member's admin port (so it is served with
//!   `Access-Control-Allow-Origin: *`), turns counters into rates between polls, and marks a
//!   node down when it stops answering.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

use cluster::ClusterState;
use command::node::LATENCY_BUCKETS_USEC;
use command::Node;
use serde_json::{json, Value};

/// The page.
pub const PAGE: &str = include_str!("dashboard.html");

/// Topology changes kept for the page.
const EVENTS_KEPT: usize = 50;

/// Topology changes as this node applied them, newest last, and the failovers among them.
#[derive(Debug, Default)]
pub struct Events {
    kept: Mutex<VecDeque<Value>>,
    failovers: AtomicU64,
}

impl Events {
    /// Notes what changed from `before` to `after`, at `unix_ms`.
    pub fn note(&self, before: &ClusterState, after: &ClusterState, unix_ms: u64) {
        let mut events = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        for text in changes(before, after) {
            if text.starts_with("failover") {
                self.failovers.fetch_add(1, Relaxed);
            }
            if events.len() == EVENTS_KEPT {
                events.pop_front();
            }
            events.push_back(json!({"at_ms": unix_ms, "epoch": after.epoch, "what": text}));
        }
    }

    /// The changes kept, newest first.
    pub fn newest_first(&self) -> Vec<Value> {
        let events = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        events.iter().rev().cloned().collect()
    }

    /// Failovers this node has applied since it started.
    pub fn failovers(&self) -> u64 {
        self.failovers.load(Relaxed)
    }
}

fn name(state: &ClusterState, id: u64) -> String {
    state.members.get(&id).map_or_else(
        || format!("{id:016x}"),
        |m| format!("{}:{}", m.host, m.port),
    )
}

/// What changed between two states, in words: members joining and leaving, shards forming
/// and going, primaries changing (failovers), migrations starting and ending, slots handed
/// over.
pub fn changes(before: &ClusterState, after: &ClusterState) -> Vec<String> {
    let mut out = Vec::new();
    for id in after
        .members
        .keys()
        .filter(|id| !before.members.contains_key(id))
    {
        out.push(format!("{} joined", name(after, *id)));
    }
    for id in before
        .members
        .keys()
        .filter(|id| !after.members.contains_key(id))
    {
        out.push(format!("{} left", name(before, *id)));
    }
    for (id, shard) in &after.shards {
        match before.shards.get(id) {
            None => out.push(format!(
                "shard {id} formed: primary {}",
                name(after, shard.primary)
            )),
            Some(old) if old.primary != shard.primary => out.push(format!(
                "failover of shard {id}: {} replaces {}",
                name(after, shard.primary),
                name(before, old.primary)
            )),
            Some(_) => {}
        }
    }
    for id in before
        .shards
        .keys()
        .filter(|id| !after.shards.contains_key(id))
    {
        out.push(format!("shard {id} removed"));
    }
    let started = after
        .migrations
        .keys()
        .filter(|s| !before.migrations.contains_key(s))
        .count();
    if started > 0 {
        out.push(format!("{started} slots started migrating"));
    }
    let handed = before
        .migrations
        .keys()
        .filter(|s| !after.migrations.contains_key(s))
        .count();
    if handed > 0 {
        out.push(format!("{handed} slots handed over"));
    }
    out
}

/// `/api/cluster` for a cluster node.
pub fn cluster_json(state: &ClusterState, me: u64, leader: Option<u64>, events: &Events) -> Value {
    let members: Vec<Value> = state
        .members
        .values()
        .map(|m| {
            let seat = state.seat_of(m.id);
            json!({
                "id": format!("{:016x}", m.id),
                "addr": format!("{}:{}", m.host, m.port),
                "host": m.host,
                "admin_port": m.admin_port,
                "zone": m.zone,
                "role": match seat {
                    Some((_, true)) => "primary",
                    Some((_, false)) => "replica",
                    None => "spare",
                },
                "shard": seat.map(|(s, _)| s.id),
                "raft_leader": leader == Some(m.id),
                "me": m.id == me,
            })
        })
        .collect();
    let table = state.slot_table();
    let slots: Vec<Value> = cluster::placement::ranges(&table)
        .into_iter()
        .map(|(a, b, shard)| json!([a, b, shard]))
        .collect();
    let migrations: Vec<Value> = state
        .migrations
        .iter()
        .map(|(slot, m)| json!([slot, m.from, m.to]))
        .collect();
    json!({
        "cluster": true,
        "epoch": state.epoch,
        "members": members,
        "shards": state.shards.values().map(|s| json!({
            "id": s.id,
            "primary": format!("{:016x}", s.primary),
            "replicas": s.replicas.iter().map(|r| format!("{r:016x}")).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "slots": slots,
        "migrations": migrations,
        "events": events.newest_first(),
    })
}

/// `/api/node`: this node's figures; `cluster` adds its seat and Raft view.
pub fn node_json(node: &Node, cluster: Option<Value>) -> Value {
    let store = node.store.stats();
    let config = node.store.config();
    let commands: u64 = node
        .command_stats
        .iter()
        .map(|c| c.calls.load(Relaxed))
        .sum();
    let mut buckets: Vec<Value> = LATENCY_BUCKETS_USEC
        .iter()
        .enumerate()
        .map(|(i, bound)| json!([bound, node.latency.buckets[i].load(Relaxed)]))
        .collect();
    buckets.push(json!([
        null,
        node.latency.buckets[LATENCY_BUCKETS_USEC.len()].load(Relaxed)
    ]));
    json!({
        "addr": format!("{}:{}", node.identity.bind, node.identity.port),
        "keys": store.keys,
        "used_memory": store.used_bytes,
        "maxmemory": config.max_memory_bytes,
        "hits": store.hits,
        "misses": store.misses,
        "evicted": store.evicted,
        "expired": store.expired,
        "commands": commands,
        "connections": node.client_count(),
        "latency_us": buckets,
        "cluster": cluster,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster::topology::{Change, Member, Shard};

    fn member(id: u64) -> Member {
        Member {
            id,
            host: "127.0.0.1".into(),
            port: 7000 + id as u16,
            bus_port: 17000 + id as u16,
            memcache_port: None,
            forward_port: None,
            admin_port: Some(9100 + id as u16),
            zone: String::new(),
        }
    }

    fn laid_out() -> ClusterState {
        let mut state = ClusterState::default();
        for id in 1..=4 {
            state.apply(&Change::Join(member(id)));
        }
        state.apply(&Change::Layout {
            shards: vec![
                Shard {
                    id: 0,
                    primary: 1,
                    replicas: vec![2],
                },
                Shard {
                    id: 1,
                    primary: 3,
                    replicas: vec![4],
                },
            ],
            slots: (0..cluster::SLOT_COUNT)
                .map(|s| u32::from(s >= 8192))
                .collect(),
        });
        state
    }

    #[test]
    fn a_failover_a_migration_and_a_handover_are_told_in_words() {
        let before = laid_out();
        let mut after = before.clone();
        after.apply(&Change::Failover {
            shard: 0,
            primary: 2,
        });
        assert_eq!(
            changes(&before, &after),
            vec!["failover of shard 0: 127.0.0.1:7002 replaces 127.0.0.1:7001"]
        );
        let events = Events::default();
        events.note(&before, &after, 5);
        assert_eq!(events.failovers(), 1);
        let mut moving = after.clone();
        moving.apply(&Change::Migrate {
            slots: vec![1, 2, 3],
            to: 1,
        });
        assert_eq!(changes(&after, &moving), vec!["3 slots started migrating"]);
        let json = cluster_json(&moving, 1, Some(3), &Events::default());
        assert_eq!(json["migrations"].as_array().map(Vec::len), Some(3));
        assert_eq!(json["slots"][0], json!([0, 8191, 0]));
        assert_eq!(json["members"][2]["raft_leader"], json!(true));
        assert_eq!(json["members"][1]["role"], json!("primary"));
    }

    #[test]
    fn events_keep_the_newest_fifty_newest_first() {
        let events = Events::default();
        let (mut a, mut b) = (ClusterState::default(), ClusterState::default());
        for id in 1..=60 {
            b.apply(&Change::Join(member(id)));
            events.note(&a, &b, id);
            a = b.clone();
        }
        let kept = events.newest_first();
        assert_eq!(kept.len(), EVENTS_KEPT);
        assert_eq!(kept[0]["at_ms"], json!(60));
        assert_eq!(kept[0]["what"], json!("127.0.0.1:7060 joined"));
    }
}
