//! Raft (openraft) for the cluster metadata: the type configuration, the log and state
//! machine storage, and the network over the cluster bus.
//!
//! The metadata is tiny (members, shards, a 16384-entry slot table) and changes rarely, so
//! storage is simple: the log, the vote and the commit index are kept in memory and written
//! whole to `raft.bin` in the node's data dir (write to a temporary file, fsync, rename) before
//! each change is acknowledged, and the latest snapshot to `snapshot.bin`. A restarted node
//! therefore remembers its vote (Raft's safety needs that: Ongaro's thesis §3.8) and the log,
//! and rejoins with the same identity. The state machine itself ([`ClusterState`]) is rebuilt
//! from the snapshot and the committed log at start.
//!
//! Snapshots are sent whole in one bus message (`generic-snapshot-data`): a snapshot is the
//! state machine value itself, a few hundred KB at most.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    Fatal, NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
    Vote,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::bus::{self, Request, Response};
use crate::placement::NodeId;
use crate::topology::{Applied, Change, ClusterState};

openraft::declare_raft_types!(
    /// openraft's types for the cluster metadata.
    pub TypeConfig:
        D = Change,
        R = Applied,
        NodeId = NodeId,
        Node = BasicNode,
        SnapshotData = ClusterState,
);

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;

type StorageResult<T> = Result<T, StorageError<NodeId>>;

/// Writes `bytes` to `path` atomically and durably: temporary file, fsync, rename.
fn write_durably(path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // The rename itself is durable once the directory is synced.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct LogData {
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    last_purged: Option<LogId<NodeId>>,
    log: BTreeMap<u64, Entry<TypeConfig>>,
}

/// The Raft log, vote and commit index; persisted to `raft.bin` when a data dir is given.
#[derive(Clone)]
pub struct LogStore {
    data: Arc<Mutex<LogData>>,
    path: Option<PathBuf>,
}

impl LogStore {
    /// Opens the log kept in `dir` (a fresh one if there is none), or an in-memory log.
    pub fn open(dir: Option<&std::path::Path>) -> std::io::Result<Self> {
        let path = dir.map(|d| d.join("raft.bin"));
        let data = match &path {
            Some(p) if p.exists() => {
                let bytes = std::fs::read(p)?;
                postcard::from_bytes(&bytes).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{}: {e}", p.display()),
                    )
                })?
            }
            _ => LogData::default(),
        };
        Ok(Self {
            data: Arc::new(Mutex::new(data)),
            path,
        })
    }

    /// Returns `true` when this node has ever voted or logged anything.
    pub fn has_state(&self) -> bool {
        let d = bus::lock(&self.data);
        d.vote.is_some() || !d.log.is_empty() || d.last_purged.is_some()
    }

    fn persist(&self, data: &LogData) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes = postcard::to_stdvec(data).map_err(std::io::Error::other)?;
        write_durably(path, &bytes)
    }

    fn update<T>(&self, f: impl FnOnce(&mut LogData) -> T) -> std::io::Result<T> {
        let mut data = bus::lock(&self.data);
        let out = f(&mut data);
        self.persist(&data)?;
        Ok(out)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let data = bus::lock(&self.data);
        Ok(data.log.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let data = bus::lock(&self.data);
        let last = data.log.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: data.last_purged,
            last_log_id: last.or(data.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        self.update(|d| d.vote = Some(*vote))
            .map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        Ok(bus::lock(&self.data).vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        self.update(|d| d.committed = committed)
            .map_err(|e| StorageIOError::write(&e).into())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        Ok(bus::lock(&self.data).committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let result = self.update(|d| {
            for entry in entries {
                d.log.insert(entry.log_id.index, entry);
            }
        });
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = StorageIOError::write_logs(&e).into();
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.update(|d| {
            let _ = d.log.split_off(&log_id.index);
        })
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        self.update(|d| {
            d.last_purged = Some(log_id);
            d.log = d.log.split_off(&(log_id.index + 1));
        })
        .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    state: ClusterState,
}

struct SmData {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    state: ClusterState,
    snapshot: Option<StoredSnapshot>,
    snapshot_seq: u64,
}

/// The state machine: the [`ClusterState`], published on a watch channel after every apply.
#[derive(Clone)]
pub struct StateMachine {
    data: Arc<Mutex<SmData>>,
    path: Option<PathBuf>,
    published: Arc<watch::Sender<Arc<ClusterState>>>,
}

impl StateMachine {
    /// Opens the state machine, starting from the snapshot kept in `dir` if any.
    pub fn open(
        dir: Option<&std::path::Path>,
        published: Arc<watch::Sender<Arc<ClusterState>>>,
    ) -> std::io::Result<Self> {
        let path = dir.map(|d| d.join("snapshot.bin"));
        let snapshot: Option<StoredSnapshot> = match &path {
            Some(p) if p.exists() => Some(
                postcard::from_bytes(&std::fs::read(p)?)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
            ),
            _ => None,
        };
        let data = match &snapshot {
            Some(s) => SmData {
                last_applied: s.meta.last_log_id,
                membership: s.meta.last_membership.clone(),
                state: s.state.clone(),
                snapshot: snapshot.clone(),
                snapshot_seq: 0,
            },
            None => SmData {
                last_applied: None,
                membership: StoredMembership::default(),
                state: ClusterState::default(),
                snapshot: None,
                snapshot_seq: 0,
            },
        };
        published.send_replace(Arc::new(data.state.clone()));
        Ok(Self {
            data: Arc::new(Mutex::new(data)),
            path,
            published,
        })
    }

    fn save_snapshot(&self, snapshot: &StoredSnapshot) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes = postcard::to_stdvec(snapshot).map_err(std::io::Error::other)?;
        write_durably(path, &bytes)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let stored = {
            let mut d = bus::lock(&self.data);
            d.snapshot_seq += 1;
            let id = match d.last_applied {
                Some(l) => format!("{}-{}-{}", l.leader_id, l.index, d.snapshot_seq),
                None => format!("none-{}", d.snapshot_seq),
            };
            let stored = StoredSnapshot {
                meta: SnapshotMeta {
                    last_log_id: d.last_applied,
                    last_membership: d.membership.clone(),
                    snapshot_id: id,
                },
                state: d.state.clone(),
            };
            d.snapshot = Some(stored.clone());
            stored
        };
        self.save_snapshot(&stored)
            .map_err(|e| StorageIOError::write_snapshot(Some(stored.meta.signature()), &e))?;
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(stored.state),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let d = bus::lock(&self.data);
        Ok((d.last_applied, d.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Applied>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut d = bus::lock(&self.data);
        let mut out = Vec::new();
        for entry in entries {
            d.last_applied = Some(entry.log_id);
            out.push(match entry.payload {
                EntryPayload::Blank => Applied::Ok(d.state.epoch),
                EntryPayload::Normal(change) => d.state.apply(&change),
                EntryPayload::Membership(m) => {
                    d.membership = StoredMembership::new(Some(entry.log_id), m);
                    Applied::Ok(d.state.epoch)
                }
            });
        }
        self.published.send_replace(Arc::new(d.state.clone()));
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<ClusterState>> {
        Ok(Box::default())
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<ClusterState>,
    ) -> StorageResult<()> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            state: *snapshot,
        };
        self.save_snapshot(&stored)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        let mut d = bus::lock(&self.data);
        d.last_applied = meta.last_log_id;
        d.membership = meta.last_membership.clone();
        d.state = stored.state.clone();
        d.snapshot = Some(stored);
        self.published.send_replace(Arc::new(d.state.clone()));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let d = bus::lock(&self.data);
        Ok(d.snapshot.clone().map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(s.state),
        }))
    }
}

/// Bus clients by address, shared by Raft and forwarding.
pub struct Peers {
    clients: Mutex<BTreeMap<String, Arc<bus::Client>>>,
    cluster_id: Arc<Mutex<Option<String>>>,
    bind_ip: Option<std::net::IpAddr>,
    data_plane: bool,
}

impl Peers {
    /// Returns an empty set of peers that introduce themselves with `cluster_id`; the
    /// connections of `data_plane` peers are served on the receivers' data-plane runtimes.
    pub fn new(
        cluster_id: Arc<Mutex<Option<String>>>,
        bind_ip: Option<std::net::IpAddr>,
        data_plane: bool,
    ) -> Self {
        Self {
            clients: Mutex::default(),
            cluster_id,
            bind_ip,
            data_plane,
        }
    }

    /// The client for `addr`, created on first use.
    pub fn get(&self, addr: &str) -> Arc<bus::Client> {
        let mut clients = bus::lock(&self.clients);
        if let Some(client) = clients.get(addr) {
            return client.clone();
        }
        clients
            .entry(addr.to_string())
            .or_insert_with(|| {
                Arc::new(bus::Client::new(
                    addr.to_string(),
                    self.cluster_id.clone(),
                    self.bind_ip,
                    self.data_plane,
                ))
            })
            .clone()
    }
}

/// Raft's network: one [`PeerNetwork`] per target, over the bus.
#[derive(Clone)]
pub struct Network {
    /// The bus clients.
    pub peers: Arc<Peers>,
}

/// Raft RPCs to one node.
pub struct PeerNetwork {
    client: Arc<bus::Client>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerNetwork;

    async fn new_client(&mut self, _target: NodeId, node: &BasicNode) -> PeerNetwork {
        PeerNetwork {
            client: self.peers.get(&node.addr),
        }
    }
}

fn unreachable<E: std::error::Error + 'static>(e: &E) -> Unreachable {
    Unreachable::new(e)
}

fn remote(why: String) -> NetworkError {
    NetworkError::new(&std::io::Error::other(why))
}

type RpcResult<T> = Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId>>>;

impl PeerNetwork {
    async fn call(&self, request: Request, ttl: Duration) -> RpcResult<Response> {
        self.client.call(request, ttl).await.map_err(|e| match e {
            bus::BusError::Timeout(_) | bus::BusError::Io { .. } => {
                RPCError::Unreachable(unreachable(&e))
            }
            other => RPCError::Network(NetworkError::new(&other)),
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self
            .call(Request::AppendEntries(rpc), option.hard_ttl())
            .await?
        {
            Response::AppendEntries(Ok(r)) => Ok(r),
            Response::AppendEntries(Err(why)) | Response::Refused(why) => {
                Err(RPCError::Network(remote(why)))
            }
            other => Err(RPCError::Network(remote(format!("unexpected {other:?}")))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self.call(Request::Vote(rpc), option.hard_ttl()).await? {
            Response::Vote(Ok(r)) => Ok(r),
            Response::Vote(Err(why)) | Response::Refused(why) => {
                Err(RPCError::Network(remote(why)))
            }
            other => Err(RPCError::Network(remote(format!("unexpected {other:?}")))),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote<NodeId>,
        snapshot: Snapshot<TypeConfig>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<NodeId>, StreamingError<TypeConfig, Fatal<NodeId>>> {
        let request = Request::Snapshot {
            vote,
            meta: snapshot.meta,
            state: *snapshot.snapshot,
        };
        match self.client.call(request, option.hard_ttl()).await {
            Ok(Response::Snapshot(Ok(r))) => Ok(r),
            Ok(Response::Snapshot(Err(why))) | Ok(Response::Refused(why)) => {
                Err(StreamingError::Network(remote(why)))
            }
            Ok(other) => Err(StreamingError::Network(remote(format!(
                "unexpected {other:?}"
            )))),
            Err(e) => Err(StreamingError::Unreachable(unreachable(&e))),
        }
    }

    fn backoff(&self) -> openraft::network::Backoff {
        // A dead peer is retried every 200 ms rather than openraft's 500 ms, so a restarted
        // node catches up quickly; the cost is one failed connect per 200 ms on loopback.
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(200)))
    }
}

/// Raft timing for a LAN: heartbeats every 50 ms, elections after 250-645 ms of silence.
///
/// openraft 0.9 draws a node's election timeout once, so two nodes with overlapping ranges can
/// keep timing out together after losing their leader. Each node's range is therefore one of
/// sixteen disjoint 20 ms windows, 25 ms apart, chosen by its id.
///
/// A follower also refuses to vote until its leader lease (its `election_timeout_max`) has run
/// out since the last heartbeat, so electing a new leader takes up to about two timeouts:
/// 1.3 s at worst with these windows, inside the 2 s the project promises.
pub fn config(node_id: NodeId) -> openraft::Config {
    let window = node_id % 16;
    let min = 250 + 25 * window;
    openraft::Config {
        cluster_name: "ringcache".into(),
        heartbeat_interval: 50,
        election_timeout_min: min,
        election_timeout_max: min + 20,
        install_snapshot_timeout: 2000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(200),
        max_in_snapshot_log_to_keep: 50,
        ..Default::default()
    }
}
