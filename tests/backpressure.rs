//! Backpressure: a peer that never reads cannot make the server buffer without bound.

use std::io::Read;
use std::sync::{Arc, Mutex};

use herd::codec::BytesCodec;
use herd::{CloseReason, Conn, Handler, Server};
use herd_testkit::*;

const TOTAL: usize = 64 << 20;
const CHUNK: usize = 64 << 10;
const HIGH: usize = 1 << 20;
const LOW: usize = 256 << 10;

/// Streams TOTAL bytes of a known pattern to each client, pausing while backpressured.
struct Streamer {
    max_pending: Arc<Mutex<usize>>,
    pauses: Arc<Mutex<(u32, u32)>>,
    data: Arc<Vec<u8>>,
}

impl Streamer {
    fn pump(&mut self, cx: &mut Conn<'_, Self>, sent: &mut usize) {
        while *sent < TOTAL && !cx.is_paused() {
            let off = *sent % self.data.len();
            let n = CHUNK.min(TOTAL - *sent).min(self.data.len() - off);
            cx.send(&self.data[off..off + n]);
            *sent += n;
            let mut m = self.max_pending.lock().unwrap();
            *m = (*m).max(cx.pending_output());
        }
        if *sent == TOTAL {
            cx.close_after_flush();
        }
    }
}

impl Handler for Streamer {
    type State = usize;
    type Codec = BytesCodec;
    fn new_codec(&mut self) -> BytesCodec {
        BytesCodec
    }
    fn on_open(&mut self, cx: &mut Conn<'_, Self>) -> Option<usize> {
        let mut sent = 0;
        self.pump(cx, &mut sent);
        Some(sent)
    }
    fn on_message(&mut self, _: &mut Conn<'_, Self>, _: &mut usize, _: &[u8]) {}
    fn on_backpressure(&mut self, cx: &mut Conn<'_, Self>, sent: &mut usize, paused: bool) {
        let mut p = self.pauses.lock().unwrap();
        if paused {
            p.0 += 1;
        } else {
            p.1 += 1;
            drop(p);
            self.pump(cx, sent);
        }
    }
}

#[test]
fn slow_reader_keeps_server_memory_bounded() {
    let max_pending = Arc::new(Mutex::new(0));
    let pauses = Arc::new(Mutex::new((0, 0)));
    let data = Arc::new(pattern(3, 1 << 20));
    let (m2, p2, d2) = (max_pending.clone(), pauses.clone(), data.clone());
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .write_watermarks(LOW, HIGH)
        .serve(move || Streamer {
            max_pending: m2.clone(),
            pauses: p2.clone(),
            data: d2.clone(),
        })
        .unwrap();
    let mut c = connect(server.local_addr());
    // Not reading: the server fills the socket buffers, then must pause.
    wait_until("server paused", || pauses.lock().unwrap().0 >= 1);
    let stalled = server.stats().bytes_out;
    assert!(
        stalled < TOTAL as u64 / 4,
        "the kernel cannot have taken {stalled} bytes"
    );
    assert!(*max_pending.lock().unwrap() <= HIGH + CHUNK);
    // Now read everything and check it.
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = c.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        for (i, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, data[(got + i) % data.len()], "byte {} differs", got + i);
        }
        got += n;
    }
    assert_eq!(got, TOTAL);
    let (paused, resumed) = *pauses.lock().unwrap();
    assert!(paused >= 1 && resumed >= 1);
    assert!(
        *max_pending.lock().unwrap() <= HIGH + CHUNK,
        "pending output exceeded the bound"
    );
    assert_eq!(server.stats().closed_by(CloseReason::Local), 1);
}

/// A reader that never reads, with a handler that ignores backpressure, hits the hard cap and
/// is closed ([`CloseReason::Overflow`]) instead of growing memory.
#[test]
fn hard_output_cap_closes_a_runaway_connection() {
    struct Flood;
    impl Handler for Flood {
        type State = ();
        type Codec = BytesCodec;
        fn new_codec(&mut self) -> BytesCodec {
            BytesCodec
        }
        fn on_open(&mut self, cx: &mut Conn<'_, Self>) -> Option<()> {
            let chunk = vec![1u8; 1 << 20];
            for _ in 0..64 {
                cx.send(&chunk[..]);
            }
            Some(())
        }
        fn on_message(&mut self, _: &mut Conn<'_, Self>, _: &mut (), _: &[u8]) {}
    }
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .max_write_buffer(8 << 20)
        .serve(|| Flood)
        .unwrap();
    let _c = connect(server.local_addr());
    wait_until("overflow close", || {
        server.stats().closed_by(CloseReason::Overflow) == 1
    });
}

/// Sends 4 MiB on open and nothing more.
struct Blob;

impl Handler for Blob {
    type State = ();
    type Codec = BytesCodec;
    fn new_codec(&mut self) -> BytesCodec {
        BytesCodec
    }
    fn on_open(&mut self, cx: &mut Conn<'_, Self>) -> Option<()> {
        cx.send(&vec![b'x'; 4 << 20]);
        Some(())
    }
    fn on_message(&mut self, _: &mut Conn<'_, Self>, _: &mut (), _: &[u8]) {}
}

/// The send timeout: a peer that stops reading is closed once it has taken no byte for the
/// limit (here 10 s of loop time); one that keeps reading, however slowly, is not.
#[test]
fn a_peer_that_takes_no_output_for_the_send_timeout_is_closed() {
    let clock = herd::clock::FakeClock::new(1_000);
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .clock(Arc::new(clock.clone()))
        .send_timeout(std::time::Duration::from_secs(10))
        .serve(|| Blob)
        .unwrap();
    let mut stalled = connect(server.local_addr());
    let mut slow = connect(server.local_addr());
    wait_until("both connections are open", || server.stats().open == 2);
    // Past the socket buffers, both wait with output queued.
    wait_until("output is waiting", || server.stats().bytes_out > 0);
    let mut buf = vec![0u8; 256 << 10];
    for step in 0..3 {
        clock.advance(6_000);
        // The slow reader takes some bytes every 6 s: its wait restarts each time.
        let before = server.stats().bytes_out;
        server.tick();
        // Read until the server has written to it again (its wait restarts there).
        let mut got = 0;
        while server.stats().bytes_out == before {
            let n = slow.read(&mut buf).unwrap();
            assert!(n > 0);
            got += n;
            assert!(got < (4 << 20), "the server never wrote again");
        }
        server.tick();
        if step == 0 {
            assert_eq!(
                server.stats().open,
                2,
                "closed before 10 s without a byte taken"
            );
        }
    }
    // 18 s without a byte taken by `stalled`: closed, counted; `slow` is still served.
    wait_until("the stalled peer is closed", || {
        server.stats().closed_by(CloseReason::SendTimeout) == 1
    });
    assert_eq!(server.stats().open, 1);
    assert!(slow.read(&mut buf).unwrap() > 0);
    drop(stalled.read(&mut buf));
    server.stop(std::time::Duration::ZERO);
}

/// `send_min_rate`: a reader that takes a little just inside every send timeout is reset
/// once output has waited for it a whole timeout at under the minimum rate.
#[test]
fn a_reader_under_the_minimum_send_rate_is_reset() {
    let clock = herd::clock::FakeClock::new(1_000);
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .clock(Arc::new(clock.clone()))
        .send_timeout(std::time::Duration::from_secs(10))
        .send_min_rate(1 << 20)
        .serve(|| Blob)
        .unwrap();
    let mut slow = connect(server.local_addr());
    wait_until("output is waiting", || server.stats().bytes_out > 0);
    let mut buf = vec![0u8; 64 << 10];
    clock.advance(6_000);
    let before = server.stats().bytes_out;
    server.tick();
    // Take a little, until the server has written to it again: no gap reaches 10 s.
    while server.stats().bytes_out == before {
        assert!(slow.read(&mut buf).unwrap() > 0);
    }
    server.tick();
    assert_eq!(server.stats().open, 1, "reset before a whole send timeout");
    // At 12 s output has waited a whole timeout at far under 1 MiB/s: reset.
    clock.advance(6_000);
    server.tick();
    wait_until("the slow reader is reset", || {
        server.stats().closed_by(CloseReason::SendTimeout) == 1
    });
    let mut rest = Vec::new();
    assert!(
        slow.read_to_end(&mut rest).is_err(),
        "a reset, not an orderly end"
    );
    server.stop(std::time::Duration::ZERO);
}
