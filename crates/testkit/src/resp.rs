//! A small blocking RESP2 client: enough to drive and inspect nodes from tests.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Largest bulk string or array this client accepts from a server.
const MAX_LEN: usize = 64 << 20;

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+...`
    Simple(String),
    /// `-...`
    Error(String),
    /// `:...`
    Int(i64),
    /// `$...` (`None`: the null bulk string).
    Bulk(Option<Vec<u8>>),
    /// `*...` (`None`: the null array).
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text: simple strings, bulk strings and integers.
    pub fn text(&self) -> Option<String> {
        match self {
            Reply::Simple(s) => Some(s.clone()),
            Reply::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Reply::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }

    /// The error text, for an error reply.
    pub fn error(&self) -> Option<&str> {
        match self {
            Reply::Error(e) => Some(e),
            _ => None,
        }
    }
}

/// A TCP connection with `timeout` for the connect and for every read and write after it.
pub(crate) fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A connection to one node.
pub struct Conn {
    reader: BufReader<TcpStream>,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

impl Conn {
    /// Connects, with `timeout` for the connect and for every read and write after it.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        Ok(Conn {
            reader: BufReader::new(connect(addr, timeout)?),
        })
    }

    /// Sends one command and reads its reply.
    pub fn call<A: AsRef<[u8]>>(&mut self, args: &[A]) -> io::Result<Reply> {
        let mut frame = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            let a = a.as_ref();
            frame.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            frame.extend_from_slice(a);
            frame.extend_from_slice(b"\r\n");
        }
        self.reader.get_mut().write_all(&frame)?;
        self.read_reply()
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        let n = self
            .reader
            .by_ref()
            .take(64 * 1024)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if !line.ends_with(b"\r\n") {
            return Err(invalid("line without CRLF"));
        }
        line.truncate(line.len() - 2);
        String::from_utf8(line).map_err(|_| invalid("line not UTF-8"))
    }

    fn length(text: &str) -> io::Result<Option<usize>> {
        let n: i64 = text.parse().map_err(|_| invalid("bad length"))?;
        if n < 0 {
            return Ok(None);
        }
        let n = usize::try_from(n).map_err(|_| invalid("bad length"))?;
        if n > MAX_LEN {
            return Err(invalid("length over the client's limit"));
        }
        Ok(Some(n))
    }

    fn read_reply(&mut self) -> io::Result<Reply> {
        let line = self.line()?;
        let (kind, rest) = line
            .split_at_checked(1)
            .ok_or_else(|| invalid("empty line"))?;
        Ok(match kind {
            "+" => Reply::Simple(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Int(rest.parse().map_err(|_| invalid("bad integer"))?),
            "$" => match Self::length(rest)? {
                None => Reply::Bulk(None),
                Some(n) => {
                    let mut data = vec![0; n + 2];
                    self.reader.read_exact(&mut data)?;
                    data.truncate(n);
                    Reply::Bulk(Some(data))
                }
            },
            "*" => match Self::length(rest)? {
                None => Reply::Array(None),
                Some(n) => {
                    let mut items = Vec::with_capacity(n.min(1024));
                    for _ in 0..n {
                        items.push(self.read_reply()?);
                    }
                    Reply::Array(Some(items))
                }
            },
            _ => return Err(invalid("unknown reply type")),
        })
    }
}

/// Sends one command on a fresh connection.
pub fn call_once<A: AsRef<[u8]>>(
    addr: SocketAddr,
    args: &[A],
    timeout: Duration,
) -> io::Result<Reply> {
    Conn::connect(addr, timeout)?.call(args)
}
