//! Real `ringcache` node processes on chosen loopback addresses, and the faults a process can
//! suffer: `kill -9`, `SIGSTOP` and `SIGCONT`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::resp::{call_once, Reply};

/// How long an inspection command may take before the node counts as unresponsive.
const INSPECT_TIMEOUT: Duration = Duration::from_millis(500);

/// `N` distinct free ports on `ip`: the listeners stay open until all are chosen, so the
/// system can't hand out the same port twice (a node binding its RESP and admin listeners to
/// one port fails to start).
pub fn free_ports<const N: usize>(ip: &str) -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| TcpListener::bind((ip, 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut ports = [0; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// One node process, its addresses and its data directory (which survives restarts, so a
/// restarted node keeps its identity).
pub struct Node {
    /// The node's address (every listener binds it).
    pub ip: String,
    /// The RESP port.
    pub port: u16,
    /// The cluster bus port.
    pub bus: u16,
    /// The memcached port.
    pub memcache: u16,
    /// The admin HTTP port (`/metrics`, `/healthz`).
    pub admin: u16,
    dir: PathBuf,
    bin: PathBuf,
    /// More `ringcache server` arguments.
    extra: Vec<String>,
    child: Option<Child>,
    paused: bool,
}

impl Node {
    /// A node on `ip` with fresh ports, keeping its files under `root` (not started yet).
    pub fn new(bin: &Path, ip: &str, root: &Path) -> Result<Node> {
        let [port, bus, memcache, admin] = free_ports(ip)?;
        Ok(Node {
            ip: ip.to_string(),
            port,
            bus,
            memcache,
            admin,
            dir: root.join(format!("{ip}-{port}")),
            bin: bin.to_path_buf(),
            extra: Vec::new(),
            child: None,
            paused: false,
        })
    }

    /// Starts the process (its log goes to `node.log` in its directory) and waits for its port.
    pub fn start(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))?;
        let child = Command::new(&self.bin)
            .arg("server")
            .args(["--cluster-enabled", "--bind", &self.ip])
            .args(["--admin-port", &self.admin.to_string()])
            .args(["--log", "warn"])
            .args(["--port", &self.port.to_string()])
            .args(["--cluster-port", &self.bus.to_string()])
            .args(["--memcache-port", &self.memcache.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", self.bin.display()))?;
        self.child = Some(child);
        self.paused = false;
        let started = Instant::now();
        while TcpStream::connect(self.addr()).is_err() {
            if started.elapsed() > Duration::from_secs(10) {
                bail!("node {} did not start", self.addr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// `kill -9`: the process dies at once, with whatever it had not replicated.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.paused = false;
    }

    fn signal(&self, signal: &str) -> Result<()> {
        let Some(child) = &self.child else {
            bail!("node {} is not running", self.addr());
        };
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill {signal} failed for {}", self.addr());
        }
        Ok(())
    }

    /// `SIGTERM`, as an orchestrator stops a node (a primary hands its slots to a replica
    /// first), and waits up to `timeout` for the process to exit (then kills it and fails).
    /// Returns how long it took.
    pub fn terminate(&mut self, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        self.signal("-TERM")?;
        loop {
            let Some(child) = self.child.as_mut() else {
                bail!("node {} is not running", self.addr());
            };
            if child.try_wait()?.is_some() {
                self.child = None;
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                self.kill();
                bail!("{} still ran {timeout:?} after SIGTERM", self.addr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `SIGSTOP`: the process freezes, its sockets stay open (connections hang, not refuse).
    pub fn pause(&mut self) -> Result<()> {
        self.signal("-STOP")?;
        self.paused = true;
        Ok(())
    }

    /// `SIGCONT` after [`Node::pause`].
    pub fn resume(&mut self) -> Result<()> {
        self.signal("-CONT")?;
        self.paused = false;
        Ok(())
    }

    /// Whether the process runs (paused or not).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The RESP address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.ip.parse().expect("node ip"), self.port)
    }

    /// The memcached address.
    pub fn memcache_addr(&self) -> SocketAddr {
        SocketAddr::new(
            self.ip.parse().expect("node ips are addresses"),
            self.memcache,
        )
    }

    /// `ip:port@bus`, as `ringcache cluster create` takes it.
    pub fn cluster_addr(&self) -> String {
        format!("{}:{}@{}", self.ip, self.port, self.bus)
    }

    /// One command on a fresh connection.
    pub fn call(&self, args: &[&str]) -> Result<Reply> {
        Ok(call_once(self.addr(), args, INSPECT_TIMEOUT)?)
    }

    /// `CLUSTER INFO` as fields.
    pub fn cluster_info(&self) -> Result<BTreeMap<String, String>> {
        let reply = self.call(&["CLUSTER", "INFO"])?;
        let text = reply.text().context("CLUSTER INFO reply")?;
        Ok(fields(&text))
    }

    /// `INFO replication` as fields.
    pub fn replication_info(&self) -> Result<BTreeMap<String, String>> {
        let reply = self.call(&["INFO", "replication"])?;
        let text = reply.text().context("INFO reply")?;
        Ok(fields(&text))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        // A panic in a node is a bug, whatever the test checked: fail the test that caused
        // it (unless it is failing already).
        if !std::thread::panicking() {
            let panics = panics_in_log(&self.dir.join("node.log"));
            assert!(
                panics.is_empty(),
                "node {} panicked:\n{}",
                self.addr(),
                panics.join("\n")
            );
        }
    }
}

/// The panics reported in every `*.log` file of `dir` (a `ringcache demo` dir holds one log
/// per node), as [`panics_in_log`] finds them.
pub fn panics_in_dir(dir: &Path) -> Vec<String> {
    let logs = std::fs::read_dir(dir).into_iter().flatten().flatten();
    logs.map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .flat_map(|p| panics_in_log(&p))
        .collect()
}

/// The lines of a node's log that report a panic (the standard hook's `panicked at`), each
/// with the line after it (the message).
pub fn panics_in_log(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("panicked at"))
        .map(|(i, l)| format!("{l}\n{}", lines.get(i + 1).unwrap_or(&"")))
        .collect()
}

fn fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub struct NodeLine {
    /// The node id.
    pub id: String,
    /// `ip:port`.
    pub addr: String,
    /// Whether it serves slots as a primary.
    pub primary: bool,
    /// Its primary's id, for a replica.
    pub primary_id: Option<String>,
    /// The slot ranges it serves, for a primary.
    pub ranges: Vec<(u16, u16)>,
}

/// The cluster as `CLUSTER NODES` on one node shows it.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The epoch of the view.
    pub epoch: u64,
    /// Every member.
    pub nodes: Vec<NodeLine>,
    /// The Raft leader's id.
    pub leader: String,
}

impl Topology {
    /// The primary serving `slot`.
    pub fn owner(&self, slot: u16) -> Option<&NodeLine> {
        self.nodes
            .iter()
            .find(|n| n.primary && n.ranges.iter().any(|&(a, b)| a <= slot && slot <= b))
    }

    /// The replicas of the primary `id`.
    pub fn replicas_of(&self, id: &str) -> Vec<&NodeLine> {
        self.nodes
            .iter()
            .filter(|n| n.primary_id.as_deref() == Some(id))
            .collect()
    }

    /// The member with this address.
    pub fn by_addr(&self, addr: SocketAddr) -> Option<&NodeLine> {
        let addr = addr.to_string();
        self.nodes.iter().find(|n| n.addr == addr)
    }
}

fn parse_nodes(text: &str, epoch: u64, leader: String) -> Topology {
    let mut nodes = Vec::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        if parts.len() < 8 {
            continue;
        }
        let addr = parts[1].split('@').next().unwrap_or_default().to_string();
        let primary = parts[2].contains("master");
        let ranges = parts[8..]
            .iter()
            .filter_map(|r| match r.split_once('-') {
                Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                None => r.parse().ok().map(|s| (s, s)),
            })
            .collect();
        nodes.push(NodeLine {
            id: parts[0].to_string(),
            addr,
            primary,
            primary_id: (parts[3] != "-").then(|| parts[3].to_string()),
            ranges,
        });
    }
    Topology {
        epoch,
        nodes,
        leader,
    }
}

/// A cluster of node processes.
pub struct Cluster {
    /// The nodes, in address order.
    pub nodes: Vec<Node>,
    bin: PathBuf,
    /// More `ringcache server` arguments for every node.
    extra: Vec<String>,
    /// Where the nodes keep their files.
    pub root: PathBuf,
}

impl Cluster {
    /// Starts one node per address and forms a cluster of them with `replicas` replicas per
    /// shard (`ringcache cluster create`).
    pub fn start(bin: &Path, ips: &[String], replicas: usize, name: &str) -> Result<Cluster> {
        Cluster::start_with(bin, ips, replicas, name, &[])
    }

    /// As [`Cluster::start`], with more `ringcache server` arguments for every node.
    pub fn start_with(
        bin: &Path,
        ips: &[String],
        replicas: usize,
        name: &str,
        extra: &[&str],
    ) -> Result<Cluster> {
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        let root = std::env::temp_dir().join(format!("ringcache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut nodes = Vec::new();
        for ip in ips {
            let mut node = Node::new(bin, ip, &root)?;
            node.extra = extra.clone();
            node.start()?;
            nodes.push(node);
        }
        let out = Command::new(bin)
            .args(["cluster", "create", "--replicas", &replicas.to_string()])
            .args(nodes.iter().map(Node::cluster_addr))
            .output()?;
        if !out.status.success() {
            bail!(
                "cluster create failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let cluster = Cluster {
            nodes,
            bin: bin.to_path_buf(),
            extra,
            root,
        };
        cluster.wait_healthy(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// Starts a node on `ip` that is not in the cluster yet (for `cluster add-node`); its
    /// index.
    pub fn start_node(&mut self, ip: &str) -> Result<usize> {
        let mut node = Node::new(&self.bin, ip, &self.root)?;
        node.extra = self.extra.clone();
        node.start()?;
        self.nodes.push(node);
        Ok(self.nodes.len() - 1)
    }

    /// Stops a node that has left the cluster and forgets it.
    pub fn forget_node(&mut self, index: usize) {
        let mut node = self.nodes.remove(index);
        node.kill();
    }

    /// Runs `ringcache cluster <args>`; its output, or why it failed.
    pub fn admin(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bin).arg("cluster").args(args).output()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!(
                "ringcache cluster {}: {}{}",
                args.join(" "),
                text,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(text)
    }

    /// The binary the nodes run.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The RESP addresses of every node.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(Node::addr).collect()
    }

    /// The memcached addresses of every node.
    pub fn memcache_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(Node::memcache_addr).collect()
    }

    /// The freshest view among the nodes that answer (highest epoch).
    pub fn topology(&self) -> Result<Topology> {
        let mut best: Option<Topology> = None;
        for node in self.nodes.iter().filter(|n| n.is_running() && !n.paused) {
            let Ok(info) = node.cluster_info() else {
                continue;
            };
            let epoch = info
                .get("cluster_current_epoch")
                .and_then(|e| e.parse().ok())
                .unwrap_or(0);
            if best.as_ref().is_some_and(|b| b.epoch >= epoch) {
                continue;
            }
            let Ok(reply) = node.call(&["CLUSTER", "NODES"]) else {
                continue;
            };
            let Some(text) = reply.text() else {
                continue;
            };
            let leader = info.get("cluster_raft_leader").cloned().unwrap_or_default();
            best = Some(parse_nodes(&text, epoch, leader));
        }
        best.context("no node answered CLUSTER NODES")
    }

    /// The index of the node with this address.
    pub fn index_of(&self, addr: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr().to_string() == addr)
    }

    /// Whether every node runs, answers, agrees on the epoch and the Raft leader, serves all
    /// slots, and every replica has synced with its primary. `Err` says what is missing.
    pub fn healthy(&self) -> Result<()> {
        let mut epochs = Vec::new();
        let mut leaders = Vec::new();
        for node in &self.nodes {
            if !node.is_running() || node.paused {
                bail!("{} is down", node.addr());
            }
            let info = node.cluster_info()?;
            if info.get("cluster_state").map(String::as_str) != Some("ok") {
                bail!(
                    "{} has cluster_state {:?}",
                    node.addr(),
                    info.get("cluster_state")
                );
            }
            epochs.push(
                info.get("cluster_current_epoch")
                    .cloned()
                    .unwrap_or_default(),
            );
            leaders.push(info.get("cluster_raft_leader").cloned().unwrap_or_default());
        }
        epochs.dedup();
        leaders.dedup();
        if epochs.len() != 1 || leaders.len() != 1 || leaders[0].is_empty() {
            bail!("nodes disagree: epochs {epochs:?}, leaders {leaders:?}");
        }
        let topology = self.topology()?;
        for line in topology.nodes.iter().filter(|n| !n.primary) {
            let i = self
                .index_of(&line.addr)
                .with_context(|| format!("unknown member {}", line.addr))?;
            let repl = self.nodes[i].replication_info()?;
            let synced = repl.get("master_link_status").map(String::as_str) == Some("up")
                && repl.get("master_sync_in_progress").map(String::as_str) == Some("0");
            if !synced {
                bail!("replica {} not in sync yet", line.addr);
            }
        }
        Ok(())
    }

    /// Waits until [`Cluster::healthy`].
    pub fn wait_healthy(&self, timeout: Duration) -> Result<Duration> {
        let started = Instant::now();
        loop {
            match self.healthy() {
                Ok(()) => return Ok(started.elapsed()),
                Err(why) if started.elapsed() > timeout => {
                    bail!("cluster not healthy after {timeout:?}: {why}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        if std::thread::panicking() {
            return; // keep the nodes' logs of a failed test
        }
        let panics: Vec<String> = self
            .nodes
            .iter()
            .flat_map(|n| panics_in_log(&n.dir.join("node.log")))
            .collect();
        assert!(
            panics.is_empty(),
            "a node panicked (logs kept in {}):\n{}",
            self.root.display(),
            panics.join("\n")
        );
        if std::env::var_os("RINGCACHE_KEEP_FILES").is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}
