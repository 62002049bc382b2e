//! The client machinery echo, frame and ws modes share: threads, the start handshake, the
//! poll loop, the measured window and the merged [`Report`].
//!
//! [`run`] splits the connections over client threads. Each thread opens its share with the
//! mode's blocking constructor (connect with bounded retries, plus any handshake), makes them
//! nodelay and non-blocking and registers them with its own mio `Poll`; then it waits until
//! every thread is connected, so connecting is never part of the measurement. All threads are
//! released with one common start `Instant`; if any connection failed, none is released and
//! the run returns that error. Each connection then queues `depth` messages and, until the
//! end of the window, the thread polls, reads until a short read or `WouldBlock` (one clock
//! read per read syscall), hands every chunk to the mode's [`Client`], and writes what the
//! client queued in one go. No epoll_ctl after registration, no allocation per message.
//!
//! The protocol lives in the modes: a [`Client`] says what a message looks like and checks
//! what comes back; it counts a message through [`Window::complete`], which records latency
//! only inside the measured window. This module counts disconnects, socket errors and
//! mismatches, prints one line for each of the first few per thread (on stderr), and prints
//! nothing else. It must stop by itself at the end of the window. Callers: `echo::run`,
//! `frame::run`, `ws::run`.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::stats::{Histogram, Report};
use crate::Error;

/// At most this many lines of each kind (mismatch, disconnect, error) per thread are printed;
/// all are counted.
const MAX_PRINTED: u64 = 10;
/// Bytes read per read syscall.
const SCRATCH: usize = 64 * 1024;

/// Opens one blocking connection, retrying refused or failed connects with a short back-off
/// (10 ms doubling to 200 ms), each attempt bounded by a 2 s connect timeout.
pub fn connect_with_retry(
    addr: SocketAddr,
    index: usize,
    attempts: u32,
) -> Result<std::net::TcpStream, Error> {
    let mut backoff = Duration::from_millis(10);
    let mut attempt = 1;
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => return Ok(s),
            Err(source) if attempt >= attempts.max(1) => {
                return Err(Error::Connect {
                    addr,
                    index,
                    source,
                })
            }
            Err(_) => {
                thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(200));
                attempt += 1;
            }
        }
    }
}

/// The shape of a run, taken from a mode's validated options.
pub(crate) struct Plan {
    /// Mode name for the report and the thread names (`"echo"`).
    pub mode: &'static str,
    /// Connections to open.
    pub connections: usize,
    /// Payload bytes per message (reported only; the client knows its messages).
    pub size: usize,
    /// Messages queued per connection at start.
    pub depth: usize,
    /// Measured window.
    pub duration: Duration,
    /// Time before the window whose messages are not counted.
    pub warmup: Duration,
    /// Client threads; capped at `connections`.
    pub threads: usize,
}

impl Plan {
    /// Rejects options that cannot make a run, with the checks every mode shares: at least one
    /// connection and one thread, a window longer than zero, a payload of 1 to `max_size`
    /// bytes (`size_text` names that bound in the message) and `depth` from 1 to `max_depth`
    /// with at most `max_in_flight` payload bytes in flight per connection (`depth_text` is the
    /// message when the depth is out of bounds).
    pub fn check(
        &self,
        max_size: usize,
        size_text: &str,
        max_depth: usize,
        max_in_flight: usize,
        depth_text: &str,
    ) -> Result<(), Error> {
        let bad = |why: String| Err(Error::Opts(why));
        if self.connections == 0 {
            return bad("--connections must be at least 1".into());
        }
        if self.size == 0 || self.size > max_size {
            return bad(format!("--size must be between 1 byte and {size_text}"));
        }
        if self.depth == 0
            || self.depth > max_depth
            || self.size.saturating_mul(self.depth) > max_in_flight
        {
            return bad(depth_text.into());
        }
        if self.threads == 0 {
            return bad("--threads must be at least 1".into());
        }
        if self.duration.is_zero() {
            return bad("--duration must be more than zero".into());
        }
        Ok(())
    }
}

/// The protocol half of one connection: what it sends and how it checks what comes back.
/// The driver owns the socket and the output buffer; the client only fills and checks bytes.
pub(crate) trait Client {
    /// Printed before the reason of a mismatch (`"echo mismatch"`).
    const MISMATCH: &'static str;

    /// Wire bytes of one message, to size the output buffer for `depth` of them.
    fn wire_len(&self) -> usize;

    /// Appends the next message to `out` and remembers `now` as its send time.
    fn queue(&mut self, out: &mut Vec<u8>, now: Instant);

    /// Checks `chunk`, the bytes of one read made at `now`. For each message it completes it
    /// calls [`Window::complete`] and, when that says so, queues the next message into `out`
    /// (which may also take protocol replies such as a WebSocket Pong).
    fn take(
        &mut self,
        chunk: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
        w: &mut Window,
    ) -> Result<(), Stop>;
}

/// Why [`Client::take`] ends its connection.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The server's bytes are wrong: counted as a mismatch, printed with this reason.
    Mismatch(String),
    /// The server ended the connection inside the protocol (a WebSocket Close): counted as a
    /// disconnect, printed as this.
    Closed(&'static str),
}

impl From<String> for Stop {
    fn from(why: String) -> Self {
        Stop::Mismatch(why)
    }
}

/// What one client thread counted.
#[derive(Default)]
pub(crate) struct ThreadStats {
    latency: Histogram,
    messages: u64,
    messages_total: u64,
    mismatches: u64,
    disconnects: u64,
    io_errors: u64,
}

/// The measured window and the per-thread counters a connection event updates.
pub(crate) struct Window {
    warm_end: Instant,
    end: Instant,
    stats: ThreadStats,
}

impl Window {
    /// Counts a message sent at `sent_at` that came back whole and correct at `now`; its
    /// latency counts only inside the measured window. Returns whether the window is still
    /// open, i.e. whether to queue the next message.
    pub fn complete(&mut self, sent_at: Instant, now: Instant) -> bool {
        self.stats.messages_total += 1;
        if now >= self.warm_end && now < self.end {
            self.stats.messages += 1;
            let ns = now.duration_since(sent_at).as_nanos();
            self.stats
                .latency
                .record(u64::try_from(ns).unwrap_or(u64::MAX));
        }
        now < self.end
    }
}

#[cfg(test)]
impl Window {
    /// A window open for the next hour with no warm-up, for unit tests of the clients.
    pub(crate) fn for_test() -> Window {
        let now = Instant::now();
        Window {
            warm_end: now,
            end: now + Duration::from_secs(3600),
            stats: ThreadStats::default(),
        }
    }

    /// Messages completed so far.
    pub(crate) fn completed(&self) -> u64 {
        self.stats.messages_total
    }
}

enum Fate {
    Keep,
    Close,
}

/// Runs `plan`: opens connection `index` with `open(index)` (a blocking, connected stream and
/// its client state) for every index, measures, and merges every thread's counts.
///
/// Returns `Err` when the run could not happen: the first constructor error of any thread,
/// a thread that could not start or that panicked.
pub(crate) fn run<C, F>(plan: &Plan, open: F) -> Result<Report, Error>
where
    C: Client,
    F: Fn(usize) -> Result<(std::net::TcpStream, C), Error> + Sync,
{
    let threads = plan.threads.min(plan.connections);
    let open = &open;
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), Error>>();
    thread::scope(|scope| {
        let mut go = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        let mut first = 0;
        for t in 0..threads {
            let count = plan.connections / threads + usize::from(t < plan.connections % threads);
            let (go_tx, go_rx) = mpsc::channel::<Option<Instant>>();
            let ready = ready_tx.clone();
            let handle = thread::Builder::new()
                .name(format!("herd-bench-{}-{t}", plan.mode))
                .spawn_scoped(scope, move || {
                    client_thread(plan, open, first, count, ready, go_rx)
                })?;
            go.push(go_tx);
            handles.push(handle);
            first += count;
        }
        drop(ready_tx);
        let mut failure = None;
        for _ in 0..threads {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(_) => {
                    failure.get_or_insert(Error::Io(io::Error::other("a client thread died")));
                }
            }
        }
        let start = failure.is_none().then(Instant::now);
        for tx in &go {
            let _ = tx.send(start);
        }
        let mut report = Report {
            mode: plan.mode,
            connections: plan.connections,
            size: plan.size,
            depth: plan.depth,
            threads,
            duration: plan.duration,
            latency: Histogram::new(),
            ..Report::default()
        };
        let mut panicked = false;
        for h in handles {
            let Ok(t) = h.join() else {
                panicked = true;
                continue;
            };
            report.latency.merge(&t.latency);
            report.messages += t.messages;
            report.messages_total += t.messages_total;
            report.mismatches += t.mismatches;
            report.disconnects += t.disconnects;
            report.io_errors += t.io_errors;
        }
        if panicked {
            return Err(Error::Io(io::Error::other("a client thread panicked")));
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(report),
        }
    })
}

/// One connection: its socket, its unsent bytes and its protocol state.
struct Conn<C> {
    stream: TcpStream,
    index: usize,
    /// Queued bytes not yet accepted by the socket.
    out: Vec<u8>,
    client: C,
}

/// A thread's connections by token; `None` once closed.
type Slots<C> = Vec<Option<Conn<C>>>;

/// Opens connections `first..first + count`, reports on `ready`, waits for the start on
/// `go`, then runs the poll loop until the end of the window or the last connection.
fn client_thread<C, F>(
    plan: &Plan,
    open: &F,
    first: usize,
    count: usize,
    ready: mpsc::Sender<Result<(), Error>>,
    go: mpsc::Receiver<Option<Instant>>,
) -> ThreadStats
where
    C: Client,
    F: Fn(usize) -> Result<(std::net::TcpStream, C), Error>,
{
    let setup = || -> Result<(Poll, Slots<C>), Error> {
        let poll = Poll::new()?;
        let mut conns = Vec::with_capacity(count);
        for k in 0..count {
            let index = first + k;
            let (std_stream, client) = open(index)?;
            std_stream.set_nodelay(true)?;
            std_stream.set_nonblocking(true)?;
            let mut stream = TcpStream::from_std(std_stream);
            poll.registry().register(
                &mut stream,
                Token(k),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            let out = Vec::with_capacity(client.wire_len() * plan.depth);
            conns.push(Some(Conn {
                stream,
                index,
                out,
                client,
            }));
        }
        Ok((poll, conns))
    };
    let (mut poll, mut conns) = match setup() {
        Ok(x) => {
            let _ = ready.send(Ok(()));
            x
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return ThreadStats::default();
        }
    };
    let Ok(Some(start)) = go.recv() else {
        return ThreadStats::default();
    };
    let warm_end = start + plan.warmup;
    let mut w = Window {
        warm_end,
        end: warm_end + plan.duration,
        stats: ThreadStats::default(),
    };
    let mut live = count;
    for slot in conns.iter_mut() {
        let Some(conn) = slot else { continue };
        for _ in 0..plan.depth {
            conn.client.queue(&mut conn.out, start);
        }
        if let Fate::Close = conn.flush(&mut w.stats) {
            *slot = None;
            live -= 1;
        }
    }
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; SCRATCH];
    loop {
        let now = Instant::now();
        if now >= w.end || live == 0 {
            break;
        }
        let timeout = if now < w.warm_end { w.warm_end } else { w.end } - now;
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            eprintln!("herd-bench: poll failed: {e}");
            w.stats.io_errors += 1;
            break;
        }
        for ev in events.iter() {
            let slot = &mut conns[ev.token().0];
            let Some(conn) = slot else { continue };
            let mut fate = Fate::Keep;
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                fate = conn.on_readable(&mut scratch, &mut w);
            }
            if let Fate::Keep = fate {
                if ev.is_writable() && !conn.out.is_empty() {
                    fate = conn.flush(&mut w.stats);
                }
            }
            if let Fate::Close = fate {
                let _ = poll.registry().deregister(&mut conn.stream);
                *slot = None;
                live -= 1;
            }
        }
    }
    w.stats
}

impl<C: Client> Conn<C> {
    /// Writes as much of `out` as the socket takes; the rest waits for a writable event.
    fn flush(&mut self, stats: &mut ThreadStats) -> Fate {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(n) if n == self.out.len() => self.out.clear(),
                Ok(0) => return self.fail(stats, io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(stats, e),
            }
        }
        Fate::Keep
    }

    /// Reads until a short read or `WouldBlock`, hands each chunk to the client, and writes
    /// what it queued in one go.
    fn on_readable(&mut self, scratch: &mut [u8], w: &mut Window) -> Fate {
        loop {
            let n = match self.stream.read(scratch) {
                Ok(0) => return self.closed(&mut w.stats, "closed by server"),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(&mut w.stats, e),
            };
            let now = Instant::now();
            match self.client.take(&scratch[..n], now, &mut self.out, w) {
                Ok(()) => {}
                Err(Stop::Closed(what)) => return self.closed(&mut w.stats, what),
                Err(Stop::Mismatch(why)) => {
                    w.stats.mismatches += 1;
                    if w.stats.mismatches <= MAX_PRINTED {
                        eprintln!(
                            "herd-bench: connection {}: {}: {why}",
                            self.index,
                            C::MISMATCH
                        );
                    }
                    return Fate::Close;
                }
            }
            if n < scratch.len() {
                break;
            }
        }
        self.flush(&mut w.stats)
    }

    /// Counts the server closing the connection and closes it here.
    fn closed(&self, stats: &mut ThreadStats, what: &str) -> Fate {
        stats.disconnects += 1;
        if stats.disconnects <= MAX_PRINTED {
            eprintln!("herd-bench: connection {}: {what}", self.index);
        }
        Fate::Close
    }

    /// Counts a socket error (a reset counts as the server closing) and closes.
    fn fail(&self, stats: &mut ThreadStats, e: io::Error) -> Fate {
        let reset = matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionAborted
        );
        let count = if reset {
            &mut stats.disconnects
        } else {
            &mut stats.io_errors
        };
        *count += 1;
        if *count <= MAX_PRINTED {
            eprintln!("herd-bench: connection {}: {e}", self.index);
        }
        Fate::Close
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::net::TcpListener;
    use std::sync::Mutex;

    const SIZE: usize = 5;

    /// A minimal client: each message is `SIZE` copies of one byte, echoed back.
    struct Same {
        byte: u8,
        /// Bytes of the oldest message in flight received so far.
        got: usize,
        inflight: VecDeque<Instant>,
    }

    impl Client for Same {
        const MISMATCH: &'static str = "test mismatch";

        fn wire_len(&self) -> usize {
            SIZE
        }

        fn queue(&mut self, out: &mut Vec<u8>, now: Instant) {
            out.extend_from_slice(&[self.byte; SIZE]);
            self.inflight.push_back(now);
        }

        fn take(
            &mut self,
            chunk: &[u8],
            now: Instant,
            out: &mut Vec<u8>,
            w: &mut Window,
        ) -> Result<(), Stop> {
            for &b in chunk {
                if b != self.byte {
                    return Err(format!("byte {b}, expected {}", self.byte).into());
                }
                self.got += 1;
                if self.got == SIZE {
                    self.got = 0;
                    let sent_at = self.inflight.pop_front().ok_or(Stop::Closed("extra"))?;
                    if w.complete(sent_at, now) {
                        self.queue(out, now);
                    }
                }
            }
            Ok(())
        }
    }

    /// An echo server on 127.0.0.1:0 that, as each connection ends, sends how many bytes it
    /// echoed on it.
    fn echo_server() -> (SocketAddr, mpsc::Receiver<u64>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { continue };
                let tx = tx.clone();
                thread::spawn(move || {
                    let (mut buf, mut total) = ([0u8; 4096], 0u64);
                    while let Ok(n @ 1..) = s.read(&mut buf) {
                        if s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        total += n as u64;
                    }
                    let _ = tx.send(total);
                });
            }
        });
        (addr, rx)
    }

    fn plan() -> Plan {
        Plan {
            mode: "test",
            connections: 3,
            size: SIZE,
            depth: 2,
            duration: Duration::from_millis(200),
            warmup: Duration::from_millis(20),
            threads: 2,
        }
    }

    fn same(index: usize) -> Same {
        Same {
            byte: index as u8 + 1,
            got: 0,
            inflight: VecDeque::new(),
        }
    }

    #[test]
    fn two_threads_share_three_connections_and_all_run() {
        let (addr, totals) = echo_server();
        let opened = Mutex::new(Vec::new());
        let r = run(&plan(), |index| {
            opened.lock().unwrap().push(index);
            Ok((connect_with_retry(addr, index, 3)?, same(index)))
        })
        .expect("run");
        assert!(r.messages > 0, "{r:?}");
        assert_eq!((r.mismatches, r.errors()), (0, 0), "{r:?}");
        assert_eq!(
            (r.mode, r.connections, r.threads, r.depth),
            ("test", 3, 2, 2)
        );
        assert!(r.messages_total >= r.messages);
        assert_eq!(r.latency.count(), r.messages);
        let mut opened = opened.into_inner().unwrap();
        opened.sort_unstable();
        assert_eq!(opened, [0, 1, 2]);
        // Every connection, including the one alone on the second thread, carried traffic.
        let echoed: Vec<u64> = (0..3).map(|_| totals.recv().unwrap()).collect();
        assert!(echoed.iter().all(|&n| n >= SIZE as u64), "{echoed:?}");
        assert!(echoed.iter().sum::<u64>() >= r.messages_total * SIZE as u64);
    }

    #[test]
    fn one_failed_connection_releases_no_thread() {
        let (addr, totals) = echo_server();
        // Thread 0 opens connections 0 and 1; thread 1 fails on connection 2.
        let result = run(&plan(), |index| {
            if index == 2 {
                return Err(Error::Echo {
                    index,
                    reason: "refused by the test".into(),
                });
            }
            Ok((connect_with_retry(addr, index, 3)?, same(index)))
        });
        assert!(
            matches!(result, Err(Error::Echo { index: 2, .. })),
            "{result:?}"
        );
        // The two open connections were closed without a byte sent.
        assert_eq!([totals.recv().unwrap(), totals.recv().unwrap()], [0, 0]);
    }

    #[test]
    fn only_the_measured_window_counts_latency() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut w = Window {
            warm_end: start + ms(10),
            end: start + ms(30),
            stats: ThreadStats::default(),
        };
        assert!(w.complete(start, start + ms(5)), "warm-up: go on");
        assert!(w.complete(start + ms(5), start + ms(12)), "window: go on");
        assert!(!w.complete(start + ms(12), start + ms(30)), "window over");
        assert_eq!((w.stats.messages_total, w.stats.messages), (3, 1));
        assert_eq!(w.stats.latency.count(), 1);
        assert_eq!(w.stats.latency.max(), 7_000_000);
    }
}
