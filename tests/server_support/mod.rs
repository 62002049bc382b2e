//! Shared pieces of the `herd` binary's process-level tests: start the real binary on a config
//! in a private temporary directory, find its processes through /proc, read its log, and drive
//! line-echo clients (one-shot and continuous load) over loopback.
//!
//! Every wait has a deadline; nothing sleeps to let time pass except the load generator's
//! pacing. Processes are killed by the pids these helpers started (the master, and processes
//! whose ancestry leads to it), never by name.
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use herd_server::signals::{kill, Signal};

/// The bound for every wait in these tests.
pub const WAIT: Duration = Duration::from_secs(20);

/// The binary under test.
pub fn herd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_herd")
}

/// A fresh private directory under the system temp dir (removed by [`TempDir`]'s drop).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "herd-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `cond` every 5 ms until it holds; panic with `what` after [`WAIT`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `(pid, ppid, state)` of every process, from /proc.
pub fn processes() -> Vec<(i32, i32, char)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        out.push((pid, ppid, state));
    }
    out
}

/// Live (non-zombie) children of `pid`, sorted.
pub fn children(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = processes()
        .into_iter()
        .filter(|&(_, pp, st)| pp == pid && st != 'Z' && st != 'X')
        .map(|(p, _, _)| p)
        .collect();
    v.sort_unstable();
    v
}

/// True if `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    processes()
        .iter()
        .any(|&(p, _, st)| p == pid && st != 'Z' && st != 'X')
}

/// Kill `pid` and every live descendant (used by drops; only for pids a test started).
pub fn kill_tree(pid: i32) {
    let procs = processes();
    let mut todo = vec![pid];
    let mut all = Vec::new();
    while let Some(p) = todo.pop() {
        all.push(p);
        todo.extend(
            procs
                .iter()
                .filter(|&&(_, pp, _)| pp == p)
                .map(|&(c, _, _)| c),
        );
    }
    for p in all {
        if alive(p) {
            let _ = kill(p, Signal::Kill);
        }
    }
}

/// One line-echo exchange on a new connection.
pub fn echo_once(addr: SocketAddr, line: &str) -> io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_nodelay(true)?;
    s.write_all(format!("{line}\n").as_bytes())?;
    let mut got = String::new();
    BufReader::new(&s).read_line(&mut got)?;
    if got.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed before reply",
        ));
    }
    Ok(got.trim_end_matches('\n').to_string())
}

/// `GET path` on 127.0.0.1:`port` with `Connection: close`: the response body (bounded wait).
pub fn http_get_body(port: u16, path: &str) -> String {
    use std::io::Read;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string())
}

/// A running `herd` master started by a test.
pub struct Herd {
    pub dir: TempDir,
    pub child: Child,
    pub port: u16,
    pub config: PathBuf,
    pub log: PathBuf,
    pub pid_file: PathBuf,
    /// Extra process trees to kill on drop (e.g. a new master after an upgrade).
    pub also_kill: Vec<i32>,
}

/// The config text for an echo server on `port` with `workers` workers, logging to `log`.
pub fn echo_config(port: u16, workers: usize, log: &Path, pid: &Path, extra: &str) -> String {
    format!(
        "workers = {workers}\nloops = 1\npid_file = {pid:?}\nshutdown_timeout = \"5s\"\n\
         stop_timeout = \"3s\"\n{extra}\n[log]\nfile = {log:?}\nlevel = \"info\"\n\n\
         [[listener]]\nname = \"echo\"\nbind = \"127.0.0.1:{port}\"\nprotocol = \"echo\"\n"
    )
}

impl Herd {
    /// Start an echo server with `workers` workers and wait until all are ready.
    pub fn start(tag: &str, workers: usize) -> Herd {
        Self::start_with(tag, workers, "")
    }

    /// Like [`start`](Self::start), with extra top-level config lines.
    pub fn start_with(tag: &str, workers: usize, extra: &str) -> Herd {
        let h = Self::launch(TempDir::new(tag), workers, extra, |_| {});
        let pid = h.pid();
        h.wait_ready_workers(pid, workers);
        h
    }

    /// Write the echo config (`dir/error.log` unless `adjust` changes the text) and start the
    /// master without waiting for anything.
    pub fn launch(
        dir: TempDir,
        workers: usize,
        extra: &str,
        adjust: impl FnOnce(&mut String),
    ) -> Herd {
        Self::launch_env(dir, workers, extra, adjust, &[])
    }

    /// Like [`launch`](Self::launch), with extra environment variables for the master.
    pub fn launch_env(
        dir: TempDir,
        workers: usize,
        extra: &str,
        adjust: impl FnOnce(&mut String),
        env: &[(&str, &str)],
    ) -> Herd {
        let port = free_port();
        let (log, pid_file, config) = (
            dir.path("error.log"),
            dir.path("herd.pid"),
            dir.path("herd.toml"),
        );
        let mut text = echo_config(port, workers, &log, &pid_file, extra);
        adjust(&mut text);
        std::fs::write(&config, text).unwrap();
        let out = std::fs::File::create(dir.path("stderr.txt")).unwrap();
        let child = Command::new(herd_bin())
            .arg("-c")
            .arg(&config)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Herd {
            dir,
            child,
            port,
            config,
            log,
            pid_file,
            also_kill: Vec::new(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Send a signal to the master.
    pub fn signal(&self, sig: Signal) {
        kill(self.pid(), sig).unwrap();
    }

    /// Every parsed log line so far.
    pub fn log_lines(&self) -> Vec<LogLine> {
        read_log(&self.log)
    }

    /// Wait until a log line matching `pred` contains `needle`; returns it.
    pub fn wait_log(&self, needle: &str, pred: impl Fn(&LogLine) -> bool) -> LogLine {
        let mut found = None;
        wait_until(
            &format!("log line {needle:?} in {}", self.log.display()),
            || {
                found = self
                    .log_lines()
                    .into_iter()
                    .find(|l| l.msg.contains(needle) && pred(l));
                found.is_some()
            },
        );
        found.unwrap()
    }

    /// Wait until `master` has `n` ready workers of its current generation, by pid: the
    /// master's `worker N ready (pid P, ...)` lines for live children. Returns their pids.
    pub fn wait_ready_workers(&self, master: i32, n: usize) -> Vec<i32> {
        let mut ready = Vec::new();
        wait_until(&format!("{n} ready workers of {master}"), || {
            let kids = children(master);
            let lines = self.log_lines();
            ready = kids
                .iter()
                .copied()
                .filter(|k| {
                    lines
                        .iter()
                        .any(|l| l.pid == master && l.msg.contains(&format!("ready (pid {k},")))
                })
                .collect();
            ready.len() == n
        });
        ready
    }

    /// Wait for the master to exit (bounded) and return its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut status = None;
        wait_until("master exit", || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }

    /// Read the pid file.
    pub fn pid_in_file(&self, path: &Path) -> Option<i32> {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    }
}

impl Drop for Herd {
    fn drop(&mut self) {
        for &p in &self.also_kill {
            kill_tree(p);
        }
        if self.child.try_wait().ok().flatten().is_none() {
            kill_tree(self.pid());
            let _ = self.child.wait();
        }
    }
}

/// A parsed log line: `TIME LEVEL herd[PID ROLE]: MSG`.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub pid: i32,
    pub role: String,
    pub level: String,
    pub msg: String,
}

/// Parse every well-formed line of a log file.
pub fn read_log(path: &Path) -> Vec<LogLine> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(parse_log_line).collect()
}

pub fn parse_log_line(line: &str) -> Option<LogLine> {
    let (head, msg) = line.split_once("]: ")?;
    let mut parts = head.split_whitespace();
    let _time = parts.next()?;
    let level = parts.next()?.to_string();
    let rest: Vec<&str> = parts.collect();
    let tag = rest.join(" ");
    let inner = tag.strip_prefix("herd[")?;
    let (pid, role) = inner.split_once(' ')?;
    Some(LogLine {
        pid: pid.parse().ok()?,
        role: role.to_string(),
        level,
        msg: msg.to_string(),
    })
}

/// Continuous load: `clients` threads each doing one echo exchange per new connection,
/// paced at about one exchange per millisecond each, until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub ok: Arc<AtomicU64>,
    pub failures: Arc<Mutex<Vec<String>>>,
}

/// What a load run saw.
#[derive(Debug)]
pub struct LoadReport {
    pub ok: u64,
    pub failures: Vec<String>,
}

impl LoadReport {
    /// Failures whose error says the connection was refused (the listener was closed).
    pub fn refused(&self) -> usize {
        self.failures
            .iter()
            .filter(|f| f.contains("refused"))
            .count()
    }
}

impl Load {
    pub fn start(addr: SocketAddr, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|c| {
                let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
                std::thread::spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let line = format!("client {c} request {i}");
                        match echo_once(addr, &line) {
                            Ok(got) if got == line => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(got) => failures
                                .lock()
                                .unwrap()
                                .push(format!("wrong reply {got:?}")),
                            Err(e) => failures.lock().unwrap().push(format!("{line}: {e}")),
                        }
                        i += 1;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                })
            })
            .collect();
        Load {
            stop,
            threads,
            ok,
            failures,
        }
    }

    /// Wait until at least `n` more exchanges have succeeded.
    pub fn wait_progress(&self, n: u64) {
        let start = self.ok.load(Ordering::Relaxed);
        wait_until(&format!("{n} more successful requests"), || {
            self.ok.load(Ordering::Relaxed) >= start + n
        });
    }

    pub fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        LoadReport {
            ok: self.ok.load(Ordering::Relaxed),
            failures: self.failures.lock().unwrap().clone(),
        }
    }
}

/// Which of `pids` holds the server side of the client connection `client` (to `server_port`),
/// found through /proc/net/tcp and /proc/PID/fd.
pub fn owner_of(client: &TcpStream, server_port: u16, pids: &[i32]) -> Option<i32> {
    let client_port = client.local_addr().ok()?.port();
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port_of = |hex: &str| {
        hex.rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
    };
    let inode = table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 9 && port_of(f[1]) == Some(server_port) && port_of(f[2]) == Some(client_port))
            .then(|| f[9].to_string())
    })?;
    let want = format!("socket:[{inode}]");
    pids.iter().copied().find(|pid| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| {
                d.flatten().any(|e| {
                    std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy() == want)
                })
            })
            .unwrap_or(false)
    })
}

/// A connection kept open for several exchanges.
pub struct Persistent {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Persistent {
    pub fn connect(addr: SocketAddr) -> Persistent {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Persistent { stream, reader }
    }

    /// One exchange on this connection.
    pub fn echo(&mut self, line: &str) -> io::Result<String> {
        self.stream.write_all(format!("{line}\n").as_bytes())?;
        let mut got = String::new();
        self.reader.read_line(&mut got)?;
        if got.is_empty() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        Ok(got.trim_end_matches('\n').to_string())
    }

    /// Send without waiting for a reply.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Read one reply line ("" at EOF).
    pub fn read_line(&mut self) -> io::Result<String> {
        let mut got = String::new();
        self.reader.read_line(&mut got)?;
        Ok(got)
    }
}

/// Keep-alive HTTP load: `clients` threads, each on its own connection sending `GET path`
/// again the moment the previous response is complete (no pause, as wrk does), reconnecting
/// only when a response said `Connection: close`. A request that gets no complete response
/// (end of stream, reset, refused connect) is a failure.
pub struct HttpLoad {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub ok: Arc<AtomicU64>,
    /// Responses that said `Connection: close`.
    pub closes: Arc<AtomicU64>,
    pub failures: Arc<Mutex<Vec<String>>>,
}

/// One response on `reader`: (status, body length, `Connection: close`).
fn read_http_response(reader: &mut BufReader<TcpStream>) -> io::Result<(u16, usize, bool)> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "closed before a response",
        ));
    }
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
    let (mut len, mut close) = (0usize, false);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed inside a head",
            ));
        }
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse().map_err(io::Error::other)?;
        } else if l == "connection: close" {
            close = true;
        }
    }
    let mut body = vec![0; len];
    std::io::Read::read_exact(reader, &mut body)?;
    Ok((status, len, close))
}

impl HttpLoad {
    pub fn start(addr: SocketAddr, clients: usize, path: &str) -> HttpLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let closes = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let request = format!("GET {path} HTTP/1.1\r\nHost: herd\r\n\r\n");
        let threads = (0..clients)
            .map(|c| {
                let (stop, ok, closes, failures) =
                    (stop.clone(), ok.clone(), closes.clone(), failures.clone());
                let request = request.clone();
                std::thread::spawn(move || {
                    let mut conn: Option<(TcpStream, BufReader<TcpStream>)> = None;
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let fail = |what: String| {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("client {c} request {i}: {what}"))
                        };
                        if conn.is_none() {
                            match TcpStream::connect(addr) {
                                Ok(s) => {
                                    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                                    let r = BufReader::new(s.try_clone().unwrap());
                                    conn = Some((s, r));
                                }
                                Err(e) => {
                                    fail(format!("connect: {e}"));
                                    std::thread::sleep(Duration::from_millis(10));
                                    continue;
                                }
                            }
                        }
                        let (s, r) = conn.as_mut().unwrap();
                        let got = s
                            .write_all(request.as_bytes())
                            .and_then(|()| read_http_response(r));
                        match got {
                            Ok((200, _, close)) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                                if close {
                                    closes.fetch_add(1, Ordering::Relaxed);
                                    conn = None;
                                }
                            }
                            Ok((status, _, _)) => {
                                fail(format!("status {status}"));
                                conn = None;
                            }
                            Err(e) => {
                                fail(e.to_string());
                                conn = None;
                            }
                        }
                    }
                })
            })
            .collect();
        HttpLoad {
            stop,
            threads,
            ok,
            closes,
            failures,
        }
    }

    /// Wait until at least `n` more requests have succeeded.
    pub fn wait_progress(&self, n: u64) {
        let start = self.ok.load(Ordering::Relaxed);
        wait_until(&format!("{n} more successful requests"), || {
            self.ok.load(Ordering::Relaxed) >= start + n
        });
    }

    /// Stop the clients: (successful requests, `Connection: close` answers, failures).
    pub fn finish(self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let failures = self.failures.lock().unwrap().clone();
        (
            self.ok.load(Ordering::Relaxed),
            self.closes.load(Ordering::Relaxed),
            failures,
        )
    }
}
