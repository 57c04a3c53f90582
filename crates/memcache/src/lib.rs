//! The memcached text protocol: the request parser and the reply encoder.
//!
//! Goals: parse every request a memcached client sends over the text protocol (the classic
//! commands and the meta commands `mg`, `ms`, `md`, `ma`, `mn`), answer every bad request in
//! memcached's own words while keeping the stream in sync (an oversized value is swallowed as
//! it arrives, never buffered), tell "need more bytes" apart from "invalid", never panic and
//! never allocate more than the configured [`Limits`] on hostile input; encode every reply
//! the executor needs.
//!
//! Non-goals: sockets, command execution, storage, the binary protocol, SASL/ascii
//! authentication. The crate knows bytes only; the executor that runs requests against the
//! store lives elsewhere.
//!
//! Modules, in reading order:
//! - [`request`]: [`Request`], what the parser hands to the executor.
//! - [`parse`]: the incremental [`Parser`] and its [`Limits`].
//! - [`meta`]: [`MetaFlags`], the flags of a meta command, and how they are checked.
//! - [`error`]: [`ParseError`], with the exact reply line for each error.
//! - [`encode`]: reply encoding (`VALUE`, `STORED`, `VA`, `HD`, ...).
//! - `number`, `base64`: memcached's decimal numbers; base64 for binary meta keys.
//! - `invariants`: the parser properties checked by the fuzz target and the property tests.

mod base64;
pub mod encode;
pub mod error;
#[doc(hidden)]
pub mod invariants;
pub mod meta;
mod number;
pub mod parse;
pub mod request;

pub use error::{ParseError, Result};
pub use meta::{MetaFlags, MAX_META_TOKENS, MAX_OPAQUE_BYTES};
pub use parse::{Limits, Parser, MAX_KEY_BYTES};
pub use request::{Request, StoreMode};
