//! Test support for ringcache: real node processes on chosen 127.0.0.x addresses, the faults
//! they suffer (`kill -9`, `SIGSTOP`/`SIGCONT`, iptables partitions between addresses), a
//! routing client with a retry budget that records every operation, and a checker that reads
//! the recorded history afterwards (lost acknowledged writes, stale reads, values that should
//! not exist).
//!
//! The scenarios in [`scenario`] are shared by the integration tests (short forms, in the
//! README's test command) and the `chaos` binary (long forms, figures for
//! `docs/reliability.md`).

pub mod client;
pub mod history;
pub mod mc;
pub mod net;
pub mod node;
pub mod resp;
pub mod scenario;
