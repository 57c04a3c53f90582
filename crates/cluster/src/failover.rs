//! Failure detection, write leases and the failover decision, as pure logic over a clock
//! passed in.
//!
//! The Raft leader pings every member every [`Timing::ping_ms`]. A ping to a primary can also
//! grant it a **write lease**: the primary may accept writes (and plain reads) until
//! `lease_ms` after the leader *sent* the grant (see [`lease_left`]). The leader grants only under two conditions:
//! - a quorum acknowledged it recently (within [`Timing::quorum_fresh_ms`]), so a leader cut
//!   off from the majority stops granting on its own;
//! - the primary answered a ping recently (within [`Timing::grant_while_acked_ms`]).
//!
//! A primary is declared failed when all of these hold (see [`Detector::failed`]):
//! 1. it hasn't answered a ping for [`Timing::suspect_ms`];
//! 2. `lease_ms + drift_margin_ms` have passed since this leader last granted it a lease;
//! 3. the same time plus the quorum window has passed since this node became leader, because
//!    an earlier leader's grant may still be running.
//!
//! Each grant runs `lease_ms` from its sending: the ping carries the leader's wall-clock time,
//! the primary subtracts the ping's age from the lease, and ignores a grant that arrives older
//! than half a lease (a partition that heals releases TCP retransmissions of pings sent long
//! before). So when 2 and 3 hold, every lease ever granted to the old primary has run out, as
//! long as the two wall clocks differ by less than `drift_margin_ms` (NTP keeps a LAN within a
//! few milliseconds). Only then is a replica promoted: at no moment can two primaries of a
//! shard accept writes.
//!
//! With the defaults, a primary killed at `t` stops being granted at about `t + 150 ms` and is
//! replaced at about `t + 650 ms`, plus a Raft commit.
//!
//! **Manual failover** (`CLUSTER FAILOVER` on a replica, see [`manual_target`]) comes in two
//! kinds. The graceful one pauses the primary's writes and promotes the replica once it has
//! applied every write the primary acknowledged (the coordination is in `node.rs`). `FORCE`
//! doesn't talk to the primary: the leader stops granting it leases ([`Detector::withhold`])
//! and promotes the replica once [`Detector::leases_out`] holds, by the same reasoning as
//! above, so even a live primary can't take writes alongside the new one. `TAKEOVER` is the
//! same as `FORCE` here: Redis's takeover bumps an epoch without the other primaries' votes,
//! but ringcache's topology only changes through a Raft commit, so there is nothing to skip.

use std::collections::BTreeMap;

use crate::placement::NodeId;
use crate::topology::{ClusterState, Shard};

/// What is left of a grant of `lease_ms` sent at `sent_unix_ms` (leader's wall clock) and
/// received at `now_unix_ms` (receiver's wall clock): the lease minus the ping's age, or
/// nothing for a grant delivered older than half a lease.
pub fn lease_left(lease_ms: u64, sent_unix_ms: u64, now_unix_ms: u64) -> Option<u64> {
    let age = now_unix_ms.saturating_sub(sent_unix_ms);
    (age <= lease_ms / 2).then(|| lease_ms - age)
}

/// The timing of detection and leases, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Ping period.
    pub ping_ms: u64,
    /// Silence after which a primary stops being granted leases.
    pub grant_while_acked_ms: u64,
    /// Silence after which a primary is suspected.
    pub suspect_ms: u64,
    /// Length of a write lease, from its receipt.
    pub lease_ms: u64,
    /// Allowance for clocks running at different rates during one lease.
    pub drift_margin_ms: u64,
    /// A leader grants only while a quorum acknowledged it within this time.
    pub quorum_fresh_ms: u64,
}

/// The default write lease, in ms: how long a primary may accept writes after its last grant.
pub const DEFAULT_LEASE_MS: u64 = 400;

impl Default for Timing {
    fn default() -> Self {
        Timing {
            ping_ms: 50,
            grant_while_acked_ms: 150,
            suspect_ms: 300,
            lease_ms: DEFAULT_LEASE_MS,
            drift_margin_ms: 100,
            quorum_fresh_ms: 200,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Peer {
    /// When it last answered a ping.
    last_ack: Option<u64>,
    /// When this leader last sent it a grant.
    last_grant: Option<u64>,
    /// Its replication offset, as its last answer said.
    offset: u64,
    /// Grants are withheld (a forced manual failover is waiting out its leases).
    withheld: bool,
}

/// The leader's view of every member's liveness.
#[derive(Debug, Clone)]
pub struct Detector {
    timing: Timing,
    /// When this node became leader.
    since: u64,
    peers: BTreeMap<NodeId, Peer>,
}

impl Detector {
    /// A detector for a node that became leader at `now`.
    pub fn new(timing: Timing, now: u64) -> Detector {
        Detector {
            timing,
            since: now,
            peers: BTreeMap::new(),
        }
    }

    /// The timing in force.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// `node` answered a ping at `now`, reporting its replication offset.
    pub fn acked(&mut self, node: NodeId, now: u64, offset: u64) {
        let p = self.peers.entry(node).or_default();
        p.last_ack = Some(now);
        p.offset = offset;
    }

    /// Whether a ping sent to `node` at `now` may grant it a lease, given how long ago a
    /// quorum last acknowledged this leader. Records the grant when it may.
    pub fn grant(&mut self, node: NodeId, now: u64, quorum_ack_age_ms: Option<u64>) -> bool {
        let t = self.timing;
        if quorum_ack_age_ms.is_none_or(|age| age > t.quorum_fresh_ms) {
            return false;
        }
        let p = self.peers.entry(node).or_default();
        if p.withheld {
            return false;
        }
        // A node never heard from yet gets a grant: the first ping is what proves it alive,
        // and the failover rule counts from the last grant anyway.
        let fresh = match p.last_ack {
            Some(ack) => now.saturating_sub(ack) <= t.grant_while_acked_ms,
            None => p.last_grant.is_none(),
        };
        if fresh {
            p.last_grant = Some(now);
        }
        fresh
    }

    /// Whether `node` is judged failed at `now` (and every lease it held has run out).
    pub fn failed(&self, node: NodeId, now: u64) -> bool {
        let p = self.peers.get(&node).copied().unwrap_or_default();
        let silent = p
            .last_ack
            .is_none_or(|ack| now.saturating_sub(ack) >= self.timing.suspect_ms);
        silent && self.leases_out(node, now)
    }

    /// Whether every lease `node` could hold has run out at `now`: the last grant of this
    /// leader, and any grant of an earlier leader (conditions 2 and 3 of the module docs).
    pub fn leases_out(&self, node: NodeId, now: u64) -> bool {
        let t = self.timing;
        let expiry = t.lease_ms + t.drift_margin_ms;
        if now.saturating_sub(self.since) < expiry + t.quorum_fresh_ms {
            return false;
        }
        let p = self.peers.get(&node).copied().unwrap_or_default();
        p.last_grant.is_none_or(|g| now.saturating_sub(g) >= expiry)
    }

    /// Stops granting `node` leases until [`Detector::release`] (a forced failover waits for
    /// [`Detector::leases_out`]).
    pub fn withhold(&mut self, node: NodeId) {
        self.peers.entry(node).or_default().withheld = true;
    }

    /// Grants `node` leases again, as [`Detector::grant`] allows.
    pub fn release(&mut self, node: NodeId) {
        if let Some(p) = self.peers.get_mut(&node) {
            p.withheld = false;
        }
    }

    /// The last offset `node` reported.
    pub fn offset(&self, node: NodeId) -> u64 {
        self.peers.get(&node).map_or(0, |p| p.offset)
    }

    /// Whether `node` answered within the suspicion window.
    pub fn alive(&self, node: NodeId, now: u64) -> bool {
        self.peers
            .get(&node)
            .and_then(|p| p.last_ack)
            .is_some_and(|ack| now.saturating_sub(ack) < self.timing.suspect_ms)
    }
}

/// The failovers to commit at `now`: for each shard whose primary has failed, the live replica
/// with the highest replication offset (ties to the lower id). A shard with no live replica
/// stays as it is.
pub fn plan(state: &ClusterState, detector: &Detector, now: u64) -> Vec<(Shard, NodeId)> {
    let mut out = Vec::new();
    for shard in state.shards.values() {
        if !detector.failed(shard.primary, now) {
            continue;
        }
        let best = shard
            .replicas
            .iter()
            .filter(|r| detector.alive(**r, now))
            .max_by_key(|r| (detector.offset(**r), std::cmp::Reverse(**r)));
        if let Some(best) = best {
            out.push((shard.clone(), *best));
        }
    }
    out
}

/// Why `CLUSTER FAILOVER` can't start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManualRefusal {
    /// The node is a primary, a spare, or in no cluster: Redis's "You should send CLUSTER
    /// FAILOVER to a replica".
    NotAReplica,
    /// The shard's primary is no member (it left): nothing to coordinate with.
    NoPrimary,
}

/// The shard whose replica `replica` is, for a manual failover, or why there is none.
pub fn manual_target(state: &ClusterState, replica: NodeId) -> Result<Shard, ManualRefusal> {
    match state.seat_of(replica) {
        Some((shard, false)) if state.members.contains_key(&shard.primary) => Ok(shard.clone()),
        Some((_, false)) => Err(ManualRefusal::NoPrimary),
        _ => Err(ManualRefusal::NotAReplica),
    }
}

/// Repairs to commit at `now`: for each replica judged failed, a live spare (a member with no
/// seat) to take its seat, preferring a zone the shard doesn't use yet. Failovers go first: a
/// shard whose primary failed is left to [`plan`].
pub fn repairs(
    state: &ClusterState,
    detector: &Detector,
    now: u64,
) -> Vec<(Shard, NodeId, NodeId)> {
    let mut spares: Vec<&crate::topology::Member> = state
        .members
        .values()
        .filter(|m| state.seat_of(m.id).is_none() && detector.alive(m.id, now))
        .collect();
    let mut out = Vec::new();
    for shard in state.shards.values() {
        if detector.failed(shard.primary, now) {
            continue;
        }
        for &old in &shard.replicas {
            if !detector.failed(old, now) || spares.is_empty() {
                continue;
            }
            let zones: Vec<&str> = std::iter::once(&shard.primary)
                .chain(&shard.replicas)
                .filter_map(|id| state.members.get(id))
                .map(|m| m.zone.as_str())
                .collect();
            let pick = spares
                .iter()
                .position(|m| !zones.contains(&m.zone.as_str()))
                .unwrap_or(0);
            let spare = spares.remove(pick);
            out.push((shard.clone(), old, spare.id));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{Change, Member};

    const P: NodeId = 1;
    const R1: NodeId = 2;
    const R2: NodeId = 3;

    fn state() -> ClusterState {
        let mut s = ClusterState::default();
        for (id, port) in [(P, 7000), (R1, 7001), (R2, 7002)] {
            s.apply(&Change::Join(Member {
                id,
                host: "127.0.0.1".into(),
                port,
                bus_port: port + 10000,
                memcache_port: None,
                forward_port: None,
                admin_port: None,
                zone: String::new(),
            }));
        }
        s.apply(&Change::Layout {
            shards: vec![Shard {
                id: 0,
                primary: P,
                replicas: vec![R1, R2],
            }],
            slots: vec![0; crate::SLOT_COUNT],
        });
        s
    }

    /// Drives a leader that pings every node every `ping_ms` from `from` to `to`; `down` nodes
    /// don't answer after `dies_at`.
    fn run(d: &mut Detector, from: u64, to: u64, dies_at: u64, down: &[NodeId]) {
        let t = d.timing();
        let mut now = from;
        while now < to {
            for node in [P, R1, R2] {
                d.grant(node, now, Some(10));
                if !(down.contains(&node) && now >= dies_at) {
                    d.acked(node, now, if node == R2 { 90 } else { 50 });
                }
            }
            now += t.ping_ms;
        }
    }

    #[test]
    fn a_dead_primary_is_replaced_by_the_most_advanced_replica_only_after_its_lease() {
        let t = Timing::default();
        let mut d = Detector::new(t, 0);
        run(&mut d, 0, 5000, 2000, &[P]);
        let s = state();
        // Every lease granted to P ended by the time of the failover: find the last grant.
        let last_grant = d.peers[&P].last_grant.expect("granted before dying");
        assert!(last_grant <= 2000 + t.grant_while_acked_ms);
        let first_failover = (2000..5000)
            .step_by(10)
            .find(|now| !plan(&s, &d, *now).is_empty())
            .expect("a failover");
        assert!(first_failover >= last_grant + t.lease_ms + t.drift_margin_ms);
        assert!(first_failover - 2000 <= 700, "failover {first_failover}");
        let planned = plan(&s, &d, first_failover);
        assert_eq!(planned[0].1, R2, "the replica with the highest offset");
    }

    #[test]
    fn a_node_that_never_answers_gets_one_grant_and_is_failed_after_it_runs_out() {
        let t = Timing::default();
        let mut d = Detector::new(t, 0);
        let start = t.lease_ms + t.drift_margin_ms + t.quorum_fresh_ms;
        assert!(d.grant(P, start, Some(0)));
        assert!(!d.grant(P, start + 50, Some(0)));
        assert!(!d.failed(P, start + t.lease_ms));
        assert!(d.failed(P, start + t.lease_ms + t.drift_margin_ms));
    }

    #[test]
    fn a_leader_without_a_fresh_quorum_grants_nothing() {
        let mut d = Detector::new(Timing::default(), 0);
        assert!(!d.grant(P, 100, Some(500)));
        assert!(!d.grant(P, 100, None));
        assert!(d.grant(P, 100, Some(0)));
    }

    #[test]
    fn a_grant_counts_from_its_sending_and_a_late_one_is_void() {
        assert_eq!(lease_left(400, 1_000, 1_000), Some(400));
        assert_eq!(lease_left(400, 1_000, 1_150), Some(250));
        assert_eq!(lease_left(400, 1_000, 1_200), Some(200));
        // A ping held back by a partition and delivered when it heals grants nothing.
        assert_eq!(lease_left(400, 1_000, 1_201), None);
        assert_eq!(lease_left(400, 1_000, 61_000), None);
        // A receiver whose clock is behind sees a negative age: the lease is not lengthened.
        assert_eq!(lease_left(400, 1_000, 990), Some(400));
    }

    #[test]
    fn a_new_leader_waits_out_leases_granted_by_its_predecessor() {
        let t = Timing::default();
        let d = Detector::new(t, 10_000);
        // P never answered this leader, yet it can't be failed over before any lease an
        // earlier leader granted must have run out.
        assert!(!d.failed(P, 10_000 + t.lease_ms));
        assert!(d.failed(
            P,
            10_000 + t.lease_ms + t.drift_margin_ms + t.quorum_fresh_ms
        ));
    }

    #[test]
    fn a_failed_replica_is_replaced_by_a_live_spare() {
        let mut s = state();
        s.apply(&Change::Join(Member {
            id: 9,
            host: "127.0.0.1".into(),
            port: 7009,
            bus_port: 17009,
            memcache_port: None,
            forward_port: None,
            admin_port: None,
            zone: String::new(),
        }));
        let mut d = Detector::new(Timing::default(), 0);
        let mut now = 0;
        while now < 5000 {
            for node in [P, R1, R2, 9] {
                d.grant(node, now, Some(10));
                if !(node == R1 && now >= 1000) {
                    d.acked(node, now, 0);
                }
            }
            now += 50;
        }
        let planned = repairs(&s, &d, now);
        assert_eq!(planned.len(), 1);
        assert_eq!((planned[0].1, planned[0].2), (R1, 9));
    }

    #[test]
    fn a_withheld_primary_gets_no_grant_and_its_leases_are_out_after_lease_and_margin() {
        let t = Timing::default();
        let mut d = Detector::new(t, 0);
        run(&mut d, 0, 2000, 0, &[]);
        let last = d.peers[&P].last_grant.expect("granted");
        d.withhold(P);
        // P still answers every ping, yet is granted nothing more.
        run(&mut d, 2000, 2300, 0, &[]);
        assert_eq!(d.peers[&P].last_grant, Some(last));
        assert!(!d.leases_out(P, last + t.lease_ms));
        assert!(d.leases_out(P, last + t.lease_ms + t.drift_margin_ms));
        // Its leases are out, but it answered 200 ms ago: not failed. Only the manual
        // failover that withheld the grants promotes its replica.
        let now = last + t.lease_ms + t.drift_margin_ms;
        assert!(d.leases_out(P, now) && !d.failed(P, now));
        d.release(P);
        assert!(d.grant(P, 2300, Some(10)));
    }

    #[test]
    fn a_new_leaders_forced_failover_waits_out_its_predecessors_grants() {
        let t = Timing::default();
        let mut d = Detector::new(t, 10_000);
        d.withhold(P);
        assert!(!d.grant(P, 10_000, Some(0)));
        assert!(!d.leases_out(P, 10_000 + t.lease_ms + t.drift_margin_ms));
        assert!(d.leases_out(
            P,
            10_000 + t.lease_ms + t.drift_margin_ms + t.quorum_fresh_ms
        ));
    }

    #[test]
    fn manual_failover_is_for_replicas_only() {
        let mut s = state();
        assert_eq!(manual_target(&s, R1).map(|sh| sh.primary), Ok(P));
        assert_eq!(manual_target(&s, P), Err(ManualRefusal::NotAReplica));
        assert_eq!(manual_target(&s, 99), Err(ManualRefusal::NotAReplica));
        s.apply(&Change::Failover {
            shard: 0,
            primary: R1,
        });
        assert_eq!(manual_target(&s, R1), Err(ManualRefusal::NotAReplica));
        assert_eq!(manual_target(&s, P).map(|sh| sh.primary), Ok(R1));
    }

    #[test]
    fn live_primaries_and_shards_without_live_replicas_are_left_alone() {
        let mut d = Detector::new(Timing::default(), 0);
        run(&mut d, 0, 5000, 0, &[]);
        assert!(plan(&state(), &d, 5000).is_empty());
        let mut d = Detector::new(Timing::default(), 0);
        run(&mut d, 0, 5000, 1000, &[P, R1, R2]);
        assert!(plan(&state(), &d, 5000).is_empty());
    }
}
