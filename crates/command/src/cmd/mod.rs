//! Command handlers, one file per concern, and the argument helpers they share.

pub mod connection;
pub mod expire;
pub mod float;
pub mod keyspace;
pub mod server;
pub mod string;

use bytes::Bytes;
use resp::Reply;

use crate::errors;

/// Parses an integer argument (`ERR value is not an integer or out of range` otherwise).
pub fn int_arg(arg: &[u8]) -> Result<i64, Reply> {
    resp::parse::parse_i64(arg).ok_or_else(errors::not_integer)
}

/// Copies an argument out of the connection's read buffer, so a name kept for the life of
/// the connection doesn't pin the whole buffer in memory.
pub fn owned(arg: &Bytes) -> Bytes {
    Bytes::copy_from_slice(arg)
}

/// Returns a `HELP` reply: one simple string per line, as Redis sends it.
pub fn help(lines: &[&'static str]) -> Reply {
    Reply::Array(lines.iter().map(|l| Reply::simple(l)).collect())
}

/// Returns true if `arg` equals `word` ignoring ASCII case.
pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// How an expiry argument is expressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryUnit {
    /// Relative seconds (`EX`, `EXPIRE`, `SETEX`).
    Seconds,
    /// Relative milliseconds (`PX`, `PEXPIRE`, `PSETEX`).
    Millis,
    /// Absolute Unix seconds (`EXAT`, `EXPIREAT`).
    UnixSeconds,
    /// Absolute Unix milliseconds (`PXAT`, `PEXPIREAT`).
    UnixMillis,
}

/// Turns an expiry argument into an absolute deadline in Unix milliseconds, as `SET`,
/// `SETEX`, `GETEX` do: the amount must be positive and the result must not overflow, else
/// `ERR invalid expire time in '<command>' command`.
pub fn deadline_ms(arg: &[u8], unit: ExpiryUnit, now_ms: u64, command: &str) -> Result<u64, Reply> {
    let amount = int_arg(arg)?;
    if amount <= 0 {
        return Err(errors::invalid_expire(command));
    }
    deadline_from(amount, unit, now_ms).ok_or_else(|| errors::invalid_expire(command))
}

/// Converts `amount` in `unit` to an absolute deadline; `None` on overflow. A deadline at or
/// before the epoch is returned as 1 (already expired), since 0 means "no expiry".
pub fn deadline_from(amount: i64, unit: ExpiryUnit, now_ms: u64) -> Option<u64> {
    let ms = match unit {
        ExpiryUnit::Seconds | ExpiryUnit::UnixSeconds => amount.checked_mul(1000)?,
        ExpiryUnit::Millis | ExpiryUnit::UnixMillis => amount,
    };
    let at = match unit {
        ExpiryUnit::Seconds | ExpiryUnit::Millis => ms.checked_add(i64::try_from(now_ms).ok()?)?,
        ExpiryUnit::UnixSeconds | ExpiryUnit::UnixMillis => ms,
    };
    Some(u64::try_from(at).unwrap_or(0).max(1))
}

/// Returns a bulk string of an integer's decimal form.
pub fn int_bytes(n: i64) -> Bytes {
    Bytes::copy_from_slice(itoa::Buffer::new().format(n).as_bytes())
}
