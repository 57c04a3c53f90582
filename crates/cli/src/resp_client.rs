//! A minimal blocking RESP2 client: enough for readiness checks and the figures
//! `cluster status` shows. Replies are read with a size cap, since they come from the network.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{anyhow, bail};

/// The largest bulk reply accepted.
const MAX_BULK_BYTES: usize = 16 << 20;

/// One RESP connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// A reply, as far as this client cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+...`
    Simple(String),
    /// `:n`
    Integer(i64),
    /// `$n` or `$-1`
    Bulk(Option<Vec<u8>>),
    /// `*n` (elements read and dropped: unused here)
    Array(usize),
}

impl Conn {
    /// Connects to `addr` (`host:port`) with `timeout` for the connect and every read.
    pub fn connect(addr: &str, timeout: Duration) -> anyhow::Result<Conn> {
        use std::net::ToSocketAddrs;
        let target = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| anyhow!("{addr}: no address"))?;
        let stream = TcpStream::connect_timeout(&target, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Conn {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Sends a command and reads its reply; an error reply becomes an `Err`.
    pub fn call(&mut self, args: &[&str]) -> anyhow::Result<Value> {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.writer.write_all(out.as_bytes())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let line = line.trim_end();
        let (kind, rest) = line.split_at(line.len().min(1));
        match kind {
            "+" => Ok(Value::Simple(rest.to_string())),
            "-" => bail!("{rest}"),
            ":" => Ok(Value::Integer(rest.parse()?)),
            "*" => Ok(Value::Array(rest.parse().unwrap_or(0))),
            "$" => {
                let len: i64 = rest.parse()?;
                if len < 0 {
                    return Ok(Value::Bulk(None));
                }
                let len = len as usize;
                if len > MAX_BULK_BYTES {
                    bail!("reply too large");
                }
                let mut data = vec![0u8; len + 2];
                self.reader.read_exact(&mut data)?;
                data.truncate(len);
                Ok(Value::Bulk(Some(data)))
            }
            _ => bail!("not a RESP reply: {line:?}"),
        }
    }

    /// A command answered with an integer.
    pub fn integer(&mut self, args: &[&str]) -> anyhow::Result<i64> {
        match self.call(args)? {
            Value::Integer(n) => Ok(n),
            other => bail!("expected an integer, got {other:?}"),
        }
    }

    /// A command answered with a bulk string (`None` for nil).
    pub fn bulk(&mut self, args: &[&str]) -> anyhow::Result<Option<String>> {
        match self.call(args)? {
            Value::Bulk(b) => Ok(b.map(|b| String::from_utf8_lossy(&b).into_owned())),
            other => bail!("expected a bulk string, got {other:?}"),
        }
    }
}
