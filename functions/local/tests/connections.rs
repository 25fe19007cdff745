//! Connections that hold a slot without doing work are closed, so that a few sockets cannot lock everyone out:
//! real TLS against the `dps` binary, started with small limits and one-second timeouts. The bounds the tests
//! wait for are generous (many times the configured timeout) and only tell "closed" from "never closed".

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

mod support;

/// Longest a test waits for something the server does after a one-second timeout.
const BOUND: Duration = Duration::from_secs(20);
const API: &str = "api-version=2021-10-01";
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// An empty HTTP/2 SETTINGS frame: what a client sends after the preface.
const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

/// `dps serve` on an ephemeral port with `args`; killed on drop.
struct Server {
    server: support::Server,
    addr: SocketAddr,
    tls: TlsConnector,
    /// `Authorization` for the service API of the `default` instance (host `localhost`).
    token: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = support::Server::start(dir.path(), args);
        let info = server.info.clone();
        let addr = info["listen"].as_str().unwrap().parse().unwrap();

        let pem = std::fs::read(info["caCertificate"].as_str().unwrap()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        let conn = info["connectionString"].as_str().unwrap();
        let field = |name: &str| conn.split(';').find_map(|p| p.strip_prefix(name)).unwrap().to_string();
        let expiry = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
        let token = dps_core::sas::token(
            &field("HostName="),
            &field("SharedAccessKey="),
            expiry,
            Some(&field("SharedAccessKeyName=")),
        )
        .unwrap();
        Self { server, addr, tls: TlsConnector::from(Arc::new(config)), token, _dir: dir }
    }

    /// A TCP connection from the loopback address `from` (127.0.0.x: each is a different client address).
    async fn tcp_from(&self, from: Ipv4Addr) -> TcpStream {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
        socket.connect(self.addr).await.unwrap()
    }

    /// A TLS connection from `from` that has completed its handshake.
    async fn tls_from(&self, from: Ipv4Addr) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = self.tcp_from(from).await;
        self.tls.connect(ServerName::try_from("localhost").unwrap(), tcp).await
    }

    async fn tls(&self) -> TlsStream<TcpStream> {
        self.tls_from(Ipv4Addr::LOCALHOST).await.expect("TLS handshake")
    }

    /// `GET /config` over a fresh HTTP/1.1 connection from `from`: the status.
    async fn get_config_from(&self, from: Ipv4Addr) -> std::io::Result<u16> {
        let mut stream = self.tls_from(from).await?;
        let request = format!(
            "GET /config?{API} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            self.token
        );
        stream.write_all(request.as_bytes()).await?;
        let answer = read_until_closed(&mut stream).await;
        Ok(status_of(&answer))
    }

    async fn get_config(&self) -> u16 {
        self.get_config_from(Ipv4Addr::LOCALHOST).await.expect("request sent")
    }

    fn config_request(&self) -> http::Request<Empty<Bytes>> {
        http::Request::get(format!("https://localhost/config?{API}"))
            .header(http::header::AUTHORIZATION, &self.token)
            .body(Empty::new())
            .unwrap()
    }
}

impl Drop for Server {
    /// Killed outright rather than stopped gracefully: connections the test holds would delay a graceful stop.
    fn drop(&mut self) {
        let _ = self.server.child.kill();
        let _ = self.server.child.wait();
    }
}

/// Everything the server sends until it closes the connection (EOF, with or without close_notify, or a reset).
async fn read_until_closed<S: AsyncReadExt + Unpin>(stream: &mut S) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether the server closes the connection within [`BOUND`].
async fn closed_by_server<S: AsyncReadExt + Unpin>(stream: &mut S) -> bool {
    timeout(BOUND, read_until_closed(stream)).await.is_ok()
}

/// A client that asks for the configuration, and waits as long as it takes; its answer's status.
fn waiting_client(server: &Arc<Server>) -> tokio::task::JoinHandle<u16> {
    let server = server.clone();
    tokio::spawn(async move { server.get_config().await })
}

fn status_of(answer: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(answer);
    text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no HTTP answer: {text:?}"))
}

#[tokio::test]
async fn silent_connections_are_closed_and_do_not_lock_out_clients() {
    // Every slot taken by a client that completes TLS and sends nothing; the idle timeout is far away, so only
    // the first-byte timeout can free them.
    let args = ["--max-connections", "3", "--first-byte-timeout", "1", "--idle-timeout", "600"];
    let server = Arc::new(Server::start(&args));
    let mut silent = futures::future::join_all((0..3).map(|_| server.tls())).await;
    let waiting = waiting_client(&server);
    for stream in &mut silent {
        assert!(closed_by_server(stream).await, "a silent connection stays open");
    }
    let status = timeout(BOUND, waiting).await.expect("a waiting client is served once the slots free").unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn idle_http2_and_keep_alive_connections_are_closed() {
    let args = ["--max-connections", "4", "--idle-timeout", "1", "--first-byte-timeout", "600"];
    let server = Arc::new(Server::start(&args));

    // Two HTTP/2 connections that send the preface and settings and never open a stream.
    let mut preface_only = Vec::new();
    for _ in 0..2 {
        let mut stream = server.tls().await;
        stream.write_all(&[H2_PREFACE, H2_SETTINGS].concat()).await.unwrap();
        preface_only.push(stream);
    }
    // An HTTP/2 connection after one request: the client answers the server's pings, and is still closed.
    let (mut h2, h2_conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(server.tls().await)).await.unwrap();
    let h2_conn = tokio::spawn(h2_conn);
    let answer = h2.send_request(server.config_request()).await.unwrap();
    assert_eq!(answer.status(), 200);
    answer.into_body().collect().await.unwrap();
    // An HTTP/1.1 keep-alive connection after one request.
    let (mut h1, h1_conn) = hyper::client::conn::http1::handshake(TokioIo::new(server.tls().await)).await.unwrap();
    let h1_conn = tokio::spawn(h1_conn);
    let mut request = server.config_request();
    request.headers_mut().insert(http::header::HOST, http::HeaderValue::from_static("localhost"));
    *request.uri_mut() = format!("/config?{API}").parse().unwrap();
    let answer = h1.send_request(request).await.unwrap();
    assert_eq!(answer.status(), 200);
    answer.into_body().collect().await.unwrap();

    // All four slots are held; a fifth client waits for one of them.
    let waiting = waiting_client(&server);
    for stream in &mut preface_only {
        assert!(closed_by_server(stream).await, "an HTTP/2 connection without streams stays open");
    }
    assert!(timeout(BOUND, h2_conn).await.is_ok(), "an idle HTTP/2 connection stays open");
    assert!(timeout(BOUND, h1_conn).await.is_ok(), "an idle HTTP/1.1 keep-alive connection stays open");
    let status = timeout(BOUND, waiting).await.expect("a waiting client is served once the slots free").unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_peer_that_does_not_answer_http2_pings_is_closed() {
    let args = ["--idle-timeout", "600", "--http2-keepalive-interval", "1", "--http2-keepalive-timeout", "1"];
    let server = Server::start(&args);
    let mut stream = server.tls().await;
    stream.write_all(&[H2_PREFACE, H2_SETTINGS].concat()).await.unwrap();
    let frames = timeout(BOUND, read_until_closed(&mut stream)).await.expect("the connection is closed");
    // Frame headers: 3 bytes of length, the type, the flags, 4 bytes of stream ID.
    let mut types = Vec::new();
    let mut at = 0;
    while at + 9 <= frames.len() {
        let len = (usize::from(frames[at]) << 16) | (usize::from(frames[at + 1]) << 8) | usize::from(frames[at + 2]);
        types.push((frames[at + 3], frames[at + 4]));
        at += 9 + len;
    }
    const PING: u8 = 6;
    assert!(types.iter().any(|&(kind, flags)| kind == PING && flags & 1 == 0), "the server pinged: {types:?}");
}

#[tokio::test]
async fn connections_beyond_the_per_address_cap_are_closed() {
    let args = ["--max-connections-per-address", "2", "--max-connections", "16", "--first-byte-timeout", "600"];
    let server = Server::start(&args);
    let mut held = vec![server.tls().await, server.tls().await];
    // A third connection from the same address is closed before (or during) the handshake.
    let third = timeout(BOUND, async {
        let mut stream = server.tls_from(Ipv4Addr::LOCALHOST).await?;
        stream.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await?;
        Ok::<_, std::io::Error>(read_until_closed(&mut stream).await)
    })
    .await
    .expect("the third connection is closed, not left waiting");
    assert!(third.map(|answer| answer.is_empty()).unwrap_or(true), "the third connection from one address is served");
    // Another address is not affected.
    assert_eq!(server.get_config_from(Ipv4Addr::new(127, 0, 0, 2)).await.unwrap(), 200);
    // Once the client closes one of its connections, it may open another.
    drop(held.pop());
    let served = timeout(BOUND, async {
        loop {
            if let Ok(200) = server.get_config_from(Ipv4Addr::LOCALHOST).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    served.await.expect("a slot freed by the client is reused");
}

#[tokio::test]
async fn a_body_that_arrives_too_slowly_is_cut_off_with_408() {
    // The request deadline (30 s by default) is further away than the bound: only the body read timeout answers.
    let server = Server::start(&["--body-read-timeout", "1"]);
    let mut stream = server.tls().await;
    let head = format!(
        "PUT /enrollments/dev-1?{API} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"registrationId\"",
        server.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let answer = timeout(BOUND, read_until_closed(&mut stream)).await.expect("answered before the request deadline");
    let text = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), 408, "{text}");
    assert!(text.contains("\r\ncontent-length: "), "answered with its length: {text}");
    let body: Value = serde_json::from_str(&text[text.find("\r\n\r\n").unwrap() + 4..]).expect(&text);
    assert_eq!(body["errorCode"], 408001, "{body}");
    let tracking = text.lines().find_map(|l| l.strip_prefix("x-ms-request-id: ")).expect("x-ms-request-id");
    assert_eq!(body["trackingId"], tracking);
    // Nothing was stored from the partial body.
    let mut check = server.tls().await;
    let get = format!(
        "GET /enrollments/dev-1?{API} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        server.token
    );
    check.write_all(get.as_bytes()).await.unwrap();
    assert_eq!(status_of(&read_until_closed(&mut check).await), 404);
}

#[tokio::test]
async fn a_request_naming_two_hosts_is_refused_over_both_protocols() {
    let server = Server::start(&[]);
    // HTTP/1.1: two Host headers, the first the instance's own.
    let mut stream = server.tls().await;
    let request = format!(
        "GET /config?{API} HTTP/1.1\r\nHost: localhost\r\nHost: other.example\r\nAuthorization: {}\r\n\
         Connection: close\r\n\r\n",
        server.token
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut stream).await;
    assert_eq!(status_of(&answer), 400, "{}", String::from_utf8_lossy(&answer));
    assert!(String::from_utf8_lossy(&answer).contains("400004"));
    // HTTP/2: a Host header beside an :authority that differs from it.
    let (mut h2, h2_conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(server.tls().await)).await.unwrap();
    tokio::spawn(h2_conn);
    let mut request = server.config_request();
    request.headers_mut().insert(http::header::HOST, http::HeaderValue::from_static("other.example"));
    let answer = h2.send_request(request).await.unwrap();
    assert_eq!(answer.status(), 400);
    assert_eq!(answer.headers()["x-ms-error-code"], "400004");
    // The same request with the Host the authority names is served.
    let mut request = server.config_request();
    request.headers_mut().insert(http::header::HOST, http::HeaderValue::from_static("localhost"));
    assert_eq!(h2.send_request(request).await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_client_that_does_not_take_its_response_is_closed() {
    // An HTTP/2 client that grants no flow-control window: the answer's headers arrive, its body never can.
    let server = Server::start(&["--idle-timeout", "1", "--max-connections", "1"]);
    let mut client = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    client.initial_stream_window_size(0);
    let (mut h2, h2_conn) = client.handshake(TokioIo::new(server.tls().await)).await.unwrap();
    let h2_conn = tokio::spawn(h2_conn);
    let answer = h2.send_request(server.config_request()).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(timeout(BOUND, h2_conn).await.is_ok(), "a stalled response holds its connection open");
    // The only slot is free again.
    assert_eq!(timeout(BOUND, server.get_config()).await.expect("served"), 200);
}

#[tokio::test]
async fn a_client_that_comes_back_resumes_with_its_session_ticket_unless_tickets_are_off() {
    for (args, expected) in
        [(&[][..], rustls::HandshakeKind::Resumed), (&["--tls-tickets", "0"][..], rustls::HandshakeKind::Full)]
    {
        let server = Server::start(args);
        // The first connection is a full handshake; the ticket arrives while the answer is read.
        assert_eq!(server.get_config().await, 200);
        let mut stream = server.tls().await;
        assert_eq!(stream.get_ref().1.handshake_kind(), Some(expected), "server args {args:?}");
        // The client lists AES-256-GCM-SHA384 first; the server picks the SHA-256 suite (cheaper handshake hashing).
        let suite = stream.get_ref().1.negotiated_cipher_suite().unwrap().suite();
        assert_eq!(suite, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        // A resumed connection serves requests as any other.
        let request = format!(
            "GET /config?{API} HTTP/1.1\r\nHost: localhost\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
            server.token
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(status_of(&read_until_closed(&mut stream).await), 200, "server args {args:?}");
    }
}
