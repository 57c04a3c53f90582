// Hot path: every request of every RESP connection passes through `RequestParser::parse`.

//! The request parser.
//!
//! A request is either a multibulk array of bulk strings (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`),
//! which is what every client library sends, or an inline line (`GET k\r\n`), which is what a
//! person types into telnet. The parser is incremental: it remembers how far it got in the
//! current request, so a 100 MB pipeline arriving in 4 KB reads is scanned once, not once per
//! read. When the request is complete it is split off the front of the buffer and its
//! arguments are handed out as zero-copy slices of it.
//!
//! Every length read from the wire is checked against [`Limits`] before any memory is reserved
//! for it, so a client claiming a 4 GB bulk gets an error, not an allocation.

use bytes::{Bytes, BytesMut};

/// The longest inline request or header line accepted (as Redis's `PROTO_INLINE_MAX_SIZE`).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Size limits the parser enforces on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest bulk string accepted (Redis `proto-max-bulk-len`).
    pub max_bulk_bytes: usize,
    /// Largest number of arguments in one request.
    pub max_args: usize,
    /// Largest total size of one request, headers included.
    pub max_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bulk_bytes: 8 * 1024 * 1024,
            max_args: 1024 * 1024,
            max_request_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Why a request could not be parsed. The connection answers with the error text (Redis's own
/// words, prefixed with `ERR `) and then closes, because the stream can't be resynchronised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The multibulk count was not a number or was too large.
    #[error("Protocol error: invalid multibulk length")]
    InvalidMultibulkLength,
    /// A bulk length was not a number, negative, or above the limit.
    #[error("Protocol error: invalid bulk length")]
    InvalidBulkLength,
    /// An array element did not start with `$`.
    #[error("Protocol error: expected '$', got '{}'", char::from(*.0))]
    ExpectedBulk(u8),
    /// A bulk string was not followed by CRLF.
    #[error("Protocol error: expected CRLF after bulk string")]
    MissingCrlf,
    /// A multibulk count line had no CRLF within the line limit.
    #[error("Protocol error: too big mbulk count string")]
    TooBigMultibulkLine,
    /// A bulk length line had no CRLF within the line limit.
    #[error("Protocol error: too big bulk count string")]
    TooBigBulkLine,
    /// An inline request had no newline within the line limit.
    #[error("Protocol error: too big inline request")]
    TooBigInline,
    /// An inline request had an unterminated quote.
    #[error("Protocol error: unbalanced quotes in request")]
    UnbalancedQuotes,
    /// The request as a whole exceeded `max_request_bytes`.
    #[error("Protocol error: request exceeds the maximum request size")]
    TooBigRequest,
}

/// Result alias for the parser.
pub type Result<T> = std::result::Result<T, ParseError>;

/// An incremental request parser, one per connection.
#[derive(Debug)]
pub struct RequestParser {
    limits: Limits,
    /// Arguments still to read in the current multibulk request; 0 when between requests.
    remaining: usize,
    /// Offset in the buffer up to which the current request has been parsed.
    pos: usize,
    /// Byte ranges of the arguments parsed so far.
    ranges: Vec<(usize, usize)>,
}

impl RequestParser {
    /// Returns a parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            remaining: 0,
            pos: 0,
            ranges: Vec::new(),
        }
    }

    /// Returns the limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Replaces the limits; takes effect from the next request.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Parses one request from the front of `buf`.
    ///
    /// Returns `Ok(true)` with `args` filled (and the request removed from `buf`) when a whole
    /// request was there, `Ok(false)` when more bytes are needed (nothing is removed; call
    /// again after the next read), or an error for invalid input. An empty request (`*0` or a
    /// blank inline line) is consumed and skipped, as Redis does.
    pub fn parse(&mut self, buf: &mut BytesMut, args: &mut Vec<Bytes>) -> Result<bool> {
        args.clear();
        loop {
            if self.remaining == 0 && self.ranges.is_empty() {
                // Between requests.
                let Some(&first) = buf.first() else {
                    return Ok(false);
                };
                if first == b'*' {
                    let Some((count, next)) =
                        read_line_int(buf, 1, ParseError::TooBigMultibulkLine)?
                    else {
                        return Ok(false);
                    };
                    if count > i64::from(i32::MAX) {
                        return Err(ParseError::InvalidMultibulkLength);
                    }
                    if count <= 0 {
                        let _ = buf.split_to(next);
                        continue;
                    }
                    // Checked against the limit before anything is reserved for it.
                    let count = count as usize;
                    if count > self.limits.max_args {
                        return Err(ParseError::InvalidMultibulkLength);
                    }
                    self.remaining = count;
                    self.pos = next;
                    self.ranges.reserve(count.min(16));
                } else {
                    match self.parse_inline(buf, args)? {
                        Some(true) => return Ok(true),
                        Some(false) => continue,
                        None => return Ok(false),
                    }
                }
            }
            while self.remaining > 0 {
                let Some(&marker) = buf.get(self.pos) else {
                    return Ok(false);
                };
                if marker != b'$' {
                    return Err(ParseError::ExpectedBulk(marker));
                }
                let Some((len, start)) =
                    read_line_int(buf, self.pos + 1, ParseError::TooBigBulkLine)?
                else {
                    return Ok(false);
                };
                if len < 0 || len as u64 > self.limits.max_bulk_bytes as u64 {
                    return Err(ParseError::InvalidBulkLength);
                }
                let end = start + len as usize;
                if end + 2 > self.limits.max_request_bytes {
                    return Err(ParseError::TooBigRequest);
                }
                if buf.len() < end + 2 {
                    // Nothing is reserved for the declared length: the buffer grows with the
                    // bytes that arrive (issue 13: 2,000 connections that each declared a
                    // 1 MB bulk and sent nothing more took 1 MB each).
                    return Ok(false);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(ParseError::MissingCrlf);
                }
                self.ranges.push((start, end));
                self.pos = end + 2;
                self.remaining -= 1;
            }
            let frame = buf.split_to(self.pos).freeze();
            args.extend(self.ranges.drain(..).map(|(a, b)| frame.slice(a..b)));
            self.pos = 0;
            return Ok(true);
        }
    }

    /// Returns `Some(true)` for a request, `Some(false)` for a blank line (consumed), `None`
    /// when the line is not complete yet.
    fn parse_inline(&mut self, buf: &mut BytesMut, args: &mut Vec<Bytes>) -> Result<Option<bool>> {
        let Some(nl) = memchr::memchr(b'\n', buf) else {
            if buf.len() > MAX_LINE_BYTES {
                return Err(ParseError::TooBigInline);
            }
            return Ok(None);
        };
        if nl > MAX_LINE_BYTES {
            return Err(ParseError::TooBigInline);
        }
        let line = buf.split_to(nl + 1);
        let mut line = &line[..nl];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        split_args(line, args)?;
        if args.len() > self.limits.max_args {
            args.clear();
            return Err(ParseError::InvalidMultibulkLength);
        }
        Ok(Some(!args.is_empty()))
    }
}

/// Reads `<integer>\r\n` starting at `from`. Returns the value and the offset after the CRLF,
/// `None` if the line is not complete, or an error if it is too long or not a number.
fn read_line_int(buf: &[u8], from: usize, too_long: ParseError) -> Result<Option<(i64, usize)>> {
    let window = &buf[from.min(buf.len())..];
    let limit = window.len().min(MAX_LINE_BYTES);
    let Some(cr) = memchr::memchr(b'\r', &window[..limit]) else {
        if window.len() > MAX_LINE_BYTES {
            return Err(too_long);
        }
        return Ok(None);
    };
    let Some(&lf) = window.get(cr + 1) else {
        return Ok(None);
    };
    let bad = if matches!(too_long, ParseError::TooBigMultibulkLine) {
        ParseError::InvalidMultibulkLength
    } else {
        ParseError::InvalidBulkLength
    };
    if lf != b'\n' {
        return Err(bad);
    }
    let value = parse_i64(&window[..cr]).ok_or(bad)?;
    Ok(Some((value, from + cr + 2)))
}

/// Parses a signed decimal integer with Redis's strictness: no spaces, no `+`, no leading
/// zeros (except `0` itself), no overflow.
pub fn parse_i64(digits: &[u8]) -> Option<i64> {
    let (negative, body) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if body.is_empty() || body.len() > 19 || (body[0] == b'0' && (body.len() > 1 || negative)) {
        return None;
    }
    let mut value: i64 = 0;
    for &d in body {
        if !d.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(d - b'0');
        value = if negative {
            value.checked_mul(10)?.checked_sub(digit)?
        } else {
            value.checked_mul(10)?.checked_add(digit)?
        };
    }
    Some(value)
}

/// Splits an inline request into arguments the way `redis-cli` and Redis's `sdssplitargs` do:
/// whitespace separates, `"..."` understands `\n \r \t \b \a \\ \" \xHH`, `'...'` only `\'`.
fn split_args(line: &[u8], args: &mut Vec<Bytes>) -> Result<()> {
    let mut i = 0;
    loop {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == line.len() {
            return Ok(());
        }
        let mut current = Vec::new();
        let mut in_double = false;
        let mut in_single = false;
        loop {
            if in_double {
                let Some(&c) = line.get(i) else {
                    return Err(ParseError::UnbalancedQuotes);
                };
                if c == b'\\' && i + 3 < line.len() && line[i + 1] == b'x' {
                    if let (Some(h), Some(l)) = (hex(line[i + 2]), hex(line[i + 3])) {
                        current.push(h * 16 + l);
                        i += 4;
                        continue;
                    }
                }
                if c == b'\\' && i + 1 < line.len() {
                    current.push(match line[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                    i += 2;
                } else if c == b'"' {
                    // The closing quote must be followed by a space or the end.
                    if line.get(i + 1).is_some_and(|n| !n.is_ascii_whitespace()) {
                        return Err(ParseError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                } else {
                    current.push(c);
                    i += 1;
                }
            } else if in_single {
                let Some(&c) = line.get(i) else {
                    return Err(ParseError::UnbalancedQuotes);
                };
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    current.push(b'\'');
                    i += 2;
                } else if c == b'\'' {
                    if line.get(i + 1).is_some_and(|n| !n.is_ascii_whitespace()) {
                        return Err(ParseError::UnbalancedQuotes);
                    }
                    i += 1;
                    break;
                } else {
                    current.push(c);
                    i += 1;
                }
            } else {
                match line.get(i) {
                    None => break,
                    Some(c) if c.is_ascii_whitespace() => break,
                    Some(b'"') => in_double = true,
                    Some(b'\'') => in_single = true,
                    Some(&c) => current.push(c),
                }
                i += 1;
            }
        }
        args.push(Bytes::from(current));
    }
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> (Vec<Vec<Vec<u8>>>, Result<()>, usize) {
        let mut parser = RequestParser::new(Limits::default());
        let mut buf = BytesMut::from(input);
        let mut args = Vec::new();
        let mut out = Vec::new();
        loop {
            match parser.parse(&mut buf, &mut args) {
                Ok(true) => out.push(args.iter().map(|a| a.to_vec()).collect()),
                Ok(false) => return (out, Ok(()), buf.len()),
                Err(e) => return (out, Err(e), buf.len()),
            }
        }
    }

    fn v(args: &[&str]) -> Vec<Vec<u8>> {
        args.iter().map(|a| a.as_bytes().to_vec()).collect()
    }

    #[test]
    fn requests_parse_byte_exact() {
        type Case<'a> = (&'a [u8], &'a [&'a [&'a str]], Result<()>);
        let table: &[Case<'_>] = &[
            (b"*1\r\n$4\r\nPING\r\n", &[&["PING"]], Ok(())),
            (b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", &[&["GET", "k"]], Ok(())),
            (b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n", &[&["GET", ""]], Ok(())),
            (b"*0\r\n*1\r\n$4\r\nPING\r\n", &[&["PING"]], Ok(())),
            (b"*-1\r\n", &[], Ok(())),
            (b"PING\r\n", &[&["PING"]], Ok(())),
            (b"PING\n", &[&["PING"]], Ok(())),
            (b"\r\n\r\nPING\r\n", &[&["PING"]], Ok(())),
            (b"set k \"a b\\n\"\r\n", &[&["set", "k", "a b\n"]], Ok(())),
            (b"set k 'it\\'s'\r\n", &[&["set", "k", "it's"]], Ok(())),
            (b"echo \"\\x41\\x42\"\r\n", &[&["echo", "AB"]], Ok(())),
            (b"echo \"abc\r\n", &[], Err(ParseError::UnbalancedQuotes)),
            (b"echo \"abc\"x\r\n", &[], Err(ParseError::UnbalancedQuotes)),
            (b"*x\r\n", &[], Err(ParseError::InvalidMultibulkLength)),
            (
                b"*3000000000\r\n",
                &[],
                Err(ParseError::InvalidMultibulkLength),
            ),
            (b"*1\r\n$-1\r\n", &[], Err(ParseError::InvalidBulkLength)),
            (
                b"*1\r\n$4294967296\r\n",
                &[],
                Err(ParseError::InvalidBulkLength),
            ),
            (
                b"*1\r\n$+1\r\nx\r\n",
                &[],
                Err(ParseError::InvalidBulkLength),
            ),
            (
                b"*1\r\n$01\r\nx\r\n",
                &[],
                Err(ParseError::InvalidBulkLength),
            ),
            (b"*1\r\n:1\r\n", &[], Err(ParseError::ExpectedBulk(b':'))),
            (b"*1\r\n$1\r\nxyz", &[], Err(ParseError::MissingCrlf)),
            (b"*1\r\n$1x\r\n", &[], Err(ParseError::InvalidBulkLength)),
            (b"*1\r\n$1\rx", &[], Err(ParseError::InvalidBulkLength)),
        ];
        for (input, expected, result) in table {
            let (got, res, _) = parse_all(input);
            let want: Vec<_> = expected.iter().map(|a| v(a)).collect();
            assert_eq!(got, want, "input {:?}", String::from_utf8_lossy(input));
            assert_eq!(&res, result, "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn truncated_requests_wait_for_more_bytes_at_every_cut() {
        let whole: &[u8] = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n";
        for cut in 0..whole.len() {
            let mut parser = RequestParser::new(Limits::default());
            let mut buf = BytesMut::from(&whole[..cut]);
            let mut args = Vec::new();
            assert_eq!(parser.parse(&mut buf, &mut args), Ok(false), "cut at {cut}");
            buf.extend_from_slice(&whole[cut..]);
            assert_eq!(parser.parse(&mut buf, &mut args), Ok(true), "cut at {cut}");
            assert_eq!(args, vec!["SET", "key", "value"]);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn pipelined_requests_come_out_in_order_and_leave_the_tail() {
        let (got, res, left) = parse_all(b"*1\r\n$4\r\nPING\r\nECHO a\r\n*2\r\n$4\r\nECHO");
        assert_eq!(got, vec![v(&["PING"]), v(&["ECHO", "a"])]);
        assert_eq!(res, Ok(()));
        assert_eq!(left, b"*2\r\n$4\r\nECHO".len());
    }

    #[test]
    fn bulk_over_limit_is_refused_before_reserving() {
        let limits = Limits {
            max_bulk_bytes: 10,
            ..Limits::default()
        };
        let mut parser = RequestParser::new(limits);
        let mut buf = BytesMut::from(&b"*1\r\n$11\r\n"[..]);
        let mut args = Vec::new();
        assert_eq!(
            parser.parse(&mut buf, &mut args),
            Err(ParseError::InvalidBulkLength)
        );
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn request_over_total_limit_is_refused() {
        let limits = Limits {
            max_bulk_bytes: 10,
            max_args: 100,
            max_request_bytes: 30,
        };
        let mut parser = RequestParser::new(limits);
        let mut buf = BytesMut::from(&b"*5\r\n$5\r\naaaaa\r\n$5\r\naaaaa\r\n$5\r\n"[..]);
        let mut args = Vec::new();
        assert_eq!(
            parser.parse(&mut buf, &mut args),
            Err(ParseError::TooBigRequest)
        );
    }

    #[test]
    fn too_many_args_are_refused() {
        let limits = Limits {
            max_args: 2,
            ..Limits::default()
        };
        let mut parser = RequestParser::new(limits);
        let mut buf = BytesMut::from(&b"*3\r\n"[..]);
        let mut args = Vec::new();
        assert_eq!(
            parser.parse(&mut buf, &mut args),
            Err(ParseError::InvalidMultibulkLength)
        );
    }

    #[test]
    fn endless_lines_are_refused() {
        let long = vec![b'a'; MAX_LINE_BYTES + 1];
        let (_, res, _) = parse_all(&long);
        assert_eq!(res, Err(ParseError::TooBigInline));
        let mut header = b"*".to_vec();
        header.extend(std::iter::repeat_n(b'1', MAX_LINE_BYTES + 1));
        let (_, res, _) = parse_all(&header);
        assert_eq!(res, Err(ParseError::TooBigMultibulkLine));
        let mut bulk = b"*1\r\n$".to_vec();
        bulk.extend(std::iter::repeat_n(b'1', MAX_LINE_BYTES + 1));
        let (_, res, _) = parse_all(&bulk);
        assert_eq!(res, Err(ParseError::TooBigBulkLine));
    }

    #[test]
    fn error_texts_match_redis() {
        assert_eq!(
            ParseError::InvalidBulkLength.to_string(),
            "Protocol error: invalid bulk length"
        );
        assert_eq!(
            ParseError::ExpectedBulk(b'x').to_string(),
            "Protocol error: expected '$', got 'x'"
        );
    }

    #[test]
    fn integers_parse_strictly() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b" 1",
            b"1 ",
            b"01",
            b"-0",
            b"9223372036854775808",
            b"1a",
        ] {
            assert_eq!(parse_i64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
