//! `Handle`: cross-thread sends and closes, and stale handles after slot reuse.

mod common;

use std::time::Duration;

use common::*;
use herd::{CloseReason, Server};
use herd_testkit::*;

#[test]
fn stale_handle_never_reaches_the_slots_next_tenant() {
    let (server, log) = serve_probe(Server::new().bind("127.0.0.1:0").unwrap().loops(1));
    let a = connect(server.local_addr());
    wait_until("a open", || log.opens() == 1);
    let ha = log.handle(0);
    drop(a);
    wait_until("a closed", || log.closes() == 1);
    let mut b = connect(server.local_addr());
    wait_until("b open", || log.opens() == 2);
    let hb = log.handle(1);
    assert_eq!(
        ha.id().to_string().split(':').nth(1),
        hb.id().to_string().split(':').nth(1),
        "the slot should be reused"
    );
    assert_ne!(ha.id(), hb.id());
    let stale_before = server.stats().stale_commands;
    ha.send(frame(b"for a"));
    ha.close();
    hb.send(frame(b"for b"));
    // Commands run in order on the loop: if the stale send leaked, it would arrive first.
    assert_eq!(read_n(&mut b, 9), frame(b"for b"));
    assert!(!is_closed_within(&mut b, Duration::from_millis(50)));
    assert_eq!(server.stats().stale_commands, stale_before + 2);
}

#[test]
fn sends_from_other_threads_arrive_in_order() {
    let (server, log) = serve_probe(Server::new().bind("127.0.0.1:0").unwrap().loops(2));
    let mut c = connect(server.local_addr());
    wait_until("open", || log.opens() == 1);
    let h = log.handle(0);
    let senders: Vec<_> = (0..4u8)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..250u32 {
                    let mut body = vec![t];
                    body.extend_from_slice(&i.to_be_bytes());
                    h.send(frame(&body));
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let mut next = [0u32; 4];
    for _ in 0..1000 {
        let f = read_n(&mut c, 9);
        let t = f[4] as usize;
        let i = u32::from_be_bytes(f[5..9].try_into().unwrap());
        assert_eq!(i, next[t], "thread {t}'s sends out of order");
        next[t] += 1;
    }
    h.close_after_flush();
    assert_eq!(read_to_close(&mut c), b"");
    assert_eq!(server.stats().closed_by(CloseReason::Local), 1);
}
