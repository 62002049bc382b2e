//! The frame router over loopback: raw and prost routes, request ids and pipelining, pushes,
//! user data, error frames (unknown id, bad body, handler error, panic, oversized), pings,
//! bad headers and truncated frames.

mod frame_common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use frame_common::*;
use herd::frame::{encode_frame, ClientError, FrameHandle, FrameService, HandlerError, Router};
use herd::proto::frame::{ErrorCode, ErrorPayload, Flags, ERROR_ID, GOAWAY_ID, PING_ID, PONG_ID};
use herd::{AcceptMode, Balance, CloseReason, Server};
use herd_testkit::*;

const ECHO: u16 = 1;
const ADD: u16 = 2;
const FAIL: u16 = 3;
const PUSH_TWICE: u16 = 4;
const COUNT: u16 = 5;
const PANIC: u16 = 6;
const BIG: u16 = 7;
const SUBSCRIBE: u16 = 8;
const BROADCAST: u16 = 9;
const WHOAMI: u16 = 10;
const NEWS: u16 = 100;

#[derive(Default)]
struct Session {
    calls: u64,
}

/// The routes every test here uses. `closed` records (calls, reason) from the close hook;
/// `subscribers` collects handles from `SUBSCRIBE`.
fn router(
    closed: Arc<Mutex<Vec<(u64, CloseReason)>>>,
    subscribers: Arc<Mutex<Vec<FrameHandle>>>,
) -> Router<Session> {
    let fan_out = Arc::clone(&subscribers);
    Router::<Session>::with_user_data()
        .route_raw(ECHO, |cx, body| {
            cx.user().calls += 1;
            cx.reply(body);
            Ok(None)
        })
        .route(ADD, |cx, req: Add| {
            cx.user().calls += 1;
            Ok(Some(Sum { sum: req.a + req.b }))
        })
        .route_raw(FAIL, |_cx, body| {
            let n: u32 = std::str::from_utf8(body)?.parse()?;
            if n == 0 {
                return Err(HandlerError::new("zero is not allowed"));
            }
            Ok(Some(n.to_string().into_bytes()))
        })
        .route_raw(PUSH_TWICE, |cx, body| {
            cx.push(NEWS, b"first")?;
            cx.push_msg(NEWS, &Sum { sum: 2 })?;
            Ok(Some(body.to_vec()))
        })
        .route_raw(COUNT, |cx, _| {
            Ok(Some(cx.user().calls.to_string().into_bytes()))
        })
        .route_raw(PANIC, |_cx, _| panic!("handler asked to panic"))
        .route_raw(BIG, |_cx, body| Ok(Some(vec![0; body.len() * 100])))
        .route_raw(SUBSCRIBE, move |cx, _| {
            subscribers.lock().unwrap().push(cx.handle());
            Ok(Some(b"subscribed".to_vec()))
        })
        .route_raw(BROADCAST, move |_cx, body| {
            // Encoded once; every subscriber's loop gets the same bytes.
            let bytes = encode_frame(NEWS, Flags::PUSH, 0, body)?;
            let subs = fan_out.lock().unwrap();
            for h in subs.iter() {
                h.send_encoded(bytes.clone());
            }
            Ok(Some(subs.len().to_string().into_bytes()))
        })
        .route_raw(WHOAMI, |cx, _| {
            Ok(Some(cx.id().loop_index().to_string().into_bytes()))
        })
        .on_close(move |s, info| closed.lock().unwrap().push((s.calls, info.reason)))
}

struct Fixture {
    frames: FrameService<Session>,
    server: herd::ServerHandle,
    closed: Arc<Mutex<Vec<(u64, CloseReason)>>>,
    subscribers: Arc<Mutex<Vec<FrameHandle>>>,
}

fn fixture(loops: usize, max_frame: u32) -> Fixture {
    let closed = Arc::default();
    let subscribers = Arc::default();
    let frames = FrameService::new(router(Arc::clone(&closed), Arc::clone(&subscribers)))
        .max_frame(max_frame);
    let server = start(&frames, loops);
    Fixture {
        frames,
        server,
        closed,
        subscribers,
    }
}

fn server_error(r: Result<Vec<u8>, ClientError>) -> (ErrorCode, String) {
    match r {
        Err(ClientError::Server { code, text }) => (code, text),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[test]
fn raw_and_prost_routes_answer_with_the_request_id() {
    let f = fixture(2, 1 << 20);
    let mut c = client(f.server.local_addr());
    assert_eq!(c.call_raw(ECHO, b"hello").unwrap(), b"hello");
    assert_eq!(c.call_raw(ECHO, b"").unwrap(), b"");
    let sum: Sum = c.call(ADD, &Add { a: 40, b: 2 }).unwrap();
    assert_eq!(sum.sum, 42);

    // The header of a reply: the request's message id, RESPONSE, the request id echoed.
    let mut s = connect(f.server.local_addr());
    s.write_all(&frame(ECHO, Flags::EMPTY, 0xDEAD_BEEF, b"x"))
        .unwrap();
    let (h, body) = read_frame(&mut s);
    assert_eq!(
        (h.msg_id, h.flags, h.request_id),
        (ECHO, Flags::RESPONSE, 0xDEAD_BEEF)
    );
    assert_eq!(body, b"x");
}

#[test]
fn pipelined_requests_are_answered_in_one_write() {
    let f = fixture(1, 1 << 20);
    let mut c = client(f.server.local_addr());
    c.ping().unwrap(); // connected and settled
    let before = f.server.stats();
    let bodies: Vec<Vec<u8>> = (0..16).map(|i| format!("req-{i}").into_bytes()).collect();
    let calls: Vec<(u16, &[u8])> = bodies.iter().map(|b| (ECHO, &b[..])).collect();
    let replies = c.pipeline_raw(&calls).unwrap();
    let replies: Vec<Vec<u8>> = replies.into_iter().map(Result::unwrap).collect();
    assert_eq!(replies, bodies);
    let after = f.server.stats();
    // One client write of 16 frames is one segment on loopback: one read, one write back.
    assert_eq!(after.msgs_in - before.msgs_in, 16);
    assert_eq!(
        after.writes - before.writes,
        1,
        "replies of one read not coalesced"
    );
}

#[test]
fn error_replies_keep_the_connection_open() {
    let f = fixture(1, 1 << 20);
    let mut c = client(f.server.local_addr());

    let (code, text) = server_error(c.call_raw(999, b"?"));
    assert_eq!(code, ErrorCode::UnknownId);
    assert!(text.contains("999"), "{text}");

    // A body that is not an `Add` (a truncated varint).
    let (code, _) = server_error(c.call_raw(ADD, &[0x08, 0xFF]));
    assert_eq!(code, ErrorCode::BadBody);

    let (code, text) = server_error(c.call_raw(FAIL, b"0"));
    assert_eq!(
        (code, text.as_str()),
        (ErrorCode::Handler, "zero is not allowed")
    );
    // `?` on a std error becomes a HANDLER error with its text.
    let (code, text) = server_error(c.call_raw(FAIL, b"x"));
    assert_eq!(code, ErrorCode::Handler);
    assert!(text.contains("invalid digit"), "{text}");
    assert_eq!(c.call_raw(FAIL, b"7").unwrap(), b"7");

    // A reply over max_frame is replaced by TOO_LARGE for that request only.
    let small = fixture(1, 1000);
    let mut c2 = client(small.server.local_addr());
    let (code, _) = server_error(c2.call_raw(BIG, &[1; 20]));
    assert_eq!(code, ErrorCode::TooLarge);
    assert_eq!(c2.call_raw(ECHO, b"still open").unwrap(), b"still open");
    assert_eq!(small.frames.stats().oversized, 1);

    let stats = f.frames.stats();
    assert_eq!(
        (stats.unknown_id, stats.bad_body, stats.handler_errors),
        (1, 1, 2)
    );
    assert_eq!(f.server.stats().closed_total(), 0);
}

#[test]
fn pushes_and_replies_arrive_in_order_and_the_client_sorts_them() {
    let f = fixture(1, 1 << 20);
    let mut c = client(f.server.local_addr());
    // The reply comes after two pushes; the client keeps them for later.
    assert_eq!(c.call_raw(PUSH_TWICE, b"done").unwrap(), b"done");
    let p1 = c.next_push().unwrap();
    assert_eq!(
        (p1.header.msg_id, p1.header.request_id, &p1.body[..]),
        (NEWS, 0, &b"first"[..])
    );
    assert!(p1.is_push());
    let p2: Sum = c.next_push().unwrap().decode().unwrap();
    assert_eq!(p2.sum, 2);

    // Pushes from another thread through a FrameHandle.
    assert_eq!(c.call_raw(SUBSCRIBE, b"").unwrap(), b"subscribed");
    let h = f.subscribers.lock().unwrap()[0].clone();
    let t = std::thread::spawn(move || {
        h.push(NEWS, b"from afar").unwrap();
        h.push_msg(NEWS, &Sum { sum: 9 }).unwrap();
    });
    t.join().unwrap();
    assert_eq!(c.next_push().unwrap().body, b"from afar");
    assert_eq!(c.next_push().unwrap().decode::<Sum>().unwrap().sum, 9);
}

#[test]
fn a_broadcast_reaches_subscribers_on_every_loop() {
    let subscribers: Arc<Mutex<Vec<FrameHandle>>> = Arc::default();
    let frames = FrameService::new(router(Arc::default(), Arc::clone(&subscribers)));
    let f = frames.clone();
    // The acceptor hands connections to the two loops in turn.
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(2)
        .accept_mode(AcceptMode::Acceptor(Balance::RoundRobin))
        .serve(move || f.protocol())
        .unwrap();
    let mut members: Vec<_> = (0..4).map(|_| client(server.local_addr())).collect();
    let mut loops = Vec::new();
    for m in members.iter_mut() {
        loops.push(m.call_raw(WHOAMI, b"").unwrap());
        assert_eq!(m.call_raw(SUBSCRIBE, b"").unwrap(), b"subscribed");
    }
    assert!(
        loops.contains(&b"0".to_vec()) && loops.contains(&b"1".to_vec()),
        "{loops:?}"
    );
    let mut speaker = client(server.local_addr());
    assert_eq!(speaker.call_raw(BROADCAST, b"to all").unwrap(), b"4");
    for m in members.iter_mut() {
        let p = m.next_push().unwrap();
        assert_eq!((p.header.msg_id, &p.body[..]), (NEWS, &b"to all"[..]));
    }
    // A subscriber that left is skipped: its frames are dropped and counted, not misdelivered.
    drop(members.pop());
    wait_until("leaver closed", || server.stats().open == 4);
    let stale = server.stats().stale_commands;
    assert_eq!(speaker.call_raw(BROADCAST, b"again").unwrap(), b"4");
    for m in members.iter_mut() {
        assert_eq!(m.next_push().unwrap().body, b"again");
    }
    wait_until("stale push counted", || {
        server.stats().stale_commands == stale + 1
    });
}

#[test]
fn user_data_is_per_connection_and_reaches_the_close_hook() {
    let f = fixture(2, 1 << 20);
    let mut a = client(f.server.local_addr());
    let mut b = client(f.server.local_addr());
    for _ in 0..3 {
        a.call_raw(ECHO, b"a").unwrap();
    }
    b.call::<Add, Sum>(ADD, &Add { a: 1, b: 1 }).unwrap();
    assert_eq!(a.call_raw(COUNT, b"").unwrap(), b"3");
    assert_eq!(b.call_raw(COUNT, b"").unwrap(), b"1");
    drop(a);
    wait_until("close hook", || f.closed.lock().unwrap().len() == 1);
    assert_eq!(f.closed.lock().unwrap()[0], (3, CloseReason::PeerClosed));
}

#[test]
fn a_panicking_handler_answers_internal_and_closes_only_its_connection() {
    let f = fixture(1, 1 << 20);
    let mut other = client(f.server.local_addr());
    let mut s = connect(f.server.local_addr());
    s.write_all(&frame(PANIC, Flags::EMPTY, 5, b"")).unwrap();
    let (h, body) = read_frame(&mut s);
    assert_eq!((h.msg_id, h.request_id), (ERROR_ID, 5));
    assert_eq!(
        ErrorPayload::parse(&body).unwrap().code,
        ErrorCode::Internal
    );
    assert_eq!(read_to_close(&mut s), b"");
    wait_until("panic close", || {
        f.server.stats().closed_by(CloseReason::Panic) == 1
    });
    assert_eq!(f.frames.stats().panics, 1);
    assert_eq!(other.call_raw(ECHO, b"fine").unwrap(), b"fine");
}

#[test]
fn pings_are_answered_by_the_framework() {
    let f = fixture(1, 1 << 20);
    let mut s = connect(f.server.local_addr());
    s.write_all(&frame(PING_ID, Flags::EMPTY, 7, b"")).unwrap();
    let pong = read_n(&mut s, 12);
    assert_eq!(pong, [0, 0, 0, 0, 0xFF, 0xFD, 0, 1, 0, 0, 0, 7]);
    let mut c = client(f.server.local_addr());
    c.ping().unwrap();
    c.ping().unwrap();
    // A stray response (RESPONSE flag, no route) is ignored, never answered with an error.
    s.write_all(&frame(4321, Flags::RESPONSE, 1, b"late"))
        .unwrap();
    s.write_all(&frame(PING_ID, Flags::EMPTY, 8, b"")).unwrap();
    let (h, _) = read_frame(&mut s);
    assert_eq!((h.msg_id, h.request_id), (PONG_ID, 8));
    assert_eq!(f.frames.stats().ignored, 1);
}

#[test]
fn bad_headers_get_an_error_frame_then_close() {
    let f = fixture(1, 1024);
    // Too large: refused from the length field alone, before the body is sent.
    let mut s = connect(f.server.local_addr());
    s.write_all(&[0, 0, 0x10, 0, 0, 1, 0, 0, 0, 0, 0, 1])
        .unwrap();
    let (h, body) = read_frame(&mut s);
    assert_eq!((h.msg_id, h.request_id), (ERROR_ID, 0));
    let p = ErrorPayload::parse(&body).unwrap();
    assert_eq!(p.code, ErrorCode::TooLarge);
    assert!(p.text.contains("4096"), "{}", p.text);
    assert_eq!(read_to_close(&mut s), b"");

    // Reserved flag bits.
    let mut s = connect(f.server.local_addr());
    s.write_all(&frame(ECHO, Flags::EMPTY, 1, b"ok")).unwrap();
    s.write_all(&[0, 0, 0, 0, 0, 1, 0x80, 0, 0, 0, 0, 2])
        .unwrap();
    let (h, body) = read_frame(&mut s);
    assert_eq!((h.msg_id, body), (ECHO, b"ok".to_vec()));
    let (h, body) = read_frame(&mut s);
    assert_eq!(h.msg_id, ERROR_ID);
    assert_eq!(
        ErrorPayload::parse(&body).unwrap().code,
        ErrorCode::Protocol
    );
    assert_eq!(read_to_close(&mut s), b"");

    wait_until("decode closes", || {
        f.server.stats().closed_by(CloseReason::Decode) == 2
    });
    let stats = f.frames.stats();
    assert_eq!((stats.too_large, stats.protocol), (1, 1));
}

#[test]
fn a_truncated_frame_waits_for_the_rest() {
    let f = fixture(1, 1 << 20);
    let mut s = connect(f.server.local_addr());
    let whole = frame(ECHO, Flags::EMPTY, 3, b"split across writes");
    s.write_all(&whole[..7]).unwrap();
    assert!(!is_closed_within(&mut s, SHORT_WAIT));
    s.write_all(&whole[7..]).unwrap();
    let (h, body) = read_frame(&mut s);
    assert_eq!((h.request_id, &body[..]), (3, &b"split across writes"[..]));
}

/// Half a frame, then the client hangs up: no reply, a normal close.
///
/// The partial frame and the FIN usually arrive in one epoll event: the loop must read on
/// after the short read when the event says the peer closed, or (edge-triggered) it would
/// never see the EOF and the connection would linger.
#[test]
fn a_peer_closing_mid_frame_is_closed_cleanly() {
    let f = fixture(1, 1 << 20);
    let mut s = connect(f.server.local_addr());
    let whole = frame(ECHO, Flags::EMPTY, 3, b"split across writes");
    s.write_all(&whole[..15]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_close(&mut s), b"");
    wait_until("peer close", || {
        f.server.stats().closed_by(CloseReason::PeerClosed) == 1
    });
    assert_eq!(f.server.stats().closed_total(), 1);
}

const SHORT_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// A graceful stop sends GOAWAY on every connection; the request already on its way is still
/// answered, and the client's next call moves to a new connection, which the kernel gives to
/// the server that stays (two servers share the port with SO_REUSEPORT, as two workers do).
#[test]
fn a_stopping_server_says_goaway_and_the_client_moves_to_one_that_stays() {
    let leaving = FrameService::new(router(Arc::default(), Arc::default()));
    let f = leaving.clone();
    let old = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .drain_grace(std::time::Duration::from_secs(30))
        .serve(move || f.protocol())
        .unwrap();
    let addr = old.local_addr();
    let mut c = client(addr);
    assert_eq!(c.call_raw(WHOAMI, b"").unwrap(), b"0");
    // A raw connection to watch for the stop (connected before the second server exists).
    let mut watch = std::net::TcpStream::connect(addr).unwrap();
    watch.set_read_timeout(Some(WAIT)).unwrap();
    wait_until("the watcher is accepted", || old.stats().accepted == 2);
    // The server that stays answers ECHO its own way, so the test sees who answered.
    let staying = FrameService::new(
        Router::new().route_raw(ECHO, |_cx, body| Ok(Some([b"new:", body].concat()))),
    );
    let f = staying.clone();
    let new = Server::new()
        .bind(addr)
        .unwrap()
        .loops(1)
        .serve(move || f.protocol())
        .unwrap();
    old.shutdown(std::time::Duration::from_secs(30));
    // The GOAWAY comes once the stop began, and a stop closes the listener first: once the
    // watcher has it, `c` has one queued too and new connections can only reach `new`.
    let (goaway, body) = read_frame(&mut watch);
    assert_eq!(
        (goaway.msg_id, goaway.request_id, body.len()),
        (GOAWAY_ID, 0, 0)
    );
    assert!(goaway.flags.is_push());
    drop(watch);
    // This call was sent on the old connection: answered there, after the GOAWAY.
    assert_eq!(c.call_raw(ECHO, b"in flight").unwrap(), b"in flight");
    assert!(c.going_away(), "no GOAWAY seen");
    assert_eq!(c.reconnects(), 0);
    // The next one goes on a new connection, to the server that stays.
    assert_eq!(c.call_raw(ECHO, b"moved").unwrap(), b"new:moved");
    assert_eq!(c.reconnects(), 1);
    assert!(!c.going_away());
    // The old connection is quiet now; a stop with no grace left closes it.
    drop(c);
    old.join();
    new.stop(std::time::Duration::ZERO);
}
