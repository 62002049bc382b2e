//! A worker process: started by the master as `herd --worker` with its listening sockets
//! inherited and its [`WorkerSpec`] (slot, generation, the validated configuration, descriptor
//! numbers) in the `HERD_WORKER` environment variable.
//!
//! The worker takes its sockets, starts one herd-core [`Server`](herd_core::Server) per
//! listener, tells the master it is ready (a datagram on the master's notification socket), and
//! then waits for signals: TERM/INT stop at once, QUIT stops gracefully (stop accepting, finish
//! in-flight work, close idle connections, force-close at `shutdown_timeout`), USR1 reopens the
//! logs, HUP is ignored (reloading is the master's job). It dies with the master
//! (`PR_SET_PDEATHSIG`, armed by the master when spawning it). It never binds, reads the
//! configuration file or forks.
//!
//! Exit codes: 0 stopped, 1 runtime failure, [`EXIT_FATAL`] (2) the configuration cannot work
//! (the master does not respawn it).

use std::fs::File;
use std::net::TcpListener;
use std::os::fd::RawFd;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use herd_core::ServerHandle;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::logging::Logs;
use crate::protocols::{self, Context};
use crate::signals::{Notifier, Signal, Waiter};
use crate::status::{
    unix_ms, FrameStatus, HttpStatus, ListenerStatus, OverloadStatus, ProcessStatus, ProxyStatus,
    SharedStatus, Status, StatusBoard, TlsStatus, WsStatus,
};

/// The environment variable carrying the [`WorkerSpec`] as JSON.
pub const WORKER_ENV: &str = "HERD_WORKER";

/// Exit code of a worker whose configuration cannot work; the master does not respawn it.
pub const EXIT_FATAL: i32 = 2;

/// Everything a worker needs from its master.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// The worker's slot (0-based).
    pub slot: usize,
    /// The configuration generation.
    pub generation: u64,
    /// The master's pid.
    pub master_pid: i32,
    /// When the master started (ms since the epoch).
    pub master_started_ms: u64,
    /// The master's notification socket (a connected datagram socket).
    pub notify_fd: RawFd,
    /// The file where workers share status snapshots (see [`SharedStatus`]), if any.
    #[serde(default)]
    pub status_fd: Option<RawFd>,
    /// `(listener name, descriptor)` of each shared `limit_req` table.
    #[serde(default)]
    pub rate_tables: Vec<(String, RawFd)>,
    /// `(listener name, descriptor)` for each listener.
    pub listeners: Vec<(String, RawFd)>,
    /// The validated configuration.
    pub config: Config,
    /// The master's TLS session-ticket secret (hex), shared by its workers.
    #[serde(default)]
    pub ticket_secret: Option<String>,
}

/// The text a worker sends when it is serving: `ready <pid> <slot> <generation>`.
pub fn ready_message(pid: u32, slot: usize, generation: u64) -> String {
    format!("ready {pid} {slot} {generation}")
}

/// Parse a [`ready_message`]: `(pid, slot, generation)`.
///
/// ```
/// use herd_server::worker::{parse_ready, ready_message};
/// assert_eq!(parse_ready(&ready_message(42, 1, 7)), Some((42, 1, 7)));
/// assert_eq!(parse_ready("hello"), None);
/// ```
pub fn parse_ready(msg: &str) -> Option<(u32, usize, u64)> {
    let mut it = msg.strip_prefix("ready ")?.split(' ');
    let r = (
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
    );
    it.next().is_none().then_some(r)
}

/// Run the worker; returns the process exit code.
pub fn run() -> i32 {
    let spec: WorkerSpec = match std::env::var(WORKER_ENV)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_json::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("herd worker: bad or missing {WORKER_ENV}: {e}");
            return EXIT_FATAL;
        }
    };
    let role = format!("worker {}", spec.slot);
    let logs = match Logs::init(&role, &spec.config.log) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("herd {role}: cannot open log: {e}");
            return EXIT_FATAL;
        }
    };
    match serve(&spec, &logs) {
        Ok(code) => code,
        Err((code, msg)) => {
            tracing::error!("{msg}");
            code
        }
    }
}

fn serve(spec: &WorkerSpec, logs: &Logs) -> Result<i32, (i32, String)> {
    let fatal = |m: String| (EXIT_FATAL, m);
    let mut waiter = Waiter::new(&[
        Signal::Term,
        Signal::Int,
        Signal::Quit,
        Signal::Usr1,
        Signal::Hup,
        Signal::Winch,
    ])
    .map_err(|e| (1, format!("cannot catch signals: {e}")))?;
    let notify = crate::sys::take_inherited_fd(spec.notify_fd)
        .map(|fd| Notifier::from_socket(UnixDatagram::from(fd)))
        .map_err(|e| fatal(format!("notification socket: {e}")))?;
    let board = StatusBoard::new(Status {
        version: env!("CARGO_PKG_VERSION").into(),
        master_pid: spec.master_pid,
        worker_pid: std::process::id(),
        worker_slot: spec.slot,
        generation: spec.generation,
        workers: spec.config.worker_count(),
        master_started_ms: spec.master_started_ms,
        worker_started_ms: unix_ms(),
        now_ms: unix_ms(),
        // The page's WebSocket section talks to the first HTTP listener's WebSocket path.
        ws_path: spec
            .config
            .listeners
            .iter()
            .find(|l| l.protocol == crate::config::Protocol::Http)
            .and_then(protocols::ws_path),
        listeners: Vec::new(),
        upstreams: Vec::new(),
        process: Default::default(),
        overload: None,
        totals: None,
    });
    let board = match spec.status_fd {
        Some(fd) => match crate::sys::take_inherited_fd(fd) {
            Ok(fd) => board.with_shared(SharedStatus::from_file(File::from(fd))),
            Err(e) => {
                tracing::warn!("status file descriptor {fd}: {e}; reporting this worker only");
                board
            }
        },
        None => board,
    };
    let cx = Context {
        status: board.clone(),
        logs: logs.clone(),
        ticket_secret: spec
            .ticket_secret
            .as_deref()
            .and_then(crate::tls::parse_secret),
        frames: Default::default(),
        rate_tables: spec
            .rate_tables
            .iter()
            .filter_map(|(name, fd)| {
                let table = crate::sys::take_inherited_fd(*fd)
                    .map(File::from)
                    .and_then(|f| herd_core::limit::RateTable::from_file(&f));
                match table {
                    Ok(t) => Some((name.clone(), std::sync::Arc::new(t))),
                    Err(e) => {
                        tracing::warn!("listener {name}: limit_req table (descriptor {fd}): {e}");
                        None
                    }
                }
            })
            .collect(),
        budget: spec
            .config
            .memory_budget
            .map(herd_core::overload::MemoryBudget::new),
    };
    let mut servers: Vec<(usize, ServerHandle)> = Vec::new();
    // A listener may come with more than one socket (slots left over after the worker count
    // dropped, see `ListenerSet::retain`): one server per listener accepts on all of them.
    let mut grouped: Vec<(&str, Vec<RawFd>)> = Vec::new();
    for (name, fd) in &spec.listeners {
        match grouped.iter_mut().find(|(n, _)| n == name) {
            Some((_, fds)) => fds.push(*fd),
            None => grouped.push((name, vec![*fd])),
        }
    }
    for (name, fds) in grouped {
        let Some(i) = spec.config.listeners.iter().position(|l| l.name == name) else {
            return Err(fatal(format!(
                "no listener named {name:?} in the configuration"
            )));
        };
        let l = &spec.config.listeners[i];
        let mut socks = Vec::with_capacity(fds.len());
        for fd in fds {
            let sock = crate::sys::take_inherited_fd(fd)
                .map(TcpListener::from)
                .map_err(|e| fatal(format!("listener {name}: descriptor {fd}: {e}")))?;
            socks.push(sock);
        }
        let handle = protocols::start(l, &spec.config, socks, &cx)
            .map_err(|e| fatal(format!("listener {name}: cannot start: {e}")))?;
        tracing::debug!("serving {} on {} ({})", name, l.bind, l.protocol.as_str());
        servers.push((i, handle));
    }
    let refresh = |servers: &[(usize, ServerHandle)]| {
        refresh(&board, spec, servers, &cx.frames, cx.budget.as_deref())
    };
    refresh(&servers);
    let msg = crate::worker::ready_message(std::process::id(), spec.slot, spec.generation);
    if let Err(e) = notify.send(&msg) {
        tracing::warn!("cannot tell the master we are ready: {e}");
    }
    tracing::debug!(
        "worker {} serving (generation {})",
        spec.slot,
        spec.generation
    );

    let grace = spec.config.shutdown_timeout.0;
    let mut draining = false;
    let self_notify = waiter
        .notifier()
        .map_err(|e| (1, format!("notifier: {e}")))?;
    loop {
        let wake = waiter
            .wait(Duration::from_secs(1))
            .map_err(|e| (1, format!("waiting for signals: {e}")))?;
        if wake.messages.iter().any(|m| m == "drained") {
            tracing::info!("graceful stop complete");
            return Ok(0);
        }
        for sig in wake.signals {
            match sig {
                Signal::Term | Signal::Int => {
                    tracing::info!("{sig}: stopping now");
                    if draining {
                        return Ok(0);
                    }
                    for (_, h) in &servers {
                        h.shutdown(Duration::ZERO);
                    }
                    for (_, h) in servers.drain(..) {
                        h.join();
                    }
                    return Ok(0);
                }
                Signal::Quit if !draining => {
                    tracing::info!("{sig}: graceful stop (up to {grace:?})");
                    draining = true;
                    board.set_draining();
                    for (_, h) in &servers {
                        h.shutdown(grace);
                    }
                    let handles: Vec<(String, ServerHandle)> = servers
                        .drain(..)
                        .map(|(i, h)| (spec.config.listeners[i].name.clone(), h))
                        .collect();
                    let done = self_notify
                        .try_clone()
                        .map_err(|e| (1, format!("notifier: {e}")))?;
                    std::thread::Builder::new()
                        .name("herd-drain".into())
                        .spawn(move || {
                            for (name, h) in handles {
                                let r = h.join();
                                if r.closed_forced > 0 {
                                    tracing::warn!(
                                        "listener {name}: {} connections still busy at the stop \
                                         deadline ({grace:?}) were cut; {} closed when quiet",
                                        r.closed_forced,
                                        r.closed_graceful
                                    );
                                } else if r.closed_graceful > 0 {
                                    tracing::info!(
                                        "listener {name}: {} connections closed when quiet",
                                        r.closed_graceful
                                    );
                                }
                            }
                            let _ = done.send("drained");
                        })
                        .map_err(|e| (1, format!("cannot start drain thread: {e}")))?;
                }
                Signal::Usr1 => match logs.reopen() {
                    Ok(()) => tracing::info!("{sig}: log files reopened"),
                    Err(e) => tracing::error!("{sig}: cannot reopen log files: {e}"),
                },
                other => tracing::debug!("{other} ignored by workers"),
            }
        }
        if !draining {
            refresh(&servers);
        }
        logs.flush_suppressed();
    }
}

/// Refresh the status snapshot from the servers' counters.
fn refresh(
    board: &StatusBoard,
    spec: &WorkerSpec,
    servers: &[(usize, ServerHandle)],
    frames: &protocols::FrameServices,
    budget: Option<&herd_core::overload::MemoryBudget>,
) {
    let frames = frames.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let listeners = servers
        .iter()
        .map(|(i, h)| {
            let l = &spec.config.listeners[*i];
            let frame = frames
                .iter()
                .find(|(n, _)| *n == l.name)
                .map(|(_, f)| (f.stats(), f.pool_queue()));
            listener_status(l, &h.stats(), frame)
        })
        .collect();
    let upstreams = crate::reverse_proxy::statuses();
    board.update(|st| {
        st.listeners = listeners;
        st.upstreams = upstreams;
        st.process = ProcessStatus::current();
        st.overload = budget.map(|b| OverloadStatus {
            budget_bytes: b.hard(),
            held_bytes: b.held(),
            peak_bytes: b.peak(),
            level: b.level().as_str().into(),
            soft_entered: b.entered(herd_core::overload::Level::Soft),
            hard_entered: b.entered(herd_core::overload::Level::Hard),
        });
        st.now_ms = unix_ms();
    });
}

/// One listener's status from its server's counters (and its frame service's).
pub fn listener_status(
    l: &crate::config::ListenerConfig,
    s: &herd_core::Stats,
    frame: Option<(herd_core::frame::FrameStats, Option<(usize, usize)>)>,
) -> ListenerStatus {
    use crate::config::Protocol;
    let p = &s.proto;
    let has_ws = match l.protocol {
        Protocol::Ws => true,
        Protocol::Http => protocols::ws_path(l).is_some(),
        _ => false,
    };
    ListenerStatus {
        name: l.name.clone(),
        bind: l.bind.clone(),
        protocol: l.protocol.as_str().into(),
        open: s.open,
        accepted: s.accepted,
        bytes_in: s.bytes_in,
        bytes_out: s.bytes_out,
        msgs_in: s.msgs_in,
        msgs_out: s.msgs_out,
        closed: s.closed.to_vec(),
        refused_per_ip: s.refused_per_ip,
        http: matches!(l.protocol, Protocol::Http | Protocol::Admin).then(|| HttpStatus {
            requests: p.http.requests.iter().map(|r| r.to_vec()).collect(),
            duration_buckets: p.http.duration.buckets.to_vec(),
            duration_sum_ms: p.http.duration.sum_ms,
            body_bytes_in: p.http.body_bytes_in,
            body_bytes_out: p.http.body_bytes_out,
            limit_delayed: p.http.limit_delayed,
            limit_rejected: p.http.limit_rejected,
            bad_requests: p.http.bad_requests.to_vec(),
            rejections: p.http.rejections.to_vec(),
        }),
        ws: has_ws.then(|| WsStatus {
            messages_in: p.ws.messages_in,
            messages_out: p.ws.messages_out,
            close_codes: p.ws.close_codes.to_vec(),
        }),
        frame: (l.protocol == Protocol::Frame).then(|| {
            let (f, pool) = frame.unwrap_or_default();
            let (queued, cap) = pool.unwrap_or((0, 0));
            FrameStatus {
                requests: p.frame.requests.to_vec(),
                errors: [
                    ("unknown_id", f.unknown_id),
                    ("bad_body", f.bad_body),
                    ("handler", f.handler_errors),
                    ("internal", f.panics),
                    ("too_large", f.too_large),
                    ("protocol", f.protocol),
                    ("oversized", f.oversized),
                ]
                .into_iter()
                .map(|(k, n)| (k.to_owned(), n))
                .collect(),
                busy: f.busy,
                pings_sent: f.pings_sent,
                pool_queued: queued as u64,
                pool_capacity: cap as u64,
            }
        }),
        tls: l.tls.is_some().then(|| TlsStatus {
            handshakes: s.tls_handshakes,
            failed: s.tls_failed.to_vec(),
        }),
        proxy: l.proxy_protocol.then(|| ProxyStatus {
            headers: s.proxy_headers,
            failed: s.proxy_failed.to_vec(),
        }),
    }
}
