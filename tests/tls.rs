//! TLS listeners over real loopback sockets, with a real rustls client: keep-alive and
//! pipelined requests, every reply of one read in one write, SNI (exact, wildcard, default),
//! ALPN, resumption, TLS 1.2, client certificates, a large file under the watermarks, and bad
//! input (plain HTTP, random bytes, a stalled handshake on a fake clock, a client that
//! rejects the certificate) closed and counted by cause.

mod tls_support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use herd::clock::FakeClock;
use herd::http::{Body, HttpService, Request, Response, Router, StaticDir};
use herd::tls::rustls::{self, pki_types::pem::PemObject, ClientConfig};
use herd::tls::{CertFiles, ClientAuth, TlsAcceptor, TlsFailure, TlsSettings};
use herd::{CloseReason, Server, ServerHandle};
use herd_testkit::certs::{Leaf, TestCa};
use herd_testkit::{wait_until, WAIT};
use tls_support::{client_config, connect, get, read_response};

fn files(l: &Leaf) -> CertFiles {
    CertFiles {
        cert: l.cert.clone(),
        key: l.key.clone(),
        ocsp: None,
    }
}

fn settings(certs: &[&Leaf]) -> TlsSettings {
    TlsSettings {
        certs: certs.iter().map(|l| files(l)).collect(),
        alpn: vec!["http/1.1".into()],
        ..TlsSettings::default()
    }
}

fn router() -> Router {
    Router::new()
        .get("/hello", |_: Request<Body>| {
            Response::new(Body::from_static(b"Hello, World!"))
        })
        .post("/echo", |r: Request<Body>| {
            Response::new(Body::from(r.into_body().into_bytes().unwrap()))
        })
}

fn serve_tls(router: Router, acceptor: TlsAcceptor, clock: Option<&FakeClock>) -> ServerHandle {
    let mut server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .tls(acceptor);
    if let Some(c) = clock {
        server = server.clock(Arc::new(c.clone()));
    }
    HttpService::new(router).serve(server).unwrap()
}

#[test]
fn keep_alive_pipelining_and_one_write_per_read() {
    let ca = TestCa::new("ka");
    let leaf = ca.server("site", &["localhost"]);
    let acceptor = TlsAcceptor::new(settings(&[&leaf]).build().unwrap());
    let server = serve_tls(router(), acceptor, None);
    let cfg = Arc::new(client_config(&ca.ca_file(), true));
    let mut s = connect(server.local_addr(), &cfg, "localhost");
    let mut buf = Vec::new();
    for _ in 0..3 {
        let (status, body) = get(&mut s, "/hello", &mut buf);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, b"Hello, World!");
    }
    assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    // The client lists AES-256-GCM first; the server's order (AES-128-GCM first) decides.
    assert_eq!(
        s.conn.negotiated_cipher_suite().map(|c| c.suite()),
        Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
    );
    // 64 pipelined requests in one record: their replies come back, in order.
    let before = server.stats().writes;
    let mut burst = Vec::new();
    for i in 0..64 {
        let body = format!("req-{i}");
        burst.extend_from_slice(
            format!(
                "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    }
    s.write_all(&burst).unwrap();
    for i in 0..64 {
        let (status, body) = read_response(&mut s, &mut buf);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, format!("req-{i}").as_bytes());
    }
    let writes = server.stats().writes - before;
    assert!(
        writes <= 4,
        "64 pipelined replies took {writes} sends (one per read event expected)"
    );
    let st = server.stats();
    assert_eq!(st.tls_handshakes, 1);
    assert_eq!(st.tls_failed.iter().sum::<u64>(), 0);
}

#[test]
fn sni_exact_wildcard_and_default_and_a_rejected_certificate() {
    let ca = TestCa::new("sni");
    let a = ca.server("a", &["a.test"]);
    let b = ca.server("b", &["*.b.test"]);
    let acceptor = TlsAcceptor::new(settings(&[&a, &b]).build().unwrap());
    let server = serve_tls(router(), acceptor, None);
    let cfg = Arc::new(client_config(&ca.ca_file(), false));
    // The client verifies the name, so a wrong certificate fails the handshake.
    for name in ["a.test", "x.b.test", "y.b.test"] {
        let mut s = connect(server.local_addr(), &cfg, name);
        let mut buf = Vec::new();
        let (status, _) = get(&mut s, "/hello", &mut buf);
        assert_eq!(status, "HTTP/1.1 200 OK", "{name}");
    }
    // An unknown name gets the default (a.test): the client rejects it and says so.
    let mut s = connect(server.local_addr(), &cfg, "other.test");
    let err = s
        .write_all(b"GET /hello HTTP/1.1\r\n\r\n")
        .and_then(|_| s.flush());
    let mut sink = [0u8; 16];
    let read = s.read(&mut sink);
    assert!(
        err.is_err() || read.is_err(),
        "the client must refuse the certificate"
    );
    drop(s);
    wait_until("the rejection is counted", || {
        server.stats().tls_failed[TlsFailure::CertRejected.index()] == 1
    });
    assert_eq!(server.stats().closed_by(CloseReason::Tls), 1);
}

#[test]
fn sessions_resume_and_tls12_works() {
    let ca = TestCa::new("resume");
    let leaf = ca.server("site", &["localhost"]);
    let acceptor = TlsAcceptor::new(settings(&[&leaf]).build().unwrap());
    let server = serve_tls(router(), acceptor, None);
    let cfg = Arc::new(client_config(&ca.ca_file(), false));
    for _ in 0..2 {
        // The same client config keeps the tickets of the first connection.
        let mut s = connect(server.local_addr(), &cfg, "localhost");
        let mut buf = Vec::new();
        assert_eq!(get(&mut s, "/hello", &mut buf).1, b"Hello, World!");
    }
    wait_until("two handshakes", || server.stats().tls_handshakes == 2);
    assert_eq!(server.stats().tls_resumed, 1, "the second one resumed");

    let roots = tls_support::roots(&ca.ca_file());
    let cfg12 = Arc::new(
        ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    for _ in 0..2 {
        let mut s = connect(server.local_addr(), &cfg12, "localhost");
        let mut buf = Vec::new();
        assert_eq!(get(&mut s, "/hello", &mut buf).1, b"Hello, World!");
        assert_eq!(
            s.conn.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
    }
    wait_until("four handshakes", || server.stats().tls_handshakes == 4);
    assert_eq!(server.stats().tls_resumed, 2, "TLS 1.2 resumed too");
}

#[test]
fn client_certificates_are_verified() {
    let ca = TestCa::new("mtls");
    let leaf = ca.server("site", &["localhost"]);
    let client = ca.client("client", "alice");
    let mut st = settings(&[&leaf]);
    st.client_ca = Some(ca.ca_file());
    st.client_auth = ClientAuth::Required;
    let server = serve_tls(router(), TlsAcceptor::new(st.build().unwrap()), None);

    let roots = tls_support::roots(&ca.ca_file());
    let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(&client.cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&client.key).unwrap();
    let with_cert = Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap(),
    );
    let mut s = connect(server.local_addr(), &with_cert, "localhost");
    let mut buf = Vec::new();
    assert_eq!(get(&mut s, "/hello", &mut buf).1, b"Hello, World!");

    let without = Arc::new(client_config(&ca.ca_file(), false));
    let mut s = connect(server.local_addr(), &without, "localhost");
    let _ = s.write_all(b"GET /hello HTTP/1.1\r\n\r\n");
    let mut sink = [0u8; 16];
    assert!(
        !matches!(s.read(&mut sink), Ok(n) if n > 0),
        "no answer without a client certificate"
    );
    wait_until("the missing client certificate is counted", || {
        server.stats().tls_failed[TlsFailure::ClientCert.index()] == 1
    });
}

#[test]
fn a_large_file_streams_under_the_watermarks() {
    let ca = TestCa::new("bigfile");
    let leaf = ca.server("site", &["localhost"]);
    let root = ca.dir().join("www");
    std::fs::create_dir_all(&root).unwrap();
    let data = herd_testkit::pattern(7, 3 << 20);
    std::fs::write(root.join("big.bin"), &data).unwrap();
    let router = Router::new().statics("/", StaticDir::new(&root).unwrap());
    let server = serve_tls(
        router,
        TlsAcceptor::new(settings(&[&leaf]).build().unwrap()),
        None,
    );
    let cfg = Arc::new(client_config(&ca.ca_file(), false));
    let mut s = connect(server.local_addr(), &cfg, "localhost");
    s.sock.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    // Read slowly at first, so the server meets a full socket.
    std::thread::sleep(Duration::from_millis(50));
    let mut buf = Vec::new();
    let (status, body) = read_response(&mut s, &mut buf);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body.len(), data.len());
    assert!(body == data, "the file arrives intact");
    // The connection is still usable.
    assert_eq!(get(&mut s, "/big.bin", &mut buf).1.len(), data.len());
}

fn raw(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = herd_testkit::connect(addr);
    s.write_all(bytes).unwrap();
    herd_testkit::read_to_close(&mut s)
}

#[test]
fn a_large_in_memory_body_is_sealed_until_the_socket_fills() {
    // A reply larger than rustls' 64 KiB buffer: every batch is written until the socket is
    // full, so the writable edge the send side waits for comes (it once stalled here).
    let ca = TestCa::new("mem");
    let leaf = ca.server("site", &["localhost"]);
    let big: &'static [u8] = Box::leak(herd_testkit::pattern(3, 4 << 20).into_boxed_slice());
    let router = router().get("/big", move |_: Request<Body>| {
        Response::new(Body::from_static(big))
    });
    let server = serve_tls(
        router,
        TlsAcceptor::new(settings(&[&leaf]).build().unwrap()),
        None,
    );
    let cfg = Arc::new(client_config(&ca.ca_file(), false));
    let mut s = connect(server.local_addr(), &cfg, "localhost");
    let mut buf = Vec::new();
    for _ in 0..2 {
        let (status, body) = get(&mut s, "/big", &mut buf);
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(body == big, "the body arrives whole and in order");
    }
}

#[test]
fn plain_http_random_bytes_and_a_stalled_handshake_are_closed_and_counted() {
    let ca = TestCa::new("bad");
    let leaf = ca.server("site", &["localhost"]);
    let clock = FakeClock::new(1_000);
    let acceptor = TlsAcceptor::new(settings(&[&leaf]).build().unwrap())
        .plain_http_reply(true)
        .handshake_timeout(Duration::from_secs(5));
    let server = serve_tls(router(), acceptor, Some(&clock));
    let addr = server.local_addr();

    let reply = raw(addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(text.contains("HTTPS"), "{text}");

    let junk = herd_testkit::pattern(99, 600);
    let _ = raw(addr, &junk);

    // A ClientHello cut short, then silence: the handshake timeout closes it.
    let mut stalled = herd_testkit::connect(addr);
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    wait_until("the stalled connection is open", || {
        server.stats().open == 1
    });
    clock.advance(6_000);
    server.tick();
    assert!(herd_testkit::is_closed_within(&mut stalled, WAIT));

    // A client that closes in the middle of its hello.
    let mut cut = herd_testkit::connect(addr);
    cut.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap();
    drop(cut);

    wait_until("every failure is counted", || {
        let st = server.stats();
        st.closed_by(CloseReason::Tls) == 4
    });
    let st = server.stats();
    assert_eq!(st.tls_failed[TlsFailure::NotTls.index()], 2, "{st:?}");
    assert_eq!(st.tls_failed[TlsFailure::Timeout.index()], 1);
    assert_eq!(st.tls_failed[TlsFailure::Eof.index()], 1);
    assert_eq!(st.tls_handshakes, 0);

    // The server still serves.
    let cfg = Arc::new(client_config(&ca.ca_file(), false));
    let mut s = connect(addr, &cfg, "localhost");
    let mut buf = Vec::new();
    assert_eq!(get(&mut s, "/hello", &mut buf).1, b"Hello, World!");
}

#[test]
fn bad_settings_say_which_file() {
    let ca = TestCa::new("badfiles");
    let a = ca.server("a", &["a.test"]);
    let b = ca.server("b", &["b.test"]);
    let mut st = settings(&[&a]);
    st.certs[0].key = b.key.clone();
    let e = st.build().unwrap_err().to_string();
    assert!(e.contains("does not match"), "{e}");
    let mut st = settings(&[&a]);
    st.certs[0].cert = ca.dir().join("missing.pem");
    let e = st.build().unwrap_err().to_string();
    assert!(e.contains("missing.pem"), "{e}");
    std::fs::write(ca.dir().join("garbage.pem"), "not a pem").unwrap();
    let mut st = settings(&[&a]);
    st.certs[0].cert = ca.dir().join("garbage.pem");
    let e = st.build().unwrap_err().to_string();
    assert!(e.contains("garbage.pem"), "{e}");
}
