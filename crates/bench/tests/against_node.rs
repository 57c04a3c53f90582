//! The load generator against a real node started in-process on ephemeral ports.

use std::time::Duration;

use bench::{BenchArgs, Config, Protocol, Stop};
use clap::Parser;
use server::{RunningServer, ServerArgs};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

async fn start_node() -> RunningServer {
    let args = ServerArgs {
        port: Some(0),
        admin_port: Some(0),
        memcache_port: Some(0),
        shards: Some(4),
        ..ServerArgs::default()
    };
    server::start(server::Config::resolve(args).expect("valid config"))
        .await
        .expect("node starts")
}

fn config(node: &RunningServer, flags: &[&str]) -> Config {
    let port = node.resp_addr.port().to_string();
    let argv = ["bench", "--port", &port, "--quiet"]
        .into_iter()
        .chain(flags.iter().copied());
    Config::resolve(Cli::try_parse_from(argv).expect("flags parse").args).expect("valid")
}

async fn stop(node: RunningServer) {
    node.shutdown();
    node.wait(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefilled_resp_run_hits_without_errors() {
    let node = start_node().await;
    let config = config(
        &node,
        &[
            "--prefill",
            "--keys",
            "2000",
            "--connections",
            "8",
            "--pipeline",
            "4",
        ],
    );
    let config = Config {
        warmup: Duration::from_millis(200),
        stop: Stop::After(Duration::from_secs(1)),
        ..config
    };
    let report = bench::execute(&config).await.expect("run succeeds");
    assert_eq!(report.protocol, Protocol::Resp.name());
    assert!(report.ops > 0, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(report.warmup_errors, 0, "{report:?}");
    assert!(report.hits > 0, "{report:?}");
    // Every key was written first, and sets only overwrite: no GET can miss.
    assert_eq!(report.misses, 0, "{report:?}");
    assert_eq!(report.gets + report.sets, report.ops);
    let prefill = report.prefill.as_ref().expect("prefill ran");
    assert_eq!((prefill.keys, prefill.errors), (2000, 0));
    assert!(report.latency_us.p50 <= report.latency_us.p99);
    assert!(report.latency_us.p99 <= report.latency_us.max);
    assert!(
        report.duration_secs > 0.5 && report.duration_secs < 5.0,
        "{report:?}"
    );
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_count_run_sends_exactly_the_requests_asked() {
    let node = start_node().await;
    let config = config(
        &node,
        &[
            "--requests",
            "600",
            "--rate",
            "2000",
            "--connections",
            "4",
            "--pipeline",
            "8",
            "--warmup",
            "0",
            "--ratio",
            "1:1",
            "--value-size",
            "10-300",
            "--distribution",
            "zipf",
        ],
    );
    let report = bench::execute(&config).await.expect("run succeeds");
    assert_eq!(report.ops, 600, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert_eq!(report.unsent, 0, "{report:?}");
    assert_eq!(report.mode, "open");
    // 600 requests at 2000/s take about 0.3 s.
    assert!(
        report.duration_secs > 0.2 && report.duration_secs < 3.0,
        "{report:?}"
    );
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).expect("valid JSON");
    for field in [
        "protocol",
        "connections",
        "pipeline",
        "ops",
        "duration_secs",
        "ops_per_sec",
        "hits",
        "misses",
        "errors",
    ] {
        assert!(json.get(field).is_some(), "JSON lacks {field}: {json}");
    }
    for field in ["p50", "p90", "p99", "p999", "max", "mean"] {
        assert!(
            json["latency_us"].get(field).is_some(),
            "JSON lacks latency_us.{field}"
        );
    }
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_replies_are_counted_and_reported() {
    // A node that refuses every SET: values above its 16-byte limit.
    let args = ServerArgs {
        port: Some(0),
        memcache_port: Some(0),
        no_admin: true,
        max_value_bytes: Some("16".into()),
        ..ServerArgs::default()
    };
    let node = server::start(server::Config::resolve(args).expect("valid config"))
        .await
        .expect("node starts");
    let config = config(
        &node,
        &[
            "--requests",
            "200",
            "--ratio",
            "0:1",
            "--value-size",
            "64",
            "--warmup",
            "0",
        ],
    );
    let report = bench::execute(&config).await.expect("run completes");
    assert_eq!(report.ops, 200);
    assert_eq!(report.errors, 200, "{report:?}");
    assert!(!report.error_samples.is_empty());
    assert!(report.summary().contains("errors"));
    stop(node).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_goes_away_fails_the_run() {
    let node = start_node().await;
    let config = config(
        &node,
        &["--duration", "5s", "--warmup", "0", "--connections", "2"],
    );
    let run = tokio::spawn(async move { bench::execute(&config).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop(node).await;
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("run ends by itself")
        .expect("no panic");
    let err = result.expect_err("server went away");
    assert!(err.to_string().contains("closed"), "{err}");
}

/// Starts a fake server that accepts connections and answers every read with `reply` (or
/// never answers, if it is empty). Returns its port.
async fn fake_server(reply: &'static [u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || (!reply.is_empty() && stream.write_all(reply).await.is_err()) {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn fake_config(port: u16, flags: &[&str]) -> Config {
    let port = port.to_string();
    let argv = [
        "bench",
        "--port",
        &port,
        "--quiet",
        "--warmup",
        "0",
        "--connections",
        "2",
    ]
    .into_iter()
    .chain(flags.iter().copied());
    Config::resolve(Cli::try_parse_from(argv).expect("flags parse").args).expect("valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_fails_the_run_after_the_timeout() {
    let port = fake_server(b"").await;
    let config = fake_config(port, &["--duration", "30s", "--timeout", "300ms"]);
    let started = std::time::Instant::now();
    let err = bench::execute(&config).await.expect_err("no replies");
    assert!(matches!(err, bench::Error::Stalled { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_speaking_garbage_fails_the_run() {
    let port = fake_server(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
    let config = fake_config(port, &["--duration", "30s"]);
    let err = bench::execute(&config).await.expect_err("not RESP");
    assert!(matches!(err, bench::Error::Protocol { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_error_lines_are_counted_as_errors() {
    // Every request gets one SERVER_ERROR line (a pipeline of 1 keeps replies and requests
    // in step).
    let port = fake_server(b"SERVER_ERROR out of memory\r\n").await;
    let config = fake_config(port, &["--protocol", "memcache", "--requests", "50"]);
    let report = bench::execute(&config).await.expect("run completes");
    assert_eq!((report.ops, report.errors), (50, 50), "{report:?}");
    assert_eq!(
        report.error_samples[0].message,
        "SERVER_ERROR out of memory"
    );
}

#[tokio::test]
async fn set_on_miss_fills_the_cache_as_an_application_would() {
    let node = start_node().await;
    let config = config(
        &node,
        &[
            "--keys",
            "50",
            "--ratio",
            "1:0",
            "--set-on-miss",
            "--connections",
            "2",
        ],
    );
    let config = Config {
        warmup: Duration::ZERO,
        stop: Stop::Requests(2000),
        ..config
    };
    let report = bench::execute(&config).await.expect("run succeeds");
    assert_eq!(report.errors, 0, "{report:?}");
    // The cache starts empty and only GETs are drawn: every SET is a fill after a miss, each
    // key misses at most once per connection, and everything after that hits.
    assert!(report.sets > 0 && report.sets <= 100, "{report:?}");
    assert!(report.misses <= 100, "{report:?}");
    assert!(report.hits > 1500, "{report:?}");
}
