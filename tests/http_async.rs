//! Async HTTP routes over real loopback sockets: a handler that awaits a sleep on a fake clock
//! keeps its place in the connection's response order behind and ahead of inline routes; one
//! that awaits a cosocket call answers with what the upstream said; HEAD works on an async
//! GET; a panic is answered with 500 and the connection goes on; a connection that closes
//! cancels its handler's task; many connections wait at once without holding each other up.

mod http_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herd::clock::FakeClock;
use herd::http::{Body, HttpService, Request, Response, Router};
use herd::task::{self, TcpStream};
use herd_testkit::wait_until;
use http_support::{serve_service, Client};

/// Counts drops: set when a handler's task was cancelled.
struct DropFlag(Arc<AtomicUsize>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn query_ms(req: &Request<Body>) -> u64 {
    req.uri()
        .query()
        .and_then(|q| q.strip_prefix("ms="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `started` counts handlers of `/sleep` and `/hold` that began; `dropped`, `/hold` tasks
/// cancelled.
fn router(started: Arc<AtomicUsize>, dropped: Arc<AtomicUsize>) -> Router {
    let started2 = started.clone();
    Router::new()
        .get("/now", |_: Request<Body>| {
            Response::new(Body::from_static(b"inline"))
        })
        .get_async("/sleep", move |req: Request<Body>| {
            started2.fetch_add(1, Ordering::SeqCst);
            sleep_for(req)
        })
        .get_async("/call", |req: Request<Body>| async move {
            let port: u16 = req.uri().query().unwrap_or("").parse().unwrap_or(0);
            let r = async {
                let mut s = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).await?;
                s.write_all(b"ping").await?;
                s.shutdown(std::net::Shutdown::Write)?;
                let mut out = vec![0u8; 64];
                let n = s.read(&mut out).await?;
                out.truncate(n);
                Ok::<_, std::io::Error>(out)
            }
            .await;
            match r {
                Ok(v) => Response::new(Body::from(v)),
                Err(e) => {
                    let mut resp = Response::new(Body::from(format!("upstream: {e}")));
                    *resp.status_mut() = herd::http::StatusCode::BAD_GATEWAY;
                    resp
                }
            }
        })
        .get_async("/panic", |_: Request<Body>| async {
            task::sleep(Duration::from_millis(1)).await;
            panic!("an async handler asked to panic");
            #[allow(unreachable_code)]
            ()
        })
        .get_async("/hold", move |_: Request<Body>| {
            started.fetch_add(1, Ordering::SeqCst);
            let flag = DropFlag(dropped.clone());
            async move {
                let _flag = flag;
                std::future::pending::<Response<Body>>().await
            }
        })
}

async fn sleep_for(req: Request<Body>) -> Response<Body> {
    let ms = query_ms(&req);
    task::sleep(Duration::from_millis(ms)).await;
    Response::new(Body::from(format!("slept {ms}")))
}

struct Served {
    server: herd::ServerHandle,
    started: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

fn serve(clock: Option<&FakeClock>) -> Served {
    let started = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let service = HttpService::new(router(started.clone(), dropped.clone()));
    Served {
        server: serve_service(service, clock),
        started,
        dropped,
    }
}

fn pipelined(c: &mut Client, paths: &[&str]) {
    let mut bytes = Vec::new();
    for p in paths {
        bytes.extend_from_slice(format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    c.send(&bytes);
}

fn nothing_within(c: &mut Client, d: Duration) -> bool {
    c.s.set_read_timeout(Some(d)).unwrap();
    let mut b = [0u8; 1];
    let quiet = c.s.peek(&mut b).is_err();
    c.s.set_read_timeout(Some(herd_testkit::WAIT)).unwrap();
    quiet
}

#[test]
fn async_responses_keep_the_request_order_on_the_loop_clock() {
    let clock = FakeClock::new(1_000);
    let server = serve(Some(&clock)).server;
    let mut c = Client::connect(server.local_addr());
    // An inline route, a slow async one, a fast async one, an inline one: the order holds.
    pipelined(
        &mut c,
        &[
            "/now",
            "/sleep?ms=500",
            "/sleep?ms=0",
            "/now",
            "/sleep?ms=100",
        ],
    );
    assert_eq!(c.response().text(), "inline");
    assert!(nothing_within(&mut c, Duration::from_millis(50)));
    clock.advance(500);
    server.tick();
    assert_eq!(c.response().text(), "slept 500");
    assert_eq!(c.response().text(), "slept 0");
    assert_eq!(c.response().text(), "inline");
    // The last one started only when its turn came, so it still needs its 100 ms.
    assert!(nothing_within(&mut c, Duration::from_millis(50)));
    clock.advance(100);
    server.tick();
    let r = c.response();
    assert_eq!((r.status, r.text()), (200, "slept 100".to_owned()));
    // HEAD on an async GET: the head, no body.
    c.send(b"HEAD /sleep?ms=0 HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.head_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("7"));
    server.stop(Duration::ZERO);
}

#[test]
fn an_async_handler_calls_an_upstream_through_a_cosocket() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = upstream.local_addr().unwrap().port();
    let t = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = upstream.accept().unwrap();
            let mut req = Vec::new();
            s.read_to_end(&mut req).unwrap();
            s.write_all(&[b"pong to ".as_slice(), &req].concat())
                .unwrap();
        }
    });
    let server = serve(None).server;
    let mut c = Client::connect(server.local_addr());
    for _ in 0..2 {
        let r = c.get(&format!("/call?{port}"));
        assert_eq!((r.status, r.text()), (200, "pong to ping".to_owned()));
    }
    t.join().unwrap();
    // Nobody listens there any more: the handler answers 502 itself.
    let r = c.get(&format!("/call?{port}"));
    assert_eq!(r.status, 502);
    assert!(r.text().contains("refused"), "{}", r.text());
    server.stop(Duration::ZERO);
}

#[test]
fn a_panic_is_a_500_and_a_closed_connection_cancels_its_task() {
    let Served {
        server,
        started,
        dropped,
    } = serve(None);
    let mut c = Client::connect(server.local_addr());
    let r = c.get("/panic");
    assert_eq!(r.status, 500);
    assert_eq!(c.get("/now").text(), "inline");

    let mut held = Client::connect(server.local_addr());
    held.send(b"GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    wait_until("the handler waits", || started.load(Ordering::SeqCst) == 1);
    assert_eq!(dropped.load(Ordering::SeqCst), 0);
    drop(held);
    wait_until("the task is cancelled", || {
        dropped.load(Ordering::SeqCst) == 1
    });
    assert_eq!(c.get("/now").text(), "inline");
    server.stop(Duration::ZERO);
}

#[test]
fn many_connections_wait_at_once() {
    let clock = FakeClock::new(1_000);
    let Served {
        server, started, ..
    } = serve(Some(&clock));
    let mut clients: Vec<Client> = (0..200)
        .map(|_| Client::connect(server.local_addr()))
        .collect();
    for c in &mut clients {
        c.send(b"GET /sleep?ms=1000 HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    wait_until("every request is waiting", || {
        started.load(Ordering::SeqCst) == 200
    });
    clock.advance(1_000);
    server.tick();
    for c in &mut clients {
        assert_eq!(c.response().text(), "slept 1000");
    }
    server.stop(Duration::ZERO);
}
