//! [`FrameService`]: the frame protocol on herd-core — decoding, router dispatch, errors,
//! pings, heartbeat, flood guard, worker-pool replies — as a [`Handler`] per loop.
//!
//! `FrameService` is the shared, `Send + Sync` configuration; [`FrameService::protocol`] makes
//! one [`FrameProtocol`] per loop (pass it to [`Server::serve`](crate::Server::serve)). Per frame,
//! the protocol updates the connection's last-seen time, charges the flood guard (if on), answers
//! pings, and dispatches to the [`Router`]; a failing route becomes an error frame for its
//! request. Exceptional events are counted in a [`FrameStats`] shared by all loops (relaxed
//! atomics touched only on errors, floods, heartbeat closes and server pings, never for a
//! frame that is simply handled). This module never blocks and never reads a socket itself.
//!
//! The policies (error codes, panics, heartbeat, flood) are listed in the `frame` module's
//! documentation (`mod.rs`), which is what users read.

use std::collections::HashSet;
use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use herd_proto::frame::{self as wire, ErrorCode, Frame, FrameError, GOAWAY_ID, PING_ID, PONG_ID};

use super::codec::FrameCodec;
use super::guard::{Flood, FloodGuard, FloodLimits};
use super::router::{CloseInfo, FrameConn, Router};
use crate::clock::millis as ms;
use crate::pool::WorkerPool;
use crate::{CloseReason, Conn, Handler, LoopCx, Timer};

/// `on_notify` token of a worker-pool reply (its data is a whole encoded frame).
pub(crate) const POOL_REPLY: u64 = 0x6672_616d_6501; // "frame" + 1
/// Loop timer token of the heartbeat / ping sweep.
const SWEEP: u64 = 0x6672_616d_6502;
/// Shortest sweep period.
const MIN_SWEEP_MS: u64 = 10;
/// The per-loop set of peers already warned about flooding is forgotten past this size.
const FLOOD_LOG_CAP: usize = 4096;
/// Default pool when blocking routes exist and none was given: this many queued jobs.
const DEFAULT_POOL_QUEUE: usize = 1024;

/// The frame service's settings (limit, heartbeat, pings, flood guard), copied into every loop.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameConfig {
    pub(crate) max_frame: u32,
    heartbeat_ms: Option<u64>,
    ping_ms: Option<u64>,
    flood: FloodLimits,
}

/// What dispatching a frame needs: the router, the settings, the worker pool and the counters.
/// Each loop's [`FrameProtocol`] owns one; the routes it calls reach it through [`FrameConn`].
pub(crate) struct FrameDispatch<U: 'static> {
    pub(crate) router: Arc<Router<U>>,
    pub(crate) config: FrameConfig,
    pub(crate) pool: Option<WorkerPool>,
    pub(crate) counters: Arc<Counters>,
}

/// Counters of exceptional events, summed over all loops; see [`FrameService::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameStats {
    /// Requests for a message id with no route (answered `UNKNOWN_ID`).
    pub unknown_id: u64,
    /// Request bodies that did not decode (answered `BAD_BODY`).
    pub bad_body: u64,
    /// Handler errors (answered with the handler's code, `HANDLER` by default).
    pub handler_errors: u64,
    /// Blocking requests refused because the pool's queue was full (answered `BUSY`).
    pub busy: u64,
    /// `INTERNAL` answers: handler panics (inline or on the pool) and handlers that returned
    /// that code.
    pub panics: u64,
    /// Frames refused for their size field (answered `TOO_LARGE`, then closed).
    pub too_large: u64,
    /// Frames refused for breaking the framing rules (answered `PROTOCOL`, then closed).
    pub protocol: u64,
    /// Replies or pushes not sent because they exceeded `max_frame`.
    pub oversized: u64,
    /// Responses or errors from the peer with no route, ignored.
    pub ignored: u64,
    /// Connections closed by the flood guard.
    pub flood_closes: u64,
    /// Connections closed for silence past the heartbeat timeout.
    pub heartbeat_closes: u64,
    /// Pings the server sent to quiet connections.
    pub pings_sent: u64,
}

/// The atomic counterpart of [`FrameStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    unknown_id: AtomicU64,
    bad_body: AtomicU64,
    handler_errors: AtomicU64,
    busy: AtomicU64,
    panics: AtomicU64,
    too_large: AtomicU64,
    protocol: AtomicU64,
    oversized: AtomicU64,
    ignored: AtomicU64,
    flood_closes: AtomicU64,
    heartbeat_closes: AtomicU64,
    pings_sent: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// Count an error frame sent for a request, by its code.
    pub(crate) fn count_error(&self, code: ErrorCode) {
        bump(match code {
            ErrorCode::UnknownId => &self.unknown_id,
            ErrorCode::BadBody => &self.bad_body,
            ErrorCode::Busy => &self.busy,
            ErrorCode::Internal => &self.panics,
            ErrorCode::TooLarge => &self.oversized,
            _ => &self.handler_errors,
        });
    }

    pub(crate) fn bump_oversized(&self) {
        bump(&self.oversized);
    }

    fn snapshot(&self) -> FrameStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FrameStats {
            unknown_id: g(&self.unknown_id),
            bad_body: g(&self.bad_body),
            handler_errors: g(&self.handler_errors),
            busy: g(&self.busy),
            panics: g(&self.panics),
            too_large: g(&self.too_large),
            protocol: g(&self.protocol),
            oversized: g(&self.oversized),
            ignored: g(&self.ignored),
            flood_closes: g(&self.flood_closes),
            heartbeat_closes: g(&self.heartbeat_closes),
            pings_sent: g(&self.pings_sent),
        }
    }
}

/// A frame-protocol server: a [`Router`] plus limits, heartbeat, flood guard and worker pool.
///
/// Cheap to clone (the router is shared); keep a clone to read [`stats`](Self::stats).
///
/// ```no_run
/// use std::time::Duration;
/// use herd_core::frame::{FrameService, Router};
/// use herd_core::pool::WorkerPool;
/// use herd_core::Server;
///
/// let router = Router::new().route_raw(1, |_cx, body| Ok(Some(body.to_vec())));
/// let frames = FrameService::new(router)
///     .max_frame(1 << 20)
///     .heartbeat_timeout(Duration::from_secs(60))
///     .flood(1_000, 1 << 20)
///     .pool(WorkerPool::new(4, 1024));
/// let f2 = frames.clone();
/// let server = Server::new().bind("127.0.0.1:7000")?.serve(move || f2.protocol())?;
/// server.join();
/// println!("{:?}", frames.stats());
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct FrameService<U: 'static = ()> {
    router: Arc<Router<U>>,
    config: FrameConfig,
    pool: Option<WorkerPool>,
    default_pool: Arc<OnceLock<WorkerPool>>,
    counters: Arc<Counters>,
}

impl<U: 'static> Clone for FrameService<U> {
    fn clone(&self) -> Self {
        FrameService {
            router: self.router.clone(),
            config: self.config,
            pool: self.pool.clone(),
            default_pool: self.default_pool.clone(),
            counters: self.counters.clone(),
        }
    }
}

impl<U: 'static> FrameService<U> {
    /// A server for `router` with a 4 MiB frame limit, no heartbeat, no server pings and no
    /// flood guard. If the router has blocking routes and no [`pool`](Self::pool) is given,
    /// one is made on first use (a thread per core, 1024 queued jobs).
    pub fn new(router: Router<U>) -> FrameService<U> {
        FrameService {
            router: Arc::new(router),
            config: FrameConfig {
                max_frame: wire::DEFAULT_MAX_FRAME,
                heartbeat_ms: None,
                ping_ms: None,
                flood: FloodLimits::default(),
            },
            pool: None,
            default_pool: Arc::new(OnceLock::new()),
            counters: Arc::default(),
        }
    }

    /// Largest body accepted and sent. A longer incoming frame is refused from its header
    /// ([`ErrorCode::TooLarge`], then close).
    pub fn max_frame(mut self, bytes: u32) -> Self {
        self.config.max_frame = bytes;
        self
    }

    /// Close connections that send nothing (not even a ping) for longer than `timeout`.
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.config.heartbeat_ms = Some(ms(timeout).max(1));
        self
    }

    /// Ping connections that have been quiet for `interval` (once per quiet interval), so a
    /// live client that only listens answers with a pong and stays within the heartbeat.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.config.ping_ms = Some(ms(interval).max(1));
        self
    }

    /// Turn the flood guard on: at most `msgs_per_sec` frames and `bytes_per_sec` bytes per
    /// second per connection (bursts of one second's worth). See [`FloodLimits`].
    pub fn flood(self, msgs_per_sec: u64, bytes_per_sec: u64) -> Self {
        self.flood_limits(FloodLimits {
            msgs_per_sec: Some(msgs_per_sec),
            bytes_per_sec: Some(bytes_per_sec),
        })
    }

    /// Set the flood limits dimension by dimension (`None` = unlimited).
    pub fn flood_limits(mut self, limits: FloodLimits) -> Self {
        self.config.flood = limits;
        self
    }

    /// Run blocking routes on `pool`.
    pub fn pool(mut self, pool: WorkerPool) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The protocol handler for one loop: `Server::new().serve(move || frames.protocol())`.
    pub fn protocol(&self) -> FrameProtocol<U> {
        let pool = match (&self.pool, self.router.has_blocking_routes()) {
            (Some(p), _) => Some(p.clone()),
            (None, true) => Some(
                self.default_pool
                    .get_or_init(|| {
                        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
                        WorkerPool::new(n, DEFAULT_POOL_QUEUE)
                    })
                    .clone(),
            ),
            (None, false) => None,
        };
        FrameProtocol {
            dispatch: FrameDispatch {
                router: self.router.clone(),
                config: self.config,
                pool,
                counters: self.counters.clone(),
            },
            flood_logged: HashSet::new(),
            next_ping_id: 0,
        }
    }

    /// Counters summed over every loop made from this server (and its clones).
    pub fn stats(&self) -> FrameStats {
        self.counters.snapshot()
    }

    /// The blocking pool's `(queued jobs, queue capacity)`, if it has one yet.
    pub fn pool_queue(&self) -> Option<(usize, usize)> {
        self.pool
            .as_ref()
            .or_else(|| self.default_pool.get())
            .map(|p| (p.queued(), p.capacity()))
    }
}

/// Per-connection state of the frame server: the user data and the guards' bookkeeping.
pub struct FrameConnState<U> {
    pub(crate) user: U,
    last_seen: u64,
    last_ping: u64,
    pub(crate) pending_jobs: u32,
    flood: Option<Box<FloodGuard>>,
}

impl<U> FrameConnState<U> {
    /// The connection's user data.
    pub fn user(&mut self) -> &mut U {
        &mut self.user
    }

    /// Requests of this connection still running on the worker pool.
    pub fn pending_jobs(&self) -> u32 {
        self.pending_jobs
    }
}

/// The frame protocol's [`Handler`] for one loop (made by [`FrameService::protocol`]).
pub struct FrameProtocol<U: 'static = ()> {
    dispatch: FrameDispatch<U>,
    flood_logged: HashSet<IpAddr>,
    next_ping_id: u32,
}

impl<U: 'static> FrameProtocol<U> {
    fn flooded(&mut self, cx: &mut Conn<'_, Self>, kind: Flood) {
        bump(&self.dispatch.counters.flood_closes);
        let ip = cx.peer_addr().ip();
        if self.flood_logged.len() >= FLOOD_LOG_CAP {
            self.flood_logged.clear();
        }
        if self.flood_logged.insert(ip) {
            tracing::warn!(
                "conn {} ({}): over the flood limit ({kind}); closing (further floods from {ip} \
                 are not logged on this loop)",
                cx.id(),
                cx.peer_addr()
            );
        }
        cx.close_with(CloseReason::Flood, false);
    }

    fn sweep_period(&self) -> Option<u64> {
        let c = &self.dispatch.config;
        let quarter = |t: Option<u64>| t.map(|t| (t / 4).max(MIN_SWEEP_MS));
        match (quarter(c.heartbeat_ms), quarter(c.ping_ms)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn sweep(&mut self, lp: &mut LoopCx<'_, Self>) {
        let c = self.dispatch.config;
        let counters = &self.dispatch.counters;
        let next_ping_id = &mut self.next_ping_id;
        lp.for_each(|cx, st| {
            let now = cx.now_ms();
            let silent = now.saturating_sub(st.last_seen);
            if let Some(hb) = c.heartbeat_ms {
                if silent > hb {
                    bump(&counters.heartbeat_closes);
                    tracing::debug!(
                        "conn {} ({}): silent for {silent} ms (heartbeat {hb} ms); closing",
                        cx.id(),
                        cx.peer_addr()
                    );
                    cx.close_with(CloseReason::Heartbeat, false);
                    return;
                }
            }
            if let Some(every) = c.ping_ms {
                if silent >= every && now.saturating_sub(st.last_ping) >= every {
                    st.last_ping = now;
                    *next_ping_id = next_ping_id.wrapping_add(1);
                    let id = *next_ping_id;
                    cx.with_output(|b| wire::encode_ping(b, id));
                    bump(&counters.pings_sent);
                }
            }
        });
    }
}

impl<U: 'static> Handler for FrameProtocol<U> {
    type State = FrameConnState<U>;
    type Codec = FrameCodec;

    fn new_codec(&mut self) -> FrameCodec {
        FrameCodec::new(self.dispatch.config.max_frame)
    }

    fn on_open(&mut self, cx: &mut Conn<'_, Self>) -> Option<FrameConnState<U>> {
        let now = cx.now_ms();
        let limits = &self.dispatch.config.flood;
        Some(FrameConnState {
            user: self.dispatch.router.new_user(),
            last_seen: now,
            last_ping: now,
            pending_jobs: 0,
            flood: (!limits.is_off()).then(|| Box::new(FloodGuard::new(limits, now))),
        })
    }

    fn on_message(
        &mut self,
        cx: &mut Conn<'_, Self>,
        st: &mut FrameConnState<U>,
        frame: Frame<'_>,
    ) {
        let now = cx.now_ms();
        st.last_seen = now;
        let h = frame.header;
        if let Some(guard) = st.flood.as_mut() {
            if let Err(kind) = guard.admit(h.frame_len() as u64, now) {
                return self.flooded(cx, kind);
            }
        }
        match h.msg_id {
            PING_ID => {
                cx.with_output(|b| wire::encode_pong(b, h.request_id));
                return;
            }
            PONG_ID | GOAWAY_ID => return,
            _ => {}
        }
        crate::stats::frame_request(h.msg_id);
        let dispatch = &self.dispatch;
        let Some(route) = dispatch.router.find(h.msg_id) else {
            if h.flags.is_response() || h.flags.is_error() {
                bump(&dispatch.counters.ignored);
                return;
            }
            dispatch.counters.count_error(ErrorCode::UnknownId);
            let text = format!("no handler for message id {}", h.msg_id);
            cx.with_output(|b| wire::encode_error(b, h.request_id, ErrorCode::UnknownId, &text));
            return;
        };
        let mut fcx = FrameConn {
            conn: cx,
            state: st,
            dispatch,
            msg_id: h.msg_id,
            request_id: h.request_id,
        };
        match catch_unwind(AssertUnwindSafe(|| route(&mut fcx, frame.body))) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                dispatch.counters.count_error(e.code());
                cx.with_output(|b| wire::encode_error(b, h.request_id, e.code(), e.text()));
            }
            Err(panic) => {
                dispatch.counters.count_error(ErrorCode::Internal);
                tracing::error!(
                    "conn {} ({}): handler for message {} panicked: {}; closing",
                    cx.id(),
                    cx.peer_addr(),
                    h.msg_id,
                    panic_text(&panic)
                );
                cx.with_output(|b| {
                    wire::encode_error(b, h.request_id, ErrorCode::Internal, "internal error")
                });
                cx.close_with(CloseReason::Panic, true);
            }
        }
    }

    fn on_decode_error(
        &mut self,
        cx: &mut Conn<'_, Self>,
        _st: &mut FrameConnState<U>,
        err: &FrameError,
    ) {
        let counters = &self.dispatch.counters;
        bump(match err {
            FrameError::TooLarge { .. } => &counters.too_large,
            _ => &counters.protocol,
        });
        let text = err.to_string();
        cx.with_output(|b| wire::encode_error(b, 0, err.code(), &text));
    }

    fn on_notify(
        &mut self,
        cx: &mut Conn<'_, Self>,
        st: &mut FrameConnState<U>,
        token: u64,
        data: Bytes,
    ) {
        if token == POOL_REPLY {
            st.pending_jobs = st.pending_jobs.saturating_sub(1);
            cx.send_raw(&data);
        }
    }

    fn on_close(&mut self, cx: &mut Conn<'_, Self>, st: FrameConnState<U>, reason: CloseReason) {
        if let Some(hook) = self.dispatch.router.close_hook() {
            let info = CloseInfo {
                id: cx.id(),
                peer_addr: cx.peer_addr(),
                reason,
            };
            hook(st.user, info);
        }
    }

    fn on_loop_start(&mut self, lp: &mut LoopCx<'_, Self>) {
        if let Some(period) = self.sweep_period() {
            let _: Timer = lp.run_every(Duration::from_millis(period), SWEEP);
        }
    }

    fn on_loop_timer(&mut self, lp: &mut LoopCx<'_, Self>, token: u64) {
        if token == SWEEP {
            self.sweep(lp);
        }
    }

    /// A graceful stop: tell the client to send new requests elsewhere (GOAWAY); replies to
    /// requests in flight still go out, and the connection closes once quiet for the drain
    /// grace.
    fn on_stop(&mut self, cx: &mut Conn<'_, Self>, _st: &mut FrameConnState<U>) {
        cx.with_output(wire::encode_goaway);
    }

    fn is_busy(&self, st: &FrameConnState<U>) -> bool {
        st.pending_jobs > 0
    }
}

/// The message of a caught panic, for the log line.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s
    } else {
        "(no message)"
    }
}
