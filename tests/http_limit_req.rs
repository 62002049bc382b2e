//! `limit_req` on real loopback connections, on a fake clock: the burst passes, the next
//! request is refused with the configured status (before its body is read, the connection
//! kept), a delayed request is answered only when its turn comes, and two servers sharing one
//! table (as the `herd` workers share theirs) share the limit.

mod http_support;

use std::sync::Arc;
use std::time::Duration;

use herd::clock::FakeClock;
use herd::http::{Body, HttpOptions, HttpService, LimitReq, Request, Response, Router, StatusCode};
use herd::limit::{Rate, RateLimit, RateTable};
use herd_testkit::wait_until;
use http_support::{serve_service, Client};

fn router() -> Router {
    Router::new()
        .get("/hello", |_: Request<Body>| Response::new(Body::from("hi")))
        .post("/echo", |req: Request<Body>| {
            let n = req.body().len().unwrap_or(0);
            Response::new(Body::from(format!("{n}")))
        })
}

fn limited(
    clock: &FakeClock,
    table: Arc<RateTable>,
    burst: u32,
    nodelay: bool,
    status: StatusCode,
) -> herd::ServerHandle {
    let limit = RateLimit::new(Rate::per_second(1.0), burst, table)
        .nodelay(nodelay)
        .clock(Arc::new(clock.clone()));
    let opts = HttpOptions {
        limit_req: Some(LimitReq { limit, status }),
        ..HttpOptions::default()
    };
    serve_service(HttpService::new(router()).options(opts), Some(clock))
}

#[test]
fn past_the_burst_requests_get_the_status_and_the_connection_stays() {
    let clock = FakeClock::new(10_000);
    let table = Arc::new(RateTable::new(1024));
    let server = limited(&clock, table, 2, true, StatusCode::TOO_MANY_REQUESTS);
    let mut c = Client::connect(server.local_addr());
    // One request and a burst of two pass at once (nodelay).
    for _ in 0..3 {
        assert_eq!(c.get("/hello").status, 200);
    }
    let r = c.get("/hello");
    assert_eq!((r.status, r.header("retry-after")), (429, Some("1")));
    assert!(!r.says_close());
    // A refused POST is answered from its head; its small body is dropped and the
    // connection goes on.
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(c.response().status, 429);
    c.send(b"12345");
    // One second leaks one request.
    clock.advance(1_000);
    server.tick();
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (200, "3"));
    assert_eq!(c.get("/hello").status, 429);
    let stats = server.stop(Duration::from_secs(5)).stats;
    assert_eq!(stats.proto.http.limit_rejected, 3);
    assert_eq!(stats.proto.http.limit_delayed, 0);
}

#[test]
fn without_nodelay_the_burst_is_spaced_out_at_the_rate() {
    let clock = FakeClock::new(10_000);
    let table = Arc::new(RateTable::new(1024));
    let server = limited(&clock, table, 2, false, StatusCode::SERVICE_UNAVAILABLE);
    let mut a = Client::connect(server.local_addr());
    let mut b = Client::connect(server.local_addr());
    let mut c = Client::connect(server.local_addr());
    let mut d = Client::connect(server.local_addr());
    assert_eq!(a.get("/hello").status, 200);
    // b is one interval ahead of the rate, c two: both wait; d is past the burst.
    b.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_until("b's request is in", || {
        server.stats().proto.http.limit_delayed == 1
    });
    c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_until("c's request is in", || {
        server.stats().proto.http.limit_delayed == 2
    });
    let r = d.get("/hello");
    assert_eq!((r.status, r.header("retry-after")), (503, Some("1")));
    // Nothing for b or c yet.
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(server.stats().proto.http.requests[0][1], 1);
    clock.advance(1_000);
    server.tick();
    assert_eq!(b.response().text(), "hi");
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(server.stats().proto.http.requests[0][1], 2);
    clock.advance(1_000);
    server.tick();
    assert_eq!(c.response().text(), "hi");
    // The connections stay: after the bucket drained, b is served at once.
    clock.advance(5_000);
    server.tick();
    assert_eq!(b.get("/hello").status, 200);
    let stats = server.stop(Duration::from_secs(5)).stats;
    assert_eq!(stats.proto.http.limit_delayed, 2);
    assert_eq!(stats.proto.http.limit_rejected, 1);
}

/// A request pipelined behind a delayed one waits behind it (responses keep their order).
#[test]
fn a_pipelined_request_waits_behind_a_delayed_one() {
    let clock = FakeClock::new(10_000);
    let table = Arc::new(RateTable::new(1024));
    let server = limited(&clock, table, 5, false, StatusCode::SERVICE_UNAVAILABLE);
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().status, 200);
    wait_until("the second is delayed", || {
        server.stats().proto.http.limit_delayed == 1
    });
    clock.advance(1_000);
    server.tick();
    assert_eq!(c.response().status, 200);
    server.stop(Duration::from_secs(5));
}

/// Two servers (think: two worker processes) over one table: the burst used on one is gone
/// on the other.
#[test]
fn servers_sharing_a_table_share_the_limit() {
    let clock = FakeClock::new(10_000);
    let file = RateTable::create_shared(4096).unwrap();
    let one = limited(
        &clock,
        Arc::new(RateTable::from_file(&file).unwrap()),
        3,
        true,
        StatusCode::TOO_MANY_REQUESTS,
    );
    let two = limited(
        &clock,
        Arc::new(RateTable::from_file(&file).unwrap()),
        3,
        true,
        StatusCode::TOO_MANY_REQUESTS,
    );
    let mut a = Client::connect(one.local_addr());
    let mut b = Client::connect(two.local_addr());
    let mut passed = 0;
    for i in 0..10 {
        let c = if i % 2 == 0 { &mut a } else { &mut b };
        if c.get("/hello").status == 200 {
            passed += 1;
        }
    }
    assert_eq!(passed, 4);
    one.stop(Duration::ZERO);
    two.stop(Duration::ZERO);
}
