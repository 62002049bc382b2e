//! The receive side of a connection: the read buffer for a partial item, what is known about
//! the peer's end of the stream, and why reading is paused.
//!
//! Reads go into the loop's scratch buffer; only a partial item left over is copied into this
//! side's own [`ReadBuf`], which goes back to the loop's pool once consumed. Reading is paused
//! for a set of reasons ([`Pause`]): the handler asked, or the output passed the high
//! watermark. Announcing an output pause to the handler is part of that set, so "announced but
//! not paused" cannot be represented. The loop drives these methods; nothing else writes here.

use crate::buf::{BufPool, ReadBuf};

/// Why reading from a peer is paused: a small bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Pause(u8);

impl Pause {
    /// The handler called `pause_reading`.
    const USER: u8 = 1;
    /// Output passed the high watermark and has not drained to the low one.
    const OUTPUT: u8 = 2;
    /// The handler has been told about the current output pause (only with `OUTPUT`).
    const ANNOUNCED: u8 = 4;
    /// The overload guard stopped reading (this connection held much of a full budget).
    const OVERLOAD: u8 = 8;

    /// No reason to pause: reading goes on.
    #[inline]
    pub(crate) fn is_reading(self) -> bool {
        self.0 == 0
    }
}

/// The receive side of a connection.
#[derive(Default)]
pub(crate) struct Rx {
    buf: ReadBuf,
    pause: Pause,
    /// The peer closed its write side (a read returned 0).
    eof: bool,
    /// epoll reported the peer's FIN or a hang-up: read until 0 even after short reads.
    hup: bool,
    /// Some bytes have been read from the peer.
    got_data: bool,
}

impl Rx {
    /// The partial item held between reads.
    #[inline]
    pub(crate) fn buf(&self) -> &ReadBuf {
        &self.buf
    }

    /// The read buffer, to read into its spare room.
    #[inline]
    pub(crate) fn buf_mut(&mut self) -> &mut ReadBuf {
        &mut self.buf
    }

    /// Take the read buffer out (to decode from it while the connection is borrowed); give it
    /// back with [`put_buf`](Self::put_buf).
    #[inline]
    pub(crate) fn take_buf(&mut self) -> ReadBuf {
        std::mem::take(&mut self.buf)
    }

    /// Give back the buffer taken with [`take_buf`](Self::take_buf).
    #[inline]
    pub(crate) fn put_buf(&mut self, buf: ReadBuf) {
        self.buf = buf;
    }

    /// Drop any buffered input and return its storage to the pool.
    pub(crate) fn discard(&mut self, pool: &mut BufPool) {
        let n = self.buf.len();
        self.buf.consume(n);
        self.buf.release_if_empty(pool);
    }

    /// Reading may go on: not at end of stream and not paused.
    #[inline]
    pub(crate) fn can_read(&self) -> bool {
        !self.eof && self.pause.is_reading()
    }

    /// A read returned 0 (see [`set_eof`](Self::set_eof)).
    #[inline]
    pub(crate) fn at_eof(&self) -> bool {
        self.eof
    }

    /// A read returned 0: the peer will send nothing more.
    pub(crate) fn set_eof(&mut self) {
        self.eof = true;
    }

    /// The poller reported the peer's FIN or a hang-up.
    pub(crate) fn set_hup(&mut self) {
        self.hup = true;
    }

    /// A short read does not mean the socket is drained (the FIN is still to be read).
    #[inline]
    pub(crate) fn hup(&self) -> bool {
        self.hup
    }

    /// Bytes arrived.
    #[inline]
    pub(crate) fn note_data(&mut self) {
        self.got_data = true;
    }

    /// Whether the peer has sent anything yet.
    pub(crate) fn got_data(&self) -> bool {
        self.got_data
    }

    /// The overload guard paused reading. Returns true if this started the pause.
    pub(crate) fn pause_overload(&mut self) -> bool {
        let was = self.pause.0 & Pause::OVERLOAD != 0;
        self.pause.0 |= Pause::OVERLOAD;
        !was
    }

    /// The overload guard resumed reading. Returns true if it had paused it.
    pub(crate) fn resume_overload(&mut self) -> bool {
        let was = self.pause.0 & Pause::OVERLOAD != 0;
        self.pause.0 &= !Pause::OVERLOAD;
        was
    }

    /// The handler paused reading.
    pub(crate) fn pause_user(&mut self) {
        self.pause.0 |= Pause::USER;
    }

    /// The handler resumed reading. Returns true if it had been paused by the handler.
    pub(crate) fn resume_user(&mut self) -> bool {
        let was = self.pause.0 & Pause::USER != 0;
        self.pause.0 &= !Pause::USER;
        was
    }

    /// Output passed the high watermark. Returns true if this started the pause (a new pause is
    /// not yet announced).
    pub(crate) fn pause_output(&mut self) -> bool {
        if self.output_paused() {
            return false;
        }
        self.pause.0 = (self.pause.0 | Pause::OUTPUT) & !Pause::ANNOUNCED;
        true
    }

    /// Reading is paused by output backpressure.
    #[inline]
    pub(crate) fn output_paused(&self) -> bool {
        self.pause.0 & Pause::OUTPUT != 0
    }

    /// Mark the current output pause announced. Returns true the first time for this pause
    /// (the handler is to be told), false if there is no pause or it was announced already.
    pub(crate) fn announce_pause(&mut self) -> bool {
        if !self.output_paused() || self.pause.0 & Pause::ANNOUNCED != 0 {
            return false;
        }
        self.pause.0 |= Pause::ANNOUNCED;
        true
    }

    /// Output drained to the low watermark. Returns true if an output pause ended.
    pub(crate) fn resume_output(&mut self) -> bool {
        let was = self.output_paused();
        self.pause.0 &= !(Pause::OUTPUT | Pause::ANNOUNCED);
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_output_pauses_are_independent() {
        let mut rx = Rx::default();
        assert!(rx.can_read());
        rx.pause_user();
        assert!(rx.pause_output());
        assert!(!rx.can_read());
        assert!(rx.resume_user());
        assert!(!rx.can_read(), "still paused by output");
        assert!(rx.resume_output());
        assert!(rx.can_read());
        assert!(
            !rx.resume_user() && !rx.resume_output(),
            "nothing left to resume"
        );
    }

    #[test]
    fn an_output_pause_is_announced_once() {
        let mut rx = Rx::default();
        assert!(!rx.announce_pause(), "no pause, nothing to announce");
        assert!(rx.pause_output());
        assert!(!rx.pause_output(), "already paused");
        assert!(rx.announce_pause());
        assert!(!rx.announce_pause(), "announced once");
        rx.resume_output();
        assert!(!rx.announce_pause(), "the announcement ends with the pause");
        assert!(rx.pause_output());
        assert!(rx.announce_pause(), "a new pause is announced again");
    }

    #[test]
    fn end_of_stream_stops_reading() {
        let mut rx = Rx::default();
        rx.set_eof();
        assert!(!rx.can_read());
        assert!(!rx.got_data() && !rx.hup());
        rx.note_data();
        rx.set_hup();
        assert!(rx.got_data() && rx.hup());
    }
}
