//! `herd_bench::echo::run` against real loopback servers: a faithful echo server must give
//! messages and no errors; a corrupting or hanging-up server must be caught and counted.

mod common;

use std::time::Duration;

use common::{spawn_server, Behaviour};
use herd_bench::echo::{run, EchoOpts};
use herd_bench::Error;

fn opts(addr: std::net::SocketAddr) -> EchoOpts {
    EchoOpts {
        connections: 8,
        size: 64,
        depth: 1,
        duration: Duration::from_millis(300),
        warmup: Duration::from_millis(50),
        threads: 2,
        ..EchoOpts::new(addr)
    }
}

#[test]
fn ping_pong_against_a_faithful_server() {
    let addr = spawn_server(Behaviour::Faithful);
    let r = run(&opts(addr)).expect("run");
    assert!(r.messages > 0, "no messages echoed");
    assert_eq!(r.errors(), 0, "{r:?}");
    assert!(r.messages_total >= r.messages);
    assert_eq!(r.latency.count(), r.messages);
    assert!(r.latency.percentile(50.0) > 0);
    assert!(r.latency.percentile(99.0) <= r.latency.max());
    assert!(r.msgs_per_sec() > 0.0);
    assert_eq!((r.connections, r.threads), (8, 2));
}

#[test]
fn pipelined_large_messages_are_verified_across_partial_reads() {
    let addr = spawn_server(Behaviour::Faithful);
    let o = EchoOpts {
        connections: 3,
        size: 16 * 1024 + 3, // not a multiple of the server's 8 KiB reads
        depth: 4,
        threads: 1,
        ..opts(addr)
    };
    let r = run(&o).expect("run");
    assert!(r.messages > 0);
    assert_eq!(r.errors(), 0, "{r:?}");
}

#[test]
fn more_threads_than_connections_is_capped() {
    let addr = spawn_server(Behaviour::Faithful);
    let o = EchoOpts {
        connections: 2,
        threads: 5,
        ..opts(addr)
    };
    let r = run(&o).expect("run");
    assert_eq!(r.threads, 2);
    assert!(r.messages > 0);
    assert_eq!(r.errors(), 0);
}

#[test]
fn a_corrupted_byte_is_a_mismatch_on_every_connection() {
    let addr = spawn_server(Behaviour::CorruptAt(1000));
    let o = EchoOpts {
        warmup: Duration::ZERO,
        ..opts(addr)
    };
    let r = run(&o).expect("run");
    assert_eq!(r.mismatches, 8, "{r:?}");
    assert_eq!(r.disconnects, 0);
    // 1000 / 64: fifteen whole messages came back intact before the bad byte
    assert_eq!(r.messages_total, 8 * 15);
}

#[test]
fn a_server_hanging_up_is_a_disconnect() {
    let addr = spawn_server(Behaviour::CloseAfter(640));
    let o = EchoOpts {
        warmup: Duration::ZERO,
        ..opts(addr)
    };
    let r = run(&o).expect("run");
    assert_eq!(r.disconnects, 8, "{r:?}");
    assert_eq!(r.mismatches, 0);
    assert_eq!(r.messages_total, 8 * 10);
    assert!(r.errors() > 0);
}

#[test]
fn nothing_listening_is_a_connect_error() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }; // dropped: the port is closed now
    let o = EchoOpts {
        connect_attempts: 2,
        ..opts(addr)
    };
    match run(&o) {
        Err(Error::Connect { addr: a, .. }) => assert_eq!(a, addr),
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[test]
fn bad_options_are_rejected_before_connecting() {
    let addr = "127.0.0.1:9".parse().unwrap();
    for o in [
        EchoOpts {
            connections: 0,
            ..EchoOpts::new(addr)
        },
        EchoOpts {
            size: 0,
            ..EchoOpts::new(addr)
        },
        EchoOpts {
            depth: 0,
            ..EchoOpts::new(addr)
        },
        EchoOpts {
            threads: 0,
            ..EchoOpts::new(addr)
        },
        EchoOpts {
            duration: Duration::ZERO,
            ..EchoOpts::new(addr)
        },
    ] {
        assert!(matches!(run(&o), Err(Error::Opts(_))));
    }
}
