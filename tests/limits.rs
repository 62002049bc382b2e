//! Connection limits and descriptor exhaustion: refuse at once, count, never spin.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use herd::clock::FakeClock;
use herd::{AcceptMode, Balance, CloseReason, Server};
use herd_testkit::*;

fn limited(mode: AcceptMode) {
    let (server, log) = serve_probe(
        Server::new()
            .bind("127.0.0.1:0")
            .unwrap()
            .loops(2)
            .accept_mode(mode)
            .max_connections(3),
    );
    let mut held: Vec<_> = (0..3).map(|_| connect(server.local_addr())).collect();
    for c in held.iter_mut() {
        assert_eq!(roundtrip(c, &frame(b"hi")), frame(b"hi"));
    }
    let mut extra = connect(server.local_addr());
    let _ = extra.write_all(&frame(b"hi"));
    assert_eq!(
        read_to_close(&mut extra),
        b"",
        "the 4th connection must be closed at once"
    );
    let s = server.stats();
    assert_eq!(s.closed_by(CloseReason::Limit), 1);
    assert_eq!(s.open, 3);
    // A slot frees up: the next connection is served.
    drop(held.pop());
    wait_until("close", || log.closes() == 1);
    let mut next = connect(server.local_addr());
    assert_eq!(roundtrip(&mut next, &frame(b"in")), frame(b"in"));
    assert_eq!(
        log.opens(),
        4,
        "the refused connection never reached the handler"
    );
}

#[test]
fn max_connections_reuseport() {
    limited(AcceptMode::ReusePort);
}

#[test]
fn max_connections_acceptor() {
    limited(AcceptMode::Acceptor(Balance::RoundRobin));
}

#[test]
fn max_connections_per_loop() {
    let (server, _log) = serve_probe(
        Server::new()
            .bind("127.0.0.1:0")
            .unwrap()
            .loops(1)
            .max_connections_per_loop(2),
    );
    let _a = connect(server.local_addr());
    let _b = connect(server.local_addr());
    let mut c = connect(server.local_addr());
    assert_eq!(read_to_close(&mut c), b"");
    assert_eq!(server.stats().closed_by(CloseReason::Limit), 1);
}

/// Runs in a child process (its own RLIMIT_NOFILE): the loop hits EMFILE, pauses accepting
/// for 500 ms of its clock (a fake one), and does not retry before then.
#[test]
fn emfile_backs_off_instead_of_spinning() {
    if std::env::var_os("HERD_EMFILE_CHILD").is_some() {
        return emfile_child();
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "emfile_backs_off_instead_of_spinning",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HERD_EMFILE_CHILD", "1")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(
        text.contains("EMFILE-CHILD-OK"),
        "child did not run its checks:\n{text}"
    );
}

fn emfile_child() {
    let clock = FakeClock::new(0);
    let (server, log) = serve_probe(
        Server::new()
            .bind("127.0.0.1:0")
            .unwrap()
            .loops(1)
            .clock(std::sync::Arc::new(clock.clone())),
    );
    let addr = server.local_addr();
    // Leave room for 4 more descriptors: our clients use some, the server's accepts the rest.
    let used = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    herd::os::set_nofile_limit(used + 4).unwrap();
    let mut clients = Vec::new();
    for _ in 0..4 {
        // connect() may fail once we are out of descriptors ourselves; that's fine.
        if let Ok(c) = std::net::TcpStream::connect(addr) {
            clients.push(c);
        }
    }
    wait_until("EMFILE seen", || server.stats().accept_fd_exhausted >= 1);
    // Without the clock moving, ticks must not make the loop retry accept.
    for _ in 0..20 {
        server.tick();
    }
    assert_eq!(
        server.stats().accept_fd_exhausted,
        1,
        "retried accept before the back-off"
    );
    clock.advance(500);
    server.tick();
    wait_until("retry after back-off", || {
        server.stats().accept_fd_exhausted == 2
    });
    // Give descriptors back: the pending connections are accepted after the next back-off.
    herd::os::set_nofile_limit(used + 64).unwrap();
    clock.advance(500);
    server.tick();
    wait_until("pending connections accepted", || {
        log.opens() == clients.len()
    });
    for c in clients.iter_mut() {
        c.set_read_timeout(Some(WAIT)).unwrap();
        assert_eq!(roundtrip(c, &frame(b"ok")), frame(b"ok"));
    }
    let _ = server.stop(Duration::ZERO);
    println!("EMFILE-CHILD-OK");
}

#[test]
fn per_ip_limit_refuses_the_extra_connection() {
    let (server, log) = serve_probe(
        Server::new()
            .bind("127.0.0.1:0")
            .unwrap()
            .loops(2)
            .max_connections_per_ip(2),
    );
    let mut a = connect(server.local_addr());
    let mut b = connect(server.local_addr());
    assert_eq!(roundtrip(&mut a, &frame(b"a")), frame(b"a"));
    assert_eq!(roundtrip(&mut b, &frame(b"b")), frame(b"b"));
    let mut c = connect(server.local_addr());
    assert_eq!(read_to_close(&mut c), b"");
    assert_eq!(server.stats().closed_by(CloseReason::Limit), 1);
    drop(a);
    wait_until("a closed", || log.closes() == 1);
    let mut d = connect(server.local_addr());
    assert_eq!(roundtrip(&mut d, &frame(b"d")), frame(b"d"));
}
