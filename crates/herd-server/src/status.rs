//! The worker's status snapshot: who is serving (master and worker pids, slot, generation),
//! since when, and the counters of each listener, as JSON for the bundled site's
//! `/api/status` endpoint.
//!
//! The worker's main thread refreshes the snapshot about once a second (asking its loops for
//! counters through herd-core); handlers only read it, under a mutex touched once per status
//! request, never per message. Each refresh is also published to [`SharedStatus`], a file the
//! master creates (unlinked at once) and every worker inherits, one fixed-size record per
//! slot; the status endpoint reads the other workers' records from it and adds the totals over
//! all workers of the current generation, so the page no longer depends on which worker
//! answered. The master publishes its own record (restarts, reloads, upgrades and their times)
//! after the workers' ([`MasterStatus`]). [`crate::metrics`] turns the records into the
//! Prometheus exposition. The master also keeps the dashboard's last 15 minutes ([`History`]),
//! one point a second, and writes each point into a ring of records in the same file, so the
//! history survives reloads and restarts of workers and any worker can serve it. This module
//! starts nothing.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Counters of one listener in this worker (or, in [`Totals`], in all workers).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ListenerStatus {
    /// The listener's name.
    pub name: String,
    /// Its configured address.
    pub bind: String,
    /// Its protocol.
    pub protocol: String,
    /// Connections currently open.
    pub open: u64,
    /// Connections accepted so far.
    pub accepted: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Messages (requests, frames, lines) decoded.
    pub msgs_in: u64,
    /// Messages sent.
    pub msgs_out: u64,
    /// Connections closed, by [`herd_core::CloseReason::ALL`] order.
    #[serde(default)]
    pub closed: Vec<u64>,
    /// Connections refused for the per-IP limit (also in `closed` as `limit`).
    #[serde(default)]
    pub refused_per_ip: u64,
    /// HTTP counters (HTTP listeners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpStatus>,
    /// WebSocket counters (HTTP listeners with a `ws_path`, and ws listeners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ws: Option<WsStatus>,
    /// Frame-protocol counters (frame listeners).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<FrameStatus>,
    /// TLS counters (listeners with a `tls` table).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsStatus>,
    /// PROXY protocol counters (listeners with `proxy_protocol = true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyStatus>,
}

/// PROXY protocol counters of a listener (see [`herd_core::Stats::proxy_failed`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProxyStatus {
    /// Headers accepted.
    pub headers: u64,
    /// Connections closed for their header, in [`herd_core::proxy::ProxyFailure::ALL`] order.
    pub failed: Vec<u64>,
}

/// TLS counters of a listener (see [`herd_core::Stats::tls_failed`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TlsStatus {
    /// Handshakes completed.
    pub handshakes: u64,
    /// Failed connections by reason, in [`herd_core::tls::TlsFailure::ALL`] order.
    pub failed: Vec<u64>,
}

/// HTTP counters of a listener (see [`herd_core::stats::HttpCounts`]).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HttpStatus {
    /// Responses by method class (rows, [`herd_core::stats::METHODS`]) and status class.
    pub requests: Vec<Vec<u64>>,
    /// Request-duration histogram: per-bucket counts ([`herd_core::stats::DURATION_BOUNDS_MS`]
    /// then overflow).
    pub duration_buckets: Vec<u64>,
    /// Sum of request durations (ms).
    pub duration_sum_ms: u64,
    /// Request body bytes received.
    pub body_bytes_in: u64,
    /// Response body bytes queued.
    pub body_bytes_out: u64,
    /// Requests `limit_req` delayed until their turn.
    #[serde(default)]
    pub limit_delayed: u64,
    /// Requests `limit_req` refused.
    #[serde(default)]
    pub limit_rejected: u64,
    /// Malformed requests by reason (`herd_proto::http1::HttpError::ALL` order).
    #[serde(default)]
    pub bad_requests: Vec<u64>,
    /// Requests extractors refused by kind (`herd_core::http::extract::RejectionKind::ALL`
    /// order).
    #[serde(default)]
    pub rejections: Vec<u64>,
}

/// WebSocket counters of a listener.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WsStatus {
    /// Data messages received.
    pub messages_in: u64,
    /// Data messages sent.
    pub messages_out: u64,
    /// Closes by code ([`herd_core::stats::WS_CLOSE_CODES`] order, then other).
    pub close_codes: Vec<u64>,
}

/// Frame-protocol counters of a listener.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FrameStatus {
    /// Requests by message id (index = id; the last entry counts larger ids).
    pub requests: Vec<u64>,
    /// Error replies by kind: `(kind, count)` (busy excluded).
    pub errors: Vec<(String, u64)>,
    /// `BUSY` replies (the blocking pool's queue was full).
    pub busy: u64,
    /// Pings sent to quiet peers.
    pub pings_sent: u64,
    /// Jobs waiting in the blocking pool's queue.
    pub pool_queued: u64,
    /// The pool queue's capacity (0: no pool yet).
    pub pool_capacity: u64,
}

/// A worker's overload guard (see herd-core's `overload` module).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct OverloadStatus {
    /// The budget (`memory_budget`), bytes.
    pub budget_bytes: u64,
    /// What the worker's connections held at the last scans, bytes.
    pub held_bytes: u64,
    /// The most they ever held, bytes.
    pub peak_bytes: u64,
    /// `normal`, `soft` or `hard`.
    pub level: String,
    /// Times the level rose to soft.
    pub soft_entered: u64,
    /// Times the level rose to hard.
    pub hard_entered: u64,
}

/// What one process (worker or master) uses, read from `/proc/self` at snapshot time.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessStatus {
    /// Resident memory in bytes.
    pub rss_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
    /// User plus system CPU time, in milliseconds.
    pub cpu_ms: u64,
}

impl ProcessStatus {
    /// This process, now (zeros where `/proc` is not available).
    pub fn current() -> ProcessStatus {
        let page = 4096u64;
        let rss_bytes = std::fs::read_to_string("/proc/self/statm")
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |pages| pages * page);
        let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        // Fields 14 and 15 of /proc/self/stat (after the parenthesised command name) are utime
        // and stime in clock ticks (100 per second on Linux).
        let cpu_ms = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|s| {
                let rest = &s[s.rfind(')')? + 2..];
                let f: Vec<&str> = rest.split_whitespace().collect();
                Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
            })
            .map_or(0, |ticks| ticks * 10);
        ProcessStatus {
            rss_bytes,
            open_fds,
            cpu_ms,
        }
    }
}

/// One event the master saw, for the dashboard's markers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MasterEvent {
    /// When (ms since the epoch).
    pub t_ms: u64,
    /// `restart`, `reload`, `reload_failed`, `upgrade` or `upgrade_failed`.
    pub kind: String,
    /// The worker slot (restarts) or the new generation (reloads).
    pub detail: u64,
}

/// The master's own record in the [`SharedStatus`] file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MasterStatus {
    /// The master's pid.
    pub pid: u32,
    /// When it started (ms since the epoch).
    pub started_ms: u64,
    /// When this record was written (ms since the epoch).
    pub now_ms: u64,
    /// The running generation.
    pub generation: u64,
    /// Configured worker processes.
    pub workers: usize,
    /// Workers respawned after dying.
    pub worker_restarts: u64,
    /// Workers killed (SIGKILL) for outliving their stop deadline.
    #[serde(default)]
    pub workers_killed: u64,
    /// Reloads that started a new generation.
    pub reloads_ok: u64,
    /// Reloads refused (bad configuration, cannot bind, cannot open logs).
    pub reloads_failed: u64,
    /// Binary upgrades started.
    pub upgrades: u64,
    /// Binary upgrades that failed (the new binary could not start or exited).
    pub upgrades_failed: u64,
    /// The master process's resources.
    pub process: ProcessStatus,
    /// The last events (at most [`MAX_EVENTS`]), oldest first.
    pub events: Vec<MasterEvent>,
}

/// Events kept in [`MasterStatus::events`].
pub const MAX_EVENTS: usize = 64;

impl MasterStatus {
    /// Note an event (keeping the last [`MAX_EVENTS`]).
    pub fn event(&mut self, kind: &str, detail: u64) {
        if self.events.len() >= MAX_EVENTS {
            self.events.remove(0);
        }
        self.events.push(MasterEvent {
            t_ms: unix_ms(),
            kind: kind.into(),
            detail,
        });
    }
}

/// A snapshot of this worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// herd's version.
    pub version: String,
    /// The master's pid.
    pub master_pid: i32,
    /// This worker's pid.
    pub worker_pid: u32,
    /// This worker's slot (0-based).
    pub worker_slot: usize,
    /// Configuration generation (bumped by every reload).
    pub generation: u64,
    /// Number of worker processes.
    pub workers: usize,
    /// When the master started (ms since the epoch).
    pub master_started_ms: u64,
    /// When this worker started (ms since the epoch).
    pub worker_started_ms: u64,
    /// When this snapshot was taken (ms since the epoch).
    pub now_ms: u64,
    /// Where the site's WebSocket echo is served (`None`: not in this build or turned off;
    /// the page then hides its WebSocket section).
    pub ws_path: Option<String>,
    /// Per-listener counters.
    pub listeners: Vec<ListenerStatus>,
    /// This worker process's resources.
    #[serde(default)]
    pub process: ProcessStatus,
    /// The overload guard of this worker, when it has a `memory_budget`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overload: Option<OverloadStatus>,
    /// The reverse proxy's counters per `[[upstream]]` (empty without `proxy` locations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<UpstreamStatus>,
    /// The counters summed over every worker of this generation that published a snapshot in
    /// the last [`FRESH_MS`] (filled in by [`StatusBoard::json`] where workers share status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totals: Option<Totals>,
}

/// One `[[upstream]]`'s counters in this worker.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpstreamStatus {
    /// The upstream's name.
    pub name: String,
    /// Proxied requests by outcome, in `reverse_proxy::Outcome::ALL` order (ok, bad_gateway,
    /// timeout, no_live, queue_full, queue_timeout).
    pub outcomes: Vec<u64>,
    /// Attempts that failed on one backend and went on to the next.
    pub next_backend: u64,
}

/// Counters over all workers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Totals {
    /// Workers whose snapshot went into the sums (the answering one included).
    pub workers_reporting: usize,
    /// Per-listener sums, by listener name, in the answering worker's order.
    pub listeners: Vec<ListenerStatus>,
}

/// A worker's published snapshot counts in the totals while it is younger than this.
pub const FRESH_MS: u64 = 5_000;

/// Bytes reserved per slot in the [`SharedStatus`] file (an 8-byte length, then JSON): room for
/// a few hundred listeners. The file is sparse: only written records take space.
const RECORD: u64 = 512 * 1024;
/// Slots beyond this are not published (the configuration allows at most 1,024 workers).
const MAX_SLOTS: usize = 1024;
/// The master's record comes after every worker slot.
const MASTER_SLOT: u64 = MAX_SLOTS as u64;
/// The history ring starts after the master's record: an 8-byte count of points written, then
/// [`HISTORY_POINTS`] records of [`POINT_RECORD`] bytes, point `n` at `n % HISTORY_POINTS`.
const HISTORY_BASE: u64 = (MASTER_SLOT + 1) * RECORD;
/// Bytes per history point (a length, then JSON; points with hundreds of workers are cut to
/// the totals).
const POINT_RECORD: u64 = 16 * 1024;

/// Worker snapshots shared between processes through one file: record `slot` at offset
/// `slot * 16 KiB` holds that worker's latest snapshot as length-prefixed JSON. Writers use one
/// positioned write per snapshot; a reader that catches a write half-done gets JSON that does
/// not parse and skips that worker for that one request.
#[derive(Debug)]
pub struct SharedStatus {
    file: File,
}

impl SharedStatus {
    /// A fresh shared file: created in the temporary directory and unlinked at once, so it
    /// lives exactly as long as some process holds its descriptor.
    pub fn create() -> io::Result<SharedStatus> {
        let path =
            std::env::temp_dir().join(format!("herd-status-{}-{}", std::process::id(), unix_ms()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(SharedStatus { file })
    }

    /// Wrap a descriptor inherited from the master.
    pub fn from_file(file: File) -> SharedStatus {
        SharedStatus { file }
    }

    /// The file, to pass its descriptor to workers.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Publish `s` as the record of its slot. A snapshot too large for a record (thousands of
    /// listeners) is not published; the totals then lack that worker.
    pub fn publish(&self, s: &Status) -> io::Result<()> {
        if s.worker_slot >= MAX_SLOTS {
            return Ok(());
        }
        self.write_record(s.worker_slot as u64, &s.to_json())
    }

    /// Publish the master's record.
    pub fn publish_master(&self, m: &MasterStatus) -> io::Result<()> {
        let json = serde_json::to_string(m).unwrap_or_else(|_| "{}".into());
        self.write_record(MASTER_SLOT, &json)
    }

    /// The master's record, if it wrote one.
    pub fn read_master(&self) -> Option<MasterStatus> {
        let mut buf = Vec::new();
        let json = self.read_record(MASTER_SLOT, &mut buf)?;
        serde_json::from_slice(json).ok()
    }

    fn write_record(&self, slot: u64, json: &str) -> io::Result<()> {
        if json.len() as u64 + 8 > RECORD {
            return Ok(());
        }
        let mut rec = Vec::with_capacity(json.len() + 8);
        rec.extend_from_slice(&(json.len() as u64).to_le_bytes());
        rec.extend_from_slice(json.as_bytes());
        self.file.write_all_at(&rec, slot * RECORD)
    }

    /// The JSON of record `slot` (read into `buf`), `None` if empty or short.
    fn read_record<'b>(&self, slot: u64, buf: &'b mut Vec<u8>) -> Option<&'b [u8]> {
        let mut len = [0u8; 8];
        let n = self.file.read_at(&mut len, slot * RECORD).ok()?;
        let len = u64::from_le_bytes(len) as usize;
        if n < 8 || len == 0 || len as u64 + 8 > RECORD {
            return None;
        }
        buf.resize(len, 0);
        let n = self.file.read_at(buf, slot * RECORD + 8).ok()?;
        (n == len).then_some(&buf[..])
    }

    /// Write history point number `seq` (0-based, one per second) into the ring, then the count.
    pub fn publish_point(&self, seq: u64, p: &Point) -> io::Result<()> {
        let mut json = serde_json::to_string(p).unwrap_or_default();
        if json.len() as u64 + 8 > POINT_RECORD {
            let totals_only = Point {
                workers: Vec::new(),
                ..p.clone()
            };
            json = serde_json::to_string(&totals_only).unwrap_or_default();
        }
        let mut rec = Vec::with_capacity(json.len() + 8);
        rec.extend_from_slice(&(json.len() as u64).to_le_bytes());
        rec.extend_from_slice(json.as_bytes());
        let at = HISTORY_BASE + 8 + (seq % HISTORY_POINTS as u64) * POINT_RECORD;
        self.file.write_all_at(&rec, at)?;
        self.file
            .write_all_at(&(seq + 1).to_le_bytes(), HISTORY_BASE)
    }

    /// The history points newer than `since_ms`, oldest first (reads back from the newest
    /// and stops at the first older one, so polling for new points reads one or two).
    pub fn read_points(&self, since_ms: u64) -> Vec<Point> {
        let mut count = [0u8; 8];
        if self.file.read_at(&mut count, HISTORY_BASE).unwrap_or(0) < 8 {
            return Vec::new();
        }
        let count = u64::from_le_bytes(count);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for seq in (count.saturating_sub(HISTORY_POINTS as u64)..count).rev() {
            let at = HISTORY_BASE + 8 + (seq % HISTORY_POINTS as u64) * POINT_RECORD;
            let mut len = [0u8; 8];
            if self.file.read_at(&mut len, at).unwrap_or(0) < 8 {
                break;
            }
            let len = u64::from_le_bytes(len) as usize;
            if len == 0 || len as u64 + 8 > POINT_RECORD {
                break;
            }
            buf.resize(len, 0);
            if self.file.read_at(&mut buf, at + 8).unwrap_or(0) < len {
                break;
            }
            match serde_json::from_slice::<Point>(&buf) {
                Ok(p) if p.t_ms > since_ms => out.push(p),
                Ok(_) => break,
                Err(_) => continue, // being rewritten right now
            }
        }
        out.reverse();
        out
    }

    /// The records of slots `0..slots` that hold a readable snapshot.
    pub fn read(&self, slots: usize) -> Vec<Status> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for slot in 0..slots.min(MAX_SLOTS) {
            let Some(json) = self.read_record(slot as u64, &mut buf) else {
                continue;
            };
            if let Ok(s) = serde_json::from_slice::<Status>(json) {
                if s.worker_slot == slot {
                    out.push(s);
                }
            }
        }
        out
    }
}

fn add_vec(a: &mut Vec<u64>, b: &[u64]) {
    if a.len() < b.len() {
        a.resize(b.len(), 0);
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
}

impl ListenerStatus {
    /// Add another worker's counters of the same listener into these.
    pub fn add(&mut self, l: &ListenerStatus) {
        self.open += l.open;
        self.accepted += l.accepted;
        self.bytes_in += l.bytes_in;
        self.bytes_out += l.bytes_out;
        self.msgs_in += l.msgs_in;
        self.msgs_out += l.msgs_out;
        add_vec(&mut self.closed, &l.closed);
        self.refused_per_ip += l.refused_per_ip;
        if let Some(o) = &l.http {
            let h = self.http.get_or_insert_with(Default::default);
            if h.requests.len() < o.requests.len() {
                h.requests.resize(o.requests.len(), Vec::new());
            }
            for (a, b) in h.requests.iter_mut().zip(&o.requests) {
                add_vec(a, b);
            }
            add_vec(&mut h.duration_buckets, &o.duration_buckets);
            h.duration_sum_ms += o.duration_sum_ms;
            h.body_bytes_in += o.body_bytes_in;
            h.body_bytes_out += o.body_bytes_out;
            h.limit_delayed += o.limit_delayed;
            h.limit_rejected += o.limit_rejected;
            add_vec(&mut h.bad_requests, &o.bad_requests);
            add_vec(&mut h.rejections, &o.rejections);
        }
        if let Some(o) = &l.ws {
            let w = self.ws.get_or_insert_with(Default::default);
            w.messages_in += o.messages_in;
            w.messages_out += o.messages_out;
            add_vec(&mut w.close_codes, &o.close_codes);
        }
        if let Some(o) = &l.frame {
            let f = self.frame.get_or_insert_with(Default::default);
            add_vec(&mut f.requests, &o.requests);
            for (k, n) in &o.errors {
                match f.errors.iter_mut().find(|(j, _)| j == k) {
                    Some((_, m)) => *m += n,
                    None => f.errors.push((k.clone(), *n)),
                }
            }
            f.busy += o.busy;
            f.pings_sent += o.pings_sent;
            f.pool_queued += o.pool_queued;
            f.pool_capacity += o.pool_capacity;
        }
        if let Some(o) = &l.tls {
            let t = self.tls.get_or_insert_with(Default::default);
            t.handshakes += o.handshakes;
            add_vec(&mut t.failed, &o.failed);
        }
        if let Some(o) = &l.proxy {
            let p = self.proxy.get_or_insert_with(Default::default);
            p.headers += o.headers;
            add_vec(&mut p.failed, &o.failed);
        }
    }

    /// Closed connections for one reason.
    pub fn closed_by(&self, r: herd_core::CloseReason) -> u64 {
        self.closed.get(r.index()).copied().unwrap_or(0)
    }
}

/// Per-listener sums over `records` (in first-seen order).
pub fn sum_listeners<'a>(records: impl IntoIterator<Item = &'a Status>) -> Vec<ListenerStatus> {
    let mut sums: Vec<ListenerStatus> = Vec::new();
    for r in records {
        for l in &r.listeners {
            match sums.iter_mut().find(|s| s.name == l.name) {
                Some(s) => s.add(l),
                None => sums.push(l.clone()),
            }
        }
    }
    sums
}

/// The records that count for `generation` at time `now_ms`: that generation's, fresh, one
/// per slot.
pub fn current(records: &[Status], generation: u64, now_ms: u64) -> Vec<&Status> {
    records
        .iter()
        .filter(|o| o.generation == generation && now_ms.saturating_sub(o.now_ms) < FRESH_MS)
        .collect()
}

/// The totals over `mine` and the fresh snapshots of other workers of the same generation.
fn totals(mine: &Status, others: &[Status]) -> Totals {
    let others: Vec<&Status> = current(others, mine.generation, mine.now_ms)
        .into_iter()
        .filter(|o| o.worker_slot != mine.worker_slot)
        .collect();
    Totals {
        workers_reporting: 1 + others.len(),
        listeners: sum_listeners(std::iter::once(mine).chain(others)),
    }
}

impl Status {
    /// The snapshot as JSON.
    ///
    /// ```
    /// let s = herd_server::status::Status { worker_slot: 2, ..Default::default() };
    /// assert!(s.to_json().contains("\"worker_slot\":2"));
    /// ```
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The shared, refreshed snapshot (and, where workers share status, the file it is published
/// to).
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    snapshot: Arc<Mutex<Status>>,
    shared: Option<Arc<SharedStatus>>,
    /// The worker began a graceful stop (`/healthz` answers 503 from then on).
    draining: Arc<std::sync::atomic::AtomicBool>,
}

impl StatusBoard {
    /// A board holding `s`.
    pub fn new(s: Status) -> StatusBoard {
        StatusBoard {
            snapshot: Arc::new(Mutex::new(s)),
            shared: None,
            draining: Default::default(),
        }
    }

    /// The worker began a graceful stop: from now on its `/healthz` says 503, so a balancer's
    /// health check on a kept-alive connection to it takes it out of rotation.
    pub fn set_draining(&self) {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the worker is draining (see [`set_draining`](Self::set_draining)).
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// This board also publishes every update to `shared` and reads the others' from it.
    pub fn with_shared(mut self, shared: SharedStatus) -> StatusBoard {
        self.shared = Some(Arc::new(shared));
        self
    }

    /// A copy of the current snapshot.
    pub fn get(&self) -> Status {
        self.snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Change the snapshot (and publish it).
    pub fn update(&self, f: impl FnOnce(&mut Status)) {
        let mut s = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
        if let Some(shared) = &self.shared {
            if let Err(e) = shared.publish(&s) {
                tracing::debug!("cannot publish the status snapshot: {e}");
            }
        }
    }

    /// Every worker's latest record and the master's, as the shared file holds them (only
    /// this worker's snapshot, and no master record, when workers do not share status). Every
    /// worker reads the same file, so whichever answers, the answer is the same.
    pub fn records(&self) -> (Vec<Status>, Option<MasterStatus>) {
        let mine = self.get();
        match &self.shared {
            Some(shared) => {
                let mut all = shared.read(mine.workers.max(mine.worker_slot + 1));
                if !all.iter().any(|s| s.worker_slot == mine.worker_slot) {
                    all.push(mine);
                }
                (all, shared.read_master())
            }
            None => (vec![mine], None),
        }
    }

    /// The history points after `since_ms` and the master's events, as JSON for the
    /// dashboard's [`crate::site::HISTORY_PATH`].
    pub fn history_json(&self, since_ms: u64) -> String {
        let master = self.shared.as_ref().and_then(|s| s.read_master());
        let points = self
            .shared
            .as_ref()
            .map(|s| s.read_points(since_ms))
            .unwrap_or_default();
        let events = master.map(|m| m.events).unwrap_or_default();
        serde_json::json!({ "points": points, "events": events }).to_string()
    }

    /// The snapshot as JSON for the status endpoint, with the totals over all workers when
    /// workers share status.
    pub fn json(&self) -> String {
        self.json_with_ws(None)
    }

    /// [`json`](Self::json) as the listener answering it sees it: `ws_path` is replaced by
    /// that listener's own WebSocket path, if `Some` (`Some(None)`: it has none), so the page
    /// offers WebSocket only where the listener serves it.
    pub fn json_with_ws(&self, ws_path: Option<Option<String>>) -> String {
        let mut s = self.get();
        if let Some(ws) = ws_path {
            s.ws_path = ws;
        }
        if let Some(shared) = &self.shared {
            let others = shared.read(s.workers.max(s.worker_slot + 1));
            s.totals = Some(totals(&s, &others));
        }
        s.to_json()
    }
}

/// Points kept in the history: 15 minutes at one a second.
pub const HISTORY_POINTS: usize = 900;

/// Cumulative counters summed over the workers of a generation, at one moment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sample {
    /// Connections open.
    pub open: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed, by [`herd_core::CloseReason::ALL`] order.
    pub closed: Vec<u64>,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Messages decoded (HTTP requests, frames, WebSocket messages, lines).
    pub msgs_in: u64,
    /// Messages sent.
    pub msgs_out: u64,
    /// HTTP responses.
    pub http_requests: u64,
    /// HTTP responses with a 4xx or 5xx status.
    pub http_errors: u64,
}

impl Sample {
    fn of(listeners: &[ListenerStatus]) -> Sample {
        let mut s = Sample::default();
        for l in listeners {
            s.open += l.open;
            s.accepted += l.accepted;
            add_vec(&mut s.closed, &l.closed);
            s.bytes_in += l.bytes_in;
            s.bytes_out += l.bytes_out;
            s.msgs_in += l.msgs_in;
            s.msgs_out += l.msgs_out;
            if let Some(h) = &l.http {
                for row in &h.requests {
                    s.http_requests += row.iter().sum::<u64>();
                    s.http_errors += row.iter().skip(3).sum::<u64>();
                }
            }
        }
        s
    }
}

/// One worker's counters in a history point.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorkerPoint {
    /// Its slot.
    pub slot: usize,
    /// Its pid.
    pub pid: u32,
    /// Its counters over all listeners.
    #[serde(flatten)]
    pub sample: Sample,
}

/// One point of the dashboard's history.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Point {
    /// When (ms since the epoch).
    pub t_ms: u64,
    /// The generation the sums are over.
    pub generation: u64,
    /// Sums over all workers.
    pub total: Sample,
    /// Each worker.
    pub workers: Vec<WorkerPoint>,
    /// Median HTTP request duration since the previous point (ms, bucket upper bound).
    pub p50_ms: Option<u64>,
    /// 99th percentile of the same.
    pub p99_ms: Option<u64>,
}

/// The last [`HISTORY_POINTS`] points and what the next latency delta needs.
#[derive(Debug, Default)]
pub struct History {
    points: std::collections::VecDeque<Point>,
    /// The merged duration histogram of the previous point, per worker pid.
    last: Vec<(u32, herd_core::Histogram)>,
}

/// The duration histogram of a record's HTTP listeners.
fn durations(r: &Status) -> herd_core::Histogram {
    let mut h = herd_core::Histogram::default();
    for l in &r.listeners {
        if let Some(x) = &l.http {
            for (a, b) in h.buckets.iter_mut().zip(&x.duration_buckets) {
                *a += b;
            }
            h.sum_ms += x.duration_sum_ms;
        }
    }
    h
}

impl History {
    /// Append the point of `records` (the current generation's) at `t_ms`.
    pub fn push(&mut self, t_ms: u64, generation: u64, records: &[&Status]) {
        let mut delta = herd_core::Histogram::default();
        let mut last = Vec::with_capacity(records.len());
        for r in records {
            let h = durations(r);
            let prev = self
                .last
                .iter()
                .find(|(pid, _)| *pid == r.worker_pid)
                .map(|(_, p)| *p)
                .unwrap_or_default();
            for (i, d) in delta.buckets.iter_mut().enumerate() {
                *d += h.buckets[i].saturating_sub(prev.buckets[i]);
            }
            last.push((r.worker_pid, h));
        }
        self.last = last;
        let mut workers: Vec<WorkerPoint> = records
            .iter()
            .map(|r| WorkerPoint {
                slot: r.worker_slot,
                pid: r.worker_pid,
                sample: Sample::of(&r.listeners),
            })
            .collect();
        workers.sort_by_key(|w| w.slot);
        if self.points.len() >= HISTORY_POINTS {
            self.points.pop_front();
        }
        self.points.push_back(Point {
            t_ms,
            generation,
            total: Sample::of(&sum_listeners(records.iter().copied())),
            workers,
            p50_ms: delta.quantile_ms(0.5),
            p99_ms: delta.quantile_ms(0.99),
        });
    }

    /// The points, oldest first.
    pub fn points(&self) -> impl Iterator<Item = &Point> {
        self.points.iter()
    }

    /// The newest point.
    pub fn last(&self) -> Option<&Point> {
        self.points.back()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_updates_are_seen_by_clones() {
        let b = StatusBoard::default();
        let c = b.clone();
        b.update(|s| {
            s.listeners.push(ListenerStatus {
                name: "site".into(),
                accepted: 3,
                ..Default::default()
            })
        });
        assert_eq!(c.get().listeners[0].accepted, 3);
        let json: serde_json::Value = serde_json::from_str(&c.get().to_json()).unwrap();
        assert_eq!(json["listeners"][0]["name"], "site");
        assert!(unix_ms() > 1_600_000_000_000);
    }

    fn snapshot(slot: usize, generation: u64, now_ms: u64, accepted: u64) -> Status {
        Status {
            worker_slot: slot,
            generation,
            workers: 3,
            now_ms,
            listeners: vec![ListenerStatus {
                name: "site".into(),
                accepted,
                msgs_in: accepted * 10,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// Records round-trip through the shared file by slot; an empty slot and a record
    /// overwritten with garbage are skipped.
    #[test]
    fn shared_file_round_trips_records_by_slot() {
        let shared = SharedStatus::create().unwrap();
        shared.publish(&snapshot(0, 1, 1_000, 5)).unwrap();
        shared.publish(&snapshot(2, 1, 1_000, 7)).unwrap();
        let got = shared.read(3);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].worker_slot, got[1].worker_slot), (0, 2));
        assert_eq!(got[1].listeners[0].accepted, 7);
        // A later, shorter snapshot replaces the record whole.
        shared.publish(&snapshot(2, 1, 2_000, 1)).unwrap();
        assert_eq!(shared.read(3)[1].listeners[0].accepted, 1);
        // A torn record (valid length, broken JSON) does not parse and is skipped.
        shared
            .file()
            .write_all_at(b"\x05\0\0\0\0\0\0\0{\"wo", 0)
            .unwrap();
        let got = shared.read(3);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].worker_slot, 2);
    }

    /// Totals add the fresh snapshots of the same generation and nothing else.
    #[test]
    fn totals_sum_fresh_workers_of_this_generation() {
        let mine = snapshot(0, 2, 10_000, 5);
        let others = [
            snapshot(0, 2, 10_000, 100),          // my own record: not counted twice
            snapshot(1, 2, 9_000, 7),             // fresh, same generation
            snapshot(2, 1, 10_000, 50),           // an old generation's worker, draining
            snapshot(3, 2, 10_000 - FRESH_MS, 9), // stale: a worker that died
        ];
        let t = totals(&mine, &others);
        assert_eq!(t.workers_reporting, 2);
        assert_eq!(t.listeners.len(), 1);
        assert_eq!(t.listeners[0].accepted, 12);
        assert_eq!(t.listeners[0].msgs_in, 120);

        let board = StatusBoard::new(mine).with_shared(SharedStatus::create().unwrap());
        board.update(|_| {});
        let json: serde_json::Value = serde_json::from_str(&board.json()).unwrap();
        assert_eq!(json["totals"]["workers_reporting"], 1);
        assert_eq!(json["totals"]["listeners"][0]["accepted"], 5);
    }
}
