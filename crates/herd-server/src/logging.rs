//! Logging: a tracing subscriber whose lines carry the process id and role, written to a file
//! that can be reopened (after logrotate's `mv`) or to standard error; plus the HTTP access log.
//!
//! Each process (master, every worker) installs its own subscriber with [`Logs::init`]. Files
//! are opened with `O_APPEND`, and every event is formatted first and written with a single
//! `write`, so lines from several processes never interleave mid-line. [`Logs::reopen`] (on
//! SIGUSR1) opens the configured paths again, creating them if they were moved away;
//! [`Logs::apply`] switches paths, level and format after a reload. Text format (fields after
//! the message as `key=value`):
//!
//! ```text
//! 2025-01-31T12:00:00.123Z  INFO herd[4242 worker 1]: worker ready slot=1 pid=4250 generation=1
//! ```
//!
//! With `log.format = "json"` each event is one JSON object (`time`, `level`, `pid`, `role`,
//! `target`, `message`, and the event's own fields under `fields`). Warnings and errors are rate limited per call
//! site: past `log.burst` events in one second, the rest are counted and summarised in one
//! line (`suppressed=N`) when the second is over ([`RateLimit`]).
//!
//! This module does not decide when to reopen; the master and workers call it.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Event, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{reload, Registry};

use herd_core::http::AccessEntry;

use crate::config::{AccessFormat, LogConfig, LogFormat};

/// A log destination: a file reopened on demand, or standard error.
#[derive(Debug)]
pub struct Target {
    path: Mutex<Option<PathBuf>>,
    file: Mutex<Option<File>>,
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Target {
    /// Write to `path` (created if missing, appended to), or to stderr when `None`.
    pub fn open(path: Option<&Path>) -> io::Result<Target> {
        let file = path.map(open_append).transpose()?;
        Ok(Target {
            path: Mutex::new(path.map(Path::to_path_buf)),
            file: Mutex::new(file),
        })
    }

    /// Open the path again (a moved file keeps its old name's data; a new file appears).
    pub fn reopen(&self) -> io::Result<()> {
        let path = self.path.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let new = path.as_deref().map(open_append).transpose()?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    /// Switch to another path (or stderr) and open it.
    pub fn set_path(&self, path: Option<&Path>) -> io::Result<()> {
        let new = path.map(open_append).transpose()?;
        *self.path.lock().unwrap_or_else(|p| p.into_inner()) = path.map(Path::to_path_buf);
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }

    /// The current path (`None`: stderr).
    pub fn path(&self) -> Option<PathBuf> {
        self.path.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Write one whole line (or several) with a single write where possible.
    pub fn write_line(&self, line: &[u8]) -> io::Result<()> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        match file.as_mut() {
            Some(f) => f.write_all(line),
            None => io::stderr().lock().write_all(line),
        }
    }
}

/// The writer handed to tracing for one event.
pub struct TargetWriter<'a>(&'a Target);

impl Write for TargetWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_line(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Clone)]
struct SharedTarget(Arc<Target>);

impl<'a> MakeWriter<'a> for SharedTarget {
    type Writer = TargetWriter<'a>;
    fn make_writer(&'a self) -> TargetWriter<'a> {
        TargetWriter(&self.0)
    }
}

/// Formats `timestamp LEVEL herd[pid role]: message fields`, or one JSON object, and applies
/// the [`RateLimit`] to warnings and errors.
struct LineFormat {
    role: String,
    json: Arc<AtomicBool>,
    limit: Arc<RateLimit>,
}

/// Collects an event's fields for the JSON format.
struct JsonFields<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl tracing::field::Visit for JsonFields<'_> {
    fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
        self.0.insert(
            f.name().to_owned(),
            serde_json::Value::String(format!("{v:?}")),
        );
    }
    fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
        self.0
            .insert(f.name().to_owned(), serde_json::Value::String(v.to_owned()));
    }
    fn record_u64(&mut self, f: &tracing::field::Field, v: u64) {
        self.0.insert(f.name().to_owned(), v.into());
    }
    fn record_i64(&mut self, f: &tracing::field::Field, v: i64) {
        self.0.insert(f.name().to_owned(), v.into());
    }
    fn record_bool(&mut self, f: &tracing::field::Field, v: bool) {
        self.0.insert(f.name().to_owned(), v.into());
    }
}

/// Per-call-site rate limit of warnings and errors: at most `burst` events per call site per
/// second are written; the others are counted, and the count is written as one summary line
/// when that call site logs again in a later second, or at the next [`RateLimit::flush`]
/// (the master and workers call [`Logs::flush_suppressed`] about once a second).
#[derive(Debug, Default)]
pub struct RateLimit {
    burst: AtomicU32,
    sites: Mutex<HashMap<tracing::callsite::Identifier, Site>>,
}

#[derive(Debug)]
struct Site {
    second: u64,
    written: u32,
    suppressed: u64,
    level: tracing::Level,
    target: &'static str,
    location: String,
}

/// What to do with one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write it, after a summary of `suppressed` earlier events of its call site if non-zero.
    Write {
        /// Events of this call site suppressed in an earlier second.
        suppressed: u64,
    },
    /// Drop it (counted).
    Suppress,
}

impl RateLimit {
    /// A limit of `burst` events per call site per second (0: no limit).
    pub fn new(burst: u32) -> RateLimit {
        RateLimit {
            burst: AtomicU32::new(burst),
            sites: Mutex::default(),
        }
    }

    /// Decide about one event of `meta` in second `now_s`.
    pub fn check(&self, meta: &'static tracing::Metadata<'static>, now_s: u64) -> Verdict {
        let burst = self.burst.load(Ordering::Relaxed);
        if burst == 0 || *meta.level() > tracing::Level::WARN {
            return Verdict::Write { suppressed: 0 };
        }
        let mut sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        let site = sites.entry(meta.callsite()).or_insert_with(|| Site {
            second: now_s,
            written: 0,
            suppressed: 0,
            level: *meta.level(),
            target: meta.target(),
            location: format!(
                "{}:{}",
                meta.file().unwrap_or("?"),
                meta.line().unwrap_or(0)
            ),
        });
        let mut earlier = 0;
        if site.second != now_s {
            earlier = std::mem::take(&mut site.suppressed);
            site.second = now_s;
            site.written = 0;
        }
        if site.written < burst {
            site.written += 1;
            Verdict::Write {
                suppressed: earlier,
            }
        } else {
            site.suppressed += 1;
            Verdict::Suppress
        }
    }

    /// Summaries `(level, target, location, count)` of call sites whose suppressed events
    /// belong to a second before `now_s`; their counts restart at zero.
    pub fn flush(&self, now_s: u64) -> Vec<(tracing::Level, &'static str, String, u64)> {
        let mut sites = self.sites.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::new();
        for s in sites.values_mut() {
            if s.suppressed > 0 && s.second < now_s {
                out.push((s.level, s.target, s.location.clone(), s.suppressed));
                s.suppressed = 0;
            }
        }
        out
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The summary line of `n` suppressed events of a call site.
fn summary_line(
    json: bool,
    role: &str,
    level: tracing::Level,
    target: &str,
    location: &str,
    n: u64,
) -> String {
    let msg = format!("{n} similar events suppressed (more than the burst limit in one second)");
    if json {
        let mut m = serde_json::json!({
            "time": timestamp(SystemTime::now()),
            "level": level.as_str(),
            "pid": std::process::id(),
            "role": role,
            "target": target,
            "message": msg,
            "suppressed": n,
            "callsite": location,
        })
        .to_string();
        m.push('\n');
        m
    } else {
        format!(
            "{} {:>5} herd[{} {}]: {msg} suppressed={n} callsite={location}\n",
            timestamp(SystemTime::now()),
            level,
            std::process::id(),
            role
        )
    }
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let json = self.json.load(Ordering::Relaxed);
        match self.limit.check(meta, now_secs()) {
            Verdict::Suppress => return Ok(()),
            Verdict::Write { suppressed } if suppressed > 0 => {
                let loc = format!(
                    "{}:{}",
                    meta.file().unwrap_or("?"),
                    meta.line().unwrap_or(0)
                );
                let line = summary_line(
                    json,
                    &self.role,
                    *meta.level(),
                    meta.target(),
                    &loc,
                    suppressed,
                );
                w.write_str(&line)?;
            }
            Verdict::Write { .. } => {}
        }
        if json {
            let mut m = serde_json::Map::new();
            m.insert("time".into(), timestamp(SystemTime::now()).into());
            m.insert("level".into(), meta.level().as_str().into());
            m.insert("pid".into(), std::process::id().into());
            m.insert("role".into(), self.role.clone().into());
            m.insert("target".into(), meta.target().into());
            let mut fields = serde_json::Map::new();
            event.record(&mut JsonFields(&mut fields));
            m.insert(
                "message".into(),
                fields.remove("message").unwrap_or_default(),
            );
            if !fields.is_empty() {
                m.insert("fields".into(), serde_json::Value::Object(fields));
            }
            // serde_json escapes newlines: one event, one line.
            return writeln!(w, "{}", serde_json::Value::Object(m));
        }
        write!(
            w,
            "{} {:>5} herd[{} {}]: ",
            timestamp(SystemTime::now()),
            meta.level(),
            std::process::id(),
            self.role
        )?;
        // One event, one line: newlines inside messages are escaped.
        let mut one_line = OneLine(w.by_ref());
        ctx.field_format()
            .format_fields(Writer::new(&mut one_line), event)?;
        writeln!(w)
    }
}

/// Escapes `\n` and `\r` so a message can never span lines.
struct OneLine<'a>(Writer<'a>);

impl std::fmt::Write for OneLine<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let mut rest = s;
        while let Some(i) = rest.find(['\n', '\r']) {
            self.0.write_str(&rest[..i])?;
            self.0.write_str(if rest.as_bytes()[i] == b'\n' {
                "\\n"
            } else {
                "\\r"
            })?;
            rest = &rest[i + 1..];
        }
        self.0.write_str(rest)
    }
}

/// RFC 3339 UTC timestamp with milliseconds.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_millis(951_782_400_123); // 2000-02-29
/// assert_eq!(herd_server::logging::timestamp(t), "2000-02-29T00:00:00.123Z");
/// ```
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// nginx's `$time_local` in UTC: `05/Dec/2026:11:40:03 +0000`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
/// assert_eq!(herd_server::logging::time_local(t), "14/Nov/2023:22:13:20 +0000");
/// ```
pub fn time_local(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{d:02}/{}/{y:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m as usize).clamp(1, 12) - 1],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A string as nginx escapes variables in a quoted log field: `"` and `\\` and bytes outside
/// printable ASCII become `\xHH`.
fn nginx_escape(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.push_str(&format!("\\x{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
}

/// One access-log line (without the newline) for `e` on listener `listener`, finished at `now`.
///
/// `combined` is nginx's format, with the request time in seconds and the listener appended
/// (as nginx's `combined` followed by `$request_time` and the server name):
///
/// ```text
/// 127.0.0.1 - - [05/Dec/2026:11:40:03 +0000] "GET /x HTTP/1.1" 200 5 "-" "curl/8.5.0" 0.000 site
/// ```
///
/// `json` is one object per line with the same fields (`time` in RFC 3339).
pub fn access_line(
    format: AccessFormat,
    e: &AccessEntry<'_>,
    listener: &str,
    now: SystemTime,
) -> String {
    let secs = e.duration.as_secs_f64();
    match format {
        AccessFormat::Combined => {
            let mut s = String::with_capacity(160);
            s.push_str(&format!(
                "{} - - [{}] \"",
                e.peer_addr.ip(),
                time_local(now)
            ));
            if e.method == "-" {
                s.push('-');
            } else {
                nginx_escape(e.method, &mut s);
                s.push(' ');
                nginx_escape(e.path, &mut s);
                s.push(' ');
                s.push_str(e.version);
            }
            s.push_str(&format!("\" {} {} \"", e.status, e.bytes));
            nginx_escape(e.referer, &mut s);
            s.push_str("\" \"");
            nginx_escape(e.user_agent, &mut s);
            s.push_str(&format!("\" {secs:.3} "));
            s.push_str(listener);
            s
        }
        AccessFormat::Json => serde_json::json!({
            "time": timestamp(now),
            "listener": listener,
            "peer": e.peer_addr.to_string(),
            "method": e.method,
            "path": e.path,
            "version": e.version,
            "status": e.status,
            "bytes": e.bytes,
            "request_time": (secs * 1000.0).round() / 1000.0,
            "referer": e.referer,
            "user_agent": e.user_agent,
        })
        .to_string(),
    }
}

/// Parse a `log.level` value (validated by the config).
pub fn level_filter(level: &str) -> LevelFilter {
    level.parse().unwrap_or(LevelFilter::INFO)
}

/// This process's logging: the event log, the optional access log, and the level.
#[derive(Clone)]
pub struct Logs {
    events: Arc<Target>,
    access: Arc<Target>,
    access_on: Arc<Mutex<bool>>,
    level: Option<reload::Handle<LevelFilter, Registry>>,
    json: Arc<AtomicBool>,
    limit: Arc<RateLimit>,
    role: String,
}

static GLOBAL: OnceLock<Logs> = OnceLock::new();

impl Logs {
    /// Install the global subscriber for this process. `role` is e.g. `"master"` or
    /// `"worker 2"`. Calling it again returns the first installation, with `cfg` applied.
    pub fn init(role: &str, cfg: &LogConfig) -> io::Result<Logs> {
        if let Some(existing) = GLOBAL.get() {
            existing.apply(cfg)?;
            return Ok(existing.clone());
        }
        let events = Arc::new(Target::open(cfg.file.as_deref())?);
        let access = Arc::new(Target::open(cfg.access_file.as_deref())?);
        let (level_layer, handle) = reload::Layer::new(level_filter(&cfg.level));
        let json = Arc::new(AtomicBool::new(cfg.format == LogFormat::Json));
        let limit = Arc::new(RateLimit::new(cfg.burst));
        let fmt = tracing_subscriber::fmt::layer()
            .event_format(LineFormat {
                role: role.into(),
                json: json.clone(),
                limit: limit.clone(),
            })
            .with_writer(SharedTarget(events.clone()));
        let subscriber = Registry::default().with(level_layer).with(fmt);
        let level = tracing::subscriber::set_global_default(subscriber)
            .ok()
            .map(|_| handle);
        let logs = Logs {
            events,
            access,
            access_on: Arc::new(Mutex::new(cfg.access_file.is_some())),
            level,
            json,
            limit,
            role: role.into(),
        };
        Ok(GLOBAL.get_or_init(|| logs).clone())
    }

    /// Reopen the log files (SIGUSR1).
    pub fn reopen(&self) -> io::Result<()> {
        self.events.reopen()?;
        self.access.reopen()
    }

    /// Switch to the paths and level of a new configuration (after a reload).
    pub fn apply(&self, cfg: &LogConfig) -> io::Result<()> {
        if self.events.path() != cfg.file {
            self.events.set_path(cfg.file.as_deref())?;
        }
        if self.access.path() != cfg.access_file {
            self.access.set_path(cfg.access_file.as_deref())?;
        }
        *self.access_on.lock().unwrap_or_else(|p| p.into_inner()) = cfg.access_file.is_some();
        if let Some(h) = &self.level {
            let _ = h.modify(|l| *l = level_filter(&cfg.level));
        }
        self.json
            .store(cfg.format == LogFormat::Json, Ordering::Relaxed);
        self.limit.burst.store(cfg.burst, Ordering::Relaxed);
        Ok(())
    }

    /// Write the summaries of warnings and errors suppressed by the rate limit in earlier
    /// seconds (the master and workers call this about once a second).
    pub fn flush_suppressed(&self) {
        let json = self.json.load(Ordering::Relaxed);
        for (level, target, loc, n) in self.limit.flush(now_secs()) {
            let line = summary_line(json, &self.role, level, target, &loc, n);
            let _ = self.events.write_line(line.as_bytes());
        }
    }

    /// True if an access log file is configured.
    pub fn has_access_log(&self) -> bool {
        *self.access_on.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Append one line to the access log, if one is configured.
    pub fn access(&self, line: &str) {
        if *self.access_on.lock().unwrap_or_else(|p| p.into_inner()) {
            let mut s = String::with_capacity(line.len() + 1);
            s.push_str(line);
            s.push('\n');
            let _ = self.access.write_line(s.as_bytes());
        }
    }

    /// The event log's path (`None`: stderr).
    pub fn path(&self) -> Option<PathBuf> {
        self.events.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(
            timestamp(UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20.000Z"
        );
    }

    #[test]
    fn target_reopens_after_move() {
        let dir = std::env::temp_dir().join(format!("herd-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.log");
        let t = Target::open(Some(&path)).unwrap();
        t.write_line(b"one\n").unwrap();
        let moved = dir.join("a.log.1");
        std::fs::rename(&path, &moved).unwrap();
        t.write_line(b"two\n").unwrap();
        t.reopen().unwrap();
        t.write_line(b"three\n").unwrap();
        assert_eq!(std::fs::read_to_string(&moved).unwrap(), "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        t.set_path(None).unwrap();
        assert_eq!(t.path(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn levels_parse() {
        assert_eq!(level_filter("warn"), LevelFilter::WARN);
        assert_eq!(level_filter("off"), LevelFilter::OFF);
        for l in crate::config::LEVELS {
            assert_eq!(level_filter(l).to_string().to_lowercase(), l);
        }
    }

    fn entry<'a>(method: &'a str, path: &'a str, ua: &'a str) -> AccessEntry<'a> {
        AccessEntry {
            method,
            path,
            status: 200,
            bytes: 5,
            duration: std::time::Duration::from_millis(1234),
            peer_addr: "127.0.0.1:5555".parse().unwrap(),
            version: "HTTP/1.1",
            referer: "-",
            user_agent: ua,
        }
    }

    #[test]
    fn access_lines_combined_and_json() {
        let t = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let e = entry("GET", "/a?b=1", "curl/8.5.0");
        assert_eq!(
            access_line(AccessFormat::Combined, &e, "site", t),
            "127.0.0.1 - - [14/Nov/2023:22:13:20 +0000] \"GET /a?b=1 HTTP/1.1\" 200 5 \"-\" \
             \"curl/8.5.0\" 1.234 site"
        );
        // Quotes and control bytes from the client are escaped as nginx does.
        let evil = entry("GET", "/\"x", "a\"b\nc");
        let line = access_line(AccessFormat::Combined, &evil, "site", t);
        assert!(line.contains("\"GET /\\x22x HTTP/1.1\""), "{line}");
        assert!(line.contains("\"a\\x22b\\x0Ac\""), "{line}");
        assert!(!line.contains('\n'));
        let refused = AccessEntry {
            method: "-",
            path: "-",
            version: "-",
            ..e
        };
        assert!(access_line(AccessFormat::Combined, &refused, "s", t).contains("] \"-\" 200"));
        let j: serde_json::Value =
            serde_json::from_str(&access_line(AccessFormat::Json, &evil, "site", t)).unwrap();
        assert_eq!(j["path"], "/\"x");
        assert_eq!(j["user_agent"], "a\"b\nc");
        assert_eq!(j["status"], 200);
        assert_eq!(j["request_time"], 1.234);
        assert_eq!(j["peer"], "127.0.0.1:5555");
        assert_eq!(j["time"], "2023-11-14T22:13:20.000Z");
    }

    /// A burst from one call site: `burst` events per second are written, the rest counted and
    /// summarised once; another call site is not affected.
    #[test]
    fn rate_limit_summarises_bursts() {
        static CS: tracing::callsite::DefaultCallsite =
            tracing::callsite::DefaultCallsite::new(&META);
        static META: tracing::Metadata<'static> = tracing::metadata! {
            name: "test",
            target: "herd",
            level: tracing::Level::WARN,
            fields: &[],
            callsite: &CS,
            kind: tracing::metadata::Kind::EVENT,
        };
        let r = RateLimit::new(3);
        let verdicts: Vec<Verdict> = (0..1000).map(|_| r.check(&META, 100)).collect();
        let written = verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Write { .. }))
            .count();
        assert_eq!(written, 3);
        assert!(r.flush(100).is_empty(), "the second is not over yet");
        let summary = r.flush(101);
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0].3, 997);
        assert!(r.flush(102).is_empty(), "summarised once");
        // Suppressed events reported by the next event of a later second instead.
        for _ in 0..5 {
            r.check(&META, 200);
        }
        assert_eq!(r.check(&META, 201), Verdict::Write { suppressed: 2 });
        // No limit.
        let off = RateLimit::new(0);
        assert!((0..100).all(|_| off.check(&META, 1) == Verdict::Write { suppressed: 0 }));
    }

    /// The JSON format writes one object per event with the event's fields; a burst of the
    /// same warning is cut to the limit plus one summary line.
    #[test]
    fn json_events_and_a_limited_burst() {
        let dir = std::env::temp_dir().join(format!("herd-json-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.log");
        let target = Arc::new(Target::open(Some(&path)).unwrap());
        let limit = Arc::new(RateLimit::new(2));
        let fmt = tracing_subscriber::fmt::layer()
            .event_format(LineFormat {
                role: "worker 3".into(),
                json: Arc::new(AtomicBool::new(true)),
                limit: limit.clone(),
            })
            .with_writer(SharedTarget(target.clone()));
        let subscriber = Registry::default().with(fmt);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(slot = 3usize, peer = %"127.0.0.1:1", reason = "flood", "closing");
            for i in 0..50u64 {
                tracing::warn!(n = i, "same warning");
            }
        });
        // The burst may straddle a second boundary: count, don't time.
        let flushed: u64 = limit.flush(u64::MAX).iter().map(|s| s.3).sum();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let first = &lines[0];
        assert_eq!(first["message"], "closing");
        assert_eq!(first["fields"]["slot"], 3);
        assert_eq!(first["fields"]["peer"], "127.0.0.1:1");
        assert_eq!(first["fields"]["reason"], "flood");
        assert_eq!(first["role"], "worker 3");
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["pid"], std::process::id());
        let warns = lines
            .iter()
            .filter(|l| l["message"] == "same warning")
            .count() as u64;
        let summarised: u64 = lines.iter().filter_map(|l| l["suppressed"].as_u64()).sum();
        assert!(warns < 50, "{warns} of 50 written");
        assert_eq!(warns + summarised + flushed, 50);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
