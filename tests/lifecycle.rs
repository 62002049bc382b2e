//! Connection lifecycle over real loopback sockets: open once, close once, nothing after,
//! under racing peer closes, server closes and idle timeouts; panics stay contained.

mod common;

use std::io::Write;
use std::net::Shutdown;
use std::time::Duration;

use common::*;
use herd::clock::FakeClock;
use herd::{CloseReason, Server};
use herd_testkit::*;

#[test]
fn open_messages_close_in_order() {
    let (server, log) = serve_probe(Server::new().bind("127.0.0.1:0").unwrap().loops(2));
    let mut c = connect(server.local_addr());
    assert_eq!(roundtrip(&mut c, &frame(b"one")), frame(b"one"));
    assert_eq!(roundtrip(&mut c, &frame(b"two")), frame(b"two"));
    drop(c);
    wait_until("close", || log.closes() == 1);
    let ev = log.events();
    assert!(matches!(ev[0], Ev::Open(_)));
    assert_eq!(ev[1..3].len(), 2);
    assert!(matches!(ev[3], Ev::Close(_, CloseReason::PeerClosed)));
    log.assert_lifecycles();
    let stats = server.stop(Duration::from_secs(1)).stats;
    assert_eq!(stats.closed_by(CloseReason::PeerClosed), 1);
    assert_eq!(stats.msgs_in, 2);
    assert_eq!(stats.msgs_out, 2, "the send in on_close must be dropped");
}

#[test]
fn racing_closes_close_exactly_once() {
    let clock = FakeClock::new(1_000);
    let (server, log) = serve_probe(
        Server::new()
            .bind("127.0.0.1:0")
            .unwrap()
            .loops(2)
            .idle_timeout(Duration::from_secs(5))
            .clock(std::sync::Arc::new(clock.clone())),
    );
    let addr = server.local_addr();
    const N: usize = 150;
    let mut idle = Vec::new();
    for i in 0..N {
        let mut c = connect(addr);
        match i % 5 {
            // peer sends then closes at once
            0 => {
                c.write_all(&frame(b"x")).unwrap();
            }
            // server closes while the peer closes too
            1 => {
                c.write_all(&frame(b"close")).unwrap();
            }
            // server closes after flush, peer half-closes
            2 => {
                c.write_all(&frame(b"bye")).unwrap();
                c.shutdown(Shutdown::Write).unwrap();
            }
            // left to the idle timeout
            3 => {
                c.write_all(&frame(b"y")).unwrap();
                idle.push(c);
                continue;
            }
            // a reply the peer never reads, then a reset-ish close
            _ => {
                c.write_all(&frame(&[7u8; 1000])).unwrap();
            }
        }
        drop(c);
    }
    wait_until("non-idle connections closed", || {
        log.closes() == N - idle.len()
    });
    for c in &mut idle {
        assert_eq!(read_n(c, 5), frame(b"y"));
    }
    clock.advance(6_000);
    server.tick();
    wait_until("idle connections closed", || log.closes() == N);
    for c in &mut idle {
        assert_eq!(read_to_close(c), b"");
    }
    log.assert_lifecycles();
    assert_eq!(log.opens(), N);
    let stats = server.stop(Duration::ZERO).stats;
    assert_eq!(stats.closed_total(), N as u64);
    assert_eq!(stats.closed_by(CloseReason::Idle), idle.len() as u64);
}

#[test]
fn panic_in_handler_closes_only_that_connection() {
    let (server, log) = serve_probe(Server::new().bind("127.0.0.1:0").unwrap().loops(1));
    let mut good = connect(server.local_addr());
    let mut bad = connect(server.local_addr());
    assert_eq!(roundtrip(&mut good, &frame(b"a")), frame(b"a"));
    bad.write_all(&frame(b"panic")).unwrap();
    assert_eq!(read_to_close(&mut bad), b"");
    assert_eq!(
        roundtrip(&mut good, &frame(b"still here")),
        frame(b"still here")
    );
    let stats = server.stats();
    assert_eq!(stats.handler_panics, 1);
    assert_eq!(stats.closed_by(CloseReason::Panic), 1);
    log.assert_lifecycles();
}

#[test]
fn refused_connection_gets_no_callbacks() {
    use herd::codec::BytesCodec;
    use herd::{Conn, Handler};
    struct Refuse;
    impl Handler for Refuse {
        type State = ();
        type Codec = BytesCodec;
        fn new_codec(&mut self) -> BytesCodec {
            BytesCodec
        }
        fn on_open(&mut self, cx: &mut Conn<'_, Self>) -> Option<()> {
            cx.send(&b"full\n"[..]);
            None
        }
        fn on_message(&mut self, _: &mut Conn<'_, Self>, _: &mut (), _: &[u8]) {
            panic!("message on a refused connection");
        }
        fn on_close(&mut self, _: &mut Conn<'_, Self>, _: (), _: CloseReason) {
            panic!("close on a refused connection");
        }
    }
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .serve(|| Refuse)
        .unwrap();
    let mut c = connect(server.local_addr());
    let _ = c.write_all(b"hello");
    assert_eq!(read_to_close(&mut c), b"full\n");
    let stats = server.stats();
    assert_eq!(stats.closed_by(CloseReason::Refused), 1);
    assert_eq!(stats.handler_panics, 0);
}

/// Data and FIN in one event: a short read must not hide the EOF (edge-triggered epoll).
#[test]
fn eof_arriving_with_the_last_data_is_seen() {
    let (server, log) = serve_probe(Server::new().bind("127.0.0.1:0").unwrap().loops(1));
    for i in 0..20 {
        let mut c = connect(server.local_addr());
        // A partial frame, then shutdown: typically one event with data + RDHUP.
        c.write_all(&frame(b"partial")[..6]).unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(read_to_close(&mut c), b"", "connection {i}");
    }
    wait_until("all closed", || log.closes() == 20);
}
