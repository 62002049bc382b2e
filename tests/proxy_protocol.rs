//! The PROXY protocol on real loopback connections: the handler sees the client address from
//! a v1 or v2 header (split across writes or sent together with the first request), the
//! bytes after the header reach the codec untouched, and a header that is junk, late,
//! missing, or from an untrusted source closes the connection with a counted reason before
//! the handler ever meets it. Also in front of TLS (the header is read below the session).

mod common;
mod tls_support;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use herd::clock::FakeClock;
use herd::codec::LengthDelimited;
use herd::http::{Body, HttpService, Request, Response, Router};
use herd::proto::proxy::{encode_v2, Tlv, TLV_ALPN};
use herd::proxy::{ProxyFailure, ProxyProtocol};
use herd::tls::{CertFiles, TlsAcceptor, TlsSettings};
use herd::{CloseReason, Conn, Handler, Server, ServerHandle};
use herd_testkit::certs::TestCa;
use herd_testkit::*;

/// Answers every frame with "peer socket alpn" as this connection sees them.
struct Who;

impl Handler for Who {
    type State = ();
    type Codec = LengthDelimited;

    fn new_codec(&mut self) -> LengthDelimited {
        LengthDelimited::new(1 << 16)
    }

    fn on_open(&mut self, _cx: &mut Conn<'_, Self>) -> Option<()> {
        Some(())
    }

    fn on_message(&mut self, cx: &mut Conn<'_, Self>, _st: &mut (), msg: &[u8]) {
        let alpn = cx
            .proxy_header()
            .and_then(|h| h.tlv(TLV_ALPN))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| "-".into());
        let reply = format!(
            "{} {} {} {}",
            cx.peer_addr(),
            cx.socket_addr(),
            alpn,
            String::from_utf8_lossy(msg)
        );
        cx.send(reply.as_bytes());
    }
}

fn proxy(trusted: &[&str]) -> ProxyProtocol {
    ProxyProtocol {
        trusted: trusted.iter().map(|t| t.parse().unwrap()).collect(),
        ..ProxyProtocol::default()
    }
}

fn serve_who(p: ProxyProtocol, clock: Option<&FakeClock>) -> ServerHandle {
    let mut b = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .proxy_protocol(p);
    if let Some(c) = clock {
        b = b.clock(Arc::new(c.clone()));
    }
    b.serve(|| Who).unwrap()
}

fn ask(s: &mut std::net::TcpStream, msg: &[u8]) -> String {
    let got = roundtrip_frame(s, msg);
    String::from_utf8(got).unwrap()
}

/// Send one frame and read one frame back (its body).
fn roundtrip_frame(s: &mut std::net::TcpStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(&frame(msg)).unwrap();
    let head = read_n(s, 4);
    let n = u32::from_be_bytes(head.try_into().unwrap()) as usize;
    read_n(s, n)
}

#[test]
fn v1_header_gives_the_client_address() {
    let server = serve_who(proxy(&["127.0.0.0/8"]), None);
    let mut c = connect(server.local_addr());
    let local = c.local_addr().unwrap();
    // Header and first frame in one write: the frame must not be lost behind the header.
    let mut first = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\n".to_vec();
    first.extend_from_slice(&frame(b"one"));
    c.write_all(&first).unwrap();
    let head = read_n(&mut c, 4);
    let n = u32::from_be_bytes(head.try_into().unwrap()) as usize;
    let reply = String::from_utf8(read_n(&mut c, n)).unwrap();
    assert_eq!(reply, format!("203.0.113.7:40000 {local} - one"));
    assert_eq!(
        ask(&mut c, b"two"),
        format!("203.0.113.7:40000 {local} - two")
    );
    let s = server.stats();
    assert_eq!(s.proxy_headers, 1);
    assert_eq!(s.proxy_failed.iter().sum::<u64>(), 0);
}

#[test]
fn v2_header_split_across_writes_with_tlvs() {
    let server = serve_who(proxy(&[]), None);
    let mut c = connect(server.local_addr());
    c.set_nodelay(true).unwrap();
    let src: SocketAddr = "[2001:db8::5]:5555".parse().unwrap();
    let dst: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
    let mut hdr = Vec::new();
    let tlvs = [Tlv {
        kind: TLV_ALPN,
        value: b"h2".to_vec(),
    }];
    encode_v2(&mut hdr, src, dst, &tlvs);
    // The header in three pieces, with pauses the loop sees as separate reads.
    for piece in [&hdr[..5], &hdr[5..17], &hdr[17..]] {
        c.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let local = c.local_addr().unwrap();
    assert_eq!(ask(&mut c, b"x"), format!("{src} {local} h2 x"));
    assert_eq!(server.stats().proxy_headers, 1);
}

#[test]
fn local_command_keeps_the_socket_address() {
    let server = serve_who(proxy(&[]), None);
    let mut c = connect(server.local_addr());
    // A v2 LOCAL header (a balancer's health check): version 2, command 0, no addresses.
    let mut hdr = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    hdr.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    c.write_all(&hdr).unwrap();
    let local = c.local_addr().unwrap();
    assert_eq!(ask(&mut c, b"hc"), format!("{local} {local} - hc"));
}

fn refused(server: &ServerHandle, bytes: &[u8], why: ProxyFailure, reason: CloseReason) {
    let before = server.stats();
    let mut c = connect(server.local_addr());
    let _ = c.write_all(bytes);
    assert_eq!(
        read_to_close(&mut c),
        b"",
        "{why:?}: closed without a reply"
    );
    wait_until("counted", || {
        let s = server.stats();
        s.proxy_failed[why.index()] == before.proxy_failed[why.index()] + 1
            && s.closed_by(reason) == before.closed_by(reason) + 1
    });
}

#[test]
fn junk_and_early_close_are_counted_and_closed() {
    let server = serve_who(proxy(&[]), None);
    refused(
        &server,
        &frame(b"no header"),
        ProxyFailure::NotProxy,
        CloseReason::Decode,
    );
    refused(
        &server,
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 bad-port\r\n",
        ProxyFailure::BadV1,
        CloseReason::Decode,
    );
    refused(
        &server,
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 and then no line end for a long long long long long long long long long long long long time",
        ProxyFailure::TooLong,
        CloseReason::Decode,
    );
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4]); // TCP4 needs 12 bytes
    refused(&server, &v2, ProxyFailure::BadV2, CloseReason::Decode);
    // A header declaring more than max_len is refused from its fixed part.
    let mut big = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    big.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    refused(&server, &big, ProxyFailure::TooLong, CloseReason::Decode);
    // Closed half-way through the header.
    let before = server.stats();
    let mut c = connect(server.local_addr());
    c.write_all(b"PROXY TCP4 1.2").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    c.shutdown(std::net::Shutdown::Write).unwrap();
    drop(c);
    let c2 = connect(server.local_addr());
    drop(c2);
    wait_until("eof counted", || {
        server.stats().proxy_failed[ProxyFailure::Eof.index()]
            > before.proxy_failed[ProxyFailure::Eof.index()]
    });
    // Nothing reached the handler, and a good connection is still served.
    let mut ok = connect(server.local_addr());
    ok.write_all(b"PROXY UNKNOWN\r\n").unwrap();
    let local = ok.local_addr().unwrap();
    assert_eq!(ask(&mut ok, b"fine"), format!("{local} {local} - fine"));
}

#[test]
fn a_header_that_never_comes_times_out_on_the_loop_clock() {
    let clock = FakeClock::new(1_000);
    let server = serve_who(proxy(&[]), Some(&clock));
    let mut c = connect(server.local_addr());
    c.write_all(b"PROXY TCP4 ").unwrap();
    wait_until("accepted", || server.stats().accepted == 1);
    clock.advance(4_900);
    server.tick();
    assert_eq!(
        server.stats().proxy_failed[ProxyFailure::Timeout.index()],
        0
    );
    assert!(!is_closed_within(&mut c, Duration::from_millis(50)));
    clock.advance(200);
    server.tick();
    assert!(is_closed_within(&mut c, WAIT));
    let s = server.stats();
    assert_eq!(s.proxy_failed[ProxyFailure::Timeout.index()], 1);
    assert_eq!(s.closed_by(CloseReason::Timeout), 1);
}

#[test]
fn untrusted_sources_are_refused_at_accept() {
    let server = serve_who(proxy(&["10.0.0.0/8", "::1"]), None);
    let mut c = connect(server.local_addr());
    let _ = c.write_all(b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 443\r\n");
    let _ = c.write_all(&frame(b"hi"));
    assert_eq!(read_to_close(&mut c), b"");
    let s = server.stats();
    assert_eq!(s.proxy_failed[ProxyFailure::Untrusted.index()], 1);
    assert_eq!(s.closed_by(CloseReason::Refused), 1);
    assert_eq!(s.proxy_headers, 0);
}

#[test]
fn per_ip_limit_counts_the_client_from_the_header() {
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .max_connections_per_ip(1)
        .proxy_protocol(proxy(&[]))
        .serve(|| Who)
        .unwrap();
    let hello = |ip: &str| {
        let mut c = connect(server.local_addr());
        c.write_all(format!("PROXY TCP4 {ip} 192.0.2.1 1000 80\r\n").as_bytes())
            .unwrap();
        c
    };
    // Two clients behind one balancer address: both served, one connection each.
    let mut a = hello("198.51.100.1");
    let mut b = hello("198.51.100.2");
    assert!(ask(&mut a, b"a").starts_with("198.51.100.1:1000 "));
    assert!(ask(&mut b, b"b").starts_with("198.51.100.2:1000 "));
    // A second connection of the first client is over its limit.
    let mut a2 = hello("198.51.100.1");
    let _ = a2.write_all(&frame(b"x"));
    assert_eq!(read_to_close(&mut a2), b"");
    assert_eq!(server.stats().closed_by(CloseReason::Limit), 1);
    // Its first connection closing frees the slot.
    drop(a);
    wait_until("released", || server.stats().open == 1);
    let mut a3 = hello("198.51.100.1");
    assert!(ask(&mut a3, b"again").starts_with("198.51.100.1:1000 "));
}

#[test]
fn header_before_tls_and_the_access_log_sees_the_client() {
    let ca = TestCa::new("proxy");
    let leaf = ca.server("site", &["localhost"]);
    let settings = TlsSettings {
        certs: vec![CertFiles {
            cert: leaf.cert.clone(),
            key: leaf.key.clone(),
            ocsp: None,
        }],
        alpn: vec!["http/1.1".into()],
        ..TlsSettings::default()
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let router = Router::new().get("/ip", |_: Request<Body>| {
        Response::new(Body::from_static(b"ok"))
    });
    let server = HttpService::new(router)
        .access_log(move |e| log.lock().unwrap().push(e.peer_addr))
        .serve(
            Server::new()
                .bind("127.0.0.1:0")
                .unwrap()
                .loops(1)
                .tls(TlsAcceptor::new(settings.build().unwrap()))
                .proxy_protocol(proxy(&["127.0.0.1"])),
        )
        .unwrap();
    let cfg = Arc::new(tls_support::client_config(&ca.ca_file(), true));
    let mut s = tls_support::connect(server.local_addr(), &cfg, "localhost");
    s.sock
        .write_all(b"PROXY TCP6 2001:db8::9 2001:db8::1 61000 443\r\n")
        .unwrap();
    let mut buf = Vec::new();
    let (status, body) = tls_support::get(&mut s, "/ip", &mut buf);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, b"ok");
    let want: SocketAddr = "[2001:db8::9]:61000".parse().unwrap();
    wait_until("logged", || !seen.lock().unwrap().is_empty());
    assert_eq!(seen.lock().unwrap()[0], want);
    assert_eq!(server.stats().proxy_headers, 1);
}
