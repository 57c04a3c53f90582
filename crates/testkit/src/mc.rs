//! A memcached text-protocol client as a forwarding application uses one: it knows a list of
//! nodes, not the slot map, sends every key to the node it is connected to (which serves it
//! or forwards it to the owner), and moves to the next node when that one fails or hangs.
//! `SERVER_ERROR` replies are retried within the budget, as a client with retries would.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::client::{Budget, Outcome};
use crate::resp::Reply;

/// Largest value this client accepts from a server.
const MAX_VALUE: usize = 64 << 20;

/// A connection to one node's memcached port.
struct Conn {
    reader: BufReader<TcpStream>,
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

impl Conn {
    fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Conn> {
        Ok(Conn {
            reader: BufReader::new(crate::resp::connect(addr, timeout)?),
        })
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(line.trim_end().to_string())
    }

    /// `set key 0 0 len`: `STORED`, or the server's error line.
    fn set(&mut self, key: &[u8], value: &[u8]) -> io::Result<String> {
        let mut frame = b"set ".to_vec();
        frame.extend_from_slice(key);
        frame.extend_from_slice(format!(" 0 0 {}\r\n", value.len()).as_bytes());
        frame.extend_from_slice(value);
        frame.extend_from_slice(b"\r\n");
        self.reader.get_mut().write_all(&frame)?;
        self.line()
    }

    /// `get key`: the value (`None` on a miss), or the server's error line.
    fn get(&mut self, key: &[u8]) -> io::Result<Result<Option<Vec<u8>>, String>> {
        let mut frame = b"get ".to_vec();
        frame.extend_from_slice(key);
        frame.extend_from_slice(b"\r\n");
        self.reader.get_mut().write_all(&frame)?;
        let line = self.line()?;
        if line == "END" {
            return Ok(Ok(None));
        }
        let Some(header) = line.strip_prefix("VALUE ") else {
            return Ok(Err(line));
        };
        let len: usize = header
            .split(' ')
            .nth(2)
            .and_then(|n| n.parse().ok())
            .filter(|n| *n <= MAX_VALUE)
            .ok_or_else(|| invalid(format!("bad VALUE line {line:?}")))?;
        let mut value = vec![0; len + 2];
        self.reader.read_exact(&mut value)?;
        value.truncate(len);
        match self.line()?.as_str() {
            "END" => Ok(Ok(Some(value))),
            other => Err(invalid(format!("expected END, got {other:?}"))),
        }
    }
}

/// A forwarding client: one node at a time, the next one when it fails.
pub struct ForwardingClient {
    nodes: Vec<SocketAddr>,
    next: usize,
    conn: Option<(SocketAddr, Conn)>,
    budget: Budget,
    /// Attempts beyond the first, over the client's life.
    pub retries: u64,
}

impl ForwardingClient {
    /// A client of the memcached ports `nodes`, starting with `nodes[first % len]`.
    pub fn new(nodes: Vec<SocketAddr>, first: usize, budget: Budget) -> ForwardingClient {
        ForwardingClient {
            nodes,
            next: first,
            conn: None,
            budget,
            retries: 0,
        }
    }

    fn run<T>(
        &mut self,
        mut attempt: impl FnMut(&mut Conn) -> io::Result<Result<T, String>>,
    ) -> Result<(T, SocketAddr), String> {
        let deadline = Instant::now() + self.budget.total;
        let mut backoff = Duration::from_millis(5);
        let mut last = String::from("no attempt");
        let mut first = true;
        loop {
            if !first {
                self.retries += 1;
                if Instant::now() > deadline {
                    return Err(last);
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(100));
            }
            first = false;
            if self.conn.is_none() {
                if self.nodes.is_empty() {
                    return Err("no nodes".into());
                }
                let addr = self.nodes[self.next % self.nodes.len()];
                match Conn::connect(addr, self.budget.attempt) {
                    Ok(c) => self.conn = Some((addr, c)),
                    Err(e) => {
                        last = format!("{addr}: {e}");
                        self.next += 1;
                        continue;
                    }
                }
            }
            let Some((addr, conn)) = self.conn.as_mut() else {
                continue;
            };
            let addr = *addr;
            match attempt(conn) {
                Ok(Ok(value)) => return Ok((value, addr)),
                Ok(Err(line)) if line.starts_with("SERVER_ERROR") => last = line,
                Ok(Err(line)) => return Err(line),
                Err(e) => {
                    // The node failed or hung: the next one.
                    last = format!("{addr}: {e}");
                    self.conn = None;
                    self.next += 1;
                }
            }
        }
    }

    /// `set key value`: `+OK` when stored.
    pub fn set(&mut self, key: &[u8], value: &[u8]) -> Outcome {
        match self.run(|c| {
            c.set(key, value)
                .map(|line| if line == "STORED" { Ok(()) } else { Err(line) })
        }) {
            Ok(((), at)) => Outcome::Done(Reply::Simple("OK".into()), at),
            Err(why) => Outcome::Failed(why),
        }
    }

    /// `get key`: the value as a bulk string (null on a miss).
    pub fn get(&mut self, key: &[u8]) -> Outcome {
        match self.run(|c| c.get(key)) {
            Ok((value, at)) => Outcome::Done(Reply::Bulk(value), at),
            Err(why) => Outcome::Failed(why),
        }
    }
}
