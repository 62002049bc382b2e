//! The read and write paths of one connection: readiness in, decoded items to the handler,
//! queued output out with as few system calls as possible (one read per readiness unless the
//! buffer filled, one write per read event, writable interest only after a short write).
//!
//! These are free functions over (handler, slot, core), not loop methods, so the in-memory
//! test driver (`pair`) runs the very code the loop runs, without sockets.

use super::*;

/// Read and dispatch what the connection has, then write its replies in one go. While it
/// runs, replies to this connection are not put on the dirty list: the flush at the end
/// covers them.
pub(super) fn on_readable<H: Handler>(
    handler: &mut H,
    slot: &mut Slot<H>,
    core: &mut Core,
    scratch: &mut [u8],
    registry: &Registry,
) {
    core.reading = slot.conn.slot();
    read_and_dispatch(handler, slot, core, scratch, registry);
    core.reading = usize::MAX;
    flush(handler, slot, core, registry);
}

fn read_and_dispatch<H: Handler>(
    handler: &mut H,
    slot: &mut Slot<H>,
    core: &mut Core,
    scratch: &mut [u8],
    registry: &Registry,
) {
    if let Some(reason) = slot.conn.life().lingering() {
        return linger_read(&mut slot.conn, core, scratch, reason);
    }
    let mut budget = core.read_budget;
    loop {
        let conn = &mut slot.conn;
        if !conn.accepts_output() || !conn.rx().can_read() {
            break;
        }
        let read = conn.recv(scratch, &mut core.pool, &mut core.stats);
        core.stats.reads += 1;
        match read.result {
            Ok(0) => {
                conn.rx_mut().set_eof();
                peer_closed(handler, slot, core);
                break;
            }
            Ok(n) => {
                core.stats.bytes_in += n as u64;
                conn.note_read(core.now);
                if read.into_scratch {
                    process_scratch(handler, slot, core, &mut scratch[..n]);
                } else {
                    process_rbuf(handler, slot, core);
                }
                if n < read.room && !slot.conn.rx().hup() {
                    break;
                }
                budget -= 1;
                if budget == 0 {
                    core.want_read(&mut slot.conn);
                    break;
                }
                // Output may have grown past the high watermark: write it now so the
                // pause check sees the real backlog before reading more.
                if slot.conn.tx().pending() > core.water.high {
                    flush(handler, slot, core, registry);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                core.read_failed(conn, &e);
                break;
            }
        }
    }
}

/// The peer's end of stream: close once the output is written, unless the handler keeps the
/// connection half-open.
#[cold]
fn peer_closed<H: Handler>(handler: &mut H, slot: &mut Slot<H>, core: &mut Core) {
    let mut keep = false;
    let ran = super::conn_callback(handler, slot, core, "on_peer_closed", |h, cx, st| {
        keep = h.on_peer_closed(cx, st);
    });
    if !(ran && keep) {
        core.close_after_flush(&mut slot.conn, CloseReason::PeerClosed);
    }
}

/// A lingering connection is readable: read and drop what the peer sent (bounded by the read
/// budget per event); its end of stream, or any error (a reset), ends the linger.
#[cold]
fn linger_read<C>(conn: &mut Connection<C>, core: &mut Core, scratch: &mut [u8], why: CloseReason) {
    for _ in 0..core.read_budget {
        match conn.transport_mut().recv(scratch, &mut core.stats) {
            Ok(0) => break,
            Ok(n) => {
                core.stats.bytes_in += n as u64;
                core.stats.reads += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    core.mark_close(conn, why);
}

/// Decode and dispatch the bytes just read into the scratch buffer; keep any partial tail in
/// the connection's own buffer.
fn process_scratch<H: Handler>(
    handler: &mut H,
    slot: &mut Slot<H>,
    core: &mut Core,
    data: &mut [u8],
) {
    let used = decode_dispatch(handler, slot, core, data);
    if used < data.len() && slot.conn.life().is_open() {
        slot.conn
            .rx_mut()
            .buf_mut()
            .extend_from_slice(&data[used..], &mut core.pool);
    }
}

/// Decode and dispatch what the connection's own buffer holds.
fn process_rbuf<H: Handler>(handler: &mut H, slot: &mut Slot<H>, core: &mut Core) {
    let mut rb = slot.conn.rx_mut().take_buf();
    let used = decode_dispatch(handler, slot, core, rb.bytes_mut());
    rb.consume(used);
    if !slot.conn.life().is_open() {
        rb.consume(rb.len());
    }
    rb.release_if_empty(&mut core.pool);
    slot.conn.rx_mut().put_buf(rb);
}

/// Write what the connection has queued (one `send`; a short write waits for the next
/// writable edge), then apply close-after-flush, half-close and the watermarks.
pub(super) fn flush<H: Handler>(
    handler: &mut H,
    slot: &mut Slot<H>,
    core: &mut Core,
    registry: &Registry,
) {
    let conn = &mut slot.conn;
    Core::clear_dirty(conn);
    if !conn.accepts_output() {
        return;
    }
    let (tx, transport) = conn.tx_and_transport();
    let sent_before = core.stats.bytes_out;
    let flushed = tx.flush(transport, &mut core.pool, &mut core.stats);
    if let Some(limit) = core.send_timeout_ms {
        let took = core.stats.bytes_out - sent_before;
        note_send_wait(
            conn,
            core,
            limit,
            matches!(flushed, Flushed::Blocked { .. }),
            took,
        );
    }
    match flushed {
        Flushed::Empty => {
            if let Some(reason) = conn.life().draining() {
                // Linger unless the peer is gone already (its FIN read) or lingering is off.
                if core.linger_ms > 0 && !conn.rx().at_eof() && conn.linger() {
                    let at = core.now + core.linger_ms;
                    core.timers.insert(at, TimerKind::Linger(conn.id()));
                } else {
                    core.mark_close(conn, reason);
                }
                return;
            }
            let (tx, transport) = conn.tx_and_transport();
            tx.finish(transport);
        }
        Flushed::Blocked { register: false } => {}
        Flushed::Blocked { register: true } => {
            // First short write on this connection: from now on it also wants writable
            // edges (kept afterwards, so a connection that keeps filling its buffer costs no
            // epoll_ctl per message). MOD reports at once if it is already writable.
            let token = Token(conn.slot());
            let interest = Interest::READABLE | Interest::WRITABLE;
            if let Err(e) = conn.transport_mut().reregister(registry, token, interest) {
                tracing::warn!("conn {}: epoll_ctl: {e}", conn.id());
                core.mark_close(conn, CloseReason::Error);
                return;
            }
        }
        Flushed::FileShort => {
            // The file is shorter than promised: the response cannot be completed, so the
            // connection cannot be kept.
            tracing::warn!("conn {}: file ended early during sendfile", conn.id());
            core.mark_close(conn, CloseReason::Error);
            return;
        }
        Flushed::Failed(op, e) => {
            core.io_failed(conn, op.as_str(), &e);
            return;
        }
    }
    let pending = conn.tx().pending();
    if !conn.rx().output_paused() && pending <= core.water.high {
        return; // the common case: no backpressure edge to handle
    }
    backpressure_edges(handler, slot, core, pending);
}

/// The send timeout's bookkeeping after a flush: output left waiting starts (or, when the
/// peer took bytes, restarts) the wait, and a timer is armed if none is.
#[inline]
fn note_send_wait<C>(conn: &mut Connection<C>, core: &mut Core, limit: u64, left: bool, took: u64) {
    let now = core.now;
    let id = conn.id();
    let w = conn.send_wait_mut();
    if !left {
        w.waiting = false;
        return;
    }
    if !w.waiting {
        w.since = now;
        w.start = now;
        w.taken = 0;
    } else if took > 0 {
        w.since = now;
        w.taken += took;
    }
    w.waiting = true;
    if !w.armed {
        w.armed = true;
        core.timers.insert(now + limit, TimerKind::SendTimeout(id));
    }
}

/// The send timer of `conn` fired: close it if its peer took nothing for the whole limit,
/// else look again when the limit would pass.
#[cold]
pub(super) fn send_timer<C>(conn: &mut Connection<C>, core: &mut Core) {
    let Some(limit) = core.send_timeout_ms else {
        return;
    };
    let now = core.now;
    let id = conn.id();
    let w = conn.send_wait_mut();
    w.armed = false;
    if !w.waiting {
        return;
    }
    let gap_due = w.since + limit;
    // With a minimum rate: when the average since the wait began falls below it, but not
    // before one whole `limit` has passed.
    let rate_due = core.send_min_rate.map(|min| {
        let allowed = w.taken.saturating_mul(1000) / u64::from(min.max(1));
        w.start.saturating_add(limit.max(allowed + 1))
    });
    let due = rate_due.map_or(gap_due, |r| r.min(gap_due));
    if now < due {
        w.armed = true;
        core.timers.insert(due, TimerKind::SendTimeout(id));
        return;
    }
    let (taken, waited) = (w.taken, now.saturating_sub(w.start));
    if conn.accepts_output() && conn.has_output() {
        if now >= gap_due {
            tracing::info!(
                "conn {} ({}): the peer took no output for {limit} ms; resetting it",
                conn.id(),
                conn.peer(),
            );
        } else {
            tracing::info!(
                "conn {} ({}): the peer took {taken} bytes in {waited} ms, under the \
                 minimum send rate; resetting it",
                conn.id(),
                conn.peer(),
            );
        }
        // What is queued will never be taken: drop it with a reset, not an orphaned socket.
        conn.transport_mut().abort_on_close();
        core.mark_close(conn, CloseReason::SendTimeout);
    }
}

/// A writable edge: write what waits, or re-check a paused peer's watermarks.
pub(super) fn on_writable<H: Handler>(
    handler: &mut H,
    slot: &mut Slot<H>,
    core: &mut Core,
    registry: &Registry,
) {
    if slot.conn.has_output() || slot.conn.rx().output_paused() {
        flush(handler, slot, core, registry);
    }
}

/// Pause reading past the high watermark, resume at the low one, and tell the handler about
/// each edge once.
#[cold]
#[inline(never)]
fn backpressure_edges<H: Handler>(
    handler: &mut H,
    slot: &mut Slot<H>,
    core: &mut Core,
    pending: usize,
) {
    core.pause_if_over_high(&mut slot.conn, pending);
    let rx = slot.conn.rx_mut();
    // Announce a pause once, and its end once the output has drained to the low mark.
    let mut notes: [Option<bool>; 2] = [None, None];
    if rx.announce_pause() {
        notes[0] = Some(true);
    }
    if pending <= core.water.low && rx.resume_output() {
        core.want_read(&mut slot.conn);
        notes[1] = Some(false);
    }
    for paused in notes.into_iter().flatten() {
        let ok = conn_callback(handler, slot, core, "on_backpressure", |h, cx, st| {
            h.on_backpressure(cx, st, paused)
        });
        if !ok {
            break;
        }
    }
}

impl<H: Handler> EventLoop<H> {
    /// Readiness for connection `idx`.
    pub(super) fn on_readable(&mut self, idx: usize) {
        if let Some(slot) = self.slab.get_mut(idx) {
            if slot.conn.awaiting_proxy()
                && !proxy_stage(
                    &self.shared,
                    &mut self.handler,
                    slot,
                    &mut self.core,
                    &mut self.scratch,
                )
            {
                return;
            }
            on_readable(
                &mut self.handler,
                slot,
                &mut self.core,
                &mut self.scratch,
                self.poll.registry(),
            );
            // With a memory budget: having read a sixteenth of it since the last look, look
            // again now rather than at the next scan tick (one compare per read otherwise).
            if self.core.stats.bytes_in.wrapping_sub(self.scan_bytes_in) > self.scan_trigger {
                self.memory_scan();
            }
        }
    }

    pub(super) fn run_read_more(&mut self) {
        if !self.core.has_read_more() {
            return;
        }
        for idx in self.core.take_read_more() {
            let queued = self
                .slab
                .get_mut(idx)
                .is_some_and(|slot| Core::unqueue_read(&mut slot.conn));
            if queued {
                self.on_readable(idx);
            }
        }
    }

    pub(super) fn on_writable(&mut self, idx: usize) {
        if let Some(slot) = self.slab.get_mut(idx) {
            on_writable(
                &mut self.handler,
                slot,
                &mut self.core,
                self.poll.registry(),
            );
        }
    }

    pub(super) fn flush_dirty(&mut self) {
        let mut list = std::mem::take(&mut self.dirty);
        loop {
            self.core.swap_dirty(&mut list);
            if list.is_empty() {
                break;
            }
            for idx in list.drain(..) {
                if let Some(slot) = self.slab.get_mut(idx) {
                    if Core::is_dirty(&slot.conn) {
                        flush(
                            &mut self.handler,
                            slot,
                            &mut self.core,
                            self.poll.registry(),
                        );
                    }
                }
            }
        }
        self.dirty = list;
    }
}
