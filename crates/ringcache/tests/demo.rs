//! Issue 13 against `ringcache demo` as a user runs it (in the foreground):
//! - the forwarding port refuses a malformed MSET whole (it panicked and half-applied);
//! - a memcached multi-get through a node that owns few of the keys answers in request order;
//! - memcached `flush_all <delay>` through one node empties the whole cluster at the deadline;
//! - `kill -9` of a primary leaves the demo and the other nodes running, the demo prints the
//!   command that restarts the node, and the restarted node rejoins as a replica.
//!
//! Every node's log is checked for panics at the end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BASE: u16 = 7600;
const MEMCACHE: u16 = 12600;
const FORWARD: u16 = 8600;
const ADMIN: u16 = 9600;

struct Demo {
    child: Child,
    dir: std::path::PathBuf,
    lines: mpsc::Receiver<String>,
    /// Pids started by hand (the restarted node), killed at the end.
    extra: Vec<u32>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        for pid in &self.extra {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        if std::thread::panicking() {
            return;
        }
        let panics = testkit::node::panics_in_dir(&self.dir);
        assert!(
            panics.is_empty(),
            "a demo node panicked:\n{}",
            panics.join("\n")
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Demo {
    /// Waits for an output line containing `text`; returns all lines read until then.
    fn wait_for(&self, text: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "the demo never printed {text:?}; it printed:\n{}",
            seen.join("\n")
        );
    }
}

/// One RESP command over a fresh connection; returns the raw reply.
fn resp(port: u16, args: &[&str]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).expect("write");
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A memcached exchange: sends `request`, reads until `end` closes the reply.
fn memcache(port: u16, request: &str, end: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&out).ends_with(end) {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "closed; got {}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn pid_of_port(port: u16) -> u32 {
    let wanted = format!("\0--port\0{port}\0");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&wanted))
                .unwrap_or(false)
        })
        .expect("the node's process")
}

#[test]
fn the_demo_serves_hostile_input_and_survives_a_killed_primary_issue_13() {
    let dir = std::env::temp_dir().join(format!("ringcache-demo-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .args(["demo", "--maxmemory", "64mb", "--dir"])
        .arg(&dir)
        .args(["--base-port", &BASE.to_string()])
        .args(["--memcache-base-port", &MEMCACHE.to_string()])
        .args(["--forward-base-port", &FORWARD.to_string()])
        .args(["--admin-base-port", &ADMIN.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the demo");
    let (tx, lines) = mpsc::channel();
    for out in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let mut demo = Demo {
        child,
        dir,
        lines,
        extra: Vec::new(),
    };
    demo.wait_for("Ctrl-C stops all nodes", Duration::from_secs(60));

    // The forwarding port: a malformed MSET is refused whole, as Redis does.
    let arity = "-ERR wrong number of arguments for 'mset' command\r\n";
    assert_eq!(resp(FORWARD, &["MSET", "a", "1", "b"]), arity);
    assert_eq!(resp(FORWARD, &["MSET", "a", "1", "b", "2", "c"]), arity);
    assert_eq!(
        resp(FORWARD, &["MGET", "a", "b", "c"]),
        "*3\r\n$-1\r\n$-1\r\n$-1\r\n"
    );
    assert_eq!(
        resp(FORWARD, &["MSET", "a", "1", "b", "2", "c", "3"]),
        "+OK\r\n"
    );
    assert_eq!(
        resp(FORWARD, &["MGET", "a", "b", "c"]),
        "*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n"
    );

    // memcached through one node: hits in request order, whoever owns the keys.
    let keys: Vec<String> = (0..12).map(|i| format!("order{i}")).collect();
    for k in &keys {
        let set = format!("set {k} 0 0 {}\r\n{k}\r\n", k.len());
        assert_eq!(memcache(MEMCACHE, &set, "\r\n"), "STORED\r\n");
    }
    let mut asked: Vec<&str> = keys.iter().map(String::as_str).rev().collect();
    asked.insert(3, "missing");
    let reply = memcache(MEMCACHE, &format!("get {}\r\n", asked.join(" ")), "END\r\n");
    let got: Vec<&str> = reply
        .lines()
        .filter_map(|l| l.strip_prefix("VALUE ")?.split(' ').next())
        .collect();
    let hits: Vec<&str> = asked.iter().copied().filter(|k| *k != "missing").collect();
    assert_eq!(got, hits, "hits out of request order: {reply}");

    // flush_all with a delay through one node: nothing goes before the deadline, everything
    // (on every shard) after it.
    assert_eq!(memcache(MEMCACHE, "flush_all 2\r\n", "\r\n"), "OK\r\n");
    let all = format!("get {}\r\n", keys.join(" "));
    let count = |port| memcache(port, &all, "END\r\n").matches("VALUE ").count();
    assert_eq!(
        count(MEMCACHE + 1),
        keys.len(),
        "flushed before the deadline"
    );
    let deadline = Instant::now() + Duration::from_secs(6);
    while count(MEMCACHE + 2) > 0 {
        assert!(
            Instant::now() < deadline,
            "keys left after flush_all 2 on another shard"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // kill -9 of the first node (a primary after create): the demo goes on.
    let victim = BASE;
    let info = resp(victim, &["INFO", "replication"]);
    assert!(
        info.contains("role:master") && info.contains("connected_slaves:1"),
        "the first node is a primary with a replica: {info}"
    );
    let replica: u16 = info
        .split("slave0:")
        .nth(1)
        .and_then(|r| r.split("port=").nth(1))
        .and_then(|r| r.split(',').next())
        .and_then(|p| p.parse().ok())
        .expect("the primary's replica");
    let pid = pid_of_port(victim);
    Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill -9");
    let printed = demo
        .wait_for("restart:", Duration::from_secs(10))
        .join("\n");
    assert!(
        printed.contains(&format!("node {victim} exited")),
        "{printed}"
    );
    assert!(
        matches!(demo.child.try_wait(), Ok(None)),
        "the demo stopped"
    );
    let restart = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("restart:"))
        .expect("restart line")
        .trim()
        .to_string();
    // The others keep serving, and the replica takes the slots over.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !resp(replica, &["INFO", "replication"]).contains("role:master") {
        assert!(
            Instant::now() < deadline,
            "the replica {replica} did not take over"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        resp(FORWARD + 1, &["SET", "after-failover", "x"]),
        "+OK\r\n"
    );
    for port in BASE + 1..BASE + 6 {
        assert_eq!(resp(port, &["PING"]), "+PONG\r\n", "node {port}");
    }

    // The printed command brings it back, as a replica.
    let out = Command::new("sh")
        .args(["-c", &format!("{restart}\necho $!")])
        .output()
        .expect("run the printed restart command");
    let restarted: u32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("the restarted node's pid");
    demo.extra.push(restarted);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let role = TcpStream::connect(("127.0.0.1", victim))
            .ok()
            .map(|_| resp(victim, &["INFO", "replication"]));
        if role.as_deref().is_some_and(|r| r.contains("role:slave")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted node is not a replica: {role:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
