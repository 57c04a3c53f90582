//! One node's part in the control plane: its identity, its Raft instance, the bus server, and
//! the operations built on them (create a cluster, propose a change, reconcile Raft
//! membership with the cluster's members).
//!
//! ```text
//!   bus listener ──> bus::serve ──> ClusterNode::handle ──> Raft (append/vote/snapshot)
//!                                        │                 └> DataPlane::forward (client
//!                                        │                    requests for keys we own)
//!   Raft state machine ──apply──> watch<Arc<ClusterState>> ──> routing in the data plane
//!   leader only: reconcile task (every 500 ms) keeps every member in Raft, 3 or 5 voters
//! ```
//!
//! A graceful manual failover (`CLUSTER FAILOVER` on replica R of primary P), coordinated by
//! the Raft leader:
//!
//! ```text
//!   R ──ManualFailover──> leader ──PauseWrites──> P   P holds every write from now on and
//!                           │   <──Paused{offset}──     answers with its stream offset
//!                           ├──CatchUp{offset}──> R    R has applied everything before it
//!                           │   <──Ok───────────────
//!                           └──Raft: Failover{R}──> every node; P, demoted, lets its held
//!                                                   writes run: they get -MOVED to R
//!   R not caught up within 5 s: ResumeWrites to P, and the failover is abandoned.
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers, Snapshot};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::bus::{self, lock, Proto, ReplOp, Request, Response};
use crate::failover::{Detector, Timing};
use crate::placement::{self, Candidate, NodeId, ShardId};
use crate::raft::{self, LogStore, Network, Peers, Raft, StateMachine};
use crate::topology::{Applied, Change, ClusterState, Member, Shard};
use crate::NodeStatus;

/// Most slots one drain request covers.
const MIGRATION_BATCH_SLOTS: usize = 1024;
/// How long a drain of one batch may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// How long one bus call may take before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a graceful manual failover waits for the replica to catch up before it is
/// abandoned (Redis's `CLUSTER_MF_TIMEOUT`).
pub const MANUAL_FAILOVER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a primary's write pause lasts at most before the primary asks Raft whether the
/// failover happened (the leader normally ends it much sooner: the failover commits, or it
/// sends `ResumeWrites`).
pub const WRITE_PAUSE_MS: u32 = 10_000;

/// A future the data plane answers with.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'static>>;

/// What became of a forwarded request.
#[derive(Debug)]
pub enum Forwarded {
    /// The owner's reply.
    Reply(Vec<u8>),
    /// A key's slot isn't this node's: the sender refreshes its view and retries.
    NotOwner,
    /// The keys' slot is migrating and they aren't here: send it to the importing primary at
    /// this bus address, with `asking`.
    Ask(String),
    /// A write that arrived while this primary's writes are paused: run it again (it is
    /// handed back) once [`DataPlane::pause_over`] resolves.
    Held(Vec<Vec<u8>>),
}

/// What the data plane offers the control plane: running a forwarded request, and its part
/// of replication and of manual failovers.
pub trait DataPlane: Send + Sync + 'static {
    /// Runs a forwarded request on this node if it owns its keys.
    fn forward(&self, proto: Proto, payload: Vec<Vec<u8>>, asking: bool) -> Forwarded;

    /// This node's replication offset: a primary's stream position, a replica's applied one.
    fn repl_offset(&self) -> u64;

    /// Answers a replica's `ReplPull` or `ReplSnapshot`.
    fn replication(&self, request: Request) -> BoxFuture<Response>;

    /// On a primary with replicas: stops taking writes for at most `pause_ms` (writes are
    /// held, not refused) and returns its backlog id and offset once no write is running, so
    /// every write it acknowledged is before that offset. `None` if it isn't such a primary.
    fn pause_writes(&self, pause_ms: u64) -> Option<(u64, u64)>;

    /// Ends a write pause; the held writes run (or are redirected if the node was demoted).
    fn resume_writes(&self);

    /// Resolves when no write pause is in force.
    fn pause_over(&self) -> BoxFuture<()>;

    /// On a replica: waits up to `timeout` until it has applied the stream `repl_id` up to
    /// `offset`; whether it has.
    fn catch_up(&self, repl_id: u64, offset: u64, timeout: Duration) -> BoxFuture<bool>;

    /// Source side of a migration: moves every key of `slots` to the primary whose bus address
    /// is `target`, deleting each here only once the target has it, until the slots are empty
    /// here; returns the keys and bytes moved.
    fn drain(
        &self,
        slots: Vec<u16>,
        target: String,
        epoch: u64,
    ) -> BoxFuture<Result<(u64, u64), String>>;

    /// Target side: stores keys sent by a draining primary (a key written here since the
    /// migration began is newer and is kept), and answers once its replicas have them too
    /// (within a bound).
    fn import(&self, ops: Vec<ReplOp>) -> BoxFuture<Result<(), String>>;

    /// Keys and bytes this node has moved out by migrations since it started.
    fn migrated(&self) -> (u64, u64);
}

/// How to start a node's control plane.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the identity and the Raft state are kept; `None` keeps them in memory only (a
    /// restart is then a new node).
    pub dir: Option<PathBuf>,
    /// The address the bus listens on.
    pub bus_listen: SocketAddr,
    /// This node as others should see it (its id is filled in from the identity, its bus
    /// port from the bound listener).
    pub member: Member,
    /// The source address of outgoing bus connections.
    pub bind_ip: Option<IpAddr>,
}

/// A node's identity, kept in `node.json` in its data dir.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Identity {
    node_id: NodeId,
    cluster_id: Option<String>,
}

/// A node's control plane.
pub struct ClusterNode {
    /// This node's id.
    pub id: NodeId,
    cluster_id: Arc<Mutex<Option<String>>>,
    raft: Raft,
    /// Bus clients of the control plane (Raft, pings, leases): their connections are used by
    /// nothing else, so client traffic never queues ahead of a heartbeat.
    pub peers: Arc<Peers>,
    /// Bus clients of the data plane: forwarding, replication, slot migration.
    pub data_peers: Arc<Peers>,
    state: watch::Receiver<Arc<ClusterState>>,
    member: Member,
    dir: Option<PathBuf>,
    data_plane: OnceLock<Arc<dyn DataPlane>>,
    /// The data plane's runtime: forwarded requests, replication and migration run there.
    data_runtime: OnceLock<tokio::runtime::Handle>,
    /// Bound bus address.
    pub bus_addr: SocketAddr,
    /// The monotonic origin of `lease_until_ms`.
    started: std::time::Instant,
    /// This node's write lease runs until this many ms after `started` (0: never granted).
    lease_until_ms: std::sync::atomic::AtomicU64,
    /// The leader's failure detector, with the term it was created in.
    pub(crate) detector: Mutex<Option<(u64, Detector)>>,
    /// Members with a ping out and unanswered (leader only).
    pings_in_flight: Mutex<std::collections::HashSet<NodeId>>,
    pub(crate) timing: Timing,
    /// Leader: shards with a manual failover in progress (one at a time per shard).
    pub(crate) manual: Mutex<BTreeSet<ShardId>>,
}

impl std::fmt::Debug for ClusterNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterNode")
            .field("id", &format_args!("{:016x}", self.id))
            .field("bus_addr", &self.bus_addr)
            .finish_non_exhaustive()
    }
}

/// Milliseconds since the Unix epoch by this machine's wall clock.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut raw = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn load_identity(dir: Option<&std::path::Path>) -> std::io::Result<Identity> {
    let fresh = || Identity {
        node_id: rand::random::<u64>() | 1,
        cluster_id: None,
    };
    let Some(dir) = dir else {
        return Ok(fresh());
    };
    std::fs::create_dir_all(dir)?;
    let path = dir.join("node.json");
    if path.exists() {
        let text = std::fs::read_to_string(&path)?;
        return serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        });
    }
    let identity = fresh();
    save_identity(Some(dir), &identity)?;
    Ok(identity)
}

fn save_identity(dir: Option<&std::path::Path>, identity: &Identity) -> std::io::Result<()> {
    let Some(dir) = dir else { return Ok(()) };
    let text = serde_json::to_string_pretty(identity).map_err(std::io::Error::other)?;
    let tmp = dir.join("node.json.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(tmp, dir.join("node.json"))
}

/// Splits `host:port[@busport]` into the client and bus addresses (bus defaults to port +
/// 10000, as in Redis Cluster).
pub fn parse_node_addr(text: &str) -> Result<(String, u16, u16), String> {
    let (addr, bus) = match text.split_once('@') {
        Some((a, b)) => (a, Some(b)),
        None => (text, None),
    };
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("'{text}' is not host:port"))?;
    let port: u16 = port.parse().map_err(|_| format!("bad port in '{text}'"))?;
    let bus = match bus {
        Some(b) => b.parse().map_err(|_| format!("bad bus port in '{text}'"))?,
        None => port
            .checked_add(10000)
            .ok_or_else(|| format!("port {port} has no default bus port (port + 10000)"))?,
    };
    Ok((host.to_string(), port, bus))
}

impl ClusterNode {
    /// Starts the control plane: loads (or creates) the identity, starts Raft and the bus.
    pub async fn start(
        mut config: Config,
        shutdown: CancellationToken,
    ) -> std::io::Result<Arc<ClusterNode>> {
        let identity = load_identity(config.dir.as_deref())?;
        config.member.id = identity.node_id;
        let listener = tokio::net::TcpListener::bind(config.bus_listen).await?;
        let bus_addr = listener.local_addr()?;
        config.member.bus_port = bus_addr.port();
        let cluster_id = Arc::new(Mutex::new(identity.cluster_id.clone()));
        let peers = Arc::new(Peers::new(cluster_id.clone(), config.bind_ip, false));
        let (tx, rx) = watch::channel(Arc::new(ClusterState::default()));
        let log = LogStore::open(config.dir.as_deref())?;
        let sm = StateMachine::open(config.dir.as_deref(), Arc::new(tx))?;
        let raft_config = Arc::new(
            raft::config(identity.node_id)
                .validate()
                .map_err(std::io::Error::other)?,
        );
        let network = Network {
            peers: peers.clone(),
        };
        let raft = Raft::new(identity.node_id, raft_config, network, log, sm)
            .await
            .map_err(std::io::Error::other)?;
        let data_peers = Arc::new(Peers::new(cluster_id.clone(), config.bind_ip, true));
        let node = Arc::new(ClusterNode {
            id: identity.node_id,
            cluster_id,
            raft,
            peers,
            data_peers,
            state: rx,
            member: config.member.clone(),
            dir: config.dir.clone(),
            data_plane: OnceLock::new(),
            data_runtime: OnceLock::new(),
            bus_addr,
            started: std::time::Instant::now(),
            lease_until_ms: std::sync::atomic::AtomicU64::new(0),
            detector: Mutex::new(None),
            pings_in_flight: Mutex::default(),
            timing: Timing::default(),
            manual: Mutex::default(),
        });
        tracing::info!(
            node = format!("{:016x}", node.id),
            bus = %bus_addr,
            cluster = ?identity.cluster_id,
            "cluster bus listening"
        );
        {
            let node = node.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        accepted = listener.accept() => match accepted {
                            Ok((stream, _)) => {
                                tokio::spawn(bus::serve(node.clone(), stream));
                            }
                            Err(e) => {
                                tracing::warn!(%e, "bus accept failed");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                }
            });
        }
        {
            let node = node.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(node.timing.ping_ms));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tick.tick() => {}
                    }
                    node.clone().ping_round().await;
                }
            });
        }
        {
            let node = node.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    let busy = tokio::select! {
                        _ = shutdown.cancelled() => break,
                        busy = node.drive_migrations() => busy,
                    };
                    if !busy {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            });
        }
        {
            let node = node.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                    node.maintain().await;
                }
                let _ = node.raft.shutdown().await;
            });
        }
        Ok(node)
    }

    /// Plugs in the data plane that runs forwarded requests.
    pub fn set_data_plane(&self, data_plane: Arc<dyn DataPlane>) {
        let _ = self.data_plane.set(data_plane);
        // Requests for the data plane run where it runs (the caller's runtime), not on the
        // control plane's thread.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let _ = self.data_runtime.set(handle);
        }
    }

    /// The cluster id, once this node is in a cluster.
    pub fn cluster_id(&self) -> Option<String> {
        lock(&self.cluster_id).clone()
    }

    /// The latest applied cluster state.
    pub fn state(&self) -> Arc<ClusterState> {
        self.state.borrow().clone()
    }

    /// A receiver that wakes on every new cluster state.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.state.clone()
    }

    /// The Raft leader this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// This node's status, for `cluster status` and the admin API.
    pub fn status(&self) -> NodeStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        NodeStatus {
            id: self.id,
            cluster_id: self.cluster_id(),
            member: self.member.clone(),
            leader: metrics.current_leader,
            raft_role: format!("{:?}", metrics.state),
            term: metrics.current_term,
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            epoch: self.state().epoch,
            lease_ms_left: self.lease_ms_left(),
            migrated: self.data_plane.get().map_or((0, 0), |d| d.migrated()),
        }
    }

    /// The current Raft term.
    pub(crate) fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    pub(crate) fn mono_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether this node holds a write lease now. A primary without one serves neither writes
    /// nor plain reads: another node may be about to take over its shard.
    pub fn lease_valid(&self) -> bool {
        self.mono_ms()
            < self
                .lease_until_ms
                .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Milliseconds left on the write lease.
    pub fn lease_ms_left(&self) -> u64 {
        self.lease_until_ms
            .load(std::sync::atomic::Ordering::Acquire)
            .saturating_sub(self.mono_ms())
    }

    fn extend_lease(&self, received_at_ms: u64, lease_ms: u64) {
        self.lease_until_ms.fetch_max(
            received_at_ms + lease_ms,
            std::sync::atomic::Ordering::AcqRel,
        );
    }

    /// Leader only: one round of pings to every member, granting leases where the detector
    /// allows, then commits the failovers the detector calls for.
    async fn ping_round(self: Arc<Self>) {
        if self.cluster_id().is_none() {
            return;
        }
        let metrics = self.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(self.id) {
            *lock(&self.detector) = None;
            return;
        }
        let term = metrics.current_term;
        let quorum_age = metrics.millis_since_quorum_ack;
        let now = self.mono_ms();
        let state = self.state();
        // A member whose last ping is still unanswered (a paused or cut-off node holds it for
        // up to `suspect_ms`) is skipped: the rounds, and the failover decisions at their end,
        // go on every `ping_ms` whatever one slow peer does.
        let mut grants = Vec::new();
        {
            let mut guard = lock(&self.detector);
            if guard.as_ref().is_none_or(|(t, _)| *t != term) {
                *guard = Some((term, Detector::new(self.timing, now)));
            }
            let Some((_, detector)) = guard.as_mut() else {
                return;
            };
            let in_flight = lock(&self.pings_in_flight);
            for id in state.members.keys() {
                if !in_flight.contains(id) {
                    grants.push((*id, detector.grant(*id, now, quorum_age)));
                }
            }
        }
        let lease_ms = self.timing.lease_ms;
        let epoch = state.epoch;
        for (id, grant) in grants {
            let lease = grant.then_some(lease_ms as u32);
            if id == self.id {
                if grant {
                    self.extend_lease(now, lease_ms);
                }
                let offset = self.data_plane.get().map_or(0, |d| d.repl_offset());
                if let Some((_, d)) = lock(&self.detector).as_mut() {
                    d.acked(id, now, offset);
                }
                continue;
            }
            let Some(member) = state.members.get(&id) else {
                continue;
            };
            let client = self.peers.get(&member.bus_addr());
            let timeout = Duration::from_millis(self.timing.suspect_ms);
            lock(&self.pings_in_flight).insert(id);
            let node = self.clone();
            tokio::spawn(async move {
                let answer = client
                    .call(
                        Request::Ping {
                            term,
                            lease_ms: lease,
                            sent_unix_ms: unix_ms(),
                            epoch,
                        },
                        timeout,
                    )
                    .await;
                if let Ok(Response::Pong { offset }) = answer {
                    if let Some((t, d)) = lock(&node.detector).as_mut() {
                        // Counted as alive when the ping was sent: conservative for suspicion.
                        if *t == term {
                            d.acked(id, now, offset);
                        }
                    }
                }
                lock(&node.pings_in_flight).remove(&id);
            });
        }
        let plan = {
            let guard = lock(&self.detector);
            match guard.as_ref() {
                Some((_, d)) => crate::failover::plan(&state, d, self.mono_ms()),
                None => Vec::new(),
            }
        };
        let repairs = {
            let guard = lock(&self.detector);
            match guard.as_ref() {
                Some((_, d)) if plan.is_empty() => {
                    crate::failover::repairs(&state, d, self.mono_ms())
                }
                _ => Vec::new(),
            }
        };
        for (shard, old, new) in repairs {
            tracing::warn!(
                shard = shard.id,
                failed = format!("{old:016x}"),
                spare = format!("{new:016x}"),
                "replica failed: a spare takes its seat"
            );
            if let Err(why) = self
                .propose(Change::Reseat {
                    shard: shard.id,
                    old,
                    new,
                })
                .await
            {
                tracing::warn!(why, "repair not committed");
            }
        }
        for (shard, primary) in plan {
            tracing::warn!(
                shard = shard.id,
                failed = format!("{:016x}", shard.primary),
                promoted = format!("{primary:016x}"),
                "primary failed: promoting its replica"
            );
            if let Err(why) = self
                .propose(Change::Failover {
                    shard: shard.id,
                    primary,
                })
                .await
            {
                tracing::warn!(why, "failover not committed");
            }
        }
    }

    fn set_cluster_id(&self, id: &str) -> Result<(), String> {
        let mut current = lock(&self.cluster_id);
        match current.as_deref() {
            Some(existing) if existing == id => return Ok(()),
            Some(existing) => return Err(format!("node is already in cluster {existing}")),
            None => {}
        }
        save_identity(
            self.dir.as_deref(),
            &Identity {
                node_id: self.id,
                cluster_id: Some(id.to_string()),
            },
        )
        .map_err(|e| format!("can't save identity: {e}"))?;
        *current = Some(id.to_string());
        Ok(())
    }

    /// Proposes a change and waits until it is committed and applied; returns the new epoch.
    /// Sent to the leader over the bus when this node isn't the leader.
    pub async fn propose(&self, change: Change) -> Result<u64, String> {
        self.propose_retrying(change).await.map_err(|r| match r {
            Retry::Yes(why) | Retry::No(why) => why,
        })
    }

    /// As [`ClusterNode::propose`], telling a refusal (`Retry::No`: the state is unchanged)
    /// from a proposal whose fate is unknown (`Retry::Yes`: it may still commit).
    pub(crate) async fn propose_retrying(&self, change: Change) -> Result<u64, Retry> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let attempt = self.propose_once(change.clone()).await;
            match attempt {
                Ok(epoch) => return Ok(epoch),
                Err(Retry::No(why)) => return Err(Retry::No(why)),
                Err(Retry::Yes(why)) => {
                    if tokio::time::Instant::now() > deadline {
                        return Err(Retry::Yes(why));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Commits a change that changes nothing (this node's own member record, as the state
    /// has it) and waits until this node has applied it. Afterwards `state()` holds every
    /// change committed before the call, and a proposal that was in doubt before it has
    /// either been applied or can never commit (Raft: an entry not in the log of the leader
    /// that committed this one is overwritten, §5.4.2). Returns the epoch.
    pub async fn sync_topology(&self) -> Result<u64, String> {
        let me = self
            .state()
            .members
            .get(&self.id)
            .cloned()
            .unwrap_or_else(|| self.member.clone());
        let epoch = self.propose(Change::Join(me)).await?;
        self.wait_for_epoch(epoch).await;
        Ok(epoch)
    }

    async fn propose_once(&self, change: Change) -> Result<u64, Retry> {
        let leader = self.leader();
        if leader == Some(self.id) {
            return match self.raft.client_write(change).await {
                Ok(r) => match r.data {
                    Applied::Ok(epoch) => Ok(epoch),
                    Applied::Refused(why) => Err(Retry::No(why)),
                },
                Err(e) => Err(Retry::Yes(e.to_string())),
            };
        }
        let Some(addr) = leader.and_then(|l| self.raft_addr(l)) else {
            return Err(Retry::Yes("no Raft leader".into()));
        };
        match self
            .peers
            .get(&addr)
            .call(Request::Propose(change), CALL_TIMEOUT)
            .await
        {
            Ok(Response::Proposed(Ok(epoch))) => {
                self.wait_for_epoch(epoch).await;
                Ok(epoch)
            }
            Ok(Response::Proposed(Err(why))) => Err(Retry::No(why)),
            Ok(other) => Err(Retry::Yes(format!("leader answered {other:?}"))),
            Err(e) => Err(Retry::Yes(e.to_string())),
        }
    }

    /// Leader only: drains the next batch of migrating slots from their source shard's
    /// primary into their target shard's primary, then commits the handover. Whether there
    /// was work (the caller pauses when there wasn't). A failed drain is retried on the next
    /// call, against whichever nodes are the shards' primaries by then.
    async fn drive_migrations(&self) -> bool {
        if self.leader() != Some(self.id) {
            return false;
        }
        let state = self.state();
        let Some((m, slots)) = crate::migrate::next_batch(&state, MIGRATION_BATCH_SLOTS) else {
            return false;
        };
        let primary = |shard| {
            state
                .shards
                .get(&shard)
                .and_then(|s| state.members.get(&s.primary))
        };
        let (Some(source), Some(target)) = (primary(m.from), primary(m.to)) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            return false;
        };
        let request = Request::Drain {
            slots: slots.clone(),
            target: target.bus_addr(),
            epoch: state.epoch,
        };
        let answer = self
            .peers
            .get(&source.bus_addr())
            .call(request, DRAIN_TIMEOUT)
            .await;
        match answer {
            Ok(Response::Drained { keys, bytes }) => {
                tracing::info!(
                    from = m.from,
                    to = m.to,
                    slots = slots.len(),
                    keys,
                    bytes,
                    "slots drained"
                );
                if let Err(why) = self.propose(Change::Handover { slots }).await {
                    tracing::warn!(why, "handover not committed");
                }
                true
            }
            other => {
                tracing::warn!(answer = ?other, from = m.from, to = m.to, "drain failed; will retry");
                tokio::time::sleep(Duration::from_millis(200)).await;
                false
            }
        }
    }

    /// Checks that this node is the primary of the shard `slots` migrate from (or to, for
    /// `importing`), as of `epoch`.
    async fn check_migration(
        &self,
        slots: &[u16],
        epoch: u64,
        importing: bool,
    ) -> Result<(), String> {
        self.wait_for_epoch(epoch).await;
        let state = self.state();
        for slot in slots {
            let Some(m) = state.migration(*slot) else {
                return Err(format!("slot {slot} is not migrating"));
            };
            let shard = if importing { m.to } else { m.from };
            if state.shards.get(&shard).map(|s| s.primary) != Some(self.id) {
                return Err(format!("not the primary of shard {shard}"));
            }
        }
        Ok(())
    }

    /// Waits (up to 2 s) until this node has applied `epoch`.
    pub async fn wait_for_epoch(&self, epoch: u64) {
        let mut rx = self.subscribe();
        let _ =
            tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|s| s.epoch >= epoch)).await;
    }

    pub(crate) fn raft_addr(&self, id: NodeId) -> Option<String> {
        let metrics = self.raft.metrics().borrow().clone();
        metrics
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }

    /// Leader only: keeps Raft's membership in line with the cluster's members: every member
    /// a learner, the first 3 (5 from 7 members on) voters, departed members removed. Also,
    /// on every node: announces this node's addresses when they changed (after a restart
    /// with new ports).
    async fn maintain(&self) {
        if self.cluster_id().is_none() {
            return;
        }
        let state = self.state();
        if let Some(known) = state.members.get(&self.id) {
            if *known != self.member && self.leader().is_some() {
                if let Err(why) = self.propose(Change::Join(self.member.clone())).await {
                    tracing::warn!(why, "could not announce new addresses");
                }
            }
        }
        if self.leader() != Some(self.id) {
            return;
        }
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership().clone();
        if metrics.membership_config.log_id().is_some()
            && self
                .raft
                .with_raft_state(|s| {
                    s.membership_state.effective().log_id()
                        != s.membership_state.committed().log_id()
                })
                .await
                .unwrap_or(true)
        {
            return; // a membership change is in flight
        }
        let in_raft: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
        for member in state.members.values() {
            if !in_raft.contains(&member.id) {
                let node = BasicNode {
                    addr: member.bus_addr(),
                };
                if let Err(e) = self.raft.add_learner(member.id, node, false).await {
                    tracing::debug!(%e, "add_learner");
                }
                return;
            }
        }
        let gone: BTreeSet<NodeId> = in_raft
            .iter()
            .filter(|id| !state.members.contains_key(id))
            .copied()
            .collect();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let target = if state.members.len() >= 7 { 5 } else { 3 };
        let mut wanted: BTreeSet<NodeId> = voters.difference(&gone).copied().collect();
        // Prefer members in the order they joined the Raft group (lowest ids break ties) so the
        // choice is stable; the leader itself always stays.
        for id in state.members.keys() {
            if wanted.len() >= target.min(state.members.len()) {
                break;
            }
            wanted.insert(*id);
        }
        if wanted != voters {
            tracing::info!(?wanted, "changing Raft voters");
            if let Err(e) = self
                .raft
                .change_membership(ChangeMembers::ReplaceAllVoters(wanted), true)
                .await
            {
                tracing::warn!(%e, "change_membership");
            }
            return;
        }
        if !gone.is_empty() {
            let _ = self
                .raft
                .change_membership(ChangeMembers::RemoveNodes(gone), true)
                .await;
        }
    }

    /// Creates a cluster from `nodes` (this node among them) with `replicas` replicas per
    /// shard: gives every node the new cluster id, starts Raft here, adds the others, and
    /// commits the members and the first slot table.
    pub async fn create(&self, nodes: &[String], replicas: usize) -> Result<String, String> {
        if let Some(id) = self.cluster_id() {
            return Err(format!("this node is already in cluster {id}"));
        }
        // Ask every node who it is, over the bus, before changing anything.
        let mut members = Vec::new();
        let mut seen_self = false;
        for text in nodes {
            let (host, port, bus_port) = parse_node_addr(text)?;
            let addr = format!("{host}:{bus_port}");
            if host == self.member.host && port == self.member.port {
                seen_self = true;
                members.push(self.member.clone());
                continue;
            }
            let client = bus::Client::new(addr.clone(), Arc::new(Mutex::new(None)), None, false);
            let status = match client.call(Request::Status, CALL_TIMEOUT).await {
                Ok(Response::Status(s)) => s,
                Ok(other) => return Err(format!("{addr}: unexpected answer {other:?}")),
                Err(e) => return Err(format!("can't reach {text}: {e}")),
            };
            if let Some(c) = &status.cluster_id {
                return Err(format!("{text} is already in cluster {c}"));
            }
            if members.iter().any(|m: &Member| m.id == status.id) {
                return Err(format!("{text} is listed twice"));
            }
            members.push(status.member.clone());
        }
        if !seen_self {
            return Err("the node asked to create the cluster must be in the list".into());
        }
        let candidates: Vec<Candidate> = members
            .iter()
            .map(|m| Candidate {
                id: m.id,
                zone: m.zone.clone(),
            })
            .collect();
        let groups = placement::form_shards(&candidates, replicas).map_err(|e| e.to_string())?;
        let cluster_id = random_hex(16);
        self.set_cluster_id(&cluster_id)?;
        for m in members.iter().filter(|m| m.id != self.id) {
            let client = self.peers.get(&m.bus_addr());
            let meet = Request::Meet {
                cluster_id: cluster_id.clone(),
            };
            match client.call(meet, CALL_TIMEOUT).await {
                Ok(Response::Ok) => {}
                Ok(Response::Refused(why)) => return Err(format!("{}: {why}", m.client_addr())),
                Ok(other) => return Err(format!("{}: {other:?}", m.client_addr())),
                Err(e) => return Err(e.to_string()),
            }
        }
        let mut first = BTreeMap::new();
        first.insert(
            self.id,
            BasicNode {
                addr: self.member.bus_addr(),
            },
        );
        self.raft
            .initialize(first)
            .await
            .map_err(|e| e.to_string())?;
        let mut metrics = self.raft.metrics();
        let me = self.id;
        let _ = tokio::time::timeout(
            Duration::from_secs(5),
            metrics.wait_for(|m| m.current_leader == Some(me)),
        )
        .await;
        for m in &members {
            self.propose(Change::Join(m.clone())).await?;
        }
        for m in members.iter().filter(|m| m.id != self.id) {
            let node = BasicNode { addr: m.bus_addr() };
            self.raft
                .add_learner(m.id, node, true)
                .await
                .map_err(|e| e.to_string())?;
        }
        let voter_count = if members.len() >= 7 { 5 } else { 3 };
        let voters: BTreeSet<NodeId> = members.iter().take(voter_count).map(|m| m.id).collect();
        self.raft
            .change_membership(ChangeMembers::ReplaceAllVoters(voters), true)
            .await
            .map_err(|e| e.to_string())?;
        let shards: Vec<Shard> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| Shard {
                id: i as u32,
                primary: g[0],
                replicas: g[1..].to_vec(),
            })
            .collect();
        let ids: Vec<u32> = shards.iter().map(|s| s.id).collect();
        let slots = placement::balance(&vec![None; placement::SLOT_COUNT], &ids);
        self.propose(Change::Layout { shards, slots }).await?;
        Ok(cluster_id)
    }

    fn check_peer(&self, from_cluster: &Option<String>) -> Result<(), String> {
        // Runs for every bus request: compare under the lock, clone only to explain a refusal.
        let mine = lock(&self.cluster_id);
        match (mine.as_ref(), from_cluster) {
            (Some(mine), Some(theirs)) if mine == theirs => Ok(()),
            (Some(mine), Some(theirs)) => {
                Err(format!("this node belongs to cluster {mine}, not {theirs}"))
            }
            (None, _) => Err("this node is in no cluster yet".into()),
            (Some(_), None) => Err("sender is in no cluster".into()),
        }
    }
}

/// Why a proposal failed.
pub(crate) enum Retry {
    /// It may still commit; trying again may succeed.
    Yes(String),
    /// Refused: the state is unchanged.
    No(String),
}

impl bus::Handler for ClusterNode {
    fn data_runtime(&self) -> Option<tokio::runtime::Handle> {
        self.data_runtime.get().cloned()
    }

    fn hello(&self, cluster_id: Option<&str>) -> Result<NodeId, String> {
        match (self.cluster_id(), cluster_id) {
            (Some(mine), Some(theirs)) if mine != theirs => {
                Err(format!("this node belongs to cluster {mine}, not {theirs}"))
            }
            _ => Ok(self.id),
        }
    }

    async fn handle(self: Arc<Self>, request: Request, from_cluster: Option<String>) -> Response {
        let data = matches!(
            request,
            Request::Forward { .. }
                | Request::ReplPull { .. }
                | Request::ReplSnapshot { .. }
                | Request::Drain { .. }
                | Request::Import { .. }
        );
        if data {
            if let Some(runtime) = self.data_runtime.get() {
                let here = tokio::runtime::Handle::try_current().map(|h| h.id());
                if here.ok() != Some(runtime.id()) {
                    let node = self.clone();
                    let run: BoxFuture<Response> = Box::pin(node.serve(request, from_cluster));
                    return runtime
                        .spawn(run)
                        .await
                        .unwrap_or_else(|e| Response::Refused(e.to_string()));
                }
            }
        }
        self.serve(request, from_cluster).await
    }
}

impl ClusterNode {
    /// Answers one bus request (on the runtime [`bus::Handler::handle`] chose).
    async fn serve(self: Arc<Self>, request: Request, from_cluster: Option<String>) -> Response {
        let refused = |why: String| Response::Refused(why);
        match request {
            Request::Hello { .. } => Response::Refused("hello twice".into()),
            Request::Status => Response::Status(Box::new(self.status())),
            Request::Topology => Response::Topology(Box::new((*self.state()).clone())),
            Request::Ping {
                term,
                lease_ms,
                sent_unix_ms,
                epoch,
            } => match self.check_peer(&from_cluster) {
                Err(why) => refused(why),
                Ok(()) => {
                    let received = self.mono_ms();
                    // A grant from a leader of an older term than this node has seen is void.
                    let current = self.raft.metrics().borrow().current_term;
                    // So is one that assumes a newer picture than this node has applied.
                    let caught_up = self.state().epoch >= epoch;
                    if let Some(lease) = lease_ms.filter(|_| term >= current && caught_up) {
                        if let Some(left) =
                            crate::failover::lease_left(u64::from(lease), sent_unix_ms, unix_ms())
                        {
                            self.extend_lease(received, left);
                        }
                    }
                    let offset = self.data_plane.get().map_or(0, |d| d.repl_offset());
                    Response::Pong { offset }
                }
            },
            Request::Meet { cluster_id } => match self.set_cluster_id(&cluster_id) {
                Ok(()) => Response::Ok,
                Err(why) => refused(why),
            },
            Request::Create { nodes, replicas } => {
                Response::Created(self.create(&nodes, replicas).await)
            }
            Request::AppendEntries(rpc) => match self.check_peer(&from_cluster) {
                Err(why) => refused(why),
                Ok(()) => Response::AppendEntries(
                    self.raft
                        .append_entries(rpc)
                        .await
                        .map_err(|e| e.to_string()),
                ),
            },
            Request::Vote(rpc) => match self.check_peer(&from_cluster) {
                Err(why) => refused(why),
                Ok(()) => Response::Vote(self.raft.vote(rpc).await.map_err(|e| e.to_string())),
            },
            Request::Snapshot { vote, meta, state } => match self.check_peer(&from_cluster) {
                Err(why) => refused(why),
                Ok(()) => {
                    let snapshot = Snapshot {
                        meta,
                        snapshot: Box::new(state),
                    };
                    Response::Snapshot(
                        self.raft
                            .install_full_snapshot(vote, snapshot)
                            .await
                            .map_err(|e| e.to_string()),
                    )
                }
            },
            Request::Propose(change) => match self.check_peer(&from_cluster) {
                Err(why) => refused(why),
                Ok(()) => {
                    if self.leader() != Some(self.id) {
                        let leader = self
                            .leader()
                            .and_then(|l| self.raft_addr(l).map(|a| (l, a)));
                        return Response::NotLeader(leader);
                    }
                    Response::Proposed(self.propose(change).await)
                }
            },
            Request::Drain {
                slots,
                target,
                epoch,
            } => {
                if let Err(why) = self.check_peer(&from_cluster) {
                    return refused(why);
                }
                if let Err(why) = self.check_migration(&slots, epoch, false).await {
                    return refused(why);
                }
                let Some(data) = self.data_plane.get() else {
                    return refused("no data plane".into());
                };
                match data.drain(slots, target, epoch).await {
                    Ok((keys, bytes)) => Response::Drained { keys, bytes },
                    Err(why) => refused(why),
                }
            }
            Request::Import { ops, epoch } => {
                if let Err(why) = self.check_peer(&from_cluster) {
                    return refused(why);
                }
                let mut slots: Vec<u16> = ops
                    .iter()
                    .map(|op| match op {
                        ReplOp::Put { key, .. }
                        | ReplOp::Del { key }
                        | ReplOp::Part { key, .. } => store::key_slot(key),
                        ReplOp::Clear => u16::MAX,
                    })
                    .collect();
                slots.sort_unstable();
                slots.dedup();
                if let Err(why) = self.check_migration(&slots, epoch, true).await {
                    return refused(why);
                }
                let Some(data) = self.data_plane.get() else {
                    return refused("no data plane".into());
                };
                match data.import(ops).await {
                    Ok(()) => Response::Ok,
                    Err(why) => refused(why),
                }
            }
            request @ (Request::ReplPull { .. } | Request::ReplSnapshot { .. }) => {
                match self.check_peer(&from_cluster) {
                    Err(why) => refused(why),
                    Ok(()) => match self.data_plane.get() {
                        None => refused("data plane not ready".into()),
                        Some(dp) => dp.replication(request).await,
                    },
                }
            }
            Request::Forward {
                proto,
                payload,
                asking,
            } => match self.check_peer(&from_cluster) {
                Err(why) => refused(why),
                Ok(()) => match self.data_plane.get() {
                    None => refused("data plane not ready".into()),
                    Some(dp) => {
                        let mut payload = payload;
                        loop {
                            match dp.forward(proto, payload, asking) {
                                Forwarded::Reply(reply) => break Response::Forwarded(reply),
                                Forwarded::NotOwner => break Response::NotOwner,
                                Forwarded::Ask(addr) => break Response::Ask(addr),
                                Forwarded::Held(held) => {
                                    payload = held;
                                    dp.pause_over().await;
                                }
                            }
                        }
                    }
                },
            },
            Request::ManualFailover { replica, force } => match self.check_peer(&from_cluster) {
                Err(why) => refused(why),
                Ok(()) if self.leader() != Some(self.id) => {
                    let leader = self
                        .leader()
                        .and_then(|l| self.raft_addr(l).map(|a| (l, a)));
                    Response::NotLeader(leader)
                }
                Ok(()) => match self.start_manual_failover(replica, force) {
                    Ok(()) => Response::Ok,
                    Err(why) => refused(why),
                },
            },
            Request::PauseWrites { shard, pause_ms } => match self.check_peer(&from_cluster) {
                Err(why) => refused(why),
                Ok(()) => match (self.state().seat_of(self.id), self.data_plane.get()) {
                    (Some((s, true)), Some(dp)) if s.id == shard => {
                        match dp.pause_writes(u64::from(pause_ms)) {
                            Some((repl_id, offset)) => Response::Paused { repl_id, offset },
                            None => refused("this primary has no replication stream".into()),
                        }
                    }
                    _ => refused(format!("this node is not the primary of shard {shard}")),
                },
            },
            Request::ResumeWrites { .. } => match self.check_peer(&from_cluster) {
                Err(why) => refused(why),
                Ok(()) => {
                    if let Some(dp) = self.data_plane.get() {
                        dp.resume_writes();
                    }
                    Response::Ok
                }
            },
            Request::CatchUp {
                repl_id,
                offset,
                timeout_ms,
            } => match self.check_peer(&from_cluster) {
                Err(why) => refused(why),
                Ok(()) => match self.data_plane.get() {
                    None => refused("data plane not ready".into()),
                    Some(dp) => {
                        let timeout = Duration::from_millis(u64::from(timeout_ms));
                        if dp.catch_up(repl_id, offset, timeout).await {
                            Response::Ok
                        } else {
                            refused(format!("did not reach offset {offset} in time"))
                        }
                    }
                },
            },
        }
    }
}
