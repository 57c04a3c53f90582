// Hot path: the flags of every meta command are checked here.

//! Meta command flags.
//!
//! After its key (and, for `ms`, its data length) a meta command carries flags: one letter
//! each, optionally followed by a token, separated by spaces: `mg foo v c T30 Oabc k`.
//! Flags ask for return values (`v`, `c`, `t`, `f`, `s`, `k`), set things (`T30`, `F5`,
//! `C123`), switch modes (`MS`, `MI`) or quiet the reply (`q`); `O` carries an opaque token
//! and `k` the key, both echoed back in request order.
//!
//! The parser checks what memcached's `_meta_flag_preparse` checks for every meta command:
//! each flag is a letter and appears once; numeric tokens parse (`N`, `T`, `R` as 32-bit
//! exptimes, `F` as 32-bit client flags, `C`/`E` as cas values, `J`/`D` as 64-bit
//! arithmetic values); `M` has a one-character token valid for the command; `O` fits
//! [`MAX_OPAQUE_BYTES`]; a `b` key is valid base64. Which flags a command acts on is the
//! executor's business: unknown letters are kept, as newer memcached versions add flags.
//!
//! [`MetaFlags`] keeps the raw bytes of the flags (a slice of the request) and a bitmask of
//! the letters present, so checking or iterating them allocates nothing.

use std::fmt;

use bytes::Bytes;

use crate::base64;
use crate::error::{ParseError, Result};
use crate::number::{parse_i32, parse_i64, parse_u32, parse_u64};

/// The most tokens a meta command line may have, command and key included (memcached's
/// `MFLAG_MAX_OPT_LENGTH` of 20 counts its tokenizer's terminal token too).
pub const MAX_META_TOKENS: usize = 19;

/// The longest opaque token accepted, its `O` included (memcached's
/// `MFLAG_MAX_OPAQUE_LENGTH`).
pub const MAX_OPAQUE_BYTES: usize = 32;

/// The flags of one meta command, in request order.
#[derive(Clone, Default)]
pub struct MetaFlags {
    /// The flag tokens as sent, separated by one or more spaces.
    raw: Bytes,
    /// Bit `bit(f)` is set for every flag letter `f` present.
    present: u64,
}

/// Returns the bit for a flag letter: `a..=z` are bits 0..26, `A..=Z` bits 26..52.
fn bit(flag: u8) -> Option<u32> {
    match flag {
        b'a'..=b'z' => Some(u32::from(flag - b'a')),
        b'A'..=b'Z' => Some(u32::from(flag - b'A') + 26),
        _ => None,
    }
}

impl MetaFlags {
    /// Returns flags over `raw`, which [`check`] has accepted and summarised in `present`.
    pub(crate) fn new(raw: Bytes, present: u64) -> MetaFlags {
        MetaFlags { raw, present }
    }

    /// Returns true if the flag letter `flag` was given.
    pub fn has(&self, flag: u8) -> bool {
        bit(flag).is_some_and(|b| self.present & (1 << b) != 0)
    }

    /// Returns the token after the flag letter (empty for a bare flag such as `v`), or `None`
    /// if the flag was not given.
    pub fn token(&self, flag: u8) -> Option<&[u8]> {
        if !self.has(flag) {
            return None;
        }
        self.iter()
            .find(|&(f, _)| f == flag)
            .map(|(_, token)| token)
    }

    /// Returns the flag's token as a signed decimal, or `None` if the flag was not given.
    /// A token that is not a number is [`ParseError::BadFlagToken`].
    pub fn int_token(&self, flag: u8) -> Option<Result<i64>> {
        self.token(flag)
            .map(|t| parse_i64(t).ok_or(ParseError::BadFlagToken))
    }

    /// Returns the flag's token as an unsigned decimal, or `None` if the flag was not given.
    /// A token that is not a number is [`ParseError::BadFlagToken`].
    pub fn u64_token(&self, flag: u8) -> Option<Result<u64>> {
        self.token(flag)
            .map(|t| parse_u64(t).ok_or(ParseError::BadFlagToken))
    }

    /// Returns the flags as `(letter, token)` pairs in request order. The executor walks this
    /// to build return flags, which memcached writes in request order (`O` and `k` echoed).
    pub fn iter(&self) -> Iter<'_> {
        Iter::over(&self.raw)
    }

    /// Returns the number of flags.
    pub fn len(&self) -> usize {
        self.present.count_ones() as usize
    }

    /// Returns true if no flag was given.
    pub fn is_empty(&self) -> bool {
        self.present == 0
    }
}

impl PartialEq for MetaFlags {
    /// Flags are equal when they hold the same flags and tokens in the same order, however
    /// many spaces separated them.
    fn eq(&self, other: &MetaFlags) -> bool {
        self.present == other.present && self.iter().eq(other.iter())
    }
}

impl Eq for MetaFlags {}

impl fmt::Debug for MetaFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(flag, token)| {
                format!("{}{}", char::from(flag), String::from_utf8_lossy(token))
            }))
            .finish()
    }
}

/// An iterator over `(flag letter, token)` pairs; see [`MetaFlags::iter`].
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    rest: &'a [u8],
}

impl<'a> Iter<'a> {
    /// Returns an iterator over the flags in `raw`.
    fn over(raw: &'a [u8]) -> Iter<'a> {
        Iter { rest: raw }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        let start = self.rest.iter().position(|&c| c != b' ')?;
        let rest = &self.rest[start..];
        let end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
        self.rest = &rest[end..];
        // Tokens are never empty: `start` found a non-space byte.
        let (&flag, token) = rest[..end].split_first()?;
        Some((flag, token))
    }
}

/// The meta commands whose flags [`check`] knows how to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetaCommand {
    Get,
    Set,
    Delete,
    Arithmetic,
}

/// What [`check`] learned from valid flags.
#[derive(Debug)]
pub(crate) struct Checked {
    /// The letters present, for [`MetaFlags::new`].
    pub present: u64,
    /// The decoded key when the `b` flag marks it as base64.
    pub binary_key: Option<Bytes>,
}

/// Checks the flags of a meta command the way memcached does, in memcached's order and with
/// its texts: letters and duplicates first (stop at once), then every token (the last error
/// wins, except that a bad `F` keeps the earlier text), then the mode, then the opaque.
pub(crate) fn check(command: MetaCommand, flags: &[u8], key: &[u8]) -> Result<Checked> {
    let checked = preparse(flags, key);
    let checked = match command {
        // memcached answers every flag error of md and ma with one text.
        MetaCommand::Delete | MetaCommand::Arithmetic => {
            checked.map_err(|_| ParseError::InvalidOrDuplicateFlag)?
        }
        MetaCommand::Get | MetaCommand::Set => checked?,
    };
    let mode = Iter::over(flags).find(|&(flag, _)| flag == b'M');
    match (command, mode) {
        (MetaCommand::Set, Some((_, mode)))
            if !matches!(mode, b"E" | b"A" | b"P" | b"R" | b"S") =>
        {
            return Err(ParseError::InvalidSetMode);
        }
        (MetaCommand::Arithmetic, Some((_, mode)))
            if !matches!(mode, b"I" | b"+" | b"D" | b"-") =>
        {
            return Err(ParseError::InvalidArithmeticMode);
        }
        _ => {}
    }
    if Iter::over(flags).any(|(flag, token)| flag == b'O' && 1 + token.len() > MAX_OPAQUE_BYTES) {
        return Err(ParseError::OpaqueTooLong);
    }
    Ok(checked)
}

/// memcached's `_meta_flag_preparse`: the checks shared by all meta commands.
fn preparse(flags: &[u8], key: &[u8]) -> Result<Checked> {
    let mut present: u64 = 0;
    let mut binary_key = None;
    let mut failed = false;
    let mut error = ParseError::BadCommandLine { noreply: false };
    for (flag, token) in Iter::over(flags) {
        let Some(b) = bit(flag) else {
            return Err(ParseError::InvalidFlag);
        };
        if present & (1 << b) != 0 {
            return Err(ParseError::DuplicateFlag);
        }
        present |= 1 << b;
        let token_error = match flag {
            b'b' => match base64::decode(key) {
                Some(decoded) => {
                    binary_key = Some(Bytes::from(decoded));
                    None
                }
                None => Some(ParseError::KeyDecode),
            },
            b'N' | b'T' | b'R' => parse_i32(token)
                .is_none()
                .then_some(ParseError::BadFlagToken),
            b'C' | b'E' => parse_u64(token)
                .is_none()
                .then_some(ParseError::BadFlagToken),
            b'M' => (token.len() != 1).then_some(ParseError::BadModeLength),
            b'J' => parse_u64(token)
                .is_none()
                .then_some(ParseError::InvalidInitial),
            b'D' => parse_u64(token)
                .is_none()
                .then_some(ParseError::InvalidDeltaToken),
            b'F' => {
                // memcached flags the error without choosing a text for it.
                failed |= parse_u32(token).is_none();
                None
            }
            _ => None,
        };
        if let Some(token_error) = token_error {
            failed = true;
            error = token_error;
        }
    }
    if failed {
        return Err(error);
    }
    Ok(Checked {
        present,
        binary_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(raw: &'static [u8]) -> MetaFlags {
        let checked = check(MetaCommand::Get, raw, b"k").expect("valid flags");
        MetaFlags::new(Bytes::from_static(raw), checked.present)
    }

    #[test]
    fn flags_are_looked_up_and_iterated_in_request_order() {
        let f = flags(b"v  T30 Oabc k c");
        assert!(f.has(b'v') && f.has(b'T') && f.has(b'k') && f.has(b'c'));
        assert!(!f.has(b'q') && !f.has(b'0') && !f.has(b' '));
        assert_eq!(f.token(b'v'), Some(&b""[..]));
        assert_eq!(f.token(b'O'), Some(&b"abc"[..]));
        assert_eq!(f.token(b'q'), None);
        assert_eq!(f.int_token(b'T'), Some(Ok(30)));
        assert_eq!(f.int_token(b'O'), Some(Err(ParseError::BadFlagToken)));
        assert_eq!(f.u64_token(b'T'), Some(Ok(30)));
        assert_eq!(f.int_token(b'N'), None);
        let order: Vec<(u8, &[u8])> = f.iter().collect();
        assert_eq!(
            order,
            vec![
                (b'v', &b""[..]),
                (b'T', b"30"),
                (b'O', b"abc"),
                (b'k', b""),
                (b'c', b"")
            ]
        );
        assert_eq!(f.len(), 5);
        assert!(!f.is_empty());
        assert!(MetaFlags::default().is_empty());
        assert_eq!(f, flags(b"v T30 Oabc k c"));
        assert_ne!(f, flags(b"T30 v Oabc k c"));
        assert_eq!(format!("{f:?}"), r#"["v", "T30", "Oabc", "k", "c"]"#);
    }

    #[test]
    fn flag_errors_use_memcacheds_words() {
        use MetaCommand::*;
        let cases: &[(MetaCommand, &[u8], ParseError)] = &[
            (Get, b"v v", ParseError::DuplicateFlag),
            (Get, b"v 1", ParseError::InvalidFlag),
            (Get, b"v :x", ParseError::InvalidFlag),
            (Get, b"Tx", ParseError::BadFlagToken),
            (Get, b"T", ParseError::BadFlagToken),
            (Get, b"T2147483648", ParseError::BadFlagToken),
            (Get, b"N-", ParseError::BadFlagToken),
            (Get, b"C-1", ParseError::BadFlagToken),
            (Set, b"F-1", ParseError::BadCommandLine { noreply: false }),
            (Set, b"Tx F-1", ParseError::BadFlagToken),
            (Set, b"F-1 Tx", ParseError::BadFlagToken),
            (Set, b"Tx Cx MSS", ParseError::BadModeLength),
            (Set, b"MX", ParseError::InvalidSetMode),
            (Arithmetic, b"MX", ParseError::InvalidArithmeticMode),
            (Arithmetic, b"Dx", ParseError::InvalidOrDuplicateFlag),
            (Arithmetic, b"v v", ParseError::InvalidOrDuplicateFlag),
            (Delete, b"Tx", ParseError::InvalidOrDuplicateFlag),
            (Get, b"Jx", ParseError::InvalidInitial),
            (Get, b"D-1", ParseError::InvalidDeltaToken),
            (Get, b"b", ParseError::KeyDecode),
            (
                Get,
                b"O12345678901234567890123456789012",
                ParseError::OpaqueTooLong,
            ),
            (
                Set,
                b"MX O12345678901234567890123456789012",
                ParseError::InvalidSetMode,
            ),
        ];
        for (command, raw, error) in cases {
            assert_eq!(
                check(*command, raw, b"k").map(|c| c.present),
                Err(error.clone()),
                "{command:?} {:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn valid_flags_pass_for_each_command() {
        use MetaCommand::*;
        let cases: &[(MetaCommand, &[u8])] = &[
            (Get, b""),
            (Get, b"v c f t s k h l Oopaque q u N30 R10 T-1 E5"),
            (Get, b"O1234567890123456789012345678901"),
            (Set, b"ME"),
            (Set, b"MS T0 F4294967295 C18446744073709551615 I q"),
            (Arithmetic, b"M+ N0 J10 D18446744073709551615 v"),
            (Arithmetic, b"MD"),
            (Delete, b"I T30 q x C5"),
            (Get, b"Z y"),
        ];
        for (command, raw) in cases {
            assert!(
                check(*command, raw, b"k").is_ok(),
                "{command:?} {:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn binary_keys_are_decoded() {
        let checked = check(MetaCommand::Get, b"b v", b"Zm9vIGJhcg==").expect("valid");
        assert_eq!(checked.binary_key.as_deref(), Some(&b"foo bar"[..]));
        let checked = check(MetaCommand::Get, b"v", b"Zm9vIGJhcg==").expect("valid");
        assert_eq!(checked.binary_key, None);
        assert_eq!(
            check(MetaCommand::Delete, b"b", b"not base64").map(|c| c.present),
            Err(ParseError::InvalidOrDuplicateFlag)
        );
    }
}
