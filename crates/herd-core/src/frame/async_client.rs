//! The frame client for tasks: calls to a frame server over a cosocket, many in flight on one
//! connection, and a per-loop pool of such connections.
//!
//! An [`AsyncClient`] owns one connection, driven by a task of its own on the loop: callers
//! (any number of tasks of that loop) append their request frames to a shared output buffer
//! and wait for the reply with their request id; the driver writes what is queued (requests
//! queued together leave in one write: pipelining for free), reads and decodes replies,
//! completes the callers, answers the server's pings and notes a GOAWAY. A call has a
//! timeout on the loop's clock; a call whose future is dropped forgets its request. When the
//! connection fails, every call waiting on it fails with the cause, and the client says so
//! ([`AsyncClient::is_usable`]). Dropping the last clone ends the driver once no call waits.
//!
//! A [`FramePool`] keeps one client per server address for a loop: [`FramePool::get`] gives
//! the live one, or connects anew when there is none, it failed, the server said GOAWAY, or it
//! sat unused longer than the idle timeout. Calls multiplex on that one connection, so the
//! pool needs no more than one connection per server.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use herd_proto::frame::{self as wire, Flags, FrameDecoder, GOAWAY_ID, PING_ID};
use prost::Message;

use super::client::{ClientError, OwnedFrame};
use crate::task::{self, TcpStream};

/// Pushes kept for [`AsyncClient::next_push`] before the oldest are dropped.
const PUSHES_MAX: usize = 1024;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// How an [`AsyncClient`] connects and calls.
#[derive(Debug, Clone, Copy)]
pub struct AsyncClientOptions {
    /// Limit for establishing the connection.
    pub connect_timeout: Duration,
    /// Limit for one call, from queueing the request to its reply.
    pub call_timeout: Duration,
    /// Largest frame body accepted from the server.
    pub max_frame: u32,
}

impl Default for AsyncClientOptions {
    fn default() -> Self {
        AsyncClientOptions {
            connect_timeout: Duration::from_secs(1),
            call_timeout: Duration::from_secs(10),
            max_frame: 16 << 20,
        }
    }
}

struct Waiting {
    reply: Option<Result<OwnedFrame, ClientError>>,
    waker: Option<Waker>,
}

#[derive(Default)]
struct Shared {
    out: RefCell<Vec<u8>>,
    driver: RefCell<Option<Waker>>,
    waiting: RefCell<HashMap<u32, Waiting>>,
    pushes: RefCell<VecDeque<OwnedFrame>>,
    push_waker: RefCell<Option<Waker>>,
    next_rid: Cell<u32>,
    /// Why the connection failed, once it has.
    failed: RefCell<Option<(io::ErrorKind, String)>>,
    going_away: Cell<bool>,
    /// Every client handle is gone.
    shutdown: Cell<bool>,
    calls: Cell<u64>,
}

impl Shared {
    fn wake_driver(&self) {
        if let Some(w) = self.driver.borrow_mut().take() {
            w.wake();
        }
    }

    fn failure(&self) -> Option<ClientError> {
        self.failed.borrow().as_ref().map(|(kind, text)| {
            if *kind == io::ErrorKind::UnexpectedEof {
                ClientError::Closed
            } else {
                ClientError::Io(io::Error::new(*kind, text.clone()))
            }
        })
    }

    /// The connection is gone: fail every waiting call with the cause.
    fn fail(&self, kind: io::ErrorKind, text: String) {
        self.failed.borrow_mut().get_or_insert((kind, text));
        let waiting: Vec<Waiting> = self.waiting.borrow_mut().drain().map(|(_, w)| w).collect();
        for mut w in waiting {
            if let Some(waker) = w.waker.take() {
                waker.wake();
            }
        }
        if let Some(w) = self.push_waker.borrow_mut().take() {
            w.wake();
        }
    }

    fn dispatch(&self, f: OwnedFrame) {
        let h = f.header;
        if h.msg_id == PING_ID {
            wire::encode_pong(&mut self.out.borrow_mut(), h.request_id);
            return;
        }
        if h.msg_id == GOAWAY_ID {
            self.going_away.set(true);
            return;
        }
        if h.flags.is_push() {
            let mut q = self.pushes.borrow_mut();
            if q.len() == PUSHES_MAX {
                q.pop_front();
            }
            q.push_back(f);
            drop(q);
            if let Some(w) = self.push_waker.borrow_mut().take() {
                w.wake();
            }
            return;
        }
        let reply = match f.error() {
            Some((code, text)) => Err(ClientError::Server { code, text }),
            None => Ok(f),
        };
        if let Some(w) = self.waiting.borrow_mut().get_mut(&h.request_id) {
            w.reply = Some(reply);
            if let Some(waker) = w.waker.take() {
                waker.wake();
            }
        }
        // (A reply nobody waits for any more, e.g. after a timeout, is dropped.)
    }
}

/// Ends the driver when the last [`AsyncClient`] clone goes.
struct Owner(Rc<Shared>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.shutdown.set(true);
        self.0.wake_driver();
    }
}

/// A frame client on a cosocket (see the module docs). Clones share the connection.
#[derive(Clone)]
pub struct AsyncClient {
    owner: Rc<Owner>,
    opts: AsyncClientOptions,
    peer: SocketAddr,
}

impl std::fmt::Debug for AsyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncClient")
            .field("peer", &self.peer)
            .field("usable", &self.is_usable())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// Forgets a call's request id if the call's future is dropped before its reply.
struct CallGuard<'a> {
    shared: &'a Shared,
    rid: u32,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.shared.waiting.borrow_mut().remove(&self.rid);
    }
}

impl AsyncClient {
    /// Connect to the frame server at `addr` and start the connection's driver task on the
    /// current loop.
    pub async fn connect(addr: SocketAddr, opts: AsyncClientOptions) -> io::Result<AsyncClient> {
        let stream = TcpStream::connect_timeout(addr, opts.connect_timeout).await?;
        let shared = Rc::new(Shared {
            next_rid: Cell::new(1),
            ..Shared::default()
        });
        task::spawn_local(drive(stream, shared.clone(), opts.max_frame));
        Ok(AsyncClient {
            owner: Rc::new(Owner(shared)),
            opts,
            peer: addr,
        })
    }

    fn shared(&self) -> &Shared {
        &self.owner.0
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The connection has not failed and the server has not said GOAWAY.
    pub fn is_usable(&self) -> bool {
        self.shared().failed.borrow().is_none() && !self.shared().going_away.get()
    }

    /// Calls waiting for their reply.
    pub fn in_flight(&self) -> usize {
        self.shared().waiting.borrow().len()
    }

    /// Calls made on this connection so far.
    pub fn calls(&self) -> u64 {
        self.shared().calls.get()
    }

    /// Call `msg_id` with `body`; the reply's body, or the server's error frame as
    /// [`ClientError::Server`]. Fails with `TimedOut` after the call timeout.
    pub async fn call_raw(&self, msg_id: u16, body: &[u8]) -> Result<Vec<u8>, ClientError> {
        Ok(self.call_frame(msg_id, body).await?.body)
    }

    /// Call `msg_id` with a prost request and decode the reply.
    pub async fn call<Req: Message, Resp: Message + Default>(
        &self,
        msg_id: u16,
        req: &Req,
    ) -> Result<Resp, ClientError> {
        let f = self.call_frame(msg_id, &req.encode_to_vec()).await?;
        f.decode()
    }

    async fn call_frame(&self, msg_id: u16, body: &[u8]) -> Result<OwnedFrame, ClientError> {
        let sh = self.shared();
        if let Some(e) = sh.failure() {
            return Err(e);
        }
        let rid = sh.next_rid.get();
        sh.next_rid.set(rid.checked_add(1).unwrap_or(1));
        wire::encode(&mut sh.out.borrow_mut(), msg_id, Flags::EMPTY, rid, body)
            .map_err(ClientError::Frame)?;
        sh.waiting.borrow_mut().insert(
            rid,
            Waiting {
                reply: None,
                waker: None,
            },
        );
        sh.calls.set(sh.calls.get() + 1);
        sh.wake_driver();
        let _guard = CallGuard { shared: sh, rid };
        let reply = std::future::poll_fn(|cx| {
            let mut waiting = sh.waiting.borrow_mut();
            match waiting.get_mut(&rid) {
                Some(w) => match w.reply.take() {
                    Some(r) => Poll::Ready(r),
                    None => {
                        w.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                },
                // Failed and cleared by the driver.
                None => Poll::Ready(Err(sh.failure().unwrap_or(ClientError::Closed))),
            }
        });
        match task::timeout(self.opts.call_timeout, reply).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Io(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no reply to message {msg_id} within {:?}",
                    self.opts.call_timeout
                ),
            ))),
        }
    }

    /// The next push from the server (kept in arrival order, the newest 1,024); `None` once
    /// the connection has failed and none is left.
    pub async fn next_push(&self) -> Option<OwnedFrame> {
        let sh = self.shared();
        std::future::poll_fn(|cx| {
            if let Some(f) = sh.pushes.borrow_mut().pop_front() {
                return Poll::Ready(Some(f));
            }
            if sh.failed.borrow().is_some() {
                return Poll::Ready(None);
            }
            *sh.push_waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// The connection's driver: writes queued requests, reads and dispatches replies, until the
/// connection fails or every client is gone and no call waits.
async fn drive(mut s: TcpStream, sh: Rc<Shared>, max_frame: u32) {
    let mut decoder = FrameDecoder::new(max_frame);
    let mut rbuf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut wbuf: Vec<u8> = Vec::new();
    let mut wpos = 0;
    let end = std::future::poll_fn(|cx| loop {
        if sh.shutdown.get() && sh.waiting.borrow().is_empty() {
            return Poll::Ready(Ok(()));
        }
        let mut progressed = false;
        if wpos == wbuf.len() {
            wbuf.clear();
            wpos = 0;
            std::mem::swap(&mut wbuf, &mut *sh.out.borrow_mut());
        }
        while wpos < wbuf.len() {
            match s.poll_write(cx, &wbuf[wpos..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    wpos += n;
                    progressed = true;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => break,
            }
        }
        match s.poll_read(cx, &mut chunk) {
            Poll::Ready(Ok(0)) => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )))
            }
            Poll::Ready(Ok(n)) => {
                rbuf.extend_from_slice(&chunk[..n]);
                let mut start = 0;
                loop {
                    match decoder.decode(&rbuf[start..]) {
                        Ok((used, Some(frame))) => {
                            let f = OwnedFrame {
                                header: frame.header,
                                body: frame.body.to_vec(),
                            };
                            start += used;
                            sh.dispatch(f);
                        }
                        Ok((_, None)) => break,
                        Err(e) => {
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("bad frame from the server: {e}"),
                            )))
                        }
                    }
                }
                rbuf.drain(..start);
                progressed = true;
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        if !progressed {
            *sh.driver.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
    })
    .await;
    let (kind, text) = match end {
        Ok(()) => (io::ErrorKind::UnexpectedEof, "client dropped".to_owned()),
        Err(e) => (e.kind(), e.to_string()),
    };
    sh.fail(kind, text);
}

/// One loop's frame connections, one per server address (see the module docs).
///
/// ```no_run
/// use herd_core::frame::{AsyncClientOptions, FramePool};
/// # async fn call() -> Result<(), herd_core::frame::ClientError> {
/// thread_local! {
///     static POOL: FramePool = FramePool::new(AsyncClientOptions::default(),
///         std::time::Duration::from_secs(60));
/// }
/// let client = POOL.with(|p| p.client("127.0.0.1:7000".parse().unwrap()));
/// let reply = client.await?.call_raw(1, b"hello").await?;
/// # let _ = reply; Ok(()) }
/// ```
pub struct FramePool {
    opts: AsyncClientOptions,
    idle_timeout: Duration,
    /// Per server: the client and when it was last handed out (loop ms).
    clients: Rc<RefCell<HashMap<SocketAddr, (AsyncClient, u64)>>>,
    connects: Rc<Cell<u64>>,
}

impl std::fmt::Debug for FramePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramePool")
            .field("servers", &self.clients.borrow().len())
            .field("connects", &self.connects.get())
            .finish()
    }
}

impl FramePool {
    /// A pool whose clients use `opts`; a client unused for `idle_timeout` is replaced by a
    /// new connection on its next use (the server has likely timed it out).
    pub fn new(opts: AsyncClientOptions, idle_timeout: Duration) -> FramePool {
        FramePool {
            opts,
            idle_timeout,
            clients: Rc::default(),
            connects: Rc::default(),
        }
    }

    /// Connections made so far.
    pub fn connects(&self) -> u64 {
        self.connects.get()
    }

    /// The client for `addr`: the pooled one if it is usable and was used within the idle
    /// timeout, else a new connection (which replaces it). Call it on the loop the pool
    /// belongs to; the returned future does the connecting.
    pub fn client(
        &self,
        addr: SocketAddr,
    ) -> impl std::future::Future<Output = io::Result<AsyncClient>> + 'static {
        let now = task::loop_now_ms();
        let idle = u64::try_from(self.idle_timeout.as_millis()).unwrap_or(u64::MAX);
        let cached = {
            let mut clients = self.clients.borrow_mut();
            match clients.get_mut(&addr) {
                Some((c, used)) if c.is_usable() && now.saturating_sub(*used) <= idle => {
                    *used = now;
                    Some(c.clone())
                }
                Some(_) => {
                    clients.remove(&addr);
                    None
                }
                None => None,
            }
        };
        let (opts, clients, connects) = (self.opts, self.clients.clone(), self.connects.clone());
        async move {
            if let Some(c) = cached {
                return Ok(c);
            }
            connects.set(connects.get() + 1);
            let c = AsyncClient::connect(addr, opts).await?;
            clients
                .borrow_mut()
                .insert(addr, (c.clone(), task::loop_now_ms()));
            Ok(c)
        }
    }
}
