//! The cluster metadata: members, shards, the slot table and the epoch.
//!
//! [`ClusterState`] is the state machine that Raft replicates: every node applies the same
//! committed [`Change`]s in the same order and so holds the same picture. `apply` is pure and
//! deterministic (no clock, no randomness): the leader decides (for example the slot table,
//! through [`crate::placement`]) and the log carries the decision, never the inputs to it.
//! Every change that is applied increments the epoch, which is what clients and nodes compare
//! to tell a newer picture from an older one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::placement::{NodeId, ShardId, SLOT_COUNT};

/// A member of the cluster and where to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node's id (random, chosen when the node first started, kept in its data dir).
    pub id: NodeId,
    /// The address clients use (the announced IP or host name).
    pub host: String,
    /// RESP port.
    pub port: u16,
    /// Cluster bus port.
    pub bus_port: u16,
    /// memcached port, when enabled.
    pub memcache_port: Option<u16>,
    /// The RESP port that forwards any key (for clients that don't speak cluster), if enabled.
    pub forward_port: Option<u16>,
    /// The admin HTTP port, when enabled.
    pub admin_port: Option<u16>,
    /// Zone (empty when none was declared).
    pub zone: String,
}

impl Member {
    /// `host:port` for clients.
    pub fn client_addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `host:bus_port`.
    pub fn bus_addr(&self) -> String {
        format!("{}:{}", self.host, self.bus_port)
    }
}

/// One shard: a primary and its replicas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// The shard's id.
    pub id: ShardId,
    /// The node that takes writes.
    pub primary: NodeId,
    /// The nodes that copy it.
    pub replicas: Vec<NodeId>,
}

/// A change to the cluster metadata: the payload of a Raft log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Adds a member, or updates the addresses of one that restarted.
    Join(Member),
    /// Removes a member that holds no shard seat.
    Leave(NodeId),
    /// Promotes a replica of a shard whose primary failed; the old primary becomes a replica
    /// (it resyncs when it returns).
    Failover {
        /// The shard.
        shard: ShardId,
        /// The replica that becomes its primary.
        primary: NodeId,
    },
    /// Gives a failed replica's seat to a spare node, restoring the shard's replica count.
    Reseat {
        /// The shard.
        shard: ShardId,
        /// The replica that failed (it becomes a spare).
        old: NodeId,
        /// The spare that takes its seat.
        new: NodeId,
    },
    /// Adds a shard of spare members, owning no slot yet.
    AddShard(Shard),
    /// Removes a shard that owns no slot and takes part in no migration: its nodes become
    /// spares.
    RemoveShard(ShardId),
    /// Starts moving `slots` to shard `to`. Until [`Change::Handover`], the current owner
    /// keeps serving the keys it still has and sends the rest to `to` with `-ASK`.
    Migrate {
        /// The slots (none already migrating, none owned by `to`).
        slots: Vec<u16>,
        /// The shard they go to.
        to: ShardId,
    },
    /// Ends the migration of `slots`, which their old owner has drained: `to` owns them.
    Handover {
        /// Slots that are migrating.
        slots: Vec<u16>,
    },
    /// Replaces the shards and the slot table (`slots[i]` is slot i's shard).
    Layout {
        /// The shards.
        shards: Vec<Shard>,
        /// The owner of every slot.
        slots: Vec<ShardId>,
    },
}

/// A slot on its way from one shard to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Migration {
    /// The owner, draining it.
    pub from: ShardId,
    /// The shard importing it.
    pub to: ShardId,
}

/// What applying a change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Applied {
    /// Applied; the new epoch.
    Ok(u64),
    /// Refused (the state is unchanged), and why.
    Refused(String),
}

/// The replicated cluster metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Incremented by every applied change.
    pub epoch: u64,
    /// Members by id.
    pub members: BTreeMap<NodeId, Member>,
    /// Shards by id.
    pub shards: BTreeMap<ShardId, Shard>,
    /// The owner of every slot; empty until the first layout.
    pub slots: Vec<ShardId>,
    /// Slots being moved, by slot.
    pub migrations: BTreeMap<u16, Migration>,
}

impl ClusterState {
    /// Applies a committed change.
    pub fn apply(&mut self, change: &Change) -> Applied {
        match self.check(change) {
            Err(why) => Applied::Refused(why),
            Ok(()) => {
                match change {
                    Change::Join(member) => {
                        self.members.insert(member.id, member.clone());
                    }
                    Change::Leave(id) => {
                        self.members.remove(id);
                    }
                    Change::Layout { shards, slots } => {
                        self.shards = shards.iter().map(|s| (s.id, s.clone())).collect();
                        self.slots = slots.clone();
                    }
                    Change::Reseat { shard, old, new } => {
                        if let Some(s) = self.shards.get_mut(shard) {
                            for r in s.replicas.iter_mut().filter(|r| **r == *old) {
                                *r = *new;
                            }
                        }
                    }
                    Change::AddShard(shard) => {
                        self.shards.insert(shard.id, shard.clone());
                    }
                    Change::RemoveShard(id) => {
                        self.shards.remove(id);
                    }
                    Change::Migrate { slots, to } => {
                        for slot in slots {
                            let from = self.slots[usize::from(*slot)];
                            self.migrations.insert(*slot, Migration { from, to: *to });
                        }
                    }
                    Change::Handover { slots } => {
                        for slot in slots {
                            if let Some(m) = self.migrations.remove(slot) {
                                self.slots[usize::from(*slot)] = m.to;
                            }
                        }
                    }
                    Change::Failover { shard, primary } => {
                        if let Some(s) = self.shards.get_mut(shard) {
                            let old = std::mem::replace(&mut s.primary, *primary);
                            s.replicas.retain(|r| r != primary);
                            s.replicas.push(old);
                        }
                    }
                }
                self.epoch += 1;
                Applied::Ok(self.epoch)
            }
        }
    }

    fn check(&self, change: &Change) -> Result<(), String> {
        match change {
            Change::Join(member) => {
                let clash = self
                    .members
                    .values()
                    .find(|m| m.id != member.id && m.host == member.host && m.port == member.port);
                if let Some(other) = clash {
                    return Err(format!(
                        "{} is already member {:016x}",
                        member.client_addr(),
                        other.id
                    ));
                }
                Ok(())
            }
            Change::Leave(id) => {
                if !self.members.contains_key(id) {
                    return Err(format!("no member {id:016x}"));
                }
                if self.seat_of(*id).is_some() {
                    return Err(format!("member {id:016x} still holds a shard seat"));
                }
                Ok(())
            }
            Change::Reseat { shard, old, new } => match self.shards.get(shard) {
                None => Err(format!("no shard {shard}")),
                Some(s) if !s.replicas.contains(old) => {
                    Err(format!("node {old:016x} is not a replica of shard {shard}"))
                }
                Some(_) if !self.members.contains_key(new) || self.seat_of(*new).is_some() => {
                    Err(format!("node {new:016x} is not a spare"))
                }
                Some(_) => Ok(()),
            },
            Change::Failover { shard, primary } => match self.shards.get(shard) {
                None => Err(format!("no shard {shard}")),
                Some(s) if !s.replicas.contains(primary) => Err(format!(
                    "node {primary:016x} is not a replica of shard {shard}"
                )),
                Some(_) => Ok(()),
            },
            Change::AddShard(shard) => {
                if self.shards.contains_key(&shard.id) {
                    return Err(format!("shard {} exists", shard.id));
                }
                let mut seen = std::collections::BTreeSet::new();
                for node in std::iter::once(&shard.primary).chain(&shard.replicas) {
                    if !self.members.contains_key(node) || self.seat_of(*node).is_some() {
                        return Err(format!("node {node:016x} is not a spare"));
                    }
                    if !seen.insert(*node) {
                        return Err(format!("node {node:016x} holds two seats"));
                    }
                }
                Ok(())
            }
            Change::RemoveShard(id) => {
                if !self.shards.contains_key(id) {
                    return Err(format!("no shard {id}"));
                }
                if self.slots.contains(id) {
                    return Err(format!("shard {id} still owns slots"));
                }
                if self
                    .migrations
                    .values()
                    .any(|m| m.to == *id || m.from == *id)
                {
                    return Err(format!("shard {id} takes part in a migration"));
                }
                Ok(())
            }
            Change::Migrate { slots, to } => {
                if !self.is_laid_out() {
                    return Err("no slot table yet".into());
                }
                if !self.shards.contains_key(to) {
                    return Err(format!("no shard {to}"));
                }
                for slot in slots {
                    if usize::from(*slot) >= SLOT_COUNT {
                        return Err(format!("no slot {slot}"));
                    }
                    if self.migrations.contains_key(slot) {
                        return Err(format!("slot {slot} is already migrating"));
                    }
                    if self.slots[usize::from(*slot)] == *to {
                        return Err(format!("slot {slot} is already on shard {to}"));
                    }
                }
                Ok(())
            }
            Change::Handover { slots } => {
                match slots.iter().find(|s| !self.migrations.contains_key(s)) {
                    Some(slot) => Err(format!("slot {slot} is not migrating")),
                    None => Ok(()),
                }
            }
            Change::Layout { shards, slots } => {
                if !self.migrations.is_empty() {
                    return Err("slots are migrating".into());
                }
                if slots.len() != SLOT_COUNT {
                    return Err(format!("a slot table needs {SLOT_COUNT} entries"));
                }
                let mut seated = std::collections::BTreeSet::new();
                for shard in shards {
                    for node in std::iter::once(&shard.primary).chain(&shard.replicas) {
                        if !self.members.contains_key(node) {
                            return Err(format!(
                                "shard {} names unknown node {node:016x}",
                                shard.id
                            ));
                        }
                        if !seated.insert(*node) {
                            return Err(format!("node {node:016x} holds two seats"));
                        }
                    }
                }
                let ids: std::collections::BTreeSet<_> = shards.iter().map(|s| s.id).collect();
                if ids.len() != shards.len() {
                    return Err("duplicate shard id".into());
                }
                if let Some(s) = slots.iter().find(|s| !ids.contains(s)) {
                    return Err(format!("slot owned by unknown shard {s}"));
                }
                Ok(())
            }
        }
    }

    /// Where `slot` is going, if it is migrating.
    pub fn migration(&self, slot: u16) -> Option<Migration> {
        self.migrations.get(&slot).copied()
    }

    /// Spare members: in the cluster, holding no shard seat.
    pub fn spares(&self) -> Vec<NodeId> {
        self.members
            .keys()
            .copied()
            .filter(|id| self.seat_of(*id).is_none())
            .collect()
    }

    /// Returns `true` once slots are assigned.
    pub fn is_laid_out(&self) -> bool {
        self.slots.len() == SLOT_COUNT
    }

    /// The shard owning `slot`, if slots are assigned.
    pub fn shard_of_slot(&self, slot: u16) -> Option<&Shard> {
        let id = self.slots.get(usize::from(slot))?;
        self.shards.get(id)
    }

    /// The shard where `node` has a seat, and whether it is the primary.
    pub fn seat_of(&self, node: NodeId) -> Option<(&Shard, bool)> {
        self.shards.values().find_map(|s| {
            if s.primary == node {
                Some((s, true))
            } else if s.replicas.contains(&node) {
                Some((s, false))
            } else {
                None
            }
        })
    }

    /// The slot table as `Option`s, as the planner takes it.
    pub fn slot_table(&self) -> Vec<Option<ShardId>> {
        if self.is_laid_out() {
            self.slots.iter().map(|s| Some(*s)).collect()
        } else {
            vec![None; SLOT_COUNT]
        }
    }

    /// Slots owned by `shard`, as contiguous ranges.
    pub fn ranges_of(&self, shard: ShardId) -> Vec<(u16, u16)> {
        crate::placement::ranges(&self.slot_table())
            .into_iter()
            .filter(|r| r.2 == shard)
            .map(|r| (r.0, r.1))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn every_applied_change_increments_the_epoch_and_refusals_change_nothing() {
        let mut state = ClusterState::default();
        assert_eq!(state.apply(&Change::Join(member(1, 7000))), Applied::Ok(1));
        assert_eq!(state.apply(&Change::Join(member(2, 7001))), Applied::Ok(2));
        let before = state.clone();
        assert!(matches!(
            state.apply(&Change::Join(member(3, 7000))),
            Applied::Refused(_)
        ));
        let bad = Change::Layout {
            shards: vec![Shard {
                id: 0,
                primary: 1,
                replicas: vec![9],
            }],
            slots: vec![0; SLOT_COUNT],
        };
        assert!(matches!(state.apply(&bad), Applied::Refused(_)));
        assert_eq!(state, before);
        let good = Change::Layout {
            shards: vec![Shard {
                id: 0,
                primary: 1,
                replicas: vec![2],
            }],
            slots: vec![0; SLOT_COUNT],
        };
        assert_eq!(state.apply(&good), Applied::Ok(3));
        assert_eq!(state.shard_of_slot(12182).map(|s| s.primary), Some(1));
        assert_eq!(state.seat_of(2).map(|(s, p)| (s.id, p)), Some((0, false)));
        assert!(matches!(
            state.apply(&Change::Leave(2)),
            Applied::Refused(_)
        ));
        assert_eq!(state.ranges_of(0), vec![(0, 16383)]);
    }

    #[test]
    fn a_migration_hands_slots_over_only_when_committed_and_shards_come_and_go_empty() {
        let mut state = ClusterState::default();
        for id in 1..=4 {
            state.apply(&Change::Join(member(id, 7000 + id as u16)));
        }
        let shard = |id, primary, replica| Shard {
            id,
            primary,
            replicas: vec![replica],
        };
        state.apply(&Change::Layout {
            shards: vec![shard(0, 1, 2)],
            slots: vec![0; SLOT_COUNT],
        });
        assert!(matches!(
            state.apply(&Change::AddShard(shard(1, 1, 3))),
            Applied::Refused(_)
        ));
        assert!(matches!(
            state.apply(&Change::AddShard(shard(1, 3, 4))),
            Applied::Ok(_)
        ));
        assert!(matches!(
            state.apply(&Change::Migrate {
                slots: vec![5, 6],
                to: 1
            }),
            Applied::Ok(_)
        ));
        // Still served by the old owner; a second migration of the same slot is refused.
        assert_eq!(state.shard_of_slot(5).map(|s| s.id), Some(0));
        assert_eq!(state.migration(5), Some(Migration { from: 0, to: 1 }));
        assert!(matches!(
            state.apply(&Change::Migrate {
                slots: vec![6],
                to: 1
            }),
            Applied::Refused(_)
        ));
        assert!(matches!(
            state.apply(&Change::RemoveShard(1)),
            Applied::Refused(_)
        ));
        assert!(matches!(
            state.apply(&Change::Handover { slots: vec![5, 6] }),
            Applied::Ok(_)
        ));
        assert_eq!(state.shard_of_slot(5).map(|s| s.id), Some(1));
        assert_eq!(state.migration(5), None);
        assert!(matches!(
            state.apply(&Change::Handover { slots: vec![5] }),
            Applied::Refused(_)
        ));
        // Back, then the empty shard goes and its nodes are spares again.
        state.apply(&Change::Migrate {
            slots: vec![5, 6],
            to: 0,
        });
        state.apply(&Change::Handover { slots: vec![5, 6] });
        assert!(matches!(
            state.apply(&Change::RemoveShard(1)),
            Applied::Ok(_)
        ));
        assert_eq!(state.spares(), vec![3, 4]);
    }
}
