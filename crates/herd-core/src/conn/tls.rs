//! A TLS session over a connection's socket: the transport variant that reads ciphertext and
//! returns plaintext, and seals plaintext into records.
//!
//! The loop's syscall discipline holds: a read returns less than its buffer only once the
//! socket is drained (so the edge-triggered poller fires again), and a send seals what it is
//! given into records, one `writev` per 64 KiB batch, until all of it is taken or the socket
//! is full (so replies of one read leave in one `writev`, and a short send means a full
//! socket, as it does for plain TCP: the only state that earns a writable edge). Ciphertext that the socket did not
//! take waits inside the session (bounded by rustls' 64 KiB buffer limit, under which the
//! send side keeps the rest of its output in its own, counted, buffer) and is reported by
//! [`TlsStream::has_pending`] so the send side asks for writable edges. Files are read in
//! 16 KiB chunks (one record each) and sealed as they go: no unbounded buffering, no
//! `sendfile` (kTLS is not used yet).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

use crate::stats::Stats;
use crate::tls::TlsFailure;

/// Plaintext per record when sealing a file.
const FILE_CHUNK: usize = 16 * 1024;

/// The reply to a plain HTTP request on a TLS port.
const PLAIN_HTTP_REPLY: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 49\r\nConnection: close\r\n\r\nThis port speaks HTTPS: use https:// to reach it.";

/// A server-side TLS session and its socket.
impl TlsStream {
    /// See [`crate::sys::abort_on_close`].
    pub(crate) fn abort_on_close(&self) -> std::io::Result<()> {
        crate::sys::abort_on_close(&self.sock)
    }
}

pub(crate) struct TlsStream {
    sock: TcpStream,
    session: ServerConnection,
    /// The socket reported end of stream.
    tcp_eof: bool,
    /// The peer sent close_notify (or closed after the handshake): reads return 0.
    closed: bool,
    /// Why the session failed, once it has.
    failure: Option<TlsFailure>,
    /// Answer plain HTTP with a plain-text 400.
    plain_http_reply: bool,
    /// The handshake finished (counted once).
    established: bool,
    /// Some bytes arrived from the peer.
    started: bool,
}

/// Reads from the socket and notes a short read (the socket is drained).
struct Drain<'a> {
    sock: &'a TcpStream,
    short: bool,
}

impl Read for Drain<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = crate::sys::recv(self.sock, buf)?;
        self.short = n < buf.len();
        Ok(n)
    }
}

impl TlsStream {
    /// A session that waits for the client's hello.
    pub(crate) fn new(
        sock: TcpStream,
        config: &Arc<ServerConfig>,
        plain_http_reply: bool,
    ) -> io::Result<Self> {
        let session = ServerConnection::new(config.clone()).map_err(io::Error::other)?;
        Ok(TlsStream {
            sock,
            session,
            tcp_eof: false,
            closed: false,
            failure: None,
            plain_http_reply,
            established: false,
            started: false,
        })
    }

    /// The socket.
    pub(crate) fn sock(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    /// The socket, shared.
    pub(crate) fn sock_ref(&self) -> &TcpStream {
        &self.sock
    }

    /// The handshake is still going on.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.session.is_handshaking()
    }

    /// Why the session failed, if it has.
    pub(crate) fn failure(&self) -> Option<TlsFailure> {
        self.failure
    }

    /// Mark the session failed (e.g. the handshake timed out).
    pub(crate) fn set_failure(&mut self, f: TlsFailure) {
        self.failure.get_or_insert(f);
    }

    /// The server name the client asked for (SNI).
    pub(crate) fn server_name(&self) -> Option<&str> {
        self.session.server_name()
    }

    /// The ALPN protocol agreed on.
    pub(crate) fn alpn(&self) -> Option<&[u8]> {
        self.session.alpn_protocol()
    }

    /// Ciphertext is waiting for the socket.
    #[inline]
    pub(crate) fn has_pending(&self) -> bool {
        self.session.wants_write()
    }

    /// Move decrypted bytes into `buf`; notes a close_notify.
    fn take_plaintext(&mut self, buf: &mut [u8]) -> usize {
        let mut filled = 0;
        while filled < buf.len() {
            match self.session.reader().read(&mut buf[filled..]) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // The peer closed the socket without close_notify: an end of stream too.
                Err(_) => {
                    self.closed = true;
                    break;
                }
            }
        }
        filled
    }

    /// Read plaintext into `buf`: `Ok(0)` at the end of the stream. Reads until `buf` is full
    /// or the socket is drained; writes what the handshake needs sent as it goes.
    pub(crate) fn recv(&mut self, buf: &mut [u8], stats: &mut Stats) -> io::Result<usize> {
        let mut filled = 0;
        loop {
            filled += self.take_plaintext(&mut buf[filled..]);
            if filled == buf.len() {
                return Ok(filled);
            }
            if self.closed || self.tcp_eof {
                if self.started && self.session.is_handshaking() {
                    return Err(self.fail(TlsFailure::Eof, "closed during the handshake"));
                }
                // (A connection closed before sending anything, e.g. a TCP health check,
                // is a plain end of stream.)
                return Ok(filled);
            }
            let mut rd = Drain {
                sock: &self.sock,
                short: false,
            };
            match self.session.read_tls(&mut rd) {
                Ok(0) => self.tcp_eof = true,
                Ok(_) => self.started = true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && filled > 0 => return Ok(filled),
                Err(e) => return Err(e),
            }
            let drained = rd.short;
            if let Err(e) = self.session.process_new_packets() {
                return Err(self.protocol_error(e));
            }
            if !self.established && !self.session.is_handshaking() {
                self.established = true;
                stats.tls_handshakes += 1;
                if self.session.handshake_kind() == Some(rustls::HandshakeKind::Resumed) {
                    stats.tls_resumed += 1;
                }
            }
            if self.session.wants_write() {
                // Handshake flights, tickets, alerts: a full socket keeps them pending, and
                // the send side (flushed after every read event) asks for writable edges.
                self.write_pending()?;
            }
            if drained && !self.tcp_eof {
                filled += self.take_plaintext(&mut buf[filled..]);
                if filled > 0 {
                    return Ok(filled);
                }
                // Only part of a record (or a handshake message) arrived: read once more,
                // to learn whether the peer closed after it (the poller's edge for that
                // may already have been used).
            }
        }
    }

    /// The session failed: remember why, send the alert rustls queued, answer plain HTTP if
    /// asked to. Returns the error to report.
    #[cold]
    fn protocol_error(&mut self, e: rustls::Error) -> io::Error {
        let reason = TlsFailure::of(&e);
        if reason == TlsFailure::NotTls && self.plain_http_reply && !self.established {
            // A plain-text client cannot read an alert: tell it in its own terms.
            let _ = (&self.sock).write(PLAIN_HTTP_REPLY);
        } else {
            let _ = self.write_pending();
        }
        self.fail(reason, &e.to_string())
    }

    #[cold]
    fn fail(&mut self, reason: TlsFailure, msg: &str) -> io::Error {
        self.failure.get_or_insert(reason);
        io::Error::new(io::ErrorKind::InvalidData, format!("tls: {msg}"))
    }

    /// Write waiting ciphertext; `Ok(false)` when the socket filled first.
    fn write_pending(&mut self) -> io::Result<bool> {
        while self.session.wants_write() {
            match self.session.write_tls(&mut &self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Seal `buf` and write it, a buffer limit's worth of records at a time, until all of it
    /// is taken or the socket is full; returns the plaintext taken (`WouldBlock` if none).
    ///
    /// Less than `buf` comes back only when the socket said `EAGAIN`: the send side then waits
    /// for a writable edge, and the kernel gives one only to a socket that filled. (Returning
    /// after one buffer's worth, as this once did, stalled any reply over 64 KiB for good.)
    pub(crate) fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut taken = 0;
        while self.write_pending()? && taken < buf.len() {
            match self.session.writer().write(&buf[taken..])? {
                // (Cannot happen with the session's buffer just emptied.)
                0 => break,
                n => taken += n,
            }
        }
        if taken == 0 && !buf.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    /// Write ciphertext left from earlier sends; `Ok(true)` when nothing is left.
    pub(crate) fn flush_pending(&mut self) -> io::Result<bool> {
        self.write_pending()
    }

    /// Seal up to `count` bytes of `file` from `*offset` in one-record chunks.
    pub(crate) fn send_file(
        &mut self,
        file: &std::fs::File,
        offset: &mut u64,
        count: usize,
    ) -> io::Result<usize> {
        if !self.write_pending()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let mut chunk = [0u8; FILE_CHUNK];
        let want = count.min(FILE_CHUNK);
        let got = file.read_at(&mut chunk[..want], *offset)?;
        if got == 0 {
            return Ok(0);
        }
        let n = self.session.writer().write(&chunk[..got])?;
        *offset += n as u64;
        self.write_pending()?;
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Send close_notify, then shut down the socket's write side.
    pub(crate) fn shutdown_write(&mut self) {
        self.session.send_close_notify();
        let _ = self.write_pending();
        let _ = self.sock.shutdown(Shutdown::Write);
    }

    /// A last close_notify before the socket is closed (best effort, nothing waits).
    pub(crate) fn goodbye(&mut self) {
        if self.established && self.failure.is_none() && !self.tcp_eof {
            self.session.send_close_notify();
            let _ = self.write_pending();
        }
    }
}
