//! Logging: a tracing subscriber whose lines carry the process id and role, written to a file
//! that can be reopened (after logrotate's `mv`) or to standard error; plus the HTTP access log.
//!
//! Each process (master, every worker) installs its own subscriber with [`Logs::init`]. Files
//! are opened with `O_APPEND`, and every event is formatted first and written with a single
//! `write`, so lines from several processes never interleave mid-line. [`Logs::reopen`] (on
//! SIGUSR1) opens the configured paths again, creating them if they were moved away;
//! [`Logs::apply`] switches paths and level after a reload. Line format:
//!
//! ```text
//! 2025-01-31T12:00:00.123Z  INFO herd[4242 worker 1]: listening on 127.0.0.1:8081 (http)
//! ```
//!
//! This module does not decide when to reopen; the master and workers call it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{Event, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{reload, Registry};

use crate::config::LogConfig;

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

/// Formats `timestamp LEVEL herd[pid role]: message fields`.
struct LineFormat {
    role: String,
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
        let fmt = tracing_subscriber::fmt::layer()
            .event_format(LineFormat { role: role.into() })
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
        Ok(())
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
}
