//! The dashboard end to end, in headless Chromium (Debian's `chromium`; scripts/test.sh
//! installs it) against `ringcache demo`: the page loads, shows every node up, and shows a
//! node killed with `kill -9` as down within a few seconds. A screenshot is kept in
//! target/dashboard.png.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BASE: u16 = 7400;
const ADMIN: u16 = 9400;

/// The demo's nodes, stopped (SIGINT) when the test ends, however it ends.
struct Demo {
    pids: Vec<String>,
    /// The demo's dir, holding every node's log: a panic in one fails the test.
    dir: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        for pid in &self.pids {
            let _ = Command::new("kill").args(["-INT", pid]).status();
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
    }
}

fn chromium(args: &[&str]) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--virtual-time-budget=6000",
        ])
        .args(args)
        .output()
        .expect("chromium runs (scripts/test.sh installs Debian's chromium package)");
    assert!(out.status.success(), "chromium failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn page() -> String {
    chromium(&["--dump-dom", &format!("http://127.0.0.1:{ADMIN}/")])
}

/// `(node, health)` of every row of the nodes table.
fn rows(dom: &str) -> Vec<(String, String)> {
    // The table's body, not the page's script (which holds the row template).
    let body = dom
        .split("<tbody>")
        .nth(1)
        .and_then(|b| b.split("</tbody>").next())
        .unwrap_or("");
    body.split("<tr data-node=\"")
        .skip(1)
        .filter_map(|row| {
            let (node, rest) = row.split_once('"')?;
            let health = rest.split("data-health=\"").nth(1)?.split('"').next()?;
            Some((node.to_string(), health.to_string()))
        })
        .collect()
}

#[test]
fn the_dashboard_shows_every_node_and_a_killed_one_as_down() {
    let dir = std::env::temp_dir().join(format!("ringcache-dashboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .args(["demo", "--detach", "--dir"])
        .arg(&dir)
        .args(["--base-port", &BASE.to_string()])
        .args([
            "--memcache-base-port",
            "12400",
            "--forward-base-port",
            "8400",
        ])
        .args(["--admin-base-port", &ADMIN.to_string()])
        .output()
        .expect("demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed: {text} {out:?}");
    let pids: Vec<String> = text
        .lines()
        .find_map(|l| l.split("kill -INT ").nth(1))
        .expect("the demo names its pids")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(pids.len(), 6);
    let demo = Demo {
        pids,
        dir: dir.clone(),
    };

    let dom = page();
    assert!(
        dom.contains("Slots (16384), by shard"),
        "not the dashboard: {dom}"
    );
    let seen = rows(&dom);
    assert_eq!(seen.len(), 6, "every node listed: {seen:?}");
    assert!(
        seen.iter().all(|(_, h)| h == "up"),
        "every node up: {seen:?}"
    );
    assert!(dom.contains("3 shards"), "the summary counts the shards");
    assert!(dom.contains(">leader<"), "a Raft leader is shown");

    // The screenshot, with the charts drawn over a few polls.
    let shot: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[
        "--window-size=1400,1300",
        &format!("--screenshot={}", shot.display()),
        &format!("http://127.0.0.1:{ADMIN}/"),
    ]);
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "a real screenshot"
    );

    // The last node dies; the page shows it down.
    let victim = format!("127.0.0.1:{}", BASE + 5);
    let killed = Command::new("kill")
        .args(["-9", &demo.pids[5]])
        .status()
        .expect("kill");
    assert!(killed.success());
    let started = Instant::now();
    loop {
        let seen = rows(&page());
        let down: Vec<&String> = seen
            .iter()
            .filter(|(_, h)| h == "down")
            .map(|(n, _)| n)
            .collect();
        if down == [&victim] && seen.len() == 6 {
            println!("shown down {:?} after the kill", started.elapsed());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the killed node {victim} not shown down: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(demo);
    let _ = std::fs::remove_dir_all(&dir);
}
