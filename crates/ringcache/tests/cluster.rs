//! A real 6-node cluster of `ringcache` processes on 127.0.0.2-7: created with
//! `ringcache cluster create`, driven by the `redis` crate's cluster client over every slot,
//! checked for exact redirects, any-node memcached, Raft leader loss, a restart that rejoins,
//! and a node of another cluster being refused. Smaller clusters on other addresses test
//! replication with repair (127.0.0.11-13) and `CLUSTER FAILOVER` (127.0.0.31-33).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The tests here time elections and failovers against fixed bounds: run them one at a time so
/// one test's nine processes don't slow the other's on a 2-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct Node {
    ip: String,
    port: u16,
    bus: u16,
    memcache: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn new(ip: &str, root: &std::path::Path) -> Node {
        let [port, bus, memcache] = testkit::node::free_ports(ip).expect("free ports");
        let node = Node {
            ip: ip.to_string(),
            port,
            bus,
            memcache,
            dir: root.join(format!("{ip}-{port}")),
            child: None,
        };
        node
    }

    /// The node's log (stderr), appended across restarts; checked for panics on drop.
    fn log(&self) -> std::fs::File {
        std::fs::create_dir_all(&self.dir).expect("node dir");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .expect("node log")
    }

    fn start(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_ringcache"))
            .arg("server")
            .args([
                "--cluster-enabled",
                "--bind",
                &self.ip,
                "--no-admin",
                "--log",
                "warn",
            ])
            .args(["--port", &self.port.to_string()])
            .args(["--cluster-port", &self.bus.to_string()])
            .args(["--memcache-port", &self.memcache.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(self.log())
            .spawn()
            .expect("spawn ringcache");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect((self.ip.as_str(), self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "node did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    fn cluster_addr(&self) -> String {
        format!("{}:{}@{}", self.ip, self.port, self.bus)
    }

    /// Sends raw RESP and returns the first reply line.
    fn raw(&self, request: &str) -> String {
        let mut s = TcpStream::connect((self.ip.as_str(), self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(request.as_bytes()).expect("write");
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn info_field(&self, field: &str) -> Option<String> {
        let mut s = TcpStream::connect((self.ip.as_str(), self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"CLUSTER INFO\r\n").ok()?;
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while !text.contains("cluster_raft_term") {
            let n = s.read(&mut buf).ok()?;
            if n == 0 {
                return None;
            }
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .map(|v| v.trim().to_string())
    }

    fn memcache(&self, request: &str, until: &str) -> String {
        let mut s = TcpStream::connect((self.ip.as_str(), self.memcache)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(request.as_bytes()).expect("write");
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while !text.ends_with(until) {
            let n = s.read(&mut buf).expect("read");
            assert!(n > 0, "closed after {text:?}");
            text.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        text
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let panics = testkit::node::panics_in_log(&self.dir.join("node.log"));
            assert!(
                panics.is_empty(),
                "node {} panicked:\n{}",
                self.port,
                panics.join("\n")
            );
        }
    }
}

fn create(nodes: &[&Node], replicas: usize) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .args(["cluster", "create", "--replicas", &replicas.to_string()])
        .args(nodes.iter().map(|n| n.cluster_addr()))
        .output()
        .expect("run cluster create")
}

/// One key per slot: `k{<tag>}` with the first tag found that hashes to the slot.
fn key_per_slot() -> Vec<String> {
    let mut keys = vec![String::new(); 16384];
    let mut missing = 16384;
    let mut i = 0u64;
    while missing > 0 {
        let tag = format!("t{i}");
        let slot = usize::from(store::key_slot(tag.as_bytes()));
        if keys[slot].is_empty() {
            keys[slot] = format!("k{{{tag}}}");
            missing -= 1;
        }
        i += 1;
    }
    keys
}

#[test]
fn a_six_node_cluster_serves_every_slot_redirects_exactly_and_survives_its_raft_leader() {
    let _serial = serial();
    let root = std::env::temp_dir().join(format!("ringcache-cluster-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut nodes: Vec<Node> = (2..=7)
        .map(|i| Node::new(&format!("127.0.0.{i}"), &root))
        .collect();
    for n in nodes.iter_mut() {
        n.start();
    }
    let out = create(&nodes.iter().collect::<Vec<_>>(), 1);
    assert!(
        out.status.success(),
        "cluster create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(table.matches("primary").count(), 3, "{table}");
    assert_eq!(table.matches("replica").count(), 3, "{table}");
    for n in &nodes {
        assert_eq!(
            n.info_field("cluster_state").as_deref(),
            Some("ok"),
            "{}",
            n.addr()
        );
    }

    // Every slot through the redis crate's cluster client: SET, GET, PEXPIRE/PTTL, DEL.
    let client = redis::cluster::ClusterClient::new(vec![format!("redis://{}", nodes[0].addr())])
        .expect("cluster client");
    let mut con = client.get_connection().expect("cluster connection");
    let keys = key_per_slot();
    for (slot, key) in keys.iter().enumerate() {
        let value = format!("v{slot}");
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(&value)
            .query(&mut con)
            .expect("set");
        let got: String = redis::cmd("GET").arg(key).query(&mut con).expect("get");
        assert_eq!(got, value);
        let set: i64 = redis::cmd("PEXPIRE")
            .arg(key)
            .arg(60_000)
            .query(&mut con)
            .expect("pexpire");
        assert_eq!(set, 1);
        let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut con).expect("pttl");
        assert!((1..=60_000).contains(&ttl), "slot {slot}: pttl {ttl}");
    }
    // Each key lives on its primary, and (replicated) on that primary's replica.
    let count = |role: &str| -> usize {
        nodes
            .iter()
            .filter(|n| {
                n.raw("INFO replication\r\n")
                    .contains(&format!("role:{role}"))
            })
            .map(|n| {
                let reply = n.raw("DBSIZE\r\n");
                reply
                    .trim_start_matches(':')
                    .trim()
                    .parse::<usize>()
                    .expect("dbsize")
            })
            .sum()
    };
    assert_eq!(count("master"), 16384, "each key once among the primaries");
    let replicated = Instant::now();
    while count("slave") != 16384 {
        assert!(
            replicated.elapsed() < Duration::from_secs(10),
            "replicas did not catch up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for key in keys.iter().step_by(7) {
        let deleted: i64 = redis::cmd("DEL").arg(key).query(&mut con).expect("del");
        assert_eq!(deleted, 1);
        let gone: Option<String> = redis::cmd("GET").arg(key).query(&mut con).expect("get");
        assert_eq!(gone, None);
    }

    // Exact redirects, as Redis Cluster words them.
    let foo_owner = nodes
        .iter()
        .find(|n| n.raw("GET foo\r\n").starts_with("$-1"))
        .expect("some node owns foo")
        .addr();
    for n in &nodes {
        let reply = n.raw("GET foo\r\n");
        if n.addr() != foo_owner {
            assert_eq!(reply, format!("-MOVED 12182 {foo_owner}\r\n"));
        }
        assert_eq!(
            n.raw("MGET foo bar\r\n"),
            "-CROSSSLOT Keys in request don't hash to the same slot\r\n"
        );
    }

    // memcached: a key written through any node is read through every other.
    for (i, n) in nodes.iter().enumerate() {
        let key = format!("mc{i}");
        let stored = n.memcache(&format!("set {key} 7 0 5\r\nhello\r\n"), "\r\n");
        assert_eq!(stored, "STORED\r\n");
        for other in &nodes {
            let got = other.memcache(&format!("get {key}\r\n"), "END\r\n");
            assert_eq!(
                got,
                format!("VALUE {key} 7 5\r\nhello\r\nEND\r\n"),
                "via {}",
                other.addr()
            );
        }
    }
    let multi = nodes[3].memcache("get mc0 mc1 mc2 mc3 mc4 mc5 nosuch\r\n", "END\r\n");
    assert_eq!(multi.matches("VALUE ").count(), 6, "{multi}");

    // Kill the Raft leader: the others elect a new one within 2 s and keep the topology.
    let leader_name = nodes[0].info_field("cluster_raft_leader").expect("leader");
    let leader = nodes
        .iter()
        .position(|n| n.raw("CLUSTER MYID\r\n").contains(&leader_name))
        .expect("leader is a node");
    let epoch: u64 = nodes[leader]
        .info_field("cluster_current_epoch")
        .and_then(|e| e.parse().ok())
        .expect("epoch");
    // The leader is also a primary (the first three nodes listed are the voters and the
    // primaries): a key it owns must become writable again once its replica takes over.
    let owned = |n: &Node| {
        keys.iter()
            .find(|k| !n.raw(&format!("GET {k}\r\n")).starts_with("-MOVED"))
            .cloned()
            .expect("a primary owns keys")
    };
    let writable = |nodes: &[Node], key: &str| {
        nodes
            .iter()
            .filter(|n| n.child.is_some())
            .any(|n| n.raw(&format!("SET {key} after-failover\r\n")) == "+OK\r\n")
    };
    let leader_key = owned(&nodes[leader]);
    nodes[leader].kill();
    let killed = Instant::now();
    let survivor = (leader + 1) % nodes.len();
    loop {
        let now = nodes[survivor].info_field("cluster_raft_leader");
        if now
            .as_deref()
            .is_some_and(|l| !l.is_empty() && l != leader_name)
        {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "no new leader within 2 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let elected = killed.elapsed();
    eprintln!("new Raft leader after {elected:?}");
    assert!(nodes[survivor]
        .raw("CLUSTER SLOTS\r\n")
        .starts_with("*3\r\n"));
    while !writable(&nodes, &leader_key) {
        assert!(
            killed.elapsed() < Duration::from_secs(4),
            "the dead leader's shard was not failed over"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("leader's shard writable again after {:?}", killed.elapsed());

    // The killed node restarts with its data dir: same identity, back in the cluster.
    nodes[leader].start();
    let restarted = Instant::now();
    loop {
        let n = &nodes[leader];
        if n.info_field("cluster_state").as_deref() == Some("ok")
            && n.info_field("cluster_raft_leader")
                .is_some_and(|l| !l.is_empty())
            && n.info_field("cluster_current_epoch")
                .and_then(|e| e.parse::<u64>().ok())
                .is_some_and(|e| e > epoch)
            && n.raw("INFO replication\r\n")
                .contains("master_link_status:up")
        {
            break;
        }
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "restarted node did not rejoin"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(nodes[leader].raw("CLUSTER MYID\r\n").contains(&leader_name));
    // It came back as a replica of its old shard, synced from the new primary.
    let synced = exchange(
        &nodes[leader].ip,
        nodes[leader].port,
        &format!("READONLY\r\nGET {leader_key}\r\n"),
    );
    assert!(synced.ends_with("after-failover\r\n"), "{synced}");

    // Kill a primary that is not the Raft leader: its replica takes over in about a second.
    let leader_now = nodes[survivor]
        .info_field("cluster_raft_leader")
        .expect("leader");
    let victim = nodes
        .iter()
        .position(|n| {
            n.raw("INFO replication\r\n").contains("role:master")
                && !n.raw("CLUSTER MYID\r\n").contains(&leader_now)
        })
        .expect("a primary that is not the leader");
    let victim_key = owned(&nodes[victim]);
    nodes[victim].kill();
    let killed = Instant::now();
    while !writable(&nodes, &victim_key) {
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "no failover within 2 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("primary failed over after {:?}", killed.elapsed());
    nodes[victim].start();

    // A node of another cluster is refused: it can't be made part of this one, and this
    // cluster's nodes won't talk to it.
    let mut stranger = Node::new("127.0.0.8", &root);
    stranger.start();
    let out = create(&[&stranger], 0);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = create(&[&nodes[0], &stranger], 0);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in cluster"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let other_id = std::sync::Arc::new(std::sync::Mutex::new(Some("not-this-cluster".to_string())));
    let client = cluster::bus::Client::new(
        format!("{}:{}", nodes[0].ip, nodes[0].bus),
        other_id,
        None,
        false,
    );
    let refused = rt.block_on(client.call(cluster::bus::Request::Status, Duration::from_secs(2)));
    assert!(
        matches!(refused, Err(cluster::bus::BusError::Refused { .. })),
        "{refused:?}"
    );
    drop(nodes);
    drop(stranger);
    let _ = std::fs::remove_dir_all(&root);
}

/// Sends inline commands on one connection, closes its writing side, and returns every reply.
fn exchange(ip: &str, port: u16, request: &str) -> String {
    let mut s = TcpStream::connect((ip, port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn a_replica_holds_its_primarys_writes_ttls_and_deletes_and_a_spare_replaces_it_when_it_dies() {
    let _serial = serial();
    let root = std::env::temp_dir().join(format!("ringcache-repl-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    // Three nodes, so Raft keeps its majority while the replica is down: one shard of a
    // primary and a replica, and a spare.
    let mut primary = Node::new("127.0.0.11", &root);
    let mut replica = Node::new("127.0.0.12", &root);
    let mut spare = Node::new("127.0.0.13", &root);
    primary.start();
    replica.start();
    spare.start();
    let out = create(&[&primary, &replica, &spare], 1);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Writes, TTLs and deletes on the primary; WAIT says the replica has them all.
    let mut request = String::new();
    for i in 0..2000 {
        request.push_str(&format!("SET key:{i} value:{i}\r\n"));
    }
    for i in 0..100 {
        request.push_str(&format!("PEXPIRE key:{i} 600000\r\n"));
    }
    for i in 1900..2000 {
        request.push_str(&format!("DEL key:{i}\r\n"));
    }
    request.push_str("WAIT 1 5000\r\n");
    let replies = exchange(&primary.ip, primary.port, &request);
    assert!(
        replies.ends_with(":1\r\n"),
        "WAIT: {}",
        &replies[replies.len().saturating_sub(40)..]
    );

    let check = |replica: &Node| {
        assert_eq!(replica.raw("DBSIZE\r\n"), ":1900\r\n");
        let reads = exchange(
            &replica.ip,
            replica.port,
            "READONLY\r\nGET key:5\r\nPTTL key:5\r\nGET key:1500\r\nGET key:1950\r\nSET key:1 x\r\n",
        );
        let lines: Vec<&str> = reads.split("\r\n").collect();
        assert_eq!(lines[0], "+OK");
        assert_eq!(&lines[1..3], ["$7", "value:5"]);
        let pttl: i64 = lines[3].trim_start_matches(':').parse().expect("pttl");
        assert!(
            (590_000..=600_000).contains(&pttl),
            "the TTL travels as an absolute time: {pttl}"
        );
        assert_eq!(&lines[4..6], ["$10", "value:1500"]);
        assert_eq!(lines[6], "$-1", "deleted on the primary, so gone here");
        assert!(
            lines[7].starts_with("-MOVED "),
            "a replica refuses writes: {}",
            lines[7]
        );
    };
    check(&replica);
    let info = replica.raw("INFO replication\r\n");
    assert!(
        info.contains("role:slave") && info.contains("master_link_status:up"),
        "{info}"
    );
    // The replica knows how long after the primary made each change it applied it. (Writes
    // made before its first sync came in the copy, with no time: 100 more, streamed.)
    let mut request = String::new();
    for i in 200..300 {
        request.push_str(&format!("SET key:{i} value:{i}\r\n"));
    }
    request.push_str("WAIT 1 5000\r\n");
    assert!(exchange(&primary.ip, primary.port, &request).ends_with(":1\r\n"));
    let info = replica.raw("INFO replication\r\n");
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {info}"))
    };
    let samples = field("master_lag_samples");
    assert!((100.0..=2300.0).contains(&samples), "{info}");
    let (p50, p99, max) = (
        field("master_lag_p50_ms"),
        field("master_lag_p99_ms"),
        field("master_lag_max_ms"),
    );
    assert!(p50 <= p99 && p99 <= max && max < 5000.0, "{info}");
    eprintln!("replica lag of {samples} changes: p50 {p50} ms, p99 {p99} ms, max {max} ms");

    // The replica crashes: the spare takes its seat, syncs, and has every write.
    replica.kill();
    let mut request = String::new();
    for i in 1000..1100 {
        request.push_str(&format!("SET key:{i} changed:{i}\r\n"));
    }
    exchange(&primary.ip, primary.port, &request);
    let killed = Instant::now();
    loop {
        let info = spare.raw("INFO replication\r\n");
        if info.contains("role:slave") && info.contains("master_link_status:up") {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "no spare took the seat: {info}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("replication factor restored after {:?}", killed.elapsed());
    assert_eq!(
        exchange(&primary.ip, primary.port, "WAIT 1 5000\r\n"),
        ":1\r\n"
    );
    check(&spare);
    let got = exchange(&spare.ip, spare.port, "READONLY\r\nGET key:1050\r\n");
    assert!(got.ends_with("changed:1050\r\n"), "{got}");
    // The old replica comes back, learns from the Raft log that it lost its seat, and is the
    // spare now.
    replica.start();
    let restarted = Instant::now();
    while !replica
        .raw("CLUSTER NODES\r\n")
        .contains("myself,master - ")
    {
        assert!(
            restarted.elapsed() < Duration::from_secs(10),
            "old replica did not become the spare"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(primary);
    drop(replica);
    drop(spare);
    let _ = std::fs::remove_dir_all(&root);
}

/// What the writer of the manual failover test saw.
#[derive(Default)]
struct WriterLog {
    /// `(when, node, key, value)` of every acknowledged `SET`.
    acked: Vec<(Instant, String, String, u64)>,
    /// Replies other than `+OK` and `-MOVED`.
    errors: Vec<String>,
    /// `-MOVED` redirects followed.
    redirects: usize,
}

/// Reads one reply line (a simple string, error or integer).
fn reply_line(reader: &mut std::io::BufReader<TcpStream>) -> std::io::Result<String> {
    use std::io::BufRead;
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end().to_string())
}

/// Writes `SET mf:{i % 64} i` for i = 1, 2, ... one at a time (each after the previous was
/// acknowledged) until `stop`, starting at `addr` and following `-MOVED`.
fn manual_failover_writer(
    addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> WriterLog {
    let mut log = WriterLog::default();
    let connect = |addr: &str| {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let reader = std::io::BufReader::new(s.try_clone().expect("clone"));
        (s, reader)
    };
    let mut at = addr;
    let (mut stream, mut reader) = connect(&at);
    let mut i = 0u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        i += 1;
        let key = format!("mf:{}", i % 64);
        loop {
            let value = i.to_string();
            let request = format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                key.len(),
                value.len()
            );
            stream.write_all(request.as_bytes()).expect("write");
            let reply = reply_line(&mut reader).expect("reply");
            if reply == "+OK" {
                log.acked.push((Instant::now(), at.clone(), key.clone(), i));
                break;
            }
            if let Some(rest) = reply.strip_prefix("-MOVED ") {
                log.redirects += 1;
                at = rest.split(' ').nth(1).expect("address").to_string();
                (stream, reader) = connect(&at);
                continue;
            }
            log.errors.push(reply);
            break;
        }
    }
    log
}

/// `CLUSTER NODES` of `node`, as (address, role, primary id) per node id.
fn roles(node: &Node) -> std::collections::BTreeMap<String, (String, String, String)> {
    let text = node.raw("CLUSTER NODES\r\n");
    text.lines()
        .filter(|l| l.contains(" connected"))
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let role = if f[2].contains("slave") {
                "slave"
            } else {
                "master"
            };
            let addr = f[1].split('@').next().unwrap_or_default().to_string();
            (f[0].to_string(), (addr, role.to_string(), f[3].to_string()))
        })
        .collect()
}

fn node_id(node: &Node) -> String {
    let reply = node.raw("CLUSTER MYID\r\n");
    reply.lines().nth(1).expect("id").to_string()
}

fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

#[test]
fn cluster_failover_swaps_a_replica_and_its_primary_without_losing_an_acknowledged_write() {
    let _serial = serial();
    let root = std::env::temp_dir().join(format!("ringcache-manual-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    // One shard (a primary and a replica) and a spare: three nodes keep a Raft majority while
    // one is down.
    let mut nodes: Vec<Node> = (31..=33)
        .map(|i| Node::new(&format!("127.0.0.{i}"), &root))
        .collect();
    for n in nodes.iter_mut() {
        n.start();
    }
    let out = create(&nodes.iter().collect::<Vec<_>>(), 1);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let role_of = |n: &Node| {
        let info = n.raw("INFO replication\r\n");
        if info.contains("role:slave") {
            "slave"
        } else if info.contains("connected_slaves:1") {
            "master"
        } else {
            "spare"
        }
    };
    wait_until("replica synced", Duration::from_secs(10), || {
        nodes.iter().any(|n| {
            n.raw("INFO replication\r\n")
                .contains("master_link_status:up")
        })
    });
    let primary = nodes
        .iter()
        .position(|n| role_of(n) == "master")
        .expect("primary");
    let replica = nodes
        .iter()
        .position(|n| role_of(n) == "slave")
        .expect("replica");
    let spare = 3 - primary - replica;
    let (primary_id, replica_id) = (node_id(&nodes[primary]), node_id(&nodes[replica]));

    // Refused where Redis refuses it.
    let to_replica = "-ERR You should send CLUSTER FAILOVER to a replica\r\n";
    assert_eq!(nodes[primary].raw("CLUSTER FAILOVER\r\n"), to_replica);
    assert_eq!(nodes[spare].raw("CLUSTER FAILOVER FORCE\r\n"), to_replica);
    assert_eq!(
        nodes[replica].raw("CLUSTER FAILOVER NOW\r\n"),
        "-ERR syntax error\r\n"
    );

    // Graceful: a writer goes on throughout; CLUSTER FAILOVER to the replica mid-stream.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (addr, stop) = (nodes[primary].addr(), stop.clone());
        std::thread::spawn(move || manual_failover_writer(addr, stop))
    };
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    assert_eq!(nodes[replica].raw("CLUSTER FAILOVER\r\n"), "+OK\r\n");
    let new_primary = nodes[replica].addr();
    wait_until(
        "roles swapped on every node",
        Duration::from_secs(5),
        || {
            nodes.iter().all(|n| {
                let r = roles(n);
                r.get(&replica_id)
                    .is_some_and(|(_, role, _)| role == "master")
                    && r.get(&primary_id)
                        .is_some_and(|(_, role, of)| role == "slave" && *of == replica_id)
            })
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let log = writer.join().expect("writer");
    assert!(
        log.errors.is_empty(),
        "errors besides -MOVED: {:?}",
        log.errors
    );
    let first_new = log
        .acked
        .iter()
        .find(|(t, at, _, _)| *t > asked && *at == new_primary)
        .expect("a write acknowledged by the new primary");
    let gap = log
        .acked
        .windows(2)
        .map(|w| w[1].0 - w[0].0)
        .max()
        .unwrap_or_default();
    eprintln!(
        "manual failover: {} writes acknowledged, {} redirects; first write on the new primary \
         {:?} after CLUSTER FAILOVER; longest gap between acknowledgements {gap:?}",
        log.acked.len(),
        log.redirects,
        first_new.0 - asked
    );
    assert!(log
        .acked
        .iter()
        .any(|(_, at, _, _)| *at == nodes[primary].addr()));
    // Every acknowledged value is on the new primary: the last one of each key is its value.
    let mut last = std::collections::BTreeMap::new();
    for (_, _, key, value) in &log.acked {
        last.insert(key.clone(), *value);
    }
    let reads = |n: &Node, readonly: bool| {
        let mut request = String::from(if readonly { "READONLY\r\n" } else { "" });
        for key in last.keys() {
            request.push_str(&format!("GET {key}\r\n"));
        }
        exchange(&n.ip, n.port, &request)
    };
    let mut expected = String::new();
    for value in last.values() {
        expected.push_str(&format!("${}\r\n{value}\r\n", value.to_string().len()));
    }
    assert_eq!(
        reads(&nodes[replica], false),
        expected,
        "the new primary lost writes"
    );
    // The old primary follows the new one and has caught up.
    wait_until("old primary synced", Duration::from_secs(5), || {
        let info = nodes[primary].raw("INFO replication\r\n");
        info.contains("role:slave")
            && info.contains(&format!("master_port:{}", nodes[replica].port))
            && info.contains("master_link_status:up")
    });
    assert_eq!(
        exchange(&nodes[replica].ip, nodes[replica].port, "WAIT 1 5000\r\n"),
        ":1\r\n"
    );
    assert_eq!(format!("+OK\r\n{expected}"), reads(&nodes[primary], true));
    assert_eq!(nodes[replica].raw("CLUSTER FAILOVER\r\n"), to_replica);

    // FORCE with the primary alive: no coordination, its leases run out, the roles swap.
    let (primary, replica) = (replica, primary);
    let (primary_id, replica_id) = (replica_id, primary_id);
    let asked = Instant::now();
    assert_eq!(nodes[replica].raw("CLUSTER FAILOVER FORCE\r\n"), "+OK\r\n");
    let took = wait_until("forced failover", Duration::from_secs(3), || {
        roles(&nodes[spare])
            .get(&replica_id)
            .is_some_and(|(_, role, _)| role == "master")
    });
    eprintln!("CLUSTER FAILOVER FORCE, primary alive: roles swapped after {took:?}");
    assert!(
        asked.elapsed() >= Duration::from_millis(400),
        "leases were waited out"
    );
    assert!(roles(&nodes[primary])
        .get(&primary_id)
        .is_some_and(|(_, role, of)| role == "slave" && *of == replica_id));

    // FORCE after kill -9 of the primary (TAKEOVER is the same). The graceful kind is refused
    // once the replica has seen its link go down, as in Redis.
    let (primary, replica) = (replica, primary);
    wait_until("replica synced", Duration::from_secs(5), || {
        nodes[replica]
            .raw("INFO replication\r\n")
            .contains("master_link_status:up")
    });
    nodes[primary].kill();
    let killed = Instant::now();
    wait_until("link down", Duration::from_secs(3), || {
        nodes[replica]
            .raw("INFO replication\r\n")
            .contains("master_link_status:down")
    });
    assert_eq!(
        nodes[replica].raw("CLUSTER FAILOVER\r\n"),
        "-ERR Master is down or failed, please use CLUSTER FAILOVER FORCE\r\n"
    );
    assert_eq!(
        nodes[replica].raw("CLUSTER FAILOVER TAKEOVER\r\n"),
        "+OK\r\n"
    );
    wait_until("writable after TAKEOVER", Duration::from_secs(3), || {
        nodes[replica].raw("SET after force\r\n") == "+OK\r\n"
    });
    eprintln!(
        "CLUSTER FAILOVER TAKEOVER after kill -9: writable {:?} after the kill",
        killed.elapsed()
    );
    // Every value written survived the three failovers (each replica was in sync).
    assert_eq!(reads(&nodes[replica], false), expected);
    drop(nodes);
    let _ = std::fs::remove_dir_all(&root);
}
