// Hot path: every flags, exptime, length and cas token of every request is read here.

//! Decimal numbers the way memcached reads them, and written back without allocation.
//!
//! memcached reads numbers with `strtol`/`strtoul` wrapped in its `safe_strto*` helpers: an
//! optional sign (`+` always, `-` only for signed fields), decimal digits (leading zeros are
//! fine), nothing after them, and the value must fit the field (32-bit flags, exptimes and
//! lengths; 64-bit cas uniques and deltas). These functions accept exactly that.

/// Parses an unsigned decimal (`+` allowed, `-` not). Returns `None` on overflow or junk.
pub fn parse_u64(token: &[u8]) -> Option<u64> {
    let digits = token.strip_prefix(b"+").unwrap_or(token);
    if digits.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(value)
}

/// Parses an unsigned decimal that fits 32 bits (memcached's client flags).
pub fn parse_u32(token: &[u8]) -> Option<u32> {
    parse_u64(token).and_then(|v| u32::try_from(v).ok())
}

/// Parses a signed decimal that fits 64 bits.
pub fn parse_i64(token: &[u8]) -> Option<i64> {
    match token.split_first() {
        Some((b'-', magnitude)) if !magnitude.starts_with(b"+") => {
            let magnitude = parse_u64(magnitude)?;
            0i64.checked_sub_unsigned(magnitude)
        }
        _ => parse_u64(token).and_then(|v| i64::try_from(v).ok()),
    }
}

/// Parses a signed decimal that fits 32 bits (memcached's exptimes and data lengths).
pub fn parse_i32(token: &[u8]) -> Option<i32> {
    parse_i64(token).and_then(|v| i32::try_from(v).ok())
}

/// Writes `value` in decimal into `scratch` and returns the digits.
pub fn format_u64(value: u64, scratch: &mut [u8; 20]) -> &[u8] {
    let mut i = scratch.len();
    let mut rest = value;
    loop {
        i -= 1;
        scratch[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            return &scratch[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_numbers_parse_like_strtoull() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"007"), Some(7));
        assert_eq!(parse_u64(b"+5"), Some(5));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"+",
            b"-1",
            b"-0",
            b"18446744073709551616",
            b"1x",
            b" 1",
            b"++1",
        ] {
            assert_eq!(parse_u64(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_u32(b"4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32(b"4294967296"), None);
    }

    #[test]
    fn signed_numbers_parse_like_strtol() {
        assert_eq!(parse_i64(b"-1"), Some(-1));
        assert_eq!(parse_i64(b"+1"), Some(1));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"-+1"), None);
        assert_eq!(parse_i64(b"-"), None);
        assert_eq!(parse_i32(b"2147483647"), Some(i32::MAX));
        assert_eq!(parse_i32(b"-2147483648"), Some(i32::MIN));
        assert_eq!(parse_i32(b"2147483648"), None);
        assert_eq!(parse_i32(b"4294967296"), None);
    }

    #[test]
    fn numbers_format_in_decimal() {
        let mut scratch = [0; 20];
        assert_eq!(format_u64(0, &mut scratch), b"0");
        assert_eq!(format_u64(1234, &mut scratch), b"1234");
        assert_eq!(format_u64(u64::MAX, &mut scratch), b"18446744073709551615");
    }
}
