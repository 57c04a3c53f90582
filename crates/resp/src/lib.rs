//! RESP2 and RESP3: the request parser and the reply encoder.
//!
//! Goals: parse every request a Redis client can send (multibulk arrays of bulk strings and
//! the inline form typed into telnet), tell "need more bytes" apart from "invalid", never
//! panic and never allocate more than the configured limits on hostile input; encode replies
//! for either protocol version from one [`Reply`] value.
//!
//! Non-goals: sockets, commands, storage. The crate knows bytes only.
//!
//! Modules:
//! - [`parse`]: the incremental request parser ([`RequestParser`]) and its [`ParseError`].
//! - [`encode`]: the [`Reply`] type and its RESP2/RESP3 encoding.
//! - `invariants`: the parser properties checked by the fuzz target and the property tests.

pub mod encode;
#[doc(hidden)]
pub mod invariants;
pub mod parse;

pub use encode::{Protocol, Reply};
pub use parse::{Limits, ParseError, RequestParser};
