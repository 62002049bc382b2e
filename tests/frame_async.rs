//! Async frame routes over loopback: the future runs as a task of the connection on a fake
//! clock; a slow call does not hold back a later fast one (replies carry their request ids);
//! a handler error and a panic become error frames for their request; a closed connection
//! cancels its tasks; an async route can call another frame server through a cosocket, and
//! through the loop's `FramePool`: concurrent calls multiplexed on one pipelined connection,
//! a call timeout on the loop clock, a backend that goes away.

mod frame_common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use frame_common::*;
use herd::clock::FakeClock;
use herd::frame::{AsyncClientOptions, ClientError, FramePool, FrameService, HandlerError, Router};
use herd::proto::frame::{ErrorCode, ErrorPayload, Flags, ERROR_ID};
use herd::task::{self, TcpStream};
use herd::{Server, ServerHandle};
use herd_testkit::*;

const ECHO: u16 = 1;
const SLOW_ADD: u16 = 2;
const FAIL: u16 = 3;
const PANIC: u16 = 4;
const HOLD: u16 = 5;
const RELAY: u16 = 6;
/// Through the loop's pool: `b` concurrent ECHO calls of "1".."b" to the server at port `a`,
/// answered with their sum.
const FAN_OUT: u16 = 7;
/// Through the loop's pool: one HOLD call to port `a`, answered with the error's kind.
const CALL_HOLD: u16 = 8;

thread_local! {
    static POOL: FramePool = FramePool::new(
        AsyncClientOptions {
            call_timeout: Duration::from_millis(2_000),
            ..AsyncClientOptions::default()
        },
        Duration::from_secs(60),
    );
}

fn backend_addr(port: i64) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port as u16))
}

struct DropFlag(Arc<AtomicUsize>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn router(dropped: Arc<AtomicUsize>) -> Router {
    Router::new()
        .route_raw(ECHO, |_cx, body| Ok(Some(body.to_vec())))
        // Sleeps `b` ms on the loop clock, then answers a + b.
        .route_async(SLOW_ADD, |req: Add| async move {
            task::sleep(Duration::from_millis(req.b as u64)).await;
            Ok(Sum { sum: req.a + req.b })
        })
        .route_async(FAIL, |_: Add| async {
            task::sleep(Duration::from_millis(1)).await;
            Err::<Sum, _>(HandlerError::new("no luck"))
        })
        .route_async(PANIC, |_: Add| async {
            task::sleep(Duration::from_millis(1)).await;
            panic!("an async frame handler asked to panic");
            #[allow(unreachable_code)]
            Ok(Sum { sum: 0 })
        })
        .route_async(HOLD, move |_: Add| {
            let flag = DropFlag(dropped.clone());
            async move {
                let _flag = flag;
                std::future::pending::<Result<Sum, HandlerError>>().await
            }
        })
        .route_async(FAN_OUT, |req: Add| async move {
            let client = POOL.with(|p| p.client(backend_addr(req.a))).await?;
            let calls: Vec<_> = (1..=req.b)
                .map(|i| {
                    let c = client.clone();
                    task::spawn_local(
                        async move { c.call_raw(ECHO, i.to_string().as_bytes()).await },
                    )
                })
                .collect();
            let mut total = 0;
            for call in calls {
                let body = call.await.map_err(|_| HandlerError::new("cancelled"))??;
                total += std::str::from_utf8(&body)?.parse::<i64>()?;
            }
            Ok(Sum { sum: total })
        })
        .route_async(CALL_HOLD, |req: Add| async move {
            let client = POOL.with(|p| p.client(backend_addr(req.a))).await?;
            let r = client.call::<Add, Sum>(HOLD, &Add { a: 0, b: 0 }).await;
            let kind = match r {
                Err(ClientError::Io(e)) => format!("{:?}", e.kind()),
                other => format!("{other:?}"),
            };
            Err::<Sum, _>(HandlerError::new(kind))
        })
        // Calls ECHO on the frame server at port `a` and answers what it said, as a sum.
        .route_async(RELAY, |req: Add| async move {
            let addr = SocketAddr::from(([127, 0, 0, 1], req.a as u16));
            let mut s = TcpStream::connect(addr).await?;
            s.write_all(&frame(ECHO, Flags::EMPTY, 9, b"12345")).await?;
            let mut head = [0u8; 12];
            s.read_exact(&mut head).await?;
            let mut body = vec![0u8; u32::from_be_bytes(head[..4].try_into().unwrap()) as usize];
            s.read_exact(&mut body).await?;
            let n: i64 = std::str::from_utf8(&body)?.parse()?;
            Ok(Sum { sum: n + req.b })
        })
}

fn serve(clock: Option<&FakeClock>) -> (ServerHandle, Arc<AtomicUsize>) {
    let dropped = Arc::new(AtomicUsize::new(0));
    let frames = FrameService::new(router(dropped.clone()));
    let mut b = Server::new().bind("127.0.0.1:0").unwrap().loops(1);
    if let Some(c) = clock {
        b = b.clock(Arc::new(c.clone()));
    }
    (b.serve(move || frames.protocol()).unwrap(), dropped)
}

fn add(a: i64, b: i64) -> Vec<u8> {
    use herd::frame::prost::Message;
    Add { a, b }.encode_to_vec()
}

fn sum(body: &[u8]) -> i64 {
    use herd::frame::prost::Message;
    Sum::decode(body).unwrap().sum
}

#[test]
fn a_slow_async_call_does_not_hold_back_a_fast_one() {
    let clock = FakeClock::new(1_000);
    let (server, _) = serve(Some(&clock));
    let mut s = connect(server.local_addr());
    let mut burst = frame(SLOW_ADD, Flags::EMPTY, 1, &add(1, 500));
    burst.extend(frame(SLOW_ADD, Flags::EMPTY, 2, &add(2, 100)));
    burst.extend(frame(ECHO, Flags::EMPTY, 3, b"now"));
    s.write_all(&burst).unwrap();
    let (h, body) = read_frame(&mut s);
    assert_eq!((h.request_id, body.as_slice()), (3, &b"now"[..]));
    clock.advance(100);
    settle(&server);
    let (h, body) = read_frame(&mut s);
    assert_eq!((h.request_id, sum(&body)), (2, 102));
    assert!(h.flags.contains(Flags::RESPONSE));
    clock.advance(400);
    settle(&server);
    let (h, body) = read_frame(&mut s);
    assert_eq!((h.request_id, sum(&body)), (1, 501));
    server.stop(Duration::ZERO);
}

#[test]
fn errors_and_panics_answer_their_request_and_a_close_cancels() {
    let (server, dropped) = serve(None);
    let mut s = connect(server.local_addr());
    for (rid, id, code) in [
        (7, FAIL, ErrorCode::Handler),
        (8, PANIC, ErrorCode::Internal),
    ] {
        s.write_all(&frame(id, Flags::EMPTY, rid, &add(0, 0)))
            .unwrap();
        let (h, body) = read_frame(&mut s);
        assert_eq!((h.msg_id, h.request_id), (ERROR_ID, rid));
        assert_eq!(ErrorPayload::parse(&body).unwrap().code, code);
    }
    // A bad body is refused on the loop, before any task.
    s.write_all(&frame(SLOW_ADD, Flags::EMPTY, 9, b"\xff\xff"))
        .unwrap();
    let (h, _) = read_frame(&mut s);
    assert_eq!((h.msg_id, h.request_id), (ERROR_ID, 9));
    // The connection still works.
    s.write_all(&frame(ECHO, Flags::EMPTY, 10, b"ok")).unwrap();
    assert_eq!(read_frame(&mut s).1, b"ok");

    let mut held = connect(server.local_addr());
    held.write_all(&frame(HOLD, Flags::EMPTY, 1, &add(0, 0)))
        .unwrap();
    // Four frames came before it on the first connection.
    wait_until("the held call runs", || server.stats().msgs_in == 5);
    drop(held);
    wait_until("its task is cancelled", || {
        dropped.load(Ordering::SeqCst) == 1
    });
    server.stop(Duration::ZERO);
}

#[test]
fn an_async_route_calls_another_frame_server() {
    let (backend, _) = serve(None);
    let (front, _) = serve(None);
    let mut s = connect(front.local_addr());
    let port = i64::from(backend.local_addr().port());
    s.write_all(&frame(RELAY, Flags::EMPTY, 4, &add(port, 10)))
        .unwrap();
    let (h, body) = read_frame(&mut s);
    assert_eq!((h.request_id, sum(&body)), (4, 12_355));
    front.stop(Duration::ZERO);
    backend.stop(Duration::ZERO);
}

#[test]
fn the_pool_multiplexes_concurrent_calls_on_one_connection_per_loop() {
    let (backend, _) = serve(None);
    let (front, _) = serve(None);
    let port = i64::from(backend.local_addr().port());
    let mut s = connect(front.local_addr());
    for rid in 1..=3 {
        s.write_all(&frame(FAN_OUT, Flags::EMPTY, rid, &add(port, 100)))
            .unwrap();
        let (h, body) = read_frame(&mut s);
        assert_eq!((h.request_id, sum(&body)), (rid, 5050));
    }
    // 300 calls, one connection: the calls of one request went out together (pipelined).
    let st = backend.stats();
    assert_eq!(st.accepted, 1);
    assert_eq!(st.msgs_in, 300);
    assert!(st.reads < 300, "{} reads for 300 calls", st.reads);
    // The backend goes away: the pooled connection fails, the pool connects anew, finds the
    // port closed, and the route answers with an error frame instead of hanging.
    backend.stop(Duration::ZERO);
    s.write_all(&frame(FAN_OUT, Flags::EMPTY, 9, &add(port, 1)))
        .unwrap();
    let (h, _) = read_frame(&mut s);
    assert_eq!((h.msg_id, h.request_id), (ERROR_ID, 9));
    front.stop(Duration::ZERO);
}

#[test]
fn a_call_times_out_on_the_loop_clock() {
    let (backend, _) = serve(None);
    let clock = FakeClock::new(1_000);
    let (front, _) = serve(Some(&clock));
    let port = i64::from(backend.local_addr().port());
    let mut s = connect(front.local_addr());
    s.write_all(&frame(CALL_HOLD, Flags::EMPTY, 5, &add(port, 0)))
        .unwrap();
    wait_until("the backend holds the call", || {
        backend.stats().msgs_in == 1
    });
    clock.advance(1_999);
    settle(&front);
    clock.advance(1);
    settle(&front);
    let (h, body) = read_frame(&mut s);
    assert_eq!((h.msg_id, h.request_id), (ERROR_ID, 5));
    assert!(
        ErrorPayload::parse(&body)
            .unwrap()
            .text
            .contains("TimedOut"),
        "{:?}",
        ErrorPayload::parse(&body).unwrap().text
    );
    front.stop(Duration::ZERO);
    backend.stop(Duration::ZERO);
}
