// Hot path: every request is encoded and every reply parsed through here.

//! The two wire protocols, client side: request encoders and reply parsers.
//!
//! Each parser looks at the front of a receive buffer and returns one complete [`Reply`] and
//! the bytes it used, [`ParseError::Incomplete`] when the reply has not fully arrived yet (the
//! caller reads more and tries again from the same place), or [`ParseError::Invalid`] when the
//! bytes cannot be a reply (framing is lost: the connection is useless after that). Parsers
//! keep no state between calls, so a reply split across reads is parsed again from its first
//! byte; they check a bulk value's length before scanning, so a large value costs one header
//! scan per read, not a scan of the value.
//!
//! [`classify`] turns a reply into what the load generator counts: a hit, a miss, a stored
//! value, or an error (an error reply, or a reply that makes no sense for the request).

pub mod memcache;
pub mod resp;

use serde::Serialize;

use crate::workload::OpKind;

/// Longest reply line accepted (RESP header or error, memcached status or VALUE line).
/// Anything longer is not a reply from a cache server.
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Largest value accepted in a reply.
pub const MAX_VALUE_BYTES: usize = 512 << 20;

/// The wire protocol a run speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Redis RESP2: `GET key`, `SET key value` as multibulk arrays.
    Resp,
    /// memcached text protocol: `get key`, `set key 0 0 <n>`.
    Memcache,
}

impl Protocol {
    /// Returns the port a server of this protocol listens on by default.
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Resp => 6379,
            Protocol::Memcache => 11211,
        }
    }

    /// Returns the protocol's name as given on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Resp => "resp",
            Protocol::Memcache => "memcache",
        }
    }

    /// Appends a GET request for `key` to `out`.
    pub fn encode_get(self, out: &mut Vec<u8>, key: &[u8]) {
        match self {
            Protocol::Resp => resp::encode_get(out, key),
            Protocol::Memcache => memcache::encode_get(out, key),
        }
    }

    /// Appends a SET request of `value` under `key` to `out`.
    pub fn encode_set(self, out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
        match self {
            Protocol::Resp => resp::encode_set(out, key, value),
            Protocol::Memcache => memcache::encode_set(out, key, value),
        }
    }

    /// Parses the reply at the front of `buf`; returns it and the bytes it spans.
    pub fn parse(self, buf: &[u8]) -> Result<(Reply<'_>, usize), ParseError> {
        match self {
            Protocol::Resp => resp::parse(buf),
            Protocol::Memcache => memcache::parse(buf),
        }
    }
}

/// One reply, reduced to what the load generator needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// A value: a RESP bulk string, a memcached `VALUE` block.
    Value,
    /// No value: RESP null (`$-1`, `*-1`, `_`), memcached `END` alone.
    Nil,
    /// A write succeeded: RESP `+OK`, memcached `STORED`.
    Done,
    /// An error reply: RESP `-...` (the text after `-`), memcached `ERROR`, `CLIENT_ERROR ...`
    /// or `SERVER_ERROR ...` (the whole line).
    Error(&'a [u8]),
    /// Any other well-formed reply (an integer, another status line); the text is its first
    /// line.
    Other(&'a [u8]),
}

/// Why no reply could be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The reply has not fully arrived: read more and parse again from the same place.
    #[error("incomplete reply")]
    Incomplete,
    /// The bytes are not a reply of this protocol.
    #[error("{0}")]
    Invalid(&'static str),
}

/// What a reply means for the request it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A GET found its key.
    Hit,
    /// A GET found nothing.
    Miss,
    /// A SET was stored.
    Stored,
    /// An error reply, or a reply that does not answer the request (e.g. `+OK` to a GET).
    Error,
}

/// Returns what `reply` means as the answer to a request of kind `op`.
pub fn classify(op: OpKind, reply: &Reply<'_>) -> Outcome {
    match (op, reply) {
        (OpKind::Get, Reply::Value) => Outcome::Hit,
        (OpKind::Get, Reply::Nil) => Outcome::Miss,
        (OpKind::Set, Reply::Done) => Outcome::Stored,
        _ => Outcome::Error,
    }
}

/// Returns the text to report for an [`Outcome::Error`] (the error message, or a description
/// of the unexpected reply). Only called on the error path: it allocates.
pub fn error_text(op: OpKind, reply: &Reply<'_>) -> String {
    let op = match op {
        OpKind::Get => "GET",
        OpKind::Set => "SET",
    };
    match reply {
        Reply::Error(text) => String::from_utf8_lossy(text).into_owned(),
        Reply::Other(text) => {
            format!(
                "unexpected reply to {op}: {}",
                String::from_utf8_lossy(text)
            )
        }
        Reply::Value => format!("unexpected value reply to {op}"),
        Reply::Nil => format!("unexpected nil reply to {op}"),
        Reply::Done => format!("unexpected OK reply to {op}"),
    }
}

/// Finds the line starting at `start`: returns its text (without `\r\n`) and the index just
/// past its `\r\n`.
pub(crate) fn line(buf: &[u8], start: usize) -> Result<(&[u8], usize), ParseError> {
    let rest = buf.get(start..).unwrap_or_default();
    match memchr::memchr(b'\n', rest) {
        Some(nl) if nl > 0 && rest[nl - 1] == b'\r' => {
            if nl - 1 > MAX_LINE_BYTES {
                return Err(ParseError::Invalid("reply line too long"));
            }
            Ok((&rest[..nl - 1], start + nl + 1))
        }
        Some(_) => Err(ParseError::Invalid("line ends without \\r")),
        None if rest.len() > MAX_LINE_BYTES => Err(ParseError::Invalid("reply line too long")),
        None => Err(ParseError::Incomplete),
    }
}

/// Checks that `len` bytes of data followed by `\r\n` start at `start`; returns the index past
/// them.
pub(crate) fn data(buf: &[u8], start: usize, len: usize) -> Result<usize, ParseError> {
    let end = start + len;
    if buf.len() < end + 2 {
        return Err(ParseError::Incomplete);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(ParseError::Invalid("value not followed by \\r\\n"));
    }
    Ok(end + 2)
}

/// Parses a decimal length (digits only, at most [`MAX_VALUE_BYTES`]).
pub(crate) fn parse_len(text: &[u8]) -> Result<usize, ParseError> {
    if text.is_empty() || text.len() > 10 || !text.iter().all(u8::is_ascii_digit) {
        return Err(ParseError::Invalid("bad length"));
    }
    let len = text
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    if len > MAX_VALUE_BYTES {
        return Err(ParseError::Invalid("value too large"));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_matches_replies_with_requests() {
        assert_eq!(classify(OpKind::Get, &Reply::Value), Outcome::Hit);
        assert_eq!(classify(OpKind::Get, &Reply::Nil), Outcome::Miss);
        assert_eq!(classify(OpKind::Set, &Reply::Done), Outcome::Stored);
        assert_eq!(classify(OpKind::Get, &Reply::Done), Outcome::Error);
        assert_eq!(classify(OpKind::Set, &Reply::Nil), Outcome::Error);
        assert_eq!(
            classify(OpKind::Set, &Reply::Error(b"ERR x")),
            Outcome::Error
        );
        assert_eq!(classify(OpKind::Get, &Reply::Other(b":1")), Outcome::Error);
    }

    #[test]
    fn error_text_names_the_problem() {
        assert_eq!(
            error_text(OpKind::Get, &Reply::Error(b"ERR oops")),
            "ERR oops"
        );
        assert_eq!(
            error_text(OpKind::Set, &Reply::Other(b"NOT_STORED")),
            "unexpected reply to SET: NOT_STORED"
        );
        assert_eq!(
            error_text(OpKind::Get, &Reply::Done),
            "unexpected OK reply to GET"
        );
    }

    #[test]
    fn lengths_are_digits_within_bounds() {
        assert_eq!(parse_len(b"0"), Ok(0));
        assert_eq!(parse_len(b"1024"), Ok(1024));
        assert!(parse_len(b"").is_err());
        assert!(parse_len(b"-1").is_err());
        assert!(parse_len(b"12a").is_err());
        assert!(parse_len(b"99999999999").is_err());
        assert!(parse_len(b"999999999").is_err());
    }

    #[test]
    fn lines_need_crlf() {
        assert_eq!(line(b"+OK\r\n", 1), Ok((&b"OK"[..], 5)));
        assert_eq!(line(b"+OK\r", 1), Err(ParseError::Incomplete));
        assert!(matches!(line(b"+OK\n", 1), Err(ParseError::Invalid(_))));
        let long = vec![b'a'; MAX_LINE_BYTES + 1];
        assert!(matches!(line(&long, 0), Err(ParseError::Invalid(_))));
    }
}
