// Hot path: memcached requests are encoded and replies parsed here.

//! memcached text protocol, client side: `get`/`set` requests and a reply parser.
//!
//! Replies: `VALUE <key> <flags> <bytes> [<cas>]\r\n<data>\r\n` blocks ended by `END\r\n` (a
//! hit; `END\r\n` alone is a miss), `STORED\r\n`, and the error lines `ERROR`,
//! `CLIENT_ERROR <message>` and `SERVER_ERROR <message>`. Any other status line (`NOT_STORED`,
//! `EXISTS`, ...) is a well-formed reply the load generator does not expect.

use super::{data, line, parse_len, ParseError, Reply};

/// Appends `get <key>\r\n` to `out`.
pub fn encode_get(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(b"get ");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\n");
}

/// Appends `set <key> 0 0 <n>\r\n<value>\r\n` to `out`.
pub fn encode_set(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let mut len = itoa::Buffer::new();
    out.extend_from_slice(b"set ");
    out.extend_from_slice(key);
    out.extend_from_slice(b" 0 0 ");
    out.extend_from_slice(len.format(value.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Parses the memcached reply at the front of `buf`; returns it and the bytes it spans.
pub fn parse(buf: &[u8]) -> Result<(Reply<'_>, usize), ParseError> {
    let (text, mut at) = line(buf, 0)?;
    if text == b"END" {
        return Ok((Reply::Nil, at));
    }
    if text == b"STORED" {
        return Ok((Reply::Done, at));
    }
    if text == b"ERROR" || text.starts_with(b"CLIENT_ERROR") || text.starts_with(b"SERVER_ERROR") {
        return Ok((Reply::Error(text), at));
    }
    if !text.starts_with(b"VALUE ") {
        return Ok((Reply::Other(text), at));
    }
    // One or more VALUE blocks (one per key asked for), then END.
    let mut header = text;
    loop {
        at = data(buf, at, value_len(header)?)?;
        let (next, after) = line(buf, at)?;
        at = after;
        if next == b"END" {
            return Ok((Reply::Value, at));
        }
        if !next.starts_with(b"VALUE ") {
            return Err(ParseError::Invalid("VALUE block not followed by END"));
        }
        header = next;
    }
}

/// Returns the `<bytes>` field of `VALUE <key> <flags> <bytes> [<cas>]`.
fn value_len(header: &[u8]) -> Result<usize, ParseError> {
    let mut fields = header.split(|&b| b == b' ').filter(|f| !f.is_empty());
    match (fields.nth(3), fields.next(), fields.next()) {
        (Some(bytes), _, None) => parse_len(bytes),
        _ => Err(ParseError::Invalid("malformed VALUE line")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_text_lines() {
        let mut out = Vec::new();
        encode_get(&mut out, b"key:000000000007");
        assert_eq!(out, b"get key:000000000007\r\n");
        out.clear();
        encode_set(&mut out, b"k", b"hello");
        assert_eq!(out, b"set k 0 0 5\r\nhello\r\n");
        out.clear();
        encode_set(&mut out, b"k", b"");
        assert_eq!(out, b"set k 0 0 0\r\n\r\n");
    }

    #[test]
    fn replies_parse_byte_exact() {
        let table: &[(&[u8], Reply<'_>)] = &[
            (b"END\r\n", Reply::Nil),
            (b"STORED\r\n", Reply::Done),
            (b"VALUE k 0 5\r\nhello\r\nEND\r\n", Reply::Value),
            (b"VALUE k 0 0\r\n\r\nEND\r\n", Reply::Value),
            (b"VALUE k 7 3 99\r\nabc\r\nEND\r\n", Reply::Value),
            (
                b"VALUE a 0 1\r\nx\r\nVALUE b 0 2\r\nyz\r\nEND\r\n",
                Reply::Value,
            ),
            (b"VALUE k 0 5\r\nEND\r\n\r\nEND\r\n", Reply::Value),
            (b"ERROR\r\n", Reply::Error(b"ERROR")),
            (
                b"CLIENT_ERROR bad data chunk\r\n",
                Reply::Error(b"CLIENT_ERROR bad data chunk"),
            ),
            (
                b"SERVER_ERROR out of memory\r\n",
                Reply::Error(b"SERVER_ERROR out of memory"),
            ),
            (b"NOT_STORED\r\n", Reply::Other(b"NOT_STORED")),
            (b"EXISTS\r\n", Reply::Other(b"EXISTS")),
        ];
        for (input, expected) in table {
            assert_eq!(
                parse(input),
                Ok((*expected, input.len())),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn a_reply_split_at_every_byte_is_incomplete_until_whole() {
        let replies: &[&[u8]] = &[
            b"END\r\n",
            b"STORED\r\n",
            b"VALUE key:000000000001 0 10\r\n0123456789\r\nEND\r\n",
            b"VALUE k 0 5\r\nEND\r\n\r\nEND\r\n",
            b"SERVER_ERROR out of memory storing object\r\n",
        ];
        for reply in replies {
            for cut in 0..reply.len() {
                assert_eq!(
                    parse(&reply[..cut]),
                    Err(ParseError::Incomplete),
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(reply)
                );
            }
            assert_eq!(parse(reply).map(|(_, used)| used), Ok(reply.len()));
        }
    }

    #[test]
    fn pipelined_replies_parse_one_at_a_time() {
        let stream = b"STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\nEND\r\nSERVER_ERROR oom\r\n";
        let mut at = 0;
        let mut seen = Vec::new();
        while at < stream.len() {
            let (reply, used) = parse(&stream[at..]).expect("complete");
            seen.push(reply);
            at += used;
        }
        assert_eq!(
            seen,
            [
                Reply::Done,
                Reply::Value,
                Reply::Nil,
                Reply::Error(b"SERVER_ERROR oom")
            ]
        );
    }

    #[test]
    fn hostile_input_is_invalid_not_a_panic() {
        let bad: &[&[u8]] = &[
            b"VALUE k 0\r\n",
            b"VALUE k 0 x\r\n",
            b"VALUE k 0 -1\r\n",
            b"VALUE k 0 1 2 3\r\nx\r\nEND\r\n",
            b"VALUE k 0 3\r\nabcd\r\nEND\r\n",
            b"VALUE k 0 1\r\nx\r\nSTORED\r\n",
            b"VALUE k 0 99999999999\r\n",
            b"STORED\n",
        ];
        for input in bad {
            assert!(
                matches!(parse(input), Err(ParseError::Invalid(_))),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }
}
