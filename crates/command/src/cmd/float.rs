//! INCRBYFLOAT arithmetic.
//!
//! Redis adds two `long double`s and prints the sum with `%.17Lf`, trimming trailing zeros.
//! With 64-bit doubles, `0.1 + 0.2` would print `0.30000000000000004` where Redis prints
//! `0.3`, so operands written as plain decimals (what clients send) are added exactly in
//! decimal and the sum is rounded half-to-even to 17 fractional digits, as `%.17Lf` does.
//! This matches Redis whenever the sum fits in `long double` precision (about 19 significant
//! digits) and is exact beyond it, where Redis shows binary artefacts. Operands that are not
//! plain decimals within 36 digits (`1e300`, `inf`) fall back to `f64`.

/// The most fractional digits Redis prints.
const FRACTION_DIGITS: u32 = 17;
/// Digits an `i128` mantissa holds with room to align and add.
const MAX_DIGITS: usize = 36;

/// A decimal `mantissa / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    mantissa: i128,
    scale: u32,
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl Decimal {
    /// Parses `[+-]digits[.digits][(e|E)[+-]digits]`.
    fn parse(text: &[u8]) -> Option<Decimal> {
        let (negative, rest) = match text.first()? {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (number, exponent) = match rest.iter().position(|&c| c == b'e' || c == b'E') {
            Some(i) => {
                let exp: i32 = std::str::from_utf8(&rest[i + 1..]).ok()?.parse().ok()?;
                (&rest[..i], exp)
            }
            None => (rest, 0),
        };
        let (int_part, frac_part) = match number.iter().position(|&c| c == b'.') {
            Some(i) => (&number[..i], &number[i + 1..]),
            None => (number, &number[..0]),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return None;
        }
        let digits = int_part.iter().chain(frac_part).skip_while(|&&c| c == b'0');
        let mut mantissa: i128 = 0;
        let mut count = 0;
        for &c in digits {
            if !c.is_ascii_digit() {
                return None;
            }
            count += 1;
            if count > MAX_DIGITS {
                return None;
            }
            mantissa = mantissa * 10 + i128::from(c - b'0');
        }
        if int_part
            .iter()
            .chain(frac_part)
            .any(|c| !c.is_ascii_digit())
        {
            return None;
        }
        let scale = i64::try_from(frac_part.len()).ok()? - i64::from(exponent);
        let (mantissa, scale) = if scale < 0 {
            (
                mantissa.checked_mul(pow10(u32::try_from(-scale).ok()?)?)?,
                0,
            )
        } else {
            (mantissa, u32::try_from(scale).ok()?)
        };
        if scale > 2 * MAX_DIGITS as u32 {
            return None;
        }
        Some(Decimal {
            mantissa: if negative { -mantissa } else { mantissa },
            scale,
        })
    }

    fn rescale(self, scale: u32) -> Option<Decimal> {
        let mantissa = self.mantissa.checked_mul(pow10(scale - self.scale)?)?;
        Some(Decimal { mantissa, scale })
    }

    fn checked_add(self, other: Decimal) -> Option<Decimal> {
        let scale = self.scale.max(other.scale);
        let (a, b) = (self.rescale(scale)?, other.rescale(scale)?);
        Some(Decimal {
            mantissa: a.mantissa.checked_add(b.mantissa)?,
            scale,
        })
    }

    /// Formats like Redis's `%.17Lf` with trailing zeros (and a bare point) removed.
    fn format(self) -> String {
        let mut d = self;
        if d.scale > FRACTION_DIGITS {
            let drop = pow10(d.scale - FRACTION_DIGITS).unwrap_or(i128::MAX);
            let (q, r) = (d.mantissa / drop, d.mantissa % drop);
            let half = drop / 2;
            let rounded = match r.abs().cmp(&half) {
                std::cmp::Ordering::Greater => q + d.mantissa.signum(),
                std::cmp::Ordering::Equal if q % 2 != 0 => q + d.mantissa.signum(),
                _ => q,
            };
            d = Decimal {
                mantissa: rounded,
                scale: FRACTION_DIGITS,
            };
        }
        let digits = d.mantissa.unsigned_abs().to_string();
        let scale = d.scale as usize;
        let (int_part, frac_part) = if digits.len() > scale {
            digits.split_at(digits.len() - scale)
        } else {
            ("0", digits.as_str())
        };
        let frac = format!("{frac_part:0>scale$}");
        let frac = frac.trim_end_matches('0');
        let sign = if d.mantissa < 0 { "-" } else { "" };
        if frac.is_empty() {
            format!("{sign}{int_part}")
        } else {
            format!("{sign}{int_part}.{frac}")
        }
    }
}

/// Parses a float the way Redis's `string2ld` accepts it: no spaces, no NaN.
pub fn parse_float(arg: &[u8]) -> Option<f64> {
    if arg.is_empty()
        || arg.len() > 5000
        || arg[0].is_ascii_whitespace()
        || arg[arg.len() - 1].is_ascii_whitespace()
    {
        return None;
    }
    let value: f64 = std::str::from_utf8(arg).ok()?.parse().ok()?;
    (!value.is_nan()).then_some(value)
}

/// Returns `current + increment` as Redis would print it, or `None` if the increment is not a
/// valid float, or `Err(())` if the result is not finite. `current` must already be valid.
pub fn add(current: &[u8], increment: &[u8]) -> Result<String, ()> {
    if let (Some(a), Some(b)) = (Decimal::parse(current), Decimal::parse(increment)) {
        if let Some(sum) = a.checked_add(b) {
            return Ok(sum.format());
        }
    }
    let (a, b) = (
        parse_float(current).unwrap_or(0.0),
        parse_float(increment).unwrap_or(0.0),
    );
    let sum = a + b;
    if !sum.is_finite() {
        return Err(());
    }
    let fixed = format!("{sum:.17}");
    let text = fixed.trim_end_matches('0').trim_end_matches('.');
    Ok(if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_sums_print_like_redis() {
        let cases = [
            ("0", "10.5", "10.5"),
            ("10.5", "0.1", "10.6"),
            ("0.1", "0.2", "0.3"),
            ("1e3", "0.1", "1000.1"),
            ("10.6", "5.0e3", "5010.6"),
            ("3.0", "0", "3"),
            ("-0", "0", "0"),
            ("0.024390243902439025", "-0.024390243902439025", "0"),
            ("1", "-1.5", "-0.5"),
            ("0", "1e-310", "0"),
            ("0", ".5", "0.5"),
            ("0", "5.", "5"),
            ("0", "+5", "5"),
            ("0", "0.123456789012345678", "0.12345678901234568"),
            ("0", "0.000000000000000005", "0"),
            ("0", "0.000000000000000015", "0.00000000000000002"),
            ("0", "-0.000000000000000015", "-0.00000000000000002"),
        ];
        for (a, b, want) in cases {
            assert_eq!(
                add(a.as_bytes(), b.as_bytes()),
                Ok(want.to_owned()),
                "{a} + {b}"
            );
        }
    }

    #[test]
    fn non_decimal_inputs_fall_back_to_doubles() {
        assert_eq!(add(b"1e300", b"1e300"), Ok(format!("{:.0}", 2e300)));
        assert_eq!(add(b"0", b"1e-320"), Ok("0".to_owned()));
        assert_eq!(
            add(b"1.7976931348623157e308", b"1.7976931348623157e308"),
            Err(())
        );
        assert_eq!(add(b"0", b"inf"), Err(()));
    }

    #[test]
    fn floats_parse_like_redis() {
        assert_eq!(parse_float(b"10.5"), Some(10.5));
        assert_eq!(parse_float(b"5.0e3"), Some(5000.0));
        assert_eq!(parse_float(b"-1"), Some(-1.0));
        for bad in [&b""[..], b" 1", b"1 ", b"abc", b"nan", b"1.2.3"] {
            assert_eq!(parse_float(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
