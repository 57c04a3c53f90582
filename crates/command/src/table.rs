// Hot path: every command is looked up and dispatched here.

//! The command table and dispatch.
//!
//! One [`CommandSpec`] per command holds what Redis's command table holds: the name, the arity
//! (positive: exact; negative: at least), flags, key positions, documentation and the
//! handler. Dispatch looks the name up case-insensitively, checks the arity, runs the handler
//! and records statistics, so handlers never repeat those steps.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::OnceLock;
use std::time::Instant;

use bytes::Bytes;
use resp::Reply;

use crate::cmd::{connection, expire, keyspace, server, string};
use crate::errors;
use crate::node::{Node, Session};

/// What a handler works with: the node, the calling connection, and the time of the call.
pub struct Ctx<'a> {
    /// The node.
    pub node: &'a Node,
    /// The calling connection.
    pub session: &'a mut Session,
    /// Unix milliseconds at dispatch; one command sees one instant.
    pub now_ms: u64,
}

/// A command handler: arguments include the command name at index 0.
pub type Handler = fn(&mut Ctx<'_>, &[Bytes]) -> Reply;

/// One command's description and handler.
#[derive(Debug)]
pub struct CommandSpec {
    /// Lowercase name.
    pub name: &'static str,
    /// Number of arguments including the name; negative means "at least -arity".
    pub arity: i32,
    /// Redis command flags (`write`, `readonly`, `fast`, `denyoom`, ...).
    pub flags: &'static [&'static str],
    /// Position of the first key (0: none).
    pub first_key: i32,
    /// Position of the last key (-1: the last argument).
    pub last_key: i32,
    /// Step between keys.
    pub step: i32,
    /// Redis command group (`string`, `keyspace`, `connection`, `server`).
    pub group: &'static str,
    /// The Redis version that introduced it.
    pub since: &'static str,
    /// One-line summary.
    pub summary: &'static str,
    /// The handler.
    pub handler: Handler,
}

macro_rules! spec {
    ($name:literal, $arity:expr, [$($flag:literal),*], ($first:expr, $last:expr, $step:expr),
     $group:literal, $since:literal, $handler:expr, $summary:literal) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            flags: &[$($flag),*],
            first_key: $first,
            last_key: $last,
            step: $step,
            group: $group,
            since: $since,
            summary: $summary,
            handler: $handler,
        }
    };
}

/// Every command this node implements.
pub static COMMANDS: &[CommandSpec] = &[
    // connection
    spec!("ping", -1, ["fast"], (0, 0, 0), "connection", "1.0.0", connection::ping, "Returns the server's liveliness response."),
    spec!("echo", 2, ["loading", "stale", "fast"], (0, 0, 0), "connection", "1.0.0", connection::echo, "Returns the given string."),
    spec!("hello", -1, ["noscript", "loading", "stale", "fast", "no_auth"], (0, 0, 0), "connection", "6.0.0", connection::hello, "Handshakes with the server."),
    spec!("auth", -2, ["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"], (0, 0, 0), "connection", "1.0.0", connection::auth, "Authenticates the connection."),
    spec!("quit", -1, ["noscript", "loading", "stale", "fast", "no_auth"], (0, 0, 0), "connection", "1.0.0", connection::quit, "Closes the connection."),
    spec!("select", 2, ["loading", "stale", "fast"], (0, 0, 0), "connection", "1.0.0", connection::select, "Changes the selected database."),
    spec!("client", -2, [], (0, 0, 0), "connection", "2.4.0", connection::client, "A container for client connection commands."),
    spec!("readonly", 1, ["loading", "stale", "fast"], (0, 0, 0), "cluster", "3.0.0", crate::cluster::readonly, "Enables read-only queries for a connection to a Redis Cluster replica node."),
    spec!("readwrite", 1, ["loading", "stale", "fast"], (0, 0, 0), "cluster", "3.0.0", crate::cluster::readwrite, "Enables read-write queries for a connection to a Redis Cluster replica node."),
    spec!("asking", 1, ["fast"], (0, 0, 0), "cluster", "3.0.0", crate::cluster::asking, "Signals that a cluster client is following an -ASK redirect."),
    spec!("cluster", -2, [], (0, 0, 0), "cluster", "3.0.0", crate::cluster::cluster, "A container for Redis Cluster commands."),
    spec!("wait", 3, [], (0, 0, 0), "generic", "3.0.0", crate::cluster::wait, "Blocks until the asynchronous replication of all preceding write commands sent by the connection is completed."),
    // server
    spec!("command", -1, ["loading", "stale"], (0, 0, 0), "server", "2.8.13", server::command, "Returns detailed information about all commands."),
    spec!("info", -1, ["loading", "stale"], (0, 0, 0), "server", "1.0.0", server::info, "Returns information and statistics about the server."),
    spec!("config", -2, [], (0, 0, 0), "server", "2.0.0", server::config, "A container for server configuration commands."),
    spec!("dbsize", 1, ["readonly", "fast"], (0, 0, 0), "server", "1.0.0", server::dbsize, "Returns the number of keys in the database."),
    spec!("flushall", -1, ["write"], (0, 0, 0), "server", "1.0.0", server::flush, "Removes all keys from all databases."),
    spec!("flushdb", -1, ["write"], (0, 0, 0), "server", "1.0.0", server::flush, "Remove all keys from the current database."),
    spec!("time", 1, ["loading", "stale", "fast"], (0, 0, 0), "server", "2.6.0", server::time, "Returns the server time."),
    // strings
    spec!("get", 2, ["readonly", "fast"], (1, 1, 1), "string", "1.0.0", string::get, "Returns the string value of a key."),
    spec!("set", -3, ["write", "denyoom"], (1, 1, 1), "string", "1.0.0", string::set, "Sets the string value of a key, ignoring its type."),
    spec!("setnx", 3, ["write", "denyoom", "fast"], (1, 1, 1), "string", "1.0.0", string::setnx, "Set the string value of a key only when the key doesn't exist."),
    spec!("setex", 4, ["write", "denyoom"], (1, 1, 1), "string", "2.0.0", string::setex, "Sets the string value and expiration time of a key."),
    spec!("psetex", 4, ["write", "denyoom"], (1, 1, 1), "string", "2.6.0", string::psetex, "Sets the string value and expiration time in milliseconds of a key."),
    spec!("getset", 3, ["write", "denyoom", "fast"], (1, 1, 1), "string", "1.0.0", string::getset, "Returns the previous string value of a key after setting it to a new value."),
    spec!("getdel", 2, ["write", "fast"], (1, 1, 1), "string", "6.2.0", string::getdel, "Returns the string value of a key after deleting the key."),
    spec!("getex", -2, ["write", "fast"], (1, 1, 1), "string", "6.2.0", string::getex, "Returns the string value of a key after setting its expiration time."),
    spec!("mget", -2, ["readonly", "fast"], (1, -1, 1), "string", "1.0.0", string::mget, "Atomically returns the string values of one or more keys."),
    spec!("mset", -3, ["write", "denyoom"], (1, -1, 2), "string", "1.0.1", string::mset, "Atomically creates or modifies the string values of one or more keys."),
    spec!("msetnx", -3, ["write", "denyoom"], (1, -1, 2), "string", "1.0.1", string::msetnx, "Atomically modifies the string values of one or more keys only when all keys don't exist."),
    spec!("incr", 2, ["write", "denyoom", "fast"], (1, 1, 1), "string", "1.0.0", string::incr, "Increments the integer value of a key by one."),
    spec!("decr", 2, ["write", "denyoom", "fast"], (1, 1, 1), "string", "1.0.0", string::decr, "Decrements the integer value of a key by one."),
    spec!("incrby", 3, ["write", "denyoom", "fast"], (1, 1, 1), "string", "1.0.0", string::incrby, "Increments the integer value of a key by a number."),
    spec!("decrby", 3, ["write", "denyoom", "fast"], (1, 1, 1), "string", "1.0.0", string::decrby, "Decrements a number from the integer value of a key."),
    spec!("incrbyfloat", 3, ["write", "denyoom", "fast"], (1, 1, 1), "string", "2.6.0", string::incrbyfloat, "Increment the floating point value of a key by a number."),
    spec!("append", 3, ["write", "denyoom", "fast"], (1, 1, 1), "string", "2.0.0", string::append, "Appends a string to the value of a key."),
    spec!("strlen", 2, ["readonly", "fast"], (1, 1, 1), "string", "2.2.0", string::strlen, "Returns the length of a string value."),
    spec!("getrange", 4, ["readonly"], (1, 1, 1), "string", "2.4.0", string::getrange, "Returns a substring of the string stored at a key."),
    spec!("substr", 4, ["readonly"], (1, 1, 1), "string", "1.0.0", string::getrange, "Returns a substring from a string value."),
    spec!("setrange", 4, ["write", "denyoom"], (1, 1, 1), "string", "2.2.0", string::setrange, "Overwrites a part of a string value with another by an offset."),
    // keyspace
    spec!("del", -2, ["write"], (1, -1, 1), "keyspace", "1.0.0", keyspace::del, "Deletes one or more keys."),
    spec!("unlink", -2, ["write", "fast"], (1, -1, 1), "keyspace", "4.0.0", keyspace::del, "Asynchronously deletes one or more keys."),
    spec!("exists", -2, ["readonly", "fast"], (1, -1, 1), "keyspace", "1.0.0", keyspace::exists, "Determines whether one or more keys exist."),
    spec!("touch", -2, ["readonly", "fast"], (1, -1, 1), "keyspace", "3.2.1", keyspace::touch, "Returns the number of existing keys out of those specified after updating the time they were last accessed."),
    spec!("type", 2, ["readonly", "fast"], (1, 1, 1), "keyspace", "1.0.0", keyspace::type_of, "Determines the type of value stored at a key."),
    spec!("keys", 2, ["readonly"], (0, 0, 0), "keyspace", "1.0.0", keyspace::keys, "Returns all key names that match a pattern."),
    spec!("scan", -2, ["readonly"], (0, 0, 0), "keyspace", "2.8.0", keyspace::scan, "Iterates over the key names in the database."),
    spec!("randomkey", 1, ["readonly"], (0, 0, 0), "keyspace", "1.0.0", keyspace::randomkey, "Returns a random key name from the database."),
    spec!("rename", 3, ["write"], (1, 2, 1), "keyspace", "1.0.0", keyspace::rename, "Renames a key and overwrites the destination."),
    spec!("renamenx", 3, ["write", "fast"], (1, 2, 1), "keyspace", "1.0.0", keyspace::renamenx, "Renames a key only when the target key name doesn't exist."),
    // expiry
    spec!("expire", -3, ["write", "fast"], (1, 1, 1), "keyspace", "1.0.0", expire::expire, "Sets the expiration time of a key in seconds."),
    spec!("pexpire", -3, ["write", "fast"], (1, 1, 1), "keyspace", "2.6.0", expire::pexpire, "Sets the expiration time of a key in milliseconds."),
    spec!("expireat", -3, ["write", "fast"], (1, 1, 1), "keyspace", "1.2.0", expire::expireat, "Sets the expiration time of a key to a Unix timestamp."),
    spec!("pexpireat", -3, ["write", "fast"], (1, 1, 1), "keyspace", "2.6.0", expire::pexpireat, "Sets the expiration time of a key to a Unix milliseconds timestamp."),
    spec!("ttl", 2, ["readonly", "fast"], (1, 1, 1), "keyspace", "1.0.0", expire::ttl, "Returns the expiration time in seconds of a key."),
    spec!("pttl", 2, ["readonly", "fast"], (1, 1, 1), "keyspace", "2.6.0", expire::pttl, "Returns the expiration time in milliseconds of a key."),
    spec!("expiretime", 2, ["readonly", "fast"], (1, 1, 1), "keyspace", "7.0.0", expire::expiretime, "Returns the expiration time of a key as a Unix timestamp."),
    spec!("pexpiretime", 2, ["readonly", "fast"], (1, 1, 1), "keyspace", "7.0.0", expire::pexpiretime, "Returns the expiration time of a key as a Unix milliseconds timestamp."),
    spec!("persist", 2, ["write", "fast"], (1, 1, 1), "keyspace", "2.2.0", expire::persist, "Removes the expiration time of a key."),
];

/// Commands of data types this node does not have. Against an existing (string) key they
/// answer `WRONGTYPE`, exactly as Redis would; otherwise they are unknown commands.
static OTHER_TYPE_COMMANDS: &[&str] = &[
    "blmove",
    "blpop",
    "brpop",
    "brpoplpush",
    "bzpopmax",
    "bzpopmin",
    "hdel",
    "hexists",
    "hget",
    "hgetall",
    "hincrby",
    "hincrbyfloat",
    "hkeys",
    "hlen",
    "hmget",
    "hmset",
    "hrandfield",
    "hscan",
    "hset",
    "hsetnx",
    "hstrlen",
    "hvals",
    "lindex",
    "linsert",
    "llen",
    "lmove",
    "lpop",
    "lpos",
    "lpush",
    "lpushx",
    "lrange",
    "lrem",
    "lset",
    "ltrim",
    "pfadd",
    "pfcount",
    "rpop",
    "rpoplpush",
    "rpush",
    "rpushx",
    "sadd",
    "scard",
    "sismember",
    "smembers",
    "smismember",
    "spop",
    "srandmember",
    "srem",
    "sscan",
    "xadd",
    "xlen",
    "xrange",
    "xread",
    "xrevrange",
    "zadd",
    "zcard",
    "zcount",
    "zincrby",
    "zrange",
    "zrangebyscore",
    "zrank",
    "zrem",
    "zrevrange",
    "zrevrank",
    "zscan",
    "zscore",
];

/// Command names to table positions, hashed with foldhash: the lookup is on every request.
type Index = HashMap<&'static [u8], usize, foldhash::fast::FixedState>;

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        COMMANDS
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_bytes(), i))
            .collect()
    })
}

/// Returns the index in [`COMMANDS`] of the command named `name` (any case).
pub fn lookup(name: &[u8]) -> Option<usize> {
    let mut lower = [0u8; 24];
    let lower = lower.get_mut(..name.len())?;
    for (l, c) in lower.iter_mut().zip(name) {
        *l = c.to_ascii_lowercase();
    }
    index().get(&*lower).copied()
}

/// Checks a command's argument count against the arity in its table entry.
pub fn check_arity(spec: &CommandSpec, argc: usize) -> Result<(), Reply> {
    let argc = argc as i64;
    let arity = i64::from(spec.arity);
    if (arity > 0 && argc != arity) || (arity < 0 && argc < -arity) {
        return Err(errors::arity(spec.name));
    }
    Ok(())
}

/// Checks a command's argument count against its table entry: the arity, and for commands
/// that take key-value pairs (a key step above 1, as `MSET`), that every key has its values.
///
/// Everything that splits, routes or forwards a command calls this first, so a split part can
/// never index past the arguments, and a command refused here changes nothing anywhere
/// (Redis refuses `MSET a 1 b` whole, with the arity error).
pub fn check_args(spec: &CommandSpec, argc: usize) -> Result<(), Reply> {
    check_arity(spec, argc)?;
    let argc = argc as i64;
    if spec.first_key > 0 && spec.last_key < 0 && spec.step > 1 {
        let after_first = argc - i64::from(spec.first_key);
        if after_first % i64::from(spec.step) != 0 {
            return Err(errors::arity(spec.name));
        }
    }
    Ok(())
}

/// Runs one command (`args[0]` is its name; `args` is never empty) and returns its reply.
pub fn execute(node: &Node, session: &mut Session, args: &[Bytes]) -> Reply {
    let Some(i) = lookup(&args[0]) else {
        node.stats.unknown_commands.fetch_add(1, Relaxed);
        return unknown(node, args);
    };
    let spec = &COMMANDS[i];
    // As Redis: the table's arity, then cluster routing (so an MSET over several slots gets
    // -CROSSSLOT whatever its pairing), then the handler's own checks (MSET's pairs).
    if let Err(reply) = check_arity(spec, args.len()) {
        return reply;
    }
    if let Some(hook) = node.cluster.get() {
        if spec.first_key > 0 {
            if let Some(redirect) = crate::cluster::check(&**hook, spec, session, args) {
                session.asking = false;
                return redirect;
            }
        }
        if spec.name != "asking" {
            // ASKING lasts for one command.
            session.asking = false;
        }
    }
    let started = Instant::now();
    let mut ctx = Ctx {
        node,
        session,
        now_ms: node.clock.unix_ms_at(started),
    };
    let reply = (spec.handler)(&mut ctx, args);
    let usec = started.elapsed().as_micros() as u64;
    let stats = &node.command_stats[i];
    stats.calls.fetch_add(1, Relaxed);
    stats.usec.fetch_add(usec, Relaxed);
    if reply.is_error() {
        stats.failed.fetch_add(1, Relaxed);
    }
    node.latency.record(usec);
    reply
}

fn unknown(node: &Node, args: &[Bytes]) -> Reply {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
    if OTHER_TYPE_COMMANDS.binary_search(&name.as_str()).is_ok() {
        if let Some(key) = args.get(1) {
            if node.store.contains(key, node.clock.unix_ms(), false) {
                return errors::wrong_type();
            }
        }
    }
    errors::unknown_command(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_lowercase_and_found_in_any_case() {
        assert_eq!(index().len(), COMMANDS.len());
        for (i, c) in COMMANDS.iter().enumerate() {
            assert_eq!(c.name, c.name.to_ascii_lowercase());
            assert_eq!(lookup(c.name.to_ascii_uppercase().as_bytes()), Some(i));
        }
        assert_eq!(lookup(b"nosuchcommand"), None);
        assert_eq!(lookup(&[b'a'; 100]), None);
    }

    #[test]
    fn key_value_commands_need_whole_pairs_issue_13() {
        let mset = &COMMANDS[lookup(b"mset").expect("mset")];
        for argc in [1, 2, 4, 6] {
            assert!(check_args(mset, argc).is_err(), "MSET with {argc} args");
        }
        for argc in [3, 5, 7] {
            assert!(check_args(mset, argc).is_ok(), "MSET with {argc} args");
        }
        let mget = &COMMANDS[lookup(b"mget").expect("mget")];
        assert!(check_args(mget, 1).is_err());
        assert!(check_args(mget, 4).is_ok());
    }

    #[test]
    fn other_type_commands_are_sorted_for_binary_search() {
        assert!(OTHER_TYPE_COMMANDS.windows(2).all(|w| w[0] < w[1]));
    }
}
