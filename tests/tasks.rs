//! Async tasks on the event loop, over real loopback sockets: sleeps on a fake clock, tasks
//! bound to their connection (cancelled when it closes, a panic closes only it), wake-ups from
//! another thread, join and abort, a local channel, many short tasks without growth, and
//! cosockets against real servers (a call, connection refused, a 16 MiB transfer, a peer that
//! stops reading, a half-close).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use common::{frame, SHORT};
use herd::clock::FakeClock;
use herd::codec::LengthDelimited;
use herd::task::{self, TcpStream};
use herd::{CloseReason, Conn, Handler, Server, ServerHandle};
use herd_testkit::*;

/// Set when a task of a `hold` command is dropped.
#[derive(Clone, Default)]
struct Flags {
    dropped: Arc<AtomicUsize>,
}

struct DropFlag(Arc<AtomicUsize>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

struct Tasker {
    flags: Flags,
}

fn arg(msg: &str, i: usize) -> &str {
    msg.split(':').nth(i).unwrap_or("")
}

/// Call `port` on loopback: send `payload`, half-close, read the answer to its end.
async fn call(port: u16, payload: Vec<u8>) -> std::io::Result<Vec<u8>> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(addr, Duration::from_secs(5)).await?;
    s.write_all(&payload).await?;
    s.shutdown(Shutdown::Write)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

impl Handler for Tasker {
    type State = ();
    type Codec = LengthDelimited;

    fn new_codec(&mut self) -> LengthDelimited {
        LengthDelimited::new(1 << 20)
    }

    fn on_open(&mut self, _cx: &mut Conn<'_, Self>) -> Option<()> {
        Some(())
    }

    fn on_message(&mut self, cx: &mut Conn<'_, Self>, _st: &mut (), msg: &[u8]) {
        let msg = String::from_utf8_lossy(msg).to_string();
        let h = cx.handle();
        let reply = move |text: String| h.send(frame(text.as_bytes()));
        match arg(&msg, 0) {
            "sleep" => {
                let ms: u64 = arg(&msg, 1).parse().unwrap();
                let text = arg(&msg, 2).to_owned();
                cx.spawn(async move {
                    task::sleep(Duration::from_millis(ms)).await;
                    reply(text);
                });
            }
            "timeout" => {
                let ms: u64 = arg(&msg, 1).parse().unwrap();
                cx.spawn(async move {
                    let r = task::timeout(Duration::from_millis(ms), std::future::pending::<()>())
                        .await;
                    reply(format!("{r:?}"));
                });
            }
            "call" => {
                let port: u16 = arg(&msg, 1).parse().unwrap();
                let payload = arg(&msg, 2).as_bytes().to_vec();
                cx.spawn(async move {
                    match call(port, payload).await {
                        Ok(v) => reply(format!("ok {}", String::from_utf8_lossy(&v))),
                        Err(e) => reply(format!("error {:?}", e.kind())),
                    }
                });
            }
            "big" => {
                let port: u16 = arg(&msg, 1).parse().unwrap();
                cx.spawn(async move {
                    match call(port, Vec::new()).await {
                        Ok(v) => {
                            let sum: u64 = v.iter().map(|&b| u64::from(b)).sum();
                            reply(format!("{} {sum}", v.len()));
                        }
                        Err(e) => reply(format!("error {:?}", e.kind())),
                    }
                });
            }
            "push" => {
                // Write 8 MiB to a peer that reads it only later: the task waits on the full
                // socket, then finishes.
                let port: u16 = arg(&msg, 1).parse().unwrap();
                cx.spawn(async move {
                    let addr = SocketAddr::from(([127, 0, 0, 1], port));
                    let r = async {
                        let mut s = TcpStream::connect(addr).await?;
                        s.write_all(&vec![7u8; 8 << 20]).await?;
                        s.shutdown(Shutdown::Write)
                    }
                    .await;
                    reply(format!("pushed {:?}", r.map_err(|e| e.kind())));
                });
            }
            "hold" => {
                let flag = DropFlag(self.flags.dropped.clone());
                cx.spawn(async move {
                    let _flag = flag;
                    std::future::pending::<()>().await;
                });
                reply("holding".into());
            }
            "panic" => {
                cx.spawn(async move {
                    task::sleep(Duration::from_millis(1)).await;
                    panic!("a task asked to panic");
                });
            }
            "many" => {
                let n: usize = arg(&msg, 1).parse().unwrap();
                let done = Arc::new(AtomicUsize::new(0));
                for _ in 0..n {
                    let done = done.clone();
                    task::spawn_local(async move {
                        done.fetch_add(1, Ordering::Relaxed);
                    });
                }
                cx.spawn(async move {
                    // Let the short tasks run first.
                    task::sleep(Duration::from_millis(0)).await;
                    reply(format!(
                        "{} done, {} live",
                        done.load(Ordering::Relaxed),
                        task::live_tasks()
                    ));
                });
            }
            "remote" => {
                // A future completed by another thread through the task's waker.
                let slot: Arc<Mutex<(bool, Option<Waker>)>> = Arc::default();
                let s2 = slot.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20));
                    let w = {
                        let mut g = s2.lock().unwrap();
                        g.0 = true;
                        g.1.take()
                    };
                    if let Some(w) = w {
                        w.wake();
                    }
                });
                cx.spawn(async move {
                    std::future::poll_fn(|tcx| {
                        let mut g = slot.lock().unwrap();
                        if g.0 {
                            Poll::Ready(())
                        } else {
                            g.1 = Some(tcx.waker().clone());
                            Poll::Pending
                        }
                    })
                    .await;
                    reply("woken from afar".into());
                });
            }
            "join" => {
                cx.spawn(async move {
                    let five = task::spawn_local(async { 5 });
                    let never = task::spawn_local(std::future::pending::<u32>());
                    never.abort();
                    let (tx, mut rx) = task::channel();
                    task::spawn_local(async move {
                        for i in 0..3 {
                            tx.send(i).unwrap();
                        }
                    });
                    let mut got = Vec::new();
                    while let Some(v) = rx.recv().await {
                        got.push(v);
                    }
                    reply(format!("{:?} {:?} {got:?}", five.await, never.await));
                });
            }
            _ => reply(format!("unknown {msg}")),
        }
    }

    fn on_close(&mut self, _cx: &mut Conn<'_, Self>, _st: (), _reason: CloseReason) {}
}

fn serve(clock: Option<&FakeClock>) -> (ServerHandle, Flags) {
    let flags = Flags::default();
    let f2 = flags.clone();
    let mut b = Server::new().bind("127.0.0.1:0").unwrap().loops(1);
    if let Some(c) = clock {
        b = b.clock(Arc::new(c.clone()));
    }
    let server = b.serve(move || Tasker { flags: f2.clone() }).unwrap();
    (server, flags)
}

fn ask(c: &mut std::net::TcpStream, msg: &str) {
    c.write_all(&frame(msg.as_bytes())).unwrap();
}

fn answer(c: &mut std::net::TcpStream) -> String {
    let len = u32::from_be_bytes(read_n(c, 4).try_into().unwrap()) as usize;
    String::from_utf8(read_n(c, len)).unwrap()
}

#[test]
fn sleeps_and_timeouts_follow_the_fake_clock() {
    let clock = FakeClock::new(1_000);
    let (server, _) = serve(Some(&clock));
    let mut c = connect(server.local_addr());
    ask(&mut c, "sleep:500:late");
    ask(&mut c, "sleep:100:early");
    ask(&mut c, "timeout:300");
    wait_until("the three tasks wait", || server.stats().msgs_in == 3);
    assert!(!common_has_data(&mut c));
    clock.advance(100);
    server.tick();
    assert_eq!(answer(&mut c), "early");
    clock.advance(200);
    server.tick();
    assert_eq!(answer(&mut c), "Err(Elapsed)");
    assert!(!common_has_data(&mut c));
    clock.advance(200);
    server.tick();
    assert_eq!(answer(&mut c), "late");
    server.stop(Duration::ZERO);
}

/// Nothing arrives within a short wait.
fn common_has_data(c: &mut std::net::TcpStream) -> bool {
    c.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
    let mut b = [0u8; 1];
    let got = matches!(c.peek(&mut b), Ok(n) if n > 0);
    c.set_read_timeout(None).unwrap();
    got
}

#[test]
fn a_connections_tasks_end_with_it_and_a_panic_closes_only_its_own() {
    let (server, flags) = serve(None);
    let mut a = connect(server.local_addr());
    ask(&mut a, "hold");
    assert_eq!(answer(&mut a), "holding");
    ask(&mut a, "hold");
    assert_eq!(answer(&mut a), "holding");
    assert_eq!(flags.dropped.load(Ordering::SeqCst), 0);
    drop(a);
    wait_until("both tasks dropped", || {
        flags.dropped.load(Ordering::SeqCst) == 2
    });

    let mut b = connect(server.local_addr());
    let mut other = connect(server.local_addr());
    ask(&mut b, "panic");
    assert_eq!(read_to_close(&mut b), b"");
    ask(&mut other, "sleep:0:still here");
    assert_eq!(answer(&mut other), "still here");
    let stats = server.stop(Duration::ZERO).stats;
    assert_eq!(stats.closed_by(CloseReason::Panic), 1);
    assert_eq!(stats.handler_panics, 1);
}

#[test]
fn wakers_work_from_other_threads_and_join_abort_and_channels_do_their_part() {
    let (server, _) = serve(None);
    let mut c = connect(server.local_addr());
    ask(&mut c, "remote");
    assert_eq!(answer(&mut c), "woken from afar");
    ask(&mut c, "join");
    assert_eq!(answer(&mut c), "Ok(5) Err(Cancelled) [0, 1, 2]");
    server.stop(Duration::ZERO);
}

#[test]
fn a_hundred_thousand_short_tasks_leave_nothing_behind() {
    let (server, _) = serve(None);
    let mut c = connect(server.local_addr());
    for _ in 0..10 {
        ask(&mut c, "many:10000");
        // The reporting task itself is the only one left.
        assert_eq!(answer(&mut c), "10000 done, 1 live");
    }
    server.stop(Duration::ZERO);
}

/// A loopback server for cosockets: each connection gets `respond(request)` after the client
/// half-closes.
fn upstream(respond: fn(Vec<u8>) -> Vec<u8>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(8) {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let _ = s.read_to_end(&mut req);
                let _ = s.write_all(&respond(req));
            });
        }
    });
    port
}

#[test]
fn cosockets_call_real_servers() {
    let (server, _) = serve(None);
    let mut c = connect(server.local_addr());
    let port = upstream(|req| {
        let mut v = b"re: ".to_vec();
        v.extend_from_slice(&req);
        v
    });
    ask(&mut c, &format!("call:{port}:hello upstream"));
    assert_eq!(answer(&mut c), "ok re: hello upstream");
    // Nobody listens on a port just released: refused.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = closed.local_addr().unwrap().port();
    drop(closed);
    ask(&mut c, &format!("call:{dead}:x"));
    assert_eq!(answer(&mut c), "error ConnectionRefused");
    // 16 MiB through one cosocket.
    let big = upstream(|_| pattern(9, 16 << 20));
    ask(&mut c, &format!("big:{big}"));
    let want: u64 = pattern(9, 16 << 20).iter().map(|&b| u64::from(b)).sum();
    assert_eq!(answer(&mut c), format!("{} {want}", 16 << 20));
    server.stop(Duration::ZERO);
}

#[test]
fn a_cosocket_waits_for_a_peer_that_stops_reading() {
    let (server, _) = serve(None);
    let mut c = connect(server.local_addr());
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    ask(&mut c, &format!("push:{port}"));
    let (mut peer, _) = l.accept().unwrap();
    // The peer reads nothing for a while: the task cannot finish (8 MiB is more than the
    // socket buffers hold), and the loop still serves this connection meanwhile.
    std::thread::sleep(SHORT);
    ask(&mut c, "sleep:0:loop alive");
    assert_eq!(answer(&mut c), "loop alive");
    let mut got = Vec::new();
    peer.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 8 << 20);
    assert_eq!(answer(&mut c), "pushed Ok(())");
    server.stop(Duration::ZERO);
}

#[test]
fn a_finished_task_and_a_stopped_server_leave_no_task_behind() {
    let (server, flags) = serve(None);
    let mut c = connect(server.local_addr());
    ask(&mut c, "hold");
    assert_eq!(answer(&mut c), "holding");
    // Stopping the server drops the loop's tasks.
    server.stop(Duration::ZERO);
    wait_until("dropped at stop", || {
        flags.dropped.load(Ordering::SeqCst) == 1
    });
}

/// One task per connection through `ConnTasks`: a length-prefixed echo that answers `n`
/// messages, then closes.
async fn framed_echo(mut conn: task::TaskConn) {
    while let Some(msg) = conn.recv().await {
        if msg.as_ref() == b"bye" {
            conn.send(frame(b"bye"));
            conn.close();
            return;
        }
        conn.send(frame(&msg));
    }
}

#[test]
fn connection_tasks_answer_in_order_hold_back_a_flood_and_end_with_the_connection() {
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .serve(|| task::ConnTasks::new(LengthDelimited::new(1 << 20), framed_echo))
        .unwrap();
    let mut c = connect(server.local_addr());
    // 10,000 messages written in one go (far past QUEUE_MAX): all come back, in order.
    let mut burst = Vec::new();
    for i in 0..10_000u32 {
        burst.extend_from_slice(&frame(format!("m{i}").as_bytes()));
    }
    let writer = {
        let mut w = c.try_clone().unwrap();
        std::thread::spawn(move || w.write_all(&burst).unwrap())
    };
    for i in 0..10_000u32 {
        assert_eq!(answer(&mut c), format!("m{i}"));
    }
    writer.join().unwrap();
    // Messages sent just before a half-close are still answered.
    ask(&mut c, "last");
    ask(&mut c, "bye");
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(answer(&mut c), "last");
    assert_eq!(answer(&mut c), "bye");
    assert_eq!(read_to_close(&mut c), b"");
    // A half-close alone: the task answers what came before it, sees the end and returns,
    // and the connection closes.
    let mut d = connect(server.local_addr());
    ask(&mut d, "x");
    ask(&mut d, "y");
    d.shutdown(Shutdown::Write).unwrap();
    assert_eq!(answer(&mut d), "x");
    assert_eq!(answer(&mut d), "y");
    assert_eq!(read_to_close(&mut d), b"");
    wait_until("the tasks are gone", || server.stats().open == 0);
    let st = server.stop(Duration::ZERO).stats;
    assert_eq!(st.stale_commands, 0);
    assert_eq!(st.handler_panics, 0);
}
