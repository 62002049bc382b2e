//! A response body written by a task as it goes: [`Body::channel`] gives the body and a
//! [`BodySender`]; the connection sends each chunk as it comes (chunked, or until close for
//! HTTP/1.0), for server-sent events, long polling and generated output.
//!
//! The sender waits when `capacity` chunks are queued and not yet taken by the connection,
//! and the connection takes chunks only while its output is below the high watermark: a
//! slow client holds the producer back, memory stays bounded. When the connection closes
//! (or the body is never sent, e.g. for HEAD), [`BodySender::send`] fails with
//! [`BodyClosed`], so the producer can stop. Dropping the sender ends the body;
//! [`BodySender::abort`] ends it as broken instead (the connection closes without the
//! closing chunk, so the client sees a truncated body, not a complete one).
//! [`Body::channel_sized`] announces the length up front (`Content-Length` instead of
//! chunked); a body that then ends short or runs long closes the connection.
//!
//! The shared state is behind a mutex (a body may be made on any thread, like every
//! [`Body`]); it is locked once per chunk on each side.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use bytes::Bytes;

use super::body::{Body, Kind};
use crate::Handle;

/// The `on_notify` token that tells a connection its channel body has a chunk (or ended).
pub(crate) const CHANNEL_TOKEN: u64 = 0x6368_616e_6e65_6c00; // "channel\0"

/// [`BodySender::send`] failed: the connection closed, or the body was dropped unsent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyClosed;

impl std::fmt::Display for BodyClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the response body's connection is gone")
    }
}

impl std::error::Error for BodyClosed {}

struct Chan {
    chunks: VecDeque<Bytes>,
    capacity: usize,
    /// The sender is gone: the body ends after the queued chunks.
    ended: bool,
    /// The sender aborted: the body is broken after the queued chunks.
    aborted: bool,
    /// The receiving side (the body, then the connection) is gone.
    closed: bool,
    /// The connection waiting for a chunk.
    reader: Option<Handle>,
    /// The sender waiting for room.
    writer: Option<Waker>,
}

#[derive(Clone)]
struct Shared(Arc<Mutex<Chan>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Chan> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes a [`Body::channel`] body (see the module docs).
pub struct BodySender {
    shared: Shared,
}

impl std::fmt::Debug for BodySender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.shared.lock();
        f.debug_struct("BodySender")
            .field("queued", &c.chunks.len())
            .field("closed", &c.closed)
            .finish()
    }
}

impl BodySender {
    /// Queue `chunk` for the connection; waits while `capacity` chunks are queued. Fails once
    /// the connection is gone.
    pub async fn send(&self, chunk: impl Into<Bytes>) -> Result<(), BodyClosed> {
        let mut chunk = Some(chunk.into());
        std::future::poll_fn(|cx| {
            let mut c = self.shared.lock();
            if c.closed {
                return Poll::Ready(Err(BodyClosed));
            }
            if c.chunks.len() >= c.capacity {
                c.writer = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let chunk = chunk.take().expect("sent once");
            if !chunk.is_empty() {
                c.chunks.push_back(chunk);
            }
            let reader = c.reader.take();
            drop(c);
            if let Some(h) = reader {
                h.notify(CHANNEL_TOKEN, Bytes::new());
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Whether the connection is gone (a send would fail).
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// Ready once the connection is gone (a send would fail); else the task is woken when it
    /// goes. For a producer that waits on something else meanwhile (not while a `send` of
    /// the same sender waits: they share one wake-up slot).
    pub fn poll_closed(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let mut c = self.shared.lock();
        if c.closed {
            return Poll::Ready(());
        }
        c.writer = Some(cx.waker().clone());
        Poll::Pending
    }

    /// End the body as broken: the chunks already queued are sent, then the connection is
    /// closed without ending the body properly (no closing chunk; a sized body stays short),
    /// so the client can tell it is incomplete. For a producer whose source failed midway.
    pub fn abort(self) {
        self.shared.lock().aborted = true;
        // (Dropping `self` ends the body and wakes the connection.)
    }
}

impl Drop for BodySender {
    fn drop(&mut self) {
        let reader = {
            let mut c = self.shared.lock();
            c.ended = true;
            c.reader.take()
        };
        if let Some(h) = reader {
            h.notify(CHANNEL_TOKEN, Bytes::new());
        }
    }
}

/// The connection's side of a channel body.
pub(crate) struct BodyReceiver {
    shared: Shared,
    /// The announced length ([`Body::channel_sized`]).
    pub(crate) len: Option<u64>,
}

/// What the connection found in the channel.
pub(crate) enum Next {
    Chunk(Bytes),
    /// Nothing yet: the connection is notified (through `handle`) when there is.
    Pending,
    End,
    /// The sender aborted ([`BodySender::abort`]): close the connection.
    Aborted,
}

impl BodyReceiver {
    /// Take the next chunk, or leave `handle` to be notified when one comes.
    pub(crate) fn next(&mut self, handle: impl FnOnce() -> Handle) -> Next {
        let mut c = self.shared.lock();
        if let Some(chunk) = c.chunks.pop_front() {
            let writer = c.writer.take();
            drop(c);
            if let Some(w) = writer {
                w.wake();
            }
            return Next::Chunk(chunk);
        }
        if c.ended {
            return if c.aborted { Next::Aborted } else { Next::End };
        }
        c.reader = Some(handle());
        Next::Pending
    }
}

impl Drop for BodyReceiver {
    fn drop(&mut self) {
        let writer = {
            let mut c = self.shared.lock();
            c.closed = true;
            c.chunks.clear();
            c.reader = None;
            c.writer.take()
        };
        if let Some(w) = writer {
            w.wake();
        }
    }
}

impl Body {
    /// A body that a task writes as it goes (see [`BodySender`]): sent with chunked transfer
    /// coding (until close to an HTTP/1.0 client), each chunk as soon as the connection can
    /// take it; the sender waits while `capacity` chunks (at least 1) are queued. Not
    /// compressed by the server (each chunk must reach the client when it is sent).
    ///
    /// ```
    /// use herd_core::http::{Body, Request, Response, Router};
    ///
    /// let router = Router::new().get("/events", |_: Request<Body>| {
    ///     let (tx, body) = Body::channel(16);
    ///     herd_core::task::spawn_local(async move {
    ///         for i in 0.. {
    ///             if tx.send(format!("data: {i}\n\n")).await.is_err() {
    ///                 break; // the client went away
    ///             }
    ///             herd_core::task::sleep(std::time::Duration::from_secs(1)).await;
    ///         }
    ///     });
    ///     Response::builder()
    ///         .header("content-type", "text/event-stream")
    ///         .body(body)
    ///         .unwrap()
    /// });
    /// # let _ = router;
    /// ```
    pub fn channel(capacity: usize) -> (BodySender, Body) {
        Body::channel_with(capacity, None)
    }

    /// [`Body::channel`] with the body's length known up front: sent with that
    /// `Content-Length` (keep-alive stays possible) instead of chunked. The sender must send
    /// exactly `len` bytes; a body that ends short (or an aborted one) closes the connection
    /// after what was sent, and bytes beyond `len` are not sent (the connection closes).
    ///
    /// ```
    /// use herd_core::http::{Body, Request, Response, Router};
    ///
    /// let router = Router::new().get("/hello", |_: Request<Body>| {
    ///     let (tx, body) = Body::channel_sized(4, 11);
    ///     herd_core::task::spawn_local(async move {
    ///         let _ = tx.send("hello ").await;
    ///         let _ = tx.send("world").await;
    ///     });
    ///     Response::new(body)
    /// });
    /// # let _ = router;
    /// ```
    pub fn channel_sized(capacity: usize, len: u64) -> (BodySender, Body) {
        Body::channel_with(capacity, Some(len))
    }

    fn channel_with(capacity: usize, len: Option<u64>) -> (BodySender, Body) {
        let shared = Shared(Arc::new(Mutex::new(Chan {
            chunks: VecDeque::new(),
            capacity: capacity.max(1),
            ended: false,
            aborted: false,
            closed: false,
            reader: None,
            writer: None,
        })));
        let body = Body {
            kind: Kind::Channel(BodyReceiver {
                shared: shared.clone(),
                len,
            }),
        };
        (BodySender { shared }, body)
    }
}
