//! Hold mode: open many connections, echo one message on each, then keep them idle.
//!
//! This is for measuring what an idle connection costs a server: a script reads the server's
//! RSS before [`open`] and again once it returns (every connection has carried one verified
//! echo, so the server has touched its per-connection state), then the connections are held
//! for a while and [`check_still_open`] counts the ones the server dropped meanwhile.
//!
//! Connections are opened one after another with blocking sockets: simple, and on loopback
//! 10,000 of them take well under a second. Every read has a timeout, so nothing here can hang.
//! This module does not sleep or print; the `herd-bench hold` command does that. Callers: the
//! command and the integration tests.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::echo::connect_with_retry;
use crate::pattern::Pattern;
use crate::Error;

/// How long one echo may take before the connection counts as failed.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);

/// What a hold run does.
#[derive(Clone, Debug)]
pub struct HoldOpts {
    /// Server address; the only place the run connects to.
    pub addr: SocketAddr,
    /// Connections to open.
    pub connections: usize,
    /// Bytes of the one message echoed on each connection.
    pub size: usize,
    /// Connect attempts per connection before giving up (at least 1).
    pub connect_attempts: u32,
}

/// Opens `opts.connections` connections and echoes one verified message of `opts.size` bytes
/// on each. Any failure (connect, timeout, wrong bytes, early close) is an error naming the
/// connection; on success the open connections are returned for the caller to hold.
pub fn open(opts: &HoldOpts) -> Result<Vec<TcpStream>, Error> {
    if opts.connections == 0 || opts.size == 0 || opts.size > crate::echo::MAX_SIZE {
        return Err(Error::Opts(
            "--connections must be at least 1 and --size between 1 byte and 16 MiB".into(),
        ));
    }
    let mut msg = vec![0u8; opts.size];
    let mut back = vec![0u8; opts.size];
    let mut held = Vec::with_capacity(opts.connections);
    for index in 0..opts.connections {
        let mut s = connect_with_retry(opts.addr, index, opts.connect_attempts)?;
        let echo_err = |reason: String| Error::Echo { index, reason };
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(ECHO_TIMEOUT))?;
        s.set_write_timeout(Some(ECHO_TIMEOUT))?;
        let pattern = Pattern::new(index as u64);
        pattern.fill(0, &mut msg);
        s.write_all(&msg)
            .map_err(|e| echo_err(format!("write: {e}")))?;
        s.read_exact(&mut back).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => echo_err("closed by server before echoing".into()),
            _ => echo_err(format!("read: {e}")),
        })?;
        pattern
            .verify(0, &back)
            .map_err(|m| echo_err(format!("echo mismatch: {m}")))?;
        held.push(s);
    }
    Ok(held)
}

/// Counts the held connections that are no longer usable: the server closed them, reset them
/// or sent unexpected bytes. Does not block.
pub fn check_still_open(held: &[TcpStream]) -> usize {
    let mut buf = [0u8; 1];
    held.iter()
        .filter(|s| {
            if s.set_nonblocking(true).is_err() {
                return true;
            }
            let broken = !matches!(
                (&mut &**s).read(&mut buf),
                Err(ref e) if e.kind() == io::ErrorKind::WouldBlock
            );
            let _ = s.set_nonblocking(false);
            broken
        })
        .count()
}
