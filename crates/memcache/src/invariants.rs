//! Properties every parse must satisfy, shared by the fuzz target (`fuzz/`) and the property
//! tests, so both check the same thing.

use bytes::BytesMut;

use crate::{base64, Limits, ParseError, Parser, Request, StoreMode, MAX_META_TOKENS};

/// One thing the parser produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete request.
    Request(Request),
    /// An error; only the last event can be a fatal one.
    Error(ParseError),
}

/// Parses `chunks` fed one after another, as reads from a socket would deliver them, and
/// returns everything produced, stopping after a fatal error. Checks on the way that every
/// request respects `limits` and that every request and non-fatal error consumed input.
pub fn parse_chunks(chunks: &[&[u8]], limits: Limits) -> Vec<Event> {
    let mut parser = Parser::new(limits);
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            let capacity = buf.capacity();
            let parsed = parser.parse(&mut buf);
            // Memory follows the bytes that arrived: parsing never reserves for a declared
            // length (issue 13).
            assert!(buf.capacity() <= capacity, "the parser grew the buffer");
            match parsed {
                Ok(Some(request)) => {
                    assert!(buf.len() < before, "a request consumes bytes");
                    check_request(&request, limits);
                    events.push(Event::Request(request));
                }
                Ok(None) => break,
                Err(error) => {
                    assert!(error.wire().ends_with(b"\r\n"));
                    if error.is_fatal() {
                        assert_eq!(parser.parse(&mut buf), Err(error.clone()), "fatal sticks");
                        events.push(Event::Error(error));
                        return events;
                    }
                    assert!(buf.len() < before, "an error consumes the bad request");
                    events.push(Event::Error(error));
                }
            }
        }
    }
    events
}

/// Checks that a request respects the limits and the protocol's rules.
fn check_request(request: &Request, limits: Limits) {
    let valid_key = |key: &[u8]| {
        !key.is_empty()
            && key.len() <= limits.max_key_bytes
            && key.iter().all(|&b| b > b' ' && b != 0x7f)
    };
    let exptime_ok = |t: i64| i32::try_from(t).is_ok();
    match request {
        Request::Get {
            keys,
            touch_exptime,
            ..
        } => {
            assert!(keys.len() <= limits.max_keys_per_get);
            assert!(keys.iter().all(|k| valid_key(k)));
            assert!(touch_exptime.is_some() || !keys.is_empty());
            assert!(touch_exptime.is_none_or(exptime_ok));
        }
        Request::Store {
            key,
            data,
            exptime,
            mode,
            cas_unique,
            ..
        } => {
            assert!(valid_key(key));
            assert!(data.len() <= limits.max_value_bytes);
            assert!(exptime_ok(*exptime));
            assert!(*mode == StoreMode::Cas || *cas_unique == 0);
        }
        Request::Delete { key, .. } | Request::Arithmetic { key, .. } => assert!(valid_key(key)),
        Request::Touch { key, exptime, .. } => {
            assert!(valid_key(key));
            assert!(exptime_ok(*exptime));
        }
        Request::FlushAll { delay_secs, .. } => assert!(exptime_ok(*delay_secs)),
        Request::MetaGet { key, flags }
        | Request::MetaDelete { key, flags }
        | Request::MetaArithmetic { key, flags }
        | Request::MetaSet { key, flags, .. } => {
            if flags.has(b'b') {
                assert!(!key.is_empty() && key.len() <= limits.max_key_bytes);
            } else {
                assert!(valid_key(key));
            }
            assert!(flags.len() + 2 <= MAX_META_TOKENS);
            assert_eq!(flags.iter().count(), flags.len(), "flags are unique");
            if let Request::MetaSet { data, .. } = request {
                assert!(data.len() <= limits.max_value_bytes);
            }
        }
        Request::Version
        | Request::Verbosity { .. }
        | Request::Stats { .. }
        | Request::Quit
        | Request::MetaNoop => {}
    }
}

/// Returns the canonical wire form of a request: single spaces, plain decimals, `noreply`
/// only when set, binary keys base64-encoded again.
pub fn canonical(request: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    let word = |out: &mut Vec<u8>, text: &[u8]| {
        if !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(text);
    };
    let meta_key = |key: &[u8], binary: bool| {
        let mut encoded = Vec::new();
        if binary {
            base64::encode_into(key, &mut encoded);
        } else {
            encoded.extend_from_slice(key);
        }
        encoded
    };
    let mut data = None;
    let noreply = match request {
        Request::Get {
            keys,
            touch_exptime,
            ..
        } => {
            word(&mut out, request.command_name().as_bytes());
            if let Some(t) = touch_exptime {
                word(&mut out, t.to_string().as_bytes());
            }
            keys.iter().for_each(|k| word(&mut out, k));
            false
        }
        Request::Store {
            mode,
            key,
            flags,
            exptime,
            data: block,
            cas_unique,
            noreply,
        } => {
            word(&mut out, mode.name().as_bytes());
            word(&mut out, key);
            word(&mut out, flags.to_string().as_bytes());
            word(&mut out, exptime.to_string().as_bytes());
            word(&mut out, block.len().to_string().as_bytes());
            if *mode == StoreMode::Cas {
                word(&mut out, cas_unique.to_string().as_bytes());
            }
            data = Some(block);
            *noreply
        }
        Request::Delete { key, noreply } => {
            word(&mut out, b"delete");
            word(&mut out, key);
            *noreply
        }
        Request::Arithmetic {
            key,
            delta,
            noreply,
            ..
        } => {
            word(&mut out, request.command_name().as_bytes());
            word(&mut out, key);
            word(&mut out, delta.to_string().as_bytes());
            *noreply
        }
        Request::Touch {
            key,
            exptime,
            noreply,
        } => {
            word(&mut out, b"touch");
            word(&mut out, key);
            word(&mut out, exptime.to_string().as_bytes());
            *noreply
        }
        Request::FlushAll {
            delay_secs,
            noreply,
        } => {
            word(&mut out, b"flush_all");
            word(&mut out, delay_secs.to_string().as_bytes());
            *noreply
        }
        Request::Verbosity { level, noreply } => {
            word(&mut out, b"verbosity");
            word(&mut out, level.to_string().as_bytes());
            *noreply
        }
        Request::Stats { group, args } => {
            word(&mut out, b"stats");
            group.iter().chain(args).for_each(|a| word(&mut out, a));
            false
        }
        Request::Version | Request::Quit | Request::MetaNoop => {
            word(&mut out, request.command_name().as_bytes());
            false
        }
        Request::MetaGet { key, flags }
        | Request::MetaDelete { key, flags }
        | Request::MetaArithmetic { key, flags }
        | Request::MetaSet { key, flags, .. } => {
            word(&mut out, request.command_name().as_bytes());
            word(&mut out, &meta_key(key, flags.has(b'b')));
            if let Request::MetaSet { data: block, .. } = request {
                word(&mut out, block.len().to_string().as_bytes());
                data = Some(block);
            }
            for (flag, token) in flags.iter() {
                word(&mut out, &[&[flag][..], token].concat());
            }
            false
        }
    };
    if noreply {
        word(&mut out, b"noreply");
    }
    out.extend_from_slice(b"\r\n");
    if let Some(block) = data {
        out.extend_from_slice(block);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The limits the fuzz target and property tests use: small, so that random input reaches
/// every limit.
pub const LIMITS: Limits = Limits {
    max_key_bytes: 16,
    max_value_bytes: 64,
    max_line_bytes: 128,
    max_keys_per_get: 4,
};

/// Checks the parser's invariants on `data` split at `split`:
/// - it never panics, every request respects the limits, every step consumes input;
/// - feeding the bytes in two pieces, or (for short input) one byte at a time, gives exactly
///   what feeding them at once gives;
/// - every request's canonical form parses back to the same request.
pub fn check(data: &[u8], split: usize) {
    let whole = parse_chunks(&[data], LIMITS);
    let split = split.min(data.len());
    let pieces = parse_chunks(&[&data[..split], &data[split..]], LIMITS);
    assert_eq!(
        whole, pieces,
        "splitting the input at {split} changed the result"
    );
    if data.len() <= 512 {
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(
            whole,
            parse_chunks(&bytes, LIMITS),
            "feeding one byte at a time changed the result"
        );
    }
    for event in &whole {
        if let Event::Request(request) = event {
            let wire = canonical(request);
            assert_eq!(
                parse_chunks(&[&wire], LIMITS),
                vec![Event::Request(request.clone())],
                "canonical form {:?} parsed differently",
                String::from_utf8_lossy(&wire)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn parser_invariants_hold_for_random_bytes(
            data in proptest::collection::vec(any::<u8>(), 0..256),
            split in 0usize..256,
        ) {
            super::check(&data, split);
        }

        #[test]
        fn parser_invariants_hold_for_memcache_shaped_input(
            parts in proptest::collection::vec(prop_oneof![
                Just(&b"get "[..]), Just(&b"gets "[..]), Just(&b"gat "[..]), Just(&b"set "[..]),
                Just(&b"cas "[..]), Just(&b"delete "[..]), Just(&b"incr "[..]),
                Just(&b"touch "[..]), Just(&b"flush_all "[..]), Just(&b"stats "[..]),
                Just(&b"mg "[..]), Just(&b"ms "[..]), Just(&b"md "[..]), Just(&b"ma "[..]),
                Just(&b"mn"[..]), Just(&b"k "[..]), Just(&b"0 "[..]), Just(&b"1 "[..]),
                Just(&b"3"[..]), Just(&b"-1 "[..]), Just(&b"99 "[..]),
                Just(&b"4294967296 "[..]), Just(&b"noreply"[..]), Just(&b"abc"[..]),
                Just(&b"v "[..]), Just(&b"T30 "[..]), Just(&b"Oop "[..]), Just(&b"b "[..]),
                Just(&b"a2V5 "[..]), Just(&b"MA "[..]), Just(&b"q "[..]), Just(&b" "[..]),
                Just(&b"\r\n"[..]), Just(&b"\n"[..]), Just(&b"\r"[..]), Just(&b"\x01"[..]),
                Just(&b"set k 0 0 3\r\nabc\r\n"[..]), Just(&b"ms k 2 T1\r\nhi\r\n"[..]),
                Just(&b"get a b\r\n"[..]), Just(&b"mg k v\r\n"[..]),
                Just(&b"cas k 0 0 1 5 noreply\r\nx\r\n"[..]), Just(&b"verbosity 1\r\n"[..]),
                Just(&b"mg a2V5 b k v\r\n"[..]), Just(&b"ma k MD v\r\n"[..]),
            ], 0..40),
            split in 0usize..600,
        ) {
            let data: Vec<u8> = parts.concat();
            super::check(&data, split);
        }
    }
}
