// Hot path: every reply is encoded here, straight into the connection's output buffer.

//! Replies and their encoding for RESP2 and RESP3.
//!
//! Commands build a [`Reply`]; the connection encodes it for the protocol version the client
//! chose with `HELLO`. RESP3-only types degrade the way Redis degrades them for RESP2: a map
//! becomes a flat array, a set an array, a double a bulk string, a boolean an integer, and
//! both null kinds become the RESP2 null bulk or null array.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};

/// The protocol version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// RESP2, the default of every new connection.
    #[default]
    Resp2,
    /// RESP3, chosen with `HELLO 3`.
    Resp3,
}

impl Protocol {
    /// Returns the version number (`2` or `3`).
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// One reply, independent of the protocol version.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// A simple string: `+OK`.
    Simple(Cow<'static, str>),
    /// An error; the text starts with its code (`ERR ...`, `WRONGTYPE ...`), without the `-`.
    Error(Cow<'static, str>),
    /// An integer.
    Integer(i64),
    /// A bulk string.
    Bulk(Bytes),
    /// A missing value: `$-1` in RESP2, `_` in RESP3.
    Nil,
    /// A missing array: `*-1` in RESP2, `_` in RESP3.
    NilArray,
    /// An array.
    Array(Vec<Reply>),
    /// A map: a flat array of keys and values in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// A set: an array in RESP2.
    Set(Vec<Reply>),
    /// A double: a bulk string in RESP2.
    Double(f64),
    /// A boolean: the integer 1 or 0 in RESP2.
    Bool(bool),
    /// A verbatim string with its three-letter format (`txt`): a bulk string in RESP2.
    Verbatim(&'static str, Bytes),
}

impl Reply {
    /// Returns `+OK`.
    pub const fn ok() -> Reply {
        Reply::Simple(Cow::Borrowed("OK"))
    }

    /// Returns a simple string from static text.
    pub const fn simple(text: &'static str) -> Reply {
        Reply::Simple(Cow::Borrowed(text))
    }

    /// Returns an error from static text (which starts with its code, e.g. `ERR`).
    pub const fn error(text: &'static str) -> Reply {
        Reply::Error(Cow::Borrowed(text))
    }

    /// Returns an error from formatted text (which starts with its code, e.g. `ERR`).
    pub fn error_owned(text: String) -> Reply {
        Reply::Error(Cow::Owned(text))
    }

    /// Returns a bulk string copied from `data`.
    pub fn bulk(data: impl AsRef<[u8]>) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(data.as_ref()))
    }

    /// Returns a bulk string from static bytes (no copy).
    pub const fn bulk_static(data: &'static [u8]) -> Reply {
        Reply::Bulk(Bytes::from_static(data))
    }

    /// Returns true for an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the encoding of this reply for `protocol` to `out`.
    pub fn encode(&self, protocol: Protocol, out: &mut BytesMut) {
        let resp3 = protocol == Protocol::Resp3;
        match self {
            Reply::Simple(text) => line(out, b'+', text.as_bytes()),
            Reply::Error(text) => line(out, b'-', sanitize(text).as_bytes()),
            Reply::Integer(n) => int_line(out, b':', *n),
            Reply::Bulk(data) => bulk(out, data),
            Reply::Nil if resp3 => out.put_slice(b"_\r\n"),
            Reply::Nil => out.put_slice(b"$-1\r\n"),
            Reply::NilArray if resp3 => out.put_slice(b"_\r\n"),
            Reply::NilArray => out.put_slice(b"*-1\r\n"),
            Reply::Array(items) => {
                int_line(out, b'*', items.len() as i64);
                items.iter().for_each(|item| item.encode(protocol, out));
            }
            Reply::Set(items) => {
                int_line(out, if resp3 { b'~' } else { b'*' }, items.len() as i64);
                items.iter().for_each(|item| item.encode(protocol, out));
            }
            Reply::Map(pairs) => {
                if resp3 {
                    int_line(out, b'%', pairs.len() as i64);
                } else {
                    int_line(out, b'*', 2 * pairs.len() as i64);
                }
                for (key, value) in pairs {
                    key.encode(protocol, out);
                    value.encode(protocol, out);
                }
            }
            Reply::Double(value) => {
                let text = format_double(*value);
                if resp3 {
                    line(out, b',', text.as_bytes());
                } else {
                    bulk(out, text.as_bytes());
                }
            }
            Reply::Bool(value) if resp3 => {
                out.put_slice(if *value { b"#t\r\n" } else { b"#f\r\n" })
            }
            Reply::Bool(value) => int_line(out, b':', i64::from(*value)),
            Reply::Verbatim(format, data) if resp3 => {
                int_line(out, b'=', (data.len() + 4) as i64);
                out.put_slice(format.as_bytes());
                out.put_u8(b':');
                out.put_slice(data);
                out.put_slice(b"\r\n");
            }
            Reply::Verbatim(_, data) => bulk(out, data),
        }
    }
}

/// Formats a double as Redis does for replies: `inf`, `-inf`, `nan`, or the shortest decimal
/// that reads back as the same value, without an exponent.
pub fn format_double(value: f64) -> String {
    if value.is_nan() {
        "nan".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{value}")
    }
}

fn line(out: &mut BytesMut, marker: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(marker);
    out.put_slice(text);
    out.put_slice(b"\r\n");
}

fn int_line(out: &mut BytesMut, marker: u8, n: i64) {
    let mut digits = itoa::Buffer::new();
    line(out, marker, digits.format(n).as_bytes());
}

fn bulk(out: &mut BytesMut, data: &[u8]) {
    out.reserve(data.len() + 16);
    int_line(out, b'$', data.len() as i64);
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Error and simple-string lines can't carry CR or LF; Redis replaces them with spaces.
fn sanitize(text: &str) -> Cow<'_, str> {
    if text.contains(['\r', '\n']) {
        Cow::Owned(text.replace(['\r', '\n'], " "))
    } else {
        Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(reply: &Reply, protocol: Protocol) -> String {
        let mut out = BytesMut::new();
        reply.encode(protocol, &mut out);
        String::from_utf8(out.to_vec()).expect("utf8")
    }

    #[test]
    fn replies_encode_byte_exact_in_both_protocols() {
        use Protocol::{Resp2, Resp3};
        let map = Reply::Map(vec![(Reply::bulk("a"), Reply::Integer(1))]);
        let table: Vec<(Reply, &str, &str)> = vec![
            (Reply::ok(), "+OK\r\n", "+OK\r\n"),
            (Reply::error("ERR x"), "-ERR x\r\n", "-ERR x\r\n"),
            (Reply::error("ERR a\r\nb"), "-ERR a  b\r\n", "-ERR a  b\r\n"),
            (Reply::Integer(-5), ":-5\r\n", ":-5\r\n"),
            (Reply::bulk("hi"), "$2\r\nhi\r\n", "$2\r\nhi\r\n"),
            (Reply::bulk(""), "$0\r\n\r\n", "$0\r\n\r\n"),
            (Reply::Nil, "$-1\r\n", "_\r\n"),
            (Reply::NilArray, "*-1\r\n", "_\r\n"),
            (Reply::Array(vec![]), "*0\r\n", "*0\r\n"),
            (
                Reply::Array(vec![Reply::Nil, Reply::Integer(1)]),
                "*2\r\n$-1\r\n:1\r\n",
                "*2\r\n_\r\n:1\r\n",
            ),
            (map, "*2\r\n$1\r\na\r\n:1\r\n", "%1\r\n$1\r\na\r\n:1\r\n"),
            (
                Reply::Set(vec![Reply::bulk("x")]),
                "*1\r\n$1\r\nx\r\n",
                "~1\r\n$1\r\nx\r\n",
            ),
            (Reply::Double(1.5), "$3\r\n1.5\r\n", ",1.5\r\n"),
            (Reply::Double(f64::INFINITY), "$3\r\ninf\r\n", ",inf\r\n"),
            (Reply::Bool(true), ":1\r\n", "#t\r\n"),
            (
                Reply::Verbatim("txt", Bytes::from_static(b"ab")),
                "$2\r\nab\r\n",
                "=6\r\ntxt:ab\r\n",
            ),
        ];
        for (reply, resp2, resp3) in table {
            assert_eq!(enc(&reply, Resp2), resp2, "{reply:?}");
            assert_eq!(enc(&reply, Resp3), resp3, "{reply:?}");
        }
    }

    #[test]
    fn doubles_format_like_redis() {
        assert_eq!(format_double(10.6), "10.6");
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(-0.5), "-0.5");
        assert_eq!(format_double(5000.0), "5000");
    }
}
