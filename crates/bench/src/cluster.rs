// Hot path: in cluster mode every request is routed, written, answered and timed here.

//! Cluster mode (`--cluster`): the load generator as a Redis Cluster client.
//!
//! At start it reads `CLUSTER SLOTS` from the node it was pointed at. Each of its connections
//! then holds one socket per primary ("link") and sends every request to the link of its
//! key's slot. That is what a cluster client with pipelining does: a batch of `pipeline`
//! requests is split over the links, written, and the batch completes when every link has
//! answered.
//!
//! Redirects are followed:
//! - `-MOVED slot host:port` updates this connection's slot map and re-sends the request to
//!   the new owner, opening a link if needed;
//! - `-ASK slot host:port` re-sends the request there once, preceded by `ASKING`.
//!
//! A redirected request's latency still counts from its first send. Redirects are counted in
//! the report.
//!
//! Only the closed loop and RESP are supported in cluster mode: memcached clients don't route
//! (any ringcache node serves any key on its memcached port).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::net::TcpStream;

use crate::conn::{Plan, Until};
use crate::progress::Progress;
use crate::proto::{ParseError, Protocol, Reply};
use crate::report::Stats;
use crate::workload::{format_key, Op, OpKind, Workload};
use crate::{Error, Result};

const READ_CHUNK_BYTES: usize = 16 * 1024;
const PREFILL_DEPTH: usize = 128;
const SLOTS: usize = 16384;

/// The slot map as read from `CLUSTER SLOTS`: the primary's address of every slot.
#[derive(Debug, Clone)]
pub struct SlotMap {
    /// Distinct primaries.
    pub primaries: Vec<SocketAddr>,
    /// Per slot, the index in `primaries` (`u16::MAX`: not served).
    pub owner: Vec<u16>,
}

/// Reads the slot map from the node at `addr`.
pub async fn read_slot_map(addr: SocketAddr, timeout: Duration) -> Result<SlotMap> {
    let fail = |reason: String| Error::Connect { addr, reason };
    let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| fail("no answer".into()))?
        .map_err(|e| fail(e.to_string()))?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"*2\r\n$7\r\nCLUSTER\r\n$5\r\nSLOTS\r\n")
        .await
        .map_err(|e| fail(e.to_string()))?;
    let mut buf = Vec::new();
    let deadline = Instant::now() + timeout;
    let value = loop {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(timeout, stream.read(&mut chunk))
            .await
            .map_err(|_| fail("no CLUSTER SLOTS reply".into()))?
            .map_err(|e| fail(e.to_string()))?;
        if n == 0 || Instant::now() > deadline {
            return Err(fail(
                "connection closed before the CLUSTER SLOTS reply".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 64 << 20 {
            return Err(fail("CLUSTER SLOTS reply too large".into()));
        }
        match parse_value(&buf, 0) {
            Ok(Some((v, _))) => break v,
            Ok(None) => continue,
            Err(e) => return Err(fail(format!("bad CLUSTER SLOTS reply: {e}"))),
        }
    };
    slot_map_from(&value, addr).map_err(fail)
}

/// A RESP value, as far as `CLUSTER SLOTS` needs.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(i64),
    Str(Vec<u8>),
    Array(Vec<Value>),
    Error(String),
    Nil,
}

/// Parses one RESP2 value at `pos`; `Ok(None)` when incomplete.
fn parse_value(buf: &[u8], pos: usize) -> std::result::Result<Option<(Value, usize)>, String> {
    let Some(rest) = buf.get(pos..) else {
        return Ok(None);
    };
    let Some(nl) = rest.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&rest[1..nl]).map_err(|e| e.to_string())?;
    let next = pos + nl + 2;
    let int = || line.parse::<i64>().map_err(|e| e.to_string());
    match rest.first() {
        Some(b'+') => Ok(Some((Value::Str(line.as_bytes().to_vec()), next))),
        Some(b'-') => Ok(Some((Value::Error(line.to_string()), next))),
        Some(b':') => Ok(Some((Value::Int(int()?), next))),
        Some(b'$') => {
            let len = int()?;
            if len < 0 {
                return Ok(Some((Value::Nil, next)));
            }
            let end = next + len as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            Ok(Some((Value::Str(buf[next..end].to_vec()), end + 2)))
        }
        Some(b'*') | Some(b'%') => {
            let mut n = int()?;
            if n < 0 {
                return Ok(Some((Value::Nil, next)));
            }
            if rest[0] == b'%' {
                n *= 2;
            }
            if n > 1 << 20 {
                return Err("array too long".into());
            }
            let mut items = Vec::with_capacity(n as usize);
            let mut at = next;
            for _ in 0..n {
                match parse_value(buf, at)? {
                    Some((v, after)) => {
                        items.push(v);
                        at = after;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Value::Array(items), at)))
        }
        Some(_) => Err(format!("unexpected reply {line:?}")),
        None => Ok(None),
    }
}

fn slot_map_from(value: &Value, seed: SocketAddr) -> std::result::Result<SlotMap, String> {
    let ranges = match value {
        Value::Array(r) => r,
        Value::Error(e) => return Err(format!("CLUSTER SLOTS: {e}")),
        other => return Err(format!("CLUSTER SLOTS: unexpected {other:?}")),
    };
    let mut map = SlotMap {
        primaries: Vec::new(),
        owner: vec![u16::MAX; SLOTS],
    };
    for range in ranges {
        let Value::Array(items) = range else { continue };
        let (Some(Value::Int(a)), Some(Value::Int(b)), Some(Value::Array(primary))) =
            (items.first(), items.get(1), items.get(2))
        else {
            return Err("CLUSTER SLOTS: malformed range".into());
        };
        let (Some(Value::Str(host)), Some(Value::Int(port))) = (primary.first(), primary.get(1))
        else {
            return Err("CLUSTER SLOTS: malformed node".into());
        };
        let host = String::from_utf8_lossy(host);
        let host = if host.is_empty() {
            seed.ip().to_string()
        } else {
            host.into_owned()
        };
        let addr: SocketAddr = format!("{host}:{port}")
            .parse()
            .map_err(|_| format!("CLUSTER SLOTS: bad address {host}:{port}"))?;
        let index = match map.primaries.iter().position(|p| *p == addr) {
            Some(i) => i,
            None => {
                map.primaries.push(addr);
                map.primaries.len() - 1
            }
        };
        let (a, b) = (*a as usize, *b as usize);
        if a > b || b >= SLOTS {
            return Err("CLUSTER SLOTS: slot out of range".into());
        }
        for slot in &mut map.owner[a..=b] {
            *slot = index as u16;
        }
    }
    if map.primaries.is_empty() {
        return Err("CLUSTER SLOTS: no slots are served".into());
    }
    Ok(map)
}

/// Parses `MOVED <slot> <host:port>` or `ASK <slot> <host:port>` from an error reply.
fn redirect(text: &[u8]) -> Option<(bool, u16, SocketAddr)> {
    let text = std::str::from_utf8(text).ok()?;
    let mut words = text.split(' ');
    let moved = match words.next()? {
        "MOVED" => true,
        "ASK" => false,
        _ => return None,
    };
    let slot = words.next()?.parse().ok()?;
    let addr = words.next()?.parse().ok()?;
    Some((moved, slot, addr))
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    sent: Instant,
    kind: OpKind,
    key: u64,
    value_len: usize,
    recorded: bool,
    /// The `+OK` of an `ASKING` sent before a redirected request: not counted.
    asking: bool,
}

#[derive(Debug)]
struct Link {
    addr: SocketAddr,
    stream: TcpStream,
    read_buf: BytesMut,
    write_buf: Vec<u8>,
    written: usize,
    inflight: VecDeque<Pending>,
}

/// One cluster-aware connection: a link per primary, one slot map.
#[derive(Debug)]
pub struct ClusterConn {
    id: usize,
    links: Vec<Link>,
    /// Per slot, the index in `links`.
    route: Vec<u16>,
    timeout: Duration,
    /// Keys whose GET missed, when cache-aside is on.
    missed: Vec<u64>,
    track_misses: bool,
}

async fn open_link(id: usize, addr: SocketAddr, timeout: Duration) -> Result<Link> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(Error::Connect {
                addr,
                reason: e.to_string(),
            })
        }
        Err(_) => {
            return Err(Error::Connect {
                addr,
                reason: format!("no answer within {timeout:?}"),
            })
        }
    };
    stream
        .set_nodelay(true)
        .map_err(|source| Error::Io { conn: id, source })?;
    Ok(Link {
        addr,
        stream,
        read_buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
        write_buf: Vec::with_capacity(READ_CHUNK_BYTES),
        written: 0,
        inflight: VecDeque::new(),
    })
}

impl ClusterConn {
    /// Opens connection `id`: one link to every primary of `map`.
    pub async fn connect(id: usize, map: &SlotMap, timeout: Duration) -> Result<ClusterConn> {
        let mut links = Vec::with_capacity(map.primaries.len());
        for addr in &map.primaries {
            links.push(open_link(id, *addr, timeout).await?);
        }
        Ok(ClusterConn {
            id,
            links,
            route: map.owner.clone(),
            timeout,
            missed: Vec::new(),
            track_misses: false,
        })
    }

    /// The link for `addr`, opened on first use.
    async fn link_for(&mut self, addr: SocketAddr) -> Result<usize> {
        if let Some(i) = self.links.iter().position(|l| l.addr == addr) {
            return Ok(i);
        }
        self.links
            .push(open_link(self.id, addr, self.timeout).await?);
        Ok(self.links.len() - 1)
    }

    fn queue_on(&mut self, link: usize, p: Pending, work: &Workload) {
        let key = format_key(p.key);
        let l = &mut self.links[link];
        match p.kind {
            OpKind::Get => Protocol::Resp.encode_get(&mut l.write_buf, &key),
            OpKind::Set => {
                Protocol::Resp.encode_set(&mut l.write_buf, &key, work.value(p.value_len))
            }
        }
        l.inflight.push_back(p);
    }

    fn queue(&mut self, op: Op, work: &Workload, sent: Instant, recorded: bool) -> Result<()> {
        let slot = usize::from(store::key_slot(&format_key(op.key)));
        let link = self.route[slot];
        if usize::from(link) >= self.links.len() {
            return Err(Error::Protocol {
                conn: self.id,
                reason: format!("slot {slot} is served by no node"),
            });
        }
        let p = Pending {
            sent,
            kind: op.kind,
            key: op.key,
            value_len: op.value_len,
            recorded,
            asking: false,
        };
        self.queue_on(usize::from(link), p, work);
        Ok(())
    }

    fn write_all_links(&mut self) -> Result<()> {
        for l in &mut self.links {
            while l.written < l.write_buf.len() {
                match l.stream.try_write(&l.write_buf[l.written..]) {
                    Ok(0) => {
                        return Err(Error::Closed {
                            conn: self.id,
                            outstanding: l.inflight.len(),
                            detail: format!(" ({} write returned 0)", l.addr),
                        })
                    }
                    Ok(n) => l.written += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(source) => {
                        return Err(Error::Io {
                            conn: self.id,
                            source,
                        })
                    }
                }
            }
            if l.written == l.write_buf.len() {
                l.write_buf.clear();
                l.written = 0;
            }
        }
        Ok(())
    }

    fn outstanding(&self) -> usize {
        self.links.iter().map(|l| l.inflight.len()).sum()
    }

    /// Waits until some link can move bytes, moves them, handles complete replies.
    async fn step(&mut self, work: &Workload, stats: &mut Stats) -> Result<()> {
        let id = self.id;
        let links = &self.links;
        let ready = std::future::poll_fn(|cx| {
            let mut any = false;
            for l in links.iter() {
                if !l.inflight.is_empty() && l.stream.poll_read_ready(cx).is_ready() {
                    any = true;
                }
                if l.written < l.write_buf.len() && l.stream.poll_write_ready(cx).is_ready() {
                    any = true;
                }
            }
            if any {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        });
        if tokio::time::timeout(self.timeout, ready).await.is_err() {
            return Err(Error::Stalled {
                conn: id,
                timeout: self.timeout,
                outstanding: self.outstanding(),
            });
        }
        self.write_all_links()?;
        let mut redirected = Vec::new();
        let track_misses = self.track_misses;
        let missed = &mut self.missed;
        for l in &mut self.links {
            if l.inflight.is_empty() {
                continue;
            }
            if l.read_buf.capacity() - l.read_buf.len() < READ_CHUNK_BYTES / 4 {
                l.read_buf.reserve(READ_CHUNK_BYTES);
            }
            match l.stream.try_read_buf(&mut l.read_buf) {
                Ok(0) => {
                    return Err(Error::Closed {
                        conn: id,
                        outstanding: l.inflight.len(),
                        detail: format!(" ({})", l.addr),
                    })
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(source) => return Err(Error::Io { conn: id, source }),
            }
            let now = Instant::now();
            loop {
                match Protocol::Resp.parse(&l.read_buf) {
                    Ok((reply, used)) => {
                        let Some(p) = l.inflight.pop_front() else {
                            return Err(Error::Protocol {
                                conn: id,
                                reason: "reply with no request outstanding".into(),
                            });
                        };
                        let hop = match reply {
                            Reply::Error(text) => redirect(text),
                            _ => None,
                        };
                        match hop {
                            _ if p.asking => {}
                            Some(hop) => redirected.push((p, hop)),
                            None => {
                                if track_misses && p.kind == OpKind::Get && reply == Reply::Nil {
                                    missed.push(p.key);
                                }
                                stats.observe(p.kind, &reply, p.sent, now, p.recorded)
                            }
                        }
                        l.read_buf.advance(used);
                    }
                    Err(ParseError::Incomplete) => break,
                    Err(ParseError::Invalid(reason)) => {
                        return Err(Error::Protocol {
                            conn: id,
                            reason: reason.to_owned(),
                        })
                    }
                }
            }
        }
        for (p, (moved, slot, addr)) in redirected {
            stats.redirects += 1;
            let link = self.link_for(addr).await?;
            if moved {
                self.route[usize::from(slot)] = link as u16;
            } else {
                self.links[link]
                    .write_buf
                    .extend_from_slice(b"*1\r\n$6\r\nASKING\r\n");
                self.links[link]
                    .inflight
                    .push_back(Pending { asking: true, ..p });
            }
            self.queue_on(link, p, work);
        }
        self.write_all_links()
    }

    /// SETs every key in `keys`, up to 128 in flight.
    pub async fn prefill(
        &mut self,
        keys: Range<u64>,
        work: &mut Workload,
        stats: &mut Stats,
    ) -> Result<()> {
        let mut next = keys.start;
        while next < keys.end || self.outstanding() > 0 {
            if next < keys.end && self.outstanding() < PREFILL_DEPTH {
                let now = Instant::now();
                while next < keys.end && self.outstanding() < PREFILL_DEPTH {
                    let op = work.set_op(next);
                    self.queue(op, work, now, true)?;
                    next += 1;
                }
                self.write_all_links()?;
            }
            self.step(work, stats).await?;
        }
        stats.flush(None);
        Ok(())
    }

    /// The closed loop: `plan.pipeline` requests split over the links, written, and all
    /// answered before the next batch.
    pub async fn closed_loop(
        &mut self,
        plan: &Plan,
        work: &mut Workload,
        stats: &mut Stats,
        progress: Option<&Progress>,
    ) -> Result<()> {
        let batch = plan.pipeline as u64;
        let mut remaining = match plan.until {
            Until::Count(n) => n,
            Until::Time(_) => u64::MAX,
        };
        self.track_misses = plan.set_on_miss;
        let mut next_flush = Instant::now() + Duration::from_secs(1);
        loop {
            let now = Instant::now();
            let recorded = now >= plan.measure_start;
            let size = match plan.until {
                Until::Time(end) if now >= end => break,
                Until::Count(_) if recorded && remaining == 0 => break,
                _ if recorded => batch.min(remaining),
                _ => batch,
            };
            for _ in 0..size {
                let op = match self.missed.pop() {
                    Some(key) if plan.set_on_miss => work.set_op(key),
                    _ => work.next_op(),
                };
                self.queue(op, work, now, recorded)?;
            }
            if recorded && remaining != u64::MAX {
                remaining -= size;
            }
            self.write_all_links()?;
            while self.outstanding() > 0 {
                self.step(work, stats).await?;
            }
            if let Some(progress) = progress {
                progress.add_replies(size);
                let now = Instant::now();
                if now >= next_flush {
                    stats.flush(Some(progress));
                    next_flush = now + Duration::from_secs(1);
                }
            }
        }
        stats.flush(progress);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_maps_are_read_from_cluster_slots_replies() {
        let reply = b"*2\r\n*3\r\n:0\r\n:8191\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n\
                      *4\r\n:8192\r\n:16383\r\n*4\r\n$9\r\n127.0.0.2\r\n:7001\r\n$2\r\nid\r\n%0\r\n\
                      *3\r\n$9\r\n127.0.0.3\r\n:7002\r\n$2\r\nid\r\n";
        let (value, used) = parse_value(reply, 0).expect("valid").expect("complete");
        assert_eq!(used, reply.len());
        assert_eq!(parse_value(&reply[..reply.len() - 3], 0), Ok(None));
        let seed: SocketAddr = "127.0.0.1:7000".parse().expect("addr");
        let map = slot_map_from(&value, seed).expect("map");
        assert_eq!(map.primaries.len(), 2);
        assert_eq!(map.owner[8191], 0);
        assert_eq!(map.owner[8192], 1);
        assert_eq!(map.primaries[1].to_string(), "127.0.0.2:7001");
    }

    #[test]
    fn redirects_are_parsed() {
        let addr: SocketAddr = "127.0.0.1:7002".parse().expect("addr");
        assert_eq!(
            redirect(b"MOVED 3999 127.0.0.1:7002"),
            Some((true, 3999, addr))
        );
        assert_eq!(redirect(b"ASK 1 127.0.0.1:7002"), Some((false, 1, addr)));
        assert_eq!(redirect(b"ERR wrong"), None);
    }
}
