//! Closing: reaping connections marked closed at the end of an iteration (delayed reclaim),
//! and the graceful stop (on_stop, idle sweep, forced close at the deadline).

use super::*;

/// Run `on_close` for a connection marked closing and free its buffers and timers; the
/// caller removes the slot. Returns the reason, or `None` if the slot was not closing.
pub(super) fn finish<H: Handler>(
    handler: &mut H,
    slot: &mut Slot<H>,
    core: &mut Core,
) -> Option<CloseReason> {
    let reason = slot.conn.life().closing()?;
    if let Some(state) = slot.state.take() {
        let mut cx = Conn::new(&mut slot.conn, core);
        if guarded("on_close", || handler.on_close(&mut cx, state, reason)).is_none() {
            core.stats.handler_panics += 1;
        }
    }
    core.stats.closed[reason.index()] += 1;
    if let Some(t) = slot.conn.set_idle_timer(None) {
        core.timers.cancel(t);
    }
    slot.conn.release(&mut core.pool);
    Some(reason)
}

impl<H: Handler> EventLoop<H> {
    // ----- closing -----

    /// Reap connections marked closing: `on_close`, counters, release the slot.
    pub(super) fn reap(&mut self) {
        while let Some(idx) = self.core.next_to_reap() {
            let Some(slot) = self.slab.get_mut(idx) else {
                continue;
            };
            if finish(&mut self.handler, slot, &mut self.core).is_none() {
                continue;
            }
            let slot = self.slab.remove(idx);
            self.shared
                .release(self.core.loop_index, slot.conn.admitted_ip());
            if self.exec.has_owned() {
                // Its tasks go with it.
                self.exec.cancel_owned(slot.conn.id());
            }
            // Dropping the transport closes the fd, which also removes it from epoll.
        }
    }

    pub(super) fn begin_stop(&mut self, grace_ms: u64) {
        if self.stopping {
            return;
        }
        for mut l in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.stopping = true;
        self.core
            .timers
            .insert(self.core.now + grace_ms, TimerKind::StopDeadline);
        self.core
            .timers
            .insert(self.core.now + STOP_RECHECK_MS, TimerKind::StopRecheck);
        let open: Vec<usize> = self
            .slab
            .iter()
            .filter(|(_, s)| s.state.is_some() && s.conn.accepts_output())
            .map(|(i, _)| i)
            .collect();
        for idx in open {
            conn_callback(
                &mut self.handler,
                &mut self.slab[idx],
                &mut self.core,
                "on_stop",
                |h, cx, st| h.on_stop(cx, st),
            );
        }
        // What on_stop sent goes out now, so those connections can count as idle.
        self.flush_dirty();
        self.close_idle_for_stop();
    }

    /// During a stop: close every connection with nothing in flight that has been quiet for
    /// the drain grace.
    pub(super) fn close_idle_for_stop(&mut self) {
        let now = self.core.now;
        let grace = crate::clock::millis(self.shared.opts.drain_grace);
        for (_, slot) in self.slab.iter_mut() {
            let conn = &mut slot.conn;
            if !conn.life().is_open() {
                continue;
            }
            // A connection accepted moments ago that has sent nothing yet is most likely
            // about to send its first request: give it FRESH_GRACE_MS before calling it idle.
            if !conn.rx().got_data() && now < conn.opened_at() + FRESH_GRACE_MS {
                continue;
            }
            if now < conn.last_active().saturating_add(grace) {
                continue;
            }
            let busy = slot.state.as_ref().is_some_and(|s| self.handler.is_busy(s));
            if conn.rx().buf().is_empty() && !conn.has_output() && !busy {
                self.report.closed_graceful += 1;
                self.core.mark_close(conn, CloseReason::Stop);
            }
        }
    }

    pub(super) fn force_close_all(&mut self) {
        for (_, slot) in self.slab.iter_mut() {
            if slot.conn.accepts_output() {
                self.report.closed_forced += 1;
                self.core.mark_close(&mut slot.conn, CloseReason::Stop);
            }
        }
    }
}
