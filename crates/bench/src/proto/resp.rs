// Hot path: RESP requests are encoded and replies parsed here.

//! RESP2, client side: `GET`/`SET` as multibulk arrays, and a reply parser.
//!
//! The parser understands every RESP2 reply type (`+ - : $ *`) and RESP3's null (`_`), so a
//! reply the load generator does not expect (an integer, an array) keeps the stream in frame
//! and is counted as an error rather than losing the connection. Other RESP3 types never
//! arrive: the load generator never sends `HELLO 3`.

use super::{data, line, parse_len, ParseError, Reply};

/// Deepest array nesting accepted; deeper input is hostile, not a reply to GET or SET.
const MAX_DEPTH: usize = 8;

/// Appends `*2\r\n$3\r\nGET\r\n$<n>\r\n<key>\r\n` to `out`.
pub fn encode_get(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(b"*2\r\n$3\r\nGET\r\n");
    bulk(out, key);
}

/// Appends `*3\r\n$3\r\nSET\r\n$<n>\r\n<key>\r\n$<m>\r\n<value>\r\n` to `out`.
pub fn encode_set(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.extend_from_slice(b"*3\r\n$3\r\nSET\r\n");
    bulk(out, key);
    bulk(out, value);
}

fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut len = itoa::Buffer::new();
    out.push(b'$');
    out.extend_from_slice(len.format(bytes.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// Parses the RESP reply at the front of `buf`; returns it and the bytes it spans.
pub fn parse(buf: &[u8]) -> Result<(Reply<'_>, usize), ParseError> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], start: usize, depth: usize) -> Result<(Reply<'_>, usize), ParseError> {
    let Some(&kind) = buf.get(start) else {
        return Err(ParseError::Incomplete);
    };
    let (text, after) = line(buf, start + 1)?;
    match kind {
        b'+' if text == b"OK" => Ok((Reply::Done, after)),
        b'+' | b':' => Ok((Reply::Other(&buf[start..after - 2]), after)),
        b'-' => Ok((Reply::Error(text), after)),
        b'_' if text.is_empty() => Ok((Reply::Nil, after)),
        b'$' if text == b"-1" => Ok((Reply::Nil, after)),
        b'$' => Ok((Reply::Value, data(buf, after, parse_len(text)?)?)),
        b'*' if text == b"-1" => Ok((Reply::Nil, after)),
        b'*' => {
            if depth >= MAX_DEPTH {
                return Err(ParseError::Invalid("arrays nested too deeply"));
            }
            let count = parse_len(text)?;
            let mut at = after;
            for _ in 0..count {
                at = parse_at(buf, at, depth + 1)?.1;
            }
            Ok((Reply::Other(&buf[start..after - 2]), at))
        }
        _ => Err(ParseError::Invalid("not a RESP2 reply")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(input: &[u8]) -> Result<(Reply<'_>, usize), ParseError> {
        parse(input)
    }

    #[test]
    fn requests_are_multibulk_arrays() {
        let mut out = Vec::new();
        encode_get(&mut out, b"key:000000000042");
        assert_eq!(out, b"*2\r\n$3\r\nGET\r\n$16\r\nkey:000000000042\r\n");
        out.clear();
        encode_set(&mut out, b"k", b"hello");
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n");
        out.clear();
        encode_set(&mut out, b"k", b"");
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");
    }

    #[test]
    fn replies_parse_byte_exact() {
        let table: &[(&[u8], Reply<'_>)] = &[
            (b"+OK\r\n", Reply::Done),
            (b"+QUEUED\r\n", Reply::Other(b"+QUEUED")),
            (b"-ERR wrong\r\n", Reply::Error(b"ERR wrong")),
            (
                b"-OOM command not allowed\r\n",
                Reply::Error(b"OOM command not allowed"),
            ),
            (b":42\r\n", Reply::Other(b":42")),
            (b"$5\r\nhello\r\n", Reply::Value),
            (b"$0\r\n\r\n", Reply::Value),
            (b"$-1\r\n", Reply::Nil),
            (b"*-1\r\n", Reply::Nil),
            (b"_\r\n", Reply::Nil),
            (b"*2\r\n$1\r\na\r\n:1\r\n", Reply::Other(b"*2")),
            (b"*1\r\n*1\r\n+x\r\n", Reply::Other(b"*1")),
            (b"*0\r\n", Reply::Other(b"*0")),
        ];
        for (input, expected) in table {
            assert_eq!(
                parsed(input),
                Ok((*expected, input.len())),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn a_reply_split_at_every_byte_is_incomplete_until_whole() {
        let replies: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR no\r\n",
            b"$11\r\nhello world\r\n",
            b"$-1\r\n",
            b"_\r\n",
            b":7\r\n",
            b"*2\r\n$1\r\na\r\n$-1\r\n",
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
        let stream = b"+OK\r\n$3\r\nabc\r\n$-1\r\n-ERR x\r\n";
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
                Reply::Error(b"ERR x")
            ]
        );
    }

    #[test]
    fn hostile_input_is_invalid_not_a_panic() {
        let bad: &[&[u8]] = &[
            b"?what\r\n",
            b"$abc\r\n",
            b"$-2\r\n",
            b"$3\r\nabcd\r\n",
            b"$99999999999\r\n",
            b"*-5\r\n",
            b"+OK\n",
            b"_x\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n+x\r\n",
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
