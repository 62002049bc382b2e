//! Blocking routes on the worker pool over loopback: replies come back through the loop,
//! a full pool answers BUSY at once, a reply for a closed connection never reaches the next
//! connection in the same slot, panics answer INTERNAL, graceful stop waits for the pool.

mod frame_common;

use std::io::Write;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use frame_common::*;
use herd::frame::{ClientError, FrameService, HandlerError, Router};
use herd::pool::WorkerPool;
use herd::proto::frame::{ErrorCode, Flags};
use herd_testkit::*;

const WHOAMI: u16 = 1;
const SLOW: u16 = 2;
const MUL: u16 = 3;
const RAW_REV: u16 = 4;
const PANIC: u16 = 5;
const ECHO: u16 = 6;

/// A gate the blocking handler waits on: the test opens it one job at a time.
#[derive(Clone)]
struct Gate {
    started: Sender<()>,
    open: Arc<Mutex<Receiver<()>>>,
}

struct Harness {
    started: Receiver<()>,
    release: Sender<()>,
}

fn gate() -> (Gate, Harness) {
    let (started_tx, started) = channel();
    let (release, open_rx) = channel();
    (
        Gate {
            started: started_tx,
            open: Arc::new(Mutex::new(open_rx)),
        },
        Harness { started, release },
    )
}

fn router(g: Gate) -> Router {
    Router::new()
        .route_raw(WHOAMI, |cx, _| Ok(Some(cx.id().to_string().into_bytes())))
        .route_raw(ECHO, |_cx, body| Ok(Some(body.to_vec())))
        .route_blocking(SLOW, move |req: Add| {
            g.started.send(()).unwrap();
            g.open
                .lock()
                .unwrap()
                .recv_timeout(WAIT)
                .map_err(|_| HandlerError::new("gate never opened"))?;
            Ok(Sum { sum: req.a })
        })
        .route_blocking(MUL, |req: Add| {
            req.a
                .checked_mul(req.b)
                .map(|sum| Sum { sum })
                .ok_or_else(|| HandlerError::new("overflow"))
        })
        .route_blocking_raw(RAW_REV, |body| Ok(body.iter().rev().copied().collect()))
        .route_blocking_raw(PANIC, |_| panic!("blocking handler asked to panic"))
}

fn start_with(pool: WorkerPool) -> (FrameService, herd::ServerHandle, Harness) {
    let (g, h) = gate();
    let frames = FrameService::new(router(g)).pool(pool);
    let server = start(&frames, 1);
    (frames, server, h)
}

#[test]
fn blocking_replies_come_back_through_the_loop() {
    let (frames, server, _h) = start_with(WorkerPool::new(2, 64));
    let mut c = client(server.local_addr());
    let s: Sum = c.call(MUL, &Add { a: 6, b: 7 }).unwrap();
    assert_eq!(s.sum, 42);
    assert_eq!(c.call_raw(RAW_REV, b"abc").unwrap(), b"cba");
    match c.call::<Add, Sum>(MUL, &Add { a: i64::MAX, b: 2 }) {
        Err(ClientError::Server { code, text }) => {
            assert_eq!((code, text.as_str()), (ErrorCode::Handler, "overflow"))
        }
        other => panic!("{other:?}"),
    }
    // Inline and pool requests pipelined: every reply matched by request id.
    let bodies: Vec<Vec<u8>> = (0..20).map(|i| vec![i as u8, 1, 2]).collect();
    let calls: Vec<(u16, &[u8])> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| (if i % 2 == 0 { RAW_REV } else { ECHO }, &b[..]))
        .collect();
    for (i, r) in c.pipeline_raw(&calls).unwrap().into_iter().enumerate() {
        let mut want = bodies[i].clone();
        if i % 2 == 0 {
            want.reverse();
        }
        assert_eq!(r.unwrap(), want);
    }
    // Bad bodies are refused on the loop, before the pool.
    match c.call_raw(MUL, &[0xFF]) {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, ErrorCode::BadBody),
        other => panic!("{other:?}"),
    }
    assert_eq!(frames.stats().bad_body, 1);
}

#[test]
fn a_full_pool_answers_busy_at_once() {
    // One worker, one queued job: the third concurrent request is refused.
    let (frames, server, h) = start_with(WorkerPool::new(1, 1));
    let mut c = client(server.local_addr());
    let mut s = connect(server.local_addr());
    let req = |a: i64| {
        use herd::frame::prost::Message;
        Add { a, b: 0 }.encode_to_vec()
    };
    s.write_all(&frame(SLOW, Flags::EMPTY, 1, &req(1))).unwrap();
    h.started.recv_timeout(WAIT).unwrap(); // job 1 runs and holds the only worker
    s.write_all(&frame(SLOW, Flags::EMPTY, 2, &req(2))).unwrap();
    // Job 2 sits in the queue; job 3 finds it full.
    assert_eq!(c.call_raw(ECHO, b"sync").unwrap(), b"sync");
    s.write_all(&frame(SLOW, Flags::EMPTY, 3, &req(3))).unwrap();
    let (hd, body) = read_frame(&mut s);
    assert_eq!(hd.request_id, 3);
    assert!(hd.flags.is_error());
    let p = herd::proto::frame::ErrorPayload::parse(&body).unwrap();
    assert_eq!(p.code, ErrorCode::Busy);
    // The loop was never blocked: other connections are served meanwhile.
    assert_eq!(c.call_raw(ECHO, b"alive").unwrap(), b"alive");
    h.release.send(()).unwrap();
    let (hd, _) = read_frame(&mut s);
    assert_eq!(hd.request_id, 1);
    h.started.recv_timeout(WAIT).unwrap();
    h.release.send(()).unwrap();
    let (hd, _) = read_frame(&mut s);
    assert_eq!(hd.request_id, 2);
    assert_eq!(frames.stats().busy, 1);
}

/// Parse "loop:slot:gen".
fn conn_id(text: &[u8]) -> (u32, u32, u32) {
    let t = std::str::from_utf8(text).unwrap();
    let v: Vec<u32> = t.split(':').map(|x| x.parse().unwrap()).collect();
    (v[0], v[1], v[2])
}

#[test]
fn a_reply_for_a_closed_connection_never_reaches_the_next_tenant_of_its_slot() {
    let (_frames, server, h) = start_with(WorkerPool::new(1, 4));
    let mut a = client(server.local_addr());
    let id_a = conn_id(&a.call_raw(WHOAMI, b"").unwrap());
    // A asks for slow work, then hangs up while the job runs.
    use herd::frame::prost::Message;
    let rid = a.next_request_id();
    a.send_frame(
        SLOW,
        Flags::EMPTY,
        rid,
        &Add { a: 666, b: 0 }.encode_to_vec(),
    )
    .unwrap();
    h.started.recv_timeout(WAIT).unwrap();
    drop(a);
    wait_until("A closed", || server.stats().open == 0);

    // B gets A's slot (one loop, the slab reuses the freed slot) with a new generation.
    let mut b = client(server.local_addr());
    let id_b = conn_id(&b.call_raw(WHOAMI, b"").unwrap());
    assert_eq!(
        (id_b.0, id_b.1),
        (id_a.0, id_a.1),
        "B should reuse A's slot"
    );
    assert_ne!(id_b.2, id_a.2);

    let stale_before = server.stats().stale_commands;
    h.release.send(()).unwrap();
    wait_until("stale reply dropped", || {
        server.stats().stale_commands > stale_before
    });
    // The next thing B receives is the pong to its own ping, and nothing came before it.
    b.ping().unwrap();
    assert_eq!(b.queued(), 0, "a frame other than the pong reached B");
    assert_eq!(
        b.call_raw(WHOAMI, b"").unwrap(),
        format!("{}:{}:{}", id_b.0, id_b.1, id_b.2).into_bytes()
    );
    assert_eq!(b.queued(), 0);
}

#[test]
fn a_panicking_blocking_handler_answers_internal_and_keeps_the_connection() {
    let (frames, server, _h) = start_with(WorkerPool::new(1, 4));
    let mut c = client(server.local_addr());
    match c.call_raw(PANIC, b"") {
        Err(ClientError::Server { code, .. }) => assert_eq!(code, ErrorCode::Internal),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.call_raw(RAW_REV, b"12").unwrap(), b"21");
    assert_eq!(frames.stats().panics, 1);
    assert_eq!(server.stats().closed_total(), 0);
}

#[test]
fn graceful_stop_waits_for_pool_replies() {
    let (_frames, server, h) = start_with(WorkerPool::new(1, 4));
    let mut c = client(server.local_addr());
    use herd::frame::prost::Message;
    let rid = c.next_request_id();
    c.send_frame(SLOW, Flags::EMPTY, rid, &Add { a: 5, b: 0 }.encode_to_vec())
        .unwrap();
    h.started.recv_timeout(WAIT).unwrap();
    server.shutdown(Duration::from_secs(30));
    // Still open while the job runs; then the reply is written and the connection closed.
    h.release.send(()).unwrap();
    let reply = c.recv().unwrap();
    assert_eq!(reply.header.request_id, rid);
    assert_eq!(reply.decode::<Sum>().unwrap().sum, 5);
    let report = server.join();
    assert_eq!(report.closed_forced, 0);
}
