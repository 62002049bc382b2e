//! Per-loop counters and their aggregation.
//!
//! Each loop keeps plain `u64` counters in its own memory and bumps them without locks or
//! atomics. A [`ServerHandle::stats`](crate::ServerHandle::stats) call asks every loop, through
//! its command queue, for a snapshot and adds them up; nothing on the message path is shared.

use crate::reason::CloseReason;

/// Counters of one loop, or the sum over all loops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Connections currently open (opened by the handler and not yet closed).
    pub open: u64,
    /// Connections accepted (including those refused or closed at once for a limit).
    pub accepted: u64,
    /// Connections closed, indexed by [`CloseReason::index`].
    pub closed: [u64; CloseReason::COUNT],
    /// Bytes read from peers.
    pub bytes_in: u64,
    /// Bytes written to peers.
    pub bytes_out: u64,
    /// Items decoded and handed to the handler.
    pub msgs_in: u64,
    /// Items encoded by `send` (plus raw sends and handle sends).
    pub msgs_out: u64,
    /// `read` system calls issued.
    pub reads: u64,
    /// `write` system calls issued.
    pub writes: u64,
    /// Sends or closes through a [`Handle`](crate::Handle) whose connection had already gone.
    pub stale_commands: u64,
    /// Times reading from a peer was paused because its output passed the high watermark.
    pub backpressure_pauses: u64,
    /// Accept attempts that hit EMFILE/ENFILE (each starts a 500 ms back-off).
    pub accept_fd_exhausted: u64,
    /// Other accept errors.
    pub accept_errors: u64,
    /// Handler callbacks that panicked.
    pub handler_panics: u64,
    /// TLS handshakes completed (resumed ones included).
    pub tls_handshakes: u64,
    /// TLS handshakes that resumed an earlier session (ticket or session id).
    pub tls_resumed: u64,
    /// TLS connections that failed, indexed by [`TlsFailure::index`](crate::tls::TlsFailure::index)
    /// (`not_tls`, `bad_handshake`, `incompatible`, `cert_rejected`, `client_cert`, `timeout`,
    /// `eof`, `other`).
    pub tls_failed: [u64; TLS_FAILURES],
}

/// Number of TLS failure causes counted in [`Stats::tls_failed`].
pub const TLS_FAILURES: usize = 8;

impl Stats {
    /// Closed connections for one reason.
    pub fn closed_by(&self, reason: CloseReason) -> u64 {
        self.closed[reason.index()]
    }

    /// All closed connections.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().sum()
    }

    /// Add another loop's counters into this one.
    pub fn add(&mut self, o: &Stats) {
        self.open += o.open;
        self.accepted += o.accepted;
        for (a, b) in self.closed.iter_mut().zip(o.closed.iter()) {
            *a += b;
        }
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.msgs_in += o.msgs_in;
        self.msgs_out += o.msgs_out;
        self.reads += o.reads;
        self.writes += o.writes;
        self.stale_commands += o.stale_commands;
        self.backpressure_pauses += o.backpressure_pauses;
        self.accept_fd_exhausted += o.accept_fd_exhausted;
        self.accept_errors += o.accept_errors;
        self.handler_panics += o.handler_panics;
        self.tls_handshakes += o.tls_handshakes;
        self.tls_resumed += o.tls_resumed;
        for (a, b) in self.tls_failed.iter_mut().zip(o.tls_failed.iter()) {
            *a += b;
        }
    }
}

impl std::fmt::Display for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "open={} accepted={} msgs_in={} msgs_out={} bytes_in={} bytes_out={} reads={} writes={}",
            self.open,
            self.accepted,
            self.msgs_in,
            self.msgs_out,
            self.bytes_in,
            self.bytes_out,
            self.reads,
            self.writes
        )?;
        for r in CloseReason::ALL {
            let n = self.closed_by(r);
            if n > 0 {
                write!(f, " closed_{}={}", r.as_str(), n)?;
            }
        }
        Ok(())
    }
}
