//! Per-loop counters and their aggregation.
//!
//! Each loop keeps plain `u64` counters in its own memory and bumps them without locks or
//! atomics. A [`ServerHandle::stats`](crate::ServerHandle::stats) call asks every loop, through
//! its command queue, for a snapshot and adds them up; nothing on the message path is shared.
//!
//! The protocol layers (HTTP request completion, WebSocket messages and close codes, frame
//! dispatch by message id) count into [`ProtoStats`], kept in a thread-local of the loop
//! thread (a loop is one thread, so this is loop-owned memory reached without a pointer
//! through the connection): a plain add, no atomics, no locks. The loop copies it into its
//! [`Stats`] when asked for a snapshot.

use std::cell::RefCell;

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
    /// Connections refused because their client IP was at `max_connections_per_ip` (also
    /// counted in `closed` as [`CloseReason::Limit`]).
    pub refused_per_ip: u64,
    /// PROXY protocol headers taken (listeners with
    /// [`Options::proxy_protocol`](crate::Options::proxy_protocol)).
    pub proxy_headers: u64,
    /// Connections whose PROXY header was refused, indexed by
    /// [`ProxyFailure::index`](crate::proxy::ProxyFailure::index) (`not_proxy`, `too_long`,
    /// `bad_v1`, `bad_v2`, `untrusted`, `timeout`, `eof`).
    pub proxy_failed: [u64; crate::proxy::PROXY_FAILURES],
    /// Times the overload guard stopped reading from a connection holding much memory
    /// (resets are counted in `closed` as [`CloseReason::Overload`]).
    pub overload_paused: u64,
    /// Bytes this loop's connections held at its last memory scan (a gauge; only with
    /// [`Options::memory_budget`](crate::Options::memory_budget)).
    pub held_bytes: u64,
    /// Protocol-level counters of this loop (HTTP, WebSocket, frame).
    pub proto: ProtoStats,
}

/// Upper bounds (in milliseconds, inclusive) of the request-duration histogram's buckets;
/// a last, implicit bucket holds everything slower. Durations come from the loop clock (1 ms
/// resolution), so a request answered within the same millisecond counts as 0 ms.
pub const DURATION_BOUNDS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 10000];

/// A histogram with the fixed [`DURATION_BOUNDS_MS`] buckets: per-bucket (not cumulative)
/// counts, so two histograms merge by adding bucket by bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Histogram {
    /// Observations per bucket; index `DURATION_BOUNDS_MS.len()` is the overflow bucket.
    pub buckets: [u64; DURATION_BOUNDS_MS.len() + 1],
    /// Sum of the observed values (ms).
    pub sum_ms: u64,
}

impl Histogram {
    /// Record one observation of `ms` milliseconds.
    ///
    /// ```
    /// let mut h = herd_core::Histogram::default();
    /// h.observe(0);
    /// h.observe(7);
    /// h.observe(1_000_000);
    /// assert_eq!((h.buckets[0], h.buckets[3], h.buckets[12]), (1, 1, 1));
    /// assert_eq!((h.count(), h.sum_ms), (3, 1_000_007));
    /// ```
    #[inline]
    pub fn observe(&mut self, ms: u64) {
        let i = DURATION_BOUNDS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(DURATION_BOUNDS_MS.len());
        self.buckets[i] += 1;
        self.sum_ms += ms;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Add another histogram into this one.
    pub fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets.iter()) {
            *a += b;
        }
        self.sum_ms += o.sum_ms;
    }

    /// The upper bound (ms) of the bucket holding quantile `q` (0..=1), `None` when empty;
    /// the overflow bucket reports the largest finite bound.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(DURATION_BOUNDS_MS[i.min(DURATION_BOUNDS_MS.len() - 1)]);
            }
        }
        DURATION_BOUNDS_MS.last().copied()
    }
}

/// HTTP method classes counted by [`HttpCounts::requests`].
pub const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "other",
];

/// The index of `method` in [`METHODS`].
pub fn method_class(method: &str) -> usize {
    METHODS[..7].iter().position(|m| *m == method).unwrap_or(7)
}

/// HTTP status classes counted by [`HttpCounts::requests`] (index = first digit - 1).
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// HTTP counters of a loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpCounts {
    /// Responses finished, by [`METHODS`] class and [`STATUS_CLASSES`] class.
    pub requests: [[u64; 5]; 8],
    /// Time from the request head to the last byte of the response queued.
    pub duration: Histogram,
    /// Request body bytes received.
    pub body_bytes_in: u64,
    /// Response body bytes queued.
    pub body_bytes_out: u64,
    /// Requests the rate limit (`limit_req`) held back until their turn.
    pub limit_delayed: u64,
    /// Requests the rate limit refused (past the burst).
    pub limit_rejected: u64,
    /// Malformed requests, by [`HttpError::index`](herd_proto::http1::HttpError::index).
    pub bad_requests: [u64; BAD_REQUEST_REASONS],
    /// Requests an extractor refused, by `RejectionKind::index` (`http::extract`, feature
    /// `json`; all zero without it).
    pub rejections: [u64; REJECTION_KINDS],
}

/// Kinds of extractor rejection (`http::extract::RejectionKind::ALL`).
pub const REJECTION_KINDS: usize = 11;

/// Reasons a request is malformed (`herd_proto::http1::HttpError::ALL`).
pub const BAD_REQUEST_REASONS: usize = herd_proto::http1::HttpError::ALL.len();

/// WebSocket close codes counted one by one; others count as `other`.
pub const WS_CLOSE_CODES: [u16; 11] = [
    1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011,
];

/// WebSocket counters of a loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WsCounts {
    /// Data messages (text or binary) received.
    pub messages_in: u64,
    /// Data messages sent.
    pub messages_out: u64,
    /// Closed WebSocket connections by close code ([`WS_CLOSE_CODES`] order, then other).
    pub close_codes: [u64; WS_CLOSE_CODES.len() + 1],
}

/// Frame message ids counted one by one (0..FRAME_IDS); larger ids count as one `other`.
pub const FRAME_IDS: usize = 32;

/// Frame-protocol counters of a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCounts {
    /// Requests dispatched by message id (`FRAME_IDS` is the `other` slot).
    pub requests: [u64; FRAME_IDS + 1],
}

impl Default for FrameCounts {
    fn default() -> Self {
        FrameCounts {
            requests: [0; FRAME_IDS + 1],
        }
    }
}

/// Protocol counters of a loop (see the module docs for where they are kept).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProtoStats {
    /// HTTP.
    pub http: HttpCounts,
    /// WebSocket.
    pub ws: WsCounts,
    /// Frame protocol.
    pub frame: FrameCounts,
}

impl ProtoStats {
    const ZERO: ProtoStats = ProtoStats {
        http: HttpCounts {
            requests: [[0; 5]; 8],
            duration: Histogram {
                buckets: [0; DURATION_BOUNDS_MS.len() + 1],
                sum_ms: 0,
            },
            body_bytes_in: 0,
            body_bytes_out: 0,
            limit_delayed: 0,
            limit_rejected: 0,
            bad_requests: [0; BAD_REQUEST_REASONS],
            rejections: [0; REJECTION_KINDS],
        },
        ws: WsCounts {
            messages_in: 0,
            messages_out: 0,
            close_codes: [0; WS_CLOSE_CODES.len() + 1],
        },
        frame: FrameCounts {
            requests: [0; FRAME_IDS + 1],
        },
    };

    /// Add another loop's protocol counters into these.
    pub fn add(&mut self, o: &ProtoStats) {
        for (a, b) in self.http.requests.iter_mut().zip(o.http.requests.iter()) {
            for (x, y) in a.iter_mut().zip(b.iter()) {
                *x += y;
            }
        }
        self.http.duration.merge(&o.http.duration);
        self.http.body_bytes_in += o.http.body_bytes_in;
        self.http.body_bytes_out += o.http.body_bytes_out;
        self.http.limit_delayed += o.http.limit_delayed;
        self.http.limit_rejected += o.http.limit_rejected;
        for (a, b) in self
            .http
            .bad_requests
            .iter_mut()
            .zip(o.http.bad_requests.iter())
        {
            *a += b;
        }
        for (a, b) in self
            .http
            .rejections
            .iter_mut()
            .zip(o.http.rejections.iter())
        {
            *a += b;
        }
        self.ws.messages_in += o.ws.messages_in;
        self.ws.messages_out += o.ws.messages_out;
        for (a, b) in self.ws.close_codes.iter_mut().zip(o.ws.close_codes.iter()) {
            *a += b;
        }
        for (a, b) in self.frame.requests.iter_mut().zip(o.frame.requests.iter()) {
            *a += b;
        }
    }
}

thread_local! {
    /// This loop thread's protocol counters.
    static LOCAL: RefCell<ProtoStats> = const { RefCell::new(ProtoStats::ZERO) };
}

/// Update this loop thread's protocol counters.
#[inline]
pub(crate) fn count(f: impl FnOnce(&mut ProtoStats)) {
    LOCAL.with(|p| f(&mut p.borrow_mut()));
}

/// A copy of this loop thread's protocol counters.
pub(crate) fn local_proto() -> ProtoStats {
    LOCAL.with(|p| *p.borrow())
}

/// Count a finished HTTP response (called at the request-completion point).
#[inline]
pub(crate) fn http_done(method: usize, status: u16, duration_ms: u64, body_out: u64) {
    count(|p| {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        p.http.requests[method.min(7)][class] += 1;
        p.http.duration.observe(duration_ms);
        p.http.body_bytes_out += body_out;
    });
}

/// Count an extractor rejection of kind `index` (on a pool thread, until the loop takes the
/// job's counts with [`take_rejections`]).
#[cold]
#[cfg_attr(not(feature = "json"), allow(dead_code))]
pub(crate) fn http_rejected(index: usize) {
    count(|p| p.http.rejections[index.min(REJECTION_KINDS - 1)] += 1);
}

/// This thread's rejection counts, reset, if any: a worker-pool thread's counts are handed
/// back to the loop with the job's response (the pool thread's own are never read).
#[inline]
pub(crate) fn take_rejections() -> Option<[u64; REJECTION_KINDS]> {
    LOCAL.with(|p| {
        let mut p = p.borrow_mut();
        let r = &mut p.http.rejections;
        r.iter()
            .any(|&n| n != 0)
            .then(|| std::mem::replace(r, [0; REJECTION_KINDS]))
    })
}

/// Add rejection counts a worker-pool job brought back.
#[cold]
pub(crate) fn add_rejections(r: &[u64; REJECTION_KINDS]) {
    count(|p| {
        for (a, b) in p.http.rejections.iter_mut().zip(r) {
            *a += b;
        }
    });
}

/// Count a WebSocket connection's close code.
pub(crate) fn ws_closed(code: u16) {
    let i = WS_CLOSE_CODES
        .iter()
        .position(|&c| c == code)
        .unwrap_or(WS_CLOSE_CODES.len());
    count(|p| p.ws.close_codes[i] += 1);
}

/// Count a frame request dispatched for `msg_id`.
#[inline]
pub(crate) fn frame_request(msg_id: u16) {
    count(|p| p.frame.requests[(msg_id as usize).min(FRAME_IDS)] += 1);
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
        self.refused_per_ip += o.refused_per_ip;
        self.overload_paused += o.overload_paused;
        self.held_bytes += o.held_bytes;
        self.proxy_headers += o.proxy_headers;
        for (a, b) in self.proxy_failed.iter_mut().zip(o.proxy_failed.iter()) {
            *a += b;
        }
        self.proto.add(&o.proto);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Per-loop histograms merged bucket by bucket give the histogram of all observations.
    #[test]
    fn histograms_merge_like_one() {
        let (mut a, mut b, mut all) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for (i, ms) in [0u64, 1, 3, 9, 40, 120, 700, 3000, 20000, 2, 2]
            .iter()
            .enumerate()
        {
            if i % 2 == 0 {
                a.observe(*ms)
            } else {
                b.observe(*ms)
            }
            all.observe(*ms);
        }
        a.merge(&b);
        assert_eq!(a, all);
        assert_eq!(a.count(), 11);
        assert_eq!(a.quantile_ms(0.5), Some(10));
        assert_eq!(a.quantile_ms(1.0), Some(10000));
        assert_eq!(Histogram::default().quantile_ms(0.5), None);
    }

    #[test]
    fn classes_and_local_counters() {
        assert_eq!(method_class("GET"), 0);
        assert_eq!(method_class("PATCH"), 6);
        assert_eq!(method_class("BREW"), 7);
        let before = local_proto();
        http_done(0, 204, 3, 10);
        http_done(7, 999, 0, 0);
        ws_closed(1000);
        ws_closed(4000);
        frame_request(3);
        frame_request(60000);
        let after = local_proto();
        assert_eq!(after.http.requests[0][1] - before.http.requests[0][1], 1);
        assert_eq!(after.http.requests[7][4] - before.http.requests[7][4], 1);
        assert_eq!(
            after.http.duration.count() - before.http.duration.count(),
            2
        );
        assert_eq!(after.ws.close_codes[0] - before.ws.close_codes[0], 1);
        assert_eq!(after.ws.close_codes[11] - before.ws.close_codes[11], 1);
        assert_eq!(
            after.frame.requests[FRAME_IDS] - before.frame.requests[FRAME_IDS],
            1
        );
        let mut sum = Stats {
            proto: after,
            ..Stats::default()
        };
        sum.add(&Stats {
            proto: after,
            ..Stats::default()
        });
        assert_eq!(sum.proto.frame.requests[3], 2 * after.frame.requests[3]);
    }
}
