//! A ringcache node: listeners, connection tasks, configuration, metrics and shutdown.
//!
//! Goals: serve the RESP protocol over the shared store with per-connection pipelining,
//! bounded memory per client and graceful shutdown; expose `/metrics` and `/healthz`.
//!
//! Non-goals: command semantics (the `command` crate), protocol bytes (`resp`), storage
//! (`store`).
//!
//! ```text
//!  tokio runtime (N worker threads)
//!  ├── accept loop (RESP) ──────> one task per connection ──> command::execute ─────┐
//!  ├── accept loop (memcached) ─> one task per connection ──> command::memcached ───┴> store
//!  ├── expiry task: every 100 ms, reclaim due keys, ≤ 25 ms of CPU per tick
//!  ├── admin HTTP (axum): /metrics, /healthz
//!  └── shutdown: SIGTERM/SIGINT cancel a token; listeners stop, connections finish the
//!      batch in hand and close, the process exits once they are gone (or after 5 s)
//! ```
//!
//! Modules:
//! - [`config`]: flags, environment, TOML file, defaults.
//! - [`connection`]: the per-connection read/parse/execute/write loop.
//! - [`metrics`] and [`admin`]: Prometheus collector and the HTTP listener.
//! - [`cluster`], [`cluster_cmd`], [`replication`], [`lag`], [`pause`]: cluster mode: routing
//!   and forwarding, `CLUSTER`, the replication stream, a replica's lag in time, the write
//!   pause of a manual failover.

pub mod admin;
pub mod cluster;
pub mod cluster_cmd;
pub mod config;
pub mod connection;
pub mod dashboard;
pub mod lag;
pub mod metrics;
pub mod migration;
pub mod panics;
pub mod pause;
pub mod replication;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use command::node::NodeIdentity;
use command::{Node, NodeSettings};
use store::{Store, StoreConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Config, ServerArgs};

/// How long shutdown waits for connections to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How long a stopping primary may take to hand its slots to a replica (a graceful failover
/// takes well under a second; Kubernetes allows 30 s by default before it kills).
pub const HANDOVER_TIMEOUT: Duration = Duration::from_secs(15);
/// Period of the active expiry cycle.
const EXPIRE_PERIOD: Duration = Duration::from_millis(100);
/// CPU budget of one expiry tick.
const EXPIRE_BUDGET: Duration = Duration::from_millis(25);
/// Keys reclaimed per shard per lock hold, so a mass expiry never blocks a shard for long.
const EXPIRE_BATCH: usize = 256;

/// A started node.
#[derive(Debug)]
pub struct RunningServer {
    /// The bound RESP address.
    pub resp_addr: SocketAddr,
    /// The bound memcached address, if enabled.
    pub memcache_addr: Option<SocketAddr>,
    /// The bound forwarding RESP address, if enabled (cluster mode).
    pub forward_addr: Option<SocketAddr>,
    /// The cluster glue, in cluster mode.
    pub cluster: Option<Arc<cluster::Glue>>,
    /// The bound admin HTTP address, if enabled.
    pub admin_addr: Option<SocketAddr>,
    /// The node's shared state.
    pub node: Arc<Node>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl RunningServer {
    /// Before a cluster node stops: a primary with replicas hands its slots to one of them
    /// (a graceful manual failover: no acknowledged write is lost) and returns once the
    /// cluster has committed it, so clients move to the new primary before this one goes.
    /// Gives up after [`HANDOVER_TIMEOUT`]; then the node stops anyway and the usual failure
    /// detection fails it over.
    pub async fn hand_over(&self) {
        let Some(glue) = &self.cluster else {
            return;
        };
        let started = Instant::now();
        match glue.control().hand_over(HANDOVER_TIMEOUT).await {
            Ok(false) => {}
            Ok(true) => tracing::info!(
                took_ms = started.elapsed().as_millis() as u64,
                "handed this primary's slots to a replica"
            ),
            Err(why) => tracing::warn!(
                why,
                "could not hand the slots to a replica; stopping anyway"
            ),
        }
    }

    /// Asks every task to stop.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until every task has stopped (after [`RunningServer::shutdown`]), at most `grace`.
    /// Returns false if some were still running.
    pub async fn wait(&self, grace: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}

fn build_node(config: &Config, port: u16, memcache_port: u16) -> Node {
    let store = Store::new(StoreConfig {
        shards: config.shards,
        max_memory_bytes: config.max_memory_bytes,
        policy: config.policy,
        max_value_bytes: config.max_value_bytes,
    });
    let settings = NodeSettings {
        max_clients: AtomicUsize::new(config.max_clients),
        idle_timeout_secs: AtomicU64::new(config.idle_timeout_secs),
        proto_max_bulk_len: AtomicUsize::new(config.proto_max_bulk_len),
        max_request_bytes: AtomicUsize::new(config.max_request_bytes),
        client_output_limit_bytes: AtomicUsize::new(config.client_output_limit_bytes),
        max_client_memory_bytes: AtomicUsize::new(config.max_client_memory_bytes),
    };
    let identity = NodeIdentity {
        bind: config.bind.to_string(),
        port,
        config_file: config.config_file.as_ref().map(|p| p.display().to_string()),
        io_threads: config.threads,
        memcache_port,
    };
    Node::new(store, settings, identity)
}

/// Binds a client listener with `tcp-backlog` as its queue of pending connections (tokio's
/// own bind uses 1024 and Rust's standard library 128; a storm of connects beyond the queue
/// waits for SYN retries, a second or more each). The kernel caps the queue at
/// `net.core.somaxconn`.
fn bind_client_listener(config: &Config, port: u16, what: &str) -> anyhow::Result<TcpListener> {
    let addr = SocketAddr::new(config.bind, port);
    let bind = || -> std::io::Result<TcpListener> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(i32::try_from(config.tcp_backlog).unwrap_or(i32::MAX))?;
        TcpListener::from_std(socket.into())
    };
    bind().with_context(|| format!("binding {what} listener on {addr}"))
}

/// Raises the soft limit on open files to fit `maxclients` plus a reserve for the node's own
/// files and cluster connections (as Redis does at start), up to the hard limit. Where the
/// hard limit is lower, lowers maxclients to what fits and says so. Returns the maxclients in
/// force.
pub fn fit_open_files(max_clients: usize) -> usize {
    /// Files the node needs besides clients: listeners, logs, the bus, Raft, admin HTTP.
    const RESERVE: u64 = 64;
    let wanted = max_clients as u64 + RESERVE;
    let Ok((soft, hard)) = rlimit::Resource::NOFILE.get() else {
        return max_clients;
    };
    if soft >= wanted {
        return max_clients;
    }
    let target = wanted.min(hard);
    match rlimit::Resource::NOFILE.set(target, hard) {
        Ok(()) if target >= wanted => {
            tracing::info!(
                from = soft,
                to = target,
                "raised the open files limit for maxclients"
            );
            max_clients
        }
        result => {
            let have = if result.is_ok() { target } else { soft };
            let fit = have.saturating_sub(RESERVE).max(1) as usize;
            tracing::warn!(
                maxclients = max_clients,
                open_files_limit = have,
                lowered_to = fit,
                "the open files limit can't fit maxclients; lowering maxclients \
                 (raise the hard limit, e.g. ulimit -n or LimitNOFILE=)"
            );
            fit
        }
    }
}

/// Binds the listeners and starts every task of a node on the current runtime.
pub async fn start(mut config: Config) -> anyhow::Result<RunningServer> {
    panics::install();
    config.max_clients = fit_open_files(config.max_clients);
    let listener = bind_client_listener(&config, config.port, "RESP")?;
    let resp_addr = listener.local_addr()?;
    let memcache_listener = match config.memcache_port {
        Some(port) => Some(bind_client_listener(&config, port, "memcached")?),
        None => None,
    };
    let memcache_addr = memcache_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let node = Arc::new(build_node(
        &config,
        resp_addr.port(),
        memcache_addr.map_or(0, |a| a.port()),
    ));
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();

    let health = Arc::new(admin::Health {
        cluster_mode: config.cluster.is_some(),
        ..Default::default()
    });
    let admin_addr = match config.admin_port {
        Some(port) => {
            let admin = TcpListener::bind((config.bind, port))
                .await
                .with_context(|| format!("binding admin listener on {}:{port}", config.bind))?;
            let addr = admin.local_addr()?;
            let router = admin::router(
                Arc::new(metrics::registry(node.clone())),
                health.clone(),
                node.clone(),
            );
            let token = shutdown.clone();
            tracker.spawn(async move {
                let served = axum::serve(admin, router)
                    .with_graceful_shutdown(token.cancelled_owned())
                    .await;
                if let Err(err) = served {
                    tracing::error!(%err, "admin listener failed");
                }
            });
            Some(addr)
        }
        None => None,
    };

    let (glue, forward_addr) = match &config.cluster {
        Some(cc) => {
            let (glue, forward) = start_cluster(
                &config,
                cc,
                &node,
                resp_addr,
                memcache_addr,
                admin_addr,
                &shutdown,
            )
            .await?;
            let _ = health.cluster.set(glue.clone());
            (Some(glue), forward)
        }
        None => (None, None),
    };

    tracker.spawn(expire_loop(node.clone(), shutdown.clone()));
    let write_timeout = Duration::from_secs(config.client_write_timeout_secs.max(1));
    let mut listeners = vec![(listener, Wire::Resp)];
    if let Some(listener) = memcache_listener {
        listeners.push((listener, Wire::Memcache));
    }
    let forward_bound = match forward_addr {
        Some(listener) => {
            let addr = listener.local_addr()?;
            listeners.push((listener, Wire::Forward));
            Some(addr)
        }
        None => None,
    };
    let keepalive = (config.tcp_keepalive_secs > 0).then(|| {
        let idle = Duration::from_secs(config.tcp_keepalive_secs);
        // As Redis: probe every idle/3, give up after 3 unanswered probes.
        socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval((idle / 3).max(Duration::from_secs(1)))
            .with_retries(3)
    });
    for (listener, wire) in listeners {
        tracker.spawn(accept_loop(
            listener,
            wire,
            node.clone(),
            glue.clone(),
            keepalive.clone(),
            write_timeout,
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    tracing::info!(%resp_addr, ?memcache_addr, ?admin_addr, maxmemory = config.max_memory_bytes, shards = node.store.shard_count(), "ringcache node ready");
    Ok(RunningServer {
        resp_addr,
        memcache_addr,
        admin_addr,
        forward_addr: forward_bound,
        cluster: glue,
        node,
        shutdown,
        tracker,
    })
}

/// Starts the control plane of a cluster node and connects it to the data plane; returns the
/// glue and the forwarding listener, if one is configured.
async fn start_cluster(
    config: &Config,
    cc: &config::ClusterConfig,
    node: &Arc<Node>,
    resp_addr: SocketAddr,
    memcache_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Arc<cluster::Glue>, Option<TcpListener>)> {
    let forward = match cc.forward_port {
        Some(port) => Some(bind_client_listener(config, port, "forwarding")?),
        None => None,
    };
    let bus_port = match cc.bus_port {
        Some(p) => p,
        None => resp_addr
            .port()
            .checked_add(10000)
            .context("RESP port + 10000 is not a port: set --cluster-port")?,
    };
    let host = match &cc.announce_ip {
        Some(ip) => ip.clone(),
        None if config.bind.is_unspecified() => "127.0.0.1".to_owned(),
        None => config.bind.to_string(),
    };
    let dir = cc
        .dir
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from(format!("ringcache-{}", resp_addr.port())));
    let member = ::cluster::Member {
        id: 0,
        host,
        port: resp_addr.port(),
        bus_port,
        memcache_port: memcache_addr.map(|a| a.port()),
        forward_port: forward
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port()),
        admin_port: admin_addr.map(|a| a.port()),
        zone: cc.zone.clone(),
    };
    // The control plane (Raft, the leader's pings and leases, the bus server) runs on a
    // runtime of its own, on its own thread: client work saturating the data plane's workers
    // can't hold back a heartbeat or a lease renewal, so a busy node isn't taken for a dead
    // one. The runtime lives as long as the process.
    let control_runtime: &'static tokio::runtime::Runtime = Box::leak(Box::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ringcache-control")
            .enable_all()
            .build()
            .context("starting the control plane's runtime")?,
    ));
    let control = control_runtime
        .spawn(::cluster::ClusterNode::start(
            ::cluster::Config {
                dir: Some(dir.clone()),
                bus_listen: SocketAddr::new(config.bind, bus_port),
                member,
                bind_ip: Some(config.bind).filter(|ip| !ip.is_unspecified()),
            },
            shutdown.clone(),
        ))
        .await
        .context("the control plane's runtime stopped")?
        .with_context(|| format!("starting the cluster bus (data dir {})", dir.display()))?;
    Ok((
        cluster::Glue::install(
            node,
            control,
            cc.repl_backlog_bytes,
            cc.migration_rate_bytes,
        ),
        forward,
    ))
}

/// Which protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    Resp,
    Memcache,
    /// RESP that forwards keys owned elsewhere (cluster mode).
    Forward,
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    listener: TcpListener,
    wire: Wire,
    node: Arc<Node>,
    glue: Option<Arc<cluster::Glue>>,
    keepalive: Option<socket2::TcpKeepalive>,
    write_timeout: Duration,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (mut stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Some(keepalive) = &keepalive {
            // A client that vanished without a FIN (a crashed host, a dropped NAT entry) is
            // found and closed instead of holding its slot under maxclients forever.
            let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(keepalive);
        }
        let local = stream.local_addr().unwrap_or(peer);
        let Some(info) = node.register_client(peer, local) else {
            tracker.spawn(async move {
                use tokio::io::AsyncWriteExt;
                let refusal: &[u8] = match wire {
                    Wire::Resp | Wire::Forward => b"-ERR max number of clients reached\r\n",
                    Wire::Memcache => b"SERVER_ERROR Too many open connections\r\n",
                };
                let _ = stream.write_all(refusal).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let node = node.clone();
        let token = shutdown.clone();
        let glue = glue.clone();
        tracker.spawn(async move {
            let id = info.id;
            let close = match (wire, glue) {
                (Wire::Forward, Some(glue)) => {
                    let protocol = connection::Resp::forwarding(&node, info, glue);
                    connection::serve(node.clone(), stream, protocol, write_timeout, token).await
                }
                (Wire::Resp, Some(glue)) => {
                    let protocol = connection::Resp::clustered(&node, info, glue);
                    connection::serve(node.clone(), stream, protocol, write_timeout, token).await
                }
                (Wire::Resp | Wire::Forward, _) => {
                    let protocol = connection::Resp::new(&node, info);
                    connection::serve(node.clone(), stream, protocol, write_timeout, token).await
                }
                (Wire::Memcache, glue) => {
                    let protocol = connection::Memcache::new(&node, info, glue);
                    connection::serve(node.clone(), stream, protocol, write_timeout, token).await
                }
            };
            tracing::debug!(client = id, ?close, "connection closed");
            node.unregister_client(id);
        });
    }
}

/// The active expiry cycle: every tick, reclaim due keys in bounded batches per shard until
/// none are due or the tick's CPU budget is spent.
async fn expire_loop(node: Arc<Node>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(EXPIRE_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        node.clock.resync();
        let now_ms = node.clock.unix_ms();
        // A delayed memcached `flush_all` takes effect here.
        let flush_at = node
            .mc_stats
            .flush_at_ms
            .load(std::sync::atomic::Ordering::Relaxed);
        if flush_at != 0 && flush_at <= now_ms {
            node.mc_stats
                .flush_at_ms
                .store(0, std::sync::atomic::Ordering::Relaxed);
            node.store.clear();
        }
        let started = Instant::now();
        loop {
            let (_, more) = node.store.expire_cycle(node.clock.unix_ms(), EXPIRE_BATCH);
            if !more || started.elapsed() >= EXPIRE_BUDGET {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Runs a node until SIGTERM or SIGINT, then shuts it down gracefully.
pub fn run(config: Config) -> anyhow::Result<()> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(&config.log).context("invalid log filter")?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.threads)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let server = start(config).await?;
        // As PostgreSQL's smart and fast shutdowns: SIGTERM (what orchestrators send) hands a
        // primary's slots to a replica first; SIGINT (Ctrl-C) stops at once.
        let handing_over = wait_for_signal().await?;
        tracing::info!("shutting down");
        if handing_over {
            server.hand_over().await;
        }
        server.shutdown();
        if !server.wait(SHUTDOWN_GRACE).await {
            tracing::warn!("some connections did not close within the grace period");
        }
        tracing::info!("bye");
        Ok(())
    })
}

/// Waits for SIGTERM (returns true) or SIGINT (false).
async fn wait_for_signal() -> anyhow::Result<bool> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => true,
        _ = int.recv() => false,
    })
}
