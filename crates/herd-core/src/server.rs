//! Starting and stopping a server: options, listeners, accept modes, the [`ServerHandle`].
//!
//! [`Server`] collects options and listen addresses and [`Server::serve`] starts one thread per
//! event loop (each calls the handler factory once, so handlers need not be `Send`). Two accept
//! modes, chosen by [`AcceptMode`]:
//! - [`AcceptMode::ReusePort`] (default): every loop has its own `SO_REUSEPORT` listener and the
//!   kernel spreads connections; no acceptor thread. Listeners passed in with
//!   [`Server::listener`] (e.g. inherited from a master process) are shared by all loops.
//! - [`AcceptMode::Acceptor`]: one thread accepts and hands connections to loops round-robin or
//!   to the loop with the fewest connections, skipping loops that are full.
//!
//! Either way, on EMFILE/ENFILE accepting pauses for 500 ms (logged once, counted) instead of
//! spinning, and connections over `max_connections` (global) or `max_connections_per_loop`
//! are closed at once and counted as [`CloseReason::Limit`](crate::CloseReason::Limit).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::clock::{system_clock, SharedClock};
use crate::event_loop::{EventLoop, LoopReport, WAKER};
use crate::handler::Handler;
use crate::inbox::{Cmd, Inbox};
use crate::reason::CloseReason;
use crate::stats::Stats;

/// How connections reach loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcceptMode {
    /// One `SO_REUSEPORT` listener per loop; the kernel balances.
    ReusePort,
    /// One accept thread hands connections to loops.
    Acceptor(Balance),
}

/// How the acceptor thread picks a loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    /// Each loop in turn (skipping full loops).
    RoundRobin,
    /// The loop with the fewest open connections.
    LeastConnections,
}

/// Server options. `Default` gives sensible production values.
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of event loops (threads). Default: available cores.
    pub loops: usize,
    /// How connections reach loops. Default: [`AcceptMode::ReusePort`].
    pub accept_mode: AcceptMode,
    /// Close a connection that has received nothing for this long. Default: none.
    pub idle_timeout: Option<Duration>,
    /// Maximum open connections over all loops. Default: 1,000,000.
    pub max_connections: usize,
    /// Maximum open connections per loop. Default: 1,000,000.
    pub max_connections_per_loop: usize,
    /// Maximum concurrent connections from one IP address (all loops). Default: none.
    pub max_connections_per_ip: Option<usize>,
    /// Reads per readiness event before moving on to other connections. Default: 16.
    pub read_budget: usize,
    /// The loop's scratch read buffer, in bytes. Default: 64 KiB.
    pub scratch_size: usize,
    /// Size of pooled per-connection buffers. Default: 4 KiB.
    pub buffer_size: usize,
    /// Stop reading from a peer whose pending output passes this. Default: 1 MiB.
    pub write_high_water: usize,
    /// Resume reading once pending output drops to this. Default: 256 KiB.
    pub write_low_water: usize,
    /// Close a connection whose pending output passes this (a reader that never reads).
    /// Default: 64 MiB.
    pub max_write_buffer: usize,
    /// Listen backlog. Default: 1024.
    pub backlog: i32,
    /// Set `TCP_NODELAY` on accepted sockets. Default: true.
    pub nodelay: bool,
    /// `TCP_NOTSENT_LOWAT` for accepted sockets: the kernel takes at most about this many
    /// not-yet-sent bytes per socket and reports it writable again once the unsent part drops
    /// below it. It keeps bulk data (large replies, `sendfile` bodies) in herd's queue instead
    /// of the socket's, so it goes out from the loop's thread as the peer acknowledges rather
    /// than from whichever thread handles the peer's acknowledgements, and it bounds kernel
    /// memory per slow reader. Small replies are not affected. `None` leaves the system
    /// default (no limit). Linux only. Default: 64 KiB.
    pub notsent_lowat: Option<u32>,
    /// Expect a PROXY protocol header (v1 or v2) before each connection's first byte and take
    /// the client address from it (see [`proxy`](crate::proxy)). Default: none.
    pub proxy_protocol: Option<crate::proxy::ProxyProtocol>,
    /// During a graceful stop, a connection with nothing in flight is closed only once it has
    /// received nothing for this long (Envoy's drain, not nginx's close-at-once): a kept-alive
    /// client's next request is usually already on its way, and HTTP answers it with
    /// `Connection: close` instead of losing it. Zero closes idle connections at once.
    /// Default: zero.
    pub drain_grace: Duration,
    /// Lingering close, nginx's `lingering_close`: a connection that closes after its output
    /// (a response with `Connection: close`, an error reply, a drain) shuts down its write
    /// side first and reads and drops what the peer still sends, for at most this long, so
    /// a request the peer pipelined behind does not turn the close into a reset that can
    /// destroy the last response before the peer reads it. Zero closes at once. Default: zero.
    pub lingering_close: Duration,
    /// Close a connection whose queued output the peer has taken no byte of for this long
    /// (nginx's `send_timeout`), with [`CloseReason::SendTimeout`]: a client that stops
    /// reading cannot hold its connection and its queued response forever. Default: none.
    pub send_timeout: Option<Duration>,
    /// With `send_timeout`: once output has been waiting for the peer that long, the peer
    /// must have taken it at this many bytes per second on average, or the connection is
    /// reset like a send timeout (a reader that takes a byte just inside every timeout
    /// cannot hold its connection for hours). Default: none.
    pub send_min_rate: Option<u32>,
    /// The overload guard: a memory budget for what connections hold, shared with every
    /// server given the same one (see [`overload`](crate::overload)). Default: none.
    pub memory_budget: Option<Arc<crate::overload::MemoryBudget>>,
}

/// Default for [`Options::notsent_lowat`].
pub const NOTSENT_LOWAT: u32 = 64 * 1024;

impl Default for Options {
    fn default() -> Self {
        Options {
            loops: std::thread::available_parallelism().map_or(1, |n| n.get()),
            accept_mode: AcceptMode::ReusePort,
            idle_timeout: None,
            max_connections: 1_000_000,
            max_connections_per_loop: 1_000_000,
            max_connections_per_ip: None,
            read_budget: 16,
            scratch_size: 64 * 1024,
            buffer_size: 4 * 1024,
            write_high_water: 1024 * 1024,
            write_low_water: 256 * 1024,
            max_write_buffer: 64 * 1024 * 1024,
            backlog: 1024,
            nodelay: true,
            notsent_lowat: Some(NOTSENT_LOWAT),
            proxy_protocol: None,
            drain_grace: Duration::ZERO,
            lingering_close: Duration::ZERO,
            send_timeout: None,
            send_min_rate: None,
            memory_budget: None,
        }
    }
}

/// What every thread of one [`Server`] (its loops and the acceptor) shares: the options, and
/// the open-connection counts that enforce the `max_connections*` limits (touched on accept
/// and close only, never per message).
pub(crate) struct ServerShared {
    pub(crate) opts: Options,
    /// Terminate TLS on every accepted connection.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsAcceptor>,
    open_total: AtomicUsize,
    open_per_loop: Vec<AtomicUsize>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    rejected_by_acceptor: AtomicU64,
    acceptor_fd_exhausted: AtomicU64,
    /// Connections refused for `max_connections_per_ip` (once per refused accept).
    refused_per_ip: AtomicU64,
}

impl ServerShared {
    /// The address a new connection from `peer` counts against for `max_connections_per_ip`
    /// at accept: none behind the PROXY protocol (the socket's peer is the balancer; the
    /// client's address is counted once its header has been read, [`try_admit_ip`]).
    ///
    /// [`try_admit_ip`]: ServerShared::try_admit_ip
    #[inline]
    pub(crate) fn admit_key(&self, peer: SocketAddr) -> Option<IpAddr> {
        match self.opts.proxy_protocol {
            None => Some(peer.ip()),
            Some(_) => None,
        }
    }

    /// Count a new connection (from `ip`, if given) on loop `i` if limits allow; false means
    /// refuse it. Touched once per accept and once per close, never per message.
    pub(crate) fn try_admit(&self, i: usize, ip: Option<IpAddr>) -> bool {
        if let Some(ip) = ip {
            if !self.try_admit_ip(ip) {
                return false;
            }
        }
        if !self.admit_counts(i) {
            if let Some(ip) = ip {
                self.release_ip(ip);
            }
            return false;
        }
        true
    }

    /// Count a connection against `max_connections_per_ip` for `ip`; false means refuse it.
    pub(crate) fn try_admit_ip(&self, ip: IpAddr) -> bool {
        if let Some(max) = self.opts.max_connections_per_ip {
            let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(ip).or_insert(0);
            if *n >= max {
                if *n == 0 {
                    map.remove(&ip);
                }
                self.refused_per_ip.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            *n += 1;
        }
        true
    }

    fn release_ip(&self, ip: IpAddr) {
        if self.opts.max_connections_per_ip.is_some() {
            let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = map.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&ip);
                }
            }
        }
    }

    fn admit_counts(&self, i: usize) -> bool {
        if self.open_total.fetch_add(1, Ordering::AcqRel) >= self.opts.max_connections {
            self.open_total.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        if self.open_per_loop[i].fetch_add(1, Ordering::AcqRel)
            >= self.opts.max_connections_per_loop
        {
            self.open_per_loop[i].fetch_sub(1, Ordering::AcqRel);
            self.open_total.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Undo `try_admit` when the connection is gone.
    pub(crate) fn release(&self, i: usize, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            self.release_ip(ip);
        }
        self.open_per_loop[i].fetch_sub(1, Ordering::AcqRel);
        self.open_total.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Builder for a server.
///
/// ```no_run
/// use herd_core::{codec::BytesCodec, Conn, Handler, Server};
/// struct Echo;
/// impl Handler for Echo {
///     type State = ();
///     type Codec = BytesCodec;
///     fn new_codec(&mut self) -> BytesCodec { BytesCodec }
///     fn on_open(&mut self, _: &mut Conn<'_, Self>) -> Option<()> { Some(()) }
///     fn on_message(&mut self, cx: &mut Conn<'_, Self>, _: &mut (), m: &[u8]) { cx.send(m) }
/// }
/// let server = Server::new().bind("127.0.0.1:9000")?.loops(2).serve(|| Echo)?;
/// println!("listening on {}", server.local_addr());
/// server.join();
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Server {
    opts: Options,
    addrs: Vec<SocketAddr>,
    listeners: Vec<std::net::TcpListener>,
    clock: SharedClock,
    #[cfg(feature = "tls")]
    tls: Option<crate::tls::TlsAcceptor>,
}

impl Default for Server {
    fn default() -> Self {
        Server::new()
    }
}

impl Server {
    /// A server with default [`Options`] and no listeners yet.
    pub fn new() -> Self {
        Server {
            opts: Options::default(),
            addrs: Vec::new(),
            listeners: Vec::new(),
            clock: system_clock(),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Terminate TLS on every connection of this server: handlers see plaintext.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, acceptor: crate::tls::TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    /// Listen on an address (port 0 picks a free port; see [`ServerHandle::local_addr`]).
    pub fn bind(mut self, addr: impl ToSocketAddrs) -> io::Result<Self> {
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address"))?;
        self.addrs.push(addr);
        Ok(self)
    }

    /// Serve on an already bound and listening socket (e.g. inherited from a master process).
    pub fn listener(mut self, listener: std::net::TcpListener) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Replace all options.
    pub fn options(mut self, opts: Options) -> Self {
        self.opts = opts;
        self
    }

    /// Number of event loops.
    pub fn loops(mut self, n: usize) -> Self {
        self.opts.loops = n.max(1);
        self
    }

    /// How connections reach loops.
    pub fn accept_mode(mut self, mode: AcceptMode) -> Self {
        self.opts.accept_mode = mode;
        self
    }

    /// Close connections that received nothing for `d`.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.opts.idle_timeout = Some(d);
        self
    }

    /// Global connection limit.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.opts.max_connections = n;
        self
    }

    /// Per-loop connection limit.
    pub fn max_connections_per_loop(mut self, n: usize) -> Self {
        self.opts.max_connections_per_loop = n;
        self
    }

    /// Per-IP concurrent connection limit.
    pub fn max_connections_per_ip(mut self, n: usize) -> Self {
        self.opts.max_connections_per_ip = Some(n);
        self
    }

    /// Expect a PROXY protocol header (v1 or v2) on every connection, from the sources
    /// `proxy.trusted` allows; the peer address handlers see is the client's from the header.
    pub fn proxy_protocol(mut self, proxy: crate::proxy::ProxyProtocol) -> Self {
        self.opts.proxy_protocol = Some(proxy);
        self
    }

    /// During a graceful stop, close a connection with nothing in flight only after it has
    /// been quiet for `grace` ([`Options::drain_grace`]).
    pub fn drain_grace(mut self, grace: Duration) -> Self {
        self.opts.drain_grace = grace;
        self
    }

    /// Close connections whose peer takes no output for `timeout` ([`Options::send_timeout`]).
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.opts.send_timeout = Some(timeout);
        self
    }

    /// With a send timeout: the slowest average rate a peer may take waiting output at
    /// ([`Options::send_min_rate`]).
    pub fn send_min_rate(mut self, bytes_per_sec: u32) -> Self {
        self.opts.send_min_rate = Some(bytes_per_sec);
        self
    }

    /// Guard memory with `budget` ([`Options::memory_budget`]).
    pub fn memory_budget(mut self, budget: Arc<crate::overload::MemoryBudget>) -> Self {
        self.opts.memory_budget = Some(budget);
        self
    }

    /// Linger this long after a close that follows output ([`Options::lingering_close`]).
    pub fn lingering_close(mut self, linger: Duration) -> Self {
        self.opts.lingering_close = linger;
        self
    }

    /// Reads per readiness event per connection.
    pub fn read_budget(mut self, n: usize) -> Self {
        self.opts.read_budget = n.max(1);
        self
    }

    /// Output watermarks: pause reading above `high`, resume at or below `low`.
    pub fn write_watermarks(mut self, low: usize, high: usize) -> Self {
        self.opts.write_low_water = low.min(high);
        self.opts.write_high_water = high;
        self
    }

    /// Close connections whose pending output passes `n` bytes.
    pub fn max_write_buffer(mut self, n: usize) -> Self {
        self.opts.max_write_buffer = n;
        self
    }

    /// `TCP_NOTSENT_LOWAT` for accepted sockets, or `None` for the system default; see
    /// [`Options::notsent_lowat`].
    pub fn notsent_lowat(mut self, bytes: Option<u32>) -> Self {
        self.opts.notsent_lowat = bytes;
        self
    }

    /// Use this clock for timers (tests pass a [`FakeClock`](crate::clock::FakeClock)).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Start the loops (and the acceptor thread in acceptor mode) and return at once.
    pub fn serve<H, F>(self, factory: F) -> io::Result<ServerHandle>
    where
        H: Handler,
        F: Fn() -> H + Send + Sync + 'static,
    {
        let Server {
            opts,
            addrs,
            listeners: given,
            clock,
            #[cfg(feature = "tls")]
            tls,
        } = self;
        if addrs.is_empty() && given.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "nothing to listen on",
            ));
        }
        let n = opts.loops.max(1);
        let mode = opts.accept_mode;
        // Listeners: per loop (reuseport) or for the acceptor.
        let mut per_loop: Vec<Vec<std::net::TcpListener>> = (0..n).map(|_| Vec::new()).collect();
        let mut acceptor_listeners = Vec::new();
        let mut local_addrs = Vec::new();
        let tune = |l: &std::net::TcpListener| {
            crate::sys::set_inherited_options(l, opts.nodelay, opts.notsent_lowat)
        };
        for l in given {
            l.set_nonblocking(true)?;
            tune(&l)?;
            local_addrs.push(l.local_addr()?);
            match mode {
                AcceptMode::ReusePort => {
                    for slot in per_loop.iter_mut() {
                        slot.push(l.try_clone()?);
                    }
                }
                AcceptMode::Acceptor(_) => acceptor_listeners.push(l),
            }
        }
        for addr in addrs {
            match mode {
                AcceptMode::ReusePort => {
                    let first = crate::sys::listen(addr, true, opts.backlog)?;
                    tune(&first)?;
                    let actual = first.local_addr()?;
                    local_addrs.push(actual);
                    per_loop[0].push(first);
                    for slot in per_loop.iter_mut().skip(1) {
                        let l = crate::sys::listen(actual, true, opts.backlog)?;
                        tune(&l)?;
                        slot.push(l);
                    }
                }
                AcceptMode::Acceptor(_) => {
                    let l = crate::sys::listen(addr, false, opts.backlog)?;
                    tune(&l)?;
                    local_addrs.push(l.local_addr()?);
                    acceptor_listeners.push(l);
                }
            }
        }
        let shared = Arc::new(ServerShared {
            open_total: AtomicUsize::new(0),
            open_per_loop: (0..n).map(|_| AtomicUsize::new(0)).collect(),
            per_ip: Mutex::new(HashMap::new()),
            rejected_by_acceptor: AtomicU64::new(0),
            refused_per_ip: AtomicU64::new(0),
            acceptor_fd_exhausted: AtomicU64::new(0),
            opts,
            #[cfg(feature = "tls")]
            tls,
        });
        let factory = Arc::new(factory);
        let mut inboxes = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for (i, ls) in per_loop.into_iter().enumerate() {
            let poll = Poll::new()?;
            let inbox = Arc::new(Inbox::new(Waker::new(poll.registry(), WAKER)?));
            let ls: Vec<TcpListener> = ls.into_iter().map(TcpListener::from_std).collect();
            let (factory, shared, clock, inbox2) = (
                factory.clone(),
                shared.clone(),
                clock.clone(),
                inbox.clone(),
            );
            let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
            let t = std::thread::Builder::new()
                .name(format!("herd-loop-{i}"))
                .spawn(move || {
                    let handler = factory();
                    match EventLoop::new(i, handler, poll, inbox2, ls, shared, clock) {
                        Ok(lp) => {
                            let _ = ready_tx.send(Ok(()));
                            lp.run()
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            LoopReport::default()
                        }
                    }
                })?;
            ready_rx
                .recv()
                .unwrap_or_else(|_| Err(io::Error::other("loop thread died at start")))?;
            inboxes.push(inbox);
            threads.push(t);
        }
        let acceptor = match mode {
            AcceptMode::Acceptor(balance) => Some(Acceptor::start(
                acceptor_listeners,
                balance,
                inboxes.clone(),
                shared.clone(),
            )?),
            AcceptMode::ReusePort => None,
        };
        Ok(ServerHandle {
            inboxes,
            threads,
            acceptor,
            local_addrs,
            shared,
        })
    }
}

/// What a stop did.
#[derive(Debug, Clone, Default)]
pub struct StopReport {
    /// Connections closed because they had nothing in flight (at once or once finished).
    pub closed_graceful: u64,
    /// Connections still busy at the deadline and closed by force.
    pub closed_forced: u64,
    /// Final counters of all loops.
    pub stats: Stats,
}

/// A running server: addresses, counters, stop.
pub struct ServerHandle {
    inboxes: Vec<Arc<Inbox>>,
    threads: Vec<JoinHandle<LoopReport>>,
    acceptor: Option<Acceptor>,
    local_addrs: Vec<SocketAddr>,
    shared: Arc<ServerShared>,
}

impl ServerHandle {
    /// The first listening address (with the actual port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    /// Every listening address.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Number of loops.
    pub fn loops(&self) -> usize {
        self.inboxes.len()
    }

    /// Counters of each loop (asked through their queues; waits for the answers).
    pub fn loop_stats(&self) -> Vec<Stats> {
        let mut rxs = Vec::new();
        for inbox in &self.inboxes {
            let (tx, rx) = mpsc::channel();
            inbox.push(Cmd::Stats(tx));
            rxs.push(rx);
        }
        rxs.into_iter()
            .map(|rx| rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default())
            .collect()
    }

    /// Counters summed over all loops (and the acceptor's refusals).
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for s in self.loop_stats() {
            total.add(&s);
        }
        self.add_acceptor_stats(&mut total);
        total
    }

    fn add_acceptor_stats(&self, total: &mut Stats) {
        let rejected = self.shared.rejected_by_acceptor.load(Ordering::Relaxed);
        total.accepted += rejected;
        total.closed[CloseReason::Limit.index()] += rejected;
        total.accept_fd_exhausted += self.shared.acceptor_fd_exhausted.load(Ordering::Relaxed);
        total.refused_per_ip += self.shared.refused_per_ip.load(Ordering::Relaxed);
    }

    /// Wake every loop so it re-reads its clock and runs due timers (for fake clocks).
    pub fn tick(&self) {
        for inbox in &self.inboxes {
            inbox.push(Cmd::Tick);
        }
    }

    /// Begin a graceful stop without waiting: stop accepting, close idle connections, close
    /// the rest by force `grace` from now. Call [`join`](Self::join) to wait.
    pub fn shutdown(&self, grace: Duration) {
        if let Some(a) = &self.acceptor {
            a.stop();
        }
        for inbox in &self.inboxes {
            inbox.push(Cmd::Stop {
                grace_ms: crate::clock::millis(grace),
            });
        }
    }

    /// Graceful stop and wait: see [`shutdown`](Self::shutdown).
    pub fn stop(self, grace: Duration) -> StopReport {
        self.shutdown(grace);
        self.join()
    }

    /// Wait until the loops have exited (after a stop) and report.
    pub fn join(mut self) -> StopReport {
        let mut report = StopReport::default();
        for t in self.threads.drain(..) {
            if let Ok(r) = t.join() {
                report.closed_graceful += r.closed_graceful;
                report.closed_forced += r.closed_forced;
                report.stats.add(&r.stats);
            }
        }
        if let Some(a) = self.acceptor.take() {
            a.stop();
            let _ = a.thread.join();
        }
        self.add_acceptor_stats(&mut report.stats);
        report
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown(Duration::ZERO);
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        }
        if let Some(a) = self.acceptor.take() {
            a.stop();
            let _ = a.thread.join();
        }
    }
}

/// The accept thread of [`AcceptMode::Acceptor`].
struct Acceptor {
    thread: JoinHandle<()>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl Acceptor {
    fn start(
        listeners: Vec<std::net::TcpListener>,
        balance: Balance,
        inboxes: Vec<Arc<Inbox>>,
        shared: Arc<ServerShared>,
    ) -> io::Result<Acceptor> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut ls: Vec<TcpListener> = listeners.into_iter().map(TcpListener::from_std).collect();
        for (i, l) in ls.iter_mut().enumerate() {
            poll.registry().register(l, Token(i), Interest::READABLE)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("herd-acceptor".into())
            .spawn(move || accept_thread(poll, ls, balance, inboxes, shared, stop2))?;
        Ok(Acceptor {
            thread,
            stop,
            waker,
        })
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
    }
}

fn accept_thread(
    mut poll: Poll,
    listeners: Vec<TcpListener>,
    balance: Balance,
    inboxes: Vec<Arc<Inbox>>,
    shared: Arc<ServerShared>,
    stop: Arc<AtomicBool>,
) {
    let mut events = Events::with_capacity(64);
    let mut next = 0usize;
    let mut paused_until: Option<Instant> = None;
    let mut logged = false;
    loop {
        let timeout = paused_until.map(|t| t.saturating_duration_since(Instant::now()));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::error!("acceptor: poll: {e}");
                return;
            }
        }
        if stop.load(Ordering::Acquire) {
            return;
        }
        if let Some(t) = paused_until {
            if Instant::now() < t {
                continue;
            }
            paused_until = None;
        }
        'listeners: for l in &listeners {
            loop {
                match l.accept() {
                    Ok((stream, peer)) => {
                        logged = false;
                        let n = inboxes.len();
                        let pick = match balance {
                            Balance::RoundRobin => (0..n)
                                .map(|k| (next + k) % n)
                                .find(|&i| shared.try_admit(i, shared.admit_key(peer))),
                            Balance::LeastConnections => {
                                let mut order: Vec<usize> = (0..n).collect();
                                order.sort_by_key(|&i| {
                                    shared.open_per_loop[i].load(Ordering::Relaxed)
                                });
                                order
                                    .into_iter()
                                    .find(|&i| shared.try_admit(i, shared.admit_key(peer)))
                            }
                        };
                        match pick {
                            Some(i) => {
                                next = i + 1;
                                inboxes[i].push(Cmd::Adopt(stream, peer));
                            }
                            None => {
                                shared.rejected_by_acceptor.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!("connection from {peer} refused: all loops full");
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if crate::sys::is_fd_exhausted(&e) => {
                        shared.acceptor_fd_exhausted.fetch_add(1, Ordering::Relaxed);
                        if !logged {
                            logged = true;
                            tracing::error!("acceptor: accept: {e}; pausing accepts for 500 ms");
                        }
                        paused_until = Some(Instant::now() + Duration::from_millis(500));
                        break 'listeners;
                    }
                    Err(e) if crate::sys::is_transient_accept_error(&e) => continue,
                    Err(e) => {
                        tracing::warn!("acceptor: accept: {e}");
                        break;
                    }
                }
            }
        }
    }
}
