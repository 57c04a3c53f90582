// Hot path: GET and SET are most of the traffic.

//! String commands: GET, SET and its variants, counters, APPEND, ranges, multi-key forms.

use bytes::{Bytes, BytesMut};
use resp::Reply;
use store::{ItemRef, Mutation, NewItem};

use super::float::{self, parse_float};
use super::{deadline_ms, int_arg, int_bytes, is, ExpiryUnit};
use crate::errors;
use crate::table::Ctx;

fn bulk_or_nil(value: Option<Bytes>) -> Reply {
    value.map_or(Reply::Nil, Reply::Bulk)
}

fn write(result: store::Result<Reply>) -> Reply {
    result.unwrap_or_else(errors::write_error)
}

/// GET key
pub fn get(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    bulk_or_nil(ctx.node.store.get(&args[1], ctx.now_ms).map(|i| i.value))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Condition {
    Always,
    IfAbsent,
    IfPresent,
}

/// What the expiry options of SET ask for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SetExpiry {
    Clear,
    Keep,
    At(u64),
}

/// The unit of an expiry option word (`EX`, `PX`, `EXAT`, `PXAT`), if it is one.
fn expiry_unit(word: &[u8]) -> Option<ExpiryUnit> {
    match word.to_ascii_lowercase().as_slice() {
        b"ex" => Some(ExpiryUnit::Seconds),
        b"px" => Some(ExpiryUnit::Millis),
        b"exat" => Some(ExpiryUnit::UnixSeconds),
        b"pxat" => Some(ExpiryUnit::UnixMillis),
        _ => None,
    }
}

/// SET key value [NX | XX] [GET] [EX s | PX ms | EXAT s | PXAT ms | KEEPTTL]
///
/// As in Redis, repeating an option is allowed (the last amount wins); combining
/// incompatible ones (NX with XX, two different expiry forms) is a syntax error.
pub fn set(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let mut condition = Condition::Always;
    let mut expiry = SetExpiry::Clear;
    // Which expiry option was given: a unit, or None for KEEPTTL.
    let mut expiry_option: Option<Option<ExpiryUnit>> = None;
    let mut want_old = false;
    // Where the amount of the expiry option is (the last one given wins).
    let mut amount_at = None;
    let mut i = 3;
    while i < args.len() {
        let opt = &args[i];
        let unit = expiry_unit(opt);
        if is(opt, "nx") && condition != Condition::IfPresent {
            condition = Condition::IfAbsent;
        } else if is(opt, "xx") && condition != Condition::IfAbsent {
            condition = Condition::IfPresent;
        } else if is(opt, "get") {
            want_old = true;
        } else if is(opt, "keepttl") && expiry_option.is_none_or(|o| o.is_none()) {
            expiry = SetExpiry::Keep;
            expiry_option = Some(None);
        } else if unit.is_some() && i + 1 < args.len() && expiry_option.is_none_or(|o| o == unit) {
            let Some(unit) = unit else {
                return errors::syntax();
            };
            // The amount is read once every option has been checked: as in Redis, a syntax
            // error anywhere wins over a bad number.
            amount_at = Some(i + 1);
            expiry_option = Some(Some(unit));
            i += 1;
        } else {
            return errors::syntax();
        }
        i += 1;
    }
    if let (Some(at), Some(Some(unit))) = (amount_at, expiry_option) {
        match deadline_ms(&args[at], unit, ctx.now_ms, "set") {
            Ok(at) => expiry = SetExpiry::At(at),
            Err(reply) => return reply,
        }
    }
    let now = ctx.now_ms;
    let value = args[2].clone();
    write(ctx.node.store.mutate(&args[1], now, |old| {
        let old_value = old.map(|o| Bytes::copy_from_slice(o.value));
        let reply = |stored: bool| {
            if want_old {
                bulk_or_nil(old_value.clone())
            } else if stored {
                Reply::ok()
            } else {
                Reply::Nil
            }
        };
        let allowed = match condition {
            Condition::Always => true,
            Condition::IfAbsent => old.is_none(),
            Condition::IfPresent => old.is_some(),
        };
        if !allowed {
            return Mutation::Keep(reply(false));
        }
        let expires_at_ms = match expiry {
            SetExpiry::Clear => None,
            SetExpiry::Keep => old.and_then(|o| o.expires_at_ms),
            SetExpiry::At(at) if at <= now => return Mutation::Remove(reply(true)),
            SetExpiry::At(at) => Some(at),
        };
        Mutation::Put(
            NewItem {
                value,
                expires_at_ms,
                flags: 0,
                meta: 0,
            },
            reply(true),
        )
    }))
}

/// SETNX key value
pub fn setnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let value = args[2].clone();
    write(
        ctx.node
            .store
            .mutate(&args[1], ctx.now_ms, |old| match old {
                Some(_) => Mutation::Keep(Reply::Integer(0)),
                None => Mutation::Put(NewItem::new(value), Reply::Integer(1)),
            }),
    )
}

fn set_with_expiry(ctx: &mut Ctx<'_>, args: &[Bytes], unit: ExpiryUnit, command: &str) -> Reply {
    let at = match deadline_ms(&args[2], unit, ctx.now_ms, command) {
        Ok(at) => at,
        Err(reply) => return reply,
    };
    let item = NewItem {
        value: args[3].clone(),
        expires_at_ms: Some(at),
        flags: 0,
        meta: 0,
    };
    write(
        ctx.node
            .store
            .set(&args[1], item, ctx.now_ms)
            .map(|()| Reply::ok()),
    )
}

/// SETEX key seconds value
pub fn setex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    set_with_expiry(ctx, args, ExpiryUnit::Seconds, "setex")
}

/// PSETEX key milliseconds value
pub fn psetex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    set_with_expiry(ctx, args, ExpiryUnit::Millis, "psetex")
}

/// GETSET key value
pub fn getset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let value = args[2].clone();
    write(ctx.node.store.mutate(&args[1], ctx.now_ms, |old| {
        Mutation::Put(
            NewItem::new(value),
            bulk_or_nil(old.map(|o| Bytes::copy_from_slice(o.value))),
        )
    }))
}

/// GETDEL key
pub fn getdel(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    bulk_or_nil(ctx.node.store.remove(&args[1], ctx.now_ms).map(|i| i.value))
}

/// GETEX key [EX s | PX ms | EXAT s | PXAT ms | PERSIST]
///
/// Option syntax is checked first; a missing key then answers nil before the amount is
/// validated, as in Redis.
pub fn getex(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    // None: leave the TTL; Some(None): persist; Some(Some((unit, amount))): expire.
    let mut change: Option<Option<(ExpiryUnit, &Bytes)>> = None;
    let mut i = 2;
    while i < args.len() {
        let opt = &args[i];
        let unit = expiry_unit(opt);
        if is(opt, "persist") && change.is_none_or(|c| c.is_none()) {
            change = Some(None);
        } else if let (Some(unit), Some(amount)) = (unit, args.get(i + 1)) {
            if change.is_some_and(|c| c.is_none_or(|(u, _)| u != unit)) {
                return errors::syntax();
            }
            change = Some(Some((unit, amount)));
            i += 1;
        } else {
            return errors::syntax();
        }
        i += 1;
    }
    let now = ctx.now_ms;
    write(ctx.node.store.mutate(&args[1], now, |old| {
        let Some(old) = old else {
            return Mutation::Keep(Reply::Nil);
        };
        let reply = Reply::Bulk(Bytes::copy_from_slice(old.value));
        match change {
            None => Mutation::Keep(reply),
            Some(None) => Mutation::SetExpiry(None, reply),
            Some(Some((unit, amount))) => match deadline_ms(amount, unit, now, "getex") {
                Err(error) => Mutation::Keep(error),
                Ok(at) if at <= now => Mutation::Remove(reply),
                Ok(at) => Mutation::SetExpiry(Some(at), reply),
            },
        }
    }))
}

/// MGET key [key ...]
pub fn mget(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let store = &ctx.node.store;
    Reply::Array(
        args[1..]
            .iter()
            .map(|k| bulk_or_nil(store.get(k, ctx.now_ms).map(|i| i.value)))
            .collect(),
    )
}

fn pairs(args: &[Bytes], command: &str) -> Result<Vec<(Bytes, Bytes)>, Reply> {
    if args.len().is_multiple_of(2) {
        return Err(errors::arity(command));
    }
    Ok(args[1..]
        .chunks_exact(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect())
}

/// MSET key value [key value ...]
pub fn mset(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match pairs(args, "mset") {
        Ok(pairs) => write(
            ctx.node
                .store
                .set_many(&pairs, false, ctx.now_ms)
                .map(|_| Reply::ok()),
        ),
        Err(reply) => reply,
    }
}

/// MSETNX key value [key value ...]
pub fn msetnx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match pairs(args, "msetnx") {
        Ok(pairs) => write(
            ctx.node
                .store
                .set_many(&pairs, true, ctx.now_ms)
                .map(|set| Reply::Integer(i64::from(set))),
        ),
        Err(reply) => reply,
    }
}

fn incr_by(ctx: &mut Ctx<'_>, key: &[u8], delta: i64) -> Reply {
    write(ctx.node.store.mutate(key, ctx.now_ms, |old| {
        let current = match old {
            None => 0,
            Some(o) if o.value.len() > 20 => return Mutation::Keep(errors::not_integer()),
            Some(o) => match resp::parse::parse_i64(o.value) {
                Some(n) => n,
                None => return Mutation::Keep(errors::not_integer()),
            },
        };
        let Some(next) = current.checked_add(delta) else {
            return Mutation::Keep(errors::overflow());
        };
        // The TTL survives, as in Redis: INCR modifies the value in place.
        let item = NewItem {
            value: int_bytes(next),
            expires_at_ms: old.and_then(|o| o.expires_at_ms),
            flags: 0,
            meta: 0,
        };
        Mutation::Put(item, Reply::Integer(next))
    }))
}

/// INCR key
pub fn incr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    incr_by(ctx, &args[1], 1)
}

/// DECR key
pub fn decr(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    incr_by(ctx, &args[1], -1)
}

/// INCRBY key increment
pub fn incrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match int_arg(&args[2]) {
        Ok(delta) => incr_by(ctx, &args[1], delta),
        Err(reply) => reply,
    }
}

/// DECRBY key decrement
pub fn decrby(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    match int_arg(&args[2]) {
        Ok(i64::MIN) => Reply::error("ERR decrement would overflow"),
        Ok(delta) => incr_by(ctx, &args[1], -delta),
        Err(reply) => reply,
    }
}

/// INCRBYFLOAT key increment
pub fn incrbyfloat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let increment = &args[2];
    if parse_float(increment).is_none() {
        return errors::not_float();
    }
    write(ctx.node.store.mutate(&args[1], ctx.now_ms, |old| {
        let current = old.map_or(&b"0"[..], |o| o.value);
        if parse_float(current).is_none() {
            return Mutation::Keep(errors::not_float());
        }
        let Ok(text) = float::add(current, increment) else {
            return Mutation::Keep(Reply::error("ERR increment would produce NaN or Infinity"));
        };
        let text = Bytes::from(text);
        let item = NewItem {
            value: text.clone(),
            expires_at_ms: old.and_then(|o| o.expires_at_ms),
            flags: 0,
            meta: 0,
        };
        Mutation::Put(item, Reply::Bulk(text))
    }))
}

/// Builds a new value from the old one, keeping the TTL; refuses values over the limit.
fn rewrite(old: Option<ItemRef<'_>>, value: Bytes) -> NewItem {
    NewItem {
        value,
        expires_at_ms: old.and_then(|o| o.expires_at_ms),
        flags: old.map_or(0, |o| o.flags),
        meta: old.map_or(0, |o| o.meta),
    }
}

/// APPEND key value
pub fn append(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let max = ctx.node.store.config().max_value_bytes;
    let suffix = &args[2];
    write(ctx.node.store.mutate(&args[1], ctx.now_ms, |old| {
        let old_len = old.map_or(0, |o| o.value.len());
        let len = old_len + suffix.len();
        if len > max {
            return Mutation::Keep(errors::too_large());
        }
        let mut value = BytesMut::with_capacity(len);
        if let Some(o) = old {
            value.extend_from_slice(o.value);
        }
        value.extend_from_slice(suffix);
        Mutation::Put(rewrite(old, value.freeze()), Reply::Integer(len as i64))
    }))
}

/// STRLEN key
pub fn strlen(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    Reply::Integer(
        ctx.node
            .store
            .peek(&args[1], ctx.now_ms)
            .map_or(0, |i| i.value.len() as i64),
    )
}

/// GETRANGE key start end
pub fn getrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let (mut start, mut end) = match (int_arg(&args[2]), int_arg(&args[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(reply), _) | (_, Err(reply)) => return reply,
    };
    let Some(item) = ctx.node.store.get(&args[1], ctx.now_ms) else {
        return Reply::bulk_static(b"");
    };
    let len = item.value.len() as i64;
    if start < 0 && end < 0 && start > end {
        return Reply::bulk_static(b"");
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if len == 0 || start > end {
        return Reply::bulk_static(b"");
    }
    Reply::Bulk(item.value.slice(start as usize..=end as usize))
}

/// SETRANGE key offset value
pub fn setrange(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let offset = match int_arg(&args[2]) {
        Ok(o) if o < 0 => return Reply::error("ERR offset is out of range"),
        Ok(o) => o as u64,
        Err(reply) => return reply,
    };
    let patch = &args[3];
    let max = ctx.node.store.config().max_value_bytes as u64;
    write(ctx.node.store.mutate(&args[1], ctx.now_ms, |old| {
        let old_len = old.map_or(0, |o| o.value.len());
        if patch.is_empty() {
            return Mutation::Keep(Reply::Integer(old_len as i64));
        }
        let end = offset + patch.len() as u64;
        if end > max {
            return Mutation::Keep(errors::too_large());
        }
        let end = end as usize;
        let offset = offset as usize;
        let mut value = BytesMut::with_capacity(end.max(old_len));
        if let Some(o) = old {
            value.extend_from_slice(o.value);
        }
        if value.len() < end {
            value.resize(end, 0);
        }
        value[offset..end].copy_from_slice(patch);
        let len = value.len() as i64;
        Mutation::Put(rewrite(old, value.freeze()), Reply::Integer(len))
    }))
}
