//! Network partitions between loopback addresses, with iptables.
//!
//! Every node binds its listeners and its outgoing bus connections to its own address, so a
//! rule that drops packets from one node's address to another's cuts exactly the traffic
//! between those two nodes. Clients connect from 127.0.0.1 and are not cut off: a partitioned
//! node keeps its clients (the case where split brain would bite). The rules live in a chain
//! of their own, jumped to from `INPUT`, and are removed when the [`Partitions`] is dropped.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// The iptables chain holding the partition rules.
const CHAIN: &str = "RINGCACHE_FAULTS";

fn iptables(args: &[&str]) -> Result<bool> {
    let out = Command::new("iptables")
        .args(["-w", "5"])
        .args(args)
        .output()
        .context("run iptables (install it: apt-get install -y iptables; needs root)")?;
    Ok(out.status.success())
}

fn must(args: &[&str]) -> Result<()> {
    let out = Command::new("iptables")
        .args(["-w", "5"])
        .args(args)
        .output()
        .context("run iptables (install it: apt-get install -y iptables; needs root)")?;
    if !out.status.success() {
        bail!(
            "iptables {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Partitions between loopback addresses. One at a time per process (the chain is shared).
pub struct Partitions {
    _private: (),
}

impl Partitions {
    /// Creates (or empties) the chain and hooks it into `INPUT`.
    pub fn new() -> Result<Partitions> {
        if !iptables(&["-N", CHAIN])? {
            must(&["-F", CHAIN])?;
        }
        if !iptables(&["-C", "INPUT", "-j", CHAIN])? {
            must(&["-I", "INPUT", "-j", CHAIN])?;
        }
        Ok(Partitions { _private: () })
    }

    /// Drops every packet between `ip` and each of `others`, both ways.
    pub fn isolate(&self, ip: &str, others: &[&str]) -> Result<()> {
        for other in others {
            must(&["-A", CHAIN, "-s", ip, "-d", other, "-j", "DROP"])?;
            must(&["-A", CHAIN, "-s", other, "-d", ip, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Removes every partition.
    pub fn heal(&self) -> Result<()> {
        must(&["-F", CHAIN])
    }
}

impl Drop for Partitions {
    fn drop(&mut self) {
        let _ = iptables(&["-F", CHAIN]);
        let _ = iptables(&["-D", "INPUT", "-j", CHAIN]);
        let _ = iptables(&["-X", CHAIN]);
    }
}
