//! Tests of the request parser: byte-exact tables, every cut point, pipelining, hostile input.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::invariants::{parse_chunks, Event};
use crate::meta::{check, MetaCommand};

const BAD: ParseError = ParseError::BadCommandLine { noreply: false };
const BAD_NOREPLY: ParseError = ParseError::BadCommandLine { noreply: true };

fn events(input: &[u8]) -> Vec<Event> {
    parse_chunks(&[input], Limits::default())
}

fn req(request: Request) -> Event {
    Event::Request(request)
}

fn err(error: ParseError) -> Event {
    Event::Error(error)
}

fn b(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

fn get(keys: &[&'static str]) -> Request {
    Request::Get {
        keys: keys.iter().map(|k| b(k)).collect(),
        with_cas: false,
        touch_exptime: None,
    }
}

fn set(key: &'static str, data: &'static str) -> Request {
    store(StoreMode::Set, key, data)
}

fn store(mode: StoreMode, key: &'static str, data: &'static str) -> Request {
    Request::Store {
        mode,
        key: b(key),
        flags: 0,
        exptime: 0,
        data: b(data),
        cas_unique: 0,
        noreply: false,
    }
}

/// Meta flags as the parser would build them for `raw` after key `key`.
fn mflags(raw: &'static str, key: &[u8]) -> MetaFlags {
    let checked = check(MetaCommand::Get, raw.as_bytes(), key).expect("valid flags");
    MetaFlags::new(b(raw), checked.present)
}

fn too_large(noreply: bool, invalidate: Option<&'static str>) -> ParseError {
    ParseError::TooLarge {
        noreply,
        invalidate: invalidate.map(b),
    }
}

/// What a connection would write for each event: the request's command name, or the error's
/// reply line (empty when `noreply` silences it).
fn replies(input: &[u8], limits: Limits) -> Vec<String> {
    parse_chunks(&[input], limits)
        .into_iter()
        .map(|event| match event {
            Event::Request(request) => request.command_name().to_owned(),
            Event::Error(error) if error.noreply() => String::new(),
            Event::Error(error) => String::from_utf8_lossy(error.wire()).into_owned(),
        })
        .collect()
}

#[test]
fn classic_requests_parse_byte_exact() {
    let table: Vec<(&[u8], Vec<Event>)> = vec![
        (b"get k\r\n", vec![req(get(&["k"]))]),
        (b"get k\n", vec![req(get(&["k"]))]),
        (b"get  a   b c \r\n", vec![req(get(&["a", "b", "c"]))]),
        (b"bget k\r\n", vec![req(get(&["k"]))]),
        (
            b"gets a b\r\n",
            vec![req(Request::Get {
                keys: vec![b("a"), b("b")],
                with_cas: true,
                touch_exptime: None,
            })],
        ),
        (
            b"gat 30 a\r\n",
            vec![req(Request::Get {
                keys: vec![b("a")],
                with_cas: false,
                touch_exptime: Some(30),
            })],
        ),
        (
            b"gats -1 a b\r\n",
            vec![req(Request::Get {
                keys: vec![b("a"), b("b")],
                with_cas: true,
                touch_exptime: Some(-1),
            })],
        ),
        (
            b"gat 10\r\n",
            vec![req(Request::Get {
                keys: vec![],
                with_cas: false,
                touch_exptime: Some(10),
            })],
        ),
        (b"set k 0 0 5\r\nhello\r\n", vec![req(set("k", "hello"))]),
        (b"set k 0 0 0\r\n\r\n", vec![req(set("k", ""))]),
        (b"set k 0 0 2\nhi\r\n", vec![req(set("k", "hi"))]),
        (b"set k 0 0 4\r\na\r\nb\r\n", vec![req(set("k", "a\r\nb"))]),
        (
            b"set k 4294967295 -1 2 noreply\r\nhi\r\n",
            vec![req(Request::Store {
                mode: StoreMode::Set,
                key: b("k"),
                flags: u32::MAX,
                exptime: -1,
                data: b("hi"),
                cas_unique: 0,
                noreply: true,
            })],
        ),
        (
            // memcached ignores a last token that is not "noreply"; numbers may have a + or
            // leading zeros.
            b"set k +7 0030 2 junk\r\nhi\r\n",
            vec![req(Request::Store {
                mode: StoreMode::Set,
                key: b("k"),
                flags: 7,
                exptime: 30,
                data: b("hi"),
                cas_unique: 0,
                noreply: false,
            })],
        ),
        (
            b"add k 0 0 1\r\nx\r\n",
            vec![req(store(StoreMode::Add, "k", "x"))],
        ),
        (
            b"replace k 0 0 1\r\nx\r\n",
            vec![req(store(StoreMode::Replace, "k", "x"))],
        ),
        (
            b"append k 0 0 1\r\nx\r\n",
            vec![req(store(StoreMode::Append, "k", "x"))],
        ),
        (
            b"prepend k 0 0 1\r\nx\r\n",
            vec![req(store(StoreMode::Prepend, "k", "x"))],
        ),
        (
            b"cas k 1 2 1 18446744073709551615 noreply\r\nx\r\n",
            vec![req(Request::Store {
                mode: StoreMode::Cas,
                key: b("k"),
                flags: 1,
                exptime: 2,
                data: b("x"),
                cas_unique: u64::MAX,
                noreply: true,
            })],
        ),
        (
            b"delete k\r\n",
            vec![req(Request::Delete {
                key: b("k"),
                noreply: false,
            })],
        ),
        (
            b"delete k 0\r\n",
            vec![req(Request::Delete {
                key: b("k"),
                noreply: false,
            })],
        ),
        (
            b"delete k noreply\r\n",
            vec![req(Request::Delete {
                key: b("k"),
                noreply: true,
            })],
        ),
        (
            b"delete k 0 noreply\r\n",
            vec![req(Request::Delete {
                key: b("k"),
                noreply: true,
            })],
        ),
        (
            b"incr k 18446744073709551615\r\n",
            vec![req(Request::Arithmetic {
                key: b("k"),
                incr: true,
                delta: u64::MAX,
                noreply: false,
            })],
        ),
        (
            b"decr k 5 noreply\r\n",
            vec![req(Request::Arithmetic {
                key: b("k"),
                incr: false,
                delta: 5,
                noreply: true,
            })],
        ),
        (
            b"touch k 100\r\n",
            vec![req(Request::Touch {
                key: b("k"),
                exptime: 100,
                noreply: false,
            })],
        ),
        (
            b"touch k -1 noreply\r\n",
            vec![req(Request::Touch {
                key: b("k"),
                exptime: -1,
                noreply: true,
            })],
        ),
        (
            b"flush_all\r\n",
            vec![req(Request::FlushAll {
                delay_secs: 0,
                noreply: false,
            })],
        ),
        (
            b"flush_all 60\r\n",
            vec![req(Request::FlushAll {
                delay_secs: 60,
                noreply: false,
            })],
        ),
        (
            b"flush_all noreply\r\n",
            vec![req(Request::FlushAll {
                delay_secs: 0,
                noreply: true,
            })],
        ),
        (
            b"flush_all 60 noreply\r\n",
            vec![req(Request::FlushAll {
                delay_secs: 60,
                noreply: true,
            })],
        ),
        (
            b"flush_all 60 junk\r\n",
            vec![req(Request::FlushAll {
                delay_secs: 60,
                noreply: false,
            })],
        ),
        (b"version\r\n", vec![req(Request::Version)]),
        (b"version extra\r\n", vec![req(Request::Version)]),
        (
            b"verbosity 1\r\n",
            vec![req(Request::Verbosity {
                level: 1,
                noreply: false,
            })],
        ),
        (
            b"verbosity 5 noreply\r\n",
            vec![req(Request::Verbosity {
                level: 5,
                noreply: true,
            })],
        ),
        (
            b"stats\r\n",
            vec![req(Request::Stats {
                group: None,
                args: vec![],
            })],
        ),
        (
            b"stats items\r\n",
            vec![req(Request::Stats {
                group: Some(b("items")),
                args: vec![],
            })],
        ),
        (
            b"stats cachedump 1 100\r\n",
            vec![req(Request::Stats {
                group: Some(b("cachedump")),
                args: vec![b("1"), b("100")],
            })],
        ),
        (b"quit\r\n", vec![req(Request::Quit)]),
        (b"mn\r\n", vec![req(Request::MetaNoop)]),
    ];
    for (input, expected) in table {
        assert_eq!(
            events(input),
            expected,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn meta_requests_parse_byte_exact() {
    let table: Vec<(&[u8], Vec<Event>)> = vec![
        (
            b"mg k\r\n",
            vec![req(Request::MetaGet {
                key: b("k"),
                flags: MetaFlags::default(),
            })],
        ),
        (
            b"mg k v c  T30 Oabc k q\r\n",
            vec![req(Request::MetaGet {
                key: b("k"),
                flags: mflags("v c T30 Oabc k q", b"k"),
            })],
        ),
        (
            b"mg Zm9vIGJhcg== b v k\r\n",
            vec![req(Request::MetaGet {
                key: b("foo bar"),
                flags: mflags("b v k", b"Zm9vIGJhcg=="),
            })],
        ),
        (
            b"ms k 5 T60 F3 MA\r\nhello\r\n",
            vec![req(Request::MetaSet {
                key: b("k"),
                data: b("hello"),
                flags: mflags("T60 F3 MA", b"k"),
            })],
        ),
        (
            b"ms k 0\r\n\r\n",
            vec![req(Request::MetaSet {
                key: b("k"),
                data: b(""),
                flags: MetaFlags::default(),
            })],
        ),
        (
            b"ms AAE= 1 b\r\nx\r\n",
            vec![req(Request::MetaSet {
                key: Bytes::from_static(b"\x00\x01"),
                data: b("x"),
                flags: mflags("b", b"AAE="),
            })],
        ),
        (
            b"md k q C5 I T30\r\n",
            vec![req(Request::MetaDelete {
                key: b("k"),
                flags: mflags("q C5 I T30", b"k"),
            })],
        ),
        (
            b"ma k MD D5 N0 J10 v\r\n",
            vec![req(Request::MetaArithmetic {
                key: b("k"),
                flags: mflags("MD D5 N0 J10 v", b"k"),
            })],
        ),
        (b"mn extra\r\n", vec![req(Request::MetaNoop)]),
    ];
    for (input, expected) in table {
        assert_eq!(
            events(input),
            expected,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn bad_requests_are_answered_in_memcacheds_words_and_parsing_goes_on() {
    let table: Vec<(&[u8], Vec<Event>)> = vec![
        // Unknown commands, blank lines and wrong argument counts: plain ERROR.
        (
            b"foo\r\nget k\r\n",
            vec![err(ParseError::UnknownCommand), req(get(&["k"]))],
        ),
        (b"GET k\r\n", vec![err(ParseError::UnknownCommand)]),
        (b"\r\n", vec![err(ParseError::UnknownCommand)]),
        (b"\n", vec![err(ParseError::UnknownCommand)]),
        (b"   \r\n", vec![err(ParseError::UnknownCommand)]),
        (b"me k\r\n", vec![err(ParseError::UnknownCommand)]),
        (b"get\r\n", vec![err(ParseError::WrongArgumentCount)]),
        (b"gat\r\n", vec![err(ParseError::WrongArgumentCount)]),
        (b"set k 0 0\r\n", vec![err(ParseError::WrongArgumentCount)]),
        (
            b"set k 0 0 1 noreply x\r\nx\r\n",
            vec![
                err(ParseError::WrongArgumentCount),
                err(ParseError::UnknownCommand),
            ],
        ),
        (
            b"cas k 0 0 1\r\n",
            vec![err(ParseError::WrongArgumentCount)],
        ),
        (b"delete\r\n", vec![err(ParseError::WrongArgumentCount)]),
        (
            b"delete k 0 noreply x\r\n",
            vec![err(ParseError::WrongArgumentCount)],
        ),
        (b"incr k\r\n", vec![err(ParseError::WrongArgumentCount)]),
        (b"touch k\r\n", vec![err(ParseError::WrongArgumentCount)]),
        (
            b"flush_all 1 2 3\r\n",
            vec![err(ParseError::WrongArgumentCount)],
        ),
        (b"verbosity\r\n", vec![err(ParseError::WrongArgumentCount)]),
        (b"mg\r\n", vec![err(ParseError::WrongArgumentCount)]),
        (b"ms\r\n", vec![err(ParseError::WrongArgumentCount)]),
        // Bad numbers.
        (b"set k x 0 1\r\nx\r\n", vec![err(BAD)]),
        (b"set k -1 0 1\r\nx\r\n", vec![err(BAD)]),
        (b"set k 4294967296 0 1\r\nx\r\n", vec![err(BAD)]),
        (b"set k 0 2147483648 1\r\nx\r\n", vec![err(BAD)]),
        (b"cas k 0 0 1 -1\r\nx\r\n", vec![err(BAD)]),
        (b"cas k 0 0 1 x noreply\r\nx\r\n", vec![err(BAD_NOREPLY)]),
        (
            b"incr k -1\r\n",
            vec![err(ParseError::InvalidDelta { noreply: false })],
        ),
        (
            b"incr k 18446744073709551616\r\n",
            vec![err(ParseError::InvalidDelta { noreply: false })],
        ),
        (
            b"decr k x noreply\r\n",
            vec![err(ParseError::InvalidDelta { noreply: true })],
        ),
        (
            b"touch k x\r\n",
            vec![err(ParseError::InvalidExptime { noreply: false })],
        ),
        (
            b"gat x k\r\n",
            vec![err(ParseError::InvalidExptime { noreply: false })],
        ),
        (
            b"flush_all x\r\n",
            vec![err(ParseError::InvalidExptime { noreply: false })],
        ),
        (
            b"flush_all x noreply\r\n",
            vec![err(ParseError::InvalidExptime { noreply: true })],
        ),
        (b"verbosity x\r\n", vec![err(BAD)]),
        (
            b"delete k 1\r\n",
            vec![err(ParseError::BadDeleteArguments { noreply: false })],
        ),
        (
            b"delete k x noreply\r\n",
            vec![err(ParseError::BadDeleteArguments { noreply: true })],
        ),
        // Bad keys: too long, control characters (the line splits at spaces only).
        (b"get a\x01b\r\n", vec![err(BAD)]),
        (b"get a\tb\r\n", vec![err(BAD)]),
        (b"get k\x7f\r\n", vec![err(BAD)]),
        (b"get k\r\r\n", vec![err(BAD)]),
        (b"delete a\x00b noreply\r\n", vec![err(BAD_NOREPLY)]),
        (b"incr \x1b 1\r\n", vec![err(BAD)]),
        (b"touch \x1b 1 noreply\r\n", vec![err(BAD_NOREPLY)]),
        (b"mg a\x01\r\n", vec![err(BAD)]),
        (b"md a\x01\r\n", vec![err(BAD)]),
        // Data blocks must end in "\r\n"; what follows the declared length is read as commands.
        (
            b"set k 0 0 3\r\nabcde\r\n",
            vec![
                err(ParseError::BadDataChunk { noreply: false }),
                err(ParseError::UnknownCommand),
            ],
        ),
        (
            b"set k 0 0 3 noreply\r\nabc\n\nget k\r\n",
            vec![
                err(ParseError::BadDataChunk { noreply: true }),
                req(get(&["k"])),
            ],
        ),
        (
            b"ms k 1 q\r\nxyz\r\n",
            vec![
                err(ParseError::BadDataChunk { noreply: false }),
                err(ParseError::UnknownCommand),
            ],
        ),
        // Meta flag errors.
        (b"mg k v v\r\n", vec![err(ParseError::DuplicateFlag)]),
        (b"mg k 5\r\n", vec![err(ParseError::InvalidFlag)]),
        (b"mg k Tx\r\n", vec![err(ParseError::BadFlagToken)]),
        (b"mg k! b\r\n", vec![err(ParseError::KeyDecode)]),
        (
            b"mg k O123456789012345678901234567890123\r\n",
            vec![err(ParseError::OpaqueTooLong)],
        ),
        (
            b"mg k a c d e f g h i j k l m n o p q r s\r\n",
            vec![err(ParseError::TooManyFlags)],
        ),
        (
            b"md k v v\r\n",
            vec![err(ParseError::InvalidOrDuplicateFlag)],
        ),
        (
            b"ma k Dx\r\n",
            vec![err(ParseError::InvalidOrDuplicateFlag)],
        ),
        (b"ma k MX\r\n", vec![err(ParseError::InvalidArithmeticMode)]),
        (b"ms k\r\n", vec![err(BAD)]),
        (
            b"ms k x\r\nx\r\n",
            vec![err(BAD), err(ParseError::UnknownCommand)],
        ),
        (b"ms k -1 T1\r\n", vec![err(BAD)]),
    ];
    for (input, expected) in table {
        assert_eq!(
            events(input),
            expected,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn the_largest_meta_lines_memcached_accepts_parse() {
    // 19 tokens: mg, the key and 17 flags; ms has its length as well, so 16 flags.
    let mg = b"mg k a c d e f g h i j k l m n o p q r s\r\n";
    assert_eq!(events(mg), vec![err(ParseError::TooManyFlags)]);
    let mg = b"mg k a c d e f g h i j k l m n o p q r\r\n";
    assert!(matches!(
        events(mg)[..],
        [Event::Request(Request::MetaGet { .. })]
    ));
    // The flag count is checked before the length is read: nothing to swallow.
    let ms = b"ms k 1 a c d e f g h i j k l m n o p q r\r\nx\r\n";
    assert_eq!(
        events(ms),
        vec![
            err(ParseError::TooManyFlags),
            err(ParseError::UnknownCommand)
        ]
    );
    let ms = b"ms k 1 a c d e f g h i j k l m n o p q\r\nx\r\n";
    assert!(matches!(
        events(ms)[..],
        [Event::Request(Request::MetaSet { .. })]
    ));
}

#[test]
fn refused_storage_lines_swallow_their_data_when_the_length_is_readable() {
    // The data block holds a command: it must never run.
    let table: Vec<(&[u8], Vec<Event>)> = vec![
        (
            b"set \x01 0 0 11\r\nflush_all\r\n\r\nget k\r\n",
            vec![err(BAD), req(get(&["k"]))],
        ),
        (
            b"set k x 0 11 noreply\r\nflush_all\r\n\r\nget k\r\n",
            vec![err(BAD_NOREPLY), req(get(&["k"]))],
        ),
        (
            b"cas k 0 0 11 x\r\nflush_all\r\n\r\nget k\r\n",
            vec![err(BAD), req(get(&["k"]))],
        ),
        (
            b"ms k 11 Tx\r\nflush_all\r\n\r\nget k\r\n",
            vec![err(ParseError::BadFlagToken), req(get(&["k"]))],
        ),
        (
            b"ms k 11 MX\r\nflush_all\r\n\r\nget k\r\n",
            vec![err(ParseError::InvalidSetMode), req(get(&["k"]))],
        ),
        (
            b"ms \x01 11\r\nflush_all\r\n\r\nget k\r\n",
            vec![err(BAD), req(get(&["k"]))],
        ),
        // An unreadable length can't be swallowed: memcached reads the block as commands.
        (
            b"set k 0 0 x\r\nflush_all\r\n",
            vec![
                err(BAD),
                req(Request::FlushAll {
                    delay_secs: 0,
                    noreply: false,
                }),
            ],
        ),
    ];
    for (input, expected) in table {
        assert_eq!(
            events(input),
            expected,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn noreply_silences_errors_found_after_it_was_read() {
    let limits = Limits {
        max_value_bytes: 4,
        ..Limits::default()
    };
    let input = b"set k 0 0 5 noreply\r\nhello\r\n\
                  set k x 0 1 noreply\r\nx\r\n\
                  set k 0 0 1 noreply x\r\n\
                  incr k x noreply\r\n\
                  set k 0 0 5\r\nhello\r\n\
                  mg k v v q\r\n\
                  get k\r\n";
    assert_eq!(
        replies(input, limits),
        vec![
            "",
            "",
            "ERROR\r\n",
            "",
            "SERVER_ERROR object too large for cache\r\n",
            "CLIENT_ERROR duplicate flag\r\n",
            "get",
        ]
    );
}

#[test]
fn truncated_requests_wait_for_more_bytes_at_every_cut() {
    let wholes: &[&[u8]] = &[
        b"set key 1 2 5 noreply\r\nvalue\r\n",
        b"cas key 1 2 0 99\r\n\r\n",
        b"get a bb ccc\r\n",
        b"gats 5 a\n",
        b"incr counter 10\r\n",
        b"delete key 0 noreply\r\n",
        b"ms Zm9v 3 b T10 Oxyz\r\nabc\r\n",
        b"mg key v c k Oop\r\n",
        b"md key q\r\n",
        b"mn\r\n",
    ];
    for whole in wholes {
        let expected = events(whole);
        assert!(
            matches!(expected[..], [Event::Request(_)]),
            "{:?}",
            String::from_utf8_lossy(whole)
        );
        for cut in 0..whole.len() {
            let mut parser = Parser::new(Limits::default());
            let mut buf = BytesMut::from(&whole[..cut]);
            assert_eq!(parser.parse(&mut buf), Ok(None), "cut at {cut}");
            assert_eq!(
                buf.len(),
                cut,
                "nothing is consumed before the request is whole"
            );
            buf.extend_from_slice(&whole[cut..]);
            let request = parser.parse(&mut buf).expect("valid").expect("whole");
            assert_eq!(vec![Event::Request(request)], expected, "cut at {cut}");
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn pipelined_mixed_requests_come_out_in_order_and_leave_the_tail() {
    let input: &[u8] = b"set a 0 0 1\r\n1\r\nget a b\nbogus\r\nmg a v\r\n\
                         incr a 1 noreply\r\nms b 2 T5\r\nhi\r\nmn\r\nquit\r\nset c 0 0 10\r\nabc";
    let mut parser = Parser::new(Limits::default());
    let mut buf = BytesMut::from(input);
    let mut got = Vec::new();
    loop {
        match parser.parse(&mut buf) {
            Ok(Some(request)) => got.push(request.command_name().to_owned()),
            Ok(None) => break,
            Err(error) => got.push(String::from_utf8_lossy(error.wire()).into_owned()),
        }
    }
    assert_eq!(
        got,
        ["set", "get", "ERROR\r\n", "mg", "incr", "ms", "mn", "quit"]
    );
    assert_eq!(&buf[..], b"set c 0 0 10\r\nabc");
}

#[test]
fn keys_and_data_are_slices_of_the_read_buffer() {
    let mut buf = BytesMut::from(&b"set key 0 0 5\r\nvalue\r\n"[..]);
    let start = buf.as_ptr() as usize;
    let Ok(Some(Request::Store { key, data, .. })) = Parser::new(Limits::default()).parse(&mut buf)
    else {
        panic!("expected a store");
    };
    assert_eq!(key.as_ptr() as usize, start + 4);
    assert_eq!(data.as_ptr() as usize, start + 15);
}

#[test]
fn a_four_gigabyte_length_is_refused_without_reserving_anything() {
    let mut parser = Parser::new(Limits::default());
    let mut buf = BytesMut::from(&b"set k 0 0 4294967296\r\nget k\r\n"[..]);
    assert_eq!(parser.parse(&mut buf), Err(BAD));
    assert!(buf.capacity() < 1024);
    assert_eq!(parser.parse(&mut buf), Ok(Some(get(&["k"]))));
    // Within 32 bits but far above the limit: refused, and the block will be swallowed.
    let mut buf = BytesMut::from(&b"set k 0 0 2147483645\r\n"[..]);
    assert_eq!(parser.parse(&mut buf), Err(too_large(false, Some("k"))));
    assert!(buf.capacity() < 1024);
    let mut buf = BytesMut::from(&b"set k 0 0 2147483646\r\n"[..]);
    assert_eq!(Parser::new(Limits::default()).parse(&mut buf), Err(BAD));
}

#[test]
fn a_negative_length_is_a_bad_command_line() {
    assert_eq!(
        events(b"set k 0 0 -1\r\nget k\r\n"),
        vec![err(BAD), req(get(&["k"]))]
    );
    assert_eq!(
        replies(b"set k 0 0 -1\r\n", Limits::default()),
        vec!["CLIENT_ERROR bad command line format\r\n"]
    );
}

#[test]
fn a_ten_megabyte_line_is_fatal_and_only_the_limit_is_scanned() {
    let limits = Limits::default();
    let mut parser = Parser::new(limits);
    let mut buf = BytesMut::new();
    let chunk = vec![b'a'; 4096];
    let mut fed = 0;
    let error = loop {
        buf.extend_from_slice(&chunk);
        fed += chunk.len();
        match parser.parse(&mut buf) {
            Ok(None) => assert!(fed < 10 * 1024 * 1024, "never refused"),
            Ok(Some(request)) => panic!("parsed {request:?}"),
            Err(error) => break error,
        }
    };
    assert_eq!(error, ParseError::LineTooLong);
    assert!(error.is_fatal());
    assert_eq!(error.wire(), b"CLIENT_ERROR line too long\r\n");
    assert!(fed <= limits.max_line_bytes + 2 + chunk.len());
    // The parser stays closed.
    buf.extend_from_slice(b"\r\nget k\r\n");
    assert_eq!(parser.parse(&mut buf), Err(ParseError::LineTooLong));
}

#[test]
fn the_line_limit_is_exact() {
    let limits = Limits {
        max_line_bytes: 10,
        ..Limits::default()
    };
    let ok = |input: &[u8]| parse_chunks(&[input], limits);
    assert_eq!(ok(b"get 123456\r\n"), vec![req(get(&["123456"]))]);
    assert_eq!(ok(b"get 123456\n"), vec![req(get(&["123456"]))]);
    assert_eq!(ok(b"get 1234567\r\n"), vec![err(ParseError::LineTooLong)]);
    assert_eq!(ok(b"get 1234567\n"), vec![err(ParseError::LineTooLong)]);
    assert_eq!(ok(b"get 123456\r"), vec![]);
    assert_eq!(ok(b"get 1234567\r"), vec![err(ParseError::LineTooLong)]);
}

#[test]
fn a_300_byte_key_is_refused_everywhere() {
    let key = "k".repeat(300);
    let ok_key = "k".repeat(250);
    for template in [
        "get {}\r\n",
        "gets a {}\r\n",
        "delete {}\r\n",
        "incr {} 1\r\n",
        "touch {} 1\r\n",
        "mg {} v\r\n",
        "md {}\r\n",
        "ma {}\r\n",
        "set {} 0 0 1\r\nx\r\n",
        "ms {} 1\r\nx\r\n",
    ] {
        let long = template.replace("{}", &key);
        let events_long = events(long.as_bytes());
        assert_eq!(events_long.first(), Some(&err(BAD)), "{template}");
        let fine = template.replace("{}", &ok_key);
        assert!(
            matches!(events(fine.as_bytes())[..], [Event::Request(_)]),
            "{template}"
        );
    }
    // memcached checks an ms key's length before its data length: nothing to swallow.
    let ms = format!("ms {key} 1\r\nx\r\n");
    assert_eq!(
        events(ms.as_bytes()),
        vec![err(BAD), err(ParseError::UnknownCommand)]
    );
    // A classic storage line's length is read first, so its block is swallowed.
    let set = format!("set {key} 0 0 1\r\nx\r\n");
    assert_eq!(events(set.as_bytes()), vec![err(BAD)]);
}

#[test]
fn too_many_keys_in_one_get_are_refused() {
    let limits = Limits {
        max_keys_per_get: 3,
        ..Limits::default()
    };
    assert_eq!(
        parse_chunks(&[b"get a b c\r\n"], limits),
        vec![req(get(&["a", "b", "c"]))]
    );
    assert_eq!(
        parse_chunks(&[b"get a b c d\r\nget a\r\n"], limits),
        vec![err(BAD), req(get(&["a"]))]
    );
}

#[test]
fn an_oversized_value_is_swallowed_as_it_arrives_and_the_next_command_parses() {
    let limits = Limits {
        max_value_bytes: 1024,
        ..Limits::default()
    };
    let mut parser = Parser::new(limits);
    let mut buf = BytesMut::from(&b"set big 0 0 1000000 noreply\r\n"[..]);
    assert_eq!(parser.parse(&mut buf), Err(too_large(true, Some("big"))));
    assert!(buf.is_empty());
    let chunk = vec![b'x'; 4096];
    let mut left = 1_000_000;
    while left > 0 {
        let n = left.min(chunk.len());
        buf.extend_from_slice(&chunk[..n]);
        left -= n;
        assert_eq!(parser.parse(&mut buf), Ok(None));
        assert!(buf.is_empty(), "swallowed bytes are not kept");
        assert!(buf.capacity() <= 2 * chunk.len(), "nor buffered");
    }
    buf.extend_from_slice(b"\r");
    assert_eq!(parser.parse(&mut buf), Ok(None));
    buf.extend_from_slice(b"\nget big\r\n");
    assert_eq!(parser.parse(&mut buf), Ok(Some(get(&["big"]))));

    // Other modes don't invalidate; ms always does (memcached drops the old value).
    let table: Vec<(&[u8], ParseError)> = vec![
        (b"add k 0 0 2000\r\n", too_large(false, None)),
        (b"cas k 0 0 2000 1\r\n", too_large(false, None)),
        (b"ms k 2000 MA q\r\n", too_large(false, Some("k"))),
        (b"ms Zm9v 2000 b\r\n", too_large(false, Some("foo"))),
    ];
    for (line, error) in table {
        let mut input = line.to_vec();
        input.extend(std::iter::repeat_n(b'z', 2000));
        input.extend_from_slice(b"\r\nmn\r\n");
        assert_eq!(
            parse_chunks(&[&input], limits),
            vec![err(error), req(Request::MetaNoop)],
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn a_value_of_exactly_the_limit_is_accepted() {
    let limits = Limits {
        max_value_bytes: 3,
        ..Limits::default()
    };
    assert_eq!(
        parse_chunks(&[b"set k 0 0 3\r\nabc\r\nset k 0 0 4\r\nabcd\r\n"], limits),
        vec![req(set("k", "abc")), err(too_large(false, Some("k")))]
    );
}

#[test]
fn a_declared_length_reserves_nothing_issue_13() {
    let mut parser = Parser::new(Limits::default());
    let mut buf = BytesMut::from(&b"set k 0 0 1000000\r\n"[..]);
    let before = buf.capacity();
    assert_eq!(parser.parse(&mut buf), Ok(None));
    assert_eq!(buf.capacity(), before);
}

#[test]
fn limits_can_be_read_and_replaced() {
    let mut parser = Parser::new(Limits::default());
    assert_eq!(parser.limits(), Limits::default());
    let small = Limits {
        max_key_bytes: 1,
        ..Limits::default()
    };
    parser.set_limits(small);
    assert_eq!(parser.limits(), small);
    let mut buf = BytesMut::from(&b"get ab\r\n"[..]);
    assert_eq!(parser.parse(&mut buf), Err(BAD));
}

#[test]
fn an_http_request_closes_without_a_reply_issue_13() {
    for line in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"PUT /x HTTP/1.1\r\nHost: a\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\n",
    ] {
        let mut parser = Parser::new(Limits::default());
        let mut buf = BytesMut::from(line);
        let error = parser.parse(&mut buf).expect_err("an HTTP request line");
        assert_eq!(error, ParseError::HttpRequest);
        assert!(error.is_fatal() && error.noreply());
        assert_eq!(parser.parse(&mut buf), Err(ParseError::HttpRequest));
    }
    // A known command keeps its meaning whatever its keys look like, as in memcached.
    let mut parser = Parser::new(Limits::default());
    let mut buf = BytesMut::from(&b"get / HTTP/1.0\r\n"[..]);
    assert!(matches!(
        parser.parse(&mut buf),
        Ok(Some(Request::Get { .. }))
    ));
}
