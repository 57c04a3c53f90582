//! ringcache's control plane: where every slot lives, agreed by Raft, and the bus that nodes
//! talk over.
//!
//! Goals: one source of truth for the topology (members, shards, slot table, epoch) that every
//! node applies in the same order; slot placement that is balanced and moves the fewest slots;
//! a binary, versioned node-to-node protocol that refuses strangers. Non-goals: the data path
//! (the `server` crate asks this crate who owns a slot and forwards over its bus).
//!
//! ```text
//!   ringcache cluster create ──bus──> seed node: Meet every node, Raft initialize, commit
//!                                      Join(member)... and Layout{shards, slots}
//!   every node:  bus ──> Raft (openraft) ──apply──> ClusterState ──watch──> routing
//! ```
//!
//! Modules:
//! - [`placement`]: pure functions: shards from nodes (zone-aware), balanced minimal-movement
//!   slot tables.
//! - [`topology`]: the replicated state and the changes Raft commits.
//! - [`raft`]: openraft's storage (durable vote and log in the data dir) and network.
//! - [`bus`]: framing, hello with the cluster id, multiplexed requests.
//! - [`failover`]: failure detection, write leases, the failover decision (pure).
//! - [`manual`]: `CLUSTER FAILOVER`: the leader pauses the primary, waits for the replica,
//!   commits (or, forced, waits out the primary's leases).
//! - [`migrate`]: elastic scaling: new shards from spares, minimal moves, migration batches.
//! - [`node`]: a node's control plane: identity, Raft, bus server, create, propose, the
//!   leader's ping loop.

pub mod bus;
pub mod failover;
pub mod manual;
pub mod migrate;
pub mod node;
pub mod placement;
pub mod raft;
pub mod topology;

pub use node::{ClusterNode, Config, DataPlane, Forwarded};
pub use placement::{NodeId, ShardId, SLOT_COUNT};
pub use topology::{Change, ClusterState, Member, Shard};

use serde::{Deserialize, Serialize};

/// What a node says about itself (`cluster status`, the admin API).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node's id.
    pub id: NodeId,
    /// Its cluster, if any.
    pub cluster_id: Option<String>,
    /// Its addresses and zone.
    pub member: Member,
    /// The Raft leader it knows of.
    pub leader: Option<NodeId>,
    /// Leader, Follower, Learner or Candidate.
    pub raft_role: String,
    /// The Raft term.
    pub term: u64,
    /// Raft voters.
    pub voters: Vec<NodeId>,
    /// Raft learners.
    pub learners: Vec<NodeId>,
    /// The epoch of the state it has applied.
    pub epoch: u64,
    /// Milliseconds left on its write lease (0: none).
    pub lease_ms_left: u64,
    /// Keys and bytes it has moved out by slot migrations since it started.
    pub migrated: (u64, u64),
}
