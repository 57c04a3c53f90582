//! Helpers for server tests: a node on 127.0.0.1 with ephemeral ports, and a raw client.

#![allow(dead_code)]

use std::time::Duration;

use server::{Config, RunningServer, ServerArgs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Starts a node on ephemeral ports after `tweak` adjusts its flags.
pub async fn start_with(tweak: impl FnOnce(&mut ServerArgs)) -> RunningServer {
    let mut args = ServerArgs {
        port: Some(0),
        admin_port: Some(0),
        memcache_port: Some(0),
        shards: Some(4),
        ..ServerArgs::default()
    };
    tweak(&mut args);
    server::start(Config::resolve(args).expect("valid config"))
        .await
        .expect("node starts")
}

/// Starts a node with default settings.
pub async fn start() -> RunningServer {
    start_with(|_| {}).await
}

/// A client speaking raw bytes.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub async fn connect(server: &RunningServer) -> Raw {
        Raw {
            stream: TcpStream::connect(server.resp_addr).await.expect("connect"),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads until `expected.len()` bytes arrived (or 5 s passed) and returns them.
    pub async fn read_exact_len(&mut self, len: usize) -> Vec<u8> {
        let mut got = vec![0u8; len];
        let mut filled = 0;
        while filled < len {
            match tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut got[filled..]))
                .await
            {
                Ok(Ok(0)) | Err(_) => break,
                Ok(Ok(n)) => filled += n,
                Ok(Err(_)) => break,
            }
        }
        got.truncate(filled);
        got
    }

    /// Sends `request` and asserts the reply is exactly `expected`.
    pub async fn roundtrip(&mut self, request: &[u8], expected: &[u8]) {
        self.send(request).await;
        let got = self.read_exact_len(expected.len()).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected),
            "request {:?}",
            String::from_utf8_lossy(request)
        );
    }

    /// Returns true if the server closed the connection (read returns EOF within 5 s).
    pub async fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// Encodes a command as a RESP multibulk request.
pub fn cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Fetches an admin HTTP path and returns the body.
pub async fn http_get(server: &RunningServer, path: &str) -> String {
    let mut s = TcpStream::connect(server.admin_addr.expect("admin enabled"))
        .await
        .expect("connect admin");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut body = String::new();
    s.read_to_string(&mut body).await.expect("read");
    body
}
