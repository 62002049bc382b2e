//! Heartbeat, server pings and the flood guard over loopback, on a fake clock (no sleeping).

mod frame_common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use frame_common::*;
use herd::clock::FakeClock;
use herd::frame::{FloodLimits, FrameService, Router};
use herd::proto::frame::{Flags, PING_ID, PONG_ID};
use herd::{CloseReason, Server, ServerHandle};
use herd_testkit::*;

const ECHO: u16 = 1;

fn frames() -> FrameService {
    FrameService::new(Router::new().route_raw(ECHO, |_cx, b| Ok(Some(b.to_vec()))))
}

fn start_on(frames: &FrameService, clock: &FakeClock) -> ServerHandle {
    let f = frames.clone();
    Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .clock(Arc::new(clock.clone()))
        .serve(move || f.protocol())
        .unwrap()
}

fn ping(s: &mut TcpStream, id: u32) {
    s.write_all(&frame(PING_ID, Flags::EMPTY, id, b"")).unwrap();
    let (h, _) = read_frame(s);
    assert_eq!((h.msg_id, h.request_id), (PONG_ID, id));
}

#[test]
fn a_silent_connection_is_closed_after_the_heartbeat_timeout() {
    let clock = FakeClock::new(10_000);
    let frames = frames().heartbeat_timeout(Duration::from_secs(30));
    let server = start_on(&frames, &clock);
    let mut quiet = connect(server.local_addr());
    let mut chatty = connect(server.local_addr());
    ping(&mut quiet, 1);
    ping(&mut chatty, 1);

    clock.advance(20_000);
    settle(&server);
    ping(&mut chatty, 2); // chatty is heard at t = +20 s

    clock.advance(10_000); // +30 s: quiet has been silent exactly the timeout
    settle(&server);
    assert_eq!(server.stats().open, 2, "closed before the timeout passed");

    clock.advance(7_500); // the sweep after +30 s sees 37.5 s of silence
    settle(&server);
    assert_eq!(read_to_close(&mut quiet), b"");
    assert_eq!(server.stats().closed_by(CloseReason::Heartbeat), 1);
    assert_eq!(frames.stats().heartbeat_closes, 1);
    // chatty was silent for only 17.5 s.
    ping(&mut chatty, 3);

    clock.advance(40_000);
    settle(&server);
    assert_eq!(read_to_close(&mut chatty), b"");
    assert_eq!(server.stats().closed_by(CloseReason::Heartbeat), 2);
}

#[test]
fn server_pings_keep_a_listening_client_alive() {
    let clock = FakeClock::new(0);
    let frames = frames()
        .heartbeat_timeout(Duration::from_secs(30))
        .ping_interval(Duration::from_secs(10));
    let server = start_on(&frames, &clock);
    let mut answering = connect(server.local_addr());
    let mut deaf = connect(server.local_addr());
    ping(&mut answering, 1);
    ping(&mut deaf, 1);

    for round in 0..4u64 {
        clock.advance(10_000);
        settle(&server);
        // Each quiet interval brings one ping; the answering client pongs it.
        let (h, body) = read_frame(&mut answering);
        assert_eq!((h.msg_id, body.len()), (PING_ID, 0), "round {round}");
        answering
            .write_all(&frame(PONG_ID, Flags::RESPONSE, h.request_id, b""))
            .unwrap();
        // Wait until the pong has been read (an echo after it comes back).
        answering
            .write_all(&frame(ECHO, Flags::EMPTY, 9, b"x"))
            .unwrap();
        assert_eq!(read_frame(&mut answering).1, b"x");
    }
    // 40 s in: the deaf client got pings but never answered and is gone.
    let mut seen = read_to_close(&mut deaf);
    assert!(
        seen.len() >= 12 && seen.len() % 12 == 0,
        "pings then close: {seen:?}"
    );
    seen.truncate(12);
    assert_eq!(&seen[4..6], &PING_ID.to_be_bytes());
    assert_eq!(server.stats().open, 1);
    assert_eq!(server.stats().closed_by(CloseReason::Heartbeat), 1);
    assert!(frames.stats().pings_sent >= 5);
}

#[test]
fn the_flood_guard_closes_a_peer_over_its_message_rate() {
    let clock = FakeClock::new(0);
    let frames = frames().flood(5, 1 << 20);
    let server = start_on(&frames, &clock);
    let mut s = connect(server.local_addr());
    let mut burst = Vec::new();
    for i in 0..5 {
        burst.extend_from_slice(&frame(ECHO, Flags::EMPTY, i, b"m"));
    }
    s.write_all(&burst).unwrap();
    for i in 0..5 {
        assert_eq!(read_frame(&mut s).0.request_id, i);
    }
    // A second later the bucket is full again.
    clock.advance(1_000);
    settle(&server);
    s.write_all(&burst).unwrap();
    for i in 0..5 {
        assert_eq!(read_frame(&mut s).0.request_id, i);
    }
    // One more within the same second is a flood: closed at once, nothing answered.
    s.write_all(&frame(ECHO, Flags::EMPTY, 99, b"m")).unwrap();
    assert_eq!(read_to_close(&mut s), b"");
    wait_until("flood close", || {
        server.stats().closed_by(CloseReason::Flood) == 1
    });
    assert_eq!(frames.stats().flood_closes, 1);

    // Other connections have their own buckets.
    let mut c = client(server.local_addr());
    assert_eq!(c.call_raw(ECHO, b"ok").unwrap(), b"ok");
}

#[test]
fn the_flood_guard_counts_bytes_with_headers() {
    let clock = FakeClock::new(0);
    let frames = frames().flood_limits(FloodLimits {
        msgs_per_sec: None,
        bytes_per_sec: Some(100),
    });
    let server = start_on(&frames, &clock);
    let mut s = connect(server.local_addr());
    // 88 body + 12 header = exactly the 100 bytes allowed.
    s.write_all(&frame(ECHO, Flags::EMPTY, 1, &[7; 88]))
        .unwrap();
    assert_eq!(read_frame(&mut s).1, vec![7; 88]);
    s.write_all(&frame(ECHO, Flags::EMPTY, 2, b"")).unwrap();
    assert_eq!(read_to_close(&mut s), b"");
    wait_until("flood close", || {
        server.stats().closed_by(CloseReason::Flood) == 1
    });
}
