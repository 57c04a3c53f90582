// Hot path: every request of a run is queued, written, answered and timed here.

//! One connection's driver: the closed loop, the open loop and the prefill.
//!
//! A connection is one task that owns its socket, a reusable write buffer, a read buffer and
//! the queue of requests in flight (oldest first: replies come back in order). It never
//! blocks on a write while replies wait to be read: the socket is polled for readability,
//! and for writability only while request bytes are pending, and whichever is ready is
//! served with a non-blocking `try_read`/`try_write`. That keeps a deep pipeline of large
//! SETs from deadlocking against a server that stops reading until its replies drain.
//!
//! ```text
//!  closed loop:  queue `pipeline` requests ─ one write ─> read until all replies are back ─┐
//!                ^   (latency: batch write -> reply)                                       │
//!                └─────────────────────────────────────────────────────────────────────────┘
//!  open loop:    woken by the pacer thread when a request is due (see `pacer`); send every
//!                due request while fewer than `pipeline` are in flight;
//!                latency: min(due time, send time) -> reply
//! ```
//!
//! Open loop and coordinated omission: when the server stalls, the requests due during the
//! stall are sent late (once replies free a slot), and their latency still counts from the
//! moment they were due, so the stall shows in the tail exactly as many times as users would
//! have met it. Requests still unsent at the end because the server kept `pipeline` of them
//! waiting are counted as `unsent`.
//!
//! A connection fails the run when the server closes it, sends bytes that are not a reply,
//! or moves no bytes for `timeout` while requests are outstanding.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::Range;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Sleep;

use crate::pacer::Schedule;
use crate::progress::Progress;
use crate::proto::{ParseError, Protocol, Reply};
use crate::report::Stats;
use crate::workload::{format_key, Op, OpKind, Workload};
use crate::{Error, Result};

/// Spare room ensured in the read buffer before each read.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Requests in flight per connection during the prefill.
const PREFILL_DEPTH: usize = 128;
/// How often a connection hands its recent latencies to the progress line.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// A request in flight.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// Closed loop: when its batch was written. Open loop: when it was due, or when it was
    /// sent if that was earlier (see `pacer::EARLY`).
    sent: Instant,
    kind: OpKind,
    /// The key's index.
    key: u64,
    /// False for warm-up requests.
    recorded: bool,
}

/// When a connection stops sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Requests sent (closed loop) or due (open loop) at or after this instant are not sent.
    Time(Instant),
    /// After this many recorded requests.
    Count(u64),
}

/// The timing of one connection's run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// When the run (and its warm-up) starts.
    pub start: Instant,
    /// When the warm-up ends: requests sent (or due) from here on are recorded.
    pub measure_start: Instant,
    /// When to stop.
    pub until: Until,
    /// Requests in flight: the batch size (closed loop) or the limit (open loop).
    pub pipeline: usize,
    /// Cache-aside: a GET that missed is followed by a SET of its key.
    pub set_on_miss: bool,
}

/// What [`Conn::wait`] saw.
enum Woke {
    /// Bytes arrived at this instant.
    Read(Instant),
    /// The server closed the connection.
    Closed,
    /// The pacer woke us, or nothing happened worth reporting.
    Nothing,
}

/// One connection to the server.
#[derive(Debug)]
pub struct Conn {
    id: usize,
    stream: TcpStream,
    protocol: Protocol,
    timeout: Duration,
    read_buf: BytesMut,
    /// Encoded requests; the first `written` bytes are already sent.
    write_buf: Vec<u8>,
    written: usize,
    inflight: VecDeque<Pending>,
    /// Keys whose GET missed, to SET next under `Plan::set_on_miss`.
    missed: Vec<u64>,
    /// Whether to note misses (a closed loop with `set_on_miss`).
    track_misses: bool,
    /// Last time bytes moved (or a request was queued on an idle connection).
    last_progress: Instant,
    /// Fires at `last_progress + timeout` (reset lazily when it fires early).
    stall: Pin<Box<Sleep>>,
    next_flush: Instant,
}

impl Conn {
    /// Opens connection number `id` to `addr`, waiting at most `timeout`.
    pub async fn connect(
        id: usize,
        addr: SocketAddr,
        protocol: Protocol,
        timeout: Duration,
    ) -> Result<Conn> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => {
                return Err(Error::Connect {
                    addr,
                    reason: err.to_string(),
                })
            }
            Err(_) => {
                return Err(Error::Connect {
                    addr,
                    reason: format!("no answer within {timeout:?}"),
                })
            }
        };
        // Requests are written in whole batches; Nagle would only add delay.
        stream
            .set_nodelay(true)
            .map_err(|source| Error::Io { conn: id, source })?;
        let now = Instant::now();
        Ok(Conn {
            id,
            stream,
            protocol,
            timeout,
            read_buf: BytesMut::with_capacity(READ_CHUNK_BYTES),
            write_buf: Vec::with_capacity(READ_CHUNK_BYTES),
            written: 0,
            inflight: VecDeque::new(),
            missed: Vec::new(),
            track_misses: false,
            last_progress: now,
            stall: Box::pin(tokio::time::sleep(timeout)),
            next_flush: now + PROGRESS_EVERY,
        })
    }

    /// SETs every key in `keys` (values sized by `work`), keeping up to 128 in flight.
    pub async fn prefill(
        &mut self,
        keys: Range<u64>,
        work: &mut Workload,
        stats: &mut Stats,
    ) -> Result<()> {
        let mut next = keys.start;
        while next < keys.end || !self.inflight.is_empty() {
            if next < keys.end && self.inflight.len() < PREFILL_DEPTH {
                let now = Instant::now();
                while next < keys.end && self.inflight.len() < PREFILL_DEPTH {
                    self.queue(work.set_op(next), work, now, true, now);
                    next += 1;
                }
                self.write_some()?;
            }
            self.step(None, stats, None).await?;
        }
        stats.flush(None);
        Ok(())
    }

    /// Runs the closed loop: sends `plan.pipeline` requests in one write, waits for all
    /// their replies, and repeats until `plan.until`.
    pub async fn closed_loop(
        &mut self,
        plan: &Plan,
        work: &mut Workload,
        stats: &mut Stats,
        progress: Option<&Progress>,
    ) -> Result<()> {
        let batch = plan.pipeline as u64;
        self.track_misses = plan.set_on_miss;
        let mut remaining = match plan.until {
            Until::Count(n) => n,
            Until::Time(_) => u64::MAX,
        };
        loop {
            if self.inflight.is_empty() {
                let now = Instant::now();
                let recorded = now >= plan.measure_start;
                let size = match plan.until {
                    Until::Time(end) if now >= end => break,
                    Until::Count(_) if recorded && remaining == 0 => break,
                    _ if recorded => batch.min(remaining),
                    _ => batch,
                };
                for _ in 0..size {
                    // Cache-aside: fill what the last replies found missing first.
                    let op = match self.missed.pop() {
                        Some(key) if plan.set_on_miss => work.set_op(key),
                        _ => work.next_op(),
                    };
                    self.queue(op, work, now, recorded, now);
                }
                if recorded && remaining != u64::MAX {
                    remaining -= size;
                }
                self.write_some()?;
            }
            self.step(None, stats, progress).await?;
        }
        stats.flush(progress);
        Ok(())
    }

    /// Runs the open loop: every request due by `schedule` is sent while fewer than
    /// `plan.pipeline` are in flight, and timed from when it was due; `pacer` wakes the
    /// connection when its next request is due.
    pub async fn open_loop(
        &mut self,
        plan: &Plan,
        schedule: &Schedule,
        pacer: &Notify,
        work: &mut Workload,
        stats: &mut Stats,
        progress: Option<&Progress>,
    ) -> Result<()> {
        let id = self.id;
        let due = move |k: u64| schedule.due(id, k);
        let end = match plan.until {
            Until::Time(end) => Some(end),
            Until::Count(_) => None,
        };
        let mut remaining = match plan.until {
            Until::Count(n) => n,
            Until::Time(_) => u64::MAX,
        };
        let mut k = 0u64;
        let mut sending = true;
        loop {
            let now = Instant::now();
            while sending && self.inflight.len() < plan.pipeline {
                let at = due(k);
                if end.is_some_and(|end| at >= end) {
                    sending = false;
                    break;
                }
                if !Schedule::is_due(at, now) {
                    break;
                }
                let recorded = at >= plan.measure_start;
                if recorded && remaining != u64::MAX {
                    if remaining == 0 {
                        sending = false;
                        break;
                    }
                    remaining -= 1;
                }
                // Timed from when it was due, or from now if sent a little early.
                self.queue(work.next_op(), work, at.min(now), recorded, now);
                k += 1;
            }
            if let Some(end) = end.filter(|&end| sending && now >= end) {
                // Due before the end but never sent, because `pipeline` requests were still
                // waiting for the server: counted, not hidden.
                let mut late = k;
                while due(late) < end {
                    stats.unsent += u64::from(due(late) >= plan.measure_start);
                    late += 1;
                }
                sending = false;
            }
            self.write_some()?;
            if !sending && self.inflight.is_empty() {
                break;
            }
            let wake = (sending && self.inflight.len() < plan.pipeline).then_some(pacer);
            self.step(wake, stats, progress).await?;
        }
        stats.flush(progress);
        Ok(())
    }

    /// Encodes `op` at the end of the write buffer and records it as in flight.
    fn queue(&mut self, op: Op, work: &Workload, sent: Instant, recorded: bool, now: Instant) {
        if self.inflight.is_empty() {
            // The stall clock measures waiting for replies, not idle time between requests.
            self.last_progress = now;
        }
        let key = format_key(op.key);
        match op.kind {
            OpKind::Get => self.protocol.encode_get(&mut self.write_buf, &key),
            OpKind::Set => {
                let value = work.value(op.value_len);
                self.protocol.encode_set(&mut self.write_buf, &key, value);
            }
        }
        self.inflight.push_back(Pending {
            sent,
            kind: op.kind,
            key: op.key,
            recorded,
        });
    }

    /// Waits for one event and handles it: replies are parsed and counted, a closed
    /// connection or a stall fails the run.
    async fn step(
        &mut self,
        pacer: Option<&Notify>,
        stats: &mut Stats,
        progress: Option<&Progress>,
    ) -> Result<()> {
        match self.wait(pacer).await? {
            Woke::Read(now) => {
                let replies = self.take_replies(now, stats)?;
                if let Some(progress) = progress {
                    progress.add_replies(replies);
                    if now >= self.next_flush {
                        stats.flush(Some(progress));
                        self.next_flush = now + PROGRESS_EVERY;
                    }
                }
                Ok(())
            }
            Woke::Closed => {
                // Replies that arrived before the close were parsed already; say what the
                // last error reply was, as it usually explains the close.
                let detail = match stats.errors.last() {
                    Some(message) => format!(" (last error reply: {message:?})"),
                    None => String::new(),
                };
                Err(Error::Closed {
                    conn: self.id,
                    outstanding: self.inflight.len(),
                    detail,
                })
            }
            Woke::Nothing => Ok(()),
        }
    }

    /// Waits until the socket is readable (or writable, while request bytes are pending),
    /// the pacer wakes us, or the stall timer fires; moves what bytes it can.
    async fn wait(&mut self, pacer: Option<&Notify>) -> Result<Woke> {
        let interest = if self.written < self.write_buf.len() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        enum Event {
            Ready(std::io::Result<tokio::io::Ready>),
            Timer,
            Stall,
        }
        let event = tokio::select! {
            biased;
            ready = self.stream.ready(interest) => Event::Ready(ready),
            () = notified(pacer) => Event::Timer,
            () = self.stall.as_mut() => Event::Stall,
        };
        let ready = match event {
            Event::Ready(ready) => ready.map_err(|source| Error::Io {
                conn: self.id,
                source,
            })?,
            Event::Timer => return Ok(Woke::Nothing),
            Event::Stall => {
                self.check_stall()?;
                return Ok(Woke::Nothing);
            }
        };
        if ready.is_writable() {
            self.write_some()?;
        }
        if ready.is_readable() || ready.is_read_closed() {
            return self.read_some();
        }
        Ok(Woke::Nothing)
    }

    /// Called when the stall timer fires: fails if requests have waited `timeout` without
    /// any byte moving, otherwise re-arms the timer.
    fn check_stall(&mut self) -> Result<()> {
        let now = Instant::now();
        let waiting = !self.inflight.is_empty() || self.written < self.write_buf.len();
        if waiting && now.duration_since(self.last_progress) >= self.timeout {
            return Err(Error::Stalled {
                conn: self.id,
                timeout: self.timeout,
                outstanding: self.inflight.len(),
            });
        }
        let next = if waiting {
            self.last_progress + self.timeout
        } else {
            now + self.timeout
        };
        self.stall
            .as_mut()
            .reset(tokio::time::Instant::from_std(next));
        Ok(())
    }

    /// Writes as much of the pending requests as the socket takes without blocking.
    fn write_some(&mut self) -> Result<()> {
        while self.written < self.write_buf.len() {
            match self.stream.try_write(&self.write_buf[self.written..]) {
                Ok(0) => {
                    return Err(Error::Closed {
                        conn: self.id,
                        outstanding: self.inflight.len(),
                        detail: " (write returned 0)".into(),
                    })
                }
                Ok(n) => {
                    self.written += n;
                    self.last_progress = Instant::now();
                }
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(err) if is_disconnect(&err) => {
                    return Err(Error::Closed {
                        conn: self.id,
                        outstanding: self.inflight.len(),
                        detail: format!(" ({err})"),
                    })
                }
                Err(source) => {
                    return Err(Error::Io {
                        conn: self.id,
                        source,
                    })
                }
            }
        }
        // Everything sent: reuse the buffer from its start.
        self.write_buf.clear();
        self.written = 0;
        Ok(())
    }

    /// Reads what the socket has without blocking.
    fn read_some(&mut self) -> Result<Woke> {
        if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK_BYTES / 4 {
            self.read_buf.reserve(READ_CHUNK_BYTES);
        }
        match self.stream.try_read_buf(&mut self.read_buf) {
            Ok(0) => Ok(Woke::Closed),
            Ok(_) => {
                let now = Instant::now();
                self.last_progress = now;
                Ok(Woke::Read(now))
            }
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => Ok(Woke::Nothing),
            Err(err) if is_disconnect(&err) => Ok(Woke::Closed),
            Err(source) => Err(Error::Io {
                conn: self.id,
                source,
            }),
        }
    }

    /// Parses every complete reply in the read buffer, pairs each with the oldest request
    /// in flight, and counts it as received at `now`. Returns the number of replies.
    fn take_replies(&mut self, now: Instant, stats: &mut Stats) -> Result<u64> {
        let mut replies = 0;
        loop {
            match self.protocol.parse(&self.read_buf) {
                Ok((reply, used)) => {
                    let Some(pending) = self.inflight.pop_front() else {
                        let text = String::from_utf8_lossy(&self.read_buf[..used.min(200)]);
                        return Err(Error::Protocol {
                            conn: self.id,
                            reason: format!("reply with no request outstanding: {text:?}"),
                        });
                    };
                    if self.track_misses
                        && pending.kind == OpKind::Get
                        && matches!(reply, Reply::Nil)
                    {
                        self.missed.push(pending.key);
                    }
                    stats.observe(pending.kind, &reply, pending.sent, now, pending.recorded);
                    self.read_buf.advance(used);
                    replies += 1;
                }
                Err(ParseError::Incomplete) => return Ok(replies),
                Err(ParseError::Invalid(reason)) => {
                    return Err(Error::Protocol {
                        conn: self.id,
                        reason: reason.to_owned(),
                    })
                }
            }
        }
    }
}

/// Waits for the pacer's next wake, or forever without a pacer.
async fn notified(pacer: Option<&Notify>) {
    match pacer {
        Some(pacer) => pacer.notified().await,
        None => std::future::pending().await,
    }
}

/// Returns true for the socket errors that mean the server closed the connection.
fn is_disconnect(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    matches!(err.kind(), ConnectionReset | ConnectionAborted | BrokenPipe)
}
