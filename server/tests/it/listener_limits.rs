//! Attacks on the listeners, each against a real server on 127.0.0.1:0: slowloris headers,
//! trickled bodies, idle keep-alive connections (gRPC too), more connections than the cap,
//! a shutdown held open by a trickling client, and oversized declared bodies (with and
//! without `Expect: 100-continue`) on both planes.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn short_limits(data: &std::path::Path) -> pier_server::ServerConfig {
    let mut config = common::config(data);
    config.listener.header_read_timeout = Duration::from_millis(800);
    config.listener.body_read_timeout = Duration::from_millis(800);
    config.listener.idle_timeout = Duration::from_millis(800);
    config.listener.shutdown_grace = Duration::from_millis(800);
    config
}

/// Reads until the peer closes (`Ok(bytes)`) or `within` passes (`Err(bytes so far)`).
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Result<Vec<u8>, Vec<u8>> {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return Err(seen),
        }
    }
}

/// Reads one response head and body (`Content-Length` framed) within `within`.
async fn read_response(stream: &mut TcpStream, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&seen).into_owned();
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if seen.len() >= head_end + 4 + length {
                return text;
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return text,
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no whole response within {within:?}; got {text:?}"),
        }
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connects")
}

#[tokio::test]
async fn slowloris_headers_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(short_limits(dir.path())).await;
    let mut s = connect(server.http).await;
    s.write_all(b"POST /endpoints/x/invocations HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // One header line every 200 ms: each byte resets no timer; the whole head must arrive
    // within the header-read timeout.
    let mut closed = false;
    for i in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if s.write_all(format!("X-Slow-{i}: y\r\n").as_bytes())
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await
            && n == 0
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickled request head was never cut off");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // The server still answers others.
    let r = server
        .client
        .get(format!("http://{}/ping", server.http))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = short_limits(dir.path());
    config.grpc_addr = Some("127.0.0.1:0".parse().unwrap());
    let server = TestServer::start_with(config).await;
    for addr in [server.http, server.admin] {
        let mut s = connect(addr).await;
        s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let seen = read_until_closed(&mut s, Duration::from_secs(5))
            .await
            .unwrap_or_else(|seen| {
                panic!(
                    "idle connection to {addr} still open after 5 s: {:?}",
                    String::from_utf8_lossy(&seen)
                )
            });
        assert!(String::from_utf8_lossy(&seen).starts_with("HTTP/1.1 "));
        assert!(started.elapsed() >= Duration::from_millis(500));
        // A connection that never sends anything is closed too.
        let mut silent = connect(addr).await;
        read_until_closed(&mut silent, Duration::from_secs(5))
            .await
            .expect("a silent connection is closed");
    }
    // The gRPC port: an HTTP/2 connection idle after a call, and one that never sends a byte
    // (the server's own SETTINGS frame is all it sees), are closed alike.
    let grpc = server.server.as_ref().unwrap().grpc_addr.unwrap();
    let (mut send, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(connect(grpc).await),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(connection);
    let live = http::Request::post(format!(
        "http://{grpc}/inference.GRPCInferenceService/ServerLive"
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .body(http_body_util::Full::new(bytes::Bytes::from_static(&[
        0, 0, 0, 0, 0,
    ])))
    .unwrap();
    let answer = send.send_request(live).await.unwrap();
    assert_eq!(answer.status(), 200);
    drop(answer);
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("an idle gRPC connection is closed within 5 s")
        .unwrap()
        .ok();
    assert!(started.elapsed() >= Duration::from_millis(500));
    let mut silent = connect(grpc).await;
    read_until_closed(&mut silent, Duration::from_secs(5))
        .await
        .expect("a silent gRPC connection is closed");
    server.stop().await;
}

#[tokio::test]
async fn a_trickled_body_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(short_limits(dir.path())).await;
    let mut s = connect(server.http).await;
    s.write_all(
        b"POST /endpoints/x/invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 1000\r\n\r\n1,2,3",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let trickle = async {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = s.write_all(b"1").await;
        }
    };
    tokio::select! {
        () = trickle => panic!("the body deadline never fired"),
        () = tokio::time::sleep(Duration::from_secs(3)) => {}
    }
    let answer = read_response(&mut s, Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("did not arrive within"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(6));
    server.stop().await;
}

#[tokio::test]
async fn connections_past_the_cap_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.listener.max_connections = 4;
    let server = TestServer::start_with(config).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut s = connect(server.http).await;
        s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = read_response(&mut s, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        held.push(s);
    }
    // The fifth is closed at once; the admin port shares the same cap.
    for addr in [server.http, server.admin] {
        let mut extra = connect(addr).await;
        let _ = extra
            .write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let seen = read_until_closed(&mut extra, Duration::from_secs(3))
            .await
            .expect("a connection past the cap is closed");
        assert!(seen.is_empty(), "{:?}", String::from_utf8_lossy(&seen));
    }
    drop(held);
    // Permits come back when connections close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut s = connect(server.http).await;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let seen = read_until_closed(&mut s, Duration::from_secs(3))
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&seen);
        if text.starts_with("HTTP/1.1 200") {
            assert!(
                text.contains("pier_connections_refused_total"),
                "refusals are counted"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no permit came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn shutdown_is_bounded_by_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = short_limits(dir.path());
    // Timeouts that would not end the connection before the grace period does.
    config.listener.header_read_timeout = Duration::from_secs(60);
    config.listener.idle_timeout = Duration::from_secs(60);
    config.listener.body_read_timeout = Duration::from_secs(60);
    let server = TestServer::start_with(config).await;
    let mut s = connect(server.http).await;
    s.write_all(
        b"POST /endpoints/x/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n",
    )
    .await
    .unwrap();
    let trickler = tokio::spawn(async move {
        for _ in 0..200 {
            if s.write_all(b"1").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("shutdown finishes while a client trickles bytes");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    trickler.abort();
}

#[tokio::test]
async fn oversized_declared_bodies_get_an_immediate_413_in_each_planes_shape() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path()).await;
    let cases = [
        (server.http, "/endpoints/demo/invocations", "\"ErrorCode\""),
        (server.http, "/v2/models/demo/infer", "\"error\""),
        (
            server.admin,
            "/",
            "\"__type\":\"RequestEntityTooLargeException\"",
        ),
    ];
    for (addr, path, shape) in cases {
        let mut s = connect(addr).await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Amz-Target: SageMaker.ListModels\r\nContent-Length: 10000000000\r\nExpect: 100-continue\r\n\r\n"
        );
        s.write_all(head.as_bytes()).await.unwrap();
        let answer = read_response(&mut s, Duration::from_secs(2)).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(!answer.contains("100 Continue"), "{path}: {answer}");
        assert!(answer.contains(shape), "{path}: {answer}");
    }
    // A chunked admin body (no declared length) over the limit is refused in AWS JSON's
    // shape, not axum's plain text.
    let mut s = connect(server.admin).await;
    s.write_all(
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: SageMaker.ListModels\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
    for _ in 0..120 {
        let wrote =
            tokio::time::timeout(Duration::from_secs(2), s.write_all(chunk.as_bytes())).await;
        if !matches!(wrote, Ok(Ok(()))) {
            break;
        }
    }
    let answer = read_response(&mut s, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("\"__type\":\"RequestEntityTooLargeException\""),
        "{answer}"
    );
    server.stop().await;
}
