//! Response bodies written by a task (`Body::channel`) over loopback: server-sent events that
//! arrive one by one as a task writes them on a fake clock; a producer held back by a client
//! that does not read (bounded memory), then everything delivered in order; a client that
//! leaves stops the producer; 1,000 event-stream clients at once; one broadcast to 1,000
//! subscribers.

mod http_support;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herd::clock::FakeClock;
use herd::http::{Body, HttpService, Request, Response, Router};
use herd::task;
use herd_testkit::wait_until;
use http_support::{serve_service, Client};

#[derive(Default)]
struct Counts {
    sent: AtomicUsize,
    stopped: AtomicUsize,
}

fn router(counts: Arc<Counts>) -> Router {
    let c2 = counts.clone();
    Router::new()
        // `n` events, one per 100 ms of the loop clock.
        .get("/events", move |req: Request<Body>| {
            let n: usize = req.uri().query().unwrap_or("3").parse().unwrap_or(3);
            let (tx, body) = Body::channel(4);
            let counts = counts.clone();
            task::spawn_local(async move {
                for i in 0..n {
                    if tx.send(format!("data: {i}\n\n")).await.is_err() {
                        counts.stopped.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    counts.sent.fetch_add(1, Ordering::SeqCst);
                    task::sleep(Duration::from_millis(100)).await;
                }
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap()
        })
        // 64 MiB in 64 KiB chunks, as fast as the client takes them.
        .get("/flood", move |_: Request<Body>| {
            let (tx, body) = Body::channel(2);
            let counts = c2.clone();
            task::spawn_local(async move {
                for i in 0..1024u32 {
                    let chunk = vec![(i % 251) as u8; 64 * 1024];
                    if tx.send(chunk).await.is_err() {
                        counts.stopped.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    counts.sent.fetch_add(1, Ordering::SeqCst);
                }
            });
            Response::new(body)
        })
}

fn serve(clock: Option<&FakeClock>) -> (herd::ServerHandle, Arc<Counts>) {
    let counts = Arc::new(Counts::default());
    let server = serve_service(HttpService::new(router(counts.clone())), clock);
    (server, counts)
}

/// Read from `c` until `want` has arrived (bounded by the socket's timeout).
fn read_until(c: &mut Client, want: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(want) {
        let n = c.s.read(&mut buf).expect("reading the stream");
        assert!(
            n > 0,
            "closed before {want:?}: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

#[test]
fn events_arrive_one_by_one_as_the_task_writes_them() {
    let clock = FakeClock::new(1_000);
    let (server, counts) = serve(Some(&clock));
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /events?3 HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = read_until(&mut c, "data: 0\n\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("transfer-encoding: chunked"), "{head}");
    assert!(lower.contains("content-type: text/event-stream"), "{head}");
    assert!(!head.contains("data: 1"));
    clock.advance(100);
    server.tick();
    read_until(&mut c, "data: 1\n\n");
    clock.advance(100);
    server.tick();
    read_until(&mut c, "data: 2\n\n");
    clock.advance(100);
    server.tick();
    // The task ended: the last chunk, and the connection is ready for the next request.
    read_until(&mut c, "0\r\n\r\n");
    c.send(b"GET /events?1 HTTP/1.1\r\nHost: t\r\n\r\n");
    read_until(&mut c, "data: 0\n\n");
    assert_eq!(counts.sent.load(Ordering::SeqCst), 4);
    server.stop(Duration::ZERO);
}

#[test]
fn a_client_that_does_not_read_holds_the_producer_back() {
    let (server, counts) = serve(None);
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /flood HTTP/1.1\r\nHost: t\r\n\r\n");
    // Nothing is read: the producer stops when the socket buffers, the connection's
    // watermark and the channel's 2 chunks are full, far short of 1,024 chunks.
    wait_until("the producer is held", || {
        let a = counts.sent.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        a > 0 && a == counts.sent.load(Ordering::SeqCst)
    });
    let held = counts.sent.load(Ordering::SeqCst);
    assert!(
        held < 200,
        "{held} chunks of 64 KiB sent to a client that reads nothing"
    );
    let r = c.response();
    assert_eq!(r.body.len(), 64 << 20);
    for (i, chunk) in r.body.chunks(64 * 1024).enumerate() {
        assert!(chunk.iter().all(|&b| b == (i % 251) as u8), "chunk {i}");
    }
    // A client that leaves mid-stream stops the producer.
    let mut gone = Client::connect(server.local_addr());
    gone.send(b"GET /flood HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut some = [0u8; 1024];
    gone.s.read_exact(&mut some).unwrap();
    drop(gone);
    wait_until("the producer stops", || {
        counts.stopped.load(Ordering::SeqCst) == 1
    });
    server.stop(Duration::ZERO);
}

#[test]
fn a_thousand_event_streams_at_once() {
    let _ = herd::os::set_nofile_limit(8192);
    let (server, counts) = serve(None);
    let mut clients: Vec<std::net::TcpStream> = (0..1000)
        .map(|_| herd_testkit::connect(server.local_addr()))
        .collect();
    for c in &mut clients {
        c.write_all(b"GET /events?2 HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    for c in &mut clients {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"0\r\n\r\n") {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(got).unwrap();
        assert!(
            text.contains("data: 0\n\n") && text.contains("data: 1\n\n"),
            "{text}"
        );
    }
    assert_eq!(counts.sent.load(Ordering::SeqCst), 2000);
    server.stop(Duration::ZERO);
}

thread_local! {
    /// The subscribers of `/sub` on this loop.
    static SUBS: std::cell::RefCell<Vec<herd::http::BodySender>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

#[test]
fn one_broadcast_reaches_a_thousand_subscribers() {
    const N: usize = 1000;
    let _ = herd::os::set_nofile_limit(8192);
    let subscribed = Arc::new(AtomicUsize::new(0));
    let s2 = subscribed.clone();
    let router = Router::new()
        .get("/sub", move |_: Request<Body>| {
            let (tx, body) = Body::channel(8);
            SUBS.with(|s| s.borrow_mut().push(tx));
            s2.fetch_add(1, Ordering::SeqCst);
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(body)
                .unwrap()
        })
        // Three events to every subscriber, then the end of every stream.
        .post_async("/publish", |_: Request<Body>| async {
            let subs = SUBS.with(|s| std::mem::take(&mut *s.borrow_mut()));
            let mut reached = 0;
            for i in 0..3 {
                for tx in &subs {
                    if tx
                        .send(format!("id: {i}\ndata: event {i}\n\n"))
                        .await
                        .is_ok()
                        && i == 2
                    {
                        reached += 1;
                    }
                }
            }
            format!("{reached}")
        });
    let server = serve_service(HttpService::new(router), None);
    let mut clients: Vec<std::net::TcpStream> = (0..N)
        .map(|_| herd_testkit::connect(server.local_addr()))
        .collect();
    for c in &mut clients {
        c.write_all(b"GET /sub HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
    }
    wait_until("every client subscribed", || {
        subscribed.load(Ordering::SeqCst) == N
    });
    let mut publisher = Client::connect(server.local_addr());
    publisher.send(b"POST /publish HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(publisher.response().text(), N.to_string());
    for c in &mut clients {
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        while !got.ends_with(b"0\r\n\r\n") {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8(got).unwrap();
        for i in 0..3 {
            assert!(
                text.contains(&format!("id: {i}\ndata: event {i}\n\n")),
                "{text}"
            );
        }
    }
    server.stop(Duration::ZERO);
}
