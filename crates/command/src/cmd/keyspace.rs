//! Keyspace commands: DEL, EXISTS, TOUCH, TYPE, KEYS, SCAN, RANDOMKEY, RENAME.

use bytes::Bytes;
use resp::Reply;
use store::RenameOutcome;

use super::{int_arg, is};
use crate::errors;
use crate::glob;
use crate::table::Ctx;

/// DEL key [key ...] (and UNLINK: values are freed when the last reference drops, which is
/// immediate and cheap for byte strings, so both behave alike)
pub fn del(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let n = args[1..]
        .iter()
        .filter(|k| ctx.node.store.remove(k, ctx.now_ms).is_some())
        .count();
    Reply::Integer(n as i64)
}

/// EXISTS key [key ...] (a key named twice counts twice)
pub fn exists(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let n = args[1..]
        .iter()
        .filter(|k| ctx.node.store.contains(k, ctx.now_ms, false))
        .count();
    Reply::Integer(n as i64)
}

/// TOUCH key [key ...]
pub fn touch(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let n = args[1..]
        .iter()
        .filter(|k| ctx.node.store.contains(k, ctx.now_ms, true))
        .count();
    Reply::Integer(n as i64)
}

/// TYPE key
pub fn type_of(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    if ctx.node.store.contains(&args[1], ctx.now_ms, false) {
        Reply::simple("string")
    } else {
        Reply::simple("none")
    }
}

/// KEYS pattern
pub fn keys(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let pattern = &args[1];
    let all = pattern.as_ref() == b"*";
    let mut keys = Vec::new();
    ctx.node.store.scan(0, ctx.now_ms, |k| {
        if all || glob::matches(pattern, k, false) {
            keys.push(Reply::bulk(k));
        }
        true
    });
    Reply::Array(keys)
}

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]
pub fn scan(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    let Some(cursor) = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return Reply::error("ERR invalid cursor");
    };
    let mut pattern: Option<&Bytes> = None;
    let mut count: usize = 10;
    let mut type_ok = true;
    let mut i = 2;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else {
            return errors::syntax();
        };
        if is(&args[i], "match") {
            pattern = Some(value).filter(|p| p.as_ref() != b"*");
        } else if is(&args[i], "count") {
            match int_arg(value) {
                Ok(n) if n >= 1 => count = n.min(1 << 20) as usize,
                Ok(_) => return errors::syntax(),
                Err(reply) => return reply,
            }
        } else if is(&args[i], "type") {
            type_ok = is(value, "string");
        } else {
            return errors::syntax();
        }
        i += 2;
    }
    let mut visited = 0;
    let mut keys = Vec::new();
    let next = ctx.node.store.scan(cursor, ctx.now_ms, |k| {
        visited += 1;
        if type_ok && pattern.is_none_or(|p| glob::matches(p, k, false)) {
            keys.push(Reply::bulk(k));
        }
        visited < count
    });
    // Cursors are unsigned 64-bit: formatted as such, not as `i64`.
    Reply::Array(vec![
        Reply::Bulk(Bytes::from(next.to_string())),
        Reply::Array(keys),
    ])
}

/// RANDOMKEY
pub fn randomkey(ctx: &mut Ctx<'_>, _args: &[Bytes]) -> Reply {
    let seed = ctx.session.next_random();
    ctx.node
        .store
        .random_key(ctx.now_ms, seed)
        .map_or(Reply::Nil, Reply::Bulk)
}

fn rename_with(ctx: &mut Ctx<'_>, args: &[Bytes], nx: bool) -> Reply {
    match ctx.node.store.rename(&args[1], &args[2], nx, ctx.now_ms) {
        Ok(RenameOutcome::NoSuchKey) => errors::no_such_key(),
        Ok(RenameOutcome::Renamed) if nx => Reply::Integer(1),
        Ok(RenameOutcome::Renamed) => Reply::ok(),
        Ok(RenameOutcome::DestinationExists) => Reply::Integer(0),
        Err(err) => errors::write_error(err),
    }
}

/// RENAME key newkey
pub fn rename(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    rename_with(ctx, args, false)
}

/// RENAMENX key newkey
pub fn renamenx(ctx: &mut Ctx<'_>, args: &[Bytes]) -> Reply {
    rename_with(ctx, args, true)
}
