//! Echo mode: many connections, each with `depth` messages in flight, every byte verified.
//!
//! [`run`] spreads the connections over `threads` client threads, each opening its share with
//! blocking connects (bounded retries) before a common start, so connecting is never part of
//! the measurement. Then each connection sends `depth` messages of `size` bytes taken from its
//! own [`Pattern`] stream, and each time a whole message has come back it sends the next one.
//! Every received chunk is checked against the stream at its offset: a difference, or more
//! bytes than were sent, is a mismatch that is printed, counted and closes that connection. A
//! server closing a connection is counted as a disconnect. Latency is the time from queueing a
//! message to reading its last byte; only messages that complete inside the measured window
//! (after warmup) count.
//!
//! This file holds only the protocol: the options and what a connection sends and checks.
//! Threads, the poll loop, the window and the report are the shared client driver
//! (`driver.rs`): one mio loop per thread, one clock read per read syscall, replies to one read
//! coalesced into one write, no allocation per message. It must not print anything but
//! mismatch lines and must stop by itself at the end of the window. Callers: the
//! `herd-bench echo` command and the integration tests.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::driver::{self, Client, Plan, Stop, Window};
use crate::pattern::Pattern;
use crate::stats::Report;
use crate::Error;

/// Largest message accepted, so a typo cannot allocate gigabytes.
pub const MAX_SIZE: usize = 16 << 20;
/// Largest `size * depth` per connection.
pub const MAX_IN_FLIGHT: usize = 64 << 20;
/// The message for a depth outside 1 and [`MAX_IN_FLIGHT`] bytes in flight (echo and ws).
pub(crate) const IN_FLIGHT_TEXT: &str =
    "--depth must be at least 1 and size * depth at most 64 MiB";

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
        self.plan().check(
            MAX_SIZE,
            "16 MiB",
            usize::MAX,
            MAX_IN_FLIGHT,
            IN_FLIGHT_TEXT,
        )
    }

    /// The run's shape, for the driver.
    fn plan(&self) -> Plan {
        Plan {
            mode: "echo",
            connections: self.connections,
            size: self.size,
            depth: self.depth,
            duration: self.duration,
            warmup: self.warmup,
            threads: self.threads,
        }
    }
}

pub use crate::driver::connect_with_retry;

/// Runs echo mode as `opts` says and returns what it measured.
///
/// Returns `Err` only when the run could not happen (bad options, a connection that could
/// not be opened, a thread that could not start). Problems during the run are counted in the
/// report; `report.errors() > 0` means the run failed.
pub fn run(opts: &EchoOpts) -> Result<Report, Error> {
    opts.validate()?;
    let plan = opts.plan();
    driver::run(&plan, |index| {
        let stream = connect_with_retry(opts.addr, index, opts.connect_attempts)?;
        let conn = Conn {
            size: opts.size,
            pattern: Pattern::new(index as u64),
            queued: 0,
            received: 0,
            inflight: VecDeque::with_capacity(opts.depth),
        };
        Ok((stream, conn))
    })
}

/// Where one connection is in its stream.
struct Conn {
    size: usize,
    pattern: Pattern,
    /// Stream bytes queued so far (sent or waiting in the driver's output buffer).
    queued: u64,
    /// Stream bytes received and verified so far.
    received: u64,
    /// Queue time of each message in flight, oldest first.
    inflight: VecDeque<Instant>,
}

impl Client for Conn {
    const MISMATCH: &'static str = "echo mismatch";

    fn wire_len(&self) -> usize {
        self.size
    }

    /// Appends the next `size` bytes of the stream, stamped `now`.
    fn queue(&mut self, out: &mut Vec<u8>, now: Instant) {
        let at = out.len();
        out.resize(at + self.size, 0);
        self.pattern.fill(self.queued, &mut out[at..]);
        self.queued += self.size as u64;
        self.inflight.push_back(now);
    }

    /// Verifies `chunk` against the stream at its offset and completes every message whose
    /// last byte it holds.
    fn take(
        &mut self,
        chunk: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
        w: &mut Window,
    ) -> Result<(), Stop> {
        let n = chunk.len() as u64;
        if self.received + n > self.queued {
            return Err(Stop::Mismatch(format!(
                "server sent {} bytes beyond the {} it was sent",
                self.received + n - self.queued,
                self.queued
            )));
        }
        self.pattern
            .verify(self.received, chunk)
            .map_err(|m| m.to_string())?;
        let size = self.size as u64;
        let done = (self.received + n) / size - self.received / size;
        self.received += n;
        for _ in 0..done {
            let sent_at = self.inflight.pop_front().unwrap_or(now);
            if w.complete(sent_at, now) {
                self.queue(out, now);
            }
        }
        Ok(())
    }
}
