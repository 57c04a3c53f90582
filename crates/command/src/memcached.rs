// Hot path: every memcached request is executed here.

//! The memcached text protocol over the shared store.
//!
//! A key written with RESP is readable with memcached and the other way round: both go to the
//! same [`store::Store`]. memcached's client flags and CAS values are kept per item (RESP
//! writes store flags 0). memcached's exptime rules apply: 0 never expires, up to 30 days is
//! relative, larger values are absolute Unix times, and a negative exptime means "already
//! expired" (a store with one deletes the key).
//!
//! The meta commands (`mg`, `ms`, `md`, `ma`, `mn`) support the return flags `v c f k s t O
//! q b`, `T` (update TTL), `N` (vivify on miss), `R` (recache when the TTL is below a
//! threshold), `I` (invalidate: mark stale instead of delete), `C` (compare CAS), `M` modes,
//! `F`, `J` and `D`. Stampede protection works as memcached's: an item is stale after `md k
//! I`, or due for recache under `R`; the first client to fetch it gets `W` (it won the right
//! to recompute) and later ones `Z` (a winner exists), all with `X` while it is stale; a fresh
//! write clears both. The `h`, `l` and `u` flags are accepted and ignored (items keep no
//! access history).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use bytes::{Bytes, BytesMut};
use memcache::encode::{self, MetaStatus, Status};
use memcache::{MetaFlags, Request, StoreMode};
use store::{Mutation, NewItem, WriteError};

use crate::node::Node;

/// The version `version` and `stats` report: the memcached release whose protocol this
/// follows, so clients enable the meta commands.
pub const MEMCACHED_COMPAT_VERSION: &str = "1.6.21";

/// Meta bit: the item was invalidated (`md ... I`) and is served stale.
const STALE: u8 = 1;
/// Meta bit: a client has been sent the win token (`W`) for this item.
const WIN_SENT: u8 = 2;

/// memcached's boundary between relative and absolute exptimes: 30 days.
const RELATIVE_LIMIT_SECS: i64 = 60 * 60 * 24 * 30;

/// memcached's counters (`stats`).
#[derive(Debug, Default)]
pub struct McStats {
    /// Keys requested by retrieval commands.
    pub cmd_get: AtomicU64,
    /// Storage commands.
    pub cmd_set: AtomicU64,
    /// `touch` and `gat` commands.
    pub cmd_touch: AtomicU64,
    /// `flush_all` commands.
    pub cmd_flush: AtomicU64,
    /// Retrievals that found their key.
    pub get_hits: AtomicU64,
    /// Retrievals that found nothing.
    pub get_misses: AtomicU64,
    /// `delete` of a present key.
    pub delete_hits: AtomicU64,
    /// `delete` of an absent key.
    pub delete_misses: AtomicU64,
    /// `incr` of a present key.
    pub incr_hits: AtomicU64,
    /// `incr` of an absent key.
    pub incr_misses: AtomicU64,
    /// `decr` of a present key.
    pub decr_hits: AtomicU64,
    /// `decr` of an absent key.
    pub decr_misses: AtomicU64,
    /// `cas` that stored.
    pub cas_hits: AtomicU64,
    /// `cas` of an absent key.
    pub cas_misses: AtomicU64,
    /// `cas` whose unique no longer matched.
    pub cas_badval: AtomicU64,
    /// `touch` of a present key.
    pub touch_hits: AtomicU64,
    /// `touch` of an absent key.
    pub touch_misses: AtomicU64,
    /// Items stored since start.
    pub total_items: AtomicU64,
    /// Unix milliseconds at which a delayed `flush_all` takes effect; 0 when none is pending.
    pub flush_at_ms: AtomicU64,
}

impl McStats {
    /// Returns the counters `stats reset` zeroes (all but the pending flush time).
    fn counters(&self) -> [&AtomicU64; 18] {
        [
            &self.cmd_get,
            &self.cmd_set,
            &self.cmd_touch,
            &self.cmd_flush,
            &self.get_hits,
            &self.get_misses,
            &self.delete_hits,
            &self.delete_misses,
            &self.incr_hits,
            &self.incr_misses,
            &self.decr_hits,
            &self.decr_misses,
            &self.cas_hits,
            &self.cas_misses,
            &self.cas_badval,
            &self.touch_hits,
            &self.touch_misses,
            &self.total_items,
        ]
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

/// When an exptime says an item expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Never,
    At(u64),
    /// Already expired: a store deletes the key.
    Past,
}

fn expiry(exptime: i64, now_ms: u64) -> Expiry {
    let now = now_ms as i64;
    match exptime {
        0 => Expiry::Never,
        t if t < 0 => Expiry::Past,
        t if t <= RELATIVE_LIMIT_SECS => Expiry::At((now + t * 1000) as u64),
        t if t.saturating_mul(1000) <= now => Expiry::Past,
        t => Expiry::At(t.saturating_mul(1000) as u64),
    }
}

impl Expiry {
    /// The deadline to store: `None` never expires, and a past exptime becomes a deadline at
    /// the epoch, so the item is expired from the moment it is written.
    fn deadline(self) -> Option<u64> {
        match self {
            Expiry::At(at) => Some(at),
            Expiry::Past => Some(1),
            Expiry::Never => None,
        }
    }
}

/// What the connection does after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep serving.
    Continue,
    /// Close the connection (`quit`).
    Close,
}

/// Runs one request, appending its reply (if any) to `out`.
pub fn execute(node: &Node, request: Request, now_ms: u64, out: &mut BytesMut) -> Flow {
    let stats = &node.mc_stats;
    match request {
        Request::Get {
            keys,
            with_cas,
            touch_exptime,
        } => {
            get(node, &keys, with_cas, touch_exptime, now_ms, out);
        }
        Request::Store {
            mode,
            key,
            flags,
            exptime,
            data,
            cas_unique,
            noreply,
        } => {
            bump(&stats.cmd_set);
            let reply = store(
                node,
                mode,
                &key,
                flags,
                expiry(exptime, now_ms),
                data,
                cas_unique,
                now_ms,
            );
            if !noreply {
                out.extend_from_slice(reply);
            }
        }
        Request::Delete { key, noreply } => {
            let deleted = node.store.remove(&key, now_ms).is_some();
            bump(if deleted {
                &stats.delete_hits
            } else {
                &stats.delete_misses
            });
            if !noreply {
                encode::status(
                    out,
                    if deleted {
                        Status::Deleted
                    } else {
                        Status::NotFound
                    },
                );
            }
        }
        Request::Arithmetic {
            key,
            incr,
            delta,
            noreply,
        } => {
            let result = arithmetic(node, &key, incr, delta, ArithOptions::default(), now_ms);
            let counters = if incr {
                (&stats.incr_hits, &stats.incr_misses)
            } else {
                (&stats.decr_hits, &stats.decr_misses)
            };
            bump(if matches!(result, Arith::NotFound) {
                counters.1
            } else {
                counters.0
            });
            if !noreply {
                match result {
                    Arith::Value(n, _, _) => encode::number(out, n),
                    Arith::NotFound => encode::status(out, Status::NotFound),
                    Arith::NonNumeric => {
                        encode::client_error(out, "cannot increment or decrement non-numeric value")
                    }
                    Arith::Refused(err) => write_error(out, err),
                    Arith::CasMismatch => encode::status(out, Status::Exists),
                }
            }
        }
        Request::Touch {
            key,
            exptime,
            noreply,
        } => {
            bump(&stats.cmd_touch);
            let touched = touch(node, &key, expiry(exptime, now_ms), now_ms).is_some();
            bump(if touched {
                &stats.touch_hits
            } else {
                &stats.touch_misses
            });
            if !noreply {
                encode::status(
                    out,
                    if touched {
                        Status::Touched
                    } else {
                        Status::NotFound
                    },
                );
            }
        }
        Request::FlushAll {
            delay_secs,
            noreply,
        } => {
            bump(&stats.cmd_flush);
            if delay_secs <= 0 {
                node.store.clear();
                stats.flush_at_ms.store(0, Relaxed);
            } else {
                // The server's expiry task clears the store when this time comes.
                stats
                    .flush_at_ms
                    .store(now_ms + delay_secs as u64 * 1000, Relaxed);
            }
            if !noreply {
                encode::status(out, Status::Ok);
            }
        }
        Request::Version => encode::version(out, MEMCACHED_COMPAT_VERSION.as_bytes()),
        Request::Verbosity { noreply, .. } => {
            if !noreply {
                encode::status(out, Status::Ok);
            }
        }
        Request::Stats { group, args } => stats_reply(node, group.as_deref(), &args, now_ms, out),
        Request::Quit => return Flow::Close,
        Request::MetaGet { key, flags } => meta_get(node, &key, &flags, now_ms, out),
        Request::MetaSet { key, data, flags } => meta_set(node, &key, data, &flags, now_ms, out),
        Request::MetaDelete { key, flags } => meta_delete(node, &key, &flags, now_ms, out),
        Request::MetaArithmetic { key, flags } => meta_arithmetic(node, &key, &flags, now_ms, out),
        Request::MetaNoop => {
            encode::meta(out, MetaStatus::Mn);
        }
    }
    Flow::Continue
}

fn write_error(out: &mut BytesMut, err: WriteError) {
    match err {
        WriteError::ValueTooLarge => encode::server_error(out, "object too large for cache"),
        WriteError::OutOfMemory => encode::server_error(out, "out of memory storing object"),
    }
}

fn get(
    node: &Node,
    keys: &[Bytes],
    with_cas: bool,
    touch_exptime: Option<i64>,
    now_ms: u64,
    out: &mut BytesMut,
) {
    let stats = &node.mc_stats;
    for key in keys {
        // gat/gats count as touches only, as in memcached.
        if touch_exptime.is_none() {
            bump(&stats.cmd_get);
        }
        let item = match touch_exptime {
            Some(exptime) => {
                bump(&stats.cmd_touch);
                let item = touch(node, key, expiry(exptime, now_ms), now_ms);
                bump(if item.is_some() {
                    &stats.touch_hits
                } else {
                    &stats.touch_misses
                });
                item
            }
            None => node.store.get(key, now_ms),
        };
        let counted = touch_exptime.is_none();
        match item {
            Some(item) => {
                if counted {
                    bump(&stats.get_hits);
                }
                encode::value(
                    out,
                    key,
                    item.flags,
                    &item.value,
                    with_cas.then_some(item.cas),
                );
            }
            None if counted => bump(&stats.get_misses),
            None => {}
        }
    }
    encode::end(out);
}

/// Sets a key's expiry and returns its item (as it was read), or `None` if absent.
fn touch(node: &Node, key: &[u8], expiry: Expiry, now_ms: u64) -> Option<store::Item> {
    let result = node.store.mutate(key, now_ms, |old| {
        let item = old.map(|o| o.to_item());
        match (old, expiry) {
            (None, _) => Mutation::Keep(None),
            (Some(_), Expiry::Past) => Mutation::Remove(item),
            (Some(_), e) => Mutation::SetExpiry(e.deadline(), item),
        }
    });
    result.unwrap_or(None)
}

#[allow(clippy::too_many_arguments)]
fn store(
    node: &Node,
    mode: StoreMode,
    key: &[u8],
    flags: u32,
    expiry: Expiry,
    data: Bytes,
    cas_unique: u64,
    now_ms: u64,
) -> &'static [u8] {
    let stats = &node.mc_stats;
    let max_value = node.store.config().max_value_bytes;
    let result = node.store.mutate(key, now_ms, |old| {
        let put = |value: Bytes, flags: u32, deadline: Option<u64>| match expiry {
            Expiry::Past if !matches!(mode, StoreMode::Append | StoreMode::Prepend) => {
                Mutation::Remove(Status::Stored)
            }
            _ => Mutation::Put(
                NewItem {
                    value,
                    expires_at_ms: deadline,
                    flags,
                    meta: 0,
                },
                Status::Stored,
            ),
        };
        match (mode, old) {
            (StoreMode::Add, Some(_)) | (StoreMode::Replace, None) => {
                Mutation::Keep(Status::NotStored)
            }
            (StoreMode::Append | StoreMode::Prepend, None) => Mutation::Keep(Status::NotStored),
            // Growing past the value limit is "not stored", as memcached; the old value stays.
            (StoreMode::Append | StoreMode::Prepend, Some(o))
                if o.value.len() + data.len() > max_value =>
            {
                Mutation::Keep(Status::NotStored)
            }
            (StoreMode::Append | StoreMode::Prepend, Some(o)) => {
                // Flags and exptime of the request are ignored: the item keeps its own.
                let joined = if mode == StoreMode::Append {
                    [o.value, &data].concat()
                } else {
                    [&data[..], o.value].concat()
                };
                put(Bytes::from(joined), o.flags, o.expires_at_ms)
            }
            (StoreMode::Cas, None) => Mutation::Keep(Status::NotFound),
            (StoreMode::Cas, Some(o)) if o.cas != cas_unique => Mutation::Keep(Status::Exists),
            _ => put(data.clone(), flags, expiry.deadline()),
        }
    });
    match result {
        Ok(status) => {
            match (mode, status) {
                (_, Status::Stored) => bump(&stats.total_items),
                (StoreMode::Cas, Status::NotFound) => bump(&stats.cas_misses),
                (StoreMode::Cas, Status::Exists) => bump(&stats.cas_badval),
                _ => {}
            }
            if mode == StoreMode::Cas && status == Status::Stored {
                bump(&stats.cas_hits);
            }
            status.wire()
        }
        Err(WriteError::ValueTooLarge) => b"SERVER_ERROR object too large for cache\r\n",
        Err(WriteError::OutOfMemory) => b"SERVER_ERROR out of memory storing object\r\n",
    }
}

/// The outcome of an increment or decrement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arith {
    /// The new value, the item's CAS and its deadline afterwards.
    Value(u64, u64, Option<u64>),
    NotFound,
    NonNumeric,
    CasMismatch,
    Refused(WriteError),
}

/// Parses a stored counter as memcached's `safe_strtoull` does (C's `strtoull`, then its
/// checks): leading whitespace, an optional `+` or `-`, decimal digits, then the end or a
/// whitespace or NUL byte (C's `isspace`, vertical tab and form feed included). A `-` is refused
/// unless the wrapped value stays below 2^63, as memcached's check of the sign does: `-0`
/// is 0, `-5` is refused.
fn parse_counter(value: &[u8]) -> Option<u64> {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let start = value.iter().position(|b| !is_space(b))?;
    let mut text = &value[start..];
    let negative = text.first() == Some(&b'-');
    if matches!(text.first(), Some(b'+' | b'-')) {
        text = &text[1..];
    }
    let digits_end = text
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    // strtoull stops at a NUL byte as at the end of the string.
    if digits_end == 0 || !text.get(digits_end).is_none_or(|b| *b == 0 || is_space(b)) {
        return None;
    }
    let magnitude: u64 = std::str::from_utf8(&text[..digits_end])
        .ok()?
        .parse()
        .ok()?;
    if !negative {
        return Some(magnitude);
    }
    let wrapped = magnitude.wrapping_neg();
    (wrapped < 1 << 63).then_some(wrapped)
}

/// What `ma` adds to a plain `incr`/`decr`.
#[derive(Debug, Clone, Copy, Default)]
struct ArithOptions {
    /// Create a missing key holding `initial` with this expiry (`N`).
    vivify: Option<Expiry>,
    /// The value a vivified key starts from (`J`).
    initial: u64,
    /// Only act if the item's CAS is this (`C`).
    compare_cas: Option<u64>,
    /// Replace the item's TTL (`T`).
    new_ttl: Option<Expiry>,
}

/// Increments (wrapping at 2^64) or decrements (stopping at 0) a counter, keeping its flags
/// and TTL.
fn arithmetic(
    node: &Node,
    key: &[u8],
    incr: bool,
    delta: u64,
    options: ArithOptions,
    now_ms: u64,
) -> Arith {
    let result = node.store.mutate_cas(key, now_ms, |old| {
        let Some(o) = old else {
            return match options.vivify {
                Some(e) => {
                    let value = Bytes::from(options.initial.to_string());
                    let item = NewItem {
                        value,
                        expires_at_ms: e.deadline(),
                        flags: 0,
                        meta: 0,
                    };
                    Mutation::Put(item, Arith::Value(options.initial, 0, e.deadline()))
                }
                None => Mutation::Keep(Arith::NotFound),
            };
        };
        if options.compare_cas.is_some_and(|c| c != o.cas) {
            return Mutation::Keep(Arith::CasMismatch);
        }
        let Some(current) = parse_counter(o.value) else {
            return Mutation::Keep(Arith::NonNumeric);
        };
        let next = if incr {
            current.wrapping_add(delta)
        } else {
            current.saturating_sub(delta)
        };
        let expires_at_ms = options.new_ttl.map_or(o.expires_at_ms, Expiry::deadline);
        let item = NewItem {
            value: Bytes::from(next.to_string()),
            expires_at_ms,
            flags: o.flags,
            meta: 0,
        };
        Mutation::Put(item, Arith::Value(next, 0, expires_at_ms))
    });
    match result {
        Ok((Arith::Value(n, _, deadline), cas)) => Arith::Value(n, cas.unwrap_or(0), deadline),
        Ok((outcome, _)) => outcome,
        Err(err) => Arith::Refused(err),
    }
}

/// Returns the `T`-style expiry token of a meta flag, if given and valid.
fn meta_expiry(flags: &MetaFlags, flag: u8, now_ms: u64) -> Option<Expiry> {
    flags
        .int_token(flag)
        .and_then(Result::ok)
        .map(|t| expiry(t, now_ms))
}

/// What meta replies report about an item.
#[derive(Debug, Clone, Copy)]
struct ItemView {
    cas: u64,
    flags: u32,
    size: usize,
    expires_at_ms: Option<u64>,
}

/// Appends the return flags a command supports (`returns`, from `c f s t`; `O` and `k` are
/// always echoed) in request order, as memcached does.
fn return_flags(
    line: &mut encode::MetaLine<'_>,
    flags: &MetaFlags,
    returns: &[u8],
    key: &[u8],
    item: Option<&ItemView>,
    now_ms: u64,
) {
    for (flag, token) in flags.iter() {
        match (flag, item) {
            (b'O', _) => {
                line.flag(b'O', token);
            }
            (b'k', _) => {
                line.key(key, flags.has(b'b'));
            }
            (f, Some(i)) if returns.contains(&f) => match f {
                b'c' => {
                    line.flag_u64(b'c', i.cas);
                }
                b'f' => {
                    line.flag_u64(b'f', u64::from(i.flags));
                }
                b's' => {
                    line.flag_u64(b's', i.size as u64);
                }
                _ => {
                    let ttl = i
                        .expires_at_ms
                        .map_or(-1, |at| at.saturating_sub(now_ms).div_ceil(1000) as i64);
                    line.flag_i64(b't', ttl);
                }
            },
            _ => {}
        }
    }
}

/// What `mg` found.
enum Found {
    Miss,
    Hit {
        value: Bytes,
        view: ItemView,
        win: bool,
        lost: bool,
        stale: bool,
    },
}

fn meta_get(node: &Node, key: &[u8], flags: &MetaFlags, now_ms: u64, out: &mut BytesMut) {
    let stats = &node.mc_stats;
    bump(&stats.cmd_get);
    let vivify = meta_expiry(flags, b'N', now_ms);
    let new_ttl = meta_expiry(flags, b'T', now_ms);
    let recache_below_secs = flags.int_token(b'R').and_then(Result::ok);
    let want_value = flags.has(b'v');
    let result = node.store.mutate_cas(key, now_ms, |old| {
        let Some(o) = old else {
            return match vivify {
                // A miss with N creates an empty placeholder and hands this client the win.
                Some(e) => {
                    let deadline = e.deadline();
                    let item = NewItem {
                        value: Bytes::new(),
                        expires_at_ms: deadline,
                        flags: 0,
                        meta: WIN_SENT,
                    };
                    let view = ItemView {
                        cas: 0,
                        flags: 0,
                        size: 0,
                        expires_at_ms: deadline,
                    };
                    Mutation::Put(
                        item,
                        Found::Hit {
                            value: Bytes::new(),
                            view,
                            win: true,
                            lost: false,
                            stale: false,
                        },
                    )
                }
                None => Mutation::Keep(Found::Miss),
            };
        };
        let stale = o.meta & STALE != 0;
        let ttl_left_secs = o.expires_at_ms.map(|at| at.saturating_sub(now_ms) / 1000);
        let due = recache_below_secs.is_some_and(|r| ttl_left_secs.is_some_and(|t| (t as i64) < r));
        // As memcached: once a token went out, everyone else sees Z; otherwise a stale or
        // due item hands this client the win.
        let lost = o.meta & WIN_SENT != 0;
        let win = !lost && (stale || due);
        let meta = if win { o.meta | WIN_SENT } else { o.meta };
        let expires_at_ms = new_ttl.map_or(o.expires_at_ms, Expiry::deadline);
        let value = if want_value {
            Bytes::copy_from_slice(o.value)
        } else {
            Bytes::new()
        };
        let view = ItemView {
            cas: o.cas,
            flags: o.flags,
            size: o.value.len(),
            expires_at_ms,
        };
        let found = Found::Hit {
            value,
            view,
            win,
            lost,
            stale,
        };
        if meta != o.meta || new_ttl.is_some() {
            Mutation::Modify {
                expires_at_ms: new_ttl.map(Expiry::deadline),
                meta: Some(meta),
                result: found,
            }
        } else {
            Mutation::Keep(found)
        }
    });
    match result {
        Ok((
            Found::Hit {
                value,
                mut view,
                win,
                lost,
                stale,
            },
            cas,
        )) => {
            bump(&stats.get_hits);
            view.cas = cas.unwrap_or(view.cas);
            let mut line = if want_value {
                encode::meta_value(out, &value)
            } else {
                encode::meta(out, MetaStatus::Hd)
            };
            return_flags(&mut line, flags, b"cfst", key, Some(&view), now_ms);
            // memcached's order: Z (a token already went out), X (stale), W (you won).
            if lost {
                line.flag(b'Z', b"");
            }
            if stale {
                line.flag(b'X', b"");
            }
            if win {
                line.flag(b'W', b"");
            }
        }
        Ok((Found::Miss, _)) => {
            bump(&stats.get_misses);
            if !flags.has(b'q') {
                let mut line = encode::meta(out, MetaStatus::En);
                return_flags(&mut line, flags, b"", key, None, now_ms);
            }
        }
        Err(err) => write_error(out, err),
    }
}

fn meta_set(
    node: &Node,
    key: &[u8],
    data: Bytes,
    flags: &MetaFlags,
    now_ms: u64,
    out: &mut BytesMut,
) {
    let stats = &node.mc_stats;
    bump(&stats.cmd_set);
    let mode = flags
        .token(b'M')
        .and_then(|t| t.first().copied())
        .unwrap_or(b'S')
        .to_ascii_uppercase();
    let compare_cas = flags.u64_token(b'C').and_then(Result::ok);
    let invalidate = flags.has(b'I');
    let client_flags = flags.u64_token(b'F').and_then(Result::ok).unwrap_or(0) as u32;
    let ttl = meta_expiry(flags, b'T', now_ms).unwrap_or(Expiry::Never);
    let max_value = node.store.config().max_value_bytes;
    let result = node.store.mutate_cas(key, now_ms, |old| {
        // The mode decides first (add ignores C on a missing key, append to nothing is NS),
        // then C is compared, as memcached does.
        match (mode, old) {
            (b'E', Some(_)) | (b'A' | b'P', None) => return Mutation::Keep(MetaStatus::Ns),
            (b'S' | b'R', None) if compare_cas.is_some() => return Mutation::Keep(MetaStatus::Nf),
            (b'R', None) => return Mutation::Keep(MetaStatus::Ns),
            _ => {}
        }
        let mut meta = 0;
        if let (Some(c), Some(o), false) = (compare_cas, old, mode == b'E') {
            if c != o.cas {
                // With I, a write carrying an older CAS still lands, marked stale.
                if invalidate && c < o.cas {
                    meta = STALE;
                } else {
                    return Mutation::Keep(MetaStatus::Ex);
                }
            }
        }
        let (value, item_flags, deadline) = match (mode, old) {
            (b'A' | b'P', Some(o)) if o.value.len() + data.len() > max_value => {
                return Mutation::Keep(MetaStatus::Ns);
            }
            (b'A', Some(o)) => (
                Bytes::from([o.value, &data].concat()),
                o.flags,
                o.expires_at_ms,
            ),
            (b'P', Some(o)) => (
                Bytes::from([&data[..], o.value].concat()),
                o.flags,
                o.expires_at_ms,
            ),
            _ => (data.clone(), client_flags, ttl.deadline()),
        };
        if ttl == Expiry::Past && !matches!(mode, b'A' | b'P') {
            return Mutation::Remove(MetaStatus::Hd);
        }
        Mutation::Put(
            NewItem {
                value,
                expires_at_ms: deadline,
                flags: item_flags,
                meta,
            },
            MetaStatus::Hd,
        )
    });
    match result {
        Ok((status, cas)) => {
            if status == MetaStatus::Hd {
                bump(&stats.total_items);
                if flags.has(b'q') {
                    return;
                }
            }
            let mut line = encode::meta(out, status);
            // As memcached: `c` reports the new item's CAS, and 0 when nothing was stored
            // (NS, NF, EX), whatever the item there holds.
            let stored = if status == MetaStatus::Hd {
                cas
            } else {
                Some(0)
            };
            let view = stored.map(|cas| ItemView {
                cas,
                flags: client_flags,
                size: data.len(),
                expires_at_ms: None,
            });
            return_flags(&mut line, flags, b"c", key, view.as_ref(), now_ms);
        }
        Err(err) => write_error(out, err),
    }
}

fn meta_delete(node: &Node, key: &[u8], flags: &MetaFlags, now_ms: u64, out: &mut BytesMut) {
    let stats = &node.mc_stats;
    let compare_cas = flags.u64_token(b'C').and_then(Result::ok);
    let invalidate = flags.has(b'I');
    let remove_value = flags.has(b'x');
    let new_ttl = meta_expiry(flags, b'T', now_ms);
    let result = node.store.mutate(key, now_ms, |old| match old {
        None => Mutation::Keep(MetaStatus::Nf),
        Some(o) if compare_cas.is_some_and(|c| c != o.cas) => Mutation::Keep(MetaStatus::Ex),
        // Invalidate: keep serving the old value, marked stale, until someone recomputes it.
        Some(o) if invalidate => Mutation::Modify {
            expires_at_ms: new_ttl.map(Expiry::deadline),
            meta: Some((o.meta | STALE) & !WIN_SENT),
            result: MetaStatus::Hd,
        },
        // x: drop the value but keep the item (its flags and TTL), as current memcached.
        Some(o) if remove_value => Mutation::Put(
            NewItem {
                value: Bytes::new(),
                expires_at_ms: o.expires_at_ms,
                flags: o.flags,
                meta: 0,
            },
            MetaStatus::Hd,
        ),
        Some(_) => Mutation::Remove(MetaStatus::Hd),
    });
    let status = result.unwrap_or(MetaStatus::Nf);
    bump(if status == MetaStatus::Nf {
        &stats.delete_misses
    } else {
        &stats.delete_hits
    });
    // q hides success only: a miss or a CAS mismatch is still reported.
    if flags.has(b'q') && status == MetaStatus::Hd {
        return;
    }
    let mut line = encode::meta(out, status);
    return_flags(&mut line, flags, b"", key, None, now_ms);
}

fn meta_arithmetic(node: &Node, key: &[u8], flags: &MetaFlags, now_ms: u64, out: &mut BytesMut) {
    let stats = &node.mc_stats;
    let mode = flags
        .token(b'M')
        .and_then(|t| t.first().copied())
        .unwrap_or(b'I');
    let incr = !matches!(mode, b'D' | b'd' | b'-');
    let options = ArithOptions {
        vivify: meta_expiry(flags, b'N', now_ms),
        initial: flags.u64_token(b'J').and_then(Result::ok).unwrap_or(0),
        compare_cas: flags.u64_token(b'C').and_then(Result::ok),
        new_ttl: meta_expiry(flags, b'T', now_ms),
    };
    let delta = flags.u64_token(b'D').and_then(Result::ok).unwrap_or(1);
    let result = arithmetic(node, key, incr, delta, options, now_ms);
    let counters = if incr {
        (&stats.incr_hits, &stats.incr_misses)
    } else {
        (&stats.decr_hits, &stats.decr_misses)
    };
    bump(if result == Arith::NotFound {
        counters.1
    } else {
        counters.0
    });
    // q hides success (HD, or VA with v); misses and mismatches are still reported.
    let quiet = flags.has(b'q');
    let status_line = |out: &mut BytesMut, status| {
        let mut line = encode::meta(out, status);
        return_flags(&mut line, flags, b"", key, None, now_ms);
    };
    match result {
        Arith::Value(_, _, _) if quiet => {}
        Arith::Value(n, cas, deadline) => {
            let text = n.to_string();
            let view = ItemView {
                cas,
                flags: 0,
                size: text.len(),
                expires_at_ms: deadline,
            };
            let mut line = if flags.has(b'v') {
                encode::meta_value(out, text.as_bytes())
            } else {
                encode::meta(out, MetaStatus::Hd)
            };
            return_flags(&mut line, flags, b"ct", key, Some(&view), now_ms);
        }
        Arith::NotFound => status_line(out, MetaStatus::Nf),
        Arith::CasMismatch => status_line(out, MetaStatus::Ex),
        Arith::NonNumeric => {
            encode::client_error(out, "cannot increment or decrement non-numeric value")
        }
        Arith::Refused(err) => write_error(out, err),
    }
}

fn stats_reply(node: &Node, group: Option<&[u8]>, args: &[Bytes], now_ms: u64, out: &mut BytesMut) {
    let s = &node.mc_stats;
    let store = node.store.stats();
    let config = node.store.config();
    let load = |c: &AtomicU64| c.load(Relaxed);
    match group {
        None => {
            let uptime = node.started.elapsed().as_secs();
            let numbers: [(&str, u64); 31] = [
                ("pid", u64::from(std::process::id())),
                ("uptime", uptime),
                ("time", now_ms / 1000),
                ("pointer_size", 64),
                ("curr_connections", node.client_count() as u64),
                ("total_connections", load(&node.stats.connections_received)),
                (
                    "rejected_connections",
                    load(&node.stats.rejected_connections),
                ),
                ("cmd_get", load(&s.cmd_get)),
                ("cmd_set", load(&s.cmd_set)),
                ("cmd_flush", load(&s.cmd_flush)),
                ("cmd_touch", load(&s.cmd_touch)),
                ("get_hits", load(&s.get_hits)),
                ("get_misses", load(&s.get_misses)),
                ("get_expired", 0),
                ("delete_misses", load(&s.delete_misses)),
                ("delete_hits", load(&s.delete_hits)),
                ("incr_misses", load(&s.incr_misses)),
                ("incr_hits", load(&s.incr_hits)),
                ("decr_misses", load(&s.decr_misses)),
                ("decr_hits", load(&s.decr_hits)),
                ("cas_misses", load(&s.cas_misses)),
                ("cas_hits", load(&s.cas_hits)),
                ("cas_badval", load(&s.cas_badval)),
                ("touch_hits", load(&s.touch_hits)),
                ("touch_misses", load(&s.touch_misses)),
                ("bytes_read", load(&node.stats.net_input_bytes)),
                ("bytes_written", load(&node.stats.net_output_bytes)),
                ("limit_maxbytes", config.max_memory_bytes as u64),
                ("threads", node.identity.io_threads as u64),
                ("bytes", store.used_bytes as u64),
                ("curr_items", store.keys as u64),
            ];
            for (name, value) in numbers {
                if name == "time" {
                    encode::stat(out, b"version", MEMCACHED_COMPAT_VERSION.as_bytes());
                }
                encode::stat_u64(out, name.as_bytes(), value);
            }
            encode::stat_u64(out, b"total_items", load(&s.total_items));
            encode::stat_u64(out, b"expired_unfetched", 0);
            encode::stat_u64(out, b"evicted_unfetched", 0);
            encode::stat_u64(out, b"evictions", store.evicted);
            encode::stat_u64(out, b"reclaimed", store.expired);
        }
        Some(g) if g.eq_ignore_ascii_case(b"settings") => {
            encode::stat_u64(out, b"maxbytes", config.max_memory_bytes as u64);
            encode::stat_u64(
                out,
                b"maxconns",
                node.settings.max_clients.load(Relaxed) as u64,
            );
            encode::stat_u64(out, b"tcpport", u64::from(node.identity.memcache_port));
            encode::stat(
                out,
                b"evictions",
                if config.policy == store::EvictionPolicy::NoEviction {
                    b"off"
                } else {
                    b"on"
                },
            );
            encode::stat_u64(out, b"item_size_max", config.max_value_bytes as u64);
            encode::stat_u64(out, b"num_threads", node.identity.io_threads as u64);
            encode::stat(out, b"cas_enabled", b"yes");
            encode::stat_u64(
                out,
                b"idle_timeout",
                node.settings.idle_timeout_secs.load(Relaxed),
            );
        }
        Some(b"reset") => {
            for counter in s.counters() {
                counter.store(0, Relaxed);
            }
            encode::status(out, Status::Reset);
            return;
        }
        Some(b"detail") => {
            match args.first().map(|a| a.as_ref()) {
                Some(b"on" | b"off") => encode::status(out, Status::Ok),
                Some(b"dump") => encode::end(out),
                _ => encode::status(out, Status::Error),
            }
            return;
        }
        // Groups that describe memcached's slab allocator have nothing to say here.
        Some(b"items" | b"slabs" | b"sizes" | b"conns" | b"cachedump" | b"extstore") => {}
        Some(_) => {
            encode::status(out, Status::Error);
            return;
        }
    }
    encode::end(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exptimes_follow_memcached_rules() {
        let now = 1_700_000_000_000;
        assert_eq!(expiry(0, now), Expiry::Never);
        assert_eq!(expiry(-1, now), Expiry::Past);
        assert_eq!(expiry(10, now), Expiry::At(now + 10_000));
        assert_eq!(
            expiry(RELATIVE_LIMIT_SECS, now),
            Expiry::At(now + RELATIVE_LIMIT_SECS as u64 * 1000)
        );
        assert_eq!(expiry(RELATIVE_LIMIT_SECS + 1, now), Expiry::Past);
        assert_eq!(expiry(1_800_000_000, now), Expiry::At(1_800_000_000_000));
    }

    #[test]
    fn counters_parse_like_safe_strtoull() {
        assert_eq!(parse_counter(b"42"), Some(42));
        assert_eq!(parse_counter(b"  7"), Some(7));
        assert_eq!(parse_counter(b"7 "), Some(7));
        assert_eq!(parse_counter(b"+5"), Some(5));
        assert_eq!(parse_counter(b"18446744073709551615"), Some(u64::MAX));
        // Found by tests/compat/diff_random.py against memcached 1.6.
        assert_eq!(parse_counter(b"-0"), Some(0));
        assert_eq!(parse_counter(b"-00"), Some(0));
        assert_eq!(parse_counter(b"3\x0b"), Some(3));
        assert_eq!(parse_counter(b"\x0b3"), Some(3));
        assert_eq!(parse_counter(b"3\xff\xfe"), None);
        assert_eq!(parse_counter(b"3 \xff"), Some(3));
        assert_eq!(parse_counter(b"3\x00\x0c3e"), Some(3));
        for bad in [&b""[..], b"x", b"-1", b"-", b"1x", b"18446744073709551616"] {
            assert_eq!(
                parse_counter(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
