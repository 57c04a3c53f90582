//! The cluster bus: node-to-node messages over TCP in a framed, versioned binary format.
//!
//! ```text
//!  frame  = magic "RC" (2) | version (1) | reserved (1) | length (u32, big endian) | payload
//!  payload = postcard(Message)
//! ```
//!
//! A connection opens with [`Request::Hello`], which names the sender's cluster id: a node that
//! belongs to another cluster (or to none, for Raft traffic) answers [`Response::Refused`] and
//! closes, so two clusters can never mix even if an operator points one at the other. After
//! the hello, requests and responses are multiplexed by id: a slow request (a forwarded
//! command waiting on a busy owner) does not hold up Raft heartbeats behind it.
//!
//! Every length is checked against [`MAX_FRAME_BYTES`] before memory is reserved, and a frame
//! that fails to decode closes the connection: bytes from the network are never trusted, even
//! from a peer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::placement::{NodeId, ShardId};
use crate::raft::TypeConfig;
use crate::topology::{Change, ClusterState};

/// The bus protocol version this build speaks.
pub const VERSION: u8 = 5;
/// The largest frame accepted: a forwarded request of the largest value, with room.
pub const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;
const MAGIC: [u8; 2] = *b"RC";
const HEADER_BYTES: usize = 8;

/// A wire protocol whose request is forwarded to the key's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proto {
    /// A memcached text request, verbatim.
    Memcache,
    /// A RESP command as its arguments.
    Resp,
}

/// A request from one node (or the admin CLI) to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Opens a connection: the sender's cluster (none for a node not yet in one, or the CLI).
    Hello {
        /// The sender's cluster id.
        cluster_id: Option<String>,
        /// The connection carries data-plane traffic (forwarded requests, replication,
        /// migration): the receiver serves it on its data plane's runtime, so bulk transfers
        /// are read and decoded off the control plane's thread.
        data_plane: bool,
    },
    /// Asks a node that is in no cluster to join this one (it keeps the id in its data dir).
    Meet {
        /// The cluster to join.
        cluster_id: String,
    },
    /// Raft AppendEntries.
    AppendEntries(openraft::raft::AppendEntriesRequest<TypeConfig>),
    /// Raft RequestVote.
    Vote(openraft::raft::VoteRequest<NodeId>),
    /// A whole Raft snapshot (the metadata is small: one message).
    Snapshot {
        /// The leader's vote.
        vote: openraft::Vote<NodeId>,
        /// What the snapshot covers.
        meta: openraft::SnapshotMeta<NodeId, openraft::BasicNode>,
        /// The state.
        state: ClusterState,
    },
    /// Proposes a change; sent to the Raft leader.
    Propose(Change),
    /// The leader asks a source shard's primary to move every key of `slots` (all migrating
    /// to the same shard, as of `epoch`) to that shard's primary at `target` (a bus address).
    Drain {
        /// The slots.
        slots: Vec<u16>,
        /// The importing primary's bus address.
        target: String,
        /// The metadata epoch the migration was seen at.
        epoch: u64,
    },
    /// A draining primary sends keys of migrating slots to the importing primary, which
    /// answers once it (and its replicas, within a bound) has them.
    Import {
        /// The keys, as whole items with absolute expiry.
        ops: Vec<ReplOp>,
        /// The metadata epoch the migration was seen at.
        epoch: u64,
    },
    /// A client request for a key this receiver owns.
    Forward {
        /// Its protocol.
        proto: Proto,
        /// The request: memcached text, or RESP arguments.
        payload: Vec<Vec<u8>>,
        /// Sent to the primary importing the keys' slot, after its owner answered
        /// [`Response::Ask`] (Redis's `ASKING`).
        asking: bool,
    },
    /// Asks for the receiver's identity and view.
    Status,
    /// The Raft leader's liveness probe, granting a write lease of `lease_ms` when set.
    Ping {
        /// The leader's Raft term (grants of older terms are ignored).
        term: u64,
        /// The lease granted, counted from `sent_unix_ms`.
        lease_ms: Option<u32>,
        /// When the leader sent this ping, by its wall clock: a grant delivered late (a
        /// partition healing releases TCP retransmissions) must not outlive the leader's
        /// reckoning of it.
        sent_unix_ms: u64,
        /// The epoch of the leader's metadata when it sent this: a node whose own metadata
        /// is older (a restarted node still catching up on the Raft log, which may not yet
        /// know it was demoted) takes no lease from it.
        epoch: u64,
    },
    /// A replica asks its primary for the changes from offset `from` on, waiting up to
    /// `wait_ms` for some when there are none yet. `from` also acknowledges every change
    /// before it.
    ReplPull {
        /// The replica.
        replica: NodeId,
        /// The replication stream the replica follows (its primary's backlog id).
        repl_id: u64,
        /// The first offset wanted.
        from: u64,
        /// How long to wait for a change.
        wait_ms: u32,
    },
    /// A replica asks for a copy of one store shard of its primary (a full sync).
    ReplSnapshot {
        /// The replica.
        replica: NodeId,
        /// The store shard.
        shard: u32,
    },
    /// Asks for the cluster state the receiver has applied.
    Topology,
    /// Asks the receiver (a node in no cluster) to create one from these nodes (`host:port`
    /// or `host:port@busport`), with `replicas` replicas per shard.
    Create {
        /// The nodes, the receiver among them.
        nodes: Vec<String>,
        /// Replicas per shard.
        replicas: usize,
    },
    /// `CLUSTER FAILOVER` on a replica: asks the Raft leader to promote it. Answered `Ok` once
    /// the failover has started; it goes on in the background.
    ManualFailover {
        /// The replica to promote.
        replica: NodeId,
        /// `FORCE` (or `TAKEOVER`): don't coordinate with the primary, wait out its leases.
        force: bool,
    },
    /// The leader asks a shard's primary to stop taking writes (held until the pause ends)
    /// for a graceful failover; answered with [`Response::Paused`].
    PauseWrites {
        /// The shard the receiver must be the primary of.
        shard: ShardId,
        /// The longest the pause may last before the primary checks, through Raft, whether
        /// the failover happened.
        pause_ms: u32,
    },
    /// The leader abandons a graceful failover: the primary takes writes again.
    ResumeWrites {
        /// The shard.
        shard: ShardId,
    },
    /// The leader asks a replica to apply its primary's stream up to `offset`, waiting up to
    /// `timeout_ms`; answered `Ok` once it has, `Refused` if it couldn't.
    CatchUp {
        /// The primary's backlog id.
        repl_id: u64,
        /// The offset to reach (everything before it applied).
        offset: u64,
        /// How long to wait.
        timeout_ms: u32,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// The hello was accepted; the receiver's id.
    Welcome {
        /// The receiver's node id.
        node_id: NodeId,
    },
    /// The request was refused, and why (for a hello: the connection closes).
    Refused(String),
    /// Done.
    Ok,
    /// Raft AppendEntries answer.
    AppendEntries(Result<openraft::raft::AppendEntriesResponse<NodeId>, String>),
    /// Raft RequestVote answer.
    Vote(Result<openraft::raft::VoteResponse<NodeId>, String>),
    /// Raft snapshot answer.
    Snapshot(Result<openraft::raft::SnapshotResponse<NodeId>, String>),
    /// A proposal was committed (the epoch) or refused.
    Proposed(Result<u64, String>),
    /// A drain finished: keys and bytes moved.
    Drained {
        /// Keys moved.
        keys: u64,
        /// Bytes of keys and values moved.
        bytes: u64,
    },
    /// The receiver is not the leader; the leader's id and bus address if known.
    NotLeader(Option<(NodeId, String)>),
    /// The owner's reply bytes to a forwarded request.
    Forwarded(Vec<u8>),
    /// The receiver no longer owns the key's slot; the sender should refresh and retry.
    NotOwner,
    /// The keys' slot is migrating and the keys aren't here: ask the importing primary at
    /// this bus address (with `asking`).
    Ask(String),
    /// The receiver's status.
    Status(Box<crate::NodeStatus>),
    /// Changes of the replication stream, and the offset to ask for next.
    ReplBatch {
        /// The changes, in order.
        records: Vec<ReplRecord>,
        /// The offset after the last one.
        next: u64,
    },
    /// A copy of one store shard, and the stream offset from which changes to that shard are
    /// not in the copy.
    ReplSnapshot {
        /// The primary's backlog id.
        repl_id: u64,
        /// The primary's number of store shards.
        shards: u32,
        /// The first offset not reflected in `records`.
        offset: u64,
        /// The shard's items.
        records: Vec<ReplRecord>,
    },
    /// The asked offset is no longer (or not) in the primary's backlog: sync in full.
    ReplResync,
    /// The receiver's applied cluster state.
    Topology(Box<ClusterState>),
    /// Answer to a ping: the receiver's replication offset.
    Pong {
        /// Its replication offset (a replica's applied offset).
        offset: u64,
    },
    /// The cluster was created (its id), or why not.
    Created(Result<String, String>),
    /// The primary has stopped taking writes; its stream position at that moment.
    Paused {
        /// Its backlog id.
        repl_id: u64,
        /// Every write it acknowledged is before this offset.
        offset: u64,
    },
}

/// One change of a replication stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplRecord {
    /// Its offset in the stream.
    pub offset: u64,
    /// The primary's store shard it changed.
    pub shard: u16,
    /// When the primary made the change, by its wall clock (Unix microseconds); 0 in a
    /// full-sync copy. A replica subtracts it from its own clock to know its lag.
    pub made_at_us: u64,
    /// The change.
    pub op: ReplOp,
}

/// A replicated change (see `store::Record`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplOp {
    /// The key now holds this item.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// Client flags.
        flags: u32,
        /// Absolute expiry, Unix ms; 0 for none.
        expires_at_ms: u64,
        /// Protocol bits.
        meta: u8,
    },
    /// The key is gone.
    Del {
        /// The key.
        key: Vec<u8>,
    },
    /// The shard was flushed.
    Clear,
    /// A piece of a value too large for one message (slot migration only): the parts of a
    /// key arrive in order, each in a message of its own, and the key holds the value once
    /// the last one has.
    Part {
        /// The key.
        key: Vec<u8>,
        /// Where this piece starts in the value.
        offset: u64,
        /// The whole value's length.
        total: u64,
        /// The bytes from `offset`.
        data: Vec<u8>,
        /// Client flags.
        flags: u32,
        /// Absolute expiry, Unix ms; 0 for none.
        expires_at_ms: u64,
        /// Protocol bits.
        meta: u8,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum Message {
    Request { id: u64, body: Request },
    Response { id: u64, body: Response },
}

/// A bus failure.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// Could not connect, or the connection broke.
    #[error("{addr}: {source}")]
    Io {
        /// The peer.
        addr: String,
        /// What happened.
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("{0}: timed out")]
    Timeout(String),
    /// The peer refused the hello.
    #[error("{addr} refused: {why}")]
    Refused {
        /// The peer.
        addr: String,
        /// Its reason.
        why: String,
    },
    /// The peer sent something that isn't a bus frame.
    #[error("{0}: bad frame")]
    BadFrame(String),
}

/// Bytes this process has sent and received on the bus (frames, headers included), every
/// connection and both directions of it: for `/metrics`.
pub static BYTES_SENT: AtomicU64 = AtomicU64::new(0);
/// See [`BYTES_SENT`].
pub static BYTES_RECEIVED: AtomicU64 = AtomicU64::new(0);

/// Read buffer per connection: most frames (Raft heartbeats, forwarded requests) are small, so
/// one read brings many of them.
const IO_BUFFER_BYTES: usize = 64 * 1024;

/// Writes the frames queued on `rx` until it closes or the socket fails. Frames queued while a
/// write was in progress go out together in the next one: under load, one syscall carries
/// many forwarded requests or replies.
async fn write_frames(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let mut batch = Vec::new();
    while let Some(frame) = rx.recv().await {
        if batch.is_empty() && frame.len() >= IO_BUFFER_BYTES {
            if writer.write_all(&frame).await.is_err() {
                return;
            }
            BYTES_SENT.fetch_add(frame.len() as u64, Ordering::Relaxed);
            continue;
        }
        batch.extend_from_slice(&frame);
        while batch.len() < IO_BUFFER_BYTES {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if writer.write_all(&batch).await.is_err() {
            return;
        }
        BYTES_SENT.fetch_add(batch.len() as u64, Ordering::Relaxed);
        batch.clear();
        if batch.capacity() > 4 * IO_BUFFER_BYTES {
            batch = Vec::new();
        }
    }
}

/// Encodes one message as a frame.
fn encode(message: &Message) -> Vec<u8> {
    let header = vec![MAGIC[0], MAGIC[1], VERSION, 0, 0, 0, 0, 0];
    // Serialising our own in-memory types into a Vec can't fail.
    let mut frame = postcard::to_extend(message, header).unwrap_or_default();
    let len = (frame.len() - HEADER_BYTES) as u32;
    frame[4..8].copy_from_slice(&len.to_be_bytes());
    frame
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
async fn read_frame<R: AsyncReadExt + Unpin>(reader: &mut R) -> std::io::Result<Option<Message>> {
    let mut header = [0u8; HEADER_BYTES];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    if header[..2] != MAGIC {
        return Err(bad("not a ringcache bus frame"));
    }
    if header[2] != VERSION {
        return Err(bad("unsupported bus version"));
    }
    let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(bad("bus frame too large"));
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await?;
    BYTES_RECEIVED.fetch_add((HEADER_BYTES + len) as u64, Ordering::Relaxed);
    postcard::from_bytes(&payload)
        .map(Some)
        .map_err(|_| bad("undecodable bus frame"))
}

/// Serves requests on an accepted bus connection.
pub trait Handler: Send + Sync + 'static {
    /// Checks a hello: `Ok(node id)` to go on, `Err(reason)` to refuse.
    fn hello(&self, cluster_id: Option<&str>) -> Result<NodeId, String>;
    /// The runtime that serves data-plane connections, when it isn't the current one.
    fn data_runtime(&self) -> Option<tokio::runtime::Handle> {
        None
    }
    /// Answers one request that arrived on a connection whose hello named `from_cluster`.
    fn handle(
        self: Arc<Self>,
        request: Request,
        from_cluster: Option<String>,
    ) -> impl std::future::Future<Output = Response> + Send;
}

/// Serves one accepted connection until it closes.
pub async fn serve<H: Handler>(handler: Arc<H>, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    // The hello, read unbuffered: whatever follows it stays in the socket.
    let Ok(Some(Message::Request { id, body })) = read_frame(&mut stream).await else {
        return;
    };
    let (answer, hello) = match body {
        Request::Hello {
            cluster_id,
            data_plane,
        } => (
            handler.hello(cluster_id.as_deref()),
            Some((cluster_id, data_plane)),
        ),
        _ => (Err("expected hello".to_string()), None),
    };
    let (body, greeted) = match (answer, hello) {
        (Ok(node_id), Some(hello)) => (Response::Welcome { node_id }, Some(hello)),
        (Err(why), _) => (Response::Refused(why), None),
        (Ok(_), None) => return,
    };
    if stream
        .write_all(&encode(&Message::Response { id, body }))
        .await
        .is_err()
    {
        return;
    }
    let Some((from_cluster, data_plane)) = greeted else {
        return;
    };
    if data_plane {
        if let Some(runtime) = handler.data_runtime() {
            let here = tokio::runtime::Handle::try_current().map(|h| h.id());
            if here.ok() != Some(runtime.id()) {
                // Re-registered with the data runtime's reactor.
                let Ok(std_stream) = stream.into_std() else {
                    return;
                };
                runtime.spawn(async move {
                    if let Ok(stream) = TcpStream::from_std(std_stream) {
                        serve_greeted(handler, stream, from_cluster).await;
                    }
                });
                return;
            }
        }
    }
    serve_greeted(handler, stream, from_cluster).await;
}

/// Serves the requests after the hello, each in a task of its own.
async fn serve_greeted<H: Handler>(
    handler: Arc<H>,
    stream: TcpStream,
    from_cluster: Option<String>,
) {
    let (reader, writer) = stream.into_split();
    let mut reader = tokio::io::BufReader::with_capacity(IO_BUFFER_BYTES, reader);
    let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer_task = tokio::spawn(write_frames(writer, rx));
    while let Ok(Some(message)) = read_frame(&mut reader).await {
        let Message::Request { id, body } = message else {
            break;
        };
        if matches!(body, Request::Hello { .. }) {
            let _ = tx.send(encode(&Message::Response {
                id,
                body: Response::Refused("hello twice".into()),
            }));
            break;
        }
        let handler = handler.clone();
        let tx = tx.clone();
        let from_cluster = from_cluster.clone();
        tokio::spawn(async move {
            let body = handler.handle(body, from_cluster).await;
            let _ = tx.send(encode(&Message::Response { id, body }));
        });
    }
    drop(tx);
    let _ = writer_task.await;
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>>;

struct Conn {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    closed: Arc<AtomicBool>,
}

/// A client for one peer: connects on first use, reconnects after a failure, multiplexes
/// concurrent calls over one connection.
pub struct Client {
    addr: String,
    cluster_id: Arc<Mutex<Option<String>>>,
    bind_ip: Option<IpAddr>,
    /// Says so in its hello: the peer serves it on its data plane's runtime.
    data_plane: bool,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
    next_id: AtomicU64,
}

impl Client {
    /// Returns a client for the peer at `addr` that introduces itself as a member of
    /// `cluster_id` (read at each connect), binding its sockets to `bind_ip` when given (so
    /// a partition between two addresses cuts this traffic too). A `data_plane` client's
    /// connections are served on the peer's data-plane runtime.
    pub fn new(
        addr: String,
        cluster_id: Arc<Mutex<Option<String>>>,
        bind_ip: Option<IpAddr>,
        data_plane: bool,
    ) -> Self {
        Self {
            addr,
            cluster_id,
            bind_ip,
            data_plane,
            conn: tokio::sync::Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }

    /// The peer's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `request` and waits up to `timeout` for the answer.
    pub async fn call(&self, request: Request, timeout: Duration) -> Result<Response, BusError> {
        tokio::time::timeout(timeout, self.call_inner(request))
            .await
            .map_err(|_| BusError::Timeout(self.addr.clone()))?
    }

    async fn call_inner(&self, request: Request) -> Result<Response, BusError> {
        let conn = self.connection().await?;
        let result = self.exchange(&conn, request).await;
        if result.is_err() {
            conn.closed.store(true, Ordering::Relaxed);
        }
        result
    }

    async fn exchange(&self, conn: &Conn, request: Request) -> Result<Response, BusError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&conn.pending).insert(id, tx);
        let frame = encode(&Message::Request { id, body: request });
        let broken = || BusError::Io {
            addr: self.addr.clone(),
            source: std::io::ErrorKind::ConnectionReset.into(),
        };
        if conn.tx.send(frame).is_err() {
            lock(&conn.pending).remove(&id);
            return Err(broken());
        }
        rx.await.map_err(|_| broken())
    }

    async fn connection(&self) -> Result<Arc<Conn>, BusError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            if !conn.closed.load(Ordering::Relaxed) {
                return Ok(conn.clone());
            }
        }
        *slot = None;
        let io = |source| BusError::Io {
            addr: self.addr.clone(),
            source,
        };
        let target: SocketAddr = tokio::net::lookup_host(&self.addr)
            .await
            .map_err(io)?
            .next()
            .ok_or_else(|| io(std::io::ErrorKind::AddrNotAvailable.into()))?;
        let socket = if target.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(io)?;
        if let Some(ip) = self.bind_ip {
            if ip.is_ipv4() == target.is_ipv4() && !ip.is_unspecified() {
                socket.bind(SocketAddr::new(ip, 0)).map_err(io)?;
            }
        }
        let stream = socket.connect(target).await.map_err(io)?;
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        let mut reader = tokio::io::BufReader::with_capacity(IO_BUFFER_BYTES, reader);
        let (tx, rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let conn = Arc::new(Conn {
            tx,
            pending: pending.clone(),
            closed: closed.clone(),
        });
        {
            let closed = closed.clone();
            tokio::spawn(async move {
                write_frames(writer, rx).await;
                closed.store(true, Ordering::Relaxed);
            });
        }
        tokio::spawn(async move {
            while let Ok(Some(Message::Response { id, body })) = read_frame(&mut reader).await {
                if let Some(tx) = lock(&pending).remove(&id) {
                    let _ = tx.send(body);
                }
            }
            closed.store(true, Ordering::Relaxed);
            // Dropping the senders fails every call still waiting.
            lock(&pending).clear();
        });
        let cluster_id = lock(&self.cluster_id).clone();
        let hello = Request::Hello {
            cluster_id,
            data_plane: self.data_plane,
        };
        match self.exchange(&conn, hello).await? {
            Response::Welcome { .. } => {}
            Response::Refused(why) => {
                conn.closed.store(true, Ordering::Relaxed);
                return Err(BusError::Refused {
                    addr: self.addr.clone(),
                    why,
                });
            }
            _ => return Err(BusError::BadFrame(self.addr.clone())),
        }
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

/// Locks a mutex, going on if a holder panicked (the maps stay consistent: each operation is
/// a single insert or remove).
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_bad_headers_are_refused() {
        let frame = encode(&Message::Request {
            id: 7,
            body: Request::Meet {
                cluster_id: "abc".into(),
            },
        });
        assert_eq!(&frame[..3], &[b'R', b'C', VERSION]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut good = &frame[..];
            match read_frame(&mut good).await {
                Ok(Some(Message::Request {
                    id: 7,
                    body: Request::Meet { cluster_id },
                })) => assert_eq!(cluster_id, "abc"),
                other => panic!("unexpected {other:?}"),
            }
            let mut huge = frame.clone();
            huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
            assert!(read_frame(&mut &huge[..]).await.is_err());
            let mut version = frame.clone();
            version[2] = 99;
            assert!(read_frame(&mut &version[..]).await.is_err());
            let mut garbage = frame.clone();
            garbage[HEADER_BYTES] = 0xff;
            assert!(read_frame(&mut &garbage[..]).await.is_err());
            assert!(read_frame(&mut &b""[..])
                .await
                .expect("clean eof")
                .is_none());
        });
    }
}
