//! herd-bench: a cheap load generator for servers on loopback.
//!
//! Layers, top to bottom:
//!
//! - `main.rs` (the `herd-bench` binary) parses the command line, runs one mode, prints its
//!   report as a table or as JSON and turns errors into a nonzero exit status.
//! - One module per mode. [`echo`] keeps `depth` messages in flight on each of many
//!   connections and checks every echoed byte; [`hold`] opens many connections, echoes one
//!   message on each and then keeps them idle (for measuring a server's memory per
//!   connection). [`frame`] runs echo's load as herd frame-protocol RPCs, and [`ws`] as
//!   WebSocket binary messages after an HTTP upgrade; an HTTP mode will sit beside them.
//! - `driver` (private) is the client machinery echo, frame and ws share: client threads, the
//!   start handshake, the mio poll loop, the measured window, merging into the report. Each of
//!   those modes only says how to open a connection and what its messages look like.
//! - [`stats`] counts and formats: the latency histogram, percentiles, the [`stats::Report`].
//! - [`pattern`] is the deterministic byte stream every connection sends and verifies.
//!
//! The generator itself must stay cheap so that it measures the server, not itself: no async
//! runtime, one mio event loop per client thread with many connections on each, one clock read
//! per read syscall, no allocation per message. It connects only to the address it is given,
//! and every run stops by itself after its duration. This library prints only a line (on
//! stderr) for each of the first ten mismatches, disconnects and socket errors of a client
//! thread (all are counted); the binary decides what else to print.

#![forbid(unsafe_code)]

mod driver;
pub mod echo;
pub mod frame;
pub mod hold;
pub mod pattern;
pub mod stats;
pub mod ws;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Why a run could not be carried out. Errors found *during* a run (mismatches, server
/// disconnects) are not this type: they are counted in the [`stats::Report`].
#[derive(Debug)]
pub enum Error {
    /// The options make no sense (zero connections, zero-byte messages, ...).
    Opts(String),
    /// Connection number `index` could not be opened, even after retrying.
    Connect {
        /// Where it tried to connect.
        addr: SocketAddr,
        /// Which connection (0-based).
        index: usize,
        /// The last connect error.
        source: io::Error,
    },
    /// A connection failed its check before the measured run (used by `hold`).
    Echo {
        /// Which connection (0-based).
        index: usize,
        /// What went wrong.
        reason: String,
    },
    /// An error outside any single connection (creating the poller, spawning a thread).
    Io(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Opts(why) => write!(f, "invalid options: {why}"),
            Error::Connect {
                addr,
                index,
                source,
            } => write!(f, "connection {index} to {addr} failed: {source}"),
            Error::Echo { index, reason } => write!(f, "connection {index}: {reason}"),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Connect { source, .. } => Some(source),
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

/// The longest duration [`parse_duration`] accepts (about 31 years): anything longer is a
/// typo, and would overflow the clock arithmetic of a run.
const MAX_DURATION: Duration = Duration::from_secs(1_000_000_000);

/// Parses a duration with `humantime`: a number and a unit (`10s`, `300ms`, `1.5s`, `2m`,
/// `500us`, also sums such as `1m 30s`); a bare number means seconds.
///
/// ```
/// use std::time::Duration;
/// use herd_bench::parse_duration;
/// assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
/// assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
/// assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
/// assert!(parse_duration("fast").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bare = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let d = if bare {
        humantime::parse_duration(&format!("{s}s"))
    } else {
        humantime::parse_duration(s)
    }
    .map_err(|e| format!("`{s}` is not a duration ({e}; try 10s, 300ms, 2m)"))?;
    if d > MAX_DURATION {
        return Err(format!("duration `{s}` is too long"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("1e999").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("40years").is_err());
        assert!(parse_duration("1.2.3").is_err());
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
    }
}
