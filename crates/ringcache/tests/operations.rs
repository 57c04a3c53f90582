//! Operating a cluster: a rolling restart under load (every node in turn gets `SIGTERM`, as
//! an orchestrator's rolling update sends, and starts again), and the deployment files'
//! metric names against what a node really serves on `/metrics`.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use testkit::node::Cluster;
use testkit::scenario;

/// One test at a time: each runs a cluster of real processes on a 2-core machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn a_rolling_restart_under_load_loses_no_key_and_fails_no_request() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ips: Vec<String> = (131..=136).map(|i| format!("127.0.0.{i}")).collect();
    let mut cluster = Cluster::start(
        Path::new(env!("CARGO_BIN_EXE_ringcache")),
        &ips,
        1,
        "rolling",
    )
    .expect("cluster");
    let r = scenario::rolling_restart(&mut cluster, 4, 600, 5_000).expect("rolling restart");
    for t in &r.restarts {
        println!("{t:?}");
    }
    println!(
        "{} ops, {} failed; lost {}, stale {}, phantoms {}",
        r.ops,
        r.failed,
        r.verdict.lost.len(),
        r.verdict.stale_reads,
        r.verdict.phantoms.len()
    );
    assert_eq!(r.restarts.len(), 6);
    // Each primary hands over to its replica, which is then a primary when its own turn
    // comes: at least one restart per shard is a primary's.
    assert!(
        r.restarts.iter().filter(|t| t.was_primary).count() >= 3,
        "fewer than 3 primaries restarted: the test proves little"
    );
    assert!(
        r.restarts.iter().all(|t| t.handed_over == t.was_primary),
        "a primary exited without handing its slots over: {:?}",
        r.restarts
    );
    assert_eq!(r.failed, 0, "operations failed beyond the retry budget");
    assert!(
        r.verdict.lost.is_empty(),
        "acknowledged writes lost: {:?}",
        r.verdict.lost
    );
    assert!(r.verdict.phantoms.is_empty(), "phantom values");
    assert_eq!(r.verdict.stale_reads, 0, "stale reads");
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    out
}

/// Metric names (`ringcache_...`) a text mentions.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("ringcache_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        out.insert(name);
    }
    out
}

#[test]
fn the_dashboard_and_alerts_use_only_metrics_the_nodes_serve() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ips: Vec<String> = (137..=138).map(|i| format!("127.0.0.{i}")).collect();
    let cluster = Cluster::start(
        Path::new(env!("CARGO_BIN_EXE_ringcache")),
        &ips,
        1,
        "deploy-metrics",
    )
    .expect("cluster");
    cluster
        .wait_healthy(Duration::from_secs(30))
        .expect("healthy");
    // A primary's and a replica's metrics together.
    let mut served = BTreeSet::new();
    for node in &cluster.nodes {
        let addr = SocketAddr::new(node.ip.parse().expect("ip"), node.admin);
        let text = http_get(addr, "/metrics");
        assert!(text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some(name) = names_in(line).into_iter().next() {
                served.insert(name);
            }
        }
    }
    assert!(served.len() > 20, "too few metrics served: {served:?}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for file in [
        "deploy/prometheus/alerts.yml",
        "deploy/grafana/ringcache.json",
    ] {
        let text = std::fs::read_to_string(root.join(file)).expect(file);
        let used = names_in(&text);
        assert!(!used.is_empty(), "{file} uses no metric");
        let unknown: Vec<&String> = used.iter().filter(|n| !served.contains(*n)).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses metrics no node serves: {unknown:?}"
        );
    }
}
