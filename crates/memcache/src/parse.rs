// Hot path: every request of every memcached text connection passes through `Parser::parse`.

//! The request parser.
//!
//! A request is a command line ended by `\n` (clients send `\r\n`; a bare `\n` is accepted, as
//! memcached does), split into tokens at spaces. The storage commands (`set`, `add`,
//! `replace`, `append`, `prepend`, `cas` and the meta `ms`) declare a data length and are
//! followed by a data block of exactly that many bytes and `\r\n`; the block may hold any
//! byte, so it is never scanned for a newline.
//!
//! The parser is a small state machine, one per connection:
//!
//! ```text
//!        ┌────────── request or recoverable error (line consumed) ──────────┐
//!        v                                                                  │
//!      Line ── storage line, length accepted ──> Data ── len+2 bytes ───────┤
//!       │ │                                                                 │
//!       │ └── storage line refused, length known ──> Swallow(n) ── n bytes ─┘
//!       └──── no newline within max_line_bytes ──> Closed (fatal)
//! ```
//!
//! - `Line` looks for the newline only within `max_line_bytes` (plus its `\r\n`) and remembers
//!   how far it has looked, so a line arriving in many reads is scanned once.
//! - `Data` leaves the command line in the buffer until the whole block is there, then splits
//!   line and block off together: the key and the data are zero-copy slices of one frame. The
//!   declared length was checked against `max_value_bytes` first, so reserving room for it is
//!   safe.
//! - `Swallow` discards a refused data block as it arrives (a value too large, or a storage
//!   line with a bad key, flags or exptime but a readable length), counting down instead of
//!   buffering: a client declaring 2 GB costs nothing, and the stream stays in sync. Without a
//!   readable length nothing can be swallowed; like memcached, the parser then reads whatever
//!   follows as commands.
//!
//! Every error but a runaway line consumes the bad request and leaves the parser ready for
//! the next one, which is how memcached behaves: it answers one error line and carries on.

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{ParseError, Result};
use crate::meta::{self, MetaCommand, MetaFlags, MAX_META_TOKENS};
use crate::number::{parse_i32, parse_u32, parse_u64};
use crate::request::{Request, StoreMode};

/// memcached's longest key (`KEY_MAX_LENGTH`).
pub const MAX_KEY_BYTES: usize = 250;

/// Size limits the parser enforces on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest key accepted (memcached: 250, [`MAX_KEY_BYTES`]).
    pub max_key_bytes: usize,
    /// Largest data block accepted; larger ones are answered `SERVER_ERROR object too large
    /// for cache` and swallowed (memcached's `-I`, item size max, 1 MiB by default).
    pub max_value_bytes: usize,
    /// Longest command line, without its `\r\n`. A longer line is fatal.
    pub max_line_bytes: usize,
    /// Most keys in one `get`/`gets`/`gat`/`gats`.
    pub max_keys_per_get: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key_bytes: MAX_KEY_BYTES,
            max_value_bytes: 1024 * 1024,
            max_line_bytes: 64 * 1024,
            max_keys_per_get: 4096,
        }
    }
}

/// An incremental request parser, one per connection.
#[derive(Debug)]
pub struct Parser {
    limits: Limits,
    state: State,
    /// Bytes at the front of the buffer already known to hold no newline (state `Line`).
    scanned: usize,
}

#[derive(Debug)]
enum State {
    /// Waiting for a command line.
    Line,
    /// A storage command line was accepted; waiting for its data block.
    Data(Pending),
    /// Discarding this many more bytes of a refused data block.
    Swallow(usize),
    /// A fatal error happened; the connection must close. Every later call returns it again.
    Closed(ParseError),
}

/// A storage command waiting for its data block. Offsets are from the start of the buffer,
/// where the command line still is.
#[derive(Debug)]
struct Pending {
    /// Length of the command line, newline included: where the data block starts.
    line_len: usize,
    /// Declared length of the data block, without its `\r\n`.
    data_len: usize,
    key: PendingKey,
    kind: PendingKind,
}

#[derive(Debug)]
enum PendingKey {
    /// The key's byte range in the line.
    Range(usize, usize),
    /// A base64 key (`b` flag), already decoded.
    Binary(Bytes),
}

#[derive(Debug)]
enum PendingKind {
    Store {
        mode: StoreMode,
        flags: u32,
        exptime: i64,
        cas_unique: u64,
        noreply: bool,
    },
    MetaSet {
        /// The byte range of the flags in the line.
        flags: (usize, usize),
        present: u64,
    },
}

/// A storage command line that was refused: the error, and how many bytes of data block to
/// swallow after the line (0 when the length itself was unreadable).
struct Refused {
    error: ParseError,
    swallow: usize,
}

impl Refused {
    fn new(error: ParseError) -> Refused {
        Refused { error, swallow: 0 }
    }
}

/// What one step of the state machine produced.
enum Step {
    /// A result for the caller.
    Done(Option<Request>),
    /// The state changed; run the machine again on the same buffer.
    Continue,
}

#[derive(Debug, Clone, Copy)]
enum Command {
    Get { with_cas: bool, touch: bool },
    Store(StoreMode),
    Delete,
    Incr,
    Decr,
    Touch,
    FlushAll,
    Version,
    Verbosity,
    Stats,
    Quit,
    Meta(MetaCommand),
    MetaNoop,
}

impl Command {
    /// Looks up a command name. Names are case-sensitive, as in memcached.
    fn from_name(name: &[u8]) -> Option<Command> {
        Some(match name {
            b"get" | b"bget" => Command::Get {
                with_cas: false,
                touch: false,
            },
            b"gets" => Command::Get {
                with_cas: true,
                touch: false,
            },
            b"gat" => Command::Get {
                with_cas: false,
                touch: true,
            },
            b"gats" => Command::Get {
                with_cas: true,
                touch: true,
            },
            b"set" => Command::Store(StoreMode::Set),
            b"add" => Command::Store(StoreMode::Add),
            b"replace" => Command::Store(StoreMode::Replace),
            b"append" => Command::Store(StoreMode::Append),
            b"prepend" => Command::Store(StoreMode::Prepend),
            b"cas" => Command::Store(StoreMode::Cas),
            b"delete" => Command::Delete,
            b"incr" => Command::Incr,
            b"decr" => Command::Decr,
            b"touch" => Command::Touch,
            b"flush_all" => Command::FlushAll,
            b"version" => Command::Version,
            b"verbosity" => Command::Verbosity,
            b"stats" => Command::Stats,
            b"quit" => Command::Quit,
            b"mg" => Command::Meta(MetaCommand::Get),
            b"ms" => Command::Meta(MetaCommand::Set),
            b"md" => Command::Meta(MetaCommand::Delete),
            b"ma" => Command::Meta(MetaCommand::Arithmetic),
            b"mn" => Command::MetaNoop,
            _ => return None,
        })
    }
}

impl Parser {
    /// Returns a parser enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: State::Line,
            scanned: 0,
        }
    }

    /// Returns the limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Replaces the limits; takes effect from the next request.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Parses one request from the front of `buf`.
    ///
    /// Returns `Ok(Some(request))` with the request removed from `buf`; `Ok(None)` when more
    /// bytes are needed (call again after the next read: the parser remembers its progress, so
    /// the caller must only append to `buf` in between); or an error. Every error but a fatal
    /// one ([`ParseError::is_fatal`]) has consumed the bad request: answer it and call again.
    pub fn parse(&mut self, buf: &mut BytesMut) -> Result<Option<Request>> {
        loop {
            let step = match std::mem::replace(&mut self.state, State::Line) {
                State::Line => self.parse_line(buf)?,
                State::Data(pending) => self.complete(pending, buf)?,
                State::Swallow(remaining) => {
                    let discard = remaining.min(buf.len());
                    buf.advance(discard);
                    if discard < remaining {
                        self.state = State::Swallow(remaining - discard);
                        Step::Done(None)
                    } else {
                        Step::Continue
                    }
                }
                State::Closed(error) => {
                    self.state = State::Closed(error.clone());
                    return Err(error);
                }
            };
            if let Step::Done(request) = step {
                return Ok(request);
            }
        }
    }

    /// State `Line`: finds the command line and parses it.
    fn parse_line(&mut self, buf: &mut BytesMut) -> Result<Step> {
        // A line of max_line_bytes fits in max_line_bytes + 2 bytes with its "\r\n".
        let window_max = self.limits.max_line_bytes.saturating_add(2);
        let window = buf.len().min(window_max);
        let from = self.scanned.min(window);
        let Some(newline) = memchr::memchr(b'\n', &buf[from..window]).map(|i| from + i) else {
            if buf.len() >= window_max {
                self.state = State::Closed(ParseError::LineTooLong);
                return Err(ParseError::LineTooLong);
            }
            self.scanned = window;
            return Ok(Step::Done(None));
        };
        self.scanned = 0;
        let content = if newline > 0 && buf[newline - 1] == b'\r' {
            newline - 1
        } else {
            newline
        };
        if content > self.limits.max_line_bytes {
            self.state = State::Closed(ParseError::LineTooLong);
            return Err(ParseError::LineTooLong);
        }
        let line_len = newline + 1;
        let line = &buf[..content];
        let command = Tokens::new(line)
            .next()
            .and_then(|(start, end)| Command::from_name(&line[start..end]));
        let head = match command {
            // An HTTP request sent to the memcached port (`GET / HTTP/1.0`): memcached closes
            // at once, without a reply (proto_text.c), so a health check or a browser pointed
            // at the port can't hold a connection open.
            None if Tokens::new(line)
                .last()
                .is_some_and(|(start, end)| line[start..end].starts_with(b"HTTP/")) =>
            {
                self.state = State::Closed(ParseError::HttpRequest);
                return Err(ParseError::HttpRequest);
            }
            None => {
                buf.advance(line_len);
                return Err(ParseError::UnknownCommand);
            }
            Some(Command::Store(mode)) => self.store_head(mode, &buf[..content], line_len),
            Some(Command::Meta(MetaCommand::Set)) => self.meta_set_head(&buf[..content], line_len),
            Some(command) => {
                let frame = buf.split_to(line_len).freeze();
                let request = self.parse_simple(command, &frame.slice(..content))?;
                return Ok(Step::Done(Some(request)));
            }
        };
        match head {
            Ok(pending) => {
                self.state = State::Data(pending);
                Ok(Step::Continue)
            }
            Err(refused) => {
                buf.advance(line_len);
                if refused.swallow > 0 {
                    self.state = State::Swallow(refused.swallow);
                }
                Err(refused.error)
            }
        }
    }

    /// State `Data`: waits for the whole data block, then splits the request off.
    fn complete(&mut self, pending: Pending, buf: &mut BytesMut) -> Result<Step> {
        let data_end = pending.line_len + pending.data_len;
        let total = data_end + 2;
        if buf.len() < total {
            // Nothing is reserved for the declared length: the buffer grows with the bytes
            // that arrive (issue 13), so a line that declares 1 MB and sends nothing costs
            // nothing.
            self.state = State::Data(pending);
            return Ok(Step::Done(None));
        }
        let frame = buf.split_to(total).freeze();
        if &frame[data_end..] != b"\r\n" {
            let noreply = match pending.kind {
                PendingKind::Store { noreply, .. } => noreply,
                // memcached always answers ms errors.
                PendingKind::MetaSet { .. } => false,
            };
            return Err(ParseError::BadDataChunk { noreply });
        }
        let key = match pending.key {
            PendingKey::Range(start, end) => frame.slice(start..end),
            PendingKey::Binary(key) => key,
        };
        let data = frame.slice(pending.line_len..data_end);
        let request = match pending.kind {
            PendingKind::Store {
                mode,
                flags,
                exptime,
                cas_unique,
                noreply,
            } => Request::Store {
                mode,
                key,
                flags,
                exptime,
                data,
                cas_unique,
                noreply,
            },
            PendingKind::MetaSet {
                flags: (start, end),
                present,
            } => Request::MetaSet {
                key,
                data,
                flags: MetaFlags::new(frame.slice(start..end), present),
            },
        };
        Ok(Step::Done(Some(request)))
    }

    /// Parses `set|add|replace|append|prepend <key> <flags> <exptime> <bytes> [noreply]` and
    /// `cas <key> <flags> <exptime> <bytes> <cas unique> [noreply]`, in memcached's order:
    /// argument count (plain `ERROR`), then `noreply`, then the fields.
    fn store_head(
        &self,
        mode: StoreMode,
        line: &[u8],
        line_len: usize,
    ) -> std::result::Result<Pending, Refused> {
        let args = Args::collect(Tokens::after_command(line));
        let fields = if mode == StoreMode::Cas { 5 } else { 4 };
        if args.count != fields && args.count != fields + 1 {
            return Err(Refused::new(ParseError::WrongArgumentCount));
        }
        // memcached takes a last token of "noreply" as noreply and ignores any other.
        let noreply = args.last(line) == b"noreply";
        let bad = ParseError::BadCommandLine { noreply };
        let Some(data_len) = data_len(args.get(line, 3)) else {
            return Err(Refused::new(bad));
        };
        // From here on the data length is known: a refused line swallows its data block, so
        // that the block is never read as commands.
        let refuse = |error| Refused {
            error,
            swallow: data_len + 2,
        };
        let key = args.get(line, 0);
        if !self.valid_key(key) {
            return Err(refuse(bad));
        }
        let (Some(flags), Some(exptime)) =
            (parse_u32(args.get(line, 1)), parse_i32(args.get(line, 2)))
        else {
            return Err(refuse(bad));
        };
        let cas_unique = if mode == StoreMode::Cas {
            parse_u64(args.get(line, 4)).ok_or_else(|| refuse(bad.clone()))?
        } else {
            0
        };
        if data_len > self.limits.max_value_bytes {
            return Err(refuse(ParseError::TooLarge {
                noreply,
                invalidate: (mode == StoreMode::Set).then(|| Bytes::copy_from_slice(key)),
            }));
        }
        let (start, end) = args.ranges[0];
        Ok(Pending {
            line_len,
            data_len,
            key: PendingKey::Range(start, end),
            kind: PendingKind::Store {
                mode,
                flags,
                exptime: i64::from(exptime),
                cas_unique,
                noreply,
            },
        })
    }

    /// Parses `ms <key> <datalen> <flags>*`, in memcached's order: key length, data length
    /// and flag count are refused without swallowing; everything after the length swallows.
    fn meta_set_head(&self, line: &[u8], line_len: usize) -> std::result::Result<Pending, Refused> {
        let bad = ParseError::BadCommandLine { noreply: false };
        let mut tokens = Tokens::after_command(line);
        let Some((key_start, key_end)) = tokens.next() else {
            return Err(Refused::new(ParseError::WrongArgumentCount));
        };
        let key = &line[key_start..key_end];
        if key.len() > self.limits.max_key_bytes {
            return Err(Refused::new(bad));
        }
        let Some((len_start, len_end)) = tokens.next() else {
            return Err(Refused::new(bad));
        };
        if 3 + tokens.clone().count() > MAX_META_TOKENS {
            return Err(Refused::new(ParseError::TooManyFlags));
        }
        let Some(data_len) = data_len(&line[len_start..len_end]) else {
            return Err(Refused::new(bad));
        };
        let refuse = |error| Refused {
            error,
            swallow: data_len + 2,
        };
        let flags = (tokens.pos, line.len());
        let checked =
            meta::check(MetaCommand::Set, &line[flags.0..flags.1], key).map_err(refuse)?;
        let key = match checked.binary_key {
            Some(decoded) => PendingKey::Binary(decoded),
            None if self.valid_key(key) => PendingKey::Range(key_start, key_end),
            None => return Err(refuse(bad)),
        };
        if data_len > self.limits.max_value_bytes {
            // memcached drops the old value whatever the mode, so it can't be read as current.
            let invalidate = match &key {
                PendingKey::Binary(decoded) => decoded.clone(),
                PendingKey::Range(start, end) => Bytes::copy_from_slice(&line[*start..*end]),
            };
            return Err(refuse(ParseError::TooLarge {
                noreply: false,
                invalidate: Some(invalidate),
            }));
        }
        Ok(Pending {
            line_len,
            data_len,
            key,
            kind: PendingKind::MetaSet {
                flags,
                present: checked.present,
            },
        })
    }

    /// Parses a command without a data block; `line` (newline excluded) was already split off.
    fn parse_simple(&self, command: Command, line: &Bytes) -> Result<Request> {
        let mut tokens = Tokens::after_command(line);
        let slice = |(start, end): (usize, usize)| line.slice(start..end);
        match command {
            Command::Get { with_cas, touch } => {
                let touch_exptime = if touch {
                    let (start, end) = tokens.next().ok_or(ParseError::WrongArgumentCount)?;
                    let exptime = parse_i32(&line[start..end])
                        .ok_or(ParseError::InvalidExptime { noreply: false })?;
                    Some(i64::from(exptime))
                } else {
                    None
                };
                let mut keys = Vec::new();
                for range in tokens {
                    if keys.len() == self.limits.max_keys_per_get
                        || !self.valid_key(&line[range.0..range.1])
                    {
                        return Err(ParseError::BadCommandLine { noreply: false });
                    }
                    keys.push(slice(range));
                }
                // `gat <exptime>` with no key is valid (memcached answers END); `get` is not.
                if keys.is_empty() && !touch {
                    return Err(ParseError::WrongArgumentCount);
                }
                Ok(Request::Get {
                    keys,
                    with_cas,
                    touch_exptime,
                })
            }
            Command::Delete => {
                let args = Args::collect(tokens);
                if !(1..=3).contains(&args.count) {
                    return Err(ParseError::WrongArgumentCount);
                }
                // `delete <key> [0] [noreply]`: the 0 is a legacy hold time, still accepted.
                let noreply = args.count > 1 && args.last(line) == b"noreply";
                if args.count > 1 {
                    let hold_is_zero = args.get(line, 1) == b"0";
                    let valid = (args.count == 2 && (hold_is_zero || noreply))
                        || (args.count == 3 && hold_is_zero && noreply);
                    if !valid {
                        return Err(ParseError::BadDeleteArguments { noreply });
                    }
                }
                let key = self.key(line, args.ranges[0], noreply)?;
                Ok(Request::Delete { key, noreply })
            }
            Command::Incr | Command::Decr => {
                let args = Args::collect(tokens);
                if !(2..=3).contains(&args.count) {
                    return Err(ParseError::WrongArgumentCount);
                }
                let noreply = args.last(line) == b"noreply";
                let key = self.key(line, args.ranges[0], noreply)?;
                let delta =
                    parse_u64(args.get(line, 1)).ok_or(ParseError::InvalidDelta { noreply })?;
                Ok(Request::Arithmetic {
                    key,
                    incr: matches!(command, Command::Incr),
                    delta,
                    noreply,
                })
            }
            Command::Touch => {
                let args = Args::collect(tokens);
                if !(2..=3).contains(&args.count) {
                    return Err(ParseError::WrongArgumentCount);
                }
                let noreply = args.last(line) == b"noreply";
                let key = self.key(line, args.ranges[0], noreply)?;
                let exptime =
                    parse_i32(args.get(line, 1)).ok_or(ParseError::InvalidExptime { noreply })?;
                Ok(Request::Touch {
                    key,
                    exptime: i64::from(exptime),
                    noreply,
                })
            }
            Command::FlushAll => {
                let args = Args::collect(tokens);
                if args.count > 2 {
                    return Err(ParseError::WrongArgumentCount);
                }
                let noreply = args.count > 0 && args.last(line) == b"noreply";
                // As memcached: a delay is read whenever there is more than a lone noreply,
                // and a token after it that is not noreply is ignored.
                let delay_secs = if args.count > usize::from(noreply) {
                    parse_i32(args.get(line, 0)).ok_or(ParseError::InvalidExptime { noreply })?
                } else {
                    0
                };
                Ok(Request::FlushAll {
                    delay_secs: i64::from(delay_secs),
                    noreply,
                })
            }
            Command::Verbosity => {
                let args = Args::collect(tokens);
                if !(1..=2).contains(&args.count) {
                    return Err(ParseError::WrongArgumentCount);
                }
                let noreply = args.last(line) == b"noreply";
                let level =
                    parse_u32(args.get(line, 0)).ok_or(ParseError::BadCommandLine { noreply })?;
                Ok(Request::Verbosity { level, noreply })
            }
            Command::Stats => Ok(Request::Stats {
                group: tokens.next().map(slice),
                args: tokens.map(slice).collect(),
            }),
            // memcached ignores any arguments of these.
            Command::Version => Ok(Request::Version),
            Command::Quit => Ok(Request::Quit),
            Command::MetaNoop => Ok(Request::MetaNoop),
            Command::Meta(meta) => self.parse_meta(meta, line, tokens),
            Command::Store(_) => Err(ParseError::UnknownCommand),
        }
    }

    /// Parses `mg|md|ma <key> <flags>*`.
    fn parse_meta(
        &self,
        command: MetaCommand,
        line: &Bytes,
        mut tokens: Tokens<'_>,
    ) -> Result<Request> {
        let (key_start, key_end) = tokens.next().ok_or(ParseError::WrongArgumentCount)?;
        let raw_key = &line[key_start..key_end];
        if raw_key.len() > self.limits.max_key_bytes {
            return Err(ParseError::BadCommandLine { noreply: false });
        }
        if 2 + tokens.clone().count() > MAX_META_TOKENS {
            return Err(ParseError::TooManyFlags);
        }
        let flags = line.slice(tokens.pos..);
        let checked = meta::check(command, &flags, raw_key)?;
        let key = match checked.binary_key {
            Some(decoded) => decoded,
            None => self.key(line, (key_start, key_end), false)?,
        };
        let flags = MetaFlags::new(flags, checked.present);
        Ok(match command {
            MetaCommand::Get => Request::MetaGet { key, flags },
            MetaCommand::Delete => Request::MetaDelete { key, flags },
            MetaCommand::Arithmetic => Request::MetaArithmetic { key, flags },
            // `ms` has a data block and is parsed by meta_set_head.
            MetaCommand::Set => return Err(ParseError::UnknownCommand),
        })
    }

    /// Returns the key at `range` of `line` if it is valid.
    fn key(&self, line: &Bytes, (start, end): (usize, usize), noreply: bool) -> Result<Bytes> {
        if self.valid_key(&line[start..end]) {
            Ok(line.slice(start..end))
        } else {
            Err(ParseError::BadCommandLine { noreply })
        }
    }

    /// A key is 1 to `max_key_bytes` bytes with no control character or space (memcached's
    /// protocol.txt; memcached itself only checks the length).
    fn valid_key(&self, key: &[u8]) -> bool {
        !key.is_empty()
            && key.len() <= self.limits.max_key_bytes
            && key.iter().all(|&b| b > b' ' && b != 0x7f)
    }
}

/// Reads a data length as memcached does: a 32-bit integer, not negative, and leaving room for
/// the `\r\n` (`vlen < 0 || vlen > INT_MAX - 2` is a bad command line).
fn data_len(token: &[u8]) -> Option<usize> {
    parse_i32(token)
        .filter(|&n| (0..=i32::MAX - 2).contains(&n))
        .and_then(|n| usize::try_from(n).ok())
}

/// Splits a command line into tokens at spaces: only spaces, and runs of them count as one,
/// as memcached's `tokenize_command` does. Yields byte ranges.
#[derive(Debug, Clone)]
struct Tokens<'a> {
    line: &'a [u8],
    pos: usize,
}

impl<'a> Tokens<'a> {
    fn new(line: &'a [u8]) -> Tokens<'a> {
        Tokens { line, pos: 0 }
    }

    /// Returns the tokens after the first (the command name).
    fn after_command(line: &'a [u8]) -> Tokens<'a> {
        let mut tokens = Tokens::new(line);
        tokens.next();
        tokens
    }
}

impl Iterator for Tokens<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let rest = &self.line[self.pos..];
        let start = self.pos + rest.iter().position(|&c| c != b' ')?;
        let end = memchr::memchr(b' ', &self.line[start..]).map_or(self.line.len(), |i| start + i);
        self.pos = end;
        Some((start, end))
    }
}

/// The most arguments any fixed-arity command takes (`cas`: five and `noreply`).
const MAX_ARGS: usize = 6;

/// The arguments of a fixed-arity command: how many there are, and the ranges of the first
/// [`MAX_ARGS`]. Callers check `count` before reading any.
struct Args {
    ranges: [(usize, usize); MAX_ARGS],
    count: usize,
}

impl Args {
    fn collect(tokens: Tokens<'_>) -> Args {
        let mut args = Args {
            ranges: [(0, 0); MAX_ARGS],
            count: 0,
        };
        for range in tokens {
            if let Some(slot) = args.ranges.get_mut(args.count) {
                *slot = range;
            }
            args.count += 1;
        }
        args
    }

    /// Returns argument `i`, or nothing if there are fewer.
    fn get<'l>(&self, line: &'l [u8], i: usize) -> &'l [u8] {
        match self.ranges.get(i) {
            Some(&(start, end)) if i < self.count => &line[start..end],
            _ => &[],
        }
    }

    /// Returns the last argument, or nothing if there are none or more than [`MAX_ARGS`].
    fn last<'l>(&self, line: &'l [u8]) -> &'l [u8] {
        match self.count.checked_sub(1) {
            Some(i) => self.get(line, i),
            None => &[],
        }
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
