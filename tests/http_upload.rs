//! Streaming request bodies over real loopback sockets: a 1 GiB upload through curl into the
//! upload example's routes with the process' peak memory barely moving; a chunked upload
//! from curl's stdin; `Expect: 100-continue` answered when the handler first reads (not
//! before); 413 for a body over the route's limit (announced, and chunked past it); a client
//! that goes away mid-body cancels the handler's task; a request pipelined behind a streamed
//! body is answered after it; a handler that answers early has the rest of its body dropped;
//! and a handler that does not read makes the server stop reading (its queue stays bounded)
//! until it does.

#[allow(dead_code)]
#[path = "../examples/upload.rs"]
mod upload;

mod http_support;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herd::clock::FakeClock;
use herd::http::{Body, BodyError, BodyStream, HttpService, Request, Response, Router};
use herd::task;
use herd_testkit::wait_until;
use http_support::{serve_service, Client};

/// A fresh directory under the system's temporary directory.
fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("herd-upload-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fnv(data: &[u8]) -> u64 {
    let mut f = upload::Fnv::default();
    f.update(data);
    f.0
}

/// FNV-1a of `n` zero bytes, without hashing them one by one: each zero byte only multiplies.
fn fnv_zeros(n: u64) -> u64 {
    let (mut acc, mut base, mut e) = (1u64, 0x0100_0000_01b3u64, n);
    while e > 0 {
        if e & 1 == 1 {
            acc = acc.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        e >>= 1;
    }
    upload::Fnv::default().0.wrapping_mul(acc)
}

/// The peak resident set of this process, KiB.
fn peak_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn curl(args: &[&str], stdin: Option<&[u8]>) -> String {
    let mut child = Command::new("curl")
        .args(["-sS", "--max-time", "120"])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .spawn()
        .expect("curl runs");
    if let Some(data) = stdin {
        let mut w = child.stdin.take().unwrap();
        w.write_all(data).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "curl {args:?}: {:?}", out.status);
    String::from_utf8(out.stdout).unwrap()
}

fn upload_server(tag: &str) -> (herd::ServerHandle, std::path::PathBuf) {
    let dir = temp_dir(tag);
    let server = serve_service(HttpService::new(upload::router(dir.clone())), None);
    (server, dir)
}

#[test]
fn a_1gib_upload_streams_to_a_file_in_bounded_memory() {
    const SIZE: u64 = 1 << 30;
    let (server, dir) = upload_server("big");
    // A sparse file: curl reads zeros without a gigabyte on disk or in memory.
    let src = dir.join("source");
    std::fs::File::create(&src).unwrap().set_len(SIZE).unwrap();
    let before = peak_kib();
    let url = format!("http://{}/upload/copy", server.local_addr());
    let answer = curl(&["-T", src.to_str().unwrap(), &url], None);
    let grown = peak_kib().saturating_sub(before);
    eprintln!("1 GiB upload: peak RSS grew by {grown} KiB");
    assert_eq!(answer, format!("{SIZE} {:016x}\n", fnv_zeros(SIZE)));
    assert_eq!(std::fs::metadata(dir.join("copy")).unwrap().len(), SIZE);
    assert!(grown < 64 * 1024, "peak RSS grew by {grown} KiB");
    assert_eq!(server.stats().proto.http.body_bytes_in, SIZE);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_chunked_upload_from_stdin_and_100_continue() {
    let (server, dir) = upload_server("chunked");
    let data = herd_testkit::pattern(7, 3 << 20);
    let url = format!("http://{}/upload/piped", server.local_addr());
    // `-T -` sends stdin chunked (curl also asks `Expect: 100-continue` for it).
    let answer = curl(&["-T", "-", &url], Some(&data));
    assert_eq!(answer, format!("{} {:016x}\n", data.len(), fnv(&data)));
    assert_eq!(std::fs::read(dir.join("piped")).unwrap(), data);

    // By hand: the interim answer comes before any body byte is sent.
    let mut c = Client::connect(server.local_addr());
    c.send(b"POST /upload/cont HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.interim().status, 100);
    c.send(b"hello");
    let r = c.response();
    assert_eq!(
        (r.status, r.text()),
        (200, format!("5 {:016x}\n", fnv(b"hello")))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A streaming route that counts its body after waiting `ms` on the loop's clock, and one
/// with a 1000-byte limit that reports what reading gave.
fn counting_router(dropped: Arc<AtomicUsize>) -> Router {
    Router::new()
        .get("/now", |_: Request<Body>| Response::new(Body::from("now")))
        .post_stream(
            "/count",
            1 << 30,
            |mut req: Request<BodyStream>| async move {
                let ms: u64 = req.uri().query().and_then(|q| q.parse().ok()).unwrap_or(0);
                if ms > 0 {
                    task::sleep(Duration::from_millis(ms)).await;
                }
                let mut n = 0u64;
                let r = loop {
                    match req.body_mut().next_chunk().await {
                        Ok(Some(c)) => n += c.len() as u64,
                        Ok(None) => break "end".to_string(),
                        Err(e) => break format!("{e:?}"),
                    }
                };
                format!("{n} {r}")
            },
        )
        .post_stream("/small", 1000, |mut req: Request<BodyStream>| async move {
            match req.body_mut().collect(1 << 20).await {
                Ok(b) => format!("{}", b.len()),
                Err(BodyError::TooLarge) => "too large".into(),
                Err(e) => format!("{e:?}"),
            }
        })
        .post_stream("/early", 1 << 30, |_req: Request<BodyStream>| async {
            "early"
        })
        .post_stream("/hold", 1 << 30, move |mut req: Request<BodyStream>| {
            struct Flag(Arc<AtomicUsize>);
            impl Drop for Flag {
                fn drop(&mut self) {
                    self.0.fetch_add(1, Ordering::SeqCst);
                }
            }
            let flag = Flag(dropped.clone());
            async move {
                let _flag = flag;
                while let Ok(Some(_)) = req.body_mut().next_chunk().await {}
                "done"
            }
        })
}

fn counting_server(clock: Option<&FakeClock>) -> (herd::ServerHandle, Arc<AtomicUsize>) {
    let dropped = Arc::new(AtomicUsize::new(0));
    let svc = HttpService::new(counting_router(dropped.clone()));
    (serve_service(svc, clock), dropped)
}

#[test]
fn over_the_route_limit_is_413() {
    let (server, _) = counting_server(None);
    // Announced: refused from the head, before the handler runs.
    let mut c = Client::connect(server.local_addr());
    c.send(b"POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 1001\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 413);
    assert!(herd_testkit::is_closed_within(
        &mut c.s,
        Duration::from_secs(5)
    ));
    // Chunked: refused once more than 1000 bytes came.
    let mut c = Client::connect(server.local_addr());
    c.send(b"POST /small HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    for _ in 0..3 {
        c.send(format!("190\r\n{}\r\n", "x".repeat(400)).as_bytes());
    }
    assert_eq!(c.response().status, 413);
    // Within the limit: served, and the global limit still holds elsewhere.
    let mut c = Client::connect(server.local_addr());
    c.send(b"POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n");
    c.send(&[b'y'; 1000]);
    assert_eq!(c.response().text(), "1000");
}

#[test]
fn pipelined_requests_after_streamed_bodies_and_an_early_answer() {
    let (server, _) = counting_server(None);
    let mut c = Client::connect(server.local_addr());
    let mut wire = Vec::new();
    wire.extend_from_slice(b"POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n");
    wire.extend_from_slice(&[b'a'; 100_000]);
    wire.extend_from_slice(b"GET /now HTTP/1.1\r\nHost: t\r\n\r\n");
    wire.extend_from_slice(b"POST /count HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
    // Answers before reading: the rest of the (chunked) body is read and dropped.
    wire.extend_from_slice(b"POST /early HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n");
    wire.extend_from_slice(b"GET /now HTTP/1.1\r\nHost: t\r\n\r\n");
    c.send(&wire);
    assert_eq!(c.response().text(), "100000 end");
    assert_eq!(c.response().text(), "now");
    assert_eq!(c.response().text(), "3 end");
    assert_eq!(c.response().text(), "early");
    let r = c.response();
    assert_eq!(r.text(), "now");
    assert!(!r.says_close());
}

#[test]
fn an_early_answer_to_a_client_waiting_for_100_continue_closes() {
    let (server, _) = counting_server(None);
    let mut c = Client::connect(server.local_addr());
    c.send(
        b"POST /early HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n",
    );
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (200, "early"));
    assert!(r.says_close());
    assert!(herd_testkit::is_closed_within(
        &mut c.s,
        Duration::from_secs(5)
    ));
}

#[test]
fn a_client_leaving_mid_body_cancels_the_handler() {
    let (server, dropped) = counting_server(None);
    let mut c = Client::connect(server.local_addr());
    c.send(b"POST /hold HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n");
    c.send(&[b'z'; 5000]);
    wait_until("the body's first bytes are in", || {
        server.stats().proto.http.body_bytes_in >= 5000
    });
    assert_eq!(dropped.load(Ordering::SeqCst), 0);
    c.s.shutdown(Shutdown::Both).unwrap();
    drop(c);
    wait_until("the handler's task is dropped", || {
        dropped.load(Ordering::SeqCst) == 1
    });
    wait_until("the connection is closed", || server.stats().open == 0);
}

#[test]
fn a_handler_that_does_not_read_stops_the_server_reading() {
    const TOTAL: usize = 128 << 20; // more than the kernel's socket buffers can hold
    let clock = FakeClock::new(1_000);
    let (server, _) = counting_server(Some(&clock));
    let addr: SocketAddr = server.local_addr();
    let writer = std::thread::spawn(move || {
        let mut s = herd_testkit::connect(addr);
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s.write_all(
            format!("POST /count?1000 HTTP/1.1\r\nHost: t\r\nContent-Length: {TOTAL}\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
        let block = vec![b'q'; 1 << 20];
        for _ in 0..TOTAL / block.len() {
            s.write_all(&block).unwrap();
        }
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while !out.ends_with(b" end") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&out));
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8(out).unwrap()
    });
    // The handler sleeps (on the fake clock) before reading: the server takes what fits its
    // queue plus one read, then stops reading; the rest waits in the kernel and the client.
    let limit = (herd::http::STREAM_BUFFER + 64 * 1024) as u64;
    wait_until("the queue fills", || {
        server.stats().proto.http.body_bytes_in >= herd::http::STREAM_BUFFER as u64
    });
    for _ in 0..50 {
        let got = server.stats().proto.http.body_bytes_in;
        assert!(
            got <= limit,
            "the server read {got} bytes for a handler that reads nothing"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(!writer.is_finished());
    clock.advance(1_000);
    let answer = writer.join().unwrap();
    assert!(
        answer.ends_with(&format!("\r\n\r\n{TOTAL} end")),
        "{answer:?}"
    );
}

#[test]
fn continue_is_sent_when_the_handler_first_reads() {
    let clock = FakeClock::new(1_000);
    let (server, _) = counting_server(Some(&clock));
    let mut c = Client::connect(server.local_addr());
    c.send(
        b"POST /count?500 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n",
    );
    // The handler sleeps before its first read: no interim answer yet.
    c.s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut one = [0u8; 1];
    let early = c.s.read(&mut one);
    assert!(early.is_err(), "got {early:?} before the handler read");
    c.s.set_read_timeout(Some(herd_testkit::WAIT)).unwrap();
    clock.advance(500);
    assert_eq!(c.interim().status, 100);
    c.send(b"abc");
    assert_eq!(c.response().text(), "3 end");
}
