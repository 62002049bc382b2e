//! The send side of a connection: the output buffer, the queue of files (and bytes after
//! them), the half-close request, and the one loop that hands output to the transport.
//!
//! Everything a handler sends is appended here ([`Tx::out`]); the loop calls
//! [`Tx::flush`] once per read event (one `send` for all replies of that read), and again on
//! writable edges after a short write. A flush reports one [`Flushed`] outcome, which the
//! loop turns into poller interest, a close, or backpressure callbacks; the watermarks are
//! the loop's [`Watermarks`]. [`Tx::write_direct`] is the shortcut for a large pass-through
//! reply with nothing queued before it: written from the caller's slice, only the unsent
//! tail copied. Nothing outside this file touches the buffer or the queue.

use std::collections::VecDeque;
use std::io;

use super::transport::Transport;
use crate::buf::{BufPool, WriteBuf};
use crate::stats::Stats;

/// Output waiting behind a file: the file region itself, or bytes sent after it.
pub(crate) enum Pending {
    File {
        file: std::fs::File,
        offset: u64,
        end: u64,
    },
    Bytes(Vec<u8>),
}

/// A loop's output limits, in bytes held in memory per connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watermarks {
    /// Above this, reading from the peer pauses.
    pub(crate) high: usize,
    /// At or below this, a paused peer is read again.
    pub(crate) low: usize,
    /// Above this, the connection is closed ([`CloseReason::Overflow`](crate::CloseReason)).
    pub(crate) max: usize,
}

/// What a flush left behind.
#[derive(Debug)]
pub(crate) enum Flushed {
    /// Everything was written.
    Empty,
    /// Output is left and the socket is full; `register` is true the first time (the loop
    /// must ask for writable edges from now on, and keeps that interest afterwards).
    Blocked { register: bool },
    /// A file ended before the promised length: the response cannot be completed.
    FileShort,
    /// The transport failed for good during `op`.
    Failed(Op, io::Error),
}

/// Which transport call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Write,
    Sendfile,
}

impl Op {
    /// The call's name, for logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Op::Write => "write",
            Op::Sendfile => "sendfile",
        }
    }
}

/// The send side of a connection.
#[derive(Default)]
pub(crate) struct Tx {
    buf: WriteBuf,
    /// Output queued behind a file being sent (files, and bytes sent after them), in order.
    queue: VecDeque<Pending>,
    /// Shut down the write side once the output is written.
    shutdown_after_flush: bool,
    /// Registered for writable edges (after the first short write).
    write_interest: bool,
}

/// One `send`, retried on EINTR; `WouldBlock` is 0 bytes. Counts the call. `before_file`:
/// a `sendfile` follows these bytes at once, so they may wait for it to fill the segment.
#[inline(always)]
fn send_counted(
    t: &mut Transport,
    bytes: &[u8],
    before_file: bool,
    stats: &mut Stats,
) -> io::Result<usize> {
    loop {
        let r = if before_file {
            t.send_before_file(bytes)
        } else {
            t.send(bytes)
        };
        match r {
            Ok(n) => {
                stats.writes += 1;
                stats.bytes_out += n as u64;
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                stats.writes += 1;
                return Ok(0);
            }
            Err(e) => {
                stats.writes += 1;
                return Err(e);
            }
        }
    }
}

impl Tx {
    /// Where newly sent bytes go: the output buffer, or behind the last queued file.
    #[inline]
    pub(crate) fn out(&mut self, pool: &mut BufPool) -> &mut Vec<u8> {
        if self.queue.is_empty() {
            return self.buf.vec_mut(pool);
        }
        if !matches!(self.queue.back(), Some(Pending::Bytes(_))) {
            self.queue.push_back(Pending::Bytes(Vec::new()));
        }
        match self.queue.back_mut() {
            Some(Pending::Bytes(v)) => v,
            _ => unreachable!("just pushed"),
        }
    }

    /// Queue `len` bytes of `file` from `offset` after everything sent so far.
    pub(crate) fn push_file(&mut self, file: std::fs::File, offset: u64, len: u64) {
        self.queue.push_back(Pending::File {
            file,
            offset,
            end: offset + len,
        });
    }

    /// Shut down the write side once everything queued so far is written.
    pub(crate) fn shutdown_after_flush(&mut self) {
        self.shutdown_after_flush = true;
    }

    /// Nothing is queued and no half-close waits for the queue: bytes written to the
    /// transport now go out in order.
    #[inline]
    pub(crate) fn is_idle(&self) -> bool {
        self.buf.is_empty() && self.queue.is_empty() && !self.shutdown_after_flush
    }

    /// Bytes of output held in memory (queued files are not counted: they cost no memory).
    #[inline]
    pub(crate) fn pending(&self) -> usize {
        if self.queue.is_empty() {
            return self.buf.len();
        }
        self.buf.len()
            + self
                .queue
                .iter()
                .map(|p| match p {
                    Pending::Bytes(v) => v.len(),
                    Pending::File { .. } => 0,
                })
                .sum::<usize>()
    }

    /// Some output (bytes or files) is waiting.
    #[inline]
    pub(crate) fn has_output(&self) -> bool {
        !self.buf.is_empty() || !self.queue.is_empty()
    }

    /// Drop all queued output.
    pub(crate) fn discard(&mut self) {
        self.buf.clear();
        self.queue.clear();
    }

    /// Drop all queued output and return the buffer to the pool (the connection is gone).
    pub(crate) fn release(&mut self, pool: &mut BufPool) {
        self.discard();
        self.buf.release_if_empty(pool);
    }

    /// Write what is queued: one `send` of the buffer (a short write waits for the next
    /// writable edge), files with `sendfile`, in order.
    #[inline]
    pub(crate) fn flush(
        &mut self,
        t: &mut Transport,
        pool: &mut BufPool,
        stats: &mut Stats,
    ) -> Flushed {
        loop {
            if self.buf.is_empty() {
                if self.queue.is_empty() {
                    break;
                }
                match self.advance_queue(t, pool, stats) {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(failed) => return failed,
                }
            }
            let len = self.buf.len();
            let before_file = matches!(self.queue.front(), Some(Pending::File { .. }));
            match send_counted(t, self.buf.bytes(), before_file, stats) {
                Ok(n) => {
                    self.buf.advance(n);
                    if n < len {
                        break;
                    }
                }
                Err(e) => return Flushed::Failed(Op::Write, e),
            }
        }
        let mut sealed_left = false;
        if t.has_pending() {
            match Self::flush_sealed(t) {
                Ok(all) => sealed_left = !all,
                Err(failed) => return failed,
            }
        }
        if self.has_output() || sealed_left {
            let register = !self.write_interest;
            self.write_interest = true;
            return Flushed::Blocked { register };
        }
        self.buf.release_if_empty(pool);
        Flushed::Empty
    }

    /// Write output the transport sealed but the socket did not take yet (TLS records);
    /// `Ok(true)` when none is left.
    #[cold]
    #[inline(never)]
    fn flush_sealed(t: &mut Transport) -> Result<bool, Flushed> {
        t.flush_pending().map_err(|e| Flushed::Failed(Op::Write, e))
    }

    /// The buffer is empty and the queue is not: move queued bytes into the buffer, or send
    /// from the file at the front. `Ok(true)`: go on; `Ok(false)`: the transport is full.
    /// (Out of line: only file responses and bytes queued behind them get here.)
    #[cold]
    #[inline(never)]
    fn advance_queue(
        &mut self,
        t: &mut Transport,
        pool: &mut BufPool,
        stats: &mut Stats,
    ) -> Result<bool, Flushed> {
        loop {
            match self.queue.front_mut() {
                None => return Ok(false),
                Some(Pending::Bytes(v)) => {
                    let v = std::mem::take(v);
                    self.queue.pop_front();
                    self.buf.replace_vec(v, pool);
                    return Ok(true);
                }
                Some(Pending::File { file, offset, end }) => {
                    let want = (*end - *offset).min(1 << 30) as usize;
                    stats.writes += 1;
                    match t.sendfile(file, offset, want) {
                        Ok(n) if n > 0 => {
                            stats.bytes_out += n as u64;
                            if *offset >= *end {
                                self.queue.pop_front();
                                if !self.buf.is_empty() || self.queue.is_empty() {
                                    return Ok(true);
                                }
                            }
                            // A short count means a full socket or a file that shrank; the
                            // next call tells which (EAGAIN or 0). Only large files get
                            // here, so the extra call is cheap.
                        }
                        Ok(_) => return Err(Flushed::FileShort),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(Flushed::Failed(Op::Sendfile, e)),
                    }
                }
            }
        }
    }

    /// After a flush that left nothing (and did not close): carry out a requested half-close.
    #[inline]
    pub(crate) fn finish(&mut self, t: &mut Transport) {
        if self.shutdown_after_flush {
            self.shutdown_after_flush = false;
            t.shutdown_write();
        }
    }

    /// Write `bytes` straight to the transport, without copying them into the buffer first;
    /// what it does not take is queued. Only when [`is_idle`](Self::is_idle), so the order of
    /// output is kept. Returns whether a tail was queued.
    pub(crate) fn write_direct(
        &mut self,
        t: &mut Transport,
        bytes: &[u8],
        pool: &mut BufPool,
        stats: &mut Stats,
    ) -> io::Result<bool> {
        debug_assert!(self.is_idle());
        let taken = send_counted(t, bytes, false, stats)?;
        if taken < bytes.len() {
            self.buf.vec_mut(pool).extend_from_slice(&bytes[taken..]);
            return Ok(true);
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::super::transport::memory::Memory;
    use super::*;

    fn memory(room: Option<usize>) -> Transport {
        Transport::Memory(Box::new(Memory {
            room,
            ..Memory::default()
        }))
    }

    #[test]
    fn a_flush_writes_everything_in_one_send() {
        let (mut t, mut pool, mut stats) = (memory(None), BufPool::new(4096, 4), Stats::default());
        let mut tx = Tx::default();
        tx.out(&mut pool).extend_from_slice(b"one ");
        tx.out(&mut pool).extend_from_slice(b"two");
        assert_eq!(tx.pending(), 7);
        assert!(matches!(
            tx.flush(&mut t, &mut pool, &mut stats),
            Flushed::Empty
        ));
        assert_eq!(t.memory().output, b"one two");
        assert_eq!(stats.writes, 1, "both replies in one send");
        assert!(tx.is_idle() && !tx.has_output());
    }

    #[test]
    fn a_short_write_asks_for_writable_edges_once() {
        let (mut t, mut pool, mut stats) =
            (memory(Some(3)), BufPool::new(4096, 4), Stats::default());
        let mut tx = Tx::default();
        tx.out(&mut pool).extend_from_slice(b"abcdef");
        assert!(matches!(
            tx.flush(&mut t, &mut pool, &mut stats),
            Flushed::Blocked { register: true }
        ));
        assert_eq!(tx.pending(), 3);
        assert!(matches!(
            tx.flush(&mut t, &mut pool, &mut stats),
            Flushed::Blocked { register: false }
        ));
        t.memory().room = None;
        assert!(matches!(
            tx.flush(&mut t, &mut pool, &mut stats),
            Flushed::Empty
        ));
        assert_eq!(t.memory().output, b"abcdef");
    }

    #[test]
    fn files_and_bytes_keep_their_order_and_half_close_waits() {
        let dir = std::env::temp_dir().join(format!("herd-tx-{}", std::process::id()));
        std::fs::write(&dir, b"0123456789").unwrap();
        let file = std::fs::File::open(&dir).unwrap();
        let (mut t, mut pool, mut stats) = (memory(None), BufPool::new(4096, 4), Stats::default());
        let mut tx = Tx::default();
        tx.out(&mut pool).extend_from_slice(b"head:");
        tx.push_file(file, 2, 5);
        tx.out(&mut pool).extend_from_slice(b":tail");
        assert_eq!(tx.pending(), 10, "the file is not counted as memory");
        tx.shutdown_after_flush();
        assert!(!tx.is_idle());
        assert!(matches!(
            tx.flush(&mut t, &mut pool, &mut stats),
            Flushed::Empty
        ));
        tx.finish(&mut t);
        assert_eq!(t.memory().output, b"head:23456:tail");
        assert!(t.memory().write_shut);
        assert!(tx.is_idle());
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn a_file_that_shrank_is_reported() {
        let dir = std::env::temp_dir().join(format!("herd-tx-short-{}", std::process::id()));
        std::fs::write(&dir, b"0123").unwrap();
        let file = std::fs::File::open(&dir).unwrap();
        let (mut t, mut pool, mut stats) = (memory(None), BufPool::new(4096, 4), Stats::default());
        let mut tx = Tx::default();
        tx.push_file(file, 0, 10);
        assert!(matches!(
            tx.flush(&mut t, &mut pool, &mut stats),
            Flushed::FileShort
        ));
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn a_failed_transport_is_reported_with_its_operation() {
        let (mut t, mut pool, mut stats) = (memory(None), BufPool::new(4096, 4), Stats::default());
        t.memory().fail = Some(io::ErrorKind::ConnectionReset);
        let mut tx = Tx::default();
        tx.out(&mut pool).extend_from_slice(b"x");
        match tx.flush(&mut t, &mut pool, &mut stats) {
            Flushed::Failed(op, e) => {
                assert_eq!(op, Op::Write);
                assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
            }
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_direct_write_queues_only_the_unsent_tail() {
        let (mut t, mut pool, mut stats) =
            (memory(Some(4)), BufPool::new(4096, 4), Stats::default());
        let mut tx = Tx::default();
        assert!(tx
            .write_direct(&mut t, b"abcdefgh", &mut pool, &mut stats)
            .unwrap());
        assert_eq!(tx.pending(), 4);
        t.memory().room = None;
        assert!(matches!(
            tx.flush(&mut t, &mut pool, &mut stats),
            Flushed::Empty
        ));
        assert_eq!(t.memory().output, b"abcdefgh");
        assert!(!tx
            .write_direct(&mut t, b"ij", &mut pool, &mut stats)
            .unwrap());
        assert_eq!(t.memory().output, b"abcdefghij");
    }
}
