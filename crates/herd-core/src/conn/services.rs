//! The loop's services that a connection callback may use while its connection is borrowed:
//! time, timers, the buffer pool, counters, the inbox (for handles), the lists of connections
//! to flush, read again or reap, and the output watermarks.
//!
//! [`Core`] is owned by the event loop and lent to every [`Conn`](crate::Conn) for the length
//! of one callback. Its methods are the only way a connection gets onto the loop's lists
//! ([`Marks`] records the membership, so each list holds a connection at most once), and the
//! only way a connection starts closing, so a close is always queued for the reaper.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use super::connection::Connection;
use super::tx::Watermarks;
use super::Timer;
use crate::buf::BufPool;
use crate::id::ConnId;
use crate::inbox::Inbox;
use crate::reason::CloseReason;
use crate::stats::Stats;
use crate::timer::{TimerId, TimerWheel};

/// Which of the loop's lists a connection is on.
#[derive(Debug, Default)]
pub(crate) struct Marks {
    /// On `Core::dirty` (output to flush at the end of the iteration).
    dirty: bool,
    /// On `Core::read_more` (readable data may be left: budget hit or resumed).
    read_queued: bool,
}

/// What a timer in the wheel is for.
#[derive(Clone, Copy)]
pub(crate) enum TimerKind {
    Idle(ConnId),
    Conn {
        id: ConnId,
        token: u64,
        every: u64,
        periodic: u64,
    },
    Loop {
        token: u64,
        every: u64,
        periodic: u64,
    },
    /// The TLS handshake of this connection must have finished by now.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    TlsHandshake(ConnId),
    /// The PROXY protocol header of this connection must have arrived by now.
    ProxyHeader(ConnId),
    /// This lingering connection closes now, whatever the peer still sends.
    Linger(ConnId),
    /// Has the peer taken any of this connection's waiting output within the send timeout?
    SendTimeout(ConnId),
    AcceptResume,
    StopDeadline,
    /// Wake up to look again for connections that became idle during a stop.
    StopRecheck,
    /// Measure what connections hold against the memory budget (overload guard).
    MemoryScan,
}

/// How many (peer, cause) pairs of logged failures (TLS, PROXY header) a loop remembers
/// before forgetting all.
const FAILURE_LOG_MEMORY: usize = 4096;

/// Loop services that callbacks may use while a connection is borrowed.
pub(crate) struct Core {
    /// (peer address, cause) pairs whose failure (TLS, PROXY header) was logged already.
    failures_logged: std::collections::HashSet<(std::net::IpAddr, &'static str)>,
    pub(crate) loop_index: usize,
    pub(crate) now: u64,
    pub(crate) timers: TimerWheel<TimerKind>,
    periodic: HashMap<u64, TimerId>,
    next_periodic: u64,
    pub(crate) pool: BufPool,
    pub(crate) stats: Stats,
    pub(crate) inbox: Arc<Inbox>,
    to_close: Vec<usize>,
    dirty: Vec<usize>,
    /// The slot being read (`usize::MAX`: none): its replies are flushed when the read ends,
    /// so they skip the dirty list.
    pub(crate) reading: usize,
    /// `on_message` is running for the last item of the bytes at hand: a reply to it that is
    /// the connection's only output can go straight to the socket (see `Conn::send`).
    pub(crate) last_item: bool,
    read_more: Vec<usize>,
    pub(crate) water: Watermarks,
    /// `Options::read_budget` (at least 1), kept here: the shared options are another cache
    /// line to touch per readable event.
    pub(crate) read_budget: usize,
    /// `Options::idle_timeout` in ms.
    pub(crate) idle_ms: Option<u64>,
    /// How long a drained connection lingers ([`Options::lingering_close`]); 0: close at once.
    pub(crate) linger_ms: u64,
    /// [`Options::send_timeout`] in ms.
    pub(crate) send_timeout_ms: Option<u64>,
    /// [`Options::send_min_rate`].
    pub(crate) send_min_rate: Option<u32>,
    /// The memory budget's level at this loop's last scan ([`crate::overload`]).
    pub(crate) overload: crate::overload::Level,
}

impl Core {
    /// A loop's services at loop time `now`.
    pub(crate) fn new(
        loop_index: usize,
        now: u64,
        opts: &crate::Options,
        inbox: Arc<Inbox>,
    ) -> Core {
        Core {
            loop_index,
            now,
            timers: TimerWheel::new(now),
            periodic: HashMap::new(),
            next_periodic: 0,
            pool: BufPool::new(opts.buffer_size, 256),
            stats: Stats::default(),
            inbox,
            to_close: Vec::new(),
            dirty: Vec::new(),
            reading: usize::MAX,
            last_item: false,
            read_more: Vec::new(),
            water: Watermarks {
                high: opts.write_high_water,
                low: opts.write_low_water,
                max: opts.max_write_buffer,
            },
            read_budget: opts.read_budget.max(1),
            idle_ms: opts.idle_timeout.map(crate::clock::millis),
            linger_ms: crate::clock::millis(opts.lingering_close),
            send_timeout_ms: opts.send_timeout.map(crate::clock::millis),
            send_min_rate: opts.send_min_rate,
            failures_logged: std::collections::HashSet::new(),
            overload: crate::overload::Level::Normal,
        }
    }

    /// Close `conn` now (its output is dropped); it is reaped at the end of the iteration.
    pub(crate) fn mark_close<C>(&mut self, conn: &mut Connection<C>, reason: CloseReason) {
        if conn.close(reason) {
            self.to_close.push(conn.slot());
        }
    }

    /// Close `conn` once its output is written.
    pub(crate) fn close_after_flush<C>(&mut self, conn: &mut Connection<C>, reason: CloseReason) {
        if conn.drain(reason) {
            self.mark_dirty(conn);
        }
    }

    /// The next connection to reap, if any.
    pub(crate) fn next_to_reap(&mut self) -> Option<usize> {
        self.to_close.pop()
    }

    /// Put `conn` on the list to flush at the end of the iteration.
    #[inline]
    pub(crate) fn mark_dirty<C>(&mut self, conn: &mut Connection<C>) {
        let slot = conn.slot();
        let marks = conn.marks_mut();
        if !marks.dirty {
            marks.dirty = true;
            // The connection being read is flushed when its read ends (see `on_readable`).
            if slot != self.reading {
                self.dirty.push(slot);
            }
        }
    }

    /// A flush of `conn` is starting: it is no longer dirty.
    #[inline]
    pub(crate) fn clear_dirty<C>(conn: &mut Connection<C>) {
        conn.marks_mut().dirty = false;
    }

    /// Whether `conn` still waits on the dirty list.
    pub(crate) fn is_dirty<C>(conn: &Connection<C>) -> bool {
        conn.marks().dirty
    }

    /// Take the dirty list (empty when nothing waits); the test driver's flush.
    #[cfg(test)]
    pub(crate) fn take_dirty(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.dirty)
    }

    /// Exchange the dirty list with `list` (empty, its capacity kept for the next marks): the
    /// loop's flush takes the list this way so that neither vector is reallocated per flush.
    pub(crate) fn swap_dirty(&mut self, list: &mut Vec<usize>) {
        debug_assert!(list.is_empty());
        std::mem::swap(&mut self.dirty, list);
    }

    /// Put `conn` on the list to read again before the next wait.
    pub(crate) fn want_read<C>(&mut self, conn: &mut Connection<C>) {
        let slot = conn.slot();
        let marks = conn.marks_mut();
        if !marks.read_queued {
            marks.read_queued = true;
            self.read_more.push(slot);
        }
    }

    /// Some connection waits to be read again (the next wait must not block).
    pub(crate) fn has_read_more(&self) -> bool {
        !self.read_more.is_empty()
    }

    /// Take the read-more list.
    pub(crate) fn take_read_more(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.read_more)
    }

    /// Take `conn` off the read-more list; true if it was on it.
    pub(crate) fn unqueue_read<C>(conn: &mut Connection<C>) -> bool {
        std::mem::replace(&mut conn.marks_mut().read_queued, false)
    }

    /// A read failed for good: a TLS failure is counted by cause and closes with
    /// [`CloseReason::Tls`]; anything else is [`io_failed`](Self::io_failed).
    #[cold]
    pub(crate) fn read_failed<C>(&mut self, conn: &mut Connection<C>, e: &io::Error) {
        #[cfg(feature = "tls")]
        if let Some(f) = conn.transport().tls().and_then(|t| t.failure()) {
            self.tls_failed(conn, f, e);
            return;
        }
        self.io_failed(conn, "read", e);
    }

    /// A TLS session failed: count the cause, log it once per peer address and cause (per
    /// loop, so a scanner cannot flood the log), close with [`CloseReason::Tls`].
    #[cfg(feature = "tls")]
    #[cold]
    pub(crate) fn tls_failed<C>(
        &mut self,
        conn: &mut Connection<C>,
        f: crate::tls::TlsFailure,
        e: &dyn std::fmt::Display,
    ) {
        self.stats.tls_failed[f.index()] += 1;
        self.log_failure(Some(conn.id()), conn.peer(), "TLS failed", f.as_str(), e);
        self.mark_close(conn, CloseReason::Tls);
    }

    /// Log a failure of kind `what` (`"TLS failed"`) and cause `cause` at info level the first
    /// time this loop sees it from `peer`'s address, at debug level after that (bounded
    /// memory), so a scanner cannot flood the log.
    #[cold]
    pub(crate) fn log_failure(
        &mut self,
        id: Option<ConnId>,
        peer: std::net::SocketAddr,
        what: &str,
        cause: &'static str,
        detail: &dyn std::fmt::Display,
    ) {
        let ip = peer.ip();
        let who = match id {
            Some(id) => format!("conn {id} ({peer})"),
            None => format!("connection from {peer}"),
        };
        if self.failures_logged.len() >= FAILURE_LOG_MEMORY {
            self.failures_logged.clear();
        }
        if self.failures_logged.insert((ip, cause)) {
            tracing::info!(
                "{who}: {what} ({cause}): {detail}; further `{cause}` failures from {ip} are only counted"
            );
        } else {
            tracing::debug!("{who}: {what} ({cause}): {detail}");
        }
    }

    /// A read, write or sendfile failed for good: log it, close with [`CloseReason::Error`].
    #[cold]
    pub(crate) fn io_failed<C>(&mut self, conn: &mut Connection<C>, op: &str, e: &io::Error) {
        tracing::debug!("conn {} ({}): {op}: {e}", conn.id(), conn.peer());
        self.mark_close(conn, CloseReason::Error);
    }

    /// Write `bytes` straight to the transport, without copying them into the output buffer;
    /// what the transport does not take is queued as usual. Only for a connection with nothing
    /// queued (the caller checks [`Connection::idle_output`]), so the order of output is kept.
    pub(crate) fn write_direct<C>(&mut self, conn: &mut Connection<C>, bytes: &[u8]) {
        self.stats.msgs_out += 1;
        let (tx, t) = conn.tx_and_transport();
        match tx.write_direct(t, bytes, &mut self.pool, &mut self.stats) {
            Ok(false) => {}
            Ok(true) => self.after_send(conn),
            Err(e) => self.io_failed(conn, "write", &e),
        }
    }

    /// Bookkeeping after bytes were appended to a connection's output (once per reply: the
    /// rare cases live in a cold function so this one inlines into `send`; `always`: with
    /// the executor's code in the loop, LLVM stopped inlining it, +27 instructions per echo).
    #[inline(always)]
    pub(crate) fn after_send<C>(&mut self, conn: &mut Connection<C>) {
        self.mark_dirty(conn);
        let pending = conn.tx().pending();
        if pending > self.water.high || pending > self.water.max {
            self.output_over_high_water(conn, pending);
        }
    }

    /// The one place reading pauses for output: past the high watermark, counted once per
    /// pause. (Announcing it to the handler is the loop's, at the next flush.)
    pub(crate) fn pause_if_over_high<C>(&mut self, conn: &mut Connection<C>, pending: usize) {
        if pending > self.water.high && conn.rx_mut().pause_output() {
            self.stats.backpressure_pauses += 1;
        }
    }

    #[cold]
    #[inline(never)]
    fn output_over_high_water<C>(&mut self, conn: &mut Connection<C>, pending: usize) {
        self.pause_if_over_high(conn, pending);
        if pending > self.water.max {
            tracing::warn!(
                "conn {} ({}): {} bytes of output waiting, over the {} limit; closing",
                conn.id(),
                conn.peer(),
                pending,
                self.water.max
            );
            self.mark_close(conn, CloseReason::Overflow);
        }
    }

    /// Schedule a repeating timer; `make(every, periodic_id)` builds its wheel entry.
    pub(crate) fn schedule_every(
        &mut self,
        period_ms: u64,
        make: impl FnOnce(u64, u64) -> TimerKind,
    ) -> Timer {
        self.next_periodic += 1;
        let pid = self.next_periodic;
        let every = period_ms.max(1);
        let id = self.timers.insert(self.now + every, make(every, pid));
        self.periodic.insert(pid, id);
        Timer::Every(pid)
    }

    /// Cancel a timer (a fired or unknown one is ignored).
    pub(crate) fn cancel_timer(&mut self, timer: Timer) {
        match timer {
            Timer::Once(id) => {
                self.timers.cancel(id);
            }
            Timer::Every(pid) => {
                if let Some(id) = self.periodic.remove(&pid) {
                    self.timers.cancel(id);
                }
            }
        }
    }

    /// Forget a repeating timer whose connection is gone.
    pub(crate) fn forget_periodic(&mut self, periodic: u64) {
        self.periodic.remove(&periodic);
    }

    /// For a fired periodic timer: is it still wanted? If so, schedule its next period, one
    /// period after the deadline that fired (no drift), or one period from now if the loop fell
    /// more than a period behind (no burst of catch-up runs).
    pub(crate) fn renew_periodic(
        &mut self,
        fired: TimerId,
        deadline: u64,
        periodic: u64,
        every: u64,
        kind: TimerKind,
    ) -> bool {
        if periodic == 0 {
            return true;
        }
        if self.periodic.get(&periodic) != Some(&fired) {
            return false;
        }
        let mut at = deadline + every;
        if at <= self.now {
            at = self.now + every;
        }
        let next = self.timers.insert(at, kind);
        self.periodic.insert(periodic, next);
        true
    }
}
