//! Issue 13: what a hostile or careless client can do to a node, against a real node process.
//!
//! - Memory: 2,000 connections that each declare a 1 MB value and send nothing more (RESP and
//!   memcached), and 300 that each send most of a 1 MB value and stall. RSS stays under
//!   maxmemory + 64 MB, the stallers over `maxmemory-clients` are evicted (largest first), and
//!   a well-behaved client keeps being served meanwhile (its p99 is printed).
//! - Connection storms: 1,000 simultaneous connects complete quickly (listen backlog 511).
//! - memcached 1.6 behaviour: a value over the item limit is refused and swallowed with the
//!   connection kept; an HTTP request line closes the connection without a reply.
//!
//! Every node's log is checked for panics when the test ends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const MAXMEMORY_MB: u64 = 64;

/// One test at a time: each measures a node (RSS, connect times) that the others would load.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

struct Node {
    child: Child,
    resp: SocketAddr,
    memcache: SocketAddr,
    admin: SocketAddr,
    dir: PathBuf,
}

impl Node {
    fn start(name: &str, extra: &[&str]) -> Node {
        let [resp, memcache, admin] = testkit::node::free_ports("127.0.0.1").expect("ports");
        let dir = std::env::temp_dir().join(format!("ringcache-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = std::fs::File::create(dir.join("node.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_ringcache"))
            .arg("server")
            .args(["--port", &resp.to_string()])
            .args(["--memcache-port", &memcache.to_string()])
            .args(["--admin-port", &admin.to_string()])
            .args(["--maxmemory", &format!("{MAXMEMORY_MB}mb")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ringcache");
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let node = Node {
            child,
            resp: addr(resp),
            memcache: addr(memcache),
            admin: addr(admin),
            dir,
        };
        let started = Instant::now();
        while TcpStream::connect(node.resp).is_err() || TcpStream::connect(node.admin).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "node did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        node
    }

    /// Resident memory of the node process, in MB.
    fn rss_mb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("node status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .expect("VmRSS")
            / 1024
    }

    /// One value of the node's `/metrics`.
    fn metric(&self, name: &str) -> f64 {
        let mut s = TcpStream::connect(self.admin).expect("admin");
        write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").expect("request");
        let mut body = String::new();
        s.read_to_string(&mut body).expect("metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name}"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let panics = testkit::node::panics_in_log(&self.dir.join("node.log"));
            assert!(
                panics.is_empty(),
                "the node panicked:\n{}",
                panics.join("\n")
            );
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Lets this process hold thousands of sockets.
fn raise_open_files() {
    let (_, hard) = rlimit::Resource::NOFILE.get().expect("getrlimit");
    rlimit::Resource::NOFILE.set(hard, hard).expect("setrlimit");
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// Reads until `want` bytes came, or the peer closed; returns what came.
fn read_some(s: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < want {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// A well-behaved client: SET and GET in turn until stopped; returns the latencies and
/// how many requests failed.
fn polite_client(addr: SocketAddr, stop: Arc<AtomicBool>) -> (hdrhistogram::Histogram<u64>, u64) {
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).expect("histogram");
    let mut failed = 0;
    let mut s = connect(addr);
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let request = if i.is_multiple_of(2) {
            format!(
                "*3\r\n$3\r\nSET\r\n$6\r\npolite\r\n${}\r\n{i}\r\n",
                i.to_string().len()
            )
        } else {
            "*2\r\n$3\r\nGET\r\n$6\r\npolite\r\n".to_string()
        };
        s.write_all(request.as_bytes()).expect("polite write");
        let reply = read_some(&mut s, 1);
        if reply.is_empty() || reply[0] == b'-' {
            failed += 1;
        } else if i % 2 == 1 {
            // The whole bulk reply: "$n\r\n" + value + "\r\n".
            let want = format!("${}\r\n{}\r\n", (i - 1).to_string().len(), i - 1);
            let mut got = reply;
            while got.len() < want.len() {
                let more = read_some(&mut s, 1);
                if more.is_empty() {
                    break;
                }
                got.extend(more);
            }
            if got != want.as_bytes() {
                failed += 1;
            }
        }
        hist.record(started.elapsed().as_micros() as u64)
            .expect("record");
        i += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    (hist, failed)
}

#[test]
fn declared_lengths_and_stalled_values_cannot_bloat_a_node_issue_13() {
    let _serial = serial();
    raise_open_files();
    let node = Node::start("hostile-memory", &["--log", "debug"]);
    let stop = Arc::new(AtomicBool::new(false));
    let polite = {
        let stop = stop.clone();
        let addr = node.resp;
        std::thread::spawn(move || polite_client(addr, stop))
    };
    std::thread::sleep(Duration::from_millis(500));
    let cold_mb = node.rss_mb();
    // The baseline is a node that has served 2,000 ordinary clients (one PING each): the
    // allocator (mimalloc) keeps what it freed for reuse, so the attack must add nothing that
    // stays beyond what 2,000 ordinary clients leave.
    let mut plain: Vec<TcpStream> = (0..2000).map(|_| connect(node.resp)).collect();
    for s in &mut plain {
        s.write_all(b"PING\r\n").expect("ping");
    }
    for s in &mut plain {
        assert_eq!(read_some(s, 7), b"+PONG\r\n");
    }
    drop(plain);
    std::thread::sleep(Duration::from_millis(1000));
    let before_mb = node.rss_mb();
    let limit_mb = MAXMEMORY_MB + 64;

    // 2,000 connections each declare a 1 MB value and send nothing more, on both protocols.
    let mut peak_mb = 0;
    for (addr, header) in [
        (
            node.resp,
            &b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000\r\n"[..],
        ),
        (node.memcache, &b"set k 0 0 1000000\r\n"[..]),
    ] {
        let mut held: Vec<TcpStream> = (0..2000).map(|_| connect(addr)).collect();
        for s in &mut held {
            s.write_all(header).expect("header");
        }
        std::thread::sleep(Duration::from_millis(1500));
        let during = node.rss_mb();
        peak_mb = peak_mb.max(during);
        assert!(
            during < limit_mb,
            "RSS {during} MB with 2,000 declared 1 MB values (limit {limit_mb} MB)"
        );
        drop(held);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(node.metric("ringcache_clients_evicted_total"), 0.0);
    std::thread::sleep(Duration::from_millis(1000));
    let after_mb = node.rss_mb();
    assert!(
        after_mb * 10 <= before_mb * 11,
        "RSS {after_mb} MB after the attack, {before_mb} MB before"
    );

    // 300 connections each send 900 KB of a 1 MB value and stall: 270 MB against a client
    // budget of 32 MB (5% of 64 MB, at least 32 MB). The largest are evicted first.
    let mut stalled = Vec::new();
    let mut stall_peak_mb = 0;
    let chunk = vec![b'x'; 900_000];
    for _ in 0..300 {
        let mut s = connect(node.resp);
        s.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1000000\r\n")
            .expect("header");
        // The node may have evicted it already; a refused write is the point.
        let _ = s.write_all(&chunk);
        stalled.push(s);
        stall_peak_mb = stall_peak_mb.max(node.rss_mb());
    }
    std::thread::sleep(Duration::from_millis(500));
    let during_stall = node.rss_mb();
    stall_peak_mb = stall_peak_mb.max(during_stall);
    let evicted = node.metric("ringcache_clients_evicted_total");
    let held_bytes = node.metric("ringcache_client_buffer_bytes");
    assert!(
        evicted >= 250.0,
        "only {evicted} of 300 stalled clients evicted"
    );
    assert!(
        held_bytes <= 32.0 * 1048576.0,
        "{held_bytes} bytes of client buffers held; {evicted} evicted, {} connected",
        node.metric("ringcache_connections_current")
    );
    drop(stalled);

    std::thread::sleep(Duration::from_millis(2000));
    let after_stall_mb = node.rss_mb();
    stop.store(true, Ordering::Relaxed);
    let (hist, failed) = polite.join().expect("polite client");
    println!(
        "RSS: cold {cold_mb} MB, with 2,000 plain connections served {before_mb} MB; \
         declared 1 MB values: peak {peak_mb} MB, after {after_mb} MB; stalled values: \
         peak {stall_peak_mb} MB, {evicted} of 300 evicted, {after_stall_mb} MB after; polite \
         client: {} requests, {failed} failed, p50 {} us, p99 {} us, max {} us",
        hist.len(),
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.max()
    );
    assert_eq!(failed, 0, "the polite client's requests failed");
}

#[test]
fn a_thousand_simultaneous_connects_are_all_accepted_issue_13() {
    let _serial = serial();
    raise_open_files();
    let node = Node::start("hostile-storm", &[]);
    let addr = node.resp;
    let started = Instant::now();
    let threads: Vec<_> = (0..8)
        .map(|_| std::thread::spawn(move || (0..125).map(|_| connect(addr)).collect::<Vec<_>>()))
        .collect();
    let mut conns: Vec<TcpStream> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("connects"))
        .collect();
    let took = started.elapsed();
    println!("1,000 simultaneous connects: {took:?}");
    // A connect that overflowed the listen queue waits for a SYN retry (1 s, then 3 s).
    assert!(
        took < Duration::from_millis(900),
        "1,000 connects took {took:?}"
    );
    for s in conns.iter_mut().step_by(97) {
        s.write_all(b"PING\r\n").expect("ping");
        assert_eq!(read_some(s, 7), b"+PONG\r\n");
    }
    let mut info = connect(node.resp);
    info.write_all(b"CONFIG GET maxmemory-clients\r\n")
        .expect("config get");
    let reply = read_some(&mut info, 40);
    assert!(
        String::from_utf8_lossy(&reply).contains(&(32u64 << 20).to_string()),
        "maxmemory-clients default: {}",
        String::from_utf8_lossy(&reply)
    );
}

#[test]
fn memcached_refuses_a_value_over_the_limit_and_keeps_the_connection_issue_13() {
    let _serial = serial();
    let node = Node::start("hostile-mc-large", &["--max-value-bytes", "1mb"]);
    let mut s = connect(node.memcache);
    let mut request = b"set big 0 0 2000000\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'x', 2_000_000));
    request.extend_from_slice(b"\r\nset small 0 0 2\r\nok\r\nget small\r\n");
    s.write_all(&request).expect("write");
    let want =
        b"SERVER_ERROR object too large for cache\r\nSTORED\r\nVALUE small 0 2\r\nok\r\nEND\r\n";
    assert_eq!(
        String::from_utf8_lossy(&read_some(&mut s, want.len())),
        String::from_utf8_lossy(want)
    );
}

#[test]
fn an_http_request_on_the_memcached_port_is_closed_without_a_reply_issue_13() {
    let _serial = serial();
    let node = Node::start("hostile-mc-http", &[]);
    for request in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"PUT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
    ] {
        let mut s = connect(node.memcache);
        s.write_all(request).expect("write");
        let started = Instant::now();
        assert_eq!(read_some(&mut s, 1), b"", "a reply to {request:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "not closed at once"
        );
    }
    // The port still serves memcached clients.
    let mut s = connect(node.memcache);
    s.write_all(b"version\r\n").expect("write");
    assert!(read_some(&mut s, 8).starts_with(b"VERSION "));
}
