//! Request bodies read as they arrive: the [`BodyStream`] a streaming route's handler gets
//! (see [`Router::route_stream`](super::Router::route_stream)).
//!
//! The connection copies each de-chunked piece of the body into a small shared queue as it is
//! decoded and wakes the handler's task; the handler takes the pieces with
//! [`BodyStream::next_chunk`]. The queue is bounded: once [`STREAM_BUFFER`] bytes wait in it,
//! the connection stops reading the socket, and it reads on when the handler has taken them,
//! so a slow handler holds the client back through TCP's own flow control and a large upload
//! costs bounded memory. `Expect: 100-continue` is answered when the handler first asks for
//! a chunk. A body that cannot complete (the client went away, the body timeout, the route's
//! size limit, bad chunked framing) ends with a [`BodyError`].
//!
//! The shared state is behind a mutex (a request may be moved to any thread like every
//! `http::Request`); each side locks it once per piece. This module performs no I/O; the
//! HTTP connection (`server.rs`) feeds it and the handler reads it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use ::http::HeaderMap;
use bytes::Bytes;

use crate::Handle;

/// The `on_notify` token with which a handler reading a [`BodyStream`] tells its connection
/// that it took bytes (read on) or wants `100 Continue`.
pub(crate) const STREAM_TOKEN: u64 = 0x7374_7265_616d_0000; // "stream\0\0"

/// Bytes that may wait in a request body's queue before the connection stops reading (it may
/// exceed this by at most one read of the socket).
pub const STREAM_BUFFER: usize = 64 * 1024;

/// Why a streamed request body ended before its last byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// The client closed the connection (or the connection closed for another reason).
    Aborted,
    /// The body is larger than the route's limit; the client is answered 413.
    TooLarge,
    /// The client sent nothing for the body timeout (or too slowly); answered 408.
    Timeout,
    /// The body's framing is invalid (bad chunked encoding); answered 400.
    Invalid,
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BodyError::Aborted => "the client closed the connection mid-body",
            BodyError::TooLarge => "the request body is over the route's limit",
            BodyError::Timeout => "the request body timed out",
            BodyError::Invalid => "the request body's framing is invalid",
        })
    }
}

impl std::error::Error for BodyError {}

struct State {
    chunks: VecDeque<Bytes>,
    /// Bytes in `chunks`.
    buffered: usize,
    /// All of the body is in (`chunks` may still hold some).
    done: bool,
    error: Option<BodyError>,
    trailers: Option<HeaderMap>,
    /// The task waiting for a chunk.
    reader: Option<Waker>,
    /// The connection stopped reading because the queue is full; tell it when it drains.
    conn_waiting: bool,
    /// `100 Continue` is owed once the handler reads.
    need_continue: bool,
    /// The handler asked for `100 Continue` (the connection writes it on notify).
    continue_asked: bool,
    /// The reading side was dropped: the connection discards the rest.
    dropped: bool,
    /// How the connection is told (once per wait).
    conn: Option<Handle>,
}

#[derive(Clone)]
struct Shared(Arc<Mutex<State>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A request body read piece by piece as it arrives (see the module docs). Given to a
/// streaming route's handler as `Request<BodyStream>`.
///
/// ```
/// use herd_core::http::{BodyStream, Request, Response, Router};
///
/// let router = Router::new().post_stream("/upload", 1 << 30, |mut req: Request<BodyStream>| async move {
///     let mut total = 0u64;
///     while let Ok(Some(chunk)) = req.body_mut().next_chunk().await {
///         total += chunk.len() as u64;
///     }
///     Response::new(format!("{total}\n").into())
/// });
/// # let _ = router;
/// ```
pub struct BodyStream {
    shared: Shared,
    len: Option<u64>,
}

impl fmt::Debug for BodyStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.shared.lock();
        f.debug_struct("BodyStream")
            .field("len", &self.len)
            .field("buffered", &s.buffered)
            .field("done", &s.done)
            .finish()
    }
}

impl BodyStream {
    /// A stream that already holds all of `bytes` (for tests, and a body the server had
    /// collected before the handler ran).
    pub fn from_bytes(bytes: Bytes) -> BodyStream {
        let (feed, stream) = pair(None, Some(bytes.len() as u64), false);
        feed.push(bytes);
        feed.finish(None);
        stream
    }

    /// The body's announced length (`Content-Length`), `None` when chunked.
    pub fn content_length(&self) -> Option<u64> {
        self.len
    }

    /// The next piece of the body: `Ok(Some(bytes))`, `Ok(None)` at its end, or the reason it
    /// cannot complete. The first call answers `Expect: 100-continue`.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyError> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// The poll form of [`next_chunk`](Self::next_chunk), for hand-written futures and
    /// stream adapters.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, BodyError>> {
        let mut s = self.shared.lock();
        let mut tell = false;
        if s.need_continue {
            s.need_continue = false;
            s.continue_asked = true;
            tell = true;
        }
        let out = if let Some(chunk) = s.chunks.pop_front() {
            s.buffered -= chunk.len();
            if s.conn_waiting && s.buffered < STREAM_BUFFER / 2 {
                s.conn_waiting = false;
                tell = true;
            }
            Poll::Ready(Ok(Some(chunk)))
        } else if let Some(e) = s.error {
            Poll::Ready(Err(e))
        } else if s.done {
            Poll::Ready(Ok(None))
        } else {
            s.reader = Some(cx.waker().clone());
            Poll::Pending
        };
        let conn = if tell { s.conn.clone() } else { None };
        drop(s);
        if let Some(h) = conn {
            h.notify(STREAM_TOKEN, Bytes::new());
        }
        out
    }

    /// Read the rest of the body into one buffer, failing with [`BodyError::TooLarge`] past
    /// `limit` bytes.
    pub async fn collect(&mut self, limit: usize) -> Result<Bytes, BodyError> {
        let mut all = Vec::new();
        while let Some(chunk) = self.next_chunk().await? {
            if all.len() + chunk.len() > limit {
                return Err(BodyError::TooLarge);
            }
            all.extend_from_slice(&chunk);
        }
        Ok(all.into())
    }

    /// The trailer fields of a chunked body, once [`next_chunk`](Self::next_chunk) returned
    /// `Ok(None)` (and if the client sent any).
    pub fn trailers(&self) -> Option<HeaderMap> {
        self.shared.lock().trailers.clone()
    }
}

impl Drop for BodyStream {
    fn drop(&mut self) {
        // The reader is gone: the connection discards what is left.
        {
            let mut s = self.shared.lock();
            s.dropped = true;
            s.chunks.clear();
            s.buffered = 0;
            if s.conn_waiting {
                s.conn_waiting = false;
                if let Some(h) = s.conn.clone() {
                    drop(s);
                    h.notify(STREAM_TOKEN, Bytes::new());
                }
            }
        }
    }
}

/// The connection's side of a [`BodyStream`].
pub(crate) struct Feed {
    shared: Shared,
    /// Body bytes received so far.
    pub(crate) received: u64,
}

/// A feed and its stream. `conn` is told when the reader drains the queue or wants
/// `100 Continue` (`need_continue`).
pub(crate) fn pair(
    conn: Option<Handle>,
    len: Option<u64>,
    need_continue: bool,
) -> (Feed, BodyStream) {
    let shared = Shared(Arc::new(Mutex::new(State {
        chunks: VecDeque::new(),
        buffered: 0,
        done: false,
        error: None,
        trailers: None,
        reader: None,
        conn_waiting: false,
        need_continue,
        continue_asked: false,
        dropped: false,
        conn,
    })));
    let feed = Feed {
        shared: shared.clone(),
        received: 0,
    };
    (feed, BodyStream { shared, len })
}

impl Feed {
    /// Queue a piece of the body. Returns true when the queue is full: stop reading until
    /// [`drained`](Self::drained).
    pub(crate) fn push(&self, data: Bytes) -> bool {
        let mut s = self.shared.lock();
        if s.dropped || data.is_empty() {
            return false;
        }
        s.buffered += data.len();
        s.chunks.push_back(data);
        let full = s.buffered >= STREAM_BUFFER;
        s.conn_waiting |= full;
        let reader = s.reader.take();
        drop(s);
        if let Some(w) = reader {
            w.wake();
        }
        full
    }

    /// The body is complete.
    pub(crate) fn finish(&self, trailers: Option<HeaderMap>) {
        let mut s = self.shared.lock();
        s.done = true;
        s.trailers = trailers;
        let reader = s.reader.take();
        drop(s);
        if let Some(w) = reader {
            w.wake();
        }
    }

    /// The body cannot complete.
    pub(crate) fn fail(&self, e: BodyError) {
        let mut s = self.shared.lock();
        if s.done || s.error.is_some() {
            return;
        }
        s.error = Some(e);
        let reader = s.reader.take();
        drop(s);
        if let Some(w) = reader {
            w.wake();
        }
    }

    /// Whether the connection may read on (the queue is below the mark again, or nobody
    /// reads it any more).
    pub(crate) fn drained(&self) -> bool {
        let s = self.shared.lock();
        s.dropped || !s.conn_waiting
    }

    /// Take a pending `100 Continue` request from the reader.
    pub(crate) fn take_continue(&self) -> bool {
        std::mem::take(&mut self.shared.lock().continue_asked)
    }

    /// `100 Continue` was owed and never asked for (the client may not send the body).
    pub(crate) fn continue_unsent(&self) -> bool {
        self.shared.lock().need_continue
    }

    /// Bytes waiting in the queue (for the overload guard).
    pub(crate) fn buffered(&self) -> usize {
        self.shared.lock().buffered
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        // The connection went away before the body completed.
        self.fail(BodyError::Aborted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll(s: &mut BodyStream) -> Poll<Result<Option<Bytes>, BodyError>> {
        let waker = Waker::noop();
        s.poll_chunk(&mut Context::from_waker(waker))
    }

    #[test]
    fn pieces_then_end_then_trailers() {
        let (feed, mut s) = pair(None, None, false);
        assert!(poll(&mut s).is_pending());
        assert!(!feed.push(Bytes::from_static(b"ab")));
        assert_eq!(
            poll(&mut s),
            Poll::Ready(Ok(Some(Bytes::from_static(b"ab"))))
        );
        let mut t = HeaderMap::new();
        t.insert("x-sum", "1".parse().unwrap());
        feed.finish(Some(t));
        assert_eq!(poll(&mut s), Poll::Ready(Ok(None)));
        assert_eq!(s.trailers().unwrap().len(), 1);
    }

    #[test]
    fn full_queue_asks_to_stop_reading_until_drained() {
        let (feed, mut s) = pair(None, Some(1 << 20), false);
        let piece = Bytes::from(vec![0u8; 16 * 1024]);
        let mut pushes = 0;
        while !feed.push(piece.clone()) {
            pushes += 1;
        }
        assert_eq!(pushes, 3);
        assert!(!feed.drained());
        for _ in 0..3 {
            assert!(poll(&mut s).is_ready());
        }
        assert!(feed.drained());
    }

    #[test]
    fn dropped_feed_aborts_and_dropped_reader_discards() {
        let (feed, mut s) = pair(None, None, false);
        drop(feed);
        assert_eq!(poll(&mut s), Poll::Ready(Err(BodyError::Aborted)));
        let (feed, s) = pair(None, None, false);
        drop(s);
        assert!(!feed.push(Bytes::from_static(b"x")));
        assert_eq!(feed.buffered(), 0);
        let all = BodyStream::from_bytes(Bytes::from_static(b"abc"));
        assert_eq!(all.content_length(), Some(3));
    }
}
