// Hot path: every RESP request is read, dispatched and answered here.

//! One RESP connection: read, parse every complete request, execute, answer with one write.
//!
//! ```text
//!   readable ─> read (≤ 64 KB) ─> parse ─> execute ─> encode ─┐  (repeat while complete
//!      ^                                                     │   requests remain)
//!      └──────────────── one write of all replies <──────────┘
//! ```
//!
//! Memory per client is bounded: nothing is reserved for a length a client declares, the read
//! buffer grows with the bytes that arrive (a connection starts with 2 KB and takes 16 KB
//! chunks once it has used one up), and replies are flushed whenever 64 KB accumulate, so a
//! client pipelining 100 MB without reading its replies stalls its own connection (TCP
//! backpressure) instead of growing the server. A write that makes no progress for
//! `client-write-timeout` seconds, or a single reply larger than `client-output-buffer-limit`,
//! disconnects the client. Every connection's buffers count against the node-wide
//! `maxmemory-clients` while they hold a partial request or unsent replies; over it, the
//! largest are evicted first (`Node::account_client_buffers`). A connection that has sent
//! nothing holds no buffers; large buffers, and the room around a stalled partial request,
//! are released once the client has been quiet for 500 ms.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use command::{ClientInfo, Node, Session};
use resp::{Limits, RequestParser};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::cluster::Glue;

/// Replies are written out once this many bytes are pending.
const FLUSH_AT_BYTES: usize = 64 * 1024;
/// Bytes requested per read.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// The first buffer of a connection (and of one whose buffers were released).
const FIRST_READ_BYTES: usize = 2 * 1024;
/// Below this much free room, the buffer grows before a read.
const MIN_READ_ROOM_BYTES: usize = 512;
/// Buffers larger than this are released when the client pauses for [`SHRINK_AFTER_IDLE`].
const KEEP_BUFFER_BYTES: usize = 64 * 1024;
/// How long a client must be quiet before its large buffers are released.
const SHRINK_AFTER_IDLE: Duration = Duration::from_millis(500);

/// Why a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Close {
    /// The client closed it, or sent QUIT.
    Client,
    /// Idle longer than `timeout`.
    Idle,
    /// Sent bytes that are not RESP.
    ProtocolError,
    /// Didn't read its replies in time, or one reply exceeded the output limit.
    OutputLimit,
    /// Disconnected to bring all clients' buffers back under `maxmemory-clients`.
    Evicted,
    /// The server is shutting down.
    Shutdown,
    /// A socket error.
    Io,
}

/// What one step of a protocol did.
pub enum Step {
    /// A request was handled (its reply, if any, is in the output buffer).
    Handled,
    /// No complete request is buffered: read more.
    NeedMore,
    /// Flush the output buffer, then close for this reason.
    Close(Close),
    /// The reply comes from another node: await it, append it, go on.
    Forward(crate::cluster::Pending),
    /// A write held while this primary's writes are paused (a manual failover): flush, await
    /// the end of the pause, then step again (the protocol runs the held request first).
    Hold(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
}

/// A wire protocol served over a connection: RESP or memcached text.
pub trait Protocol: Send {
    /// Called after each read, before the requests it brought are handled: picks up settings
    /// changed at run time.
    fn refresh(&mut self, node: &Node);

    /// Parses and runs the next complete request in `input`, appending its reply to `output`.
    fn step(&mut self, node: &Node, input: &mut BytesMut, output: &mut BytesMut) -> Step;

    /// The connection's entry in the node's client registry.
    fn client(&self) -> &Arc<ClientInfo>;
}

/// The RESP protocol: one [`Session`] and its parser.
pub struct Resp {
    session: Session,
    parser: RequestParser,
    args: Vec<Bytes>,
    /// The cluster, in cluster mode (for `WAIT`).
    cluster: Option<Arc<Glue>>,
    /// Forward commands on keys owned elsewhere (the forwarding port).
    forward: bool,
    /// `args` hold a request that waited for a write pause to end: run it before parsing.
    held: bool,
}

impl Resp {
    /// Returns the protocol state of a new RESP connection.
    pub fn new(node: &Node, info: Arc<ClientInfo>) -> Self {
        Self {
            session: Session::new(info),
            parser: RequestParser::new(resp_limits(node)),
            args: Vec::new(),
            cluster: None,
            forward: false,
            held: false,
        }
    }

    /// Returns the protocol state of a connection to the RESP port of a cluster node.
    pub fn clustered(node: &Node, info: Arc<ClientInfo>, glue: Arc<Glue>) -> Self {
        Self {
            cluster: Some(glue),
            ..Self::new(node, info)
        }
    }

    /// Returns the protocol state of a connection on the forwarding port: commands on keys
    /// owned elsewhere are forwarded to the owner instead of answered with `-MOVED`.
    pub fn forwarding(node: &Node, info: Arc<ClientInfo>, glue: Arc<Glue>) -> Self {
        Self {
            cluster: Some(glue),
            forward: true,
            ..Self::new(node, info)
        }
    }
}

fn resp_limits(node: &Node) -> Limits {
    let s = &node.settings;
    Limits {
        max_bulk_bytes: s.proto_max_bulk_len.load(Relaxed),
        max_args: 1024 * 1024,
        max_request_bytes: s.max_request_bytes.load(Relaxed),
    }
}

impl Protocol for Resp {
    fn client(&self) -> &Arc<ClientInfo> {
        &self.session.info
    }

    fn refresh(&mut self, node: &Node) {
        self.session.info.mark_active();
        self.parser.set_limits(resp_limits(node));
    }

    fn step(&mut self, node: &Node, input: &mut BytesMut, output: &mut BytesMut) -> Step {
        if !std::mem::take(&mut self.held) {
            match self.parser.parse(input, &mut self.args) {
                Ok(true) => {}
                Ok(false) => return Step::NeedMore,
                Err(err) => {
                    node.stats.protocol_errors.fetch_add(1, Relaxed);
                    tracing::debug!(client = self.session.info.id, %err, "protocol error; closing");
                    resp::Reply::error_owned(format!("ERR {err}"))
                        .encode(self.session.protocol, output);
                    return Step::Close(Close::ProtocolError);
                }
            }
        }
        if let Some(glue) = &self.cluster {
            if self.args.len() == 3 && self.args[0].eq_ignore_ascii_case(b"wait") {
                let pending = glue.plan_wait(&self.args);
                self.args.clear();
                return Step::Forward(pending);
            }
            if self.forward {
                if let Some(pending) = glue.plan_resp(self.session.protocol, &self.args) {
                    self.args.clear();
                    return Step::Forward(pending);
                }
            }
        }
        // In cluster mode the request runs holding a pass through the pause gate, so a pause
        // can't begin while a write is half done (see `pause`).
        let pass = self.cluster.as_ref().map(|glue| glue.pause().enter());
        if let (Some(glue), Some(p)) = (&self.cluster, &pass) {
            if p.paused() && crate::pause::resp_writes(&self.args[0]) {
                self.held = true;
                return Step::Hold(Box::pin(glue.pause().wait()));
            }
        }
        let reply = command::execute(node, &mut self.session, &self.args);
        drop(pass);
        self.args.clear();
        reply.encode(self.session.protocol, output);
        if self.session.quit {
            Step::Close(Close::Client)
        } else {
            Step::Handled
        }
    }
}

/// The memcached text protocol.
pub struct Memcache {
    info: Arc<ClientInfo>,
    parser: memcache::Parser,
    cluster: Option<Arc<Glue>>,
    /// A request that waited for a write pause to end: run it before parsing.
    held: Option<memcache::Request>,
}

impl Memcache {
    /// Returns the protocol state of a new memcached connection; in a cluster (`cluster` set)
    /// requests for keys owned elsewhere are forwarded to their owner.
    pub fn new(node: &Node, info: Arc<ClientInfo>, cluster: Option<Arc<Glue>>) -> Self {
        Self {
            info,
            parser: memcache::Parser::new(memcache_limits(node)),
            cluster,
            held: None,
        }
    }
}

fn memcache_limits(node: &Node) -> memcache::Limits {
    memcache::Limits {
        max_value_bytes: node.store.config().max_value_bytes,
        ..memcache::Limits::default()
    }
}

impl Protocol for Memcache {
    fn client(&self) -> &Arc<ClientInfo> {
        &self.info
    }

    fn refresh(&mut self, node: &Node) {
        self.info.mark_active();
        self.parser.set_limits(memcache_limits(node));
    }

    fn step(&mut self, node: &Node, input: &mut BytesMut, output: &mut BytesMut) -> Step {
        let request = match self.held.take() {
            Some(request) => request,
            None => match self.parser.parse(input) {
                Ok(Some(request)) => request,
                Ok(None) => return Step::NeedMore,
                Err(err) => {
                    // As memcached: a value refused for its size also removes the old one, so
                    // a stale value can't be read after a failed update; in a cluster, on the
                    // key's owner.
                    if let memcache::ParseError::TooLarge {
                        invalidate: Some(key),
                        ..
                    } = &err
                    {
                        let delete = memcache::Request::Delete {
                            key: key.clone(),
                            noreply: true,
                        };
                        match self.cluster.as_ref().and_then(|g| g.plan_memcache(&delete)) {
                            Some(pending) => {
                                let reply = if err.noreply() { &b""[..] } else { err.wire() };
                                return Step::Forward(Box::pin(async move {
                                    let _ = pending.await;
                                    reply.to_vec()
                                }));
                            }
                            None => {
                                node.store.remove(key, node.clock.unix_ms());
                            }
                        }
                    }
                    if !err.noreply() {
                        output.extend_from_slice(err.wire());
                    }
                    return if err.is_fatal() {
                        node.stats.protocol_errors.fetch_add(1, Relaxed);
                        Step::Close(Close::ProtocolError)
                    } else {
                        Step::Handled
                    };
                }
            },
        };
        if let Some(glue) = &self.cluster {
            if let Some(pending) = glue.plan_memcache(&request) {
                return Step::Forward(pending);
            }
        }
        let pass = self.cluster.as_ref().map(|glue| glue.pause().enter());
        if let (Some(glue), Some(p)) = (&self.cluster, &pass) {
            if p.paused() && crate::pause::memcache_writes(&request) {
                let wait = Box::pin(glue.pause().wait());
                drop(pass);
                self.held = Some(request);
                return Step::Hold(wait);
            }
        }
        let flow = command::memcached::execute(node, request, node.clock.unix_ms(), output);
        drop(pass);
        match flow {
            command::memcached::Flow::Continue => Step::Handled,
            command::memcached::Flow::Close => Step::Close(Close::Client),
        }
    }
}

/// Serves one connection with `protocol` until it closes; returns why.
pub async fn serve(
    node: Arc<Node>,
    stream: TcpStream,
    protocol: impl Protocol,
    write_timeout: Duration,
    shutdown: CancellationToken,
) -> Close {
    let client = protocol.client().clone();
    let close = serve_until_closed(&node, stream, protocol, write_timeout, shutdown).await;
    node.account_client_buffers(&client, 0);
    if close == Close::Evicted {
        tracing::info!(client = client.id, "client evicted for maxmemory-clients");
    }
    close
}

/// Reports the connection's buffers to the node-wide client budget. Buffers count while
/// they hold a partial request or unsent replies; between requests the connection keeps one
/// read chunk uncounted (and anything larger only until it has been quiet for
/// [`SHRINK_AFTER_IDLE`]), so idle clients never crowd out the ones that hold data.
fn account(node: &Node, client: &ClientInfo, input: &BytesMut, output: &BytesMut) {
    let bytes = if input.is_empty() && output.is_empty() {
        0
    } else {
        input.capacity() + output.capacity()
    };
    if bytes != client.buffer_bytes.load(Relaxed) {
        node.account_client_buffers(client, bytes);
    }
}

async fn serve_until_closed(
    node: &Arc<Node>,
    mut stream: TcpStream,
    mut protocol: impl Protocol,
    write_timeout: Duration,
    shutdown: CancellationToken,
) -> Close {
    let _ = stream.set_nodelay(true);
    let client = protocol.client().clone();
    let node = node.clone();
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    loop {
        let idle_secs = node.settings.idle_timeout_secs.load(Relaxed);
        // Buffers a large request or reply needed are kept while the client is busy (a client
        // writing 1 MB values reuses them) and given back once it pauses.
        // So is the room around a partial request that has stalled (a client that declared
        // a large value and sends it slowly, or never).
        let holding_big = input.capacity() > KEEP_BUFFER_BYTES
            || output.capacity() > KEEP_BUFFER_BYTES
            || (!input.is_empty() && input.capacity() > 2 * input.len() + FIRST_READ_BYTES);
        let readable = async {
            if idle_secs == 0 {
                Ok(stream.readable().await)
            } else {
                tokio::time::timeout(Duration::from_secs(idle_secs), stream.readable()).await
            }
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Close::Shutdown,
            _ = client.kill.cancelled() => return Close::Evicted,
            ready = readable => match ready {
                Err(_elapsed) => return Close::Idle,
                Ok(Err(_)) => return Close::Io,
                Ok(Ok(())) => {}
            },
            // In an async block: select! builds every branch's future, and a Sleep read the
            // clock on every request even when this branch is off.
            _ = async { tokio::time::sleep(SHRINK_AFTER_IDLE).await }, if holding_big => {
                // Quiet: keep only what a partial request needs (the output is flushed).
                input = if input.is_empty() {
                    BytesMut::new()
                } else {
                    BytesMut::from(&input[..])
                };
                output = BytesMut::new();
                account(&node, &client, &input, &output);
                continue;
            }
        }
        if input.capacity() - input.len() < MIN_READ_ROOM_BYTES {
            // A connection starts with a small buffer and gets full chunks once it has used
            // one up: one that sends little (or declares a lot and stalls) holds little.
            input.reserve(if input.capacity() == 0 {
                FIRST_READ_BYTES
            } else {
                READ_CHUNK_BYTES
            });
        }
        match read_drained(&stream, &mut input) {
            Ok(0) => return Close::Client,
            Ok(n) => {
                node.stats.net_input_bytes.fetch_add(n as u64, Relaxed);
                account(&node, &client, &input, &output);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // A readiness with nothing to read (a new socket starts out readable to
                // tokio): don't keep the buffer reserved for it, or every idle connection
                // holds one.
                if input.is_empty() {
                    input = BytesMut::new();
                }
                continue;
            }
            Err(_) => return Close::Io,
        }
        protocol.refresh(&node);
        let output_limit = node.settings.client_output_limit_bytes.load(Relaxed);
        let closing = loop {
            match protocol.step(&node, &mut input, &mut output) {
                Step::Handled => {
                    if output.len() > output_limit {
                        node.stats.output_limit_disconnections.fetch_add(1, Relaxed);
                        tracing::warn!(
                            bytes = output.len(),
                            "reply exceeds client-output-buffer-limit; closing"
                        );
                        return Close::OutputLimit;
                    }
                }
                Step::Forward(pending) => {
                    let reply = pending.await;
                    output.extend_from_slice(&reply);
                }
                Step::Hold(until_resumed) => {
                    // Whatever is pending goes out before the wait.
                    if !output.is_empty() {
                        if let Err(close) = flush(
                            &node,
                            &client,
                            &mut stream,
                            &input,
                            &mut output,
                            write_timeout,
                        )
                        .await
                        {
                            return close;
                        }
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return Close::Shutdown,
                        _ = client.kill.cancelled() => return Close::Evicted,
                        _ = until_resumed => {}
                    }
                }
                Step::NeedMore => break None,
                Step::Close(close) => break Some(close),
            }
            // Replies go out whenever 64 KB are pending, after a handled or forwarded request.
            if output.len() >= FLUSH_AT_BYTES {
                if let Err(close) = flush(
                    &node,
                    &client,
                    &mut stream,
                    &input,
                    &mut output,
                    write_timeout,
                )
                .await
                {
                    return close;
                }
            }
        };
        if !output.is_empty() {
            if let Err(close) = flush(
                &node,
                &client,
                &mut stream,
                &input,
                &mut output,
                write_timeout,
            )
            .await
            {
                return close;
            }
        }
        account(&node, &client, &input, &output);
        if let Some(close) = closing {
            let _ = stream.shutdown().await;
            return close;
        }
    }
}

/// Reads what the socket holds into `input`, and when the read came back short (so the socket
/// was drained at that moment) clears the stream's readiness right away.
///
/// Without this, every request would cost a second `read` that only returns `EWOULDBLOCK`
/// before the task can wait again: a third of the syscalls of an unpipelined request. The
/// readiness is cleared through `try_io`, which snapshots the readiness before the read and
/// clears only that snapshot: data arriving during or after the read sets fresh readiness that
/// the clear leaves alone, so no wake-up is lost.
fn read_drained(stream: &TcpStream, input: &mut BytesMut) -> std::io::Result<usize> {
    let room = input.capacity() - input.len();
    let mut read = 0;
    let result = stream.try_io(tokio::io::Interest::READABLE, || {
        let n = stream.try_read_buf(input)?;
        read = n;
        if n > 0 && n < room {
            Err(std::io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && read > 0 => Ok(read),
        other => other,
    }
}

/// Writes `output` out (reporting it to the client budget first, as it may have grown), or
/// gives up when the client reads nothing for `write_timeout` or is evicted.
async fn flush(
    node: &Node,
    client: &ClientInfo,
    stream: &mut TcpStream,
    input: &BytesMut,
    output: &mut BytesMut,
    write_timeout: Duration,
) -> Result<(), Close> {
    let n = output.len();
    account(node, client, input, output);
    let written = tokio::select! {
        _ = client.kill.cancelled() => return Err(Close::Evicted),
        written = tokio::time::timeout(write_timeout, stream.write_all(output)) => written,
    };
    match written {
        Ok(Ok(())) => {
            node.stats.net_output_bytes.fetch_add(n as u64, Relaxed);
            output.clear();
            Ok(())
        }
        Ok(Err(_)) => Err(Close::Io),
        Err(_elapsed) => {
            node.stats.output_limit_disconnections.fetch_add(1, Relaxed);
            tracing::warn!("client did not read its replies within client-write-timeout; closing");
            Err(Close::OutputLimit)
        }
    }
}
