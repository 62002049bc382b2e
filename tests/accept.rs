//! Accept modes: both spread connections over loops and serve them.

mod common;

use common::*;
use herd::{AcceptMode, Balance, Server};
use herd_testkit::*;

fn spread(mode: AcceptMode) {
    let (server, _log) = serve_probe(
        Server::new()
            .bind("127.0.0.1:0")
            .unwrap()
            .loops(3)
            .accept_mode(mode),
    );
    let mut conns: Vec<_> = (0..30).map(|_| connect(server.local_addr())).collect();
    for (i, c) in conns.iter_mut().enumerate() {
        let body = format!("conn {i}");
        assert_eq!(
            roundtrip(c, &frame(body.as_bytes())),
            frame(body.as_bytes())
        );
    }
    let per_loop: Vec<u64> = server.loop_stats().iter().map(|s| s.open).collect();
    assert_eq!(per_loop.iter().sum::<u64>(), 30);
    if mode != AcceptMode::ReusePort {
        // The acceptor balances exactly; the kernel's hash only roughly.
        assert_eq!(per_loop, vec![10, 10, 10], "{mode:?}");
    } else {
        assert!(
            per_loop.iter().filter(|&&n| n > 0).count() >= 2,
            "{per_loop:?}"
        );
    }
}

#[test]
fn reuseport_spreads_connections() {
    spread(AcceptMode::ReusePort);
}

#[test]
fn acceptor_round_robin() {
    spread(AcceptMode::Acceptor(Balance::RoundRobin));
}

#[test]
fn acceptor_least_connections() {
    spread(AcceptMode::Acceptor(Balance::LeastConnections));
}

#[test]
fn serves_on_an_inherited_listener() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let log = Log::default();
    let l2 = log.clone();
    let server = Server::new()
        .listener(l)
        .loops(2)
        .serve(move || Probe::new(l2.clone()))
        .unwrap();
    assert_eq!(server.local_addr(), addr);
    let mut c = connect(addr);
    assert_eq!(roundtrip(&mut c, &frame(b"x")), frame(b"x"));
}
