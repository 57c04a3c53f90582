//! Standard base64 (RFC 4648 alphabet, `=` padding) for meta commands' binary keys.
//!
//! A meta command with the `b` flag carries its key base64-encoded, so keys may hold any byte
//! (spaces, control characters, `\r\n`) without breaking the line. The parser decodes it, and
//! the reply encoder encodes it again when the key is echoed with the `k` flag.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Returns the 6-bit value of one base64 character.
fn sextet(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes padded base64. Returns `None` for an empty result, a length that is not a multiple
/// of 4, a character outside the alphabet, or padding anywhere but the end. Unused low bits of
/// the last group are ignored, as most decoders (memcached's included) do.
pub fn decode(text: &[u8]) -> Option<Vec<u8>> {
    if text.is_empty() || text.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let groups = text.len() / 4;
    for (i, group) in text.chunks_exact(4).enumerate() {
        let padding = group.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && i + 1 != groups) {
            return None;
        }
        let mut bits: u32 = 0;
        for &c in &group[..4 - padding] {
            bits = bits << 6 | sextet(c)?;
        }
        bits <<= 6 * padding as u32;
        let bytes = [(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
        out.extend_from_slice(&bytes[..3 - padding]);
    }
    Some(out)
}

/// Appends the padded base64 encoding of `data` to `out`.
pub fn encode_into(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let bits = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(bits >> (18 - 6 * i) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(data: &[u8]) -> String {
        let mut out = Vec::new();
        encode_into(data, &mut out);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn rfc4648_vectors_round_trip() {
        let vectors: &[(&str, &str)] = &[
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(enc(plain.as_bytes()), *encoded);
            assert_eq!(decode(encoded.as_bytes()), Some(plain.as_bytes().to_vec()));
        }
        let binary = [0u8, b' ', b'\r', b'\n', 0xff];
        let mut text = Vec::new();
        encode_into(&binary, &mut text);
        assert_eq!(decode(&text), Some(binary.to_vec()));
    }

    #[test]
    fn malformed_base64_is_refused() {
        for bad in [
            &b""[..],
            b"Zg=",
            b"Zg",
            b"Z===",
            b"====",
            b"Zg==Zg==",
            b"Z=g=",
            b"Zm9*",
            b"Zm9 ",
        ] {
            assert_eq!(decode(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
