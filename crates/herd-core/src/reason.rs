//! Why a connection closed: the one list of close reasons, counted per loop in
//! [`Stats`](crate::Stats) and reported to [`Handler::on_close`](crate::Handler::on_close).
//!
//! A leaf module: it depends on nothing else in the crate, so the connection types, the loop,
//! the statistics and every protocol can name a reason without importing each other.

/// Why a connection closed. Counted per loop in [`Stats`](crate::Stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The peer closed its side (read returned 0) and pending output was flushed.
    PeerClosed,
    /// The handler (or a [`Handle`](crate::Handle)) closed it.
    Local,
    /// A read or write failed (reset, broken pipe, ...).
    Error,
    /// Nothing was received for longer than the idle timeout.
    Idle,
    /// Refused at once: a connection limit was reached.
    Limit,
    /// The handler's `on_open` returned `None`.
    Refused,
    /// The decoder reported invalid input.
    Decode,
    /// An encoder refused an item the handler sent.
    Encode,
    /// Output waiting for a slow reader passed the hard limit.
    Overflow,
    /// The server stopped (graceful stop closed it while idle, or the deadline passed).
    Stop,
    /// A handler callback panicked.
    Panic,
    /// The peer stayed silent past the heartbeat timeout.
    Heartbeat,
    /// The peer sent faster than the flood guard allows.
    Flood,
    /// A protocol-level timeout (e.g. a request head that took too long).
    Timeout,
    /// The TLS handshake or session failed (counted by cause in `Stats::tls_failed`).
    Tls,
    /// Output waited for the peer, which took no byte of it within the send timeout.
    SendTimeout,
    /// The memory budget was exceeded and this connection held the most (the overload guard's
    /// reset, see [`overload`](crate::overload)).
    Overload,
}

impl CloseReason {
    /// Number of reasons (size of [`Stats::closed`](crate::Stats::closed)).
    pub const COUNT: usize = 17;
    /// Every reason, in index order.
    pub const ALL: [CloseReason; Self::COUNT] = [
        CloseReason::PeerClosed,
        CloseReason::Local,
        CloseReason::Error,
        CloseReason::Idle,
        CloseReason::Limit,
        CloseReason::Refused,
        CloseReason::Decode,
        CloseReason::Encode,
        CloseReason::Overflow,
        CloseReason::Stop,
        CloseReason::Panic,
        CloseReason::Heartbeat,
        CloseReason::Flood,
        CloseReason::Timeout,
        CloseReason::Tls,
        CloseReason::SendTimeout,
        CloseReason::Overload,
    ];

    /// Position in [`CloseReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// A short snake_case label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::Local => "local",
            CloseReason::Error => "error",
            CloseReason::Idle => "idle",
            CloseReason::Limit => "limit",
            CloseReason::Refused => "refused",
            CloseReason::Decode => "decode",
            CloseReason::Encode => "encode",
            CloseReason::Overflow => "overflow",
            CloseReason::Stop => "stop",
            CloseReason::Panic => "panic",
            CloseReason::Heartbeat => "heartbeat",
            CloseReason::Flood => "flood",
            CloseReason::Timeout => "timeout",
            CloseReason::Tls => "tls",
            CloseReason::SendTimeout => "send_timeout",
            CloseReason::Overload => "overload",
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
