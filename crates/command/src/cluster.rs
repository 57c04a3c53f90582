// Hot path: in cluster mode every keyed command is routed here before it runs.

//! What the command layer needs from the cluster: who serves a slot, and the `CLUSTER`
//! command. The `server` crate implements [`ClusterHook`] over the control plane; without a
//! hook the node is a standalone server and `CLUSTER` answers as Redis does with cluster
//! support disabled.

use bytes::Bytes;
use resp::Reply;

use crate::node::Session;
use crate::table::{CommandSpec, Ctx};

/// Where a command on one slot runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Here.
    Local,
    /// Elsewhere: `-MOVED slot addr`.
    Moved {
        /// The slot.
        slot: u16,
        /// The owner's `host:port`.
        addr: String,
    },
    /// Nobody can serve it now: `-CLUSTERDOWN ...` with this text.
    Down(&'static str),
    /// This node owns the slot, which is migrating to `addr`: keys still here are served
    /// here, the others get `-ASK slot addr`.
    Migrating {
        /// The slot.
        slot: u16,
        /// The importing primary's `host:port`.
        addr: String,
    },
    /// This node imports the slot: served after `ASKING`, else `-MOVED slot addr` (the
    /// owner's).
    Importing {
        /// The slot.
        slot: u16,
        /// The owner's `host:port`.
        addr: String,
    },
}

/// A histogram the cluster exposes in `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct HookHistogram {
    /// Metric name.
    pub name: &'static str,
    /// Its description.
    pub help: &'static str,
    /// `(upper bound, observations in this bucket)`, per bucket: the encoder makes them
    /// cumulative. The last bound is infinite.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

/// The cluster, as the command layer sees it.
pub trait ClusterHook: Send + Sync + std::fmt::Debug {
    /// Where a command on `slot` runs: `write` for commands that modify keys; `readonly` when
    /// the client sent `READONLY` (a replica may then serve reads).
    fn route(&self, slot: u16, write: bool, readonly: bool) -> Route;

    /// Runs `CLUSTER <subcommand> ...`.
    fn command(&self, ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply;

    /// Whether `key` is held here (for a slot migrating away).
    fn has_key(&self, _key: &[u8]) -> bool {
        true
    }

    /// A write to `key` ran here after `ASKING` (this node importing its slot): a copy still
    /// on its way from the old owner must not overwrite it.
    fn note_import_write(&self, _key: &[u8]) {}

    /// Gauges for `/metrics`: name, help, value.
    fn metrics(&self) -> Vec<(&'static str, &'static str, i64)> {
        Vec::new()
    }

    /// Histograms for `/metrics`.
    fn histograms(&self) -> Vec<HookHistogram> {
        Vec::new()
    }

    /// The fields of `INFO replication`.
    fn replication_info(&self) -> Vec<(String, String)> {
        vec![
            ("role".into(), "master".into()),
            ("connected_slaves".into(), "0".into()),
        ]
    }
}

/// The positions of the keys of a command, from its table entry.
pub fn key_positions(spec: &CommandSpec, argc: usize) -> impl Iterator<Item = usize> {
    let first = spec.first_key.max(0) as usize;
    let last = if spec.last_key < 0 {
        argc as i64 + i64::from(spec.last_key)
    } else {
        i64::from(spec.last_key)
    };
    let last = last.clamp(0, argc as i64 - 1) as usize;
    let step = spec.step.max(1) as usize;
    let range = if first == 0 || first >= argc {
        1..1
    } else {
        first..last + 1
    };
    range.step_by(step)
}

/// Splits a multi-key command whose keys hash to several slots into one single-key command
/// per key, in key order, as the forwarding port sends them to the keys' owners: `MGET` into
/// `GET`s, `MSET` into `SET`s, `DEL`/`UNLINK`/`EXISTS`/`TOUCH` into one of each per key.
/// `None` for a command that can't be split (the caller answers `-CROSSSLOT`).
///
/// The arguments must have passed [`crate::table::check_args`]; every part then passes it too.
pub fn split_per_key(spec: &CommandSpec, args: &[Bytes]) -> Option<Vec<Vec<Bytes>>> {
    let part = |p: usize| -> Vec<Bytes> {
        match spec.name {
            "mget" => vec![Bytes::from_static(b"GET"), args[p].clone()],
            "mset" => vec![
                Bytes::from_static(b"SET"),
                args[p].clone(),
                args[p + 1].clone(),
            ],
            _ => vec![args[0].clone(), args[p].clone()],
        }
    };
    match spec.name {
        "mget" | "mset" | "del" | "unlink" | "exists" | "touch" => {
            Some(key_positions(spec, args.len()).map(part).collect())
        }
        _ => None,
    }
}

/// Routes a keyed command: `None` to run it here, or the error reply (`-CROSSSLOT`,
/// `-MOVED`, `-CLUSTERDOWN`) that Redis Cluster would send.
pub fn check(
    hook: &dyn ClusterHook,
    spec: &CommandSpec,
    session: &Session,
    args: &[Bytes],
) -> Option<Reply> {
    let mut slot = None;
    for pos in key_positions(spec, args.len()) {
        let s = store::key_slot(&args[pos]);
        match slot {
            None => slot = Some(s),
            Some(prev) if prev != s => {
                return Some(Reply::Error(
                    "CROSSSLOT Keys in request don't hash to the same slot".into(),
                ))
            }
            Some(_) => {}
        }
    }
    let slot = slot?;
    let write = spec.flags.contains(&"write");
    match hook.route(slot, write, session.readonly) {
        Route::Local => None,
        Route::Moved { slot, addr } => Some(Reply::error_owned(format!("MOVED {slot} {addr}"))),
        Route::Migrating { slot, addr } => {
            let positions: Vec<usize> = key_positions(spec, args.len()).collect();
            let here = positions
                .iter()
                .filter(|&&p| hook.has_key(&args[p]))
                .count();
            if here == positions.len() {
                None
            } else if here == 0 {
                Some(Reply::error_owned(format!("ASK {slot} {addr}")))
            } else {
                Some(Reply::Error(
                    "TRYAGAIN Multiple keys request during rehashing of slot".into(),
                ))
            }
        }
        Route::Importing { slot, addr } => {
            if !session.asking {
                return Some(Reply::error_owned(format!("MOVED {slot} {addr}")));
            }
            if write {
                for p in key_positions(spec, args.len()) {
                    hook.note_import_write(&args[p]);
                }
            }
            None
        }
        Route::Down(text) => Some(Reply::Error(text.into())),
    }
}

const DISABLED: &str = "ERR This instance has cluster support disabled";

/// `CLUSTER <subcommand> ...`.
pub fn cluster(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match ctx.node.cluster.get() {
        Some(hook) => hook.clone().command(ctx, args),
        None => Reply::Error(DISABLED.into()),
    }
}

/// `READONLY`: lets a replica serve this connection's reads.
pub fn readonly(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Reply {
    if ctx.node.cluster.get().is_none() {
        return Reply::Error(DISABLED.into());
    }
    ctx.session.readonly = true;
    Reply::ok()
}

/// `READWRITE`: undoes `READONLY`.
pub fn readwrite(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Reply {
    if ctx.node.cluster.get().is_none() {
        return Reply::Error(DISABLED.into());
    }
    ctx.session.readonly = false;
    Reply::ok()
}

/// `WAIT numreplicas timeout` run synchronously: a standalone node has no replicas and
/// answers 0 at once. (In cluster mode the connection runs `WAIT` itself, asynchronously.)
pub fn wait(_ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let parse = |a: &Bytes| std::str::from_utf8(a).ok()?.parse::<i64>().ok();
    match (parse(&args[1]), parse(&args[2])) {
        (Some(_), Some(t)) if t < 0 => Reply::Error("ERR timeout is negative".into()),
        (Some(_), Some(_)) => Reply::Integer(0),
        _ => Reply::Error("ERR value is not an integer or out of range".into()),
    }
}

/// `ASKING`: the next command may touch a slot being imported here.
pub fn asking(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Reply {
    if ctx.node.cluster.get().is_none() {
        return Reply::Error(DISABLED.into());
    }
    ctx.session.asking = true;
    Reply::ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{lookup, COMMANDS};

    /// This node is the primary of slot 12182 (`foo`) and a replica of slot 5061 (`bar`);
    /// every other slot belongs to 127.0.0.1:7001; slot 0 is not served.
    #[derive(Debug)]
    struct FakeCluster;

    impl ClusterHook for FakeCluster {
        fn route(&self, slot: u16, write: bool, readonly: bool) -> Route {
            match slot {
                12182 => Route::Local,
                5061 if readonly && !write => Route::Local,
                // `apple` is migrating from here to 7002; `x` is imported here from 7001.
                7092 => Route::Migrating {
                    slot,
                    addr: "127.0.0.1:7002".into(),
                },
                16287 => Route::Importing {
                    slot,
                    addr: "127.0.0.1:7001".into(),
                },
                0 => Route::Down("CLUSTERDOWN Hash slot not served"),
                _ => Route::Moved {
                    slot,
                    addr: "127.0.0.1:7001".into(),
                },
            }
        }

        fn command(&self, _ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Reply {
            Reply::ok()
        }

        fn has_key(&self, key: &[u8]) -> bool {
            key == b"apple"
        }
    }

    fn route(session: &Session, args: &[&str]) -> Option<Reply> {
        let args: Vec<Bytes> = args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let spec = &COMMANDS[lookup(&args[0]).expect("known command")];
        check(&FakeCluster, spec, session, &args)
    }

    fn session() -> Session {
        let unspecified = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        Session::new(std::sync::Arc::new(crate::ClientInfo::new(
            1,
            unspecified,
            unspecified,
        )))
    }

    fn error(text: &str) -> Option<Reply> {
        Some(Reply::Error(text.to_string().into()))
    }

    #[test]
    fn keys_owned_here_run_and_others_are_moved_as_redis_words_it() {
        let s = session();
        assert_eq!(route(&s, &["GET", "foo"]), None);
        assert_eq!(route(&s, &["SET", "{foo}x", "1"]), None);
        assert_eq!(
            route(&s, &["GET", "hello"]),
            error("MOVED 866 127.0.0.1:7001")
        );
        assert_eq!(route(&s, &["MGET", "foo", "{foo}b"]), None);
        assert_eq!(
            route(&s, &["MGET", "foo", "bar"]),
            error("CROSSSLOT Keys in request don't hash to the same slot")
        );
        // MSET's keys are every other argument: the values don't count.
        assert_eq!(route(&s, &["MSET", "foo", "bar", "{foo}y", "hello"]), None);
        assert_eq!(route(&s, &["PING"]), None);
        assert_eq!(route(&s, &["DBSIZE"]), None);
    }

    #[test]
    fn a_replica_serves_reads_only_after_readonly() {
        let mut s = session();
        assert_eq!(
            route(&s, &["GET", "bar"]),
            error("MOVED 5061 127.0.0.1:7001")
        );
        s.readonly = true;
        assert_eq!(route(&s, &["GET", "bar"]), None);
        assert_eq!(
            route(&s, &["SET", "bar", "1"]),
            error("MOVED 5061 127.0.0.1:7001")
        );
    }

    #[test]
    fn a_migrating_slot_serves_keys_still_here_and_asks_for_the_others() {
        let s = session();
        assert_eq!(store::key_slot(b"{apple}x"), 7092);
        assert_eq!(route(&s, &["GET", "apple"]), None);
        assert_eq!(route(&s, &["SET", "apple", "1"]), None);
        assert_eq!(
            route(&s, &["GET", "{apple}x"]),
            error("ASK 7092 127.0.0.1:7002")
        );
        assert_eq!(
            route(&s, &["MGET", "apple", "{apple}x"]),
            error("TRYAGAIN Multiple keys request during rehashing of slot")
        );
    }

    #[test]
    fn an_importing_slot_serves_only_after_asking() {
        let mut s = session();
        assert_eq!(store::key_slot(b"x"), 16287);
        assert_eq!(
            route(&s, &["GET", "x"]),
            error("MOVED 16287 127.0.0.1:7001")
        );
        s.asking = true;
        assert_eq!(route(&s, &["SET", "x", "1"]), None);
        // ASKING means nothing for a slot that isn't imported here.
        assert_eq!(
            route(&s, &["GET", "{apple}x"]),
            error("ASK 7092 127.0.0.1:7002")
        );
        assert_eq!(
            route(&s, &["GET", "hello"]),
            error("MOVED 866 127.0.0.1:7001")
        );
        assert_eq!(route(&s, &["GET", "foo"]), None);
    }

    #[test]
    fn unserved_slots_are_down() {
        let s = session();
        let key_in_slot_0 = "{06S}";
        assert_eq!(store::key_slot(key_in_slot_0.as_bytes()), 0);
        assert_eq!(
            route(&s, &["GET", key_in_slot_0]),
            error("CLUSTERDOWN Hash slot not served")
        );
    }
}
