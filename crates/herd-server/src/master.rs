//! The master process: a single-threaded supervisor that owns the listening sockets, keeps one
//! worker process per slot, and turns signals into actions (the nginx contract).
//!
//! | signal | action |
//! |---|---|
//! | TERM / INT | fast stop: TERM to workers, KILL after `stop_timeout`, exit |
//! | QUIT | graceful stop: QUIT to workers, KILL after `shutdown_timeout` (+2 s), exit |
//! | HUP | reload: re-read and validate; on error keep the old configuration and log why; else bind new sockets, start a new generation of workers and retire each old worker (QUIT) once its slot's new worker is ready |
//! | USR1 | reopen log files, then USR1 to every worker |
//! | USR2 | binary upgrade: rename the pid file to `.oldbin`, start the new binary with every listening socket inherited (`HERD_INHERIT_FDS`); this master runs on until QUIT; if the new master dies, the pid file is renamed back |
//! | worker exit | respawn in its slot at once; with back-off if it keeps dying at start-up; never for exit code 2 |
//!
//! Workers are not bare forks of the master: each is the same executable started again
//! (`/proc/self/exe --worker`) with only its sockets and the notification socket inherited and
//! a death signal armed, so no Rust code runs in a forked copy of the master, and a worker
//! always runs the binary its master runs even after the file on disk was replaced. The master
//! never starts a thread. It must not serve connections itself.

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::sys::{kill, spawn_inheriting, Signal};

use crate::config::{self, Config};
use crate::listeners::{ListenerSet, INHERIT_ENV};
use crate::logging::Logs;
use crate::pidfile::{self, PidFile};
use crate::signals::{Notifier, Waiter, CONTROL_SIGNALS};
use crate::status::{current, unix_ms, History, MasterStatus, ProcessStatus, SharedStatus};
use crate::worker::{parse_ready, WorkerSpec, EXIT_FATAL, WORKER_ENV};

/// A worker that dies sooner than this after starting counts as failing at start-up.
const STARTUP_WINDOW: Duration = Duration::from_secs(1);
/// Longest back-off between respawns of a worker that keeps dying at start-up.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Extra time after a graceful deadline before SIGKILL.
const KILL_MARGIN: Duration = Duration::from_secs(2);

/// How the master was started.
#[derive(Debug, Clone)]
pub struct Startup {
    /// `-c FILE` (None: the built-in configuration).
    pub config_path: Option<PathBuf>,
    /// The executable to run for a binary upgrade (resolved from argv\[0\] at start).
    pub exe: PathBuf,
    /// The arguments for the new binary of an upgrade (`-c` with the absolute path; it
    /// inherits the sockets, so it never daemonizes again).
    pub args: Vec<OsString>,
}

struct Worker {
    slot: usize,
    generation: u64,
    child: Child,
    pid: u32,
    started: Instant,
    ready: bool,
    /// Set when told to retire (QUIT): when to send KILL.
    retire_deadline: Option<Instant>,
    killed: bool,
}

#[derive(Default, Clone)]
struct SlotState {
    fails: u32,
    respawn_at: Option<Instant>,
    fatal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopKind {
    Fast,
    Graceful,
}

/// The supervisor.
pub struct Master {
    startup: Startup,
    config: Config,
    generation: u64,
    workers: Vec<Worker>,
    slots: Vec<SlotState>,
    listeners: ListenerSet,
    waiter: Waiter,
    notifier: Notifier,
    /// Where workers publish their status snapshots for each other (`None` if the file could
    /// not be created: each worker then reports only its own counters).
    status: Option<SharedStatus>,
    logs: Logs,
    pid_file: Option<PidFile>,
    upgrade: Option<Child>,
    stop: Option<(StopKind, Instant, bool)>,
    started_ms: u64,
    /// The secret TLS session-ticket keys derive from, shared by all workers of this master
    /// (across reloads too), so a ticket issued by one worker resumes at any other.
    ticket_secret: String,
    /// The counters and events this master publishes for the metrics and the dashboard.
    record: MasterStatus,
    /// The dashboard's history (points published into the shared file's ring).
    history: History,
    /// Points published so far, and when the last one was taken.
    points: (u64, Option<Instant>),
    /// systemd's notification socket (`Type=notify`), if herd was started with one.
    sd: Option<crate::sd_notify::SdNotify>,
    /// `READY=1` is due once every worker of the current generation is ready (at start and
    /// after a reload).
    sd_ready_due: bool,
    /// The `limit_req` tables workers share: `(listener name, entries, memory file)`. Kept
    /// across reloads while the listener keeps its size, so a reload does not reset limits.
    rate_tables: Vec<(String, usize, std::fs::File)>,
}

/// The back-off before respawning a worker that failed at start-up `fails` times in a row:
/// none for the first failure, then 100 ms doubling up to 10 s.
///
/// ```
/// use herd_server::master::backoff;
/// use std::time::Duration;
/// assert_eq!(backoff(1), Duration::ZERO);
/// assert_eq!(backoff(3), Duration::from_millis(200));
/// assert_eq!(backoff(60), Duration::from_secs(10));
/// ```
pub fn backoff(fails: u32) -> Duration {
    if fails <= 1 {
        return Duration::ZERO;
    }
    let ms = 100u64.saturating_mul(1u64 << (fails - 2).min(20));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}

/// The executable workers run: this very binary, even if the file was replaced since.
/// For the log line of a worker killed at its deadline: how many sockets it still held
/// (connections, plus its listening sockets), from `/proc/PID/fd`; empty where unknown.
fn held_by(pid: u32) -> String {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return String::new();
    };
    let sockets = dir
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"))
        })
        .count();
    format!(" (it held {sockets} sockets, its listening ones included)")
}

fn self_exe() -> PathBuf {
    if cfg!(target_os = "linux") {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().unwrap_or_else(|_| PathBuf::from("herd"))
    }
}

impl Master {
    /// Take over the prepared pieces (listeners bound, pid file written, signals caught).
    pub fn new(
        startup: Startup,
        config: Config,
        listeners: ListenerSet,
        waiter: Waiter,
        logs: Logs,
        pid_file: Option<PidFile>,
    ) -> std::io::Result<Master> {
        let notifier = waiter.notifier()?;
        let n = config.worker_count();
        let status = SharedStatus::create()
            .map_err(|e| tracing::warn!("status shared between workers unavailable: {e}"))
            .ok();
        Ok(Master {
            startup,
            config,
            generation: 1,
            workers: Vec::new(),
            slots: vec![SlotState::default(); n],
            listeners,
            waiter,
            notifier,
            status,
            logs,
            pid_file,
            upgrade: None,
            stop: None,
            started_ms: unix_ms(),
            ticket_secret: crate::tls::inherited_secret().unwrap_or_else(crate::tls::new_secret),
            record: MasterStatus::default(),
            history: History::default(),
            points: (0, None),
            sd: crate::sd_notify::SdNotify::from_env(),
            sd_ready_due: true,
            rate_tables: Vec::new(),
        })
    }

    /// Hand over the pid file (removed when the master exits).
    pub fn set_pid_file(&mut self, pid_file: Option<PidFile>) {
        self.pid_file = pid_file;
    }

    /// Start the workers and supervise until stopped; returns the exit code.
    pub fn run(mut self) -> i32 {
        for (name, addr) in self.listeners.local_addrs(&self.config) {
            tracing::info!(listener = %name, addr = %addr, "listening on {addr} ({name})");
        }
        tracing::info!(
            "master started: {} workers, generation {}",
            self.slots.len(),
            self.generation
        );
        self.chown_logs();
        for slot in 0..self.slots.len() {
            self.spawn(slot);
        }
        let code = loop {
            let timeout = self
                .next_deadline()
                .map_or(Duration::from_secs(1), |d| {
                    d.saturating_duration_since(Instant::now())
                })
                .min(Duration::from_secs(1));
            let wake = match self.waiter.wait(timeout) {
                Ok(w) => w,
                Err(e) => {
                    tracing::error!("waiting for signals failed: {e}");
                    self.begin_stop(StopKind::Fast);
                    Default::default()
                }
            };
            for m in &wake.messages {
                self.on_message(m);
            }
            for sig in wake.signals {
                match sig {
                    Signal::Term | Signal::Int => self.begin_stop(StopKind::Fast),
                    Signal::Quit => self.begin_stop(StopKind::Graceful),
                    Signal::Hup => self.reload(),
                    Signal::Usr1 => self.reopen(),
                    Signal::Usr2 => self.upgrade(),
                    _ => {}
                }
            }
            self.reap();
            self.run_due();
            self.publish();
            self.logs.flush_suppressed();
            if self.stop.is_some() {
                if self.workers.is_empty() {
                    break 0;
                }
            } else if self.workers.is_empty() && self.slots.iter().all(|s| s.fatal) {
                tracing::error!("every worker failed with a fatal error; exiting");
                break 1;
            }
        };
        tracing::info!("master exiting");
        if let Some(p) = self.pid_file.take() {
            p.remove();
        }
        code
    }

    /// Write this master's record (counters, events, resources) to the shared status file.
    fn publish(&mut self) {
        let Some(shared) = &self.status else {
            return;
        };
        let r = &mut self.record;
        r.pid = std::process::id();
        r.started_ms = self.started_ms;
        r.now_ms = unix_ms();
        r.generation = self.generation;
        r.workers = self.slots.len();
        r.process = ProcessStatus::current();
        if let Err(e) = shared.publish_master(r) {
            tracing::debug!(error = %e, "cannot publish the master's status");
        }
        // One history point a second (the loop also wakes for signals and messages).
        let due = self
            .points
            .1
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(950));
        if due {
            self.points.1 = Some(Instant::now());
            let records = shared.read(self.slots.len());
            let now = unix_ms();
            let cur = current(&records, self.generation, now);
            self.history.push(now, self.generation, &cur);
            if let Some(p) = self.history.last() {
                if let Err(e) = shared.publish_point(self.points.0, p) {
                    tracing::debug!(error = %e, "cannot publish a history point");
                }
                self.points.0 += 1;
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let respawns = self.slots.iter().filter_map(|s| s.respawn_at);
        let retires = self
            .workers
            .iter()
            .filter(|w| !w.killed)
            .filter_map(|w| w.retire_deadline);
        let stop = self.stop.filter(|s| !s.2).map(|s| s.1);
        respawns.chain(retires).chain(stop).min()
    }

    /// The shared `limit_req` tables of the current configuration, `(listener, descriptor)`:
    /// made on first use, kept while a listener keeps its size, dropped with the listener.
    fn rate_table_fds(&mut self) -> Vec<(String, i32)> {
        let wanted: Vec<(String, usize)> = self
            .config
            .listeners
            .iter()
            .filter_map(|l| Some((l.name.clone(), l.limit_req.as_ref()?.entries)))
            .collect();
        self.rate_tables
            .retain(|(n, e, _)| wanted.iter().any(|(wn, we)| wn == n && we == e));
        for (name, entries) in wanted {
            if self.rate_tables.iter().any(|(n, _, _)| *n == name) {
                continue;
            }
            match herd_core::limit::RateTable::create_shared(entries) {
                Ok(file) => self.rate_tables.push((name, entries, file)),
                Err(e) => tracing::error!(
                    "listener {name}: cannot create the shared limit_req table: {e}; each \
                     worker limits on its own"
                ),
            }
        }
        self.rate_tables
            .iter()
            .map(|(n, _, f)| (n.clone(), f.as_raw_fd()))
            .collect()
    }

    fn spawn(&mut self, slot: usize) {
        let rate_tables = self.rate_table_fds();
        let spec = WorkerSpec {
            slot,
            generation: self.generation,
            master_pid: std::process::id() as i32,
            master_started_ms: self.started_ms,
            ticket_secret: Some(self.ticket_secret.clone()),
            notify_fd: self.notifier.raw_fd(),
            status_fd: self.status.as_ref().map(|s| s.file().as_raw_fd()),
            rate_tables,
            listeners: self.listeners.fds_for(&self.config, slot),
            config: self.config.clone(),
        };
        let mut keep: Vec<_> = spec.listeners.iter().map(|(_, fd)| *fd).collect();
        keep.push(spec.notify_fd);
        keep.extend(spec.status_fd);
        keep.extend(spec.rate_tables.iter().map(|(_, fd)| *fd));
        let json = match serde_json::to_string(&spec) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!("cannot encode the worker spec: {e}");
                return;
            }
        };
        let mut cmd = Command::new(self_exe());
        cmd.arg0(format!("herd: worker {slot}"))
            .arg("--worker")
            .env(WORKER_ENV, json)
            .env_remove(INHERIT_ENV)
            .env_remove(crate::tls::TICKET_SECRET_ENV)
            .env_remove(crate::sd_notify::NOTIFY_SOCKET_ENV)
            .stdin(Stdio::null());
        if let Err(e) = self.apply_user(&mut cmd) {
            tracing::error!("worker {slot}: {e}");
        }
        match spawn_inheriting(&mut cmd, &keep, Some(Signal::Term), &CONTROL_SIGNALS) {
            Ok(child) => {
                let pid = child.id();
                tracing::info!(
                    slot,
                    pid,
                    generation = self.generation,
                    "worker {slot} started (pid {pid}, generation {})",
                    self.generation
                );
                self.workers.push(Worker {
                    slot,
                    generation: self.generation,
                    child,
                    pid,
                    started: Instant::now(),
                    ready: false,
                    retire_deadline: None,
                    killed: false,
                });
            }
            Err(e) => {
                tracing::error!(slot, reason = %e, "cannot start worker {slot}: {e}");
                self.schedule_respawn(slot, true);
            }
        }
    }

    fn apply_user(&self, cmd: &mut Command) -> Result<(), String> {
        let user = match &self.config.user {
            Some(u) => Some(crate::sys::lookup_user(u).map_err(|e| e.to_string())?),
            None => None,
        };
        let group = match &self.config.group {
            Some(g) => Some(crate::sys::lookup_group(g).map_err(|e| e.to_string())?),
            None => user.map(|(_, gid)| gid),
        };
        if let Some(gid) = group {
            cmd.gid(gid);
        }
        if let Some((uid, _)) = user {
            cmd.uid(uid);
        }
        Ok(())
    }

    fn schedule_respawn(&mut self, slot: usize, quick_failure: bool) {
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        if quick_failure {
            s.fails += 1;
        } else {
            s.fails = 0;
        }
        let delay = backoff(s.fails);
        if !delay.is_zero() {
            tracing::warn!(
                "worker {slot} keeps failing at start-up ({} times); respawning in {delay:?}",
                s.fails
            );
        }
        s.respawn_at = Some(Instant::now() + delay);
    }

    fn on_message(&mut self, msg: &str) {
        let Some((pid, slot, generation)) = parse_ready(msg) else {
            tracing::debug!("unexpected message {msg:?}");
            return;
        };
        if let Some(w) = self.workers.iter_mut().find(|w| w.pid == pid) {
            w.ready = true;
            tracing::info!(
                slot,
                pid,
                generation,
                "worker {slot} ready (pid {pid}, generation {generation})"
            );
        }
        self.retire_replaced();
        self.notify_ready_if_due();
    }

    /// Tell systemd `READY=1` once every slot of the current generation has a ready worker
    /// (or failed fatally), if that is due.
    fn notify_ready_if_due(&mut self) {
        if !self.sd_ready_due || self.stop.is_some() {
            return;
        }
        let generation = self.generation;
        let all_ready = self.slots.iter().enumerate().all(|(s, st)| {
            st.fatal
                || self
                    .workers
                    .iter()
                    .any(|w| w.slot == s && w.generation == generation && w.ready)
        });
        if all_ready {
            self.sd_ready_due = false;
            let msg =
                crate::sd_notify::ready_message(std::process::id(), generation, self.slots.len());
            if let Some(sd) = &mut self.sd {
                sd.send(&msg);
            }
        }
    }

    /// Retire (QUIT) old-generation workers whose slot's new worker is ready; old workers of
    /// slots the new configuration dropped go once every new worker is ready.
    fn retire_replaced(&mut self) {
        if self.stop.is_some() {
            return;
        }
        let n = self.slots.len();
        let ready: Vec<bool> = (0..n)
            .map(|s| {
                self.workers
                    .iter()
                    .any(|w| w.slot == s && w.generation == self.generation && w.ready)
            })
            .collect();
        let all_ready = (0..n).all(|s| ready[s] || self.slots[s].fatal);
        let deadline = Instant::now() + self.config.shutdown_timeout.0 + KILL_MARGIN;
        for w in &mut self.workers {
            if w.generation < self.generation && w.retire_deadline.is_none() {
                let replaced = if w.slot < n { ready[w.slot] } else { all_ready };
                if replaced {
                    tracing::info!(
                        "retiring worker {} (pid {}, generation {})",
                        w.slot,
                        w.pid,
                        w.generation
                    );
                    let _ = kill(w.pid as i32, Signal::Quit);
                    w.retire_deadline = Some(deadline);
                }
            }
        }
    }

    fn reap(&mut self) {
        let mut i = 0;
        while i < self.workers.len() {
            match self.workers[i].child.try_wait() {
                Ok(Some(status)) => {
                    let w = self.workers.remove(i);
                    self.on_worker_exit(w, status);
                }
                Ok(None) => i += 1,
                Err(e) => {
                    tracing::warn!("waiting for worker pid {}: {e}", self.workers[i].pid);
                    i += 1;
                }
            }
        }
        if let Some(child) = self.upgrade.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                let pid = child.id();
                self.upgrade = None;
                tracing::error!("new binary (pid {pid}) exited ({status}); this master carries on");
                self.record.upgrades_failed += 1;
                self.record.event("upgrade_failed", u64::from(pid));
                self.restore_pid_file();
            }
        }
    }

    fn on_worker_exit(&mut self, w: Worker, status: std::process::ExitStatus) {
        let expected = self.stop.is_some() || w.retire_deadline.is_some();
        if expected || w.generation != self.generation {
            tracing::info!(
                slot = w.slot,
                pid = w.pid,
                status = %status,
                "worker {} (pid {}) exited ({status})",
                w.slot,
                w.pid
            );
            return;
        }
        if status.code() == Some(EXIT_FATAL) {
            tracing::error!(
                slot = w.slot,
                pid = w.pid,
                reason = "fatal configuration error",
                "worker {} (pid {}) exited with a fatal configuration error; not respawning",
                w.slot,
                w.pid
            );
            if let Some(s) = self.slots.get_mut(w.slot) {
                s.fatal = true;
            }
            return;
        }
        tracing::warn!(
            slot = w.slot,
            pid = w.pid,
            reason = %status,
            "worker {} (pid {}) died ({status}); respawning",
            w.slot,
            w.pid
        );
        let quick = !w.ready || w.started.elapsed() < STARTUP_WINDOW;
        self.record.worker_restarts += 1;
        self.record.event("restart", w.slot as u64);
        self.schedule_respawn(w.slot, quick);
    }

    fn run_due(&mut self) {
        let now = Instant::now();
        if self.stop.is_none() {
            for slot in 0..self.slots.len() {
                if self.slots[slot].respawn_at.is_some_and(|t| t <= now) {
                    self.slots[slot].respawn_at = None;
                    self.spawn(slot);
                }
            }
        }
        for w in &mut self.workers {
            if !w.killed && w.retire_deadline.is_some_and(|t| t <= now) {
                tracing::warn!(
                    "worker {} (pid {}) did not retire in time; killing{}",
                    w.slot,
                    w.pid,
                    held_by(w.pid)
                );
                let _ = kill(w.pid as i32, Signal::Kill);
                w.killed = true;
                self.record.workers_killed += 1;
            }
        }
        if let Some((_, deadline, killed)) = self.stop.as_mut() {
            if !*killed && *deadline <= now {
                *killed = true;
                for w in &mut self.workers {
                    tracing::warn!(
                        "worker {} (pid {}) still running; killing{}",
                        w.slot,
                        w.pid,
                        held_by(w.pid)
                    );
                    let _ = kill(w.pid as i32, Signal::Kill);
                    w.killed = true;
                    self.record.workers_killed += 1;
                }
            }
        }
    }

    fn begin_stop(&mut self, kind: StopKind) {
        if let Some((current, _, _)) = self.stop {
            if current == StopKind::Fast || kind == StopKind::Graceful {
                return;
            }
        }
        let (sig, wait) = match kind {
            StopKind::Fast => (Signal::Term, self.config.stop_timeout.0),
            StopKind::Graceful => (Signal::Quit, self.config.shutdown_timeout.0 + KILL_MARGIN),
        };
        tracing::info!(
            "{} stop: {} to {} workers",
            if kind == StopKind::Fast {
                "fast"
            } else {
                "graceful"
            },
            sig,
            self.workers.len()
        );
        // After a binary upgrade the new master has told systemd it is the main process: the
        // old one leaving is not the service stopping.
        if self.upgrade.is_none() {
            if let Some(sd) = &mut self.sd {
                sd.send("STOPPING=1\n");
            }
        }
        for w in &self.workers {
            let _ = kill(w.pid as i32, sig);
        }
        for s in &mut self.slots {
            s.respawn_at = None;
        }
        // Like nginx: close our copies of the listening sockets, so once the workers have
        // closed theirs new connections are refused instead of queueing for nobody. (After a
        // binary upgrade the new master holds its own copies.)
        self.listeners = ListenerSet::new();
        self.stop = Some((kind, Instant::now() + wait, false));
    }

    fn reload(&mut self) {
        if self.stop.is_some() {
            return;
        }
        if let Some(sd) = &mut self.sd {
            sd.send("RELOADING=1\nSTATUS=reloading\n");
        }
        // READY=1 again once the new generation is ready, or at once if the old one stays.
        self.sd_ready_due = true;
        if self.try_reload() {
            self.record.reloads_ok += 1;
            self.record.event("reload", self.generation);
        } else {
            self.record.reloads_failed += 1;
            self.record.event("reload_failed", self.generation);
        }
        self.notify_ready_if_due();
        self.publish();
    }

    /// Reload; false if the old configuration stays.
    fn try_reload(&mut self) -> bool {
        let loaded = match &self.startup.config_path {
            Some(p) => {
                tracing::info!("reloading {}", p.display());
                config::load(p)
            }
            None => {
                tracing::info!("reloading the built-in configuration");
                let c = Config::builtin();
                c.validate().map(|()| config::Loaded { config: c })
            }
        };
        let mut new = match loaded {
            Ok(l) => l.config,
            Err(e) => {
                tracing::error!(reason = %e, "reload failed: {e}; keeping the old configuration");
                return false;
            }
        };
        if new.pid_file != self.config.pid_file {
            tracing::warn!("pid_file changes take effect after a restart");
            new.pid_file = self.config.pid_file.clone();
        }
        if let Err(e) = self.listeners.prepare(&new) {
            tracing::error!(reason = %e, "reload failed: {e}; keeping the old configuration");
            return false;
        }
        if let Err(e) = self.logs.apply(&new.log) {
            tracing::error!(
                reason = %e,
                "reload failed: log files: {e}; keeping the old configuration"
            );
            self.listeners.retain(&[&self.config]);
            return false;
        }
        self.config = new;
        self.generation += 1;
        let n = self.config.worker_count();
        self.slots = vec![SlotState::default(); n];
        tracing::info!(
            generation = self.generation,
            workers = n,
            "configuration reloaded: generation {}, {n} workers",
            self.generation
        );
        self.chown_logs();
        for slot in 0..n {
            self.spawn(slot);
        }
        self.listeners.retain(&[&self.config]);
        true
    }

    /// Give the log files to the workers' user, so they can reopen them.
    fn chown_logs(&self) {
        let Some(user) = &self.config.user else {
            return;
        };
        let Ok((uid, gid)) = crate::sys::lookup_user(user) else {
            return;
        };
        for p in [&self.config.log.file, &self.config.log.access_file]
            .into_iter()
            .flatten()
        {
            if let Err(e) = std::os::unix::fs::chown(p, Some(uid), Some(gid)) {
                tracing::warn!("chown {}: {e}", p.display());
            }
        }
    }

    fn reopen(&mut self) {
        match self.logs.reopen() {
            Ok(()) => tracing::info!("log files reopened"),
            Err(e) => tracing::error!("cannot reopen log files: {e}"),
        }
        self.chown_logs();
        for w in &self.workers {
            let _ = kill(w.pid as i32, Signal::Usr1);
        }
    }

    fn upgrade(&mut self) {
        if self.stop.is_some() {
            return;
        }
        if let Some(c) = &self.upgrade {
            tracing::warn!("binary upgrade already in progress (pid {})", c.id());
            return;
        }
        if let Some(p) = self.pid_file.as_mut() {
            let old = pidfile::oldbin(p.path());
            if let Err(e) = p.rename(&old) {
                tracing::error!("upgrade aborted: cannot rename the pid file: {e}");
                return;
            }
        }
        let mut cmd = Command::new(&self.startup.exe);
        cmd.args(&self.startup.args)
            .env(INHERIT_ENV, self.listeners.export())
            // The new binary keeps the ticket secret, so sessions resume across the upgrade.
            .env(crate::tls::TICKET_SECRET_ENV, &self.ticket_secret)
            .env_remove(WORKER_ENV)
            .stdin(Stdio::null());
        match spawn_inheriting(&mut cmd, &self.listeners.all_fds(), None, &CONTROL_SIGNALS) {
            Ok(child) => {
                tracing::info!(
                    "binary upgrade: started {} (pid {}); send QUIT to this master (pid {}) once it serves",
                    self.startup.exe.display(),
                    child.id(),
                    std::process::id()
                );
                self.record.upgrades += 1;
                self.record.event("upgrade", u64::from(child.id()));
                self.upgrade = Some(child);
            }
            Err(e) => {
                tracing::error!(
                    "upgrade failed: cannot start {}: {e}",
                    self.startup.exe.display()
                );
                self.record.upgrades_failed += 1;
                self.record.event("upgrade_failed", 0);
                self.restore_pid_file();
            }
        }
    }

    /// After a failed upgrade: take the pid file name back unless someone else holds it.
    fn restore_pid_file(&mut self) {
        let Some(p) = self.pid_file.as_mut() else {
            return;
        };
        let Some(orig) = p
            .path()
            .to_str()
            .and_then(|s| s.strip_suffix(".oldbin"))
            .map(PathBuf::from)
        else {
            return;
        };
        if let Some(other) = pidfile::live_holder(&orig) {
            tracing::warn!("{} is held by pid {other}; leaving it", orig.display());
            return;
        }
        if let Err(e) = p.rename(&orig) {
            tracing::error!("cannot restore the pid file: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(2), Duration::from_millis(100));
        assert_eq!(backoff(4), Duration::from_millis(400));
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
        let mut prev = Duration::ZERO;
        for f in 0..40 {
            assert!(backoff(f) >= prev);
            prev = backoff(f);
        }
    }
}
