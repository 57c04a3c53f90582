// Hot path: every reply is encoded here, straight into the connection's output buffer.

//! Replies in the memcached text protocol, appended to the connection's output buffer.
//!
//! The classic commands answer with fixed lines ([`Status`]), `VALUE` blocks ended by `END`
//! ([`value`], [`end`]), bare numbers for `incr`/`decr` ([`number`]), `STAT` lines and a
//! `VERSION` line. Errors are `ERROR`, `CLIENT_ERROR <text>` or `SERVER_ERROR <text>`; parse
//! errors carry their own line ([`crate::ParseError::wire`]), and [`client_error`] and
//! [`server_error`] write the executor's.
//!
//! The meta commands answer with a two-letter code, then return flags in the order the request
//! asked for them, then `\r\n` (and, after `VA <size>`, the data block):
//!
//! ```
//! # use bytes::BytesMut;
//! use memcache::encode::{self, MetaStatus};
//! let mut out = BytesMut::new();
//! encode::meta_value(&mut out, b"hi").flag_u64(b'f', 5).flag(b'O', b"123");
//! encode::meta(&mut out, MetaStatus::En);
//! assert_eq!(&out[..], b"VA 2 f5 O123\r\nhi\r\nEN\r\n");
//! ```

use bytes::{BufMut, BytesMut};

use crate::base64;
use crate::number::format_u64;

/// A reply that is one fixed line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `STORED`: a storage command succeeded.
    Stored,
    /// `NOT_STORED`: the condition of `add`, `replace`, `append` or `prepend` was not met.
    NotStored,
    /// `EXISTS`: a `cas` found the item changed since it was read.
    Exists,
    /// `NOT_FOUND`: the item does not exist.
    NotFound,
    /// `DELETED`: `delete` removed the item.
    Deleted,
    /// `TOUCHED`: `touch` updated the item.
    Touched,
    /// `OK`: `flush_all`, `verbosity`.
    Ok,
    /// `END`: the end of a `get` or `stats` reply.
    End,
    /// `RESET`: `stats reset`.
    Reset,
    /// `ERROR`: an unknown command.
    Error,
}

impl Status {
    /// Returns the reply line, `\r\n` included.
    pub fn wire(self) -> &'static [u8] {
        match self {
            Status::Stored => b"STORED\r\n",
            Status::NotStored => b"NOT_STORED\r\n",
            Status::Exists => b"EXISTS\r\n",
            Status::NotFound => b"NOT_FOUND\r\n",
            Status::Deleted => b"DELETED\r\n",
            Status::Touched => b"TOUCHED\r\n",
            Status::Ok => b"OK\r\n",
            Status::End => b"END\r\n",
            Status::Reset => b"RESET\r\n",
            Status::Error => b"ERROR\r\n",
        }
    }
}

/// Appends a fixed reply line.
pub fn status(out: &mut BytesMut, status: Status) {
    out.put_slice(status.wire());
}

/// Appends one item of a `get` reply: `VALUE <key> <flags> <bytes>[ <cas>]\r\n<data>\r\n`.
/// `cas` is given for `gets` and `gats`.
pub fn value(out: &mut BytesMut, key: &[u8], flags: u32, data: &[u8], cas: Option<u64>) {
    let mut scratch = [0; 20];
    out.reserve(key.len() + data.len() + 64);
    out.put_slice(b"VALUE ");
    out.put_slice(key);
    out.put_u8(b' ');
    out.put_slice(format_u64(u64::from(flags), &mut scratch));
    out.put_u8(b' ');
    out.put_slice(format_u64(data.len() as u64, &mut scratch));
    if let Some(cas) = cas {
        out.put_u8(b' ');
        out.put_slice(format_u64(cas, &mut scratch));
    }
    out.put_slice(b"\r\n");
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Appends `END\r\n`, which closes a `get` or `stats` reply.
pub fn end(out: &mut BytesMut) {
    status(out, Status::End);
}

/// Appends the new value of an `incr`/`decr`: `<value>\r\n`.
pub fn number(out: &mut BytesMut, value: u64) {
    let mut scratch = [0; 20];
    out.put_slice(format_u64(value, &mut scratch));
    out.put_slice(b"\r\n");
}

/// Appends `VERSION <version>\r\n`.
pub fn version(out: &mut BytesMut, version: &[u8]) {
    line(out, b"VERSION ", version);
}

/// Appends one statistic: `STAT <name> <value>\r\n`. The list ends with [`end`].
pub fn stat(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.reserve(name.len() + value.len() + 8);
    out.put_slice(b"STAT ");
    out.put_slice(name);
    out.put_u8(b' ');
    put_sanitized(out, value);
    out.put_slice(b"\r\n");
}

/// Appends one numeric statistic: `STAT <name> <value>\r\n`.
pub fn stat_u64(out: &mut BytesMut, name: &[u8], value: u64) {
    let mut scratch = [0; 20];
    stat(out, name, format_u64(value, &mut scratch));
}

/// Appends `CLIENT_ERROR <message>\r\n` (e.g. `cannot increment or decrement non-numeric
/// value`). CR and LF in the message become spaces.
pub fn client_error(out: &mut BytesMut, message: &str) {
    line(out, b"CLIENT_ERROR ", message.as_bytes());
}

/// Appends `SERVER_ERROR <message>\r\n` (e.g. `out of memory storing object`). CR and LF in the
/// message become spaces.
pub fn server_error(out: &mut BytesMut, message: &str) {
    line(out, b"SERVER_ERROR ", message.as_bytes());
}

/// A reply line can't hold CR or LF; they become spaces.
fn put_sanitized(out: &mut BytesMut, text: &[u8]) {
    for part in text.split(|&c| c == b'\r' || c == b'\n').enumerate() {
        if part.0 > 0 {
            out.put_u8(b' ');
        }
        out.put_slice(part.1);
    }
}

fn line(out: &mut BytesMut, prefix: &[u8], text: &[u8]) {
    out.reserve(prefix.len() + text.len() + 2);
    out.put_slice(prefix);
    put_sanitized(out, text);
    out.put_slice(b"\r\n");
}

/// The status code of a meta reply without a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaStatus {
    /// `HD`: success, no value.
    Hd,
    /// `EN`: `mg` miss.
    En,
    /// `NF`: not found (`md`, `ma`, `ms` in append/prepend/replace/cas mode).
    Nf,
    /// `NS`: not stored.
    Ns,
    /// `EX`: the cas value did not match.
    Ex,
    /// `MN`: the answer to `mn`.
    Mn,
}

impl MetaStatus {
    fn code(self) -> &'static [u8] {
        match self {
            MetaStatus::Hd => b"HD",
            MetaStatus::En => b"EN",
            MetaStatus::Nf => b"NF",
            MetaStatus::Ns => b"NS",
            MetaStatus::Ex => b"EX",
            MetaStatus::Mn => b"MN",
        }
    }
}

/// Starts a meta reply line with `status`; add return flags, and the line is completed
/// (`\r\n`) when the returned [`MetaLine`] is dropped or [`MetaLine::finish`]ed.
pub fn meta(out: &mut BytesMut, status: MetaStatus) -> MetaLine<'_> {
    out.put_slice(status.code());
    MetaLine { out, data: None }
}

/// Starts a meta value reply, `VA <size>`; add return flags, and the line, the data block and
/// its `\r\n` are written when the returned [`MetaLine`] is dropped or finished.
pub fn meta_value<'a>(out: &'a mut BytesMut, data: &'a [u8]) -> MetaLine<'a> {
    let mut scratch = [0; 20];
    out.reserve(data.len() + 32);
    out.put_slice(b"VA ");
    out.put_slice(format_u64(data.len() as u64, &mut scratch));
    MetaLine {
        out,
        data: Some(data),
    }
}

/// A meta reply line being written: return flags are appended in call order, which should be
/// the request's order ([`crate::MetaFlags::iter`]). Dropping it ends the line.
#[derive(Debug)]
pub struct MetaLine<'a> {
    out: &'a mut BytesMut,
    /// The data block of a `VA` reply, written after the line.
    data: Option<&'a [u8]>,
}

impl MetaLine<'_> {
    /// Appends ` <flag><token>`, e.g. the echoed opaque `O123` or `t-1`.
    pub fn flag(&mut self, flag: u8, token: &[u8]) -> &mut Self {
        self.out.reserve(token.len() + 2);
        self.out.put_u8(b' ');
        self.out.put_u8(flag);
        put_sanitized(self.out, token);
        self
    }

    /// Appends ` <flag><value>`, e.g. `c12345` or `s5`.
    pub fn flag_u64(&mut self, flag: u8, value: u64) -> &mut Self {
        let mut scratch = [0; 20];
        let digits = format_u64(value, &mut scratch);
        self.flag(flag, digits)
    }

    /// Appends ` <flag><value>` for a signed value, e.g. `t-1` for an item that never expires.
    pub fn flag_i64(&mut self, flag: u8, value: i64) -> &mut Self {
        let mut scratch = [0; 20];
        let digits = format_u64(value.unsigned_abs(), &mut scratch);
        self.out.reserve(digits.len() + 3);
        self.out.put_u8(b' ');
        self.out.put_u8(flag);
        if value < 0 {
            self.out.put_u8(b'-');
        }
        self.out.put_slice(digits);
        self
    }

    /// Appends the key for the `k` flag: ` k<key>`, or ` k<base64> b` for a key that arrived
    /// base64-encoded (`binary`: the request had the `b` flag), as memcached does.
    pub fn key(&mut self, key: &[u8], binary: bool) -> &mut Self {
        if binary {
            let mut encoded = Vec::new();
            base64::encode_into(key, &mut encoded);
            self.flag(b'k', &encoded);
            self.out.put_slice(b" b");
        } else {
            self.flag(b'k', key);
        }
        self
    }

    /// Ends the line (and writes the data block of a `VA` reply); the same as dropping it.
    pub fn finish(self) {}
}

impl Drop for MetaLine<'_> {
    fn drop(&mut self) {
        self.out.put_slice(b"\r\n");
        if let Some(data) = self.data {
            self.out.put_slice(data);
            self.out.put_slice(b"\r\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(out: &BytesMut) -> String {
        String::from_utf8_lossy(out).into_owned()
    }

    #[test]
    fn classic_replies_encode_byte_exact() {
        let mut out = BytesMut::new();
        value(&mut out, b"k", 5, b"hi", None);
        value(&mut out, b"key2", u32::MAX, b"", Some(u64::MAX));
        value(&mut out, b"bin", 0, b"a\r\nb", None);
        end(&mut out);
        assert_eq!(
            text(&out),
            "VALUE k 5 2\r\nhi\r\nVALUE key2 4294967295 0 18446744073709551615\r\n\r\n\
             VALUE bin 0 4\r\na\r\nb\r\nEND\r\n"
        );
        let table: &[(Status, &str)] = &[
            (Status::Stored, "STORED\r\n"),
            (Status::NotStored, "NOT_STORED\r\n"),
            (Status::Exists, "EXISTS\r\n"),
            (Status::NotFound, "NOT_FOUND\r\n"),
            (Status::Deleted, "DELETED\r\n"),
            (Status::Touched, "TOUCHED\r\n"),
            (Status::Ok, "OK\r\n"),
            (Status::End, "END\r\n"),
            (Status::Reset, "RESET\r\n"),
            (Status::Error, "ERROR\r\n"),
        ];
        for (s, wire) in table {
            let mut out = BytesMut::new();
            status(&mut out, *s);
            assert_eq!(text(&out), *wire);
        }
    }

    #[test]
    fn other_lines_encode_byte_exact() {
        let mut out = BytesMut::new();
        number(&mut out, 0);
        number(&mut out, 18446744073709551615);
        version(&mut out, b"1.6.21");
        stat(&mut out, b"pid", b"42");
        stat_u64(&mut out, b"curr_items", 7);
        stat(&mut out, b"odd", b"a\r\nb");
        client_error(&mut out, "cannot increment or decrement non-numeric value");
        server_error(&mut out, "out of memory\r\nstoring object");
        assert_eq!(
            text(&out),
            "0\r\n18446744073709551615\r\nVERSION 1.6.21\r\nSTAT pid 42\r\n\
             STAT curr_items 7\r\nSTAT odd a  b\r\n\
             CLIENT_ERROR cannot increment or decrement non-numeric value\r\n\
             SERVER_ERROR out of memory  storing object\r\n"
        );
    }

    #[test]
    fn meta_replies_encode_byte_exact() {
        let mut out = BytesMut::new();
        meta_value(&mut out, b"hello")
            .flag_u64(b'c', 99)
            .flag_i64(b't', -1)
            .flag(b'O', b"abc")
            .key(b"foo", false);
        meta(&mut out, MetaStatus::Hd).flag_i64(b't', 30);
        meta(&mut out, MetaStatus::En);
        meta(&mut out, MetaStatus::Nf).flag(b'O', b"1");
        meta(&mut out, MetaStatus::Ns);
        meta(&mut out, MetaStatus::Ex);
        meta(&mut out, MetaStatus::Hd).key(b"foo bar", true);
        meta_value(&mut out, b"").finish();
        meta(&mut out, MetaStatus::Mn).finish();
        assert_eq!(
            text(&out),
            "VA 5 c99 t-1 Oabc kfoo\r\nhello\r\nHD t30\r\nEN\r\nNF O1\r\nNS\r\nEX\r\n\
             HD kZm9vIGJhcg== b\r\nVA 0\r\n\r\nMN\r\n"
        );
    }

    #[test]
    fn meta_i64_flags_cover_the_extremes() {
        let mut out = BytesMut::new();
        meta(&mut out, MetaStatus::Hd)
            .flag_i64(b't', i64::MIN)
            .flag_i64(b'x', 0);
        assert_eq!(text(&out), "HD t-9223372036854775808 x0\r\n");
    }
}
