//! An in-memory driver for one connection (unit tests only), in the spirit of quinn's test
//! `Pair`: a handler and one connection over the memory transport, with the loop's own
//! read, dispatch, flush, timer and reap code and a clock the test moves.
//!
//! It runs the same free functions the event loop runs (`rw::on_readable`, `rw::flush`,
//! `open`, `conn_timer`, `idle_check`, `closing::finish`); only the poller and the slab of
//! many connections are left out. A protocol's connection state (HTTP pipelining, timeouts,
//! body phases) is tested here byte by byte, without sockets or sleeps.

use mio::Waker;

use super::*;
use super::{closing, rw};
use crate::conn::transport::memory::Memory;
use crate::Options;

/// One connection driven in memory.
pub(crate) struct Pair<H: Handler> {
    handler: H,
    slab: Slab<Slot<H>>,
    idx: usize,
    core: Core,
    scratch: Vec<u8>,
    poll: Poll,
    closed: Option<CloseReason>,
}

impl<H: Handler> Pair<H> {
    /// Start the loop (`on_loop_start`) and open one connection (`on_open`) at time 0.
    pub(crate) fn new(mut handler: H, opts: &Options) -> Pair<H> {
        let poll = Poll::new().expect("poll");
        let waker = Waker::new(poll.registry(), WAKER).expect("waker");
        let mut core = Core::new(0, 0, opts, Arc::new(Inbox::new(waker)));
        let mut slab = Slab::new();
        {
            let mut lp = LoopCx {
                slab: &mut slab,
                core: &mut core,
            };
            handler.on_loop_start(&mut lp);
        }
        let entry = slab.vacant_entry();
        let idx = entry.key();
        let id = ConnId {
            loop_index: 0,
            slot: idx as u32,
            gen: 1,
        };
        let transport = Transport::Memory(Box::default());
        let peer = "192.0.2.7:40000".parse().expect("address");
        let codec = handler.new_codec();
        let conn = Connection::new(transport, id, peer, codec, 0);
        entry.insert(Slot { conn, state: None });
        let mut pair = Pair {
            handler,
            slab,
            idx,
            core,
            scratch: vec![0; opts.scratch_size.max(1024)],
            poll,
            closed: None,
        };
        open(&mut pair.handler, &mut pair.slab[idx], &mut pair.core);
        pair.end_iteration();
        pair
    }

    fn memory(&mut self) -> &mut Memory {
        self.slab[self.idx].conn.transport_mut().memory()
    }

    /// The peer sends `bytes`: one readable event, then the end of the loop iteration.
    pub(crate) fn feed(&mut self, bytes: &[u8]) {
        if self.closed.is_some() {
            return;
        }
        self.memory().input.extend(bytes);
        self.readable();
    }

    /// The peer shuts down its write side (the FIN arrives with a hang-up event).
    pub(crate) fn peer_close(&mut self) {
        if self.closed.is_some() {
            return;
        }
        self.memory().input_closed = true;
        self.slab[self.idx].conn.rx_mut().set_hup();
        self.readable();
    }

    fn readable(&mut self) {
        let slot = &mut self.slab[self.idx];
        rw::on_readable(
            &mut self.handler,
            slot,
            &mut self.core,
            &mut self.scratch,
            self.poll.registry(),
        );
        self.end_iteration();
    }

    /// How many bytes the peer's "socket buffer" takes before sends would block (`None`:
    /// unlimited). Raising it is followed by a writable event, as epoll would report.
    pub(crate) fn set_room(&mut self, room: Option<usize>) {
        if self.closed.is_some() {
            return;
        }
        self.memory().room = room;
        let slot = &mut self.slab[self.idx];
        rw::on_writable(
            &mut self.handler,
            slot,
            &mut self.core,
            self.poll.registry(),
        );
        self.end_iteration();
    }

    /// Everything the connection has sent since the last call.
    pub(crate) fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.memory().output)
    }

    /// Move the loop's clock on by `ms` and run the timers that fell due.
    pub(crate) fn advance(&mut self, ms: u64) {
        self.core.now += ms;
        if self.closed.is_some() {
            return;
        }
        let mut fired = Vec::new();
        self.core.timers.advance(self.core.now, &mut fired);
        for (tid, deadline, kind) in fired {
            let slot = &mut self.slab[self.idx];
            match kind {
                TimerKind::Idle(id) if id == slot.conn.id() => idle_check(slot, &mut self.core),
                TimerKind::Conn { id, .. } if id == slot.conn.id() => {
                    conn_timer(&mut self.handler, slot, &mut self.core, tid, deadline, kind)
                }
                _ => {}
            }
        }
        self.end_iteration();
    }

    /// The end of a loop iteration: flush what callbacks outside a read queued, then reap.
    fn end_iteration(&mut self) {
        if self.closed.is_some() {
            return;
        }
        let slot = &mut self.slab[self.idx];
        // As the loop's flush_dirty: a flush's callbacks may queue more output.
        while !self.core.take_dirty().is_empty() {
            if Core::is_dirty(&slot.conn) {
                rw::flush(
                    &mut self.handler,
                    slot,
                    &mut self.core,
                    self.poll.registry(),
                );
            }
        }
        while self.core.next_to_reap().is_some() {
            // The slot stays (with its transport), so the last output can still be taken.
            if let Some(reason) = closing::finish(&mut self.handler, slot, &mut self.core) {
                self.closed = Some(reason);
            }
        }
    }

    /// Why the connection closed, once it has (`on_close` has run).
    pub(crate) fn closed(&self) -> Option<CloseReason> {
        self.closed
    }

    /// The loop's counters.
    pub(crate) fn stats(&self) -> &Stats {
        &self.core.stats
    }
}
