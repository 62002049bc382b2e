//! The read and write paths of a loop: readiness in, decoded items to the handler, queued
//! output out with as few system calls as possible (one read per readiness unless the buffer
//! filled, one write per read event, writable interest only after a short write).

use super::*;

impl<H: Handler> EventLoop<H> {
    // ----- reading -----

    /// Read and dispatch what connection `idx` has, then write its replies in one go. While
    /// it runs, replies to this connection are not put on the dirty list: the flush at the end
    /// covers them.
    pub(super) fn on_readable(&mut self, idx: usize) {
        self.core.reading = idx;
        self.read_and_dispatch(idx);
        self.core.reading = usize::MAX;
        self.flush(idx);
    }

    fn read_and_dispatch(&mut self, idx: usize) {
        let mut budget = self.core.read_budget;
        loop {
            let Some(slot) = self.slab.get_mut(idx) else {
                return;
            };
            let io = &mut slot.io;
            if io.closing.is_some() || io.eof {
                break;
            }
            if io.paused || io.user_paused {
                break;
            }
            let from_scratch = io.rbuf.is_empty();
            let (res, cap) = if from_scratch {
                let cap = self.scratch.len();
                (crate::sys::recv(&io.stream, &mut self.scratch), cap)
            } else {
                let room = io.rbuf.spare(READ_CHUNK, &mut self.core.pool);
                let cap = room.len();
                (crate::sys::recv(&io.stream, room), cap)
            };
            self.core.stats.reads += 1;
            match res {
                Ok(0) => {
                    io.eof = true;
                    self.core.close_after_flush(io, CloseReason::PeerClosed);
                    break;
                }
                Ok(n) => {
                    self.core.stats.bytes_in += n as u64;
                    io.last_active = self.core.now;
                    io.got_data = true;
                    if from_scratch {
                        self.process_scratch(idx, n);
                    } else {
                        slot.io.rbuf.commit(n);
                        self.process_rbuf(idx);
                    }
                    if n < cap && !self.slab.get(idx).is_some_and(|s| s.io.peer_hup) {
                        break;
                    }
                    budget -= 1;
                    if budget == 0 {
                        if let Some(slot) = self.slab.get_mut(idx) {
                            self.core.want_read(&mut slot.io);
                        }
                        break;
                    }
                    // Output may have grown past the high watermark: write it now so the
                    // pause check sees the real backlog before reading more.
                    if self.slab[idx].io.pending() > self.core.write_high_water {
                        self.flush(idx);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.core.io_failed(io, "read", &e);
                    break;
                }
            }
        }
    }

    /// Decode and dispatch the `n` bytes just read into the scratch buffer; keep any partial
    /// tail in the connection's own buffer.
    pub(super) fn process_scratch(&mut self, idx: usize, n: usize) {
        let slot = &mut self.slab[idx];
        let used = decode_dispatch(
            &mut self.handler,
            slot,
            &mut self.core,
            &mut self.scratch[..n],
        );
        if used < n && slot.io.closing.is_none() && slot.io.close_after.is_none() {
            slot.io
                .rbuf
                .extend_from_slice(&self.scratch[used..n], &mut self.core.pool);
        }
    }

    /// Decode and dispatch what the connection's own buffer holds.
    pub(super) fn process_rbuf(&mut self, idx: usize) {
        let slot = &mut self.slab[idx];
        let mut rb = std::mem::take(&mut slot.io.rbuf);
        let used = decode_dispatch(&mut self.handler, slot, &mut self.core, rb.bytes_mut());
        rb.consume(used);
        if slot.io.closing.is_some() || slot.io.close_after.is_some() {
            rb.consume(rb.len());
        }
        rb.release_if_empty(&mut self.core.pool);
        slot.io.rbuf = rb;
    }

    pub(super) fn run_read_more(&mut self) {
        if self.core.read_more.is_empty() {
            return;
        }
        let list = std::mem::take(&mut self.core.read_more);
        for idx in list {
            let queued = match self.slab.get_mut(idx) {
                Some(slot) => std::mem::replace(&mut slot.io.read_queued, false),
                None => false,
            };
            if queued {
                self.on_readable(idx);
            }
        }
    }

    // ----- writing -----

    pub(super) fn on_writable(&mut self, idx: usize) {
        if let Some(slot) = self.slab.get(idx) {
            if slot.io.has_output() || slot.io.paused {
                self.flush(idx);
            }
        }
    }

    pub(super) fn flush_dirty(&mut self) {
        while !self.core.dirty.is_empty() {
            let list = std::mem::take(&mut self.core.dirty);
            for idx in list {
                if self.slab.get(idx).is_some_and(|s| s.io.dirty) {
                    self.flush(idx);
                }
            }
        }
    }

    /// Write what the connection has queued (one `write`; a short write waits for the next
    /// writable edge), then apply close-after-flush, half-close and the watermarks.
    pub(super) fn flush(&mut self, idx: usize) {
        let Some(slot) = self.slab.get_mut(idx) else {
            return;
        };
        let io = &mut slot.io;
        io.dirty = false;
        if io.closing.is_some() {
            return;
        }
        loop {
            if io.wbuf.is_empty() {
                match io.queue.front_mut() {
                    None => break,
                    Some(Pending::Bytes(v)) => {
                        let v = std::mem::take(v);
                        io.queue.pop_front();
                        io.wbuf.replace_vec(v, &mut self.core.pool);
                        continue;
                    }
                    Some(Pending::File { file, offset, end }) => {
                        let want = (*end - *offset).min(1 << 30) as usize;
                        self.core.stats.writes += 1;
                        match crate::sys::sendfile(&io.stream, file, offset, want) {
                            Ok(n) if n > 0 => {
                                self.core.stats.bytes_out += n as u64;
                                if *offset >= *end {
                                    io.queue.pop_front();
                                }
                                // A short count means a full socket or a file that shrank;
                                // the next call tells which (EAGAIN or 0). Only large files
                                // get here, so the extra call is cheap.
                                continue;
                            }
                            Ok(_) => {
                                // The file is shorter than promised: the response cannot be
                                // completed, so the connection cannot be kept.
                                tracing::warn!("conn {}: file ended early during sendfile", io.id);
                                io.discard_output();
                                self.core.mark_close(io, CloseReason::Error);
                                return;
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                            Err(e) => {
                                self.core.io_failed(io, "sendfile", &e);
                                return;
                            }
                        }
                    }
                }
            }
            let len = io.wbuf.len();
            match crate::sys::send(&io.stream, io.wbuf.bytes()) {
                Ok(n) => {
                    self.core.stats.writes += 1;
                    self.core.stats.bytes_out += n as u64;
                    io.wbuf.advance(n);
                    if n < len {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.core.stats.writes += 1;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.core.stats.writes += 1;
                    self.core.io_failed(io, "write", &e);
                    return;
                }
            }
        }
        if io.has_output() && !io.write_interest {
            // First short write on this connection: from now on it also wants writable edges
            // (kept afterwards, so a connection that keeps filling its buffer costs no
            // epoll_ctl per message). MOD reports at once if it is already writable.
            let token = Token(io.slot());
            match self.poll.registry().reregister(
                &mut io.stream,
                token,
                Interest::READABLE | Interest::WRITABLE,
            ) {
                Ok(()) => io.write_interest = true,
                Err(e) => {
                    tracing::warn!("conn {}: epoll_ctl: {e}", io.id);
                    io.discard_output();
                    self.core.mark_close(io, CloseReason::Error);
                    return;
                }
            }
        }
        if !io.has_output() {
            io.wbuf.release_if_empty(&mut self.core.pool);
            if let Some(reason) = io.close_after.take() {
                self.core.mark_close(io, reason);
                return;
            }
            if io.shutdown_after_flush {
                io.shutdown_after_flush = false;
                let _ = io.stream.shutdown(Shutdown::Write);
            }
        }
        let pending = io.pending();
        if !io.paused && pending <= self.core.write_high_water {
            return; // the common case: no backpressure edge to handle
        }
        self.backpressure_edges(idx, pending);
    }

    /// Pause reading past the high watermark, resume at the low one, and tell the handler
    /// about each edge once.
    #[cold]
    #[inline(never)]
    fn backpressure_edges(&mut self, idx: usize, pending: usize) {
        let Some(slot) = self.slab.get_mut(idx) else {
            return;
        };
        let io = &mut slot.io;
        let low = self.shared.opts.write_low_water;
        if !io.paused && pending > self.core.write_high_water {
            io.paused = true;
            io.pause_announced = false;
            self.core.stats.backpressure_pauses += 1;
        }
        // Announce a pause once, and its end once the output has drained to the low mark.
        let mut notes: [Option<bool>; 2] = [None, None];
        if io.paused && !io.pause_announced {
            io.pause_announced = true;
            notes[0] = Some(true);
        }
        if io.paused && pending <= low {
            io.paused = false;
            self.core.want_read(io);
            notes[1] = Some(false);
        }
        for paused in notes.into_iter().flatten() {
            let ok = conn_callback(
                &mut self.handler,
                slot,
                &mut self.core,
                "on_backpressure",
                |h, cx, st| h.on_backpressure(cx, st, paused),
            );
            if !ok {
                break;
            }
        }
    }
}
