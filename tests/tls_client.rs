//! TLS cosockets (the client side) over real loopback sockets: a task calls herd's own TLS
//! listener and `openssl s_server`, verifies the certificate against a CA file, sends SNI and
//! ALPN, keeps the connection alive, resumes its session on the next connection, presents a
//! client certificate, and moves 16 MiB; a certificate that is expired, for another name or
//! from an unknown issuer fails the handshake with the reason (and the server counts the
//! client's alert); a server that never answers times the handshake out on a fake clock.

mod common;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::frame;
use herd::clock::FakeClock;
use herd::codec::LengthDelimited;
use herd::http::{Body, HttpService, Request, Response, Router};
use herd::task::{TcpStream, TlsConnector, TlsStream};
use herd::tls::{CertFiles, ClientAuth, TlsAcceptor, TlsFailure, TlsSettings};
use herd::{CloseReason, Conn, Handler, Server, ServerHandle};
use herd_testkit::certs::{Leaf, TestCa};
use herd_testkit::*;

const BIG: usize = 16 << 20;

fn files(l: &Leaf) -> CertFiles {
    CertFiles {
        cert: l.cert.clone(),
        key: l.key.clone(),
        ocsp: None,
    }
}

/// herd's TLS HTTP listener with `certs` (the first is the default), answering `/hello` and
/// a 16 MiB `/big`.
fn https(certs: &[&Leaf], client_ca: Option<&TestCa>) -> ServerHandle {
    let mut settings = TlsSettings {
        certs: certs.iter().map(|l| files(l)).collect(),
        alpn: vec!["http/1.1".into()],
        ..TlsSettings::default()
    };
    if let Some(ca) = client_ca {
        settings.client_ca = Some(ca.ca_file());
        settings.client_auth = ClientAuth::Required;
    }
    let big: &'static [u8] = Box::leak(pattern(7, BIG).into_boxed_slice());
    let router = Router::new()
        .get("/hello", |_: Request<Body>| {
            Response::new(Body::from_static(b"Hello, World!"))
        })
        .get("/big", move |_: Request<Body>| {
            Response::new(Body::from_static(big))
        });
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .tls(TlsAcceptor::new(settings.build().unwrap()));
    HttpService::new(router).serve(server).unwrap()
}

/// One response: status line and body (Content-Length framing).
async fn response(s: &mut TlsStream) -> io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf.split_off(head_end);
    while body.len() < len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok((head.lines().next().unwrap_or("").to_owned(), body))
}

/// `times` keep-alive GETs of `path` as `name` on one TLS connection; a summary line.
async fn get(
    tls: TlsConnector,
    port: u16,
    name: String,
    path: String,
    times: usize,
) -> io::Result<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = tls.connect_to(addr, &name, Duration::from_secs(5)).await?;
    let mut out = String::new();
    for _ in 0..times {
        let req = format!("GET {path} HTTP/1.1\r\nHost: {name}\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let (status, body) = response(&mut s).await?;
        let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
        out = format!("{status} len={} sum={sum}", body.len());
    }
    let alpn = s
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).to_string());
    Ok(format!(
        "{out} alpn={} resumed={}",
        alpn.unwrap_or_else(|| "-".into()),
        s.resumed()
    ))
}

/// Answers `get PORT NAME PATH TIMES` and `hang PORT` commands with a task each, through the
/// connector it was made with.
struct Driver {
    tls: TlsConnector,
}

impl Handler for Driver {
    type State = ();
    type Codec = LengthDelimited;

    fn new_codec(&mut self) -> LengthDelimited {
        LengthDelimited::new(1 << 20)
    }

    fn on_open(&mut self, _cx: &mut Conn<'_, Self>) -> Option<()> {
        Some(())
    }

    fn on_message(&mut self, cx: &mut Conn<'_, Self>, _st: &mut (), msg: &[u8]) {
        let msg = String::from_utf8_lossy(msg).to_string();
        let args: Vec<String> = msg.split(' ').map(str::to_owned).collect();
        let h = cx.handle();
        let tls = self.tls.clone();
        let port: u16 = args[1].parse().unwrap();
        let fut = async move {
            match args[0].as_str() {
                "get" => {
                    let times = args[4].parse().unwrap();
                    get(tls, port, args[2].clone(), args[3].clone(), times).await
                }
                "hang" => {
                    let addr = SocketAddr::from(([127, 0, 0, 1], port));
                    let tcp = TcpStream::connect(addr).await?;
                    tls.connect("localhost", tcp)
                        .await
                        .map(|_| "connected".into())
                }
                other => Ok(format!("unknown {other}")),
            }
        };
        cx.spawn(async move {
            let text = match fut.await {
                Ok(s) => format!("ok {s}"),
                Err(e) => format!("error {:?} {e}", e.kind()),
            };
            h.send(frame(text.as_bytes()));
        });
    }

    fn on_close(&mut self, _cx: &mut Conn<'_, Self>, _st: (), _reason: CloseReason) {}
}

fn driver(tls: TlsConnector, clock: Option<&FakeClock>) -> ServerHandle {
    let mut b = Server::new().bind("127.0.0.1:0").unwrap().loops(1);
    if let Some(c) = clock {
        b = b.clock(Arc::new(c.clone()));
    }
    b.serve(move || Driver { tls: tls.clone() }).unwrap()
}

fn ask(d: &ServerHandle, msg: &str) -> String {
    let mut c = connect(d.local_addr());
    c.write_all(&frame(msg.as_bytes())).unwrap();
    let len = u32::from_be_bytes(read_n(&mut c, 4).try_into().unwrap()) as usize;
    String::from_utf8(read_n(&mut c, len)).unwrap()
}

#[test]
fn verified_keep_alive_alpn_resumption_and_16_mib() {
    let ca = TestCa::new("tlsc-ok");
    let site = ca.server("site", &["localhost"]);
    let server = https(&[&site], None);
    let port = server.local_addr().port();
    let tls = TlsConnector::ca_file(ca.ca_file())
        .unwrap()
        .alpn(&["http/1.1"]);
    let d = driver(tls, None);
    assert_eq!(
        ask(&d, &format!("get {port} localhost /hello 3")),
        "ok HTTP/1.1 200 OK len=13 sum=1129 alpn=http/1.1 resumed=false"
    );
    // The connector kept the session: the next connection resumes it.
    assert_eq!(
        ask(&d, &format!("get {port} localhost /hello 1")),
        "ok HTTP/1.1 200 OK len=13 sum=1129 alpn=http/1.1 resumed=true"
    );
    let sum: u64 = pattern(7, BIG).iter().map(|&b| u64::from(b)).sum();
    assert_eq!(
        ask(&d, &format!("get {port} localhost /big 2")),
        format!("ok HTTP/1.1 200 OK len={BIG} sum={sum} alpn=http/1.1 resumed=true")
    );
    let st = server.stats();
    assert_eq!(st.tls_handshakes, 3);
    assert_eq!(st.tls_failed.iter().sum::<u64>(), 0);
    d.stop(Duration::ZERO);
    server.stop(Duration::ZERO);
}

#[test]
fn a_wrong_expired_or_unknown_certificate_fails_with_its_reason() {
    let ca = TestCa::new("tlsc-bad");
    let site = ca.server("site", &["localhost"]);
    let old = ca.expired_server("old", &["old.test"]);
    let server = https(&[&site, &old], None);
    let port = server.local_addr().port();
    let d = driver(TlsConnector::ca_file(ca.ca_file()).unwrap(), None);
    // Another name gets the default certificate, which is not valid for it.
    let r = ask(&d, &format!("get {port} other.test /hello 1"));
    assert!(
        r.starts_with("error InvalidData") && r.contains("not valid for name"),
        "{r}"
    );
    let r = ask(&d, &format!("get {port} old.test /hello 1"));
    assert!(
        r.starts_with("error InvalidData") && r.contains("certificate expired"),
        "{r}"
    );
    // Mozilla's roots do not know the test CA.
    let public = driver(TlsConnector::webpki_roots(), None);
    let r = ask(&public, &format!("get {port} localhost /hello 1"));
    assert!(
        r.starts_with("error InvalidData") && r.contains("UnknownIssuer"),
        "{r}"
    );
    // Each refusal reached the server as an alert: closed and counted, and it still serves.
    wait_until("three rejections counted", || {
        server.stats().tls_failed[TlsFailure::CertRejected.index()] == 3
    });
    assert_eq!(server.stats().closed_by(CloseReason::Tls), 3);
    assert!(ask(&d, &format!("get {port} localhost /hello 1")).starts_with("ok HTTP/1.1 200"));
    public.stop(Duration::ZERO);
    d.stop(Duration::ZERO);
    server.stop(Duration::ZERO);
}

#[test]
fn client_certificates_for_mtls_upstreams() {
    let ca = TestCa::new("tlsc-mtls");
    let site = ca.server("site", &["localhost"]);
    let me = ca.client("me", "client.test");
    let server = https(&[&site], Some(&ca));
    let port = server.local_addr().port();
    let with = TlsConnector::ca_file(ca.ca_file())
        .unwrap()
        .client_cert(&files(&me))
        .unwrap();
    let d = driver(with, None);
    assert!(ask(&d, &format!("get {port} localhost /hello 1")).starts_with("ok HTTP/1.1 200"));
    let without = driver(TlsConnector::ca_file(ca.ca_file()).unwrap(), None);
    let r = ask(&without, &format!("get {port} localhost /hello 1"));
    assert!(r.starts_with("error"), "{r}");
    without.stop(Duration::ZERO);
    d.stop(Duration::ZERO);
    server.stop(Duration::ZERO);
}

#[test]
fn a_silent_server_times_the_handshake_out_on_the_loop_clock() {
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let clock = FakeClock::new(1_000);
    let tls = TlsConnector::webpki_roots().handshake_timeout(Duration::from_secs(3));
    let d = driver(tls, Some(&clock));
    let mut c = connect(d.local_addr());
    c.write_all(&frame(format!("hang {port}").as_bytes()))
        .unwrap();
    let (_peer, _) = silent.accept().unwrap();
    wait_until("the task waits for the handshake", || {
        d.stats().msgs_in == 1
    });
    clock.advance(2_000);
    d.tick();
    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut b = [0u8; 1];
    assert!(c.peek(&mut b).is_err(), "no answer before the timeout");
    c.set_read_timeout(None).unwrap();
    clock.advance(1_000);
    d.tick();
    let len = u32::from_be_bytes(read_n(&mut c, 4).try_into().unwrap()) as usize;
    let r = String::from_utf8(read_n(&mut c, len)).unwrap();
    assert!(r.starts_with("error TimedOut"), "{r}");
    d.stop(Duration::ZERO);
}

/// `openssl s_server -www` with `leaf`, on a free port; killed on drop.
struct OpenSsl(Child, u16);

impl Drop for OpenSsl {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl_server(leaf: &Leaf, tls13: bool) -> OpenSsl {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new("openssl");
    cmd.args(["s_server", "-www", "-quiet", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&leaf.cert)
        .arg("-key")
        .arg(&leaf.key)
        .arg(if tls13 { "-tls1_3" } else { "-tls1_2" })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd
        .spawn()
        .expect("openssl (installed by .ci/run) must be on PATH");
    let server = OpenSsl(child, port);
    wait_until("openssl s_server listens", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    server
}

#[test]
fn openssl_s_server_is_a_peer_for_tls12_and_tls13() {
    let ca = TestCa::new("tlsc-openssl");
    let site = ca.server("site", &["localhost"]);
    let d = driver(TlsConnector::ca_file(ca.ca_file()).unwrap(), None);
    for tls13 in [false, true] {
        let peer = openssl_server(&site, tls13);
        // s_server -www answers with its status page as HTTP/1.0 and closes.
        let r = ask(&d, &format!("get {} localhost / 1", peer.1));
        assert!(r.starts_with("ok HTTP/1.0 200 ok"), "tls1.3={tls13}: {r}");
    }
    d.stop(Duration::ZERO);
}
