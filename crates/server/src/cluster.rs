// Hot path: `Glue::route` runs for every keyed command in cluster mode.

//! The data plane's side of the cluster: routing (`-MOVED`), the `CLUSTER` command, and
//! forwarding requests to a key's owner for clients that don't speak cluster.
//!
//! ```text
//!   ClusterState (Raft) ──watch──> Routes (slot -> owner, rebuilt per epoch)
//!                                    │
//!   RESP port:     execute() ──route──┤── local: run ── remote: -MOVED slot host:port
//!   memcached / forward port: step() ─┴── remote: bus Forward ──> owner runs it, returns
//!                                         its reply bytes (multi-key requests split by owner)
//! ```

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cluster::bus::{Proto, ReplOp, Request, Response};
use cluster::{ClusterNode, ClusterState, Forwarded, NodeId};
use command::{ClusterHook, Node, Route, Session};
use resp::{Protocol, Reply};
use tokio_util::sync::CancellationToken;

use crate::lag::{ms, ReplicaLag};
use crate::migration::Migrations;
use crate::pause::{memcache_writes, resp_writes, WritePause};
use crate::replication::{Backlog, ReplicaLink};

/// A bus answer computed asynchronously.
type BusAnswer = BusAnswerOf<Response>;

/// How long an import waits for the importing primary's replicas.
const IMPORT_REPLICA_WAIT: Duration = Duration::from_secs(1);
type BusAnswerOf<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A reply that is computed asynchronously (forwarded to another node).
pub type Pending = Pin<Box<dyn Future<Output = Vec<u8>> + Send>>;

const NOT_SERVED: &str = "CLUSTERDOWN Hash slot not served";
/// A primary without a write lease: it may have been cut off, and a replica may be taking
/// over. Clients retry (redis-py and others refresh their slot map on CLUSTERDOWN).
const FENCED: &str =
    "CLUSTERDOWN The primary has no write lease (cut off from the cluster majority?); retry";
const FENCED_MC: &[u8] = b"SERVER_ERROR the key's primary has no write lease; retry\r\n";
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);
/// How many times a forwarded request the owner refused as "not mine" is planned again, once
/// this node's routes had a moment to catch up (a slot handed over, a failover): waits of
/// 2, 4, 8 ... 64 ms, about 1.3 s in all.
const FORWARD_REPLANS: u32 = 25;

/// Why a forward failed.
#[derive(Debug)]
enum ForwardError {
    /// The receiver doesn't own the key's slot (yet, or any more): nothing ran there, so the
    /// request may be planned again.
    NotOwner,
    /// Anything else: the request may or may not have run.
    Failed(String),
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::NotOwner => f.write_str("owner moved"),
            ForwardError::Failed(why) => f.write_str(why),
        }
    }
}

/// The pause before planning a refused forward again: `left` replans remain.
fn replan_wait(left: u32) -> Duration {
    let done = FORWARD_REPLANS.saturating_sub(left).min(5);
    Duration::from_millis(2 << done)
}
/// A replica's lag figures in `INFO` cover the changes of the last one to two of these.
const LAG_WINDOW: Duration = Duration::from_secs(10);

/// Who serves one shard's slots.
#[derive(Debug)]
struct Owner {
    primary_addr: String,
    primary_bus: String,
    local_primary: bool,
    local_replica: bool,
}

/// The routing table of one epoch.
#[derive(Debug)]
struct Routes {
    epoch: u64,
    /// Per slot, the index in `owners`, or `u16::MAX` when no shard owns it.
    slot_owner: Vec<u16>,
    /// Per slot, the index in `owners` of the shard importing it, or `u16::MAX`.
    slot_importer: Vec<u16>,
    owners: Vec<Owner>,
}

impl Routes {
    fn build(state: &ClusterState, me: NodeId) -> Routes {
        let mut owners = Vec::new();
        let mut index = BTreeMap::new();
        for shard in state.shards.values() {
            let Some(primary) = state.members.get(&shard.primary) else {
                continue;
            };
            index.insert(shard.id, owners.len() as u16);
            owners.push(Owner {
                primary_addr: primary.client_addr(),
                primary_bus: primary.bus_addr(),
                local_primary: shard.primary == me,
                local_replica: shard.replicas.contains(&me),
            });
        }
        let slot_owner = if state.is_laid_out() {
            state
                .slots
                .iter()
                .map(|s| index.get(s).copied().unwrap_or(u16::MAX))
                .collect()
        } else {
            vec![u16::MAX; cluster::SLOT_COUNT]
        };
        let mut slot_importer = vec![u16::MAX; cluster::SLOT_COUNT];
        for (slot, m) in &state.migrations {
            if let Some(i) = index.get(&m.to) {
                slot_importer[usize::from(*slot)] = *i;
            }
        }
        Routes {
            epoch: state.epoch,
            slot_owner,
            slot_importer,
            owners,
        }
    }

    fn owner(&self, slot: u16) -> Option<&Owner> {
        self.owners
            .get(usize::from(self.slot_owner[usize::from(slot)]))
    }

    /// The shard importing `slot`, while it migrates.
    fn importer(&self, slot: u16) -> Option<&Owner> {
        self.owners
            .get(usize::from(self.slot_importer[usize::from(slot)]))
    }
}

/// Where a forwarding node sends a request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Local,
    /// Another primary's bus address; `true` when it imports the key's slot (send with
    /// `asking`).
    Remote(String, bool),
    Down,
    /// This node is the primary but holds no write lease.
    Fenced,
}

impl Target {
    /// The RESP error for a target that can't take a request, before anything is sent.
    fn refusal(&self) -> Option<String> {
        match self {
            Target::Down => Some(format!("-{NOT_SERVED}\r\n")),
            Target::Fenced => Some(format!("-{FENCED}\r\n")),
            Target::Local | Target::Remote(..) => None,
        }
    }
}

/// The cluster glue between the control plane and the data plane.
#[derive(Debug)]
pub struct Glue {
    node: Weak<Node>,
    control: Arc<ClusterNode>,
    routes: RwLock<Arc<Routes>>,
    forward_client: Arc<command::ClientInfo>,
    /// This node's replication backlog, journaling while it is a primary with replicas.
    backlog: RwLock<Option<Arc<Backlog>>>,
    backlog_bytes: usize,
    /// While this node is a replica: its primary's bus address and the follower's stop switch.
    following: std::sync::Mutex<Option<(String, CancellationToken)>>,
    /// The replica's link, for INFO.
    link: Arc<std::sync::Mutex<ReplicaLink>>,
    /// Writes paused for a graceful manual failover (this node being the primary).
    pause: Arc<WritePause>,
    /// The replica's lag in time, for INFO and `/metrics`.
    lag: Arc<std::sync::Mutex<ReplicaLag>>,
    /// Slot migrations, as source and as target.
    migrations: Arc<Migrations>,
    /// Topology changes this node applied, for the dashboard.
    events: crate::dashboard::Events,
}

impl Glue {
    /// Connects `node` to its control plane: installs the routing hook and the forwarding
    /// data plane, and keeps the routes current as the cluster state changes.
    pub fn install(
        node: &Arc<Node>,
        control: Arc<ClusterNode>,
        backlog_bytes: usize,
        migration_rate_bytes: u64,
    ) -> Arc<Glue> {
        let routes = Routes::build(&control.state(), control.id);
        let unspecified = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        let forward_client = Arc::new(command::ClientInfo::new(0, unspecified, unspecified));
        let glue = Arc::new(Glue {
            node: Arc::downgrade(node),
            control: control.clone(),
            routes: RwLock::new(Arc::new(routes)),
            forward_client,
            backlog: RwLock::new(None),
            backlog_bytes,
            following: std::sync::Mutex::new(None),
            link: Arc::default(),
            pause: Arc::default(),
            lag: Arc::new(std::sync::Mutex::new(ReplicaLag::new(
                LAG_WINDOW,
                std::time::Instant::now(),
            ))),
            migrations: Arc::new(Migrations::new(migration_rate_bytes)),
            events: crate::dashboard::Events::default(),
        });
        let _ = node.cluster.set(glue.clone());
        control.set_data_plane(glue.clone());
        glue.apply_role(node, &control.state());
        let weak = Arc::downgrade(&glue);
        let mut changes = control.subscribe();
        let mut before = control.state();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let Some(glue) = weak.upgrade() else { break };
                let state = changes.borrow_and_update().clone();
                let now = glue.node.upgrade().map_or(0, |n| n.clock.unix_ms());
                glue.events.note(&before, &state, now);
                before = state.clone();
                let routes = Arc::new(Routes::build(&state, glue.control.id));
                tracing::info!(epoch = routes.epoch, "cluster topology changed");
                let importing = state
                    .migrations
                    .values()
                    .any(|m| state.shards.get(&m.to).map(|s| s.primary) == Some(glue.control.id));
                if !importing {
                    glue.migrations.forget_writes();
                }
                *glue.routes.write().unwrap_or_else(|e| e.into_inner()) = routes;
                if let Some(node) = glue.node.upgrade() {
                    glue.apply_role(&node, &state);
                }
            }
        });
        glue
    }

    /// The control plane.
    pub fn control(&self) -> &Arc<ClusterNode> {
        &self.control
    }

    /// The write pause: every request passes its gate.
    pub fn pause(&self) -> &WritePause {
        &self.pause
    }

    /// Whether this node's link to its primary works (a replica).
    pub fn link_up(&self) -> bool {
        self.link.lock().unwrap_or_else(|e| e.into_inner()).up
    }

    /// `/api/cluster` for the dashboard.
    pub fn dashboard_cluster(&self) -> serde_json::Value {
        crate::dashboard::cluster_json(
            &self.state(),
            self.control.id,
            self.control.leader(),
            &self.events,
        )
    }

    /// This node's seat and Raft view, for the dashboard's `/api/node`.
    pub fn dashboard_node(&self) -> serde_json::Value {
        let status = self.control.status();
        let state = self.state();
        serde_json::json!({
            "id": format!("{:016x}", self.control.id),
            "role": match state.seat_of(self.control.id) {
                Some((_, true)) => "primary",
                Some((_, false)) => "replica",
                None => "spare",
            },
            "raft_role": status.raft_role,
            "epoch": status.epoch,
            "lease_ms": status.lease_ms_left,
            "ready": self.readiness().is_ok(),
        })
    }

    /// Whether this node can serve its part of the cluster: `Ok(its role)`, or `Err(why
    /// not)`. See `admin::healthz`.
    pub fn readiness(&self) -> Result<String, String> {
        let state = self.state();
        if !state.is_laid_out() {
            return Err("not in a cluster yet (ringcache cluster create / add-node)".into());
        }
        match state.seat_of(self.control.id) {
            Some((_, true)) if self.control.lease_valid() => Ok("primary".into()),
            Some((_, true)) => {
                Err("a primary without a write lease (cut off from the Raft leader?)".into())
            }
            Some((_, false)) => {
                let link = self.link.lock().unwrap_or_else(|e| e.into_inner());
                if link.up && link.full_syncs > 0 {
                    Ok("replica".into())
                } else {
                    Err("a replica not in sync with its primary yet".into())
                }
            }
            None => Ok("spare".into()),
        }
    }

    /// Starts or stops journaling and following as this node's seat requires: a primary with
    /// replicas journals its writes into a backlog; a replica follows its primary.
    fn apply_role(&self, node: &Arc<Node>, state: &ClusterState) {
        let me = self.control.id;
        let seat = state
            .seat_of(me)
            .map(|(shard, primary)| (shard.clone(), primary));
        // Demoted by a manual failover while paused: the routes already name the new
        // primary, so the held writes can go (they get -MOVED).
        if !matches!(seat, Some((_, true))) && self.pause.resume(None) {
            tracing::info!("demoted while writes were paused: held writes are redirected");
        }
        let journaling = matches!(&seat, Some((shard, true)) if !shard.replicas.is_empty());
        {
            let mut backlog = self.backlog.write().unwrap_or_else(|e| e.into_inner());
            match (journaling, backlog.is_some()) {
                (true, false) => {
                    // A new stream: replicas that followed an older one sync in full, so no
                    // change made while nothing was journaled can be missed.
                    let fresh = Arc::new(Backlog::new(self.backlog_bytes));
                    node.store.set_journal(Some(fresh.clone()));
                    *backlog = Some(fresh);
                }
                (false, true) => {
                    node.store.set_journal(None);
                    *backlog = None;
                }
                _ => {}
            }
        }
        let primary_bus = match &seat {
            Some((shard, false)) => state
                .members
                .get(&shard.primary)
                .map(|m| (m.bus_addr(), m.client_addr())),
            _ => None,
        };
        let mut following = self.following.lock().unwrap_or_else(|e| e.into_inner());
        let same = match (&*following, &primary_bus) {
            (Some((a, _)), Some((b, _))) => a == b,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        if let Some((_, stop)) = following.take() {
            stop.cancel();
        }
        if let Some((bus, client_addr)) = primary_bus {
            let stop = CancellationToken::new();
            *self.link.lock().unwrap_or_else(|e| e.into_inner()) = ReplicaLink {
                primary: client_addr,
                ..ReplicaLink::default()
            };
            tokio::spawn(crate::replication::follow(
                node.clone(),
                self.control.clone(),
                bus.clone(),
                self.link.clone(),
                self.lag.clone(),
                stop.clone(),
            ));
            *following = Some((bus, stop));
        }
    }

    /// The backlog, while this node journals.
    pub fn backlog(&self) -> Option<Arc<Backlog>> {
        self.backlog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `WAIT numreplicas timeout`: the pending reply, counting the replicas that have every
    /// write made before it.
    pub fn plan_wait(&self, args: &[Bytes]) -> Pending {
        let parse = |a: &Bytes| std::str::from_utf8(a).ok()?.parse::<i64>().ok();
        let (Some(count), Some(timeout_ms)) = (parse(&args[1]), parse(&args[2])) else {
            return Box::pin(async {
                b"-ERR value is not an integer or out of range\r\n".to_vec()
            });
        };
        if timeout_ms < 0 {
            return Box::pin(async { b"-ERR timeout is negative\r\n".to_vec() });
        }
        let Some(backlog) = self.backlog() else {
            // No replicas to wait for (or this node is a replica itself).
            return Box::pin(async { b":0\r\n".to_vec() });
        };
        let offset = backlog.offset();
        let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms as u64));
        Box::pin(async move {
            let n = backlog
                .wait_for(offset, count.max(0) as usize, timeout)
                .await;
            format!(":{n}\r\n").into_bytes()
        })
    }

    /// `INFO replication` fields.
    pub fn replication_info(&self) -> Vec<(String, String)> {
        let f = |k: &str, v: String| (k.to_string(), v);
        let state = self.control.state();
        let me = self.control.id;
        match state.seat_of(me) {
            Some((shard, false)) => {
                let link = self.link.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let (host, port) = link.primary.rsplit_once(':').unwrap_or((&link.primary, ""));
                let _ = shard;
                let lag = self
                    .lag
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .summary(std::time::Instant::now());
                vec![
                    f("role", "slave".into()),
                    f("master_host", host.into()),
                    f("master_port", port.into()),
                    f(
                        "master_link_status",
                        if link.up { "up" } else { "down" }.into(),
                    ),
                    f(
                        "master_last_io_seconds_ago",
                        link.last_io
                            .map_or(-1, |t| t.elapsed().as_secs() as i64)
                            .to_string(),
                    ),
                    f(
                        "master_sync_in_progress",
                        u8::from(link.full_syncs == 0).to_string(),
                    ),
                    f("slave_repl_offset", link.offset.to_string()),
                    f("slave_read_only", "1".into()),
                    f("full_syncs", link.full_syncs.to_string()),
                    // How long after the primary made a change this replica applied it (see
                    // `lag`): the last change, and the changes of the last 10-20 s.
                    f("master_lag_ms", ms(lag.last_us)),
                    f("master_lag_p50_ms", ms(lag.p50_us)),
                    f("master_lag_p99_ms", ms(lag.p99_us)),
                    f("master_lag_max_ms", ms(lag.max_us)),
                    f("master_lag_samples", lag.samples.to_string()),
                ]
            }
            _ => {
                let backlog = self.backlog();
                let replicas = backlog.as_ref().map(|b| b.replicas()).unwrap_or_default();
                let offset = backlog.as_ref().map_or(0, |b| b.offset());
                let mut fields = vec![
                    f("role", "master".into()),
                    f("connected_slaves", replicas.len().to_string()),
                ];
                for (i, (id, r)) in replicas.iter().enumerate() {
                    let addr = state
                        .members
                        .get(id)
                        .map(|m| (m.host.clone(), m.port))
                        .unwrap_or_default();
                    fields.push(f(
                        &format!("slave{i}"),
                        format!(
                            "ip={},port={},state=online,offset={},lag={}",
                            addr.0,
                            addr.1,
                            r.acked,
                            r.seen.elapsed().as_secs()
                        ),
                    ));
                }
                fields.push(f(
                    "master_replid",
                    format!("{:040x}", backlog.as_ref().map_or(0, |b| b.repl_id)),
                ));
                fields.push(f("master_repl_offset", offset.to_string()));
                fields.push(f(
                    "repl_backlog_active",
                    u8::from(backlog.is_some()).to_string(),
                ));
                fields.push(f("repl_backlog_size", self.backlog_bytes.to_string()));
                fields
            }
        }
    }

    fn routes(&self) -> Arc<Routes> {
        self.routes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Where a request for `key` runs; `asking` when it came from the slot's owner because the
    /// key isn't there (this node importing the slot).
    fn target(&self, routes: &Routes, key: &[u8], asking: bool) -> Target {
        let slot = store::key_slot(key);
        let importer = routes.importer(slot);
        match routes.owner(slot) {
            None => Target::Down,
            Some(o) if o.local_primary => {
                if !self.control.lease_valid() {
                    return Target::Fenced;
                }
                match importer {
                    // Migrating away: keys still here are served here, the others there.
                    Some(to) if !self.has_key(key) => Target::Remote(to.primary_bus.clone(), true),
                    _ => Target::Local,
                }
            }
            Some(o) => match importer {
                Some(to) if to.local_primary && asking => {
                    if self.control.lease_valid() {
                        Target::Local
                    } else {
                        Target::Fenced
                    }
                }
                _ => Target::Remote(o.primary_bus.clone(), false),
            },
        }
    }

    /// Whether `key` is in this node's store (an expired key is not).
    fn has_key(&self, key: &[u8]) -> bool {
        self.node
            .upgrade()
            .is_some_and(|n| n.store.contains(key, n.clock.unix_ms(), false))
    }

    /// Sends one forwarded request to `bus_addr`, following its `Ask` to the slot's importer.
    async fn forward(
        self: Arc<Self>,
        bus_addr: String,
        asking: bool,
        proto: Proto,
        payload: Vec<Vec<u8>>,
    ) -> Result<Vec<u8>, ForwardError> {
        let client = self.control.data_peers.get(&bus_addr);
        let request = Request::Forward {
            proto,
            payload: payload.clone(),
            asking,
        };
        match client.call(request, FORWARD_TIMEOUT).await {
            Ok(Response::Forwarded(bytes)) => Ok(bytes),
            Ok(Response::Ask(importer)) if !asking => {
                // The slot is migrating and the keys have left (or never were) there.
                let client = self.control.data_peers.get(&importer);
                let request = Request::Forward {
                    proto,
                    payload,
                    asking: true,
                };
                match client.call(request, FORWARD_TIMEOUT).await {
                    Ok(Response::Forwarded(bytes)) => Ok(bytes),
                    Ok(Response::NotOwner) => Err(ForwardError::NotOwner),
                    Ok(other) => Err(ForwardError::Failed(format!("importer answered {other:?}"))),
                    Err(e) => Err(ForwardError::Failed(e.to_string())),
                }
            }
            Ok(Response::NotOwner) => Err(ForwardError::NotOwner),
            Ok(Response::Refused(why)) => Err(ForwardError::Failed(why)),
            Ok(other) => Err(ForwardError::Failed(format!("unexpected answer {other:?}"))),
            Err(e) => Err(ForwardError::Failed(e.to_string())),
        }
    }

    /// Plans a memcached request for a forwarding node: `None` to run it here, or the
    /// pending reply.
    pub fn plan_memcache(self: &Arc<Self>, request: &memcache::Request) -> Option<Pending> {
        self.memcache_plan(request, FORWARD_REPLANS, false)
    }

    /// [`Self::plan_memcache`], with `replans` left for forwards refused as "not mine";
    /// `always` returns the pending reply even when every key is local.
    fn memcache_plan(
        self: &Arc<Self>,
        request: &memcache::Request,
        replans: u32,
        always: bool,
    ) -> Option<Pending> {
        use memcache::Request as R;
        let routes = self.routes();
        if let R::FlushAll { noreply, .. } = request {
            return Some(self.clone().flush_everywhere(&routes, request, *noreply));
        }
        let keys = memcache_keys(request);
        if keys.is_empty() {
            return None;
        }
        let mut groups: BTreeMap<Target, Vec<Bytes>> = BTreeMap::new();
        for key in keys {
            groups
                .entry(self.target(&routes, key, false))
                .or_default()
                .push(key.clone());
        }
        if !always && groups.len() == 1 && groups.contains_key(&Target::Local) {
            return None;
        }
        let glue = self.clone();
        let request = request.clone();
        Some(Box::pin(async move {
            let R::Get {
                with_cas,
                touch_exptime,
                ..
            } = &request
            else {
                // A single-key request with a remote (or no) owner.
                let target = groups.into_keys().next().unwrap_or(Target::Down);
                return glue.memcache_one(target, &request, replans).await;
            };
            // A multi-get: one sub-request per owner; the hits are gathered and answered in
            // the order the request named their keys, as memcached does, with one END.
            let mut replies = Vec::with_capacity(groups.len());
            for (target, keys) in groups {
                let sub = R::Get {
                    keys,
                    with_cas: *with_cas,
                    touch_exptime: *touch_exptime,
                };
                let reply = glue.clone().memcache_one(target, &sub, replans).await;
                if reply.starts_with(b"SERVER_ERROR") {
                    return reply;
                }
                replies.push(reply);
            }
            gather_values(memcache_keys(&request), &replies).unwrap_or_else(|| {
                b"SERVER_ERROR forwarding to the key's owner failed\r\n".to_vec()
            })
        }))
    }

    /// Runs a memcached `flush_all` (with its delay) on every shard's primary, this node's
    /// own shard included, so that through any node it empties the whole cache, as through
    /// mcrouter. The primaries' replicas follow through replication. Answers `OK` once every
    /// primary has; otherwise a `SERVER_ERROR` naming how many did not (their keys remain).
    fn flush_everywhere(
        self: Arc<Self>,
        routes: &Routes,
        request: &memcache::Request,
        noreply: bool,
    ) -> Pending {
        let primaries: Vec<(bool, String)> = routes
            .owners
            .iter()
            .map(|o| (o.local_primary, o.primary_bus.clone()))
            .collect();
        let text = memcache::invariants::canonical(request);
        let request = request.clone();
        Box::pin(async move {
            let mut failed = 0;
            for (local, bus) in primaries {
                let done = if local {
                    match self.node.upgrade() {
                        Some(node) => {
                            let mut out = BytesMut::new();
                            let now = node.clock.unix_ms();
                            command::memcached::execute(&node, request.clone(), now, &mut out);
                            true
                        }
                        None => false,
                    }
                } else {
                    let answer = self
                        .clone()
                        .forward(bus, false, Proto::Memcache, vec![text.clone()])
                        .await;
                    matches!(answer, Ok(ref reply) if noreply || reply == b"OK\r\n")
                };
                if !done {
                    failed += 1;
                }
            }
            match (failed, noreply) {
                (0, true) => Vec::new(),
                (0, false) => b"OK\r\n".to_vec(),
                (n, _) => format!("SERVER_ERROR flush_all failed on {n} shards\r\n").into_bytes(),
            }
        })
    }

    async fn memcache_one(
        self: Arc<Self>,
        target: Target,
        request: &memcache::Request,
        replans: u32,
    ) -> Vec<u8> {
        match target {
            Target::Down => b"SERVER_ERROR cluster down: hash slot not served\r\n".to_vec(),
            Target::Fenced => FENCED_MC.to_vec(),
            Target::Local => loop {
                let Some(node) = self.node.upgrade() else {
                    return b"SERVER_ERROR shutting down\r\n".to_vec();
                };
                {
                    let pass = self.pause.enter();
                    if !(pass.paused() && memcache_writes(request)) {
                        let mut out = BytesMut::new();
                        let now = node.clock.unix_ms();
                        command::memcached::execute(&node, request.clone(), now, &mut out);
                        return out.to_vec();
                    }
                }
                // Held until the pause ends; the owner may have changed by then.
                self.pause.wait().await;
                if let Some(pending) = self.plan_memcache(request) {
                    return pending.await;
                }
            },
            Target::Remote(bus, asking) => {
                let text = memcache::invariants::canonical(request);
                match self
                    .clone()
                    .forward(bus, asking, Proto::Memcache, vec![text])
                    .await
                {
                    Ok(bytes) => bytes,
                    Err(ForwardError::NotOwner) if replans > 0 => {
                        tokio::time::sleep(replan_wait(replans)).await;
                        match self.memcache_plan(request, replans - 1, true) {
                            Some(pending) => pending.await,
                            None => {
                                b"SERVER_ERROR forwarding to the key's owner failed\r\n".to_vec()
                            }
                        }
                    }
                    Err(why) => {
                        tracing::debug!(%why, "memcached forward failed");
                        b"SERVER_ERROR forwarding to the key's owner failed\r\n".to_vec()
                    }
                }
            }
        }
    }

    /// Plans a RESP command on the forwarding port: `None` to run it here (no keys, or all
    /// local), or the pending reply. Multi-key commands whose keys live on several nodes are
    /// split per key and gathered (not atomic, as documented).
    pub fn plan_resp(self: &Arc<Self>, protocol: Protocol, args: &[Bytes]) -> Option<Pending> {
        self.resp_plan(protocol, args, FORWARD_REPLANS, false)
    }

    /// [`Self::plan_resp`], with `replans` left for forwards refused as "not mine"; `always`
    /// returns the pending reply even when every key is local.
    fn resp_plan(
        self: &Arc<Self>,
        protocol: Protocol,
        args: &[Bytes],
        replans: u32,
        always: bool,
    ) -> Option<Pending> {
        let spec = &command::COMMANDS[command::lookup(&args[0])?];
        // Validate, then route: a command with the wrong arguments is refused whole here, as a
        // standalone Redis refuses it, before anything is split or sent.
        if let Err(refusal) = command::table::check_args(spec, args.len()) {
            let mut out = BytesMut::new();
            refusal.encode(protocol, &mut out);
            return Some(Box::pin(async move { out.to_vec() }));
        }
        let routes = self.routes();
        let positions: Vec<usize> = command::cluster::key_positions(spec, args.len()).collect();
        let first = *positions.first()?;
        let targets: Vec<Target> = positions
            .iter()
            .map(|&p| self.target(&routes, &args[p], false))
            .collect();
        let slots_differ = positions
            .iter()
            .any(|&p| store::key_slot(&args[p]) != store::key_slot(&args[first]));
        // Keys of several slots are split even when this node owns them all: run here whole,
        // the command would meet the cluster port's -CROSSSLOT.
        if !always && !slots_differ && targets.iter().all(|t| *t == Target::Local) {
            return None;
        }
        let glue = self.clone();
        let version = protocol.version() as u8;
        if !slots_differ {
            let target = targets[0].clone();
            let args: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
            return Some(Box::pin(async move {
                glue.resp_one(target, version, args, replans).await
            }));
        }
        let name = spec.name;
        let Some(parts) = command::cluster::split_per_key(spec, args) else {
            return Some(Box::pin(async {
                b"-CROSSSLOT Keys in request don't hash to the same slot\r\n".to_vec()
            }));
        };
        // An owner known to be unreachable refuses the whole command before any part is sent,
        // so the common failure (a shard down or fenced) changes nothing. A part that fails
        // after others were applied leaves those applied: the reply is that part's error.
        if let Some(refusal) = targets.iter().find_map(Target::refusal) {
            return Some(Box::pin(async move { refusal.into_bytes() }));
        }
        Some(Box::pin(async move {
            let mut replies = Vec::with_capacity(parts.len());
            for (part, target) in parts.into_iter().zip(targets) {
                let part = part.into_iter().map(|a| a.to_vec()).collect();
                replies.push(glue.clone().resp_one(target, version, part, replans).await);
            }
            gather(name, replies)
        }))
    }

    async fn resp_one(
        self: Arc<Self>,
        target: Target,
        version: u8,
        args: Vec<Vec<u8>>,
        replans: u32,
    ) -> Vec<u8> {
        match target {
            Target::Down | Target::Fenced => target.refusal().unwrap_or_default().into_bytes(),
            Target::Local => {
                let args: Vec<Bytes> = args.into_iter().map(Bytes::from).collect();
                loop {
                    {
                        let pass = self.pause.enter();
                        if !(pass.paused() && resp_writes(&args[0])) {
                            return self
                                .run_resp(version, &args, false)
                                .unwrap_or_else(|| b"-ERR shutting down\r\n".to_vec());
                        }
                    }
                    // Held until the pause ends; the owner may have changed by then.
                    self.pause.wait().await;
                    if let Some(pending) = self.plan_resp(protocol_of(version), &args) {
                        return pending.await;
                    }
                }
            }
            Target::Remote(bus, asking) => {
                let mut payload = vec![vec![version]];
                payload.extend(args.iter().cloned());
                match self
                    .clone()
                    .forward(bus, asking, Proto::Resp, payload)
                    .await
                {
                    Ok(bytes) => bytes,
                    Err(ForwardError::NotOwner) if replans > 0 => {
                        tokio::time::sleep(replan_wait(replans)).await;
                        let args: Vec<Bytes> = args.into_iter().map(Bytes::from).collect();
                        match self.resp_plan(protocol_of(version), &args, replans - 1, true) {
                            Some(pending) => pending.await,
                            None => b"-TRYAGAIN forwarding to the key's owner failed\r\n".to_vec(),
                        }
                    }
                    Err(why) => {
                        format!("-TRYAGAIN forwarding to the key's owner failed: {why}\r\n")
                            .into_bytes()
                    }
                }
            }
        }
    }

    fn run_resp(&self, version: u8, args: &[Bytes], asking: bool) -> Option<Vec<u8>> {
        let node = self.node.upgrade()?;
        let mut session = Session::new(self.forward_client.clone());
        session.asking = asking;
        session.protocol = protocol_of(version);
        let reply = command::execute(&node, &mut session, args);
        let mut out = BytesMut::new();
        reply.encode(session.protocol, &mut out);
        Some(out.to_vec())
    }
}

fn protocol_of(version: u8) -> Protocol {
    if version == 3 {
        Protocol::Resp3
    } else {
        Protocol::Resp2
    }
}

/// The importer's bus address, when every target says to ask it.
fn all_asked(targets: &[Target]) -> Option<String> {
    let Some(Target::Remote(first, true)) = targets.first() else {
        return None;
    };
    targets
        .iter()
        .all(|t| matches!(t, Target::Remote(b, true) if b == first))
        .then(|| first.clone())
}

/// The keys a memcached request names.
fn memcache_keys(request: &memcache::Request) -> Vec<&Bytes> {
    use memcache::Request as R;
    match request {
        R::Get { keys, .. } => keys.iter().collect(),
        R::Store { key, .. }
        | R::Delete { key, .. }
        | R::Arithmetic { key, .. }
        | R::Touch { key, .. }
        | R::MetaGet { key, .. }
        | R::MetaSet { key, .. }
        | R::MetaDelete { key, .. }
        | R::MetaArithmetic { key, .. } => vec![key],
        _ => Vec::new(),
    }
}

/// Combines the replies of a multi-get's sub-requests into one reply whose hits follow the
/// order of `keys`; `None` when a reply is not a well-formed run of VALUE blocks and END.
///
/// Each block the owners sent is answered once, at the place its key was asked for: a key named
/// twice is answered twice only if its owner answered it twice (`gat -1 a a` expires `a` at
/// the first hit, so memcached answers it once).
fn gather_values(keys: Vec<&Bytes>, replies: &[Vec<u8>]) -> Option<Vec<u8>> {
    let mut blocks: HashMap<&[u8], std::collections::VecDeque<&[u8]>> = HashMap::new();
    for reply in replies {
        let mut rest = reply.as_slice();
        while rest != b"END\r\n" {
            let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
            let mut words = rest[..line_end].split(|&b| b == b' ');
            let (Some(b"VALUE"), Some(key), Some(_flags), Some(len)) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                return None;
            };
            let len: usize = std::str::from_utf8(len).ok()?.parse().ok()?;
            let end = line_end.checked_add(2 + len + 2)?;
            let block = rest.get(..end)?;
            blocks.entry(key).or_default().push_back(block);
            rest = &rest[end..];
        }
    }
    let mut out = Vec::with_capacity(replies.iter().map(Vec::len).sum::<usize>());
    for key in keys {
        if let Some(block) = blocks.get_mut(key.as_ref()).and_then(|b| b.pop_front()) {
            out.extend_from_slice(block);
        }
    }
    out.extend_from_slice(b"END\r\n");
    Some(out)
}

/// Combines the per-key replies of a split multi-key command.
fn gather(name: &str, replies: Vec<Vec<u8>>) -> Vec<u8> {
    if let Some(err) = replies.iter().find(|r| r.first() == Some(&b'-')) {
        return err.clone();
    }
    match name {
        "mget" => {
            let mut out = format!("*{}\r\n", replies.len()).into_bytes();
            replies.iter().for_each(|r| out.extend_from_slice(r));
            out
        }
        "mset" => b"+OK\r\n".to_vec(),
        _ => {
            let sum: i64 = replies
                .iter()
                .filter_map(|r| {
                    std::str::from_utf8(r.get(1..)?)
                        .ok()?
                        .trim_end()
                        .parse::<i64>()
                        .ok()
                })
                .sum();
            format!(":{sum}\r\n").into_bytes()
        }
    }
}

impl cluster::DataPlane for Glue {
    fn repl_offset(&self) -> u64 {
        match self.backlog() {
            Some(b) => b.offset(),
            None => self.link.lock().unwrap_or_else(|e| e.into_inner()).offset,
        }
    }

    fn replication(&self, request: Request) -> BusAnswer {
        let backlog = self.backlog();
        let node = self.node.upgrade();
        Box::pin(async move {
            let (Some(backlog), Some(node)) = (backlog, node) else {
                return Response::Refused("not a primary with replicas".into());
            };
            match request {
                Request::ReplPull {
                    replica,
                    repl_id,
                    from,
                    ..
                } => backlog.pull(replica, repl_id, from).await,
                Request::ReplSnapshot { shard, .. } => backlog.snapshot(&node, shard),
                _ => Response::Refused("not a replication request".into()),
            }
        })
    }

    fn forward(&self, proto: Proto, payload: Vec<Vec<u8>>, asking: bool) -> Forwarded {
        let routes = self.routes();
        let Some(node) = self.node.upgrade() else {
            return Forwarded::NotOwner;
        };
        let pass = self.pause.enter();
        match proto {
            Proto::Resp => {
                let Some((version, args)) = payload.split_first() else {
                    return Forwarded::NotOwner;
                };
                let args: Vec<Bytes> = args.iter().cloned().map(Bytes::from).collect();
                let Some(spec) = args
                    .first()
                    .and_then(|name| command::lookup(name))
                    .map(|i| &command::COMMANDS[i])
                else {
                    return Forwarded::NotOwner;
                };
                let targets: Vec<Target> = command::cluster::key_positions(spec, args.len())
                    .map(|p| self.target(&routes, &args[p], asking))
                    .collect();
                if let Some(ask) = all_asked(&targets) {
                    return Forwarded::Ask(ask);
                }
                if targets.iter().any(|t| *t != Target::Local) {
                    return Forwarded::NotOwner;
                }
                if asking && resp_writes(&args[0]) {
                    for p in command::cluster::key_positions(spec, args.len()) {
                        self.migrations.note_write(&args[p]);
                    }
                }
                if pass.paused() && resp_writes(&args[0]) {
                    return Forwarded::Held(payload);
                }
                match self.run_resp(version.first().copied().unwrap_or(2), &args, asking) {
                    Some(reply) => Forwarded::Reply(reply),
                    None => Forwarded::NotOwner,
                }
            }
            Proto::Memcache => {
                let Some(text) = payload.into_iter().next() else {
                    return Forwarded::NotOwner;
                };
                let mut parser = memcache::Parser::new(memcache::Limits {
                    max_value_bytes: node.store.config().max_value_bytes,
                    ..memcache::Limits::default()
                });
                let mut buf = BytesMut::from(&text[..]);
                let request = match parser.parse(&mut buf) {
                    Ok(Some(r)) => r,
                    Ok(None) => {
                        return Forwarded::Reply(
                            b"CLIENT_ERROR incomplete forwarded request\r\n".to_vec(),
                        )
                    }
                    Err(e) => return Forwarded::Reply(e.wire().to_vec()),
                };
                let targets: Vec<Target> = memcache_keys(&request)
                    .into_iter()
                    .map(|k| self.target(&routes, k, asking))
                    .collect();
                if let Some(ask) = all_asked(&targets) {
                    return Forwarded::Ask(ask);
                }
                if targets.iter().any(|t| *t != Target::Local) {
                    return Forwarded::NotOwner;
                }
                if asking && memcache_writes(&request) {
                    for k in memcache_keys(&request) {
                        self.migrations.note_write(k);
                    }
                }
                if pass.paused() && memcache_writes(&request) {
                    return Forwarded::Held(vec![text]);
                }
                let mut out = BytesMut::new();
                command::memcached::execute(&node, request, node.clock.unix_ms(), &mut out);
                Forwarded::Reply(out.to_vec())
            }
        }
    }

    fn pause_writes(&self, pause_ms: u64) -> Option<(u64, u64)> {
        let backlog = self.backlog()?;
        let (generation, offset) = self.pause.pause(|| backlog.offset());
        tracing::info!(offset, "writes paused for a manual failover");
        let control = self.control.clone();
        let pause = self.pause.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
            settle_pause(control, pause, generation).await;
        });
        Some((backlog.repl_id, offset))
    }

    fn resume_writes(&self) {
        if self.pause.resume(None) {
            tracing::info!("writes resumed: the manual failover was abandoned");
        }
    }

    fn pause_over(&self) -> BusAnswerOf<()> {
        Box::pin(self.pause.wait())
    }

    fn drain(
        &self,
        slots: Vec<u16>,
        target: String,
        epoch: u64,
    ) -> BusAnswerOf<Result<(u64, u64), String>> {
        let node = self.node.upgrade();
        let peers = self.control.data_peers.clone();
        let migrations = self.migrations.clone();
        Box::pin(async move {
            let Some(node) = node else {
                return Err("shutting down".into());
            };
            let clock = node.clone();
            migrations
                .drain(
                    &node.store,
                    move || clock.clock.unix_ms(),
                    &peers,
                    slots,
                    target,
                    epoch,
                )
                .await
        })
    }

    fn import(&self, ops: Vec<ReplOp>) -> BusAnswerOf<Result<(), String>> {
        let node = self.node.upgrade();
        let backlog = self.backlog();
        let migrations = self.migrations.clone();
        Box::pin(async move {
            let Some(node) = node else {
                return Err("shutting down".into());
            };
            migrations.import(&node.store, ops, node.clock.unix_ms())?;
            // The source deletes what it sent once this answers: let the replicas have it
            // first, so a failover of this shard doesn't lose it (bounded: a replica that
            // is down doesn't stall the migration; the loss bound is then a failover's).
            if let Some(backlog) = backlog {
                let replicas = backlog.replicas().len();
                let offset = backlog.offset();
                backlog
                    .wait_for(offset, replicas, Some(IMPORT_REPLICA_WAIT))
                    .await;
            }
            Ok(())
        })
    }

    fn migrated(&self) -> (u64, u64) {
        self.migrations.moved()
    }

    fn catch_up(&self, repl_id: u64, offset: u64, timeout: Duration) -> BusAnswerOf<bool> {
        let link = self.link.clone();
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                {
                    let l = link.lock().unwrap_or_else(|e| e.into_inner());
                    if l.repl_id == repl_id && l.offset >= offset {
                        return true;
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    }
}

/// Ends a write pause that ran its full length without the leader ending it: first a no-op
/// Raft commit settles whether the failover was committed (see `cluster::manual`). Demoted:
/// `apply_role` has resumed (or will, once the routes name the new primary). Still the
/// primary: the failover can no longer commit, so writes resume. Without a Raft majority the
/// pause goes on (there would be no write lease anyway).
async fn settle_pause(control: Arc<ClusterNode>, pause: Arc<WritePause>, generation: u64) {
    while pause.current() == Some(generation) {
        match control.sync_topology().await {
            Ok(epoch) => {
                let primary = matches!(control.state().seat_of(control.id), Some((_, true)));
                if primary && pause.resume(Some(generation)) {
                    tracing::warn!(epoch, "write pause ran out; no failover committed: resumed");
                }
                return;
            }
            Err(why) => {
                tracing::warn!(why, "write pause ran out; can't reach Raft to settle it");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

impl ClusterHook for Glue {
    fn route(&self, slot: u16, write: bool, readonly: bool) -> Route {
        let routes = self.routes();
        let importer = routes.importer(slot);
        match routes.owner(slot) {
            None => Route::Down(NOT_SERVED),
            Some(o) if o.local_primary => {
                if !(self.control.lease_valid() || (readonly && !write)) {
                    return Route::Down(FENCED);
                }
                match importer {
                    Some(to) => Route::Migrating {
                        slot,
                        addr: to.primary_addr.clone(),
                    },
                    None => Route::Local,
                }
            }
            Some(o) if o.local_replica && readonly && !write => Route::Local,
            Some(o) => match importer {
                Some(to) if to.local_primary => {
                    if self.control.lease_valid() {
                        Route::Importing {
                            slot,
                            addr: o.primary_addr.clone(),
                        }
                    } else {
                        Route::Down(FENCED)
                    }
                }
                _ => Route::Moved {
                    slot,
                    addr: o.primary_addr.clone(),
                },
            },
        }
    }

    fn has_key(&self, key: &[u8]) -> bool {
        Glue::has_key(self, key)
    }

    fn note_import_write(&self, key: &[u8]) {
        self.migrations.note_write(key);
    }

    fn command(&self, ctx: &mut command::table::Ctx<'_>, args: &[Bytes]) -> Reply {
        crate::cluster_cmd::run(self, ctx, args)
    }

    fn replication_info(&self) -> Vec<(String, String)> {
        Glue::replication_info(self)
    }

    fn histograms(&self) -> Vec<command::HookHistogram> {
        let (buckets, sum, count) = self
            .lag
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .histogram();
        vec![command::HookHistogram {
            name: "ringcache_replication_lag_seconds",
            help: "On a replica: how long after the primary made a change it was applied here \
                   (wall clocks of both nodes).",
            buckets,
            sum,
            count,
        }]
    }

    fn metrics(&self) -> Vec<(&'static str, &'static str, i64)> {
        let state = self.control.state();
        let me = self.control.id;
        let role = match state.seat_of(me) {
            Some((_, true)) => 1,
            Some((_, false)) => 2,
            None => 0,
        };
        let (offset, replicas, lag) = match self.backlog() {
            Some(b) => {
                let offset = b.offset();
                let replicas = b.replicas();
                let lag = replicas
                    .values()
                    .map(|r| offset.saturating_sub(r.acked))
                    .max();
                (offset, replicas.len(), lag.unwrap_or(0))
            }
            None => (
                self.link.lock().unwrap_or_else(|e| e.into_inner()).offset,
                0,
                0,
            ),
        };
        let link_up = self.link.lock().unwrap_or_else(|e| e.into_inner()).up;
        vec![
            (
                "ringcache_cluster_epoch",
                "Epoch of the cluster state this node has applied.",
                state.epoch as i64,
            ),
            (
                "ringcache_cluster_role",
                "This node's seat: 1 primary, 2 replica, 0 spare.",
                role,
            ),
            (
                "ringcache_cluster_raft_leader",
                "1 if this node leads the Raft group.",
                i64::from(self.control.leader() == Some(me)),
            ),
            (
                "ringcache_cluster_write_lease_ms",
                "Milliseconds left on this node's write lease (it matters on a primary).",
                self.control.lease_ms_left() as i64,
            ),
            (
                "ringcache_replication_offset",
                "Replication offset (a primary's stream, a replica's applied position).",
                offset as i64,
            ),
            (
                "ringcache_replication_replicas",
                "Replicas following this primary.",
                replicas as i64,
            ),
            (
                "ringcache_replication_max_lag_changes",
                "Changes the furthest replica has yet to acknowledge.",
                lag as i64,
            ),
            (
                "ringcache_replication_link_up",
                "On a replica: 1 while the link to the primary works.",
                i64::from(role == 2 && link_up),
            ),
            (
                "ringcache_cluster_slots_migrating",
                "Slots being moved between shards, cluster-wide.",
                state.migrations.len() as i64,
            ),
            (
                "ringcache_cluster_slots_owned",
                "Slots served by this node's shard (0 on a spare).",
                state
                    .seat_of(me)
                    .map_or(0, |(shard, _)| {
                        state.slots.iter().filter(|s| **s == shard.id).count()
                    }) as i64,
            ),
            (
                "ringcache_cluster_failovers_seen",
                "Failovers (automatic and manual) this node has applied since it started (a counter).",
                self.events.failovers() as i64,
            ),
            (
                "ringcache_bus_bytes_sent",
                "Bytes this node sent on the cluster bus: Raft, pings, forwarding, replication, migration (a counter).",
                cluster::bus::BYTES_SENT.load(std::sync::atomic::Ordering::Relaxed) as i64,
            ),
            (
                "ringcache_bus_bytes_received",
                "Bytes this node received on the cluster bus (a counter).",
                cluster::bus::BYTES_RECEIVED.load(std::sync::atomic::Ordering::Relaxed) as i64,
            ),
            (
                "ringcache_migration_keys_moved",
                "Keys this node has moved out by slot migrations since it started (a counter).",
                self.migrations.moved().0 as i64,
            ),
            (
                "ringcache_migration_bytes_moved",
                "Bytes of keys and values this node has moved out by slot migrations (a counter).",
                self.migrations.moved().1 as i64,
            ),
        ]
    }
}

impl Glue {
    /// The current cluster state.
    pub fn state(&self) -> Arc<ClusterState> {
        self.control.state()
    }
}
