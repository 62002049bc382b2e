//! Where a connection is in its life: open, draining (close once the output is written),
//! lingering (output written and the write side shut down; what the peer still sends is read
//! and dropped until it closes or a timer fires), or closing (reaped at the end of the loop
//! iteration).
//!
//! One enum instead of two independent options, so "closing and also waiting to close after
//! a flush" cannot be written. Transitions only go forward (open → draining → closing, or open
//! → closing); the first reason to drain is kept, a close overrides a drain. The loop calls
//! these methods; nothing else writes the state.

use crate::reason::CloseReason;

/// A connection's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Lifecycle {
    /// Reading, dispatching and writing.
    #[default]
    Open,
    /// No more input is dispatched; close with this reason once the output is written.
    Draining(CloseReason),
    /// The output is written and our side shut down (FIN sent); input is read and dropped
    /// until the peer closes or the linger timer fires, then close with this reason. A
    /// close with unread input would answer the peer with a reset, which can destroy the
    /// last response before the peer has read it.
    Lingering(CloseReason),
    /// Closed: output is dropped, the slot is reaped at the end of the iteration.
    Closing(CloseReason),
}

impl Lifecycle {
    /// Open: input is dispatched and nothing waits to close.
    #[inline]
    pub(crate) fn is_open(self) -> bool {
        matches!(self, Lifecycle::Open)
    }

    /// Output is still taken (open or draining).
    #[inline]
    pub(crate) fn accepts_output(self) -> bool {
        matches!(self, Lifecycle::Open | Lifecycle::Draining(_))
    }

    /// The socket is still read (open, draining or lingering).
    #[inline]
    pub(crate) fn reads(self) -> bool {
        !matches!(self, Lifecycle::Closing(_))
    }

    /// The reason a lingering connection closes with.
    #[inline]
    pub(crate) fn lingering(self) -> Option<CloseReason> {
        match self {
            Lifecycle::Lingering(r) => Some(r),
            _ => None,
        }
    }

    /// A drain's output is written and the write side shut down: linger. Only from draining.
    pub(crate) fn linger(&mut self) -> bool {
        if let Lifecycle::Draining(r) = *self {
            *self = Lifecycle::Lingering(r);
            true
        } else {
            false
        }
    }

    /// The reason, once closing.
    #[inline]
    pub(crate) fn closing(self) -> Option<CloseReason> {
        match self {
            Lifecycle::Closing(r) => Some(r),
            _ => None,
        }
    }

    /// Close once the output is written. Returns true if this started the drain (false if
    /// already draining or closing: the first reason stays).
    pub(crate) fn drain(&mut self, reason: CloseReason) -> bool {
        if self.is_open() {
            *self = Lifecycle::Draining(reason);
            true
        } else {
            false
        }
    }

    /// Close now. Returns true if this started the close (false if already closing).
    pub(crate) fn close(&mut self, reason: CloseReason) -> bool {
        if self.reads() {
            *self = Lifecycle::Closing(reason);
            true
        } else {
            false
        }
    }

    /// The reason a draining connection is to close with once its output is written.
    #[inline]
    pub(crate) fn draining(self) -> Option<CloseReason> {
        match self {
            Lifecycle::Draining(r) => Some(r),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_drains_then_closes_with_the_first_reason() {
        let mut l = Lifecycle::default();
        assert!(l.is_open() && l.accepts_output());
        assert!(l.drain(CloseReason::PeerClosed));
        assert!(
            !l.drain(CloseReason::Decode),
            "the first reason to drain stays"
        );
        assert!(!l.is_open() && l.accepts_output() && l.closing().is_none());
        assert_eq!(l.draining(), Some(CloseReason::PeerClosed));
        assert!(
            l.close(CloseReason::PeerClosed),
            "the drain ends in a close"
        );
        assert_eq!(l.closing(), Some(CloseReason::PeerClosed));
        assert!(!l.accepts_output());
    }

    #[test]
    fn close_overrides_a_drain_and_is_final() {
        let mut l = Lifecycle::default();
        l.drain(CloseReason::PeerClosed);
        assert!(l.close(CloseReason::Error));
        assert_eq!(l.closing(), Some(CloseReason::Error));
        assert!(!l.close(CloseReason::Local), "closing is final");
        assert!(!l.drain(CloseReason::Local));
        assert_eq!(
            l.draining(),
            None,
            "a closed connection does not drain again"
        );
        assert_eq!(l.closing(), Some(CloseReason::Error));
    }

    #[test]
    fn a_drain_lingers_reading_but_taking_no_output_then_closes() {
        let mut l = Lifecycle::default();
        assert!(!l.linger(), "only a drain lingers");
        l.drain(CloseReason::Local);
        assert!(l.linger());
        assert_eq!(l.lingering(), Some(CloseReason::Local));
        assert!(l.reads() && !l.accepts_output() && !l.is_open());
        assert_eq!((l.draining(), l.closing()), (None, None));
        assert!(!l.drain(CloseReason::Decode) && !l.linger());
        assert!(l.close(CloseReason::Local), "the linger ends in a close");
        assert_eq!(l.closing(), Some(CloseReason::Local));
        assert!(!l.reads());
    }

    #[test]
    fn an_open_connection_is_not_draining() {
        let l = Lifecycle::default();
        assert_eq!(l.draining(), None);
        assert!(l.is_open());
    }
}
