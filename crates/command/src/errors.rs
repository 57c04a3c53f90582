//! Every error reply text of the RESP commands, in one place, in Redis's words.

use resp::Reply;
use store::WriteError;

/// `ERR syntax error`.
pub fn syntax() -> Reply {
    Reply::error("ERR syntax error")
}

/// `ERR value is not an integer or out of range`.
pub fn not_integer() -> Reply {
    Reply::error("ERR value is not an integer or out of range")
}

/// `ERR value is not a valid float`.
pub fn not_float() -> Reply {
    Reply::error("ERR value is not a valid float")
}

/// `ERR increment or decrement would overflow`.
pub fn overflow() -> Reply {
    Reply::error("ERR increment or decrement would overflow")
}

/// `ERR no such key`.
pub fn no_such_key() -> Reply {
    Reply::error("ERR no such key")
}

/// `ERR string exceeds maximum allowed size (max-value-bytes)`.
pub fn too_large() -> Reply {
    Reply::error("ERR string exceeds maximum allowed size (max-value-bytes)")
}

/// The reply for `-OOM` under `noeviction`.
pub fn oom() -> Reply {
    Reply::error("OOM command not allowed when used memory > 'maxmemory'.")
}

/// `WRONGTYPE ...`: a command of another data type on a string key.
pub fn wrong_type() -> Reply {
    Reply::error("WRONGTYPE Operation against a key holding the wrong kind of value")
}

/// `ERR invalid expire time in '<cmd>' command`.
pub fn invalid_expire(command: &str) -> Reply {
    Reply::error_owned(format!("ERR invalid expire time in '{command}' command"))
}

/// `ERR wrong number of arguments for '<cmd>' command`.
pub fn arity(command: &str) -> Reply {
    Reply::error_owned(format!(
        "ERR wrong number of arguments for '{command}' command"
    ))
}

/// `ERR unknown subcommand '<sub>'. Try <CMD> HELP.`
pub fn unknown_subcommand(command: &str, sub: &[u8]) -> Reply {
    Reply::error_owned(format!(
        "ERR unknown subcommand '{}'. Try {} HELP.",
        truncate(&String::from_utf8_lossy(sub), 128),
        command.to_ascii_uppercase()
    ))
}

/// `ERR unknown command '<name>', with args beginning with: '<a>' '<b>' ` (as Redis 7).
pub fn unknown_command(args: &[bytes::Bytes]) -> Reply {
    let name = String::from_utf8_lossy(&args[0]);
    let mut rest = String::new();
    for arg in &args[1..] {
        if rest.len() >= 128 {
            break;
        }
        let room = 128 - rest.len();
        rest.push('\'');
        rest.push_str(truncate(&String::from_utf8_lossy(arg), room));
        rest.push_str("' ");
    }
    Reply::error_owned(format!(
        "ERR unknown command '{}', with args beginning with: {rest}",
        truncate(&name, 128)
    ))
}

/// Maps a refused store write to its reply.
pub fn write_error(err: WriteError) -> Reply {
    match err {
        WriteError::OutOfMemory => oom(),
        WriteError::ValueTooLarge => too_large(),
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn unknown_command_text_matches_redis() {
        let args = [
            Bytes::from_static(b"foo"),
            Bytes::from_static(b"a"),
            Bytes::from_static(b"b"),
        ];
        assert_eq!(
            unknown_command(&args),
            Reply::error("ERR unknown command 'foo', with args beginning with: 'a' 'b' ")
        );
        assert_eq!(
            unknown_command(&args[..1]),
            Reply::error("ERR unknown command 'foo', with args beginning with: ")
        );
    }
}
