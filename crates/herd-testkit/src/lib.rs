//! Test helpers for herd: loopback clients with bounded waits, and expectation helpers.
//!
//! Everything here talks only to loopback addresses and every wait has a deadline, so a broken
//! server fails a test instead of hanging it. Waits poll for a condition rather than sleeping
//! for a fixed time, so no test depends on machine speed. Not published; used by the
//! integration tests of every crate in the workspace.
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub mod certs;

/// The deadline every wait in this crate uses unless told otherwise.
pub const WAIT: Duration = Duration::from_secs(10);

/// Connect to `addr` with read/write timeouts of [`WAIT`].
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Read exactly `n` bytes (panics on EOF or timeout).
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf)
        .unwrap_or_else(|e| panic!("reading {n} bytes: {e}"));
    buf
}

/// Write everything, then read back exactly as many bytes and return them.
pub fn roundtrip(s: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    s.write_all(data).unwrap();
    read_n(s, data.len())
}

/// Wait until the peer closes: returns every byte read before EOF. Panics on timeout.
/// A reset counts as closed.
pub fn read_to_close(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + WAIT;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return out,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!("peer did not close within {WAIT:?}")
            }
            Err(e) => panic!("read: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "peer did not close within {WAIT:?}"
        );
    }
}

/// True if the peer has closed (EOF or reset) within `within`; false if it is still open.
pub fn is_closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 1];
    let r = match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
    };
    s.set_read_timeout(Some(WAIT)).unwrap();
    r
}

/// Poll `cond` every millisecond until it holds; panic with `what` after [`WAIT`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Deterministic test payload: `n` bytes derived from `seed`.
pub fn pattern(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Resident set size of this process in KiB (from /proc/self/status), if available.
pub fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
