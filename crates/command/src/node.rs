//! The state shared by every connection of a node, and the state of one connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use resp::Protocol;
use store::Store;
use tokio_util::sync::CancellationToken;

use crate::table::COMMANDS;

/// The version reported to clients as `redis_version`: the Redis release whose command
/// semantics this node follows, so client libraries enable the right features.
pub const REDIS_COMPAT_VERSION: &str = "7.2.4";

/// This build's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Settings that can change at run time (`CONFIG SET`); read on the hot path, so atomics.
#[derive(Debug)]
pub struct NodeSettings {
    /// Most simultaneous clients.
    pub max_clients: AtomicUsize,
    /// Seconds a client may stay idle before it is closed; 0 = never.
    pub idle_timeout_secs: AtomicU64,
    /// Largest bulk string in a request.
    pub proto_max_bulk_len: AtomicUsize,
    /// Largest request.
    pub max_request_bytes: AtomicUsize,
    /// Largest pending output of one client before it is disconnected.
    pub client_output_limit_bytes: AtomicUsize,
    /// Node-wide budget for all clients' buffers (`maxmemory-clients`); 0 = none.
    pub max_client_memory_bytes: AtomicUsize,
}

/// Facts about the node fixed at start, shown by `INFO` and `CONFIG GET`.
#[derive(Debug, Clone, Default)]
pub struct NodeIdentity {
    /// The address the RESP listener is bound to.
    pub bind: String,
    /// The RESP port.
    pub port: u16,
    /// The configuration file, if any.
    pub config_file: Option<String>,
    /// Worker threads of the runtime.
    pub io_threads: usize,
    /// The memcached port (0 when disabled).
    pub memcache_port: u16,
}

/// Counters of the node as a whole.
#[derive(Debug, Default)]
pub struct NodeStats {
    /// Connections accepted.
    pub connections_received: AtomicU64,
    /// Connections refused (max clients).
    pub rejected_connections: AtomicU64,
    /// Bytes read from clients.
    pub net_input_bytes: AtomicU64,
    /// Bytes written to clients.
    pub net_output_bytes: AtomicU64,
    /// Clients closed for exceeding the output limit.
    pub output_limit_disconnections: AtomicU64,
    /// Protocol errors.
    pub protocol_errors: AtomicU64,
    /// Unknown commands received.
    pub unknown_commands: AtomicU64,
    /// Bytes held by all clients' query and output buffers.
    pub client_buffer_bytes: AtomicUsize,
    /// Clients disconnected because all clients' buffers together went over
    /// `maxmemory-clients` (Redis 7's `evicted_clients`).
    pub clients_evicted: AtomicU64,
}

/// Per-command counters (`INFO commandstats` and `/metrics`).
#[derive(Debug, Default)]
pub struct CommandStats {
    /// Calls.
    pub calls: AtomicU64,
    /// Total microseconds spent.
    pub usec: AtomicU64,
    /// Calls that returned an error.
    pub failed: AtomicU64,
}

/// Upper bounds, in microseconds, of the command latency histogram buckets.
pub const LATENCY_BUCKETS_USEC: [u64; 12] = [
    5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 100_000,
];

/// A fixed-bucket latency histogram of atomics (lock-free on the request path).
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Counts per bucket; the last counts everything above the largest bound.
    pub buckets: [AtomicU64; LATENCY_BUCKETS_USEC.len() + 1],
    /// Sum of all samples in microseconds.
    pub sum_usec: AtomicU64,
}

impl LatencyHistogram {
    /// Records one sample.
    pub fn record(&self, usec: u64) {
        let i = LATENCY_BUCKETS_USEC
            .iter()
            .position(|&b| usec <= b)
            .unwrap_or(LATENCY_BUCKETS_USEC.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_usec.fetch_add(usec, Relaxed);
    }
}

/// What `CLIENT LIST` shows about a connection; shared between its task and the registry.
#[derive(Debug)]
pub struct ClientInfo {
    /// Unique, increasing client id.
    pub id: u64,
    /// The peer's address.
    pub addr: SocketAddr,
    /// The local address.
    pub local_addr: SocketAddr,
    /// When the connection was accepted.
    pub created: Instant,
    /// Milliseconds since `created` of the last command.
    pub last_active_ms: AtomicU64,
    /// Protocol version (2 or 3).
    pub protocol: AtomicU8,
    /// Name, library name and version set by `CLIENT SETNAME` / `CLIENT SETINFO`.
    pub names: Mutex<ClientNames>,
    /// Bytes its query and output buffers hold, as last reported by
    /// its connection through [`Node::account_client_buffers`].
    pub buffer_bytes: AtomicUsize,
    /// Cancelled to disconnect the client (the node's client buffer budget evicted it).
    pub kill: CancellationToken,
}

/// The names a client gave itself.
#[derive(Debug, Default, Clone)]
pub struct ClientNames {
    /// `CLIENT SETNAME`.
    pub name: Bytes,
    /// `CLIENT SETINFO LIB-NAME`.
    pub lib_name: Bytes,
    /// `CLIENT SETINFO LIB-VER`.
    pub lib_ver: Bytes,
}

impl ClientInfo {
    /// A new RESP2 client `id` connected from `addr` to `local_addr`.
    pub fn new(id: u64, addr: SocketAddr, local_addr: SocketAddr) -> Self {
        ClientInfo {
            id,
            addr,
            local_addr,
            created: Instant::now(),
            last_active_ms: AtomicU64::new(0),
            protocol: AtomicU8::new(2),
            names: Mutex::new(ClientNames::default()),
            buffer_bytes: AtomicUsize::new(0),
            kill: CancellationToken::new(),
        }
    }

    /// Records activity now (for `CLIENT LIST idle=`); called once per batch of commands.
    pub fn mark_active(&self) {
        self.last_active_ms
            .store(self.created.elapsed().as_millis() as u64, Relaxed);
    }

    /// Returns the client's line in `CLIENT LIST` / `CLIENT INFO` format.
    pub fn describe(&self) -> String {
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        let age = self.created.elapsed();
        let idle_ms = (age.as_millis() as u64).saturating_sub(self.last_active_ms.load(Relaxed));
        format!(
            "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags=N db=0 sub=0 psub=0 \
             ssub=0 multi=-1 watch=0 user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.local_addr,
            String::from_utf8_lossy(&names.name),
            age.as_secs(),
            idle_ms / 1000,
            self.protocol.load(Relaxed),
            String::from_utf8_lossy(&names.lib_name),
            String::from_utf8_lossy(&names.lib_ver),
        )
    }
}

/// The state shared by all connections of one node.
#[derive(Debug)]
pub struct Node {
    /// The keyspace.
    pub store: Store,
    /// Run-time settings.
    pub settings: NodeSettings,
    /// Fixed facts.
    pub identity: NodeIdentity,
    /// Node-wide counters.
    pub stats: NodeStats,
    /// Per-command counters, indexed like [`COMMANDS`].
    pub command_stats: Box<[CommandStats]>,
    /// Command latency.
    pub latency: LatencyHistogram,
    /// memcached protocol counters.
    pub mc_stats: crate::memcached::McStats,
    /// The clock commands read.
    pub clock: crate::Clock,
    /// When the node started.
    pub started: Instant,
    /// Connected clients by id.
    clients: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
    next_client_id: AtomicU64,
    /// Held while clients are evicted for the client buffer budget.
    evicting: Mutex<()>,
    /// A random 40-hex-digit id for this run (`INFO server run_id`).
    pub run_id: String,
    /// The cluster, when the node runs in cluster mode.
    pub cluster: std::sync::OnceLock<Arc<dyn crate::ClusterHook>>,
}

impl Node {
    /// Returns a node around `store`.
    pub fn new(store: Store, settings: NodeSettings, identity: NodeIdentity) -> Self {
        let seed = crate::unix_ms() ^ u64::from(std::process::id()).rotate_left(32);
        let run_id = format!(
            "{:016x}{:016x}{:08x}",
            seed,
            seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            seed as u32
        );
        Self {
            store,
            settings,
            identity,
            stats: NodeStats::default(),
            command_stats: COMMANDS.iter().map(|_| CommandStats::default()).collect(),
            latency: LatencyHistogram::default(),
            mc_stats: crate::memcached::McStats::default(),
            clock: crate::Clock::default(),
            started: Instant::now(),
            clients: Mutex::new(BTreeMap::new()),
            next_client_id: AtomicU64::new(1),
            evicting: Mutex::new(()),
            run_id,
            cluster: std::sync::OnceLock::new(),
        }
    }

    /// Registers a new connection and returns its info, or `None` when `max_clients` are
    /// already connected.
    pub fn register_client(
        &self,
        addr: SocketAddr,
        local_addr: SocketAddr,
    ) -> Option<Arc<ClientInfo>> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.len() >= self.settings.max_clients.load(Relaxed) {
            self.stats.rejected_connections.fetch_add(1, Relaxed);
            return None;
        }
        let info = Arc::new(ClientInfo::new(
            self.next_client_id.fetch_add(1, Relaxed),
            addr,
            local_addr,
        ));
        clients.insert(info.id, info.clone());
        self.stats.connections_received.fetch_add(1, Relaxed);
        Some(info)
    }

    /// Records that `client`'s buffers now hold `bytes`. When that takes the node-wide total
    /// over `maxmemory-clients`, disconnects clients, the largest buffers first, until the
    /// rest fit (as Redis 7's client eviction): a few clients that hold big requests can't
    /// take the memory every other client needs.
    pub fn account_client_buffers(&self, client: &ClientInfo, bytes: usize) {
        let old = client.buffer_bytes.swap(bytes, Relaxed);
        let total = &self.stats.client_buffer_bytes;
        if bytes <= old {
            total.fetch_sub(old - bytes, Relaxed);
            return;
        }
        let now = total.fetch_add(bytes - old, Relaxed) + (bytes - old);
        let limit = self.settings.max_client_memory_bytes.load(Relaxed);
        if limit != 0 && now > limit {
            self.evict_clients(limit);
        }
    }

    /// Disconnects the clients with the largest buffers until the others fit in `limit`.
    fn evict_clients(&self, limit: usize) {
        // One eviction pass at a time, each on fresh sizes: a pass that skipped while another
        // ran could leave the total over the limit with nothing left to trigger another. The
        // wait is short and rare (only while over the limit).
        let _pass = self.evicting.lock().unwrap_or_else(|p| p.into_inner());
        if self.stats.client_buffer_bytes.load(Relaxed) <= limit {
            return;
        }
        // A snapshot of each client's size and last activity: they change under our feet,
        // and a sort must see one value per client.
        let mut held: Vec<(usize, Instant, Arc<ClientInfo>)> = self
            .clients()
            .into_iter()
            .map(|c| {
                let active = c.created + Duration::from_millis(c.last_active_ms.load(Relaxed));
                (c.buffer_bytes.load(Relaxed), active, c)
            })
            .collect();
        // Clients already told to go free their buffers soon: count them as gone.
        let mut total: usize = held
            .iter()
            .filter(|(_, _, c)| !c.kill.is_cancelled())
            .map(|(b, _, _)| b)
            .sum();
        // Largest first; among equals, the one idle longest (a client stalled mid-request).
        held.sort_unstable_by_key(|(bytes, active, _)| (std::cmp::Reverse(*bytes), *active));
        for (bytes, _, client) in held {
            if total <= limit || bytes == 0 {
                break;
            }
            if client.kill.is_cancelled() {
                continue;
            }
            client.kill.cancel();
            total -= bytes;
            self.stats.clients_evicted.fetch_add(1, Relaxed);
            tracing::warn!(
                client = client.id,
                addr = %client.addr,
                buffer_bytes = bytes,
                limit,
                "client buffers over maxmemory-clients; disconnecting the largest first"
            );
        }
    }

    /// Removes a closed connection.
    pub fn unregister_client(&self, id: u64) {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Returns the number of connected clients.
    pub fn client_count(&self) -> usize {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Returns every connected client, by id.
    pub fn clients(&self) -> Vec<Arc<ClientInfo>> {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Returns the total number of commands processed.
    pub fn commands_processed(&self) -> u64 {
        self.command_stats
            .iter()
            .map(|c| c.calls.load(Relaxed))
            .sum()
    }
}

/// The state of one connection.
#[derive(Debug)]
pub struct Session {
    /// The connection's shared info (id, addresses, names).
    pub info: Arc<ClientInfo>,
    /// Protocol version chosen with `HELLO`.
    pub protocol: Protocol,
    /// Set by `QUIT`: close after sending the reply.
    pub quit: bool,
    /// Set by `READONLY`: reads may be served by a replica.
    pub readonly: bool,
    /// Set by `ASKING` for the next command only.
    pub asking: bool,
    rng: u64,
}

impl Session {
    /// Returns a fresh RESP2 session.
    pub fn new(info: Arc<ClientInfo>) -> Self {
        let rng = info.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        Self {
            info,
            protocol: Protocol::Resp2,
            quit: false,
            readonly: false,
            asking: false,
            rng,
        }
    }

    /// Sets the protocol version.
    pub fn set_protocol(&mut self, protocol: Protocol) {
        self.protocol = protocol;
        self.info.protocol.store(protocol.version() as u8, Relaxed);
    }

    /// Returns a pseudo-random number (xorshift; for `RANDOMKEY`).
    pub fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }
}

/// Returns the resident set size of this process in bytes (Linux; 0 elsewhere).
pub fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;

    fn client(node: &Node, port: u16) -> Arc<ClientInfo> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        node.register_client(addr, addr).expect("room for a client")
    }

    #[test]
    fn over_the_client_budget_the_largest_buffers_go_first_issue_13() {
        let node = crate::invariants::node();
        node.settings.max_client_memory_bytes.store(1000, Relaxed);
        let small = client(&node, 1);
        let big = client(&node, 2);
        let bigger = client(&node, 3);
        node.account_client_buffers(&small, 100);
        node.account_client_buffers(&big, 500);
        assert_eq!(
            node.stats.clients_evicted.load(Relaxed),
            0,
            "600 of 1000 fit"
        );
        node.account_client_buffers(&bigger, 700);
        // 1,300 > 1,000: evicting the 700 brings the rest (600) under the budget.
        assert!(bigger.kill.is_cancelled());
        assert!(!big.kill.is_cancelled() && !small.kill.is_cancelled());
        assert_eq!(node.stats.clients_evicted.load(Relaxed), 1);
        // The evicted connection reports its buffers gone when it closes.
        node.account_client_buffers(&bigger, 0);
        assert_eq!(node.stats.client_buffer_bytes.load(Relaxed), 600);
        // Growing within the budget evicts nobody; 0 turns the budget off.
        node.account_client_buffers(&small, 400);
        assert_eq!(node.stats.clients_evicted.load(Relaxed), 1);
        node.settings.max_client_memory_bytes.store(0, Relaxed);
        node.account_client_buffers(&small, 1 << 30);
        assert!(!small.kill.is_cancelled());
    }
}
