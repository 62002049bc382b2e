//! Cosockets: outbound TCP for tasks, registered on the loop's own `Poll`.
//!
//! The [`Reactor`] keeps, per registered socket, whether it was last seen readable and writable
//! and the wakers of the task waiting to read and to write. Sockets are registered
//! edge-triggered for both directions once; an operation that meets `WouldBlock` clears that
//! direction's flag and parks its waker, and the loop's next event for the socket sets the
//! flag and wakes it. The reactor also keeps the tasks' timers (see `time.rs`). Tokens of
//! cosockets live in their own range of the loop's token space ([`COSOCKET_BASE`]).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use mio::{Interest, Token};
use slab::Slab;

/// The first token of cosockets (connections count up from 0, listeners from `usize::MAX / 2`).
pub(crate) const COSOCKET_BASE: usize = usize::MAX / 4;

#[derive(Default)]
struct IoSlot {
    readable: bool,
    writable: bool,
    /// The poller reported an error or a hang-up (either direction) for the socket: a short
    /// read may leave the end of stream unread.
    hup: bool,
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
}

pub(crate) struct TimerEntry {
    pub(crate) waker: Option<Waker>,
    pub(crate) fired: bool,
    /// Matches the heap entry of this timer (a reused slot has a new one).
    pub(crate) seq: u64,
}

/// The loop-side state of tasks' sockets and timers.
pub(crate) struct Reactor {
    registry: mio::Registry,
    io: RefCell<Slab<IoSlot>>,
    /// `(deadline ms, sequence, timer slot)`, earliest first; entries of dropped timers (the
    /// slot gone or holding another sequence) are skipped.
    pub(crate) heap: RefCell<BinaryHeap<Reverse<(u64, u64, usize)>>>,
    pub(crate) timers: RefCell<Slab<TimerEntry>>,
    pub(crate) next_seq: std::cell::Cell<u64>,
}

impl Reactor {
    pub(crate) fn new(registry: mio::Registry) -> Reactor {
        Reactor {
            registry,
            io: RefCell::new(Slab::new()),
            heap: RefCell::new(BinaryHeap::new()),
            timers: RefCell::new(Slab::new()),
            next_seq: std::cell::Cell::new(0),
        }
    }

    /// The loop saw an event for cosocket token `t`.
    pub(crate) fn ready(&self, t: usize, readable: bool, writable: bool, hup: bool) {
        let wakers = {
            let mut io = self.io.borrow_mut();
            let Some(s) = io.get_mut(t - COSOCKET_BASE) else {
                return;
            };
            s.hup |= hup;
            let mut w = (None, None);
            if readable {
                s.readable = true;
                w.0 = s.read_waker.take();
            }
            if writable {
                s.writable = true;
                w.1 = s.write_waker.take();
            }
            w
        };
        if let Some(w) = wakers.0 {
            w.wake();
        }
        if let Some(w) = wakers.1 {
            w.wake();
        }
    }

    /// The earliest timer deadline, if any (the loop's poll timeout).
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.heap.borrow().peek().map(|Reverse((at, _, _))| *at)
    }

    /// Wake the timers due at `now`.
    pub(crate) fn fire(&self, now: u64) {
        loop {
            let (seq, slot) = {
                let mut heap = self.heap.borrow_mut();
                match heap.peek() {
                    Some(Reverse((at, seq, slot))) if *at <= now => {
                        let r = (*seq, *slot);
                        heap.pop();
                        r
                    }
                    _ => return,
                }
            };
            let waker = {
                let mut timers = self.timers.borrow_mut();
                match timers.get_mut(slot) {
                    Some(t) if t.seq == seq => {
                        t.fired = true;
                        t.waker.take()
                    }
                    _ => None,
                }
            };
            if let Some(w) = waker {
                w.wake();
            }
        }
    }
}

/// An outbound TCP connection for a task, driven by its loop (a cosocket).
///
/// ```no_run
/// use herd_core::task::TcpStream;
/// # async fn call() -> std::io::Result<()> {
/// let mut s = TcpStream::connect_timeout("127.0.0.1:6379".parse().unwrap(),
///     std::time::Duration::from_secs(1)).await?;
/// s.write_all(b"PING\r\n").await?;
/// let mut buf = [0u8; 64];
/// let n = s.read(&mut buf).await?;
/// assert!(buf[..n].starts_with(b"+PONG"));
/// # Ok(())
/// # }
/// ```
pub struct TcpStream {
    sock: mio::net::TcpStream,
    slot: usize,
    exec: Rc<super::Executor>,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("peer", &self.sock.peer_addr().ok())
            .finish()
    }
}

#[derive(Clone, Copy)]
pub(super) enum Dir {
    Read,
    Write,
}

impl TcpStream {
    /// Connect to `addr` (non-blocking; the task waits until the connection is up or fails).
    pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
        let exec = super::current()
            .ok_or_else(|| io::Error::other("herd::task::TcpStream used outside an event loop"))?;
        let mut sock = mio::net::TcpStream::connect(addr)?;
        let slot = exec.reactor.io.borrow_mut().insert(IoSlot::default());
        if let Err(e) = exec.reactor.registry.register(
            &mut sock,
            Token(COSOCKET_BASE + slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            exec.reactor.io.borrow_mut().remove(slot);
            return Err(e);
        }
        let s = TcpStream { sock, slot, exec };
        // Writable (or an error) says the connect finished; then it succeeded if there is no
        // pending error and, when the poller also said hang-up, the socket has a peer (a
        // plain writable edge comes only for a connected socket, so that costs no
        // getpeername).
        std::future::poll_fn(|cx| s.poll_ready(Dir::Write, cx)).await;
        if let Some(e) = s.sock.take_error()? {
            return Err(e);
        }
        if !s.exec.reactor.io.borrow()[s.slot].hup {
            let _ = s.sock.set_nodelay(true);
            return Ok(s);
        }
        match s.sock.peer_addr() {
            Ok(_) => {
                let _ = s.sock.set_nodelay(true);
                Ok(s)
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                Err(io::Error::from(io::ErrorKind::ConnectionRefused))
            }
            Err(e) => Err(e),
        }
    }

    /// [`connect`](Self::connect), failing with `TimedOut` after `limit` on the loop's clock.
    pub async fn connect_timeout(addr: SocketAddr, limit: Duration) -> io::Result<TcpStream> {
        match super::timeout(limit, Self::connect(addr)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
        }
    }

    /// Wait until the socket was last seen ready in `dir` (set by the loop's events).
    fn poll_ready(&self, dir: Dir, cx: &mut Context<'_>) -> Poll<()> {
        let mut io = self.exec.reactor.io.borrow_mut();
        let s = &mut io[self.slot];
        let (ready, waker) = match dir {
            Dir::Read => (s.readable, &mut s.read_waker),
            Dir::Write => (s.writable, &mut s.write_waker),
        };
        if ready {
            return Poll::Ready(());
        }
        *waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn clear(&self, dir: Dir) {
        let mut io = self.exec.reactor.io.borrow_mut();
        match dir {
            Dir::Read => io[self.slot].readable = false,
            Dir::Write => io[self.slot].writable = false,
        }
    }

    /// Run `op` on the socket while it was last seen ready in `dir`: its result, or pending
    /// (the waker parked) once the socket says `WouldBlock`.
    pub(super) fn poll_op(
        &mut self,
        dir: Dir,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&mut mio::net::TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        loop {
            if self.poll_ready(dir, cx).is_pending() {
                return Poll::Pending;
            }
            match op(&mut self.sock) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.clear(dir),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return Poll::Ready(r),
            }
        }
    }

    /// Poll-style read: what [`read`](Self::read) awaits (for `AsyncRead`-like adapters).
    ///
    /// A read that returns less than `buf` drained the socket (as the loop's own reads
    /// assume): the next one waits for the poller's next edge instead of asking the kernel
    /// for a `WouldBlock`, unless the poller said hang-up (the FIN may still be unread).
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let want = buf.len();
        let r = self.poll_op(Dir::Read, cx, |s| s.read(buf));
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 && n < want && !self.exec.reactor.io.borrow()[self.slot].hup {
                self.clear(Dir::Read);
            }
        }
        r
    }

    /// Poll-style write: what [`write`](Self::write) awaits.
    pub fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_op(Dir::Write, cx, |s| s.write(buf))
    }

    /// Read into `buf`; 0 at the peer's end of stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    /// Write from `buf`; returns how much the socket took.
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_write(cx, buf)).await
    }

    /// Write all of `buf`, waiting while the peer does not take it.
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        write_all(|cx, b| self.poll_write(cx, b), buf).await
    }

    /// Read until `buf` is full (`UnexpectedEof` if the stream ends first).
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        read_exact(|cx, b| self.poll_read(cx, b), buf).await
    }

    /// Shut down the read side, the write side (a FIN to the peer) or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.sock.shutdown(how)
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.sock.peer_addr()
    }

    /// Whether a read might find something (data, the end of stream, an error): the poller
    /// reported the socket readable since a read last met `WouldBlock`. `false` means a read
    /// now would only say `WouldBlock`, so a pool can trust an idle connection without one.
    pub fn maybe_readable(&self) -> bool {
        let io = self.exec.reactor.io.borrow();
        io[self.slot].readable || io[self.slot].hup
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }
}

/// Write all of `buf` through a poll-style write (`WriteZero` if it takes nothing).
pub(super) async fn write_all(
    mut write: impl FnMut(&mut Context<'_>, &[u8]) -> Poll<io::Result<usize>>,
    mut buf: &[u8],
) -> io::Result<()> {
    while !buf.is_empty() {
        let n = std::future::poll_fn(|cx| write(cx, buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

/// Fill `buf` through a poll-style read (`UnexpectedEof` if the stream ends first).
pub(super) async fn read_exact(
    mut read: impl FnMut(&mut Context<'_>, &mut [u8]) -> Poll<io::Result<usize>>,
    mut buf: &mut [u8],
) -> io::Result<()> {
    while !buf.is_empty() {
        let n = std::future::poll_fn(|cx| read(cx, buf)).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n..];
    }
    Ok(())
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        // Closing the socket takes it out of epoll (nothing else holds its descriptor): no
        // `epoll_ctl` to deregister it first.
        let slot = self.exec.reactor.io.borrow_mut().try_remove(self.slot);
        drop(slot);
    }
}

/// tokio's I/O traits (feature `tokio-io`): a cosocket works with async code written against
/// `tokio::io::{AsyncRead, AsyncWrite}` that does not need tokio's runtime (codecs, protocol
/// clients that take any stream). Wakers are the loop's; nothing here touches a tokio runtime.
#[cfg(feature = "tokio-io")]
mod tokio_io {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::TcpStream;

    impl tokio::io::AsyncRead for TcpStream {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let dst = buf.initialize_unfilled();
            match TcpStream::poll_read(this, cx, dst) {
                Poll::Ready(Ok(n)) => {
                    buf.advance(n);
                    Poll::Ready(Ok(()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        }
    }

    impl tokio::io::AsyncWrite for TcpStream {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            TcpStream::poll_write(self.get_mut(), cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            // Writes go straight to the socket: nothing is buffered here.
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(self.shutdown(std::net::Shutdown::Write))
        }
    }
}

/// The futures crates' I/O traits (feature `futures-io`): the same as the tokio ones above,
/// for code written against `futures_io::{AsyncRead, AsyncWrite}` (futures-util's helpers,
/// `asynchronous-codec`, crates made for async-std or smol that take any stream).
#[cfg(feature = "futures-io")]
mod futures_io_impl {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::TcpStream;

    impl futures_io::AsyncRead for TcpStream {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            TcpStream::poll_read(self.get_mut(), cx, buf)
        }
    }

    impl futures_io::AsyncWrite for TcpStream {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            TcpStream::poll_write(self.get_mut(), cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            // Writes go straight to the socket: nothing is buffered here.
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(self.shutdown(std::net::Shutdown::Write))
        }
    }
}
