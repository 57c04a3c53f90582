//! Properties every parse must satisfy, shared by the fuzz target (`fuzz/`) and the property
//! test, so both check the same thing.

use bytes::{Bytes, BytesMut};

use crate::{Limits, ParseError, RequestParser};

/// Everything parsing `input` produced: the requests, then the error or the leftover length.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Complete requests, in order.
    pub requests: Vec<Vec<Bytes>>,
    /// The error that stopped parsing, if any.
    pub error: Option<ParseError>,
}

/// Parses `chunks` fed one after another, as reads from a socket would deliver them.
pub fn parse_chunks(chunks: &[&[u8]], limits: Limits) -> Outcome {
    let mut parser = RequestParser::new(limits);
    let mut buf = BytesMut::new();
    let mut args = Vec::new();
    let mut requests = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            let capacity = buf.capacity();
            let parsed = parser.parse(&mut buf, &mut args);
            // Memory follows the bytes that arrived: parsing never reserves for a declared
            // length (issue 13).
            assert!(buf.capacity() <= capacity, "the parser grew the buffer");
            match parsed {
                Ok(true) => {
                    assert!(!args.is_empty(), "a request has at least one argument");
                    assert!(buf.len() < before, "a request consumes bytes");
                    assert!(args.len() <= limits.max_args);
                    assert!(args.iter().all(
                        |a| a.len() <= limits.max_bulk_bytes.max(crate::parse::MAX_LINE_BYTES)
                    ));
                    requests.push(std::mem::take(&mut args));
                }
                Ok(false) => break,
                Err(error) => {
                    return Outcome {
                        requests,
                        error: Some(error),
                    }
                }
            }
        }
    }
    Outcome {
        requests,
        error: None,
    }
}

/// Checks the parser's invariants on `data` split at `split`:
/// - it never panics;
/// - feeding the bytes in two pieces gives exactly what feeding them at once gives;
/// - every request re-encoded as a multibulk parses back to the same arguments.
pub fn check(data: &[u8], split: usize) {
    let limits = Limits {
        max_bulk_bytes: 1 << 16,
        max_args: 1 << 10,
        max_request_bytes: 1 << 20,
    };
    let whole = parse_chunks(&[data], limits);
    let split = split.min(data.len());
    let pieces = parse_chunks(&[&data[..split], &data[split..]], limits);
    assert_eq!(
        whole, pieces,
        "splitting the input at {split} changed the result"
    );
    for request in &whole.requests {
        let mut encoded = format!("*{}\r\n", request.len()).into_bytes();
        for arg in request {
            encoded.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            encoded.extend_from_slice(arg);
            encoded.extend_from_slice(b"\r\n");
        }
        let again = parse_chunks(&[&encoded], limits);
        assert_eq!(
            again.requests,
            vec![request.clone()],
            "re-encoded request parsed differently"
        );
        assert_eq!(again.error, None);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn parser_invariants_hold_for_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..256), split in 0usize..256) {
            super::check(&data, split);
        }

        #[test]
        fn parser_invariants_hold_for_resp_shaped_input(
            parts in proptest::collection::vec(prop_oneof![
                Just(&b"*"[..]), Just(&b"$"[..]), Just(&b"\r\n"[..]), Just(&b"1"[..]), Just(&b"3"[..]),
                Just(&b"-1"[..]), Just(&b"abc"[..]), Just(&b" "[..]), Just(&b"\""[..]), Just(&b"\n"[..]),
                Just(&b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"[..]), Just(&b"PING\r\n"[..]),
            ], 0..40),
            split in 0usize..400,
        ) {
            let data: Vec<u8> = parts.concat();
            super::check(&data, split);
        }
    }
}
