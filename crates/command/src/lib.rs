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

mod cmd;
pub mod errors;
pub mod glob;
pub mod memcached;
pub mod node;
pub mod table;

pub use cmd::server::parse_memory;
pub use node::{ClientInfo, Node, NodeSettings, Session};
pub use table::{execute, lookup, CommandSpec, COMMANDS};

/// Returns the current Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
