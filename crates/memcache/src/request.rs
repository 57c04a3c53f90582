//! The requests the parser hands to the executor.
//!
//! Keys, data blocks and meta flags are zero-copy slices of the connection's read buffer:
//! they keep that buffer's allocation alive, so an executor that keeps a small value for long
//! should copy it (as the store usually does anyway).

use bytes::Bytes;

use crate::meta::MetaFlags;

/// How a storage command combines its data with what the cache holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreMode {
    /// `set`: store unconditionally.
    Set,
    /// `add`: store only if the key is absent.
    Add,
    /// `replace`: store only if the key is present.
    Replace,
    /// `append`: add the data after the existing value (flags and exptime are ignored).
    Append,
    /// `prepend`: add the data before the existing value (flags and exptime are ignored).
    Prepend,
    /// `cas`: store only if the item's cas unique still equals `cas_unique`.
    Cas,
}

impl StoreMode {
    /// Returns the command name (`set`, `add`, ...).
    pub fn name(self) -> &'static str {
        match self {
            StoreMode::Set => "set",
            StoreMode::Add => "add",
            StoreMode::Replace => "replace",
            StoreMode::Append => "append",
            StoreMode::Prepend => "prepend",
            StoreMode::Cas => "cas",
        }
    }
}

/// One parsed request.
///
/// Exptimes are kept as sent (memcached's 32-bit range is checked): 0 means never, a negative
/// value means already expired, up to 30 days (2,592,000 s) is relative and anything larger is
/// an absolute Unix time. Turning that into an instant is the executor's job, with its clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `get|gets <key>+`, `gat|gats <exptime> <key>*` (and the ancient alias `bget`).
    Get {
        /// The keys, in order; each is answered with a `VALUE` block if present.
        keys: Vec<Bytes>,
        /// `gets`/`gats`: `VALUE` lines carry the cas unique.
        with_cas: bool,
        /// `gat`/`gats`: the new exptime of every key found.
        touch_exptime: Option<i64>,
    },
    /// `set|add|replace|append|prepend <key> <flags> <exptime> <bytes> [noreply]` or
    /// `cas <key> <flags> <exptime> <bytes> <cas unique> [noreply]`, with its data block.
    Store {
        /// Which storage command.
        mode: StoreMode,
        /// The key.
        key: Bytes,
        /// Opaque client flags, stored and returned with the value.
        flags: u32,
        /// The exptime, as sent.
        exptime: i64,
        /// The data block, without its `\r\n`.
        data: Bytes,
        /// The cas unique for [`StoreMode::Cas`]; 0 otherwise.
        cas_unique: u64,
        /// Send no reply.
        noreply: bool,
    },
    /// `delete <key> [0] [noreply]`.
    Delete {
        /// The key.
        key: Bytes,
        /// Send no reply.
        noreply: bool,
    },
    /// `incr|decr <key> <delta> [noreply]`.
    Arithmetic {
        /// The key.
        key: Bytes,
        /// `incr` (true) or `decr` (false).
        incr: bool,
        /// The amount, an unsigned 64-bit decimal.
        delta: u64,
        /// Send no reply.
        noreply: bool,
    },
    /// `touch <key> <exptime> [noreply]`.
    Touch {
        /// The key.
        key: Bytes,
        /// The new exptime, as sent.
        exptime: i64,
        /// Send no reply.
        noreply: bool,
    },
    /// `flush_all [delay] [noreply]`.
    FlushAll {
        /// Seconds until the flush takes effect; 0 or negative means now.
        delay_secs: i64,
        /// Send no reply.
        noreply: bool,
    },
    /// `version`.
    Version,
    /// `verbosity <level> [noreply]`.
    Verbosity {
        /// The requested logging level.
        level: u32,
        /// Send no reply.
        noreply: bool,
    },
    /// `stats [group [args...]]`.
    Stats {
        /// The group (`items`, `slabs`, `settings`, `reset`, ...); `None` for general stats.
        group: Option<Bytes>,
        /// Any further arguments (`stats cachedump 1 100`, `stats detail on`).
        args: Vec<Bytes>,
    },
    /// `quit`: close the connection without a reply.
    Quit,
    /// `mg <key> <flags>*`.
    MetaGet {
        /// The key (base64-decoded when the `b` flag is set).
        key: Bytes,
        /// The flags, in request order.
        flags: MetaFlags,
    },
    /// `ms <key> <datalen> <flags>*` with its data block.
    MetaSet {
        /// The key (base64-decoded when the `b` flag is set).
        key: Bytes,
        /// The data block, without its `\r\n`.
        data: Bytes,
        /// The flags, in request order.
        flags: MetaFlags,
    },
    /// `md <key> <flags>*`.
    MetaDelete {
        /// The key (base64-decoded when the `b` flag is set).
        key: Bytes,
        /// The flags, in request order.
        flags: MetaFlags,
    },
    /// `ma <key> <flags>*`.
    MetaArithmetic {
        /// The key (base64-decoded when the `b` flag is set).
        key: Bytes,
        /// The flags, in request order.
        flags: MetaFlags,
    },
    /// `mn`: answered `MN`, which tells a pipelining client that everything before it was
    /// answered.
    MetaNoop,
}

impl Request {
    /// Returns the command name as sent (`get`, `gats`, `cas`, `mg`, ...), for metrics and logs.
    pub fn command_name(&self) -> &'static str {
        match self {
            Request::Get {
                with_cas,
                touch_exptime,
                ..
            } => match (touch_exptime.is_some(), with_cas) {
                (false, false) => "get",
                (false, true) => "gets",
                (true, false) => "gat",
                (true, true) => "gats",
            },
            Request::Store { mode, .. } => mode.name(),
            Request::Delete { .. } => "delete",
            Request::Arithmetic { incr: true, .. } => "incr",
            Request::Arithmetic { incr: false, .. } => "decr",
            Request::Touch { .. } => "touch",
            Request::FlushAll { .. } => "flush_all",
            Request::Version => "version",
            Request::Verbosity { .. } => "verbosity",
            Request::Stats { .. } => "stats",
            Request::Quit => "quit",
            Request::MetaGet { .. } => "mg",
            Request::MetaSet { .. } => "ms",
            Request::MetaDelete { .. } => "md",
            Request::MetaArithmetic { .. } => "ma",
            Request::MetaNoop => "mn",
        }
    }
}
