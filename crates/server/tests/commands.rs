//! Command semantics over a real socket: byte-exact replies for Redis 7 behaviour, driven by
//! raw bytes and by the `redis` crate.

mod common;

use common::{cmd, start, Raw};
use redis::AsyncCommands;

/// (request words, exact reply) in order, on one connection.
async fn script(raw: &mut Raw, steps: &[(&str, &str)]) {
    for (request, reply) in steps {
        let words: Vec<&[u8]> = request.split(' ').map(str::as_bytes).collect();
        raw.roundtrip(&cmd(&words), reply.as_bytes()).await;
    }
}

#[tokio::test]
async fn string_commands_reply_like_redis() {
    let server = start().await;
    let mut raw = Raw::connect(&server).await;
    script(
        &mut raw,
        &[
            ("SET k v", "+OK\r\n"),
            ("GET k", "$1\r\nv\r\n"),
            ("GET missing", "$-1\r\n"),
            ("SET k w NX", "$-1\r\n"),
            ("SET k w XX GET", "$1\r\nv\r\n"),
            ("SET new x XX", "$-1\r\n"),
            ("SET k v NX XX", "-ERR syntax error\r\n"),
            (
                "SET k v EX 0",
                "-ERR invalid expire time in 'set' command\r\n",
            ),
            (
                "SET k v EX abc",
                "-ERR value is not an integer or out of range\r\n",
            ),
            (
                "SET k v EX 9223372036854775807",
                "-ERR invalid expire time in 'set' command\r\n",
            ),
            ("SET k v EX 10 PX 10", "-ERR syntax error\r\n"),
            ("SET k v KEEPTTL EX 10", "-ERR syntax error\r\n"),
            ("SET k v EX 10 EX 100", "+OK\r\n"),
            ("TTL k", ":100\r\n"),
            ("SET k v2 KEEPTTL", "+OK\r\n"),
            ("TTL k", ":100\r\n"),
            ("SET k v3", "+OK\r\n"),
            ("TTL k", ":-1\r\n"),
            ("SET gone v PXAT 1", "+OK\r\n"),
            ("EXISTS gone", ":0\r\n"),
            ("SETNX k x", ":0\r\n"),
            ("SETNX k2 x", ":1\r\n"),
            (
                "SETEX k3 0 v",
                "-ERR invalid expire time in 'setex' command\r\n",
            ),
            (
                "PSETEX k3 -5 v",
                "-ERR invalid expire time in 'psetex' command\r\n",
            ),
            ("SETEX k3 10 v", "+OK\r\n"),
            ("GETSET k3 w", "$1\r\nv\r\n"),
            ("TTL k3", ":-1\r\n"),
            ("GETDEL k3", "$1\r\nw\r\n"),
            ("GETDEL k3", "$-1\r\n"),
            ("GETEX k EX 50", "$2\r\nv3\r\n"),
            ("TTL k", ":50\r\n"),
            ("GETEX k PERSIST", "$2\r\nv3\r\n"),
            ("TTL k", ":-1\r\n"),
            ("GETEX k EX 1 PX 1", "-ERR syntax error\r\n"),
            ("GETEX k FOO", "-ERR syntax error\r\n"),
            ("GETEX nokey EX 0", "$-1\r\n"),
            (
                "GETEX k EX 0",
                "-ERR invalid expire time in 'getex' command\r\n",
            ),
            ("GETEX k PERSIST PERSIST", "$2\r\nv3\r\n"),
            ("SET k v3 GET GET", "$2\r\nv3\r\n"),
            ("SET k v3 NX NX", "$-1\r\n"),
            ("SET k v3 KEEPTTL KEEPTTL", "+OK\r\n"),
            ("SET k v3 NX KEEPTTL EX 1", "-ERR syntax error\r\n"),
            ("SUBSTR s 0 0", "$0\r\n\r\n"),
            ("INCRBYFLOAT f2 0.1", "$3\r\n0.1\r\n"),
            ("INCRBYFLOAT f2 0.2", "$3\r\n0.3\r\n"),
            ("MSET a 1 b 2", "+OK\r\n"),
            (
                "MSET a 1 b",
                "-ERR wrong number of arguments for 'mset' command\r\n",
            ),
            ("MGET a b nope", "*3\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n"),
            ("MSETNX a 9 z 9", ":0\r\n"),
            ("EXISTS z", ":0\r\n"),
            ("MSETNX y 9 z 9", ":1\r\n"),
            ("INCR counter", ":1\r\n"),
            ("INCRBY counter 41", ":42\r\n"),
            ("DECR counter", ":41\r\n"),
            ("DECRBY counter 1", ":40\r\n"),
            (
                "DECRBY counter -9223372036854775808",
                "-ERR decrement would overflow\r\n",
            ),
            ("INCR k", "-ERR value is not an integer or out of range\r\n"),
            ("SET big 9223372036854775807", "+OK\r\n"),
            ("INCR big", "-ERR increment or decrement would overflow\r\n"),
            ("SET padded 01", "+OK\r\n"),
            (
                "INCR padded",
                "-ERR value is not an integer or out of range\r\n",
            ),
            (
                "INCRBY counter x",
                "-ERR value is not an integer or out of range\r\n",
            ),
            ("INCRBYFLOAT f 10.5", "$4\r\n10.5\r\n"),
            ("INCRBYFLOAT f 0.1", "$4\r\n10.6\r\n"),
            ("INCRBYFLOAT f 5.0e3", "$6\r\n5010.6\r\n"),
            ("INCRBYFLOAT f abc", "-ERR value is not a valid float\r\n"),
            ("INCRBYFLOAT k 1", "-ERR value is not a valid float\r\n"),
            ("SET inf 1.7976931348623157e308", "+OK\r\n"),
            (
                "INCRBYFLOAT inf 1.7976931348623157e308",
                "-ERR increment would produce NaN or Infinity\r\n",
            ),
            ("APPEND s Hello", ":5\r\n"),
            ("APPEND s _World", ":11\r\n"),
            ("STRLEN s", ":11\r\n"),
            ("STRLEN nope", ":0\r\n"),
            ("GETRANGE s 0 4", "$5\r\nHello\r\n"),
            ("GETRANGE s -5 -1", "$5\r\nWorld\r\n"),
            ("GETRANGE s 5 2", "$0\r\n\r\n"),
            ("GETRANGE s 0 100", "$11\r\nHello_World\r\n"),
            ("GETRANGE s -1 -5", "$0\r\n\r\n"),
            ("GETRANGE nope 0 -1", "$0\r\n\r\n"),
            ("SETRANGE s 6 Redis", ":11\r\n"),
            ("GET s", "$11\r\nHello_Redis\r\n"),
            ("SETRANGE pad 3 x", ":4\r\n"),
            ("GET pad", "$4\r\n\0\0\0x\r\n"),
            ("SETRANGE s -1 x", "-ERR offset is out of range\r\n"),
            ("SETRANGE s 0 ", ":11\r\n"),
            (
                "SETRANGE s 2000000 x",
                "-ERR string exceeds maximum allowed size (max-value-bytes)\r\n",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn keyspace_and_expiry_commands_reply_like_redis() {
    let server = start().await;
    let mut raw = Raw::connect(&server).await;
    script(
        &mut raw,
        &[
            ("MSET a 1 b 2 c 3", "+OK\r\n"),
            ("EXISTS a a nope", ":2\r\n"),
            ("DEL a nope", ":1\r\n"),
            ("UNLINK b", ":1\r\n"),
            ("TOUCH c c x", ":2\r\n"),
            ("TYPE c", "+string\r\n"),
            ("TYPE a", "+none\r\n"),
            ("RENAME nope x", "-ERR no such key\r\n"),
            ("RENAME c d", "+OK\r\n"),
            ("GET d", "$1\r\n3\r\n"),
            ("SET e 5", "+OK\r\n"),
            ("RENAMENX d e", ":0\r\n"),
            ("RENAMENX d f", ":1\r\n"),
            ("DBSIZE", ":2\r\n"),
            ("EXPIRE f 100", ":1\r\n"),
            ("EXPIRE nope 100", ":0\r\n"),
            ("EXPIRE f 100 NX", ":0\r\n"),
            ("EXPIRE f 50 GT", ":0\r\n"),
            ("EXPIRE f 200 GT", ":1\r\n"),
            ("EXPIRE f 300 LT", ":0\r\n"),
            ("EXPIRE f 150 LT", ":1\r\n"),
            ("TTL f", ":150\r\n"),
            ("EXPIRE e 100 XX", ":0\r\n"),
            ("EXPIRE e 100 GT", ":0\r\n"),
            ("EXPIRE e 100 LT", ":1\r\n"),
            (
                "EXPIRE e 100 NX XX",
                "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n",
            ),
            (
                "EXPIRE e 100 GT LT",
                "-ERR GT and LT options at the same time are not compatible\r\n",
            ),
            ("EXPIRE e 100 FOO", "-ERR Unsupported option FOO\r\n"),
            (
                "EXPIRE e abc",
                "-ERR value is not an integer or out of range\r\n",
            ),
            (
                "EXPIRE e 9223372036854775807",
                "-ERR invalid expire time in 'expire' command\r\n",
            ),
            ("PERSIST e", ":1\r\n"),
            ("PERSIST e", ":0\r\n"),
            ("TTL e", ":-1\r\n"),
            ("TTL nope", ":-2\r\n"),
            ("PTTL nope", ":-2\r\n"),
            ("EXPIRETIME e", ":-1\r\n"),
            ("PEXPIREAT e 99999999999999", ":1\r\n"),
            ("PEXPIRETIME e", ":99999999999999\r\n"),
            ("EXPIRETIME e", ":100000000000\r\n"),
            ("EXPIREAT e 99999999999", ":1\r\n"),
            ("PEXPIRETIME e", ":99999999999000\r\n"),
            ("PEXPIREAT e 4102444800500", ":1\r\n"),
            ("EXPIRETIME e", ":4102444801\r\n"),
            ("EXPIRE e -1", ":1\r\n"),
            ("EXISTS e", ":0\r\n"),
            ("FLUSHALL", "+OK\r\n"),
            ("DBSIZE", ":0\r\n"),
            ("RANDOMKEY", "$-1\r\n"),
            ("SET only v", "+OK\r\n"),
            ("RANDOMKEY", "$4\r\nonly\r\n"),
            ("KEYS o*", "*1\r\n$4\r\nonly\r\n"),
            ("KEYS x*", "*0\r\n"),
            (
                "SCAN 0 MATCH o* COUNT 1000",
                "*2\r\n$1\r\n0\r\n*1\r\n$4\r\nonly\r\n",
            ),
            ("SCAN 0 TYPE list", "*2\r\n$1\r\n0\r\n*0\r\n"),
            ("SCAN abc", "-ERR invalid cursor\r\n"),
            ("SCAN 0 COUNT 0", "-ERR syntax error\r\n"),
            ("FLUSHDB ASYNC", "+OK\r\n"),
            ("FLUSHDB BOGUS", "-ERR syntax error\r\n"),
        ],
    )
    .await;
}

#[tokio::test]
async fn connection_and_server_commands_reply_like_redis() {
    let server = start().await;
    let mut raw = Raw::connect(&server).await;
    script(
        &mut raw,
        &[
            ("PING", "+PONG\r\n"),
            ("PING hi", "$2\r\nhi\r\n"),
            ("PING a b", "-ERR wrong number of arguments for 'ping' command\r\n"),
            ("ECHO hey", "$3\r\nhey\r\n"),
            ("SELECT 0", "+OK\r\n"),
            ("SELECT 1", "-ERR DB index is out of range\r\n"),
            ("SELECT x", "-ERR value is not an integer or out of range\r\n"),
            ("CLIENT SETNAME worker", "+OK\r\n"),
            ("CLIENT GETNAME", "$6\r\nworker\r\n"),
            ("CLIENT SETNAME bad\nname", "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"),
            ("CLIENT SETINFO LIB-NAME redis-rs", "+OK\r\n"),
            ("CLIENT FOO", "-ERR unknown subcommand 'FOO'. Try CLIENT HELP.\r\n"),
            ("CONFIG GET maxmemory-policy", "*2\r\n$16\r\nmaxmemory-policy\r\n$11\r\nallkeys-lru\r\n"),
            ("CONFIG SET maxmemory-policy noeviction", "+OK\r\n"),
            ("CONFIG GET maxmemory-policy", "*2\r\n$16\r\nmaxmemory-policy\r\n$10\r\nnoeviction\r\n"),
            ("CONFIG SET maxmemory 10mb", "+OK\r\n"),
            ("CONFIG GET maxmemory", "*2\r\n$9\r\nmaxmemory\r\n$8\r\n10485760\r\n"),
            ("CONFIG SET nosuch 1", "-ERR Unknown option or number of arguments for CONFIG SET - 'nosuch'\r\n"),
            ("CONFIG SET port 1", "-ERR CONFIG SET failed (possibly related to argument 'port') - can't set immutable config\r\n"),
            ("CONFIG GET save", "*2\r\n$4\r\nsave\r\n$0\r\n\r\n"),
            ("COMMAND COUNT", &format!(":{}\r\n", command::COMMANDS.len())),
            ("COMMAND INFO get", "*1\r\n*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n*1\r\n+@string\r\n*0\r\n*0\r\n*0\r\n"),
            ("COMMAND INFO nosuch", "*1\r\n$-1\r\n"),
            ("COMMAND COUNT x", "-ERR wrong number of arguments for 'command|count' command\r\n"),
            ("COMMAND GETKEYS MSET a 1 b 2", "*2\r\n$1\r\na\r\n$1\r\nb\r\n"),
            ("COMMAND GETKEYS PING", "-ERR The command has no key arguments\r\n"),
            ("AUTH secret", "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"),
            ("AUTH default secret", "+OK\r\n"),
            ("AUTH bob secret", "-WRONGPASS invalid username-password pair or user is disabled.\r\n"),
            ("HELLO 2 AUTH bob secret", "-WRONGPASS invalid username-password pair or user is disabled.\r\n"),
            ("CONFIG SET maxclients 0", "-ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument must be between 1 and 4294967295 inclusive\r\n"),
            ("CONFIG SET timeout 10 timeout 20", "-ERR CONFIG SET failed (possibly related to argument 'timeout') - duplicate parameter\r\n"),
            ("CONFIG SET maxmemory lots", "-ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value\r\n"),
            ("CLIENT LIST TYPE pubsub", "$0\r\n\r\n"),
            ("CLIENT LIST TYPE bogus", "-ERR Unknown client type 'bogus'\r\n"),
            ("CLIENT LIST ID abc", "-ERR Invalid client ID\r\n"),
            ("NOSUCH a b", "-ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \r\n"),
            ("LPUSH nokey x", "-ERR unknown command 'LPUSH', with args beginning with: 'nokey' 'x' \r\n"),
            ("GET", "-ERR wrong number of arguments for 'get' command\r\n"),
            ("SET k v", "+OK\r\n"),
            ("LPUSH k x", "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
            ("HELLO 4", "-NOPROTO unsupported protocol version\r\n"),
            ("HELLO x", "-ERR Protocol version is not an integer or out of range\r\n"),
        ],
    )
    .await;
    raw.roundtrip(b"QUIT\r\n", b"+OK\r\n").await;
    assert!(raw.is_closed().await);
}

#[tokio::test]
async fn inline_commands_work_like_telnet() {
    let server = start().await;
    let mut raw = Raw::connect(&server).await;
    raw.roundtrip(b"SET greeting \"hello world\"\r\n", b"+OK\r\n")
        .await;
    raw.roundtrip(b"GET greeting\n", b"$11\r\nhello world\r\n")
        .await;
    raw.roundtrip(b"\r\n\r\nPING\r\n", b"+PONG\r\n").await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_in_one_write() {
    let server = start().await;
    let mut raw = Raw::connect(&server).await;
    let mut batch = Vec::new();
    for i in 0..100 {
        batch.extend(cmd(&[
            b"SET",
            format!("k{i}").as_bytes(),
            format!("{i}").as_bytes(),
        ]));
        batch.extend(cmd(&[b"GET", format!("k{i}").as_bytes()]));
    }
    let mut expected = Vec::new();
    for i in 0..100 {
        let v = i.to_string();
        expected.extend(b"+OK\r\n");
        expected.extend(format!("${}\r\n{v}\r\n", v.len()).as_bytes());
    }
    raw.roundtrip(&batch, &expected).await;
    // A request split across writes at every byte still parses.
    let whole = cmd(&[b"ECHO", b"split"]);
    for b in &whole {
        raw.send(std::slice::from_ref(b)).await;
    }
    assert_eq!(raw.read_exact_len(11).await, b"$5\r\nsplit\r\n");
}

#[tokio::test]
async fn resp3_after_hello_3() {
    let server = start().await;
    let mut raw = Raw::connect(&server).await;
    raw.send(&cmd(&[b"HELLO", b"3"])).await;
    let head = raw.read_exact_len(2).await;
    assert_eq!(head, b"%7");
    let _ = raw.read_exact_len(1).await;
    let mut rest = Vec::new();
    // Drain the rest of the map: read until the modules entry's empty array.
    while !rest.ends_with(b"modules\r\n*0\r\n") {
        let chunk = raw.read_exact_len(1).await;
        assert!(
            !chunk.is_empty(),
            "HELLO reply ended early: {}",
            String::from_utf8_lossy(&rest)
        );
        rest.extend(chunk);
    }
    let text = String::from_utf8_lossy(&rest);
    assert!(text.contains("$5\r\nproto\r\n:3\r\n"), "{text}");
    raw.roundtrip(&cmd(&[b"GET", b"missing"]), b"_\r\n").await;
    raw.roundtrip(
        &cmd(&[b"CONFIG", b"GET", b"timeout"]),
        b"%1\r\n$7\r\ntimeout\r\n$1\r\n0\r\n",
    )
    .await;
    raw.roundtrip(&cmd(&[b"HELLO", b"2"]), b"*14\r\n").await;
}

#[tokio::test]
async fn redis_crate_client_works_unchanged() {
    let server = start().await;
    let url = format!("redis://{}/", server.resp_addr);
    let client = redis::Client::open(url).expect("url");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = con.set("user:1", "ada").await.expect("set");
    let name: String = con.get("user:1").await.expect("get");
    assert_eq!(name, "ada");
    let _: () = con.set_ex("session", "x", 60).await.expect("setex");
    let ttl: i64 = con.ttl("session").await.expect("ttl");
    assert!((59..=60).contains(&ttl));
    let n: i64 = con.incr("hits", 5).await.expect("incr");
    assert_eq!(n, 5);
    let values: Vec<Option<String>> = con.mget(&["user:1", "nope"]).await.expect("mget");
    assert_eq!(values, vec![Some("ada".to_owned()), None]);
    let deleted: i64 = con.del(&["user:1", "hits"]).await.expect("del");
    assert_eq!(deleted, 2);
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut con)
        .await
        .expect("keys");
    keys.sort();
    assert_eq!(keys, vec!["session"]);

    // RESP3 through the same crate.
    let url3 = format!("redis://{}/?protocol=resp3", server.resp_addr);
    let mut con3 = redis::Client::open(url3)
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = con3.set("k3", "v3").await.expect("set");
    let v: Option<String> = con3.get("k3").await.expect("get");
    assert_eq!(v.as_deref(), Some("v3"));
    let missing: Option<String> = con3.get("nope").await.expect("get");
    assert_eq!(missing, None);
}

#[tokio::test]
async fn values_up_to_the_limit_round_trip_byte_exact() {
    let server = start().await;
    let client = redis::Client::open(format!("redis://{}/", server.resp_addr)).expect("url");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let value: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let _: () = con.set("blob", &value).await.expect("set 1 MiB");
    let back: Vec<u8> = con.get("blob").await.expect("get");
    assert_eq!(back, value);
    let mut over = value.clone();
    over.push(0);
    let err = con
        .set::<_, _, ()>("blob2", &over)
        .await
        .expect_err("over the limit");
    assert!(
        err.to_string()
            .contains("string exceeds maximum allowed size"),
        "{err}"
    );
    let exists: i64 = con.exists("blob2").await.expect("exists");
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn keys_with_short_ttls_vanish_on_time() {
    let server = start().await;
    let mut raw = Raw::connect(&server).await;
    use std::time::{Duration, Instant};
    // Waits on the condition, with a bound, instead of sleeping a fixed time (issue 14).
    let set_at = Instant::now();
    raw.roundtrip(&cmd(&[b"SET", b"t", b"v", b"PX", b"100"]), b"+OK\r\n")
        .await;
    let get = cmd(&[b"GET", b"t"]);
    loop {
        raw.send(&get).await;
        let reply = raw.read_exact_len(5).await;
        if reply == b"$-1\r\n" {
            break;
        }
        assert_eq!(reply, b"$1\r\nv");
        assert_eq!(raw.read_exact_len(2).await, b"\r\n");
        assert!(
            set_at.elapsed() < Duration::from_secs(2),
            "t outlived its 100 ms TTL"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        set_at.elapsed() >= Duration::from_millis(100),
        "t expired early"
    );
    // The active cycle reclaims keys nobody reads.
    let set_at = Instant::now();
    for i in 0..100 {
        raw.roundtrip(
            &cmd(&[b"SET", format!("x{i}").as_bytes(), b"v", b"PX", b"50"]),
            b"+OK\r\n",
        )
        .await;
    }
    while server.node.store.stats().keys > 0 {
        assert!(
            set_at.elapsed() < Duration::from_secs(2),
            "{} keys not reclaimed 2 s after their 50 ms TTL",
            server.node.store.stats().keys
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn info_reports_redis_fields_by_section() {
    let server = start().await;
    let client = redis::Client::open(format!("redis://{}/", server.resp_addr)).expect("url");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = con.set_ex("k", "v", 100).await.expect("set");
    let _: Option<String> = con.get("k").await.expect("get");
    let _: Option<String> = con.get("nope").await.expect("get");
    let info: String = redis::cmd("INFO")
        .query_async(&mut con)
        .await
        .expect("info");
    for needle in [
        "# Server\r\nredis_version:7.2.4\r\n",
        "# Clients\r\nconnected_clients:",
        "\r\nused_memory:",
        "\r\nmaxmemory_policy:allkeys-lru\r\n",
        "\r\nkeyspace_hits:1\r\nkeyspace_misses:1\r\n",
        "# Keyspace\r\ndb0:keys=1,expires=1,avg_ttl=0\r\n",
    ] {
        assert!(info.contains(needle), "missing {needle:?} in\n{info}");
    }
    assert!(!info.contains("# Commandstats"));
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut con)
        .await
        .expect("info");
    assert!(stats.starts_with("# Commandstats\r\n"), "{stats}");
    assert!(stats.contains("cmdstat_get:calls=2,"), "{stats}");
}
