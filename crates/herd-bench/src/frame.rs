//! Frame mode: RPC round trips in herd's frame protocol, `depth` requests in flight per
//! connection, every reply checked.
//!
//! Each request is one frame (12-byte header: u32 body length, u16 message id, u16 flags,
//! u32 request id, big-endian) whose body is the protobuf `RpcReq { uint64 id = 1; bytes
//! payload = 2; }` with `id` = the connection index and `size` payload bytes from the
//! connection's [`Pattern`]. The server (herd's `frame_rpc` example, or the `tokio-frame` peer)
//! answers an `RpcResp` with the same fields, so a correct reply is: same message id, flags
//! RESPONSE, a request id that is in flight on that connection, and a body byte-identical to
//! the request's. Anything else (an error frame such as BUSY, a wrong body, an unknown request
//! id) is a mismatch: printed (up to a few), counted, and that connection is closed.
//!
//! The header and the two protobuf fields are encoded here by hand, independently of
//! herd-proto and prost, so the load generator doubles as a check of both servers' encoders.
//! Threads, connecting, the measured window and the report work as in [`echo`](crate::echo):
//! one mio loop per client thread, one clock read per read syscall, the requests made by
//! one read sent in one write, no allocation per message once buffers have grown. Callers: the
//! `herd-bench frame` command and bench/frame.sh.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::echo::connect_with_retry;
use crate::pattern::Pattern;
use crate::stats::{Histogram, Report};
use crate::Error;

/// Frame header length.
const HEADER: usize = 12;
/// RESPONSE and ERROR flag bits.
const RESPONSE: u16 = 1;
const ERROR: u16 = 2;
/// Largest payload accepted.
pub const MAX_SIZE: usize = 4 << 20;
/// At most this many mismatch lines are printed per thread; all are counted.
const MAX_PRINTED: u64 = 10;
/// Bytes read per read syscall.
const SCRATCH: usize = 64 * 1024;

/// What a frame run does.
#[derive(Clone, Debug)]
pub struct FrameOpts {
    /// Server address; the only place the run connects to.
    pub addr: SocketAddr,
    /// Connections to open.
    pub connections: usize,
    /// Payload bytes per request (the protobuf body is a few bytes more).
    pub size: usize,
    /// Requests in flight per connection (1 = one round trip at a time).
    pub depth: usize,
    /// Message id of the requests (herd's `frame_rpc`: 1 inline, 2 worker pool).
    pub msg_id: u16,
    /// Measured window.
    pub duration: Duration,
    /// Time before the window whose messages are not counted.
    pub warmup: Duration,
    /// Client threads (event loops); capped at `connections`.
    pub threads: usize,
    /// Connect attempts per connection before giving up (at least 1).
    pub connect_attempts: u32,
}

impl FrameOpts {
    /// Defaults of the command line: 100 connections, 64 B, depth 1, message id 1, 10 s after
    /// 1 s warmup, one thread, 20 connect attempts.
    ///
    /// ```
    /// let o = herd_bench::frame::FrameOpts::new("127.0.0.1:9200".parse().unwrap());
    /// assert_eq!((o.connections, o.size, o.depth, o.msg_id), (100, 64, 1, 1));
    /// ```
    pub fn new(addr: SocketAddr) -> Self {
        FrameOpts {
            addr,
            connections: 100,
            size: 64,
            depth: 1,
            msg_id: 1,
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
            return bad("--size must be between 1 byte and 4 MiB");
        }
        if self.depth == 0 || self.depth > 4096 {
            return bad("--depth must be between 1 and 4096");
        }
        if self.msg_id >= 0xFFF0 {
            return bad("--msg-id must be below 0xFFF0 (the reserved ids)");
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

/// Appends `v` as a protobuf varint.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The protobuf encoding of `RpcReq { id, payload }` as prost writes it (default-valued
/// fields omitted), which is also the encoding of the matching `RpcResp`.
///
/// ```
/// let body = herd_bench::frame::rpc_body(1, b"ab");
/// assert_eq!(body, [0x08, 0x01, 0x12, 0x02, b'a', b'b']);
/// assert_eq!(herd_bench::frame::rpc_body(0, b"")[..], []);
/// ```
pub fn rpc_body(id: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 16);
    if id != 0 {
        out.push(0x08); // field 1, varint
        put_varint(&mut out, id);
    }
    if !payload.is_empty() {
        out.push(0x12); // field 2, length-delimited
        put_varint(&mut out, payload.len() as u64);
        out.extend_from_slice(payload);
    }
    out
}

/// Runs frame mode as `opts` says and returns what it measured (mode `"frame"`).
///
/// Returns `Err` only when the run could not happen; problems during the run are counted in
/// the report (`report.errors() > 0` means the run failed).
pub fn run(opts: &FrameOpts) -> Result<Report, Error> {
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
            .name(format!("herd-bench-frame-{t}"))
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
        mode: "frame",
        connections: opts.connections,
        size: opts.size,
        depth: opts.depth,
        threads,
        duration: opts.duration,
        latency: Histogram::new(),
        ..Report::default()
    };
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

#[derive(Default)]
struct ThreadStats {
    latency: Histogram,
    messages: u64,
    messages_total: u64,
    mismatches: u64,
    disconnects: u64,
    io_errors: u64,
}

struct Window {
    warm_end: Instant,
    end: Instant,
    stats: ThreadStats,
}

enum Fate {
    Keep,
    Close,
}

/// One client connection.
struct Conn {
    stream: TcpStream,
    index: usize,
    /// One request frame with request id 0; each request is a copy with its id patched in.
    template: Vec<u8>,
    next_rid: u32,
    /// Queued bytes not yet accepted by the socket.
    out: Vec<u8>,
    /// Received bytes not yet parsed into whole frames.
    inbuf: Vec<u8>,
    /// (request id, queue time) of each request in flight, oldest first.
    inflight: VecDeque<(u32, Instant)>,
}

fn client_thread(
    opts: &FrameOpts,
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
            let mut payload = vec![0u8; opts.size];
            Pattern::new(index as u64).fill(0, &mut payload);
            let body = rpc_body(index as u64, &payload);
            let mut template = Vec::with_capacity(HEADER + body.len());
            template.extend_from_slice(&(body.len() as u32).to_be_bytes());
            template.extend_from_slice(&opts.msg_id.to_be_bytes());
            template.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // flags, request id
            template.extend_from_slice(&body);
            conns.push(Some(Conn {
                stream,
                index,
                out: Vec::with_capacity(template.len() * opts.depth),
                inbuf: Vec::new(),
                template,
                next_rid: 1,
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
        stats: ThreadStats {
            latency: Histogram::new(),
            ..ThreadStats::default()
        },
    };
    let mut live = count;
    for slot in conns.iter_mut() {
        let Some(conn) = slot else { continue };
        for _ in 0..opts.depth {
            conn.queue(start);
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
    /// Appends the next request to `out`, stamped `now`.
    fn queue(&mut self, now: Instant) {
        let rid = self.next_rid;
        self.next_rid = self.next_rid.wrapping_add(1).max(1);
        let at = self.out.len();
        self.out.extend_from_slice(&self.template);
        self.out[at + 8..at + 12].copy_from_slice(&rid.to_be_bytes());
        self.inflight.push_back((rid, now));
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

    /// Reads until a short read or `WouldBlock`, checks every whole reply, queues the next
    /// requests and writes them in one go.
    fn on_readable(&mut self, scratch: &mut [u8], w: &mut Window) -> Fate {
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
            self.inbuf.extend_from_slice(&scratch[..n]);
            if let Err(why) = self.take_replies(now, w) {
                w.stats.mismatches += 1;
                if w.stats.mismatches <= MAX_PRINTED {
                    eprintln!("herd-bench: connection {}: bad reply: {why}", self.index);
                }
                return Fate::Close;
            }
            if n < scratch.len() {
                break;
            }
        }
        self.flush(&mut w.stats)
    }

    /// Checks and completes every whole reply in `inbuf`, queueing a new request for each
    /// while the window is open.
    fn take_replies(&mut self, now: Instant, w: &mut Window) -> Result<(), String> {
        let body_len = self.template.len() - HEADER;
        let mut pos = 0;
        while self.inbuf.len() - pos >= HEADER {
            let h = &self.inbuf[pos..pos + HEADER];
            let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let msg_id = u16::from_be_bytes([h[4], h[5]]);
            let flags = u16::from_be_bytes([h[6], h[7]]);
            let rid = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
            if flags & ERROR != 0 {
                let end = (pos + HEADER + len).min(self.inbuf.len());
                let body = &self.inbuf[pos + HEADER..end];
                let code = body
                    .get(..2)
                    .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
                let text = String::from_utf8_lossy(body.get(2..).unwrap_or_default());
                return Err(format!(
                    "error frame for request {rid}: code {code}: {text}"
                ));
            }
            if len != body_len {
                return Err(format!("reply body of {len} bytes, expected {body_len}"));
            }
            if self.inbuf.len() - pos < HEADER + len {
                break;
            }
            if msg_id != u16::from_be_bytes([self.template[4], self.template[5]])
                || flags != RESPONSE
            {
                return Err(format!("reply with message id {msg_id}, flags {flags:#x}"));
            }
            let body = &self.inbuf[pos + HEADER..pos + HEADER + len];
            if body != &self.template[HEADER..] {
                return Err(format!(
                    "reply body to request {rid} differs from the request's"
                ));
            }
            let Some(i) = self.inflight.iter().position(|(r, _)| *r == rid) else {
                return Err(format!("reply to request {rid}, which is not in flight"));
            };
            let (_, sent_at) = self.inflight.remove(i).unwrap_or((rid, now));
            pos += HEADER + len;
            w.stats.messages_total += 1;
            if now >= w.warm_end && now < w.end {
                w.stats.messages += 1;
                let ns = now.duration_since(sent_at).as_nanos();
                w.stats
                    .latency
                    .record(u64::try_from(ns).unwrap_or(u64::MAX));
            }
            if now < w.end {
                self.queue(now);
            }
        }
        self.inbuf.drain(..pos);
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_protobuf() {
        let enc = |v| {
            let mut o = Vec::new();
            put_varint(&mut o, v);
            o
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(127), [0x7F]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(300), [0xAC, 0x02]);
        assert_eq!(enc(u64::MAX).len(), 10);
    }

    #[test]
    fn options_are_checked() {
        let mut o = FrameOpts::new("127.0.0.1:1".parse().unwrap());
        assert!(o.validate().is_ok());
        o.msg_id = 0xFFFE;
        assert!(o.validate().is_err());
        o.msg_id = 1;
        o.size = 0;
        assert!(o.validate().is_err());
    }
}
