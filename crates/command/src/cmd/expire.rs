//! Expiry commands: EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT (NX XX GT LT), TTL, PTTL,
//! EXPIRETIME, PEXPIRETIME, PERSIST.

use bytes::Bytes;
use resp::Reply;
use store::Mutation;

use super::{deadline_from, int_arg, is, ExpiryUnit};
use crate::errors;
use crate::table::Ctx;

#[derive(Clone, Copy, Default)]
struct Flags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

fn parse_flags(args: &[Bytes]) -> Result<Flags, Reply> {
    let mut f = Flags::default();
    for arg in args {
        if is(arg, "nx") {
            f.nx = true;
        } else if is(arg, "xx") {
            f.xx = true;
        } else if is(arg, "gt") {
            f.gt = true;
        } else if is(arg, "lt") {
            f.lt = true;
        } else {
            return Err(Reply::error_owned(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(arg)
            )));
        }
    }
    if f.nx && (f.xx || f.gt || f.lt) {
        return Err(Reply::error(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if f.gt && f.lt {
        return Err(Reply::error(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    Ok(f)
}

fn expire_generic(ctx: &mut Ctx<'_>, args: &[Bytes], unit: ExpiryUnit, command: &str) -> Reply {
    // As Redis: the options are checked before the amount is read.
    let flags = match parse_flags(&args[3..]) {
        Ok(f) => f,
        Err(reply) => return reply,
    };
    let amount = match int_arg(&args[2]) {
        Ok(n) => n,
        Err(reply) => return reply,
    };
    let now = ctx.now_ms;
    // Unlike SET EX, zero and negative amounts are valid: they delete the key.
    let Some(at) = deadline_from(amount, unit, now) else {
        return errors::invalid_expire(command);
    };
    let result = ctx.node.store.mutate(&args[1], now, |old| {
        let Some(old) = old else {
            return Mutation::Keep(Reply::Integer(0));
        };
        let current = old.expires_at_ms;
        let allowed = if flags.nx {
            current.is_none()
        } else if flags.xx && current.is_none() {
            false
        } else if flags.gt {
            // No TTL counts as infinite: nothing is greater.
            current.is_some_and(|c| at > c)
        } else if flags.lt {
            current.is_none_or(|c| at < c)
        } else {
            true
        };
        if !allowed {
            Mutation::Keep(Reply::Integer(0))
        } else if at <= now {
            Mutation::Remove(Reply::Integer(1))
        } else {
            Mutation::SetExpiry(Some(at), Reply::Integer(1))
        }
    });
    result.unwrap_or_else(errors::write_error)
}

/// EXPIRE key seconds [NX | XX | GT | LT]
pub fn expire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    expire_generic(ctx, args, ExpiryUnit::Seconds, "expire")
}

/// PEXPIRE key milliseconds [NX | XX | GT | LT]
pub fn pexpire(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    expire_generic(ctx, args, ExpiryUnit::Millis, "pexpire")
}

/// EXPIREAT key unix-time-seconds [NX | XX | GT | LT]
pub fn expireat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    expire_generic(ctx, args, ExpiryUnit::UnixSeconds, "expireat")
}

/// PEXPIREAT key unix-time-milliseconds [NX | XX | GT | LT]
pub fn pexpireat(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    expire_generic(ctx, args, ExpiryUnit::UnixMillis, "pexpireat")
}

/// Reports a key's expiry: -2 missing, -1 no TTL, else `f(deadline_ms)`.
fn report(ctx: &mut Ctx<'_>, key: &[u8], f: impl FnOnce(u64, u64) -> i64) -> Reply {
    match ctx.node.store.peek(key, ctx.now_ms) {
        None => Reply::Integer(-2),
        Some(item) => match item.expires_at_ms {
            None => Reply::Integer(-1),
            Some(at) => Reply::Integer(f(at, ctx.now_ms)),
        },
    }
}

/// TTL key (seconds, rounded to the nearest, as Redis)
pub fn ttl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    report(ctx, &args[1], |at, now| {
        ((at.saturating_sub(now) + 500) / 1000) as i64
    })
}

/// PTTL key
pub fn pttl(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    report(ctx, &args[1], |at, now| at.saturating_sub(now) as i64)
}

/// EXPIRETIME key (seconds, rounded to the nearest, as Redis)
pub fn expiretime(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    report(ctx, &args[1], |at, _| ((at + 500) / 1000) as i64)
}

/// PEXPIRETIME key
pub fn pexpiretime(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    report(ctx, &args[1], |at, _| at as i64)
}

/// PERSIST key
pub fn persist(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let result = ctx
        .node
        .store
        .mutate(&args[1], ctx.now_ms, |old| match old {
            Some(o) if o.expires_at_ms.is_some() => Mutation::SetExpiry(None, Reply::Integer(1)),
            _ => Mutation::Keep(Reply::Integer(0)),
        });
    result.unwrap_or_else(errors::write_error)
}
