//! Replication: a primary streams every change of its keyspace to its replicas.
//!
//! ```text
//!  primary:  store ──journal (under the shard lock)──> Backlog: offsets, bounded by bytes
//!                                                        ^  ReplPull{from} (long poll)
//!  replica:  pull task ──bus──────────────────────────────┘  ReplSnapshot{shard} (full sync)
//!            applies records in offset order to its own store
//! ```
//!
//! - **Pull, not push.** The replica asks for the changes from offset `from` on, and the
//!   primary answers at once if it has some, or waits up to a second for the next one (a long
//!   poll). Asking for `from` acknowledges everything before it: that is how the primary
//!   learns each replica's offset, for `WAIT` and `INFO replication`.
//! - **Full sync.** A new replica, or one whose offset has left the bounded backlog
//!   (`ReplResync`), empties its store and copies the primary one store shard at a time.
//!   Each copy is taken under that shard's lock together with the backlog position `O_i`.
//!   Because the journal records a shard's changes under the same lock, exactly the changes
//!   of shard `i` with offsets `>= O_i` are missing from the copy. The replica then pulls
//!   from `min(O_i)` and skips a shard's records below its own `O_i`. The primary keeps
//!   serving throughout; each shard is locked only while it is copied.
//! - **TTLs** travel as absolute times. Evictions and expirations on the primary arrive as
//!   deletes.
//! - **Identity.** A backlog has a random id. A replica that finds a different id (its primary
//!   restarted) syncs in full.
//! - **Lag.** Each change carries the primary's wall-clock time; the replica records how long
//!   after it the change was applied (see `lag`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster::bus::{ReplOp, ReplRecord, Request, Response};
use cluster::NodeId;
use command::Node;
use store::{Journal, Record};
use tokio_util::sync::CancellationToken;

/// Most bytes of changes one pull returns.
const BATCH_BYTES: usize = 1 << 20;
/// How long a pull waits for a change when there is none.
const LONG_POLL: Duration = Duration::from_millis(1000);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
struct Inner {
    /// `(offset, store shard, when it was made (Unix µs), change)`, oldest first.
    records: VecDeque<(u64, u16, u64, Record)>,
    /// The offset the next change gets.
    next: u64,
    bytes: usize,
}

/// What a primary knows of one replica.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaState {
    /// Everything before this offset is applied there.
    pub acked: u64,
    /// When it last asked.
    pub seen: Instant,
}

/// A primary's replication backlog: the journal of its store, with offsets.
#[derive(Debug)]
pub struct Backlog {
    /// Random id of this stream.
    pub repl_id: u64,
    max_bytes: usize,
    inner: Mutex<Inner>,
    changed: tokio::sync::Notify,
    replicas: Mutex<BTreeMap<NodeId, ReplicaState>>,
    acked: tokio::sync::Notify,
}

/// Microseconds since the Unix epoch by this machine's wall clock.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Journal for Backlog {
    fn record(&self, shard: usize, record: Record) {
        let made_at_us = unix_us();
        {
            let mut inner = lock(&self.inner);
            let offset = inner.next;
            inner.next += 1;
            inner.bytes += record.weight();
            inner
                .records
                .push_back((offset, shard as u16, made_at_us, record));
            while inner.bytes > self.max_bytes && inner.records.len() > 1 {
                if let Some((_, _, _, old)) = inner.records.pop_front() {
                    inner.bytes -= old.weight();
                }
            }
        }
        self.changed.notify_waiters();
    }
}

fn to_wire(offset: u64, shard: u16, made_at_us: u64, record: &Record) -> ReplRecord {
    let op = match record {
        Record::Put {
            key,
            value,
            flags,
            expires_at_ms,
            meta,
        } => ReplOp::Put {
            key: key.to_vec(),
            value: value.to_vec(),
            flags: *flags,
            expires_at_ms: *expires_at_ms,
            meta: *meta,
        },
        Record::Del { key } => ReplOp::Del { key: key.to_vec() },
        Record::Clear => ReplOp::Clear,
    };
    ReplRecord {
        offset,
        shard,
        made_at_us,
        op,
    }
}

/// The store record for a replicated change; `None` for a migration's value part, which the
/// replication stream never carries.
fn from_wire(op: ReplOp) -> Option<Record> {
    Some(match op {
        ReplOp::Put {
            key,
            value,
            flags,
            expires_at_ms,
            meta,
        } => Record::Put {
            key: Bytes::from(key),
            value: Bytes::from(value),
            flags,
            expires_at_ms,
            meta,
        },
        ReplOp::Del { key } => Record::Del {
            key: Bytes::from(key),
        },
        ReplOp::Clear => Record::Clear,
        ReplOp::Part { .. } => return None,
    })
}

impl Backlog {
    /// A new, empty backlog keeping at most `max_bytes` of changes.
    pub fn new(max_bytes: usize) -> Backlog {
        Backlog {
            repl_id: rand_id(),
            max_bytes: max_bytes.max(1),
            inner: Mutex::new(Inner {
                records: VecDeque::new(),
                next: 0,
                bytes: 0,
            }),
            changed: tokio::sync::Notify::new(),
            replicas: Mutex::default(),
            acked: tokio::sync::Notify::new(),
        }
    }

    /// The offset the next change will get (the primary's replication offset).
    pub fn offset(&self) -> u64 {
        lock(&self.inner).next
    }

    /// What the primary knows of its replicas.
    pub fn replicas(&self) -> BTreeMap<NodeId, ReplicaState> {
        lock(&self.replicas).clone()
    }

    fn ack(&self, replica: NodeId, acked: u64) {
        lock(&self.replicas).insert(
            replica,
            ReplicaState {
                acked,
                seen: Instant::now(),
            },
        );
        self.acked.notify_waiters();
    }

    /// Records from `from` on, up to [`BATCH_BYTES`]; `None` if `from` is not in the backlog.
    fn read(&self, from: u64) -> Option<(Vec<ReplRecord>, u64)> {
        let inner = lock(&self.inner);
        let first = inner.records.front().map_or(inner.next, |r| r.0);
        if from < first || from > inner.next {
            return None;
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        let skip = (from - first) as usize;
        let mut next = from;
        for (offset, shard, made_at_us, record) in inner.records.iter().skip(skip) {
            if bytes >= BATCH_BYTES {
                break;
            }
            bytes += record.weight();
            out.push(to_wire(*offset, *shard, *made_at_us, record));
            next = offset + 1;
        }
        Some((out, next))
    }

    /// Answers a pull: changes from `from` on, waiting up to a second for one.
    pub async fn pull(&self, replica: NodeId, repl_id: u64, from: u64) -> Response {
        if repl_id != self.repl_id {
            return Response::ReplResync;
        }
        self.ack(replica, from);
        let deadline = tokio::time::Instant::now() + LONG_POLL;
        loop {
            let changed = self.changed.notified();
            match self.read(from) {
                None => return Response::ReplResync,
                Some((records, next)) if !records.is_empty() => {
                    return Response::ReplBatch { records, next }
                }
                Some((_, next)) => {
                    if tokio::time::timeout_at(deadline, changed).await.is_err() {
                        return Response::ReplBatch {
                            records: Vec::new(),
                            next,
                        };
                    }
                }
            }
        }
    }

    /// Answers a full-sync request for store shard `shard`.
    pub fn snapshot(&self, node: &Node, shard: u32) -> Response {
        let shards = node.store.shard_count() as u32;
        if shard >= shards {
            return Response::Refused(format!("no store shard {shard}"));
        }
        let (offset, items) =
            node.store
                .snapshot_shard(shard as usize, node.clock.unix_ms(), || self.offset());
        let records = items
            .iter()
            .map(|r| to_wire(0, shard as u16, 0, r))
            .collect();
        Response::ReplSnapshot {
            repl_id: self.repl_id,
            shards,
            offset,
            records,
        }
    }

    /// Waits until `count` replicas have acknowledged `offset`, or `timeout` passes (0: no
    /// limit); returns how many have.
    pub async fn wait_for(&self, offset: u64, count: usize, timeout: Option<Duration>) -> usize {
        let acked = || {
            lock(&self.replicas)
                .values()
                .filter(|r| r.acked >= offset)
                .count()
        };
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        loop {
            let notified = self.acked.notified();
            let n = acked();
            if n >= count {
                return n;
            }
            match deadline {
                Some(d) => {
                    if tokio::time::timeout_at(d, notified).await.is_err() {
                        return acked();
                    }
                }
                None => notified.await,
            }
        }
    }
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() | 1
}

/// What a replica reports about its link to the primary.
#[derive(Debug, Clone, Default)]
pub struct ReplicaLink {
    /// The primary's client address.
    pub primary: String,
    /// Whether the last exchange succeeded.
    pub up: bool,
    /// The primary's backlog id this replica follows (0 until a full sync is done).
    pub repl_id: u64,
    /// The next offset this replica will ask for (everything before it is applied).
    pub offset: u64,
    /// When the last exchange succeeded.
    pub last_io: Option<Instant>,
    /// Full syncs done.
    pub full_syncs: u64,
}

/// Follows `primary_bus` as its replica until `stop` fires: full sync, then pulls.
pub async fn follow(
    node: Arc<Node>,
    control: Arc<cluster::ClusterNode>,
    primary_bus: String,
    link: Arc<Mutex<ReplicaLink>>,
    lag: Arc<Mutex<crate::lag::ReplicaLag>>,
    stop: CancellationToken,
) {
    let client = control.data_peers.get(&primary_bus);
    let me = control.id;
    let call = |request: Request| {
        let client = client.clone();
        async move {
            client
                .call(request, LONG_POLL + Duration::from_secs(2))
                .await
        }
    };
    let mut synced: Option<(u64, u64, Vec<u64>)> = None; // (repl_id, from, skip per shard)
    while !stop.is_cancelled() {
        let Some((repl_id, from, skip)) = synced.as_mut() else {
            // Full sync: empty, then copy every store shard of the primary.
            lock(&link).repl_id = 0;
            node.store.clear();
            let mut skip = Vec::new();
            let mut id = None;
            let mut shards = 1;
            let mut shard = 0;
            let mut failed = false;
            while shard < shards {
                let request = Request::ReplSnapshot { replica: me, shard };
                match call(request).await {
                    Ok(Response::ReplSnapshot {
                        repl_id,
                        shards: n,
                        offset,
                        records,
                    }) => {
                        if id.is_some_and(|i| i != repl_id) {
                            failed = true; // the primary restarted mid-copy
                            break;
                        }
                        id = Some(repl_id);
                        shards = n;
                        let now = node.clock.unix_ms();
                        for record in records.into_iter().filter_map(|r| from_wire(r.op)) {
                            let _ = node.store.apply(&record, now);
                        }
                        skip.push(offset);
                        shard += 1;
                    }
                    other => {
                        tracing::debug!(?other, "full sync step failed");
                        failed = true;
                        break;
                    }
                }
            }
            if failed || id.is_none() {
                lock(&link).up = false;
                sleep_or_stop(&stop, Duration::from_millis(200)).await;
                continue;
            }
            let from = skip.iter().copied().min().unwrap_or(0);
            {
                let mut l = lock(&link);
                l.full_syncs += 1;
                l.up = true;
                l.repl_id = id.unwrap_or_default();
                l.offset = from;
                l.last_io = Some(Instant::now());
            }
            tracing::info!(
                primary = primary_bus,
                shards,
                from,
                "replica full sync done"
            );
            synced = Some((id.unwrap_or_default(), from, skip));
            continue;
        };
        let request = Request::ReplPull {
            replica: me,
            repl_id: *repl_id,
            from: *from,
            wait_ms: LONG_POLL.as_millis() as u32,
        };
        let answer = tokio::select! {
            _ = stop.cancelled() => break,
            answer = call(request) => answer,
        };
        match answer {
            Ok(Response::ReplBatch { records, next }) => {
                let now = node.clock.unix_ms();
                let mut made = Vec::with_capacity(records.len());
                for r in records {
                    if r.offset >= skip.get(usize::from(r.shard)).copied().unwrap_or(0) {
                        if let Some(record) = from_wire(r.op) {
                            let _ = node.store.apply(&record, now);
                        }
                        made.push(r.made_at_us);
                    }
                }
                // Lag counts to the moment the whole batch is applied (one clock read).
                let (applied_us, at) = (unix_us(), Instant::now());
                {
                    let mut lag = lock(&lag);
                    for made_at_us in made.into_iter().filter(|t| *t > 0) {
                        lag.record(applied_us.saturating_sub(made_at_us), at);
                    }
                }
                *from = next;
                let mut l = lock(&link);
                l.up = true;
                l.offset = next;
                l.last_io = Some(Instant::now());
            }
            Ok(Response::ReplResync) => {
                tracing::info!(primary = primary_bus, "replication offset lost: full sync");
                synced = None;
            }
            other => {
                tracing::debug!(?other, "replication pull failed");
                lock(&link).up = false;
                sleep_or_stop(&stop, Duration::from_millis(200)).await;
            }
        }
    }
}

async fn sleep_or_stop(stop: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}
