//! Timers on a fake clock: idle timeout, per-connection and loop timers. No sleeping.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use herd::clock::FakeClock;
use herd::codec::LinesCodec;
use herd::{CloseReason, Conn, Handler, LoopCx, Server, Timer};
use herd_testkit::*;

#[test]
fn idle_timeout_follows_the_fake_clock() {
    let clock = FakeClock::new(10_000);
    let (server, log) = serve_probe(
        Server::new()
            .bind("127.0.0.1:0")
            .unwrap()
            .loops(1)
            .idle_timeout(Duration::from_secs(30))
            .clock(Arc::new(clock.clone())),
    );
    let mut c = connect(server.local_addr());
    wait_until("open", || log.opens() == 1);
    clock.advance(29_000);
    server.tick();
    // stats() is answered after the tick in the same queue, so the tick has been handled.
    assert_eq!(server.stats().open, 1);
    // Activity at t=29 s moves the deadline to t=59 s.
    assert_eq!(roundtrip(&mut c, &frame(b"ping")), frame(b"ping"));
    clock.advance(29_000);
    server.tick();
    assert_eq!(server.stats().open, 1, "closed before 30 s of silence");
    clock.advance(1_001);
    server.tick();
    assert_eq!(read_to_close(&mut c), b"");
    assert_eq!(server.stats().closed_by(CloseReason::Idle), 1);
}

/// Sends `tick N` lines on a per-connection timer every second, cancelled by `stop`.
/// Loop timer: every 10 s, broadcasts `loop` to every connection.
struct Ticker {
    fired: Arc<Mutex<Vec<u64>>>,
}

impl Handler for Ticker {
    type State = (Option<Timer>, u64);
    type Codec = LinesCodec;
    fn new_codec(&mut self) -> LinesCodec {
        LinesCodec::new(100)
    }
    fn on_loop_start(&mut self, lp: &mut LoopCx<'_, Self>) {
        lp.run_every(Duration::from_secs(10), 7);
    }
    fn on_loop_timer(&mut self, lp: &mut LoopCx<'_, Self>, token: u64) {
        self.fired.lock().unwrap().push(lp.now_ms());
        lp.for_each(|cx, _| cx.send(format!("loop {token}").as_str()));
    }
    fn on_open(&mut self, cx: &mut Conn<'_, Self>) -> Option<Self::State> {
        let t = cx.run_every(Duration::from_secs(1), 1);
        cx.run_after(Duration::from_millis(2500), 2);
        Some((Some(t), 0))
    }
    fn on_message(&mut self, cx: &mut Conn<'_, Self>, st: &mut Self::State, msg: &[u8]) {
        if msg == b"stop" {
            if let Some(t) = st.0.take() {
                cx.cancel_timer(t);
            }
            cx.send("stopped");
        }
    }
    fn on_timer(&mut self, cx: &mut Conn<'_, Self>, st: &mut Self::State, token: u64) {
        st.1 += 1;
        cx.send(format!("tick {token} {}", st.1).as_str());
    }
}

fn read_line(c: &mut std::net::TcpStream) -> String {
    let mut line = Vec::new();
    loop {
        let b = read_n(c, 1)[0];
        if b == b'\n' {
            return String::from_utf8(line).unwrap();
        }
        line.push(b);
    }
}

#[test]
fn connection_and_loop_timers_on_fake_clock() {
    let clock = FakeClock::new(0);
    let fired = Arc::new(Mutex::new(Vec::new()));
    let f2 = fired.clone();
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .clock(Arc::new(clock.clone()))
        .serve(move || Ticker { fired: f2.clone() })
        .unwrap();
    let mut c = connect(server.local_addr());
    wait_until("open", || server.stats().open == 1);
    // One step at a time: stats() answers after the tick, so each step is handled alone.
    let step = |ms| {
        clock.advance(ms);
        server.tick();
        server.stats();
    };
    for _ in 0..4 {
        step(1_000);
    }
    assert_eq!(read_line(&mut c), "tick 1 1");
    assert_eq!(read_line(&mut c), "tick 1 2");
    assert_eq!(
        read_line(&mut c),
        "tick 2 3",
        "the 2.5 s one-shot fires between 2 s and 3 s"
    );
    assert_eq!(read_line(&mut c), "tick 1 4");
    assert_eq!(
        read_line(&mut c),
        "tick 1 5",
        "a timer due exactly now fires now"
    );
    c.write_all(b"stop\n").unwrap();
    assert_eq!(read_line(&mut c), "stopped");
    step(6_000);
    assert_eq!(
        read_line(&mut c),
        "loop 7",
        "the cancelled timer must not fire"
    );
    assert_eq!(*fired.lock().unwrap(), vec![10_000]);
}
