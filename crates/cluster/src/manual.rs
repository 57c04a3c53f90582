//! Manual failover: `CLUSTER FAILOVER [FORCE|TAKEOVER]` sent to a replica, coordinated by the
//! Raft leader.
//!
//! **Graceful** (the default). No write the primary acknowledged may be lost, so the replica
//! must hold all of them before it is promoted:
//!
//! 1. The leader asks the primary to pause writes. The primary stops taking them (they are
//!    held, not refused), waits until no write is running, and answers with its stream offset
//!    `O`: every write it acknowledged is before `O`, and no other write is acknowledged until
//!    the pause ends.
//! 2. The leader asks the replica to apply the stream up to `O`, within
//!    [`MANUAL_FAILOVER_TIMEOUT`] of the start.
//! 3. The leader commits `Failover` through Raft. The primary, once it applies it, is a
//!    replica: its held writes run again, get `-MOVED` to the new primary, and it resyncs from
//!    it (the existing path of a demoted primary).
//!
//! If the replica doesn't catch up in time, the leader tells the primary to resume and logs
//! the abandoned failover. The pause can't end while the commit might still happen: the
//! leader resumes the primary only when it knows the failover wasn't committed (it never
//! proposed it, or Raft refused it). When the leader can't tell (it lost its leadership while
//! proposing) or can't reach the primary, the primary's own pause ends after
//! [`WRITE_PAUSE_MS`], and only after [`ClusterNode::sync_topology`] has shown it whether the
//! failover committed.
//!
//! **FORCE** and **TAKEOVER** don't coordinate with the primary, which may be down: the leader
//! stops granting it leases and commits the failover once every lease it could hold has run
//! out (`Detector::withhold` and `Detector::leases_out` in [`crate::failover`]). A live primary
//! answers `-CLUSTERDOWN` meanwhile (about half a second), and writes it acknowledged but had
//! not streamed yet are lost, as with Redis's `FORCE`. `TAKEOVER` is the same as `FORCE`: see
//! the failover module docs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bus::{lock, Request, Response};
use crate::failover::{manual_target, ManualRefusal};
use crate::node::{ClusterNode, Retry, CALL_TIMEOUT, MANUAL_FAILOVER_TIMEOUT, WRITE_PAUSE_MS};
use crate::placement::NodeId;
use crate::topology::{Change, Shard};

impl ClusterNode {
    /// `CLUSTER FAILOVER` on this node (a replica): asks the Raft leader to start a manual
    /// failover promoting this node. Returns once the leader has started it (or refused).
    pub async fn request_manual_failover(self: &Arc<Self>, force: bool) -> Result<(), String> {
        self.request_manual_failover_of(self.id, force).await
    }

    /// Before this node stops: if it is a primary with replicas, hands its slots to one of
    /// them by a graceful manual failover (no acknowledged write lost) and waits until the
    /// cluster has committed it, this node then a replica; at most `timeout`. Tries the
    /// replicas in turn when the leader gives up on one (it lags, or its link is down).
    /// Returns whether it handed over; `Ok(false)` when there was nothing to hand.
    pub async fn hand_over(self: &Arc<Self>, timeout: Duration) -> Result<bool, String> {
        let deadline = Instant::now() + timeout;
        let Some((shard, true)) = self.state().seat_of(self.id).map(|(s, p)| (s.clone(), p)) else {
            return Ok(false);
        };
        if shard.replicas.is_empty() {
            return Ok(false);
        }
        let still_primary = |node: &ClusterNode| matches!(node.state().seat_of(node.id), Some((s, true)) if s.id == shard.id);
        let mut last = String::from("no replica to hand over to");
        let mut states = self.subscribe();
        for &replica in &shard.replicas {
            if Instant::now() >= deadline {
                break;
            }
            if let Err(why) = self.request_manual_failover_of(replica, false).await {
                last = format!("replica {replica:016x}: {why}");
                continue;
            }
            // The leader abandons a graceful failover after MANUAL_FAILOVER_TIMEOUT.
            let given_up = Instant::now() + MANUAL_FAILOVER_TIMEOUT + Duration::from_secs(1);
            while still_primary(self) {
                let until = deadline.min(given_up);
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                if let Ok(Err(_)) = tokio::time::timeout(left, states.changed()).await {
                    return Err("the control plane stopped".into());
                }
            }
            if !still_primary(self) {
                return Ok(true);
            }
            last = format!("replica {replica:016x} did not take over in time");
        }
        Err(last)
    }

    /// Asks the Raft leader to start a manual failover promoting `replica`.
    async fn request_manual_failover_of(
        self: &Arc<Self>,
        replica: NodeId,
        force: bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + CALL_TIMEOUT;
        let mut last = "no Raft leader".to_string();
        while Instant::now() < deadline {
            match self.leader() {
                Some(leader) if leader == self.id => {
                    return self.clone().start_manual_failover(replica, force);
                }
                Some(leader) => {
                    if let Some(addr) = self.raft_addr(leader) {
                        let request = Request::ManualFailover { replica, force };
                        match self.peers.get(&addr).call(request, CALL_TIMEOUT).await {
                            Ok(Response::Ok) => return Ok(()),
                            Ok(Response::Refused(why)) => return Err(why),
                            Ok(other) => last = format!("leader answered {other:?}"),
                            Err(e) => last = e.to_string(),
                        }
                    }
                }
                None => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(last)
    }

    /// Leader: starts a manual failover promoting `replica`, in the background.
    pub(crate) fn start_manual_failover(
        self: Arc<Self>,
        replica: NodeId,
        force: bool,
    ) -> Result<(), String> {
        let shard = manual_target(&self.state(), replica).map_err(|r| match r {
            ManualRefusal::NotAReplica => format!("node {replica:016x} is not a replica"),
            ManualRefusal::NoPrimary => "the shard's primary is not a member".to_string(),
        })?;
        if !lock(&self.manual).insert(shard.id) {
            return Err(format!(
                "a manual failover of shard {} is in progress",
                shard.id
            ));
        }
        tokio::spawn(async move {
            let started = Instant::now();
            let result = if force {
                self.forced_failover(&shard, replica).await
            } else {
                self.graceful_failover(&shard, replica).await
            };
            lock(&self.manual).remove(&shard.id);
            let (shard_id, old, new) = (
                shard.id,
                format!("{:016x}", shard.primary),
                format!("{replica:016x}"),
            );
            let ms = started.elapsed().as_millis() as u64;
            match result {
                Ok(epoch) => tracing::info!(
                    shard = shard_id,
                    old,
                    new,
                    force,
                    epoch,
                    ms,
                    "manual failover done"
                ),
                Err(why) => tracing::warn!(
                    shard = shard_id,
                    old,
                    new,
                    force,
                    ms,
                    why,
                    "manual failover abandoned"
                ),
            }
        });
        Ok(())
    }

    /// Sends `request` to member `id`, or handles it here when `id` is this node.
    async fn call_member(
        self: &Arc<Self>,
        id: NodeId,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, String> {
        if id == self.id {
            let handle = crate::bus::Handler::handle(self.clone(), request, self.cluster_id());
            return tokio::time::timeout(timeout, handle)
                .await
                .map_err(|_| "timed out".to_string());
        }
        let addr = self
            .state()
            .members
            .get(&id)
            .map(|m| m.bus_addr())
            .ok_or_else(|| format!("no member {id:016x}"))?;
        self.peers
            .get(&addr)
            .call(request, timeout)
            .await
            .map_err(|e| e.to_string())
    }

    /// Pause, catch up, commit (see the module docs). Returns the new epoch.
    async fn graceful_failover(
        self: &Arc<Self>,
        shard: &Shard,
        replica: NodeId,
    ) -> Result<u64, String> {
        let deadline = Instant::now() + MANUAL_FAILOVER_TIMEOUT;
        let pause = Request::PauseWrites {
            shard: shard.id,
            pause_ms: WRITE_PAUSE_MS,
        };
        let (repl_id, offset) = match self.call_member(shard.primary, pause, CALL_TIMEOUT).await {
            Ok(Response::Paused { repl_id, offset }) => (repl_id, offset),
            Ok(Response::Refused(why)) => return Err(format!("the primary refused: {why}")),
            Ok(other) => return Err(format!("the primary answered {other:?}")),
            // It may have paused and its answer got lost: tell it to resume (if it can't be
            // reached, its pause ends by itself).
            Err(e) => {
                self.resume_primary(shard).await;
                return Err(format!("the primary did not answer: {e}"));
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let catch_up = Request::CatchUp {
            repl_id,
            offset,
            timeout_ms: left.as_millis() as u32,
        };
        let caught = self
            .call_member(replica, catch_up, left + CALL_TIMEOUT)
            .await;
        if !matches!(caught, Ok(Response::Ok)) || Instant::now() > deadline {
            self.resume_primary(shard).await;
            return Err(format!(
                "the replica did not reach offset {offset} within {} ms: {caught:?}",
                MANUAL_FAILOVER_TIMEOUT.as_millis()
            ));
        }
        match self.commit_failover(shard, replica).await {
            Commit::Done(epoch) => Ok(epoch),
            Commit::Not(why) => {
                self.resume_primary(shard).await;
                Err(why)
            }
            // Leave the primary paused; it settles the question itself when its pause runs
            // out.
            Commit::InDoubt(why) => Err(format!("in doubt ({why}); the primary settles it")),
        }
    }

    /// Commits the failover. A proposal in doubt is settled with
    /// [`ClusterNode::sync_topology`] when possible.
    async fn commit_failover(&self, shard: &Shard, replica: NodeId) -> Commit {
        let change = Change::Failover {
            shard: shard.id,
            primary: replica,
        };
        match self.propose_retrying(change).await {
            Ok(epoch) => Commit::Done(epoch),
            Err(Retry::No(why)) => Commit::Not(format!("refused: {why}")),
            Err(Retry::Yes(why)) => {
                let settled = self.sync_topology().await;
                let state = self.state();
                match state.shards.get(&shard.id) {
                    Some(s) if s.primary == replica => Commit::Done(state.epoch),
                    _ if settled.is_ok() => Commit::Not(format!("not committed: {why}")),
                    _ => Commit::InDoubt(why),
                }
            }
        }
    }

    async fn resume_primary(self: &Arc<Self>, shard: &Shard) {
        let request = Request::ResumeWrites { shard: shard.id };
        if let Err(e) = self.call_member(shard.primary, request, CALL_TIMEOUT).await {
            tracing::warn!(e, "could not resume the primary; its pause ends by itself");
        }
    }

    /// Withholds the primary's leases, waits until every lease it could hold has run out,
    /// commits. Returns the new epoch.
    async fn forced_failover(
        self: &Arc<Self>,
        shard: &Shard,
        replica: NodeId,
    ) -> Result<u64, String> {
        let term = self.term();
        let primary = shard.primary;
        let with_detector =
            |f: &mut dyn FnMut(&mut crate::failover::Detector) -> bool| match lock(&self.detector)
                .as_mut()
            {
                Some((t, d)) if *t == term => Ok(f(d)),
                _ => Err("this node is no longer the Raft leader".to_string()),
            };
        with_detector(&mut |d| {
            d.withhold(primary);
            true
        })?;
        let t = self.timing;
        let longest =
            Duration::from_millis((t.lease_ms + t.drift_margin_ms + t.quorum_fresh_ms) * 2 + 1000);
        let started = Instant::now();
        loop {
            let now = self.mono_ms();
            if with_detector(&mut |d| d.leases_out(primary, now))? {
                break;
            }
            if started.elapsed() > longest {
                with_detector(&mut |d| {
                    d.release(primary);
                    true
                })?;
                return Err("the primary's leases did not run out".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let outcome = self.commit_failover(shard, replica).await;
        // Committed: the old primary is a replica, leases no longer matter to it. Refused: it
        // is still the primary and needs them. In doubt: keep withholding; the next term's
        // detector starts afresh anyway.
        if !matches!(outcome, Commit::InDoubt(_)) {
            let _ = with_detector(&mut |d| {
                d.release(primary);
                true
            });
        }
        match outcome {
            Commit::Done(epoch) => Ok(epoch),
            Commit::Not(why) => Err(why),
            Commit::InDoubt(why) => Err(format!("in doubt: {why}")),
        }
    }
}

/// What became of a proposed failover.
enum Commit {
    /// Committed and applied here; the epoch.
    Done(u64),
    /// Known not to have been committed.
    Not(String),
    /// It may still commit.
    InDoubt(String),
}
