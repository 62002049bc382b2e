//! Closing: reaping connections marked closed at the end of an iteration (delayed reclaim),
//! and the graceful stop (on_stop, idle sweep, forced close at the deadline).

use super::*;

impl<H: Handler> EventLoop<H> {
    // ----- closing -----

    /// Reap connections marked closing: `on_close`, counters, release the slot.
    pub(super) fn reap(&mut self) {
        while let Some(idx) = self.core.to_close.pop() {
            let Some(slot) = self.slab.get_mut(idx) else {
                continue;
            };
            let Some(reason) = slot.io.closing else {
                continue;
            };
            if let Some(state) = slot.state.take() {
                let h = &mut self.handler;
                let mut cx = Conn {
                    io: &mut slot.io,
                    core: &mut self.core,
                };
                if guarded("on_close", || h.on_close(&mut cx, state, reason)).is_none() {
                    self.core.stats.handler_panics += 1;
                }
            }
            self.core.stats.closed[reason.index()] += 1;
            let mut slot = self.slab.remove(idx);
            if let Some(t) = slot.io.idle_timer.take() {
                self.core.timers.cancel(t);
            }
            slot.io.discard_output();
            slot.io.wbuf.release_if_empty(&mut self.core.pool);
            let n = slot.io.rbuf.len();
            slot.io.rbuf.consume(n);
            slot.io.rbuf.release_if_empty(&mut self.core.pool);
            self.shared.release(self.core.loop_index, slot.io.peer.ip());
            // Dropping the stream closes the fd, which also removes it from epoll.
        }
    }

    pub(super) fn begin_stop(&mut self, grace_ms: u64) {
        if self.stopping.is_some() {
            return;
        }
        for mut l in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.stopping = Some(Stopping { forced: false });
        self.core
            .timers
            .insert(self.core.now + grace_ms, TimerKind::StopDeadline);
        self.core
            .timers
            .insert(self.core.now + FRESH_GRACE_MS, TimerKind::StopRecheck);
        let open: Vec<usize> = self
            .slab
            .iter()
            .filter(|(_, s)| s.state.is_some() && s.io.closing.is_none())
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

    /// During a stop: close every connection with nothing in flight.
    pub(super) fn close_idle_for_stop(&mut self) {
        let now = self.core.now;
        for (_, slot) in self.slab.iter_mut() {
            let io = &mut slot.io;
            if io.closing.is_some() || io.close_after.is_some() {
                continue;
            }
            // A connection accepted moments ago that has sent nothing yet is most likely
            // about to send its first request: give it FRESH_GRACE_MS before calling it idle.
            if !io.got_data && now < io.opened_at + FRESH_GRACE_MS {
                continue;
            }
            let busy = slot.state.as_ref().is_some_and(|s| self.handler.is_busy(s));
            if io.rbuf.is_empty() && !io.has_output() && !busy {
                self.report.closed_graceful += 1;
                self.core.mark_close(io, CloseReason::Stop);
            }
        }
    }

    pub(super) fn force_close_all(&mut self) {
        if let Some(st) = self.stopping.as_mut() {
            st.forced = true;
        }
        for (_, slot) in self.slab.iter_mut() {
            if slot.io.closing.is_none() {
                self.report.closed_forced += 1;
                slot.io.discard_output();
                self.core.mark_close(&mut slot.io, CloseReason::Stop);
            }
        }
    }
}
