//! Why a request could not be parsed, and the line memcached answers it with.
//!
//! memcached's text protocol survives almost every bad request: the offending line (and, for a
//! storage command, its data block) is consumed, one error line is answered, and the next
//! request parses normally. Only a line that never ends is fatal. Each variant therefore knows
//! its exact reply ([`ParseError::wire`]), whether the connection must close
//! ([`ParseError::is_fatal`]), and whether memcached would stay silent because the request
//! asked for `noreply` ([`ParseError::noreply`]).

use bytes::Bytes;

/// Why a request could not be parsed. Every error but the fatal ones
/// ([`ParseError::LineTooLong`], [`ParseError::HttpRequest`]) has already consumed the bad
/// request: answer [`ParseError::wire`] (unless [`ParseError::noreply`]) and keep parsing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The command name is unknown, or the line is blank. Answered `ERROR`.
    #[error("unknown command")]
    UnknownCommand,
    /// An unknown command whose last word starts with `HTTP/`: an HTTP request. Fatal and
    /// never answered: memcached closes the connection at once.
    #[error("an HTTP request")]
    HttpRequest,
    /// A known command with too few or too many arguments. memcached answers plain `ERROR`
    /// here too, before it has looked for `noreply`.
    #[error("wrong number of arguments")]
    WrongArgumentCount,
    /// A key that is too long or holds a control character, a number that does not parse or
    /// does not fit, a negative data length, or too many keys in one `get`.
    #[error("bad command line format")]
    BadCommandLine {
        /// The request ended in `noreply`: memcached sends nothing.
        noreply: bool,
    },
    /// `delete` with arguments other than `[0] [noreply]`.
    #[error("bad command line format, usage: delete <key> [noreply]")]
    BadDeleteArguments {
        /// The request ended in `noreply`: memcached sends nothing.
        noreply: bool,
    },
    /// An exptime (`touch`, `gat`, `flush_all`) that is not a 32-bit integer.
    #[error("invalid exptime argument")]
    InvalidExptime {
        /// The request ended in `noreply`: memcached sends nothing.
        noreply: bool,
    },
    /// An `incr`/`decr` delta that is not an unsigned 64-bit decimal.
    #[error("invalid numeric delta argument")]
    InvalidDelta {
        /// The request ended in `noreply`: memcached sends nothing.
        noreply: bool,
    },
    /// A data block not followed by `\r\n`. The declared bytes (and the two after them) were
    /// consumed.
    #[error("bad data chunk")]
    BadDataChunk {
        /// The request ended in `noreply`: memcached sends nothing.
        noreply: bool,
    },
    /// A declared data length above `max_value_bytes`. The parser swallows the data block
    /// as it arrives, without buffering it.
    #[error("object too large for cache")]
    TooLarge {
        /// The request ended in `noreply`: memcached sends nothing.
        noreply: bool,
        /// The key whose current value memcached removes, so that a failed `set` (or any
        /// failed `ms`) never leaves an older value readable: the executor should remove it.
        invalidate: Option<Bytes>,
    },
    /// No newline within `max_line_bytes`. Fatal: answer, then close the connection.
    #[error("line too long")]
    LineTooLong,
    /// A meta command line with more than [`crate::MAX_META_TOKENS`] tokens.
    #[error("options flags too long")]
    TooManyFlags,
    /// A meta flag that is not an ASCII letter.
    #[error("invalid flag")]
    InvalidFlag,
    /// A meta flag given twice.
    #[error("duplicate flag")]
    DuplicateFlag,
    /// Any flag error in `md` or `ma`, which memcached answers with one text.
    #[error("invalid or duplicate flag")]
    InvalidOrDuplicateFlag,
    /// A meta flag token that should be a number (`N`, `T`, `R`, `C`, `E`) and is not.
    #[error("bad token in command line format")]
    BadFlagToken,
    /// An `M` (mode) flag whose token is not exactly one character.
    #[error("incorrect length for M token")]
    BadModeLength,
    /// An `ms` mode other than `E`, `A`, `P`, `R`, `S`.
    #[error("invalid mode for ms M token")]
    InvalidSetMode,
    /// An `ma` mode other than `I`, `+`, `D`, `-`.
    #[error("invalid mode for ma M token")]
    InvalidArithmeticMode,
    /// An `ma` initial value (`J`) that is not an unsigned 64-bit decimal.
    #[error("invalid numeric initial value")]
    InvalidInitial,
    /// An `ma` delta (`D`) that is not an unsigned 64-bit decimal.
    #[error("invalid numeric delta value")]
    InvalidDeltaToken,
    /// A key marked binary (`b`) that is not valid base64.
    #[error("error decoding key")]
    KeyDecode,
    /// An opaque token (`O`) longer than [`crate::MAX_OPAQUE_BYTES`].
    #[error("opaque token too long")]
    OpaqueTooLong,
}

/// Result alias for the parser.
pub type Result<T> = std::result::Result<T, ParseError>;

impl ParseError {
    /// Returns the reply line memcached sends for this error, `\r\n` included.
    pub fn wire(&self) -> &'static [u8] {
        match self {
            // HttpRequest is never answered (see `noreply`); ERROR is what a reply would be.
            ParseError::UnknownCommand
            | ParseError::WrongArgumentCount
            | ParseError::HttpRequest => b"ERROR\r\n",
            ParseError::BadCommandLine { .. } => b"CLIENT_ERROR bad command line format\r\n",
            ParseError::BadDeleteArguments { .. } => {
                b"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"
            }
            ParseError::InvalidExptime { .. } => b"CLIENT_ERROR invalid exptime argument\r\n",
            ParseError::InvalidDelta { .. } => b"CLIENT_ERROR invalid numeric delta argument\r\n",
            ParseError::BadDataChunk { .. } => b"CLIENT_ERROR bad data chunk\r\n",
            ParseError::TooLarge { .. } => b"SERVER_ERROR object too large for cache\r\n",
            ParseError::LineTooLong => b"CLIENT_ERROR line too long\r\n",
            ParseError::TooManyFlags => b"CLIENT_ERROR options flags too long\r\n",
            ParseError::InvalidFlag => b"CLIENT_ERROR invalid flag\r\n",
            ParseError::DuplicateFlag => b"CLIENT_ERROR duplicate flag\r\n",
            ParseError::InvalidOrDuplicateFlag => b"CLIENT_ERROR invalid or duplicate flag\r\n",
            ParseError::BadFlagToken => b"CLIENT_ERROR bad token in command line format\r\n",
            ParseError::BadModeLength => b"CLIENT_ERROR incorrect length for M token\r\n",
            ParseError::InvalidSetMode => b"CLIENT_ERROR invalid mode for ms M token\r\n",
            ParseError::InvalidArithmeticMode => b"CLIENT_ERROR invalid mode for ma M token\r\n",
            ParseError::InvalidInitial => b"CLIENT_ERROR invalid numeric initial value\r\n",
            ParseError::InvalidDeltaToken => b"CLIENT_ERROR invalid numeric delta value\r\n",
            ParseError::KeyDecode => b"CLIENT_ERROR error decoding key\r\n",
            ParseError::OpaqueTooLong => b"CLIENT_ERROR opaque token too long\r\n",
        }
    }

    /// Returns true when the connection must close after answering: the stream can't be
    /// resynchronised. The parser keeps returning the same error if called again.
    pub fn is_fatal(&self) -> bool {
        matches!(self, ParseError::LineTooLong | ParseError::HttpRequest)
    }

    /// Returns true when the request asked for `noreply` and memcached answers this error with
    /// nothing (its `out_string` drops every line, errors included, once `noreply` was seen).
    /// Errors found before `noreply` could be read, and all meta command errors, are sent.
    pub fn noreply(&self) -> bool {
        match self {
            ParseError::BadCommandLine { noreply }
            | ParseError::BadDeleteArguments { noreply }
            | ParseError::InvalidExptime { noreply }
            | ParseError::InvalidDelta { noreply }
            | ParseError::BadDataChunk { noreply }
            | ParseError::TooLarge { noreply, .. } => *noreply,
            ParseError::HttpRequest => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_one_crlf_terminated_line() {
        let all = [
            ParseError::UnknownCommand,
            ParseError::WrongArgumentCount,
            ParseError::BadCommandLine { noreply: false },
            ParseError::BadDeleteArguments { noreply: false },
            ParseError::InvalidExptime { noreply: false },
            ParseError::InvalidDelta { noreply: false },
            ParseError::BadDataChunk { noreply: false },
            ParseError::TooLarge {
                noreply: false,
                invalidate: None,
            },
            ParseError::LineTooLong,
            ParseError::TooManyFlags,
            ParseError::InvalidFlag,
            ParseError::DuplicateFlag,
            ParseError::InvalidOrDuplicateFlag,
            ParseError::BadFlagToken,
            ParseError::BadModeLength,
            ParseError::InvalidSetMode,
            ParseError::InvalidArithmeticMode,
            ParseError::InvalidInitial,
            ParseError::InvalidDeltaToken,
            ParseError::KeyDecode,
            ParseError::OpaqueTooLong,
        ];
        for error in &all {
            let wire = error.wire();
            assert!(wire.ends_with(b"\r\n"), "{error:?}");
            assert_eq!(memchr::memchr_iter(b'\n', wire).count(), 1, "{error:?}");
            assert!(!error.noreply());
            assert_eq!(error.is_fatal(), *error == ParseError::LineTooLong);
        }
    }

    #[test]
    fn error_lines_match_memcached() {
        assert_eq!(ParseError::UnknownCommand.wire(), b"ERROR\r\n");
        assert_eq!(
            ParseError::TooLarge {
                noreply: true,
                invalidate: None
            }
            .wire(),
            b"SERVER_ERROR object too large for cache\r\n"
        );
        assert_eq!(
            ParseError::InvalidDelta { noreply: false }.wire(),
            b"CLIENT_ERROR invalid numeric delta argument\r\n"
        );
        assert_eq!(
            ParseError::LineTooLong.wire(),
            b"CLIENT_ERROR line too long\r\n"
        );
        assert_eq!(
            ParseError::BadCommandLine { noreply: false }.to_string(),
            "bad command line format"
        );
    }

    #[test]
    fn noreply_silences_only_errors_found_after_it_was_read() {
        assert!(ParseError::BadCommandLine { noreply: true }.noreply());
        assert!(ParseError::TooLarge {
            noreply: true,
            invalidate: None
        }
        .noreply());
        assert!(!ParseError::WrongArgumentCount.noreply());
        assert!(!ParseError::LineTooLong.noreply());
    }
}
