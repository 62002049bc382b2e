//! Graceful stop: idle connections close at once, in-flight work finishes, the rest is forced
//! at the deadline (on a fake clock), and the report says which was which.

mod common;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use herd::clock::FakeClock;
use herd::{CloseReason, Server};
use herd_testkit::*;

#[test]
fn graceful_stop_with_idle_and_busy_connections() {
    let clock = FakeClock::new(0);
    let (server, log) = serve_probe(
        Server::new()
            .bind("127.0.0.1:0")
            .unwrap()
            // One loop: once the idle connection is closed, the stop has been applied and the
            // listener is gone (with several loops, another loop may apply it a moment later).
            .loops(1)
            .clock(Arc::new(clock.clone())),
    );
    let addr = server.local_addr();
    let mut idle = connect(addr);
    let mut partial = connect(addr); // will finish its frame during the stop
    let mut stuck = connect(addr); // never finishes its frame: forced
    let mut marked = connect(addr); // handler says busy, then idle
    assert_eq!(roundtrip(&mut idle, &frame(b"x")), frame(b"x"));
    marked.write_all(&frame(b"busy")).unwrap();
    let body = pattern(1, 100);
    let wire = frame(&body);
    partial.write_all(&wire[..10]).unwrap();
    stuck.write_all(&wire[..10]).unwrap();
    wait_until("all bytes in", || {
        server.stats().bytes_in == 5 + 8 + 10 + 10
    });

    server.shutdown(Duration::from_secs(10));
    assert_eq!(
        read_to_close(&mut idle),
        b"",
        "idle connection closes at once"
    );
    // New connections are no longer accepted (the listener is closed or the connection is).
    if let Ok(mut late) = std::net::TcpStream::connect(addr) {
        late.set_read_timeout(Some(WAIT)).unwrap();
        assert_eq!(read_to_close(&mut late), b"");
    }
    // In-flight work finishes and its reply is delivered before the close.
    partial.write_all(&wire[10..]).unwrap();
    assert_eq!(read_to_close(&mut partial), wire);
    marked.write_all(&frame(b"idle")).unwrap();
    assert_eq!(read_to_close(&mut marked), b"");
    assert!(!is_closed_within(&mut stuck, Duration::from_millis(20)));
    clock.advance(10_000);
    server.tick();
    assert_eq!(read_to_close(&mut stuck), b"");
    let report = server.join();
    assert_eq!(report.closed_graceful, 3);
    assert_eq!(report.closed_forced, 1);
    assert_eq!(report.stats.closed_by(CloseReason::Stop), 4);
    assert_eq!(report.stats.open, 0);
    log.assert_lifecycles();
}

/// A connection accepted just before the stop, whose first request arrives just after it, is
/// served (not mistaken for an idle keep-alive); a silent one is closed after the grace.
#[test]
fn fresh_connection_gets_its_first_request_served_during_stop() {
    let clock = FakeClock::new(0);
    let (server, log) = serve_probe(
        Server::new()
            .bind("127.0.0.1:0")
            .unwrap()
            .loops(1)
            .clock(Arc::new(clock.clone())),
    );
    let mut fresh = connect(server.local_addr());
    let mut silent = connect(server.local_addr());
    wait_until("both open", || log.opens() == 2);
    server.shutdown(Duration::from_secs(30));
    server.stats(); // the stop is applied after the iteration that answered this
    fresh.write_all(&frame(b"first")).unwrap();
    assert_eq!(read_to_close(&mut fresh), frame(b"first"));
    assert!(!is_closed_within(&mut silent, Duration::from_millis(20)));
    clock.advance(1_000);
    server.tick();
    assert_eq!(read_to_close(&mut silent), b"");
    let report = server.join();
    assert_eq!((report.closed_graceful, report.closed_forced), (2, 0));
}
