//! The memcached text protocol over a real socket: byte-exact replies as memcached gives them,
//! meta commands with stampede protection, and one keyspace shared with RESP.

mod common;

use common::{cmd, start, start_with, Raw};
use tokio::net::TcpStream;

async fn mc(server: &server::RunningServer) -> Raw {
    let addr = server.memcache_addr.expect("memcached listener enabled");
    Raw {
        stream: TcpStream::connect(addr).await.expect("connect"),
    }
}

async fn script(raw: &mut Raw, steps: &[(&str, &str)]) {
    for (request, reply) in steps {
        raw.roundtrip(request.as_bytes(), reply.as_bytes()).await;
    }
}

#[tokio::test]
async fn classic_commands_reply_like_memcached() {
    let server = start().await;
    let mut c = mc(&server).await;
    script(
        &mut c,
        &[
            ("set k 5 0 3\r\nabc\r\n", "STORED\r\n"),
            ("get k\r\n", "VALUE k 5 3\r\nabc\r\nEND\r\n"),
            ("get nope\r\n", "END\r\n"),
            (
                "get k nope k\r\n",
                "VALUE k 5 3\r\nabc\r\nVALUE k 5 3\r\nabc\r\nEND\r\n",
            ),
            ("add k 0 0 1\r\nx\r\n", "NOT_STORED\r\n"),
            ("add k2 0 0 1\r\nx\r\n", "STORED\r\n"),
            ("replace nope 0 0 1\r\nx\r\n", "NOT_STORED\r\n"),
            ("replace k2 7 0 1\r\ny\r\n", "STORED\r\n"),
            ("append k 9 0 2\r\nde\r\n", "STORED\r\n"),
            ("prepend k 9 0 2\r\n__\r\n", "STORED\r\n"),
            ("get k\r\n", "VALUE k 5 7\r\n__abcde\r\nEND\r\n"),
            ("append nope 0 0 1\r\nx\r\n", "NOT_STORED\r\n"),
            ("delete k2\r\n", "DELETED\r\n"),
            ("delete k2\r\n", "NOT_FOUND\r\n"),
            ("set n 0 0 2\r\n10\r\n", "STORED\r\n"),
            ("incr n 5\r\n", "15\r\n"),
            ("decr n 100\r\n", "0\r\n"),
            ("set max 0 0 20\r\n18446744073709551615\r\n", "STORED\r\n"),
            ("incr max 1\r\n", "0\r\n"),
            ("incr nope 1\r\n", "NOT_FOUND\r\n"),
            (
                "incr k 1\r\n",
                "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
            ),
            (
                "incr n abc\r\n",
                "CLIENT_ERROR invalid numeric delta argument\r\n",
            ),
            ("touch n 100\r\n", "TOUCHED\r\n"),
            ("touch nope 100\r\n", "NOT_FOUND\r\n"),
            (
                "set q 0 0 1 noreply\r\nq\r\nget q\r\n",
                "VALUE q 0 1\r\nq\r\nEND\r\n",
            ),
            ("bogus\r\n", "ERROR\r\n"),
            ("verbosity 1\r\n", "OK\r\n"),
            ("version\r\n", "VERSION 1.6.21\r\n"),
            ("flush_all\r\n", "OK\r\n"),
            ("get k\r\n", "END\r\n"),
        ],
    )
    .await;
    c.send(b"quit\r\n").await;
    assert!(c.is_closed().await);
}

#[tokio::test]
async fn cas_detects_concurrent_changes() {
    let server = start().await;
    let mut c = mc(&server).await;
    c.roundtrip(b"set k 0 0 1\r\na\r\n", b"STORED\r\n").await;
    c.send(b"gets k\r\n").await;
    let reply = String::from_utf8(c.read_exact_len(12).await).expect("utf8");
    assert!(reply.starts_with("VALUE k 0 1 "), "{reply}");
    let mut rest = Vec::new();
    while !rest.ends_with(b"END\r\n") {
        rest.extend(c.read_exact_len(1).await);
    }
    let line = format!("{reply}{}", String::from_utf8_lossy(&rest));
    let cas: u64 = line
        .lines()
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("cas");
    c.roundtrip(
        format!("cas k 0 0 1 {}\r\nb\r\n", cas + 1).as_bytes(),
        b"EXISTS\r\n",
    )
    .await;
    c.roundtrip(
        format!("cas k 0 0 1 {cas}\r\nb\r\n").as_bytes(),
        b"STORED\r\n",
    )
    .await;
    c.roundtrip(
        format!("cas k 0 0 1 {cas}\r\nc\r\n").as_bytes(),
        b"EXISTS\r\n",
    )
    .await;
    c.roundtrip(b"cas nope 0 0 1 1\r\nc\r\n", b"NOT_FOUND\r\n")
        .await;
}

#[tokio::test]
async fn exptime_rules_follow_memcached() {
    let server = start().await;
    let mut c = mc(&server).await;
    let absolute_past = 1_000_000_000; // 2001: beyond 30 days, so absolute, and past
    script(
        &mut c,
        &[
            ("set neg 0 -1 1\r\nx\r\n", "STORED\r\n"),
            ("get neg\r\n", "END\r\n"),
            (
                &format!("set old 0 {absolute_past} 1\r\nx\r\n"),
                "STORED\r\n",
            ),
            ("get old\r\n", "END\r\n"),
            ("set rel 0 100 1\r\nx\r\n", "STORED\r\n"),
            ("mg rel t v\r\n", "VA 1 t100\r\nx\r\n"),
            ("set abs 0 2000000000 1\r\nx\r\n", "STORED\r\n"),
            ("mg abs v\r\n", "VA 1\r\nx\r\n"),
            ("gat 0 rel\r\n", "VALUE rel 0 1\r\nx\r\nEND\r\n"),
            ("mg rel t\r\n", "HD t-1\r\n"),
            ("gat -1 rel\r\n", "VALUE rel 0 1\r\nx\r\nEND\r\n"),
            ("get rel\r\n", "END\r\n"),
        ],
    )
    .await;
}

#[tokio::test]
async fn bad_input_gets_memcached_errors_and_the_stream_stays_in_sync() {
    let server = start_with(|a| a.max_value_bytes = Some("1kb".into())).await;
    let mut c = mc(&server).await;
    let long_key = "k".repeat(251);
    let big = "x".repeat(2000);
    script(
        &mut c,
        &[
            (
                &format!("get {long_key}\r\n"),
                "CLIENT_ERROR bad command line format\r\n",
            ),
            (
                "set k 0 0 -1\r\n",
                "CLIENT_ERROR bad command line format\r\n",
            ),
            ("set old 0 0 1\r\no\r\n", "STORED\r\n"),
            (
                &format!("set old 0 0 2000\r\n{big}\r\nget old\r\n"),
                "SERVER_ERROR object too large for cache\r\nEND\r\n",
            ),
            (
                &format!("set big 0 0 2000\r\n{big}\r\nget big\r\n"),
                "SERVER_ERROR object too large for cache\r\nEND\r\n",
            ),
            (
                "set k 0 0 3\r\nabcde\r\n",
                "CLIENT_ERROR bad data chunk\r\nERROR\r\n",
            ),
            ("set k 0 0 1\r\nx\r\n", "STORED\r\n"),
        ],
    )
    .await;
    // A 2 GB declared value is swallowed as it streams by, not buffered.
    c.roundtrip(
        b"set huge 0 0 2147483000\r\n",
        b"SERVER_ERROR object too large for cache\r\n",
    )
    .await;
    let before = command::node::rss_bytes();
    c.send(&vec![b'z'; 8 << 20]).await;
    assert!(command::node::rss_bytes() < before + (32 << 20));
    // A runaway line closes the connection, and the server carries on.
    let mut runaway = mc(&server).await;
    runaway.send(&vec![b'a'; 70 * 1024]).await;
    assert_eq!(
        runaway.read_exact_len(27).await,
        b"CLIENT_ERROR line too long\r\n"[..27].to_vec()
    );
    assert!(runaway.is_closed().await);
    let mut fresh = mc(&server).await;
    fresh
        .roundtrip(b"get k\r\n", b"VALUE k 0 1\r\nx\r\nEND\r\n")
        .await;
}

#[tokio::test]
async fn meta_commands_and_stampede_protection() {
    let server = start().await;
    let mut c = mc(&server).await;
    script(
        &mut c,
        &[
            ("ms k 2 T0 F3\r\nhi\r\n", "HD\r\n"),
            ("mg k v f s k Oab\r\n", "VA 2 f3 s2 kk Oab\r\nhi\r\n"),
            ("mg nope v\r\n", "EN\r\n"),
            ("mg nope v q\r\nmn\r\n", "MN\r\n"),
            ("ms k 1 ME\r\nx\r\n", "NS\r\n"),
            ("ms new 1 MR\r\nx\r\n", "NS\r\n"),
            ("ms k 2 MA\r\n!!\r\n", "HD\r\n"),
            ("mg k v\r\n", "VA 4\r\nhi!!\r\n"),
            ("ma cnt\r\n", "NF\r\n"),
            ("ma cnt N0 J10 v\r\n", "VA 2\r\n10\r\n"),
            ("ma cnt D5 v\r\n", "VA 2\r\n15\r\n"),
            ("ma cnt MD D20 v\r\n", "VA 1\r\n0\r\n"),
            ("md k q\r\nmd k\r\n", "NF\r\n"),
            // Invalidate: the value stays, marked stale; the first reader wins the recompute.
            ("ms hot 3\r\nold\r\n", "HD\r\n"),
            ("md hot I T30\r\n", "HD\r\n"),
            ("mg hot v\r\n", "VA 3 X W\r\nold\r\n"),
            ("mg hot v\r\n", "VA 3 Z X\r\nold\r\n"),
            ("ms hot 3\r\nnew\r\n", "HD\r\n"),
            ("mg hot v\r\n", "VA 3\r\nnew\r\n"),
            // Vivify on miss: one client wins, the others see Z until it is filled.
            ("mg cold v N30\r\n", "VA 0 W\r\n\r\n"),
            ("mg cold v N30\r\n", "VA 0 Z\r\n\r\n"),
            // Recache: under the TTL threshold the first reader wins.
            ("ms warm 1 T10\r\nw\r\n", "HD\r\n"),
            ("mg warm v R30\r\n", "VA 1 W\r\nw\r\n"),
            ("mg warm v R30\r\n", "VA 1 Z\r\nw\r\n"),
            ("mg warm v R5\r\n", "VA 1 Z\r\nw\r\n"),
        ],
    )
    .await;
}

#[tokio::test]
async fn meta_cas_compare_and_return() {
    let server = start().await;
    let mut c = mc(&server).await;
    c.send(b"ms k 1 c\r\na\r\n").await;
    let line = String::from_utf8(c.read_exact_len(4).await).expect("utf8");
    assert_eq!(line, "HD c");
    let mut rest = Vec::new();
    while !rest.ends_with(b"\r\n") {
        rest.extend(c.read_exact_len(1).await);
    }
    let cas: u64 = String::from_utf8_lossy(&rest).trim().parse().expect("cas");
    c.roundtrip(
        format!("ms k 1 C{}\r\nb\r\n", cas + 1).as_bytes(),
        b"EX\r\n",
    )
    .await;
    c.roundtrip(format!("ms k 1 C{cas}\r\nb\r\n").as_bytes(), b"HD\r\n")
        .await;
    c.roundtrip(format!("md k C{cas}\r\n").as_bytes(), b"EX\r\n")
        .await;
    c.roundtrip(b"mg k v\r\n", b"VA 1\r\nb\r\n").await;
}

#[tokio::test]
async fn one_keyspace_for_both_protocols() {
    let server = start().await;
    let mut mcc = mc(&server).await;
    let mut redis = Raw::connect(&server).await;
    mcc.roundtrip(b"set shared 42 0 5\r\nhello\r\n", b"STORED\r\n")
        .await;
    redis
        .roundtrip(&cmd(&[b"GET", b"shared"]), b"$5\r\nhello\r\n")
        .await;
    redis
        .roundtrip(&cmd(&[b"APPEND", b"shared", b"!"]), b":6\r\n")
        .await;
    // RESP modifications keep the memcached flags.
    mcc.roundtrip(b"get shared\r\n", b"VALUE shared 42 6\r\nhello!\r\nEND\r\n")
        .await;
    redis
        .roundtrip(
            &cmd(&[b"SET", b"fromredis", b"x", b"EX", b"100"]),
            b"+OK\r\n",
        )
        .await;
    mcc.roundtrip(b"mg fromredis v f t\r\n", b"VA 1 f0 t100\r\nx\r\n")
        .await;
}

#[tokio::test]
async fn stats_report_the_counters_people_graph() {
    let server = start().await;
    let mut c = mc(&server).await;
    c.roundtrip(b"set k 0 0 1\r\nx\r\n", b"STORED\r\n").await;
    c.roundtrip(b"get k nope\r\n", b"VALUE k 0 1\r\nx\r\nEND\r\n")
        .await;
    c.send(b"stats\r\n").await;
    let mut text = Vec::new();
    while !text.ends_with(b"END\r\n") {
        let chunk = c.read_exact_len(1).await;
        assert!(!chunk.is_empty());
        text.extend(chunk);
    }
    let text = String::from_utf8(text).expect("utf8");
    for needle in [
        "STAT cmd_get 2\r\n",
        "STAT get_hits 1\r\n",
        "STAT get_misses 1\r\n",
        "STAT cmd_set 1\r\n",
        "STAT curr_items 1\r\n",
        "STAT version 1.6.21\r\n",
        "STAT evictions 0\r\n",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
}
