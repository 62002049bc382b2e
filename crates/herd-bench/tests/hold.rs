//! `herd_bench::hold` against real loopback servers: connections open, echo once and stay
//! open; a server that hangs up at once is reported with the connection that saw it.

mod common;

use common::{spawn_server, Behaviour};
use herd_bench::hold::{check_still_open, open, HoldOpts};
use herd_bench::Error;

fn opts(addr: std::net::SocketAddr, connections: usize) -> HoldOpts {
    HoldOpts {
        addr,
        connections,
        size: 64,
        connect_attempts: 3,
    }
}

#[test]
fn connections_are_opened_echoed_and_still_open() {
    let addr = spawn_server(Behaviour::Faithful);
    let held = open(&opts(addr, 50)).expect("open");
    assert_eq!(held.len(), 50);
    assert_eq!(check_still_open(&held), 0);
}

#[test]
fn a_server_that_hangs_up_fails_the_first_connection() {
    let addr = spawn_server(Behaviour::CloseAtOnce);
    match open(&opts(addr, 5)) {
        Err(Error::Echo { index: 0, .. }) => {}
        other => panic!("expected an echo error on connection 0, got {other:?}"),
    }
}

#[test]
fn a_corrupted_echo_fails_with_a_mismatch() {
    let addr = spawn_server(Behaviour::CorruptAt(10));
    match open(&opts(addr, 1)) {
        Err(Error::Echo { index: 0, reason }) => assert!(reason.contains("mismatch"), "{reason}"),
        other => panic!("expected a mismatch, got {other:?}"),
    }
}
