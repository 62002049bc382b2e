//! One event loop: a thread that owns a mio `Poll`, a slab of connections, a timer wheel, a
//! buffer pool and one handler instance.
//!
//! The iteration is: wait (timeout = next timer, or zero if a connection still has budgeted
//! reads pending) → handle readiness (accept, command queue, reads, writes) → continue reads
//! that hit the budget → run due timers → write everything sent outside a read event → reap
//! closed connections. Reaping happens only at the end of an iteration (delayed reclaim), so a
//! slot is never freed while a callback could still be on the stack, and a slot is reused only
//! with a new generation, which is how stale [`Handle`](crate::Handle)s are recognised.
//!
//! Syscall discipline (DESIGN.md rule 5): sockets are registered edge-triggered for reads,
//! and gain write interest at their first short write (kept, so no `epoll_ctl` per message);
//! a reply is written directly from the output buffer after the read event that produced it
//! (one write for all replies of that read), and a large pass-through reply that is the only
//! output of its read is written straight from the read buffer, skipping that copy; a short
//! read or a short write is not followed by another call just to collect `EAGAIN`. Reads and
//! writes are `sys::recv` and `sys::send`: the system calls std would make, without libc's
//! cancellation-point wrapper around each.

mod closing;
mod rw;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::buf::{BufPool, ReadBuf, WriteBuf};
use crate::clock::SharedClock;
use crate::codec::Decoder;
use crate::conn::{Conn, ConnId, LoopCx, Timer};
use crate::handler::{CloseReason, Handler};
use crate::inbox::{Cmd, Inbox};
use crate::server::ServerShared as Shared;
use crate::stats::Stats;
use crate::timer::{TimerId, TimerWheel};

pub(crate) const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX / 2;
/// Minimum spare room when reading into a connection's own buffer.
const READ_CHUNK: usize = 16 * 1024;
/// During a graceful stop, how long a just-accepted connection that has sent nothing yet is
/// given before it counts as idle.
const FRESH_GRACE_MS: u64 = 1_000;
/// How long accepting pauses after EMFILE/ENFILE.
const ACCEPT_BACKOFF_MS: u64 = 500;

/// The socket side of a connection: everything but the handler's state.
pub(crate) struct Io<C> {
    pub(crate) stream: TcpStream,
    pub(crate) id: ConnId,
    pub(crate) codec: C,
    pub(crate) rbuf: ReadBuf,
    pub(crate) wbuf: WriteBuf,
    /// Output queued behind a file being sent (files, and bytes sent after them), in order.
    pub(crate) queue: VecDeque<Pending>,
    pub(crate) peer: SocketAddr,
    pub(crate) last_active: u64,
    pub(crate) idle_timer: Option<TimerId>,
    /// Set once: the connection is closing and will be reaped at the end of the iteration.
    pub(crate) closing: Option<CloseReason>,
    /// Close with this reason once the output buffer is empty.
    pub(crate) close_after: Option<CloseReason>,
    pub(crate) shutdown_after_flush: bool,
    /// Reading stopped by backpressure (output passed the high watermark).
    pub(crate) paused: bool,
    /// The handler has been told about the current pause.
    pub(crate) pause_announced: bool,
    /// Reading stopped by the handler.
    pub(crate) user_paused: bool,
    /// Loop time when the connection was accepted.
    pub(crate) opened_at: u64,
    /// Some bytes have been read from the peer.
    pub(crate) got_data: bool,
    /// The peer closed its write side (read returned 0).
    pub(crate) eof: bool,
    /// epoll reported the peer's FIN or a hang-up: read until 0 even after short reads.
    pub(crate) peer_hup: bool,
    /// Registered for writable edges too (after the first short write).
    pub(crate) write_interest: bool,
    /// Queued in `Core::dirty` (output to flush at the end of the iteration).
    pub(crate) dirty: bool,
    /// Queued in `Core::read_more` (readable data may be left: budget hit or resumed).
    pub(crate) read_queued: bool,
}

/// Output waiting behind a file: the file region itself, or bytes sent after it.
pub(crate) enum Pending {
    File {
        file: std::fs::File,
        offset: u64,
        end: u64,
    },
    Bytes(Vec<u8>),
}

/// Where newly sent bytes go: the write buffer, or behind the last queued file.
#[inline]
pub(crate) fn out_vec<'a>(
    wbuf: &'a mut WriteBuf,
    queue: &'a mut VecDeque<Pending>,
    pool: &mut BufPool,
) -> &'a mut Vec<u8> {
    if queue.is_empty() {
        return wbuf.vec_mut(pool);
    }
    if !matches!(queue.back(), Some(Pending::Bytes(_))) {
        queue.push_back(Pending::Bytes(Vec::new()));
    }
    match queue.back_mut() {
        Some(Pending::Bytes(v)) => v,
        _ => unreachable!("just pushed"),
    }
}

impl<C> Io<C> {
    #[inline]
    pub(crate) fn accepts_output(&self) -> bool {
        self.closing.is_none()
    }

    /// Nothing is queued and no close or half-close waits for the queue to drain: output
    /// written now goes out in order.
    #[inline]
    pub(crate) fn idle_output(&self) -> bool {
        self.wbuf.is_empty()
            && self.queue.is_empty()
            && self.closing.is_none()
            && self.close_after.is_none()
            && !self.shutdown_after_flush
    }

    /// Bytes of output held in memory (queued files are not counted: they cost no memory).
    #[inline]
    pub(crate) fn pending(&self) -> usize {
        if self.queue.is_empty() {
            return self.wbuf.len();
        }
        self.wbuf.len()
            + self
                .queue
                .iter()
                .map(|p| match p {
                    Pending::Bytes(v) => v.len(),
                    Pending::File { .. } => 0,
                })
                .sum::<usize>()
    }

    #[inline]
    pub(crate) fn has_output(&self) -> bool {
        !self.wbuf.is_empty() || !self.queue.is_empty()
    }

    pub(crate) fn discard_output(&mut self) {
        self.wbuf.clear();
        self.queue.clear();
    }

    fn slot(&self) -> usize {
        self.id.slot as usize
    }
}

/// A connection: its socket side and the handler's state (`None` until opened and after close).
pub(crate) struct Slot<H: Handler> {
    pub(crate) io: Io<H::Codec>,
    pub(crate) state: Option<H::State>,
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
    AcceptResume,
    StopDeadline,
    /// Wake up to look again for connections that became idle during a stop.
    StopRecheck,
}

/// Loop services that callbacks may use while a connection is borrowed.
pub(crate) struct Core {
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
    /// The slot `on_readable` is working on (`usize::MAX`: none).
    reading: usize,
    /// `on_message` is running for the last item of the bytes at hand: a reply to it that is
    /// the connection's only output can go straight to the socket (see `Conn::send`).
    pub(crate) last_item: bool,
    read_more: Vec<usize>,
    max_write_buffer: usize,
    pub(crate) write_high_water: usize,
    /// `Options::read_budget` (at least 1), kept here: `Shared` is another cache line to
    /// touch per readable event.
    read_budget: usize,
}

impl Core {
    pub(crate) fn mark_close<C>(&mut self, io: &mut Io<C>, reason: CloseReason) {
        if io.closing.is_none() {
            io.closing = Some(reason);
            self.to_close.push(io.slot());
        }
    }

    pub(crate) fn close_after_flush<C>(&mut self, io: &mut Io<C>, reason: CloseReason) {
        if io.closing.is_none() && io.close_after.is_none() {
            io.close_after = Some(reason);
            self.mark_dirty(io);
        }
    }

    #[inline]
    pub(crate) fn mark_dirty<C>(&mut self, io: &mut Io<C>) {
        if !io.dirty {
            io.dirty = true;
            // The connection being read is flushed when its read ends (see `on_readable`).
            if io.slot() != self.reading {
                self.dirty.push(io.slot());
            }
        }
    }

    pub(crate) fn want_read<C>(&mut self, io: &mut Io<C>) {
        if !io.read_queued {
            io.read_queued = true;
            self.read_more.push(io.slot());
        }
    }

    /// A read, write or sendfile failed for good: log it, drop the output, close with
    /// [`CloseReason::Error`].
    #[cold]
    pub(crate) fn io_failed<C>(&mut self, io: &mut Io<C>, op: &str, e: &io::Error) {
        tracing::debug!("conn {} ({}): {op}: {e}", io.id, io.peer);
        io.discard_output();
        self.mark_close(io, CloseReason::Error);
    }

    /// Write `bytes` straight to the socket, without copying them into the output buffer;
    /// what the socket does not take is queued as usual. Only for a connection with nothing
    /// queued (the caller checks `Io::idle_output`), so the order of output is kept.
    pub(crate) fn write_direct<C>(&mut self, io: &mut Io<C>, bytes: &[u8]) {
        self.stats.msgs_out += 1;
        let taken = loop {
            match crate::sys::send(&io.stream, bytes) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.stats.writes += 1;
                    self.io_failed(io, "write", &e);
                    return;
                }
            }
        };
        self.stats.writes += 1;
        self.stats.bytes_out += taken as u64;
        if taken < bytes.len() {
            io.wbuf
                .vec_mut(&mut self.pool)
                .extend_from_slice(&bytes[taken..]);
            self.after_send(io);
        }
    }

    /// Bookkeeping after bytes were appended to a connection's output buffer (once per reply:
    /// the rare cases live in a cold function so this one inlines into `send`).
    #[inline]
    pub(crate) fn after_send<C>(&mut self, io: &mut Io<C>) {
        self.mark_dirty(io);
        let pending = io.pending();
        if pending > self.write_high_water || pending > self.max_write_buffer {
            self.output_over_high_water(io, pending);
        }
    }

    #[cold]
    #[inline(never)]
    fn output_over_high_water<C>(&mut self, io: &mut Io<C>, pending: usize) {
        if !io.paused && pending > self.write_high_water {
            io.paused = true;
            io.pause_announced = false;
            self.stats.backpressure_pauses += 1;
        }
        if pending > self.max_write_buffer {
            tracing::warn!(
                "conn {} ({}): {} bytes of output waiting, over the {} limit; closing",
                io.id,
                io.peer,
                pending,
                self.max_write_buffer
            );
            io.discard_output();
            self.mark_close(io, CloseReason::Overflow);
        }
    }

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

    /// For a fired periodic timer: is it still wanted? If so, schedule its next period, one
    /// period after the deadline that fired (no drift), or one period from now if the loop fell
    /// more than a period behind (no burst of catch-up runs).
    fn renew_periodic(
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

/// What a loop reports when it exits.
#[derive(Debug, Default, Clone)]
pub(crate) struct LoopReport {
    pub(crate) stats: Stats,
    pub(crate) closed_graceful: u64,
    pub(crate) closed_forced: u64,
}

struct Stopping {
    forced: bool,
}

/// Everything one loop thread owns.
pub(crate) struct EventLoop<H: Handler> {
    handler: H,
    slab: Slab<Slot<H>>,
    core: Core,
    poll: Poll,
    scratch: Vec<u8>,
    listeners: Vec<TcpListener>,
    accept_paused: bool,
    emfile_logged: bool,
    next_gen: u32,
    shared: Arc<Shared>,
    clock: SharedClock,
    stopping: Option<Stopping>,
    stop_requested: Option<u64>,
    report: LoopReport,
    cmds: Vec<Cmd>,
    fired: Vec<(TimerId, u64, TimerKind)>,
}

/// Run a handler callback; a panic is caught and logged, and reported as `None` (the caller
/// counts it and decides what to close).
fn guarded<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(_) => {
            tracing::error!("handler panicked in {what}");
            None
        }
    }
}

/// Run a callback about an open connection. A panic is counted and closes that connection
/// ([`CloseReason::Panic`]); returns false then, or if the connection is not open.
fn conn_callback<H: Handler>(
    handler: &mut H,
    slot: &mut Slot<H>,
    core: &mut Core,
    what: &str,
    f: impl FnOnce(&mut H, &mut Conn<'_, H>, &mut H::State),
) -> bool {
    let Some(state) = slot.state.as_mut() else {
        return false;
    };
    let mut cx = Conn {
        io: &mut slot.io,
        core,
    };
    if guarded(what, || f(handler, &mut cx, state)).is_some() {
        return true;
    }
    core.stats.handler_panics += 1;
    core.mark_close(&mut slot.io, CloseReason::Panic);
    false
}

impl<H: Handler> EventLoop<H> {
    pub(crate) fn new(
        loop_index: usize,
        handler: H,
        poll: Poll,
        inbox: Arc<Inbox>,
        listeners: Vec<TcpListener>,
        shared: Arc<Shared>,
        clock: SharedClock,
    ) -> io::Result<Self> {
        let now = clock.now_ms();
        let opts = &shared.opts;
        let mut lp = EventLoop {
            handler,
            slab: Slab::new(),
            core: Core {
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
                max_write_buffer: opts.max_write_buffer,
                write_high_water: opts.write_high_water,
                read_budget: opts.read_budget.max(1),
            },
            poll,
            scratch: vec![0; opts.scratch_size.max(1024)],
            listeners,
            accept_paused: false,
            emfile_logged: false,
            next_gen: 0,
            shared,
            clock,
            stopping: None,
            stop_requested: None,
            report: LoopReport::default(),
            cmds: Vec::new(),
            fired: Vec::new(),
        };
        for (i, l) in lp.listeners.iter_mut().enumerate() {
            lp.poll
                .registry()
                .register(l, Token(LISTENER_BASE + i), Interest::READABLE)?;
        }
        Ok(lp)
    }

    /// Run until stopped; returns the loop's final counters.
    pub(crate) fn run(mut self) -> LoopReport {
        let mut events = Events::with_capacity(1024);
        {
            let mut lp = LoopCx {
                slab: &mut self.slab,
                core: &mut self.core,
            };
            let h = &mut self.handler;
            guarded("on_loop_start", || h.on_loop_start(&mut lp));
        }
        loop {
            let timeout = if !self.core.read_more.is_empty() {
                Some(Duration::ZERO)
            } else {
                self.core
                    .timers
                    .next_deadline()
                    .map(|d| Duration::from_millis(d.saturating_sub(self.core.now)))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("loop {}: poll failed: {e}", self.core.loop_index);
                break;
            }
            self.core.now = self.clock.now_ms();
            for ev in events.iter() {
                match ev.token() {
                    WAKER => self.drain_inbox(),
                    Token(t) if t >= LISTENER_BASE => self.accept(t - LISTENER_BASE),
                    Token(idx) => {
                        if ev.is_read_closed() {
                            // The FIN came with (or after) the data: a short read must not end
                            // reading, or the EOF would never be seen (edge-triggered).
                            if let Some(slot) = self.slab.get_mut(idx) {
                                slot.io.peer_hup = true;
                            }
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.on_readable(idx);
                        }
                        if ev.is_writable() {
                            self.on_writable(idx);
                        }
                    }
                }
            }
            self.run_read_more();
            self.run_timers();
            if let Some(grace_ms) = self.stop_requested.take() {
                self.begin_stop(grace_ms);
            }
            self.flush_dirty();
            self.reap();
            if self.stopping.is_some() {
                self.close_idle_for_stop();
                self.reap();
                if self.slab.is_empty() {
                    break;
                }
            }
        }
        self.core.inbox.close();
        self.report.stats = self.snapshot();
        self.report
    }

    fn snapshot(&self) -> Stats {
        let mut s = self.core.stats.clone();
        s.open = self.slab.iter().filter(|(_, s)| s.state.is_some()).count() as u64;
        s
    }

    // ----- accepting -----

    fn accept(&mut self, li: usize) {
        if self.accept_paused || self.stopping.is_some() {
            return;
        }
        loop {
            let Some(listener) = self.listeners.get(li) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.emfile_logged = false;
                    let admitted = self.shared.try_admit(self.core.loop_index, peer.ip());
                    self.adopt(stream, peer, admitted);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if crate::sys::is_fd_exhausted(&e) => {
                    self.core.stats.accept_fd_exhausted += 1;
                    if !self.emfile_logged {
                        self.emfile_logged = true;
                        tracing::error!(
                            "loop {}: accept: {e}; pausing accepts for {ACCEPT_BACKOFF_MS} ms",
                            self.core.loop_index
                        );
                    }
                    self.accept_paused = true;
                    self.core
                        .timers
                        .insert(self.core.now + ACCEPT_BACKOFF_MS, TimerKind::AcceptResume);
                    return;
                }
                Err(e) if crate::sys::is_transient_accept_error(&e) => continue,
                Err(e) => {
                    self.core.stats.accept_errors += 1;
                    tracing::warn!("loop {}: accept: {e}", self.core.loop_index);
                    return;
                }
            }
        }
    }

    /// Take a newly accepted connection: register it and run `on_open`.
    fn adopt(&mut self, mut stream: TcpStream, peer: SocketAddr, admitted: bool) {
        self.core.stats.accepted += 1;
        if !admitted || self.stopping.is_some() {
            if admitted {
                self.shared.release(self.core.loop_index, peer.ip());
            }
            self.core.stats.closed[CloseReason::Limit.index()] += 1;
            tracing::debug!("connection from {peer} refused: connection limit");
            return;
        }
        if self.shared.opts.nodelay && !crate::sys::ACCEPT_INHERITS_OPTIONS {
            // Elsewhere the listener's TCP_NODELAY is inherited (one syscall per accept saved).
            let _ = stream.set_nodelay(true);
        }
        let entry = self.slab.vacant_entry();
        let idx = entry.key();
        // Readable only: writability is asked for after the first short write (rule 5), so
        // connections that never fill their socket buffer never get writable events.
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(idx), Interest::READABLE)
        {
            tracing::warn!("register {peer}: {e}");
            self.shared.release(self.core.loop_index, peer.ip());
            self.core.stats.closed[CloseReason::Error.index()] += 1;
            return;
        }
        self.next_gen = self.next_gen.wrapping_add(1);
        let id = ConnId {
            loop_index: self.core.loop_index as u32,
            slot: idx as u32,
            gen: self.next_gen,
        };
        let codec = self.handler.new_codec();
        let now = self.core.now;
        let slot = entry.insert(Slot {
            io: Io {
                stream,
                id,
                codec,
                rbuf: ReadBuf::default(),
                wbuf: WriteBuf::default(),
                queue: VecDeque::new(),
                peer,
                last_active: now,
                idle_timer: None,
                closing: None,
                close_after: None,
                shutdown_after_flush: false,
                paused: false,
                pause_announced: false,
                user_paused: false,
                eof: false,
                opened_at: now,
                got_data: false,
                peer_hup: false,
                write_interest: false,
                dirty: false,
                read_queued: false,
            },
            state: None,
        });
        let core = &mut self.core;
        let h = &mut self.handler;
        let mut cx = Conn {
            io: &mut slot.io,
            core,
        };
        let opened = guarded("on_open", || h.on_open(&mut cx));
        match opened {
            Some(Some(state)) => {
                slot.state = Some(state);
                if let Some(idle) = self.shared.opts.idle_timeout {
                    let at = now + crate::conn::ms(idle);
                    slot.io.idle_timer = Some(self.core.timers.insert(at, TimerKind::Idle(id)));
                }
            }
            Some(None) => self
                .core
                .close_after_flush(&mut slot.io, CloseReason::Refused),
            None => {
                self.core.stats.handler_panics += 1;
                self.core.mark_close(&mut slot.io, CloseReason::Panic);
            }
        }
    }

    // ----- commands from other threads -----

    fn drain_inbox(&mut self) {
        let mut cmds = std::mem::take(&mut self.cmds);
        self.core.inbox.drain(&mut cmds);
        for cmd in cmds.drain(..) {
            match cmd {
                Cmd::Send(id, bytes) => match live(&mut self.slab, id) {
                    Some(slot) if slot.io.accepts_output() => {
                        let io = &mut slot.io;
                        out_vec(&mut io.wbuf, &mut io.queue, &mut self.core.pool)
                            .extend_from_slice(&bytes);
                        self.core.stats.msgs_out += 1;
                        self.core.after_send(io);
                    }
                    _ => self.core.stats.stale_commands += 1,
                },
                Cmd::Notify(id, token, data) => {
                    let Some(slot) = live(&mut self.slab, id) else {
                        self.core.stats.stale_commands += 1;
                        continue;
                    };
                    if slot.state.is_none() || slot.io.closing.is_some() {
                        self.core.stats.stale_commands += 1;
                        continue;
                    }
                    conn_callback(
                        &mut self.handler,
                        slot,
                        &mut self.core,
                        "on_notify",
                        |h, cx, st| h.on_notify(cx, st, token, data),
                    );
                }
                Cmd::Close(id, flush) => match live(&mut self.slab, id) {
                    Some(slot) if flush => self
                        .core
                        .close_after_flush(&mut slot.io, CloseReason::Local),
                    Some(slot) => self.core.mark_close(&mut slot.io, CloseReason::Local),
                    None => self.core.stats.stale_commands += 1,
                },
                Cmd::Adopt(stream, peer) => self.adopt(stream, peer, true),
                // Applied after this iteration's events, so requests that arrived together with
                // the stop command are read before idle connections are closed.
                Cmd::Stop { grace_ms } => self.stop_requested = Some(grace_ms),
                Cmd::Stats(tx) => {
                    let _ = tx.send(self.snapshot());
                }
                Cmd::Tick => {}
            }
        }
        self.cmds = cmds;
    }

    // ----- timers -----

    fn run_timers(&mut self) {
        let mut fired = std::mem::take(&mut self.fired);
        self.core.timers.advance(self.core.now, &mut fired);
        for (tid, deadline, kind) in fired.drain(..) {
            match kind {
                TimerKind::Idle(id) => self.idle_check(id),
                TimerKind::Conn {
                    id,
                    token,
                    every,
                    periodic,
                } => {
                    let alive = live(&mut self.slab, id)
                        .is_some_and(|s| s.state.is_some() && s.io.closing.is_none());
                    if !alive {
                        self.core.periodic.remove(&periodic);
                        continue;
                    }
                    if !self
                        .core
                        .renew_periodic(tid, deadline, periodic, every, kind)
                    {
                        continue;
                    }
                    conn_callback(
                        &mut self.handler,
                        &mut self.slab[id.slot as usize],
                        &mut self.core,
                        "on_timer",
                        |h, cx, st| h.on_timer(cx, st, token),
                    );
                }
                TimerKind::Loop {
                    token,
                    every,
                    periodic,
                } => {
                    if !self
                        .core
                        .renew_periodic(tid, deadline, periodic, every, kind)
                    {
                        continue;
                    }
                    let h = &mut self.handler;
                    let mut lp = LoopCx {
                        slab: &mut self.slab,
                        core: &mut self.core,
                    };
                    if guarded("on_loop_timer", || h.on_loop_timer(&mut lp, token)).is_none() {
                        self.core.stats.handler_panics += 1;
                    }
                }
                TimerKind::AcceptResume => {
                    self.accept_paused = false;
                    for li in 0..self.listeners.len() {
                        self.accept(li);
                    }
                }
                TimerKind::StopDeadline => self.force_close_all(),
                TimerKind::StopRecheck => {}
            }
        }
        self.fired = fired;
    }

    fn idle_check(&mut self, id: ConnId) {
        let Some(idle) = self.shared.opts.idle_timeout else {
            return;
        };
        let idle = crate::conn::ms(idle);
        let now = self.core.now;
        let Some(slot) = live(&mut self.slab, id) else {
            return;
        };
        let io = &mut slot.io;
        if io.closing.is_some() {
            return;
        }
        let due = io.last_active + idle;
        if now >= due {
            tracing::debug!("conn {} ({}): idle for {idle} ms; closing", io.id, io.peer);
            io.idle_timer = None;
            io.discard_output();
            self.core.mark_close(io, CloseReason::Idle);
        } else {
            io.idle_timer = Some(self.core.timers.insert(due, TimerKind::Idle(id)));
        }
    }
}

/// Decode items from `data` and hand each to the handler. Returns the bytes consumed.
/// Stops early if the connection starts closing or was never opened.
fn decode_dispatch<H: Handler>(
    handler: &mut H,
    slot: &mut Slot<H>,
    core: &mut Core,
    data: &mut [u8],
) -> usize {
    let mut pos = 0;
    let len = data.len();
    while pos < len {
        if slot.io.closing.is_some() || slot.io.close_after.is_some() {
            break;
        }
        if slot.state.is_none() {
            break;
        }
        match slot.io.codec.decode(&mut data[pos..]) {
            Ok((0, None)) => break,
            Ok((n, item)) => {
                pos += n;
                if let Some(item) = item {
                    core.stats.msgs_in += 1;
                    core.last_item = pos == len;
                    conn_callback(handler, slot, core, "on_message", |h, cx, st| {
                        h.on_message(cx, st, item)
                    });
                    core.last_item = false;
                }
            }
            Err(e) => {
                tracing::warn!("conn {} ({}): bad input: {e}", slot.io.id, slot.io.peer);
                conn_callback(handler, slot, core, "on_decode_error", |h, cx, st| {
                    h.on_decode_error(cx, st, &e)
                });
                core.close_after_flush(&mut slot.io, CloseReason::Decode);
                break;
            }
        }
    }
    pos
}

/// The slot for `id` if it still holds that very connection (same generation).
fn live<H: Handler>(slab: &mut Slab<Slot<H>>, id: ConnId) -> Option<&mut Slot<H>> {
    slab.get_mut(id.slot as usize).filter(|s| s.io.id == id)
}
