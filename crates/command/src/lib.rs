//! ringcache's RESP commands: the command table, argument parsing and execution on the store.
//!
//! Goals: Redis 7 semantics and error texts for the string and keyspace commands, so clients
//! and tools written for Redis work unchanged. One table ([`table`]) describes every command
//! (name, arity, flags, key positions, handler); it drives dispatch, arity checks, `COMMAND`
//! replies and per-command statistics alike.
//!
//! Non-goals: sockets and wire encoding (the `server` and `resp` crates), data types other than
//! strings.
//!
//! ```text
//!  args ──> execute() ──> table lookup ──> arity check ──> handler(ctx, args) ──> Reply
//!                                                             │
//!                                                   Store (one shard lock per key)
//! ```
//!
//! Modules:
//! - [`node`]: the state shared by all connections ([`Node`]) and per-connection [`Session`].
//! - [`table`]: the command table and dispatch.
//! - [`errors`]: every error reply text, in one place.
//! - `cmd/*`: handlers, one file per concern (strings, keyspace, expiry, connection, server).
//! - [`glob`]: Redis-style glob matching for `KEYS`, `SCAN MATCH` and `CONFIG GET`.
//! - [`memcached`]: the memcached text and meta commands over the same store.
//! - [`cluster`]: routing in cluster mode (`-MOVED`, `-CROSSSLOT`) through a [`ClusterHook`].

pub mod cluster;
mod cmd;
pub mod errors;
pub mod glob;
pub mod invariants;
pub mod memcached;
pub mod node;
pub mod table;

pub use cluster::{ClusterHook, HookHistogram, Route};
pub use cmd::server::parse_memory;
pub use node::{ClientInfo, Node, NodeSettings, Session};
pub use table::{execute, lookup, CommandSpec, COMMANDS};

/// Unix time read through the monotonic clock.
///
/// Every command needs the time twice: as Unix milliseconds for TTLs, and as an `Instant` for
/// the latency histogram. Reading the wall clock as well would cost a third clock read per
/// command, so the wall clock is derived from the `Instant` and a base taken from the system
/// clock; [`Clock::resync`] (called by the expiry task every 100 ms) follows adjustments of
/// the system clock.
#[derive(Debug)]
pub struct Clock {
    base: std::time::Instant,
    base_unix_ms: std::sync::atomic::AtomicU64,
}

impl Default for Clock {
    fn default() -> Self {
        let clock = Clock {
            base: std::time::Instant::now(),
            base_unix_ms: Default::default(),
        };
        clock.resync();
        clock
    }
}

impl Clock {
    /// Returns the Unix time in milliseconds at `at`.
    pub fn unix_ms_at(&self, at: std::time::Instant) -> u64 {
        let since = at.saturating_duration_since(self.base).as_millis() as u64;
        self.base_unix_ms.load(std::sync::atomic::Ordering::Relaxed) + since
    }

    /// Returns the Unix time in milliseconds now.
    pub fn unix_ms(&self) -> u64 {
        self.unix_ms_at(std::time::Instant::now())
    }

    /// Re-reads the system clock, so a stepped clock is followed within one call.
    ///
    /// Reading two clocks and truncating both to milliseconds makes the computed base jitter
    /// by a millisecond from one call to the next; following that jitter would make time step
    /// back (a `PEXPIRE k 60000` could then read back a `PTTL` of 60001). So a difference
    /// under 2 ms is ignored: a real step (NTP, an operator) is followed, noise is not.
    pub fn resync(&self) {
        let since = self.base.elapsed().as_millis() as u64;
        let base = unix_ms().saturating_sub(since);
        let current = self.base_unix_ms.load(std::sync::atomic::Ordering::Relaxed);
        if current == 0 || base.abs_diff(current) >= 2 {
            self.base_unix_ms
                .store(base, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// Returns the current Unix time in milliseconds, from the system clock.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
