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
//! Syscall discipline (few system calls per message): sockets are registered edge-triggered for reads,
//! and gain write interest at their first short write (kept, so no `epoll_ctl` per message);
//! a reply is written directly from the output buffer after the read event that produced it
//! (one write for all replies of that read), and a large pass-through reply that is the only
//! output of its read is written straight from the read buffer, skipping that copy; a short
//! read or a short write is not followed by another call just to collect `EAGAIN`. Reads and
//! writes are `sys::recv` and `sys::send`: the system calls std would make, without libc's
//! cancellation-point wrapper around each.

mod closing;
#[cfg(test)]
pub(crate) mod pair;
mod rw;

use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;

use crate::clock::SharedClock;
use crate::codec::Decoder;
use crate::conn::transport::Transport;
use crate::conn::{Conn, ConnId, Connection, Core, Flushed, LoopCx, Slot, TimerKind};
use crate::handler::Handler;
use crate::inbox::{Cmd, Inbox};
use crate::overload::BudgetReporter;
use crate::proxy::ProxyFailure;
use crate::reason::CloseReason;
use crate::server::ServerShared;
use crate::stats::Stats;
use crate::task::{Executor, COSOCKET_BASE};
use crate::timer::TimerId;

pub(crate) const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX / 2;
/// During a graceful stop, how long a just-accepted connection that has sent nothing yet is
/// given before it counts as idle.
const FRESH_GRACE_MS: u64 = 1_000;
/// During a graceful stop, how often idle connections are looked at again (for the drain
/// grace and the fresh-connection grace).
const STOP_RECHECK_MS: u64 = 100;
/// How long accepting pauses after EMFILE/ENFILE.
const ACCEPT_BACKOFF_MS: u64 = 500;

/// What a loop reports when it exits.
#[derive(Debug, Default, Clone)]
pub(crate) struct LoopReport {
    pub(crate) stats: Stats,
    pub(crate) closed_graceful: u64,
    pub(crate) closed_forced: u64,
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
    shared: Arc<ServerShared>,
    clock: SharedClock,
    /// A graceful stop is under way (listeners closed, idle connections being closed).
    stopping: bool,
    stop_requested: Option<u64>,
    report: LoopReport,
    cmds: Vec<Cmd>,
    /// The dirty list being flushed, swapped with `Core`'s so neither is reallocated per flush.
    dirty: Vec<usize>,
    fired: Vec<(TimerId, u64, TimerKind)>,
    /// The overload guard: this loop's share of the memory budget, if there is one.
    budget: Option<BudgetReporter>,
    /// `stats.bytes_in` at the last memory scan: reading this much more triggers the next.
    scan_bytes_in: u64,
    /// Bytes read that trigger a scan before its timer (a sixteenth of the budget).
    scan_trigger: u64,
    /// Accepting is paused by the overload guard (hard level).
    overload_accept_paused: bool,
    /// Scratch for the memory scan: `(held bytes, slot)` of the larger holders.
    holders: Vec<(u64, usize)>,
    /// The loop's async tasks and cosockets ([`crate::task`]).
    exec: Rc<Executor>,
}

/// Connections holding less than this are never paused or reset by the overload guard.
const MIN_HOLDER: u64 = 16 * 1024;

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
    let mut cx = Conn::new(&mut slot.conn, core);
    if guarded(what, || f(handler, &mut cx, state)).is_some() {
        return true;
    }
    core.stats.handler_panics += 1;
    core.mark_close(&mut slot.conn, CloseReason::Panic);
    false
}

impl<H: Handler> EventLoop<H> {
    pub(crate) fn new(
        loop_index: usize,
        handler: H,
        poll: Poll,
        inbox: Arc<Inbox>,
        listeners: Vec<TcpListener>,
        shared: Arc<ServerShared>,
        clock: SharedClock,
    ) -> io::Result<Self> {
        let now = clock.now_ms();
        let opts = &shared.opts;
        let budget = opts.memory_budget.as_ref().map(|b| b.reporter());
        let scan_trigger = opts
            .memory_budget
            .as_ref()
            .map_or(u64::MAX, |b| (b.hard() / 16).max(4096));
        let exec = Executor::new(inbox.clone(), poll.registry().try_clone()?, now);
        let mut lp = EventLoop {
            exec,
            handler,
            slab: Slab::new(),
            core: Core::new(loop_index, now, opts, inbox),
            poll,
            scratch: vec![0; opts.scratch_size.max(1024)],
            listeners,
            accept_paused: false,
            emfile_logged: false,
            next_gen: 0,
            shared,
            clock,
            stopping: false,
            stop_requested: None,
            report: LoopReport::default(),
            cmds: Vec::new(),
            dirty: Vec::new(),
            fired: Vec::new(),
            budget,
            scan_bytes_in: 0,
            scan_trigger,
            overload_accept_paused: false,
            holders: Vec::new(),
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
            self.exec.enter();
            guarded("on_loop_start", || h.on_loop_start(&mut lp));
        }
        if self.budget.is_some() {
            let at = self.core.now + crate::overload::SCAN_MS;
            self.core.timers.insert(at, TimerKind::MemoryScan);
        }
        loop {
            let tasks = self.exec.active();
            let timeout = if self.core.has_read_more()
                || (tasks && self.exec.has_ready())
                || self.exec.has_local_cmds()
            {
                Some(Duration::ZERO)
            } else {
                let mut next = self.core.timers.next_deadline();
                if tasks {
                    // The tasks' timers sit beside the wheel: wait for the earlier.
                    next = match (next, self.exec.reactor.next_deadline()) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                next.map(|d| Duration::from_millis(d.saturating_sub(self.core.now)))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!("loop {}: poll failed: {e}", self.core.loop_index);
                break;
            }
            self.core.now = self.clock.now_ms();
            self.exec.set_now(self.core.now);
            for ev in events.iter() {
                match ev.token() {
                    WAKER => self.drain_inbox(),
                    Token(t) if t >= LISTENER_BASE => self.accept(t - LISTENER_BASE),
                    Token(t) if t >= COSOCKET_BASE => {
                        self.exec.reactor.ready(
                            t,
                            ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                            ev.is_writable() || ev.is_write_closed() || ev.is_error(),
                            ev.is_error() || ev.is_write_closed() || ev.is_read_closed(),
                        );
                        self.run_woken();
                    }
                    Token(idx) => {
                        if ev.is_read_closed() {
                            // The FIN came with (or after) the data: a short read must not end
                            // reading, or the EOF would never be seen (edge-triggered).
                            if let Some(slot) = self.slab.get_mut(idx) {
                                slot.conn.rx_mut().set_hup();
                            }
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.on_readable(idx);
                        }
                        if ev.is_writable() {
                            self.on_writable(idx);
                        }
                        if tasks {
                            self.run_woken();
                        }
                    }
                }
            }
            self.run_read_more();
            self.run_timers();
            if self.exec.active() {
                self.run_tasks();
            }
            if self.exec.has_local_cmds() {
                self.drain_local();
            }
            if let Some(grace_ms) = self.stop_requested.take() {
                self.begin_stop(grace_ms);
            }
            self.flush_dirty();
            self.reap();
            if self.stopping {
                self.close_idle_for_stop();
                self.reap();
                if self.slab.is_empty() {
                    break;
                }
            }
        }
        self.exec.shut_down();
        self.core.inbox.close();
        self.report.stats = self.snapshot();
        self.report
    }

    fn snapshot(&self) -> Stats {
        let mut s = self.core.stats.clone();
        s.proto = crate::stats::local_proto();
        s.open = self.slab.iter().filter(|(_, s)| s.state.is_some()).count() as u64;
        s
    }

    // ----- accepting -----

    fn accept(&mut self, li: usize) {
        if self.accept_paused || self.stopping || self.overload_accept_paused {
            return;
        }
        loop {
            let Some(listener) = self.listeners.get(li) else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    self.emfile_logged = false;
                    let key = self.shared.admit_key(peer);
                    let admitted = self.shared.try_admit(self.core.loop_index, key);
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
    fn adopt(&mut self, stream: TcpStream, peer: SocketAddr, admitted: bool) {
        self.core.stats.accepted += 1;
        if !admitted || self.stopping {
            if admitted {
                self.shared
                    .release(self.core.loop_index, self.shared.admit_key(peer));
            }
            self.core.stats.closed[CloseReason::Limit.index()] += 1;
            tracing::debug!("connection from {peer} refused: connection limit");
            return;
        }
        if self.core.overload == crate::overload::Level::Hard {
            // Handed over by the acceptor thread while this loop is over its budget.
            self.shared
                .release(self.core.loop_index, self.shared.admit_key(peer));
            self.core.stats.closed[CloseReason::Overload.index()] += 1;
            tracing::debug!("connection from {peer} refused: over the memory budget");
            return;
        }
        if let Some(pp) = &self.shared.opts.proxy_protocol {
            if !pp.trusts(peer.ip()) {
                // Anyone could claim any address in a header: only the balancers may.
                self.shared.release(self.core.loop_index, None);
                self.core.stats.proxy_failed[ProxyFailure::Untrusted.index()] += 1;
                self.core.stats.closed[CloseReason::Refused.index()] += 1;
                let why = ProxyFailure::Untrusted.as_str();
                let detail = "not in the trusted networks";
                self.core
                    .log_failure(None, peer, "PROXY source refused", why, &detail);
                return;
            }
        }
        if self.shared.opts.nodelay && !crate::sys::ACCEPT_INHERITS_OPTIONS {
            // Elsewhere the listener's TCP_NODELAY is inherited (one syscall per accept saved).
            let _ = stream.set_nodelay(true);
        }
        let entry = self.slab.vacant_entry();
        let idx = entry.key();
        let mut transport = match wrap(&self.shared, stream) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("tls session for {peer}: {e}");
                self.shared
                    .release(self.core.loop_index, self.shared.admit_key(peer));
                self.core.stats.closed[CloseReason::Error.index()] += 1;
                return;
            }
        };
        // Readable only: writability is asked for after the first short write (rule 5), so
        // connections that never fill their socket buffer never get writable events.
        if let Err(e) = transport.register(self.poll.registry(), Token(idx), Interest::READABLE) {
            tracing::warn!("register {peer}: {e}");
            self.shared
                .release(self.core.loop_index, self.shared.admit_key(peer));
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
        let conn = Connection::new(transport, id, peer, codec, self.core.now);
        let slot = entry.insert(Slot { conn, state: None });
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.shared.tls {
            let at = self.core.now + tls.timeout_ms();
            self.core.timers.insert(at, TimerKind::TlsHandshake(id));
        }
        if let Some(pp) = &self.shared.opts.proxy_protocol {
            // The handler meets the connection once its header is read (`proxy_stage`).
            slot.conn.expect_proxy();
            let at = self.core.now + pp.timeout.as_millis() as u64;
            self.core.timers.insert(at, TimerKind::ProxyHeader(id));
            return;
        }
        open(&mut self.handler, slot, &mut self.core);
    }

    // ----- async tasks -----

    /// Wake the tasks whose timers are due and poll the ready ones; a connection whose task
    /// panicked is closed. (Only while some task is alive.)
    #[cold]
    #[inline(never)]
    fn run_tasks(&mut self) {
        self.exec.reactor.fire(self.core.now);
        if self.exec.has_ready() {
            for id in self.exec.run_ready() {
                self.close_panicked(id);
            }
        }
        self.exec.run_deferred();
        self.exec.settle();
    }

    /// Poll the tasks the event just handled has woken (a connection's message for its task, a
    /// cosocket's readiness), while the event's data is still in the cache, run the commands
    /// they gave and write their output. Fresh tasks wait for [`run_tasks`](Self::run_tasks).
    #[inline]
    fn run_woken(&mut self) {
        if !self.exec.has_woken() {
            return;
        }
        for id in self.exec.run_woken() {
            self.close_panicked(id);
        }
        if self.exec.has_local_cmds() {
            self.drain_local();
            // Write what they sent now, as the callback path writes its replies at the end of
            // the read event: each output buffer goes back to the pool before the next event
            // takes one, instead of a thousand connections each holding one to the turn's end.
            self.flush_dirty();
        }
    }

    /// A task owned by connection `id` panicked: count it and close that connection only.
    #[cold]
    fn close_panicked(&mut self, id: ConnId) {
        self.core.stats.handler_panics += 1;
        if let Some(slot) = live(&mut self.slab, id) {
            self.core.mark_close(&mut slot.conn, CloseReason::Panic);
        }
    }

    // ----- the overload guard -----

    /// Measure what this loop's connections hold, publish it to the budget, and act on the
    /// level: pause (soft) or reset (hard) the largest holders for this loop's share of the
    /// excess, stop accepting (hard), or undo all that (back to normal).
    #[cold]
    #[inline(never)]
    pub(super) fn memory_scan(&mut self) {
        let Some(rep) = self.budget.as_mut() else {
            return;
        };
        self.scan_bytes_in = self.core.stats.bytes_in;
        let mut holders = std::mem::take(&mut self.holders);
        holders.clear();
        let mut total = 0u64;
        for (idx, slot) in self.slab.iter() {
            let conn = &slot.conn;
            let mut held = (conn.rx().buf().capacity() + conn.tx().pending()) as u64;
            if let Some(st) = slot.state.as_ref() {
                held += self.handler.held_bytes(st) as u64;
            }
            total += held;
            if held >= MIN_HOLDER {
                holders.push((held, idx));
            }
        }
        self.core.stats.held_bytes = total;
        let prev = self.core.overload;
        let level = rep.publish(total);
        self.core.overload = level;
        let budget = rep.budget().clone();
        use crate::overload::Level;
        if level == Level::Normal {
            if prev != Level::Normal {
                for (_, slot) in self.slab.iter_mut() {
                    if slot.conn.rx_mut().resume_overload() {
                        self.core.want_read(&mut slot.conn);
                    }
                }
                if self.overload_accept_paused {
                    self.overload_accept_paused = false;
                    for li in 0..self.listeners.len() {
                        self.accept(li);
                    }
                }
            }
            self.holders = holders;
            return;
        }
        // This loop's share of what must go for the sum to fall under the exit mark.
        let global = budget.held().max(1);
        let excess = global.saturating_sub(budget.exit());
        let share = (u128::from(excess) * u128::from(total) / u128::from(global)) as u64;
        holders.sort_unstable_by_key(|h| std::cmp::Reverse(h.0));
        let mut covered = 0u64;
        for &(held, idx) in &holders {
            if covered >= share {
                break;
            }
            covered += held;
            let Some(slot) = self.slab.get_mut(idx) else {
                continue;
            };
            if level == Level::Hard {
                tracing::info!(
                    peer = %slot.conn.peer(),
                    held,
                    "overload: resetting the connection holding the most memory"
                );
                self.core.mark_close(&mut slot.conn, CloseReason::Overload);
            } else if slot.conn.rx_mut().pause_overload() {
                self.core.stats.overload_paused += 1;
            }
        }
        if level == Level::Hard {
            self.overload_accept_paused = true;
        }
        self.holders = holders;
    }

    // ----- commands from other threads -----

    fn drain_inbox(&mut self) {
        let mut cmds = std::mem::take(&mut self.cmds);
        self.core.inbox.drain(&mut cmds);
        self.run_cmds(&mut cmds);
        self.cmds = cmds;
    }

    /// Run the commands given on this thread (after the tasks that gave most of them). Commands
    /// their callbacks give are run too, a few rounds at most; the rest keep the next poll
    /// from blocking.
    fn drain_local(&mut self) {
        let mut cmds = std::mem::take(&mut self.cmds);
        for _ in 0..8 {
            self.exec.take_local_cmds(&mut cmds);
            if cmds.is_empty() {
                break;
            }
            self.run_cmds(&mut cmds);
        }
        self.cmds = cmds;
    }

    fn run_cmds(&mut self, cmds: &mut Vec<Cmd>) {
        for cmd in cmds.drain(..) {
            match cmd {
                Cmd::Send(id, bytes) => match live(&mut self.slab, id) {
                    Some(slot) if slot.conn.accepts_output() => {
                        let conn = &mut slot.conn;
                        conn.tx_mut()
                            .out(&mut self.core.pool)
                            .extend_from_slice(&bytes);
                        self.core.stats.msgs_out += 1;
                        self.core.after_send(conn);
                    }
                    _ => self.core.stats.stale_commands += 1,
                },
                Cmd::Notify(id, token, data) => {
                    let Some(slot) = live(&mut self.slab, id) else {
                        self.core.stats.stale_commands += 1;
                        continue;
                    };
                    if slot.state.is_none() || !slot.conn.accepts_output() {
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
                        .close_after_flush(&mut slot.conn, CloseReason::Local),
                    Some(slot) => self.core.mark_close(&mut slot.conn, CloseReason::Local),
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
                Cmd::WakeTask(key) => self.exec.wake(key),
            }
        }
    }

    // ----- timers -----

    fn run_timers(&mut self) {
        let mut fired = std::mem::take(&mut self.fired);
        self.core.timers.advance(self.core.now, &mut fired);
        for (tid, deadline, kind) in fired.drain(..) {
            match kind {
                TimerKind::Idle(id) => {
                    if let Some(slot) = live(&mut self.slab, id) {
                        idle_check(slot, &mut self.core);
                    }
                }
                TimerKind::Conn { id, .. } => {
                    if let Some(slot) = live(&mut self.slab, id) {
                        conn_timer(&mut self.handler, slot, &mut self.core, tid, deadline, kind);
                    } else if let TimerKind::Conn { periodic, .. } = kind {
                        self.core.forget_periodic(periodic);
                    }
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
                #[cfg(feature = "tls")]
                TimerKind::TlsHandshake(id) => {
                    if let Some(slot) = live(&mut self.slab, id) {
                        handshake_deadline(slot, &mut self.core);
                    }
                }
                #[cfg(not(feature = "tls"))]
                TimerKind::TlsHandshake(_) => {}
                TimerKind::ProxyHeader(id) => {
                    if let Some(slot) = live(&mut self.slab, id) {
                        if slot.conn.awaiting_proxy() && slot.conn.accepts_output() {
                            proxy_failed(
                                &mut slot.conn,
                                &mut self.core,
                                ProxyFailure::Timeout,
                                &"no header in time",
                            );
                        }
                    }
                }
                TimerKind::SendTimeout(id) => {
                    if let Some(slot) = live(&mut self.slab, id) {
                        rw::send_timer(&mut slot.conn, &mut self.core);
                    }
                }
                TimerKind::Linger(id) => {
                    if let Some(slot) = live(&mut self.slab, id) {
                        if let Some(why) = slot.conn.life().lingering() {
                            self.core.mark_close(&mut slot.conn, why);
                        }
                    }
                }
                TimerKind::AcceptResume => {
                    self.accept_paused = false;
                    for li in 0..self.listeners.len() {
                        self.accept(li);
                    }
                }
                TimerKind::MemoryScan => {
                    self.memory_scan();
                    let at = self.core.now + crate::overload::SCAN_MS;
                    self.core.timers.insert(at, TimerKind::MemoryScan);
                }
                TimerKind::StopDeadline => self.force_close_all(),
                // Idle connections are closed once quiet for the drain grace: look again.
                TimerKind::StopRecheck => {
                    let at = self.core.now + STOP_RECHECK_MS;
                    self.core.timers.insert(at, TimerKind::StopRecheck);
                }
            }
        }
        self.fired = fired;
    }
}

/// The transport for a new connection: the socket itself, or a TLS session over it.
#[inline]
#[cfg_attr(not(feature = "tls"), allow(unused_variables))]
fn wrap(shared: &ServerShared, stream: TcpStream) -> io::Result<Transport> {
    #[cfg(feature = "tls")]
    if let Some(tls) = &shared.tls {
        let s = crate::conn::TlsStream::new(stream, tls.config(), tls.replies_to_plain_http())?;
        return Ok(Transport::Tls(Box::new(s)));
    }
    Ok(Transport::Tcp(stream))
}

/// The PROXY header stage of a connection that awaits its header: peek at the socket, and
/// once a whole header is there consume exactly its bytes, take the client's address as the
/// peer, count it against the per-IP limit and run `on_open`. True when the connection is
/// open and what follows the header should be read now (edge-triggered: no new event comes
/// for bytes already waiting).
#[cold]
pub(super) fn proxy_stage<H: Handler>(
    shared: &ServerShared,
    handler: &mut H,
    slot: &mut Slot<H>,
    core: &mut Core,
    scratch: &mut [u8],
) -> bool {
    let Some(pp) = &shared.opts.proxy_protocol else {
        return true;
    };
    let conn = &mut slot.conn;
    if !conn.accepts_output() {
        return false;
    }
    let want = pp
        .max_len
        .clamp(herd_proto::proxy::V1_MAX_LEN, scratch.len());
    let n = loop {
        match conn.transport_mut().peek(&mut scratch[..want]) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) => {
                core.read_failed(conn, &e);
                return false;
            }
        }
    };
    core.stats.reads += 1;
    if n == 0 {
        proxy_failed(conn, core, ProxyFailure::Eof, &"closed before a header");
        return false;
    }
    let (header, used) = match herd_proto::proxy::decode(&scratch[..n], pp.max_len) {
        Ok(Some(done)) => done,
        Ok(None) => return false,
        Err(e) => {
            proxy_failed(conn, core, ProxyFailure::of(&e), &e);
            return false;
        }
    };
    if let Err(e) = conn.transport_mut().consume(used, scratch) {
        core.read_failed(conn, &e);
        return false;
    }
    core.stats.bytes_in += used as u64;
    core.stats.proxy_headers += 1;
    let real = header.source();
    let admitted = match real {
        Some(src) if shared.opts.max_connections_per_ip.is_some() => {
            if !shared.try_admit_ip(src.ip()) {
                tracing::debug!(
                    "connection from {src} (via {}) refused: per-IP limit",
                    conn.peer()
                );
                conn.set_proxy_header(header, false);
                core.mark_close(conn, CloseReason::Limit);
                return false;
            }
            true
        }
        _ => false,
    };
    conn.set_proxy_header(header, admitted);
    open(handler, slot, core);
    slot.state.is_some() && slot.conn.life().is_open()
}

/// A PROXY header was refused (or never came): count it, log it (once per peer and cause at
/// info level), close.
#[cold]
fn proxy_failed<C>(
    conn: &mut Connection<C>,
    core: &mut Core,
    why: ProxyFailure,
    detail: &dyn std::fmt::Display,
) {
    core.stats.proxy_failed[why.index()] += 1;
    core.log_failure(
        Some(conn.id()),
        conn.peer(),
        "PROXY header refused",
        why.as_str(),
        detail,
    );
    let reason = match why {
        ProxyFailure::Timeout => CloseReason::Timeout,
        ProxyFailure::Eof => CloseReason::PeerClosed,
        _ => CloseReason::Decode,
    };
    core.mark_close(conn, reason);
}

/// Run `on_open` for a connection just put into `slot`, and arm its idle timer.
fn open<H: Handler>(handler: &mut H, slot: &mut Slot<H>, core: &mut Core) {
    let mut cx = Conn::new(&mut slot.conn, core);
    match guarded("on_open", || handler.on_open(&mut cx)) {
        Some(Some(state)) => {
            slot.state = Some(state);
            if let Some(idle) = core.idle_ms {
                let at = core.now + idle;
                let timer = core.timers.insert(at, TimerKind::Idle(slot.conn.id()));
                slot.conn.set_idle_timer(Some(timer));
            }
        }
        Some(None) => core.close_after_flush(&mut slot.conn, CloseReason::Refused),
        None => {
            core.stats.handler_panics += 1;
            core.mark_close(&mut slot.conn, CloseReason::Panic);
        }
    }
}

/// A connection timer fired (`kind` is a `TimerKind::Conn` for this slot's connection): renew
/// it if periodic, then run `on_timer`.
fn conn_timer<H: Handler>(
    handler: &mut H,
    slot: &mut Slot<H>,
    core: &mut Core,
    tid: TimerId,
    deadline: u64,
    kind: TimerKind,
) {
    let TimerKind::Conn {
        token,
        every,
        periodic,
        ..
    } = kind
    else {
        return;
    };
    if slot.state.is_none() || !slot.conn.accepts_output() {
        core.forget_periodic(periodic);
        return;
    }
    if !core.renew_periodic(tid, deadline, periodic, every, kind) {
        return;
    }
    conn_callback(handler, slot, core, "on_timer", |h, cx, st| {
        h.on_timer(cx, st, token)
    });
}

/// The handshake deadline of this slot's TLS connection passed: close it if the handshake
/// has not finished.
#[cfg(feature = "tls")]
#[cold]
fn handshake_deadline<H: Handler>(slot: &mut Slot<H>, core: &mut Core) {
    let conn = &mut slot.conn;
    if !conn.accepts_output() {
        return;
    }
    let Some(tls) = conn.transport_mut().tls_mut() else {
        return;
    };
    if !tls.is_handshaking() {
        return;
    }
    tls.set_failure(crate::tls::TlsFailure::Timeout);
    core.tls_failed(
        conn,
        crate::tls::TlsFailure::Timeout,
        &"handshake timed out",
    );
}

/// The idle timer of this slot's connection fired: close it if nothing was read for the idle
/// timeout, else re-arm the timer for when that would be.
fn idle_check<H: Handler>(slot: &mut Slot<H>, core: &mut Core) {
    let Some(idle) = core.idle_ms else {
        return;
    };
    let conn = &mut slot.conn;
    if !conn.accepts_output() {
        return;
    }
    let due = conn.last_active() + idle;
    if core.now >= due {
        tracing::debug!(
            "conn {} ({}): idle for {idle} ms; closing",
            conn.id(),
            conn.peer()
        );
        conn.set_idle_timer(None);
        core.mark_close(conn, CloseReason::Idle);
    } else {
        let timer = core.timers.insert(due, TimerKind::Idle(conn.id()));
        conn.set_idle_timer(Some(timer));
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
        if !slot.conn.life().is_open() || slot.state.is_none() {
            break;
        }
        match slot.conn.codec_mut().decode(&mut data[pos..]) {
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
                // Debug, not warn: a peer's garbage is the peer's problem, and one WARN line
                // per connection is a log flood away (counted as the `decode` close reason).
                tracing::debug!(
                    "conn {} ({}): bad input: {e}",
                    slot.conn.id(),
                    slot.conn.peer()
                );
                conn_callback(handler, slot, core, "on_decode_error", |h, cx, st| {
                    h.on_decode_error(cx, st, &e)
                });
                core.close_after_flush(&mut slot.conn, CloseReason::Decode);
                break;
            }
        }
    }
    pos
}

/// The slot for `id` if it still holds that very connection (same generation).
fn live<H: Handler>(slab: &mut Slab<Slot<H>>, id: ConnId) -> Option<&mut Slot<H>> {
    slab.get_mut(id.slot()).filter(|s| s.conn.id() == id)
}
