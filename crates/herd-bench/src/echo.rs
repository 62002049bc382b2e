//! Echo mode: many connections, each with `depth` messages in flight, every byte verified.
//!
//! [`run`] splits the connections over `threads` client threads. Each thread opens its share
//! with blocking connects (bounded retries), then waits until every thread is connected, so
//! connecting is never part of the measurement. Then each connection sends `depth` messages of
//! `size` bytes taken from its own [`Pattern`] stream, and each time a whole message has come
//! back it sends the next one. Every received chunk is checked against the stream at its
//! offset: a difference, or more bytes than were sent, is a mismatch that is printed, counted
//! and closes that connection. A server closing a connection is counted as a disconnect.
//! Latency is the time from queueing a message to reading its last byte; only messages that
//! complete inside the measured window (after warmup) count.
//!
//! Each thread is one mio loop: edge-triggered, reads until a short read or `WouldBlock`, one
//! clock read per read syscall, replies to one read coalesced into one write, no epoll_ctl
//! after registration, no allocation per message. It must not print anything but mismatch
//! lines and must stop by itself at the end of the window. Callers: the `herd-bench echo`
//! command and the integration tests.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::pattern::Pattern;
use crate::stats::{Histogram, Report};
use crate::Error;

/// Largest message accepted, so a typo cannot allocate gigabytes.
pub const MAX_SIZE: usize = 16 << 20;
/// Largest `size * depth` per connection.
pub const MAX_IN_FLIGHT: usize = 64 << 20;
/// At most this many mismatch lines are printed per thread; all are counted.
const MAX_PRINTED: u64 = 10;
/// Bytes read per read syscall.
const SCRATCH: usize = 64 * 1024;

/// What an echo run does.
#[derive(Clone, Debug)]
pub struct EchoOpts {
    /// Server address; the only place the run connects to.
    pub addr: SocketAddr,
    /// Connections to open.
    pub connections: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Messages in flight per connection (1 = ping-pong).
    pub depth: usize,
    /// Measured window.
    pub duration: Duration,
    /// Time before the window whose messages are not counted.
    pub warmup: Duration,
    /// Client threads (event loops); capped at `connections`.
    pub threads: usize,
    /// Connect attempts per connection before giving up (at least 1).
    pub connect_attempts: u32,
}

impl EchoOpts {
    /// Defaults of the command line: 100 connections, 64 B, depth 1, 10 s after 1 s warmup,
    /// one thread, 20 connect attempts.
    ///
    /// ```
    /// let o = herd_bench::echo::EchoOpts::new("127.0.0.1:9000".parse().unwrap());
    /// assert_eq!((o.connections, o.size, o.depth, o.threads), (100, 64, 1, 1));
    /// ```
    pub fn new(addr: SocketAddr) -> Self {
        EchoOpts {
            addr,
            connections: 100,
            size: 64,
            depth: 1,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            threads: 1,
            connect_attempts: 20,
        }
    }

    /// Rejects options that cannot make a run.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |why: &str| Err(Error::Opts(why.to_string()));
        if self.connections == 0 {
            return bad("--connections must be at least 1");
        }
        if self.size == 0 || self.size > MAX_SIZE {
            return bad("--size must be between 1 byte and 16 MiB");
        }
        if self.depth == 0 || self.size.saturating_mul(self.depth) > MAX_IN_FLIGHT {
            return bad("--depth must be at least 1 and size * depth at most 64 MiB");
        }
        if self.threads == 0 {
            return bad("--threads must be at least 1");
        }
        if self.duration.is_zero() {
            return bad("--duration must be more than zero");
        }
        Ok(())
    }
}

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

/// Runs echo mode as `opts` says and returns what it measured.
///
/// Returns `Err` only when the run could not happen (bad options, a connection that could
/// not be opened, a thread that could not start). Problems during the run are counted in the
/// report; `report.errors() > 0` means the run failed.
pub fn run(opts: &EchoOpts) -> Result<Report, Error> {
    opts.validate()?;
    let threads = opts.threads.min(opts.connections);
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), Error>>();
    let mut go = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    let mut first = 0;
    for t in 0..threads {
        let count = opts.connections / threads + usize::from(t < opts.connections % threads);
        let (go_tx, go_rx) = mpsc::channel::<Option<Instant>>();
        let (o, ready) = (opts.clone(), ready_tx.clone());
        let handle = thread::Builder::new()
            .name(format!("herd-bench-{t}"))
            .spawn(move || client_thread(&o, first, count, ready, go_rx))?;
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
        mode: "echo",
        connections: opts.connections,
        size: opts.size,
        depth: opts.depth,
        threads,
        duration: opts.duration,
        ..Report::default()
    };
    report.latency = Histogram::new();
    for h in handles {
        let t = h
            .join()
            .map_err(|_| Error::Io(io::Error::other("a client thread panicked")))?;
        report.latency.merge(&t.latency);
        report.messages += t.messages;
        report.messages_total += t.messages_total;
        report.mismatches += t.mismatches;
        report.disconnects += t.disconnects;
        report.io_errors += t.io_errors;
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// What one client thread counted.
#[derive(Default)]
struct ThreadStats {
    latency: Histogram,
    messages: u64,
    messages_total: u64,
    mismatches: u64,
    disconnects: u64,
    io_errors: u64,
}

/// One client connection and where it is in its stream.
struct Conn {
    stream: TcpStream,
    index: usize,
    pattern: Pattern,
    /// Stream bytes queued so far (sent or in `out`).
    queued: u64,
    /// Stream bytes received and verified so far.
    received: u64,
    /// Queued bytes not yet accepted by the socket.
    out: Vec<u8>,
    /// Queue time of each message in flight, oldest first.
    inflight: VecDeque<Instant>,
}

/// The measured window and the per-thread counters a connection event updates.
struct Window {
    warm_end: Instant,
    end: Instant,
    size: usize,
    stats: ThreadStats,
}

enum Fate {
    Keep,
    Close,
}

fn client_thread(
    opts: &EchoOpts,
    first: usize,
    count: usize,
    ready: mpsc::Sender<Result<(), Error>>,
    go: mpsc::Receiver<Option<Instant>>,
) -> ThreadStats {
    let setup = || -> Result<(Poll, Vec<Option<Conn>>), Error> {
        let poll = Poll::new()?;
        let mut conns = Vec::with_capacity(count);
        for k in 0..count {
            let index = first + k;
            let std_stream = connect_with_retry(opts.addr, index, opts.connect_attempts)?;
            std_stream.set_nodelay(true)?;
            std_stream.set_nonblocking(true)?;
            let mut stream = TcpStream::from_std(std_stream);
            poll.registry().register(
                &mut stream,
                Token(k),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            conns.push(Some(Conn {
                stream,
                index,
                pattern: Pattern::new(index as u64),
                queued: 0,
                received: 0,
                out: Vec::with_capacity(opts.size * opts.depth),
                inflight: VecDeque::with_capacity(opts.depth),
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
    let warm_end = start + opts.warmup;
    let mut w = Window {
        warm_end,
        end: warm_end + opts.duration,
        size: opts.size,
        stats: ThreadStats {
            latency: Histogram::new(),
            ..ThreadStats::default()
        },
    };
    let mut live = count;
    for slot in conns.iter_mut() {
        let Some(conn) = slot else { continue };
        for _ in 0..opts.depth {
            conn.queue(start, opts.size);
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

impl Conn {
    /// Appends the next message of the stream to `out`, stamped `now`.
    fn queue(&mut self, now: Instant, size: usize) {
        let at = self.out.len();
        self.out.resize(at + size, 0);
        self.pattern.fill(self.queued, &mut self.out[at..]);
        self.queued += size as u64;
        self.inflight.push_back(now);
    }

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

    /// Reads until a short read or `WouldBlock`, verifies, completes messages, queues the
    /// next ones and writes them in one go.
    fn on_readable(&mut self, scratch: &mut [u8], w: &mut Window) -> Fate {
        let size = w.size as u64;
        loop {
            let n = match self.stream.read(scratch) {
                Ok(0) => {
                    w.stats.disconnects += 1;
                    if w.stats.disconnects <= MAX_PRINTED {
                        eprintln!("herd-bench: connection {}: closed by server", self.index);
                    }
                    return Fate::Close;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return self.fail(&mut w.stats, e),
            };
            let now = Instant::now();
            let chunk = &scratch[..n];
            let check = if self.received + n as u64 > self.queued {
                Err(format!(
                    "server sent {} bytes beyond the {} it was sent",
                    self.received + n as u64 - self.queued,
                    self.queued
                ))
            } else {
                self.pattern
                    .verify(self.received, chunk)
                    .map_err(|m| m.to_string())
            };
            if let Err(why) = check {
                w.stats.mismatches += 1;
                if w.stats.mismatches <= MAX_PRINTED {
                    eprintln!(
                        "herd-bench: connection {}: echo mismatch: {why}",
                        self.index
                    );
                }
                return Fate::Close;
            }
            let done = (self.received + n as u64) / size - self.received / size;
            self.received += n as u64;
            for _ in 0..done {
                let sent_at = self.inflight.pop_front().unwrap_or(now);
                w.stats.messages_total += 1;
                if now >= w.warm_end && now < w.end {
                    w.stats.messages += 1;
                    let ns = now.duration_since(sent_at).as_nanos();
                    w.stats
                        .latency
                        .record(u64::try_from(ns).unwrap_or(u64::MAX));
                }
                if now < w.end {
                    self.queue(now, w.size);
                }
            }
            if n < scratch.len() {
                break;
            }
        }
        self.flush(&mut w.stats)
    }

    /// Counts a socket error (a reset counts as the server closing) and closes.
    fn fail(&mut self, stats: &mut ThreadStats, e: io::Error) -> Fate {
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
