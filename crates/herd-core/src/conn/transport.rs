//! The transport under a connection's send and receive sides: what moves bytes between the
//! connection's buffers and the peer.
//!
//! Two variants: plain TCP ([`Transport::Tcp`]): `recv`/`send`/`sendfile` straight on the
//! socket, the system calls the loop's syscall discipline is written around; and TLS
//! ([`Transport::Tls`], `conn/tls.rs`), a rustls session over the socket. Layers that change
//! the bytes on the wire plug in here, below the codecs, and no protocol knows which
//! transport it runs on:
//!
//! - **TLS**: `send` takes the plaintext of everything the receive side's dispatch queued
//!   (the send side hands over its whole output buffer at once), seals it into records and
//!   writes them with one `writev`, so all replies of one read still leave in one system
//!   call; `recv` reads ciphertext and returns plaintext. Ciphertext the socket did not take
//!   stays in the session ([`Transport::has_pending`]): the send side counts it as output
//!   still to write. `sendfile` reads the file in one-record chunks and seals them.
//! - **The PROXY-protocol preamble** is a read-side stage: the first bytes of a connection
//!   are parsed for the header (real client address) before any reach the codec.
//!
//! In this crate's unit tests a third variant, `Memory`, stands in for the socket, so the
//! per-connection logic (read, dispatch, write, timers, close) runs without sockets.
//! Only the connection types call these methods.

use std::io;
use std::net::{Shutdown, SocketAddr};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

#[cfg(feature = "tls")]
use super::tls::TlsStream;
use crate::stats::Stats;

/// What a connection's bytes travel over.
pub(crate) enum Transport {
    /// A plain TCP socket.
    Tcp(TcpStream),
    /// A TLS session over a TCP socket.
    #[cfg(feature = "tls")]
    Tls(Box<TlsStream>),
    /// In-memory stand-in for a socket (unit tests only).
    #[cfg(test)]
    Memory(Box<memory::Memory>),
}

impl Transport {
    /// Read into `buf`: `Ok(0)` at the peer's end of stream, `WouldBlock` when nothing waits.
    #[inline]
    pub(crate) fn recv(&mut self, buf: &mut [u8], _stats: &mut Stats) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => crate::sys::recv(s, buf),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.recv(buf, _stats),
            #[cfg(test)]
            Transport::Memory(m) => m.recv(buf),
        }
    }

    /// Write from `buf`; returns how much was taken (`WouldBlock`: nothing).
    #[inline]
    pub(crate) fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => crate::sys::send(s, buf),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.send(buf),
            #[cfg(test)]
            Transport::Memory(m) => m.send(buf),
        }
    }

    /// [`send`](Transport::send) for bytes a `sendfile` follows at once (a response head):
    /// plain TCP holds a partial segment back (`MSG_MORE`) so head and body leave together;
    /// other transports send as usual.
    #[inline]
    pub(crate) fn send_before_file(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => crate::sys::send_more(s, buf),
            // Without TLS (and outside tests) plain TCP is the only transport.
            #[allow(unreachable_patterns)]
            _ => self.send(buf),
        }
    }

    /// Send up to `count` bytes of `file` from `*offset`, advancing it; 0 at end of file.
    pub(crate) fn sendfile(
        &mut self,
        file: &std::fs::File,
        offset: &mut u64,
        count: usize,
    ) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => crate::sys::sendfile(s, file, offset, count),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.send_file(file, offset, count),
            #[cfg(test)]
            Transport::Memory(m) => m.sendfile(file, offset, count),
        }
    }

    /// Copy what waits on the socket into `buf` without consuming it (`MSG_PEEK`, below any
    /// TLS session): the PROXY header stage looks at a connection's first bytes this way.
    #[cold]
    pub(crate) fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => crate::sys::peek(s, buf),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => crate::sys::peek(t.sock_ref(), buf),
            #[cfg(test)]
            Transport::Memory(m) => m.peek(buf),
        }
    }

    /// Consume `n` bytes seen by [`peek`](Transport::peek) (they are on the socket, so one
    /// read of exactly `n` takes them), using `scratch` (at least `n` long) as the sink.
    #[cold]
    pub(crate) fn consume(&mut self, n: usize, scratch: &mut [u8]) -> io::Result<()> {
        let mut left = n;
        while left > 0 {
            let buf = &mut scratch[..left];
            let got = match self {
                Transport::Tcp(s) => crate::sys::recv(s, buf),
                #[cfg(feature = "tls")]
                Transport::Tls(t) => crate::sys::recv(t.sock_ref(), buf),
                #[cfg(test)]
                Transport::Memory(m) => m.recv(buf),
            };
            match got {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(k) => left -= k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Make the close abortive (see [`crate::sys::abort_on_close`]): for a peer that takes
    /// none of what is queued for it.
    pub(crate) fn abort_on_close(&mut self) {
        let r = match self {
            Transport::Tcp(s) => crate::sys::abort_on_close(s),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.abort_on_close(),
            #[cfg(test)]
            Transport::Memory(_) => Ok(()),
        };
        if let Err(e) = r {
            tracing::debug!("SO_LINGER: {e}");
        }
    }

    /// Shut down the write side (the peer reads end of stream); reading goes on.
    pub(crate) fn shutdown_write(&mut self) {
        match self {
            Transport::Tcp(s) => {
                let _ = s.shutdown(Shutdown::Write);
            }
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.shutdown_write(),
            #[cfg(test)]
            Transport::Memory(m) => m.write_shut = true,
        }
    }

    /// The local address the connection was accepted on.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Transport::Tcp(s) => s.local_addr().ok(),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.sock_ref().local_addr().ok(),
            #[cfg(test)]
            Transport::Memory(_) => None,
        }
    }

    /// Register with the loop's poller.
    pub(crate) fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => registry.register(s, token, interest),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => registry.register(t.sock(), token, interest),
            #[cfg(test)]
            Transport::Memory(_) => Ok(()),
        }
    }

    /// Change the interest registered with the loop's poller.
    pub(crate) fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interest: Interest,
    ) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => registry.reregister(s, token, interest),
            #[cfg(feature = "tls")]
            Transport::Tls(t) => registry.reregister(t.sock(), token, interest),
            #[cfg(test)]
            Transport::Memory(_) => Ok(()),
        }
    }

    /// Output sealed but not yet taken by the socket (TLS only).
    #[inline(always)]
    pub(crate) fn has_pending(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.has_pending(),
            _ => false,
        }
    }

    /// Write output sealed earlier; `Ok(true)` when none is left.
    #[cold]
    pub(crate) fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            #[cfg(feature = "tls")]
            Transport::Tls(t) => t.flush_pending(),
            _ => Ok(true),
        }
    }

    /// The connection is about to be closed: say goodbye if the transport has a way to
    /// (TLS close_notify, best effort).
    #[inline]
    pub(crate) fn goodbye(&mut self) {
        #[cfg(feature = "tls")]
        if let Transport::Tls(t) = self {
            t.goodbye();
        }
    }

    /// The TLS session, if this is one.
    #[cfg(feature = "tls")]
    #[inline]
    pub(crate) fn tls(&self) -> Option<&TlsStream> {
        match self {
            Transport::Tls(t) => Some(t),
            _ => None,
        }
    }

    /// The TLS session, to change.
    #[cfg(feature = "tls")]
    #[inline]
    pub(crate) fn tls_mut(&mut self) -> Option<&mut TlsStream> {
        match self {
            Transport::Tls(t) => Some(t),
            _ => None,
        }
    }

    /// The in-memory peer, in tests.
    #[cfg(test)]
    pub(crate) fn memory(&mut self) -> &mut memory::Memory {
        match self {
            Transport::Memory(m) => m,
            _ => panic!("not an in-memory transport"),
        }
    }
}

#[cfg(test)]
pub(crate) mod memory {
    //! A socket stand-in: bytes the test writes are read by the connection, bytes the
    //! connection sends are collected, and the "socket buffer" can be made small to exercise
    //! short writes and backpressure.

    use std::collections::VecDeque;
    use std::io;

    /// Both directions of an in-memory connection.
    #[derive(Default)]
    pub(crate) struct Memory {
        /// Bytes waiting to be read by the connection.
        pub(crate) input: VecDeque<u8>,
        /// The peer closed its write side: reads return 0 once `input` is empty.
        pub(crate) input_closed: bool,
        /// Everything the connection sent, in order.
        pub(crate) output: Vec<u8>,
        /// Bytes a send may still take before it would block (`None`: unlimited).
        pub(crate) room: Option<usize>,
        /// The connection shut down its write side.
        pub(crate) write_shut: bool,
        /// A reset: every call fails with this kind.
        pub(crate) fail: Option<io::ErrorKind>,
    }

    impl Memory {
        pub(crate) fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if let Some(kind) = self.fail {
                return Err(kind.into());
            }
            if self.input.is_empty() {
                return if self.input_closed {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::WouldBlock.into())
                };
            }
            let n = buf.len().min(self.input.len());
            for (d, s) in buf.iter_mut().zip(self.input.drain(..n)) {
                *d = s;
            }
            Ok(n)
        }

        pub(crate) fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if let Some(kind) = self.fail {
                return Err(kind.into());
            }
            if self.input.is_empty() && !self.input_closed {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.input.len());
            for (d, s) in buf.iter_mut().zip(self.input.iter()) {
                *d = *s;
            }
            Ok(n)
        }

        pub(crate) fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Some(kind) = self.fail {
                return Err(kind.into());
            }
            assert!(!self.write_shut, "send after shutdown(Write)");
            let n = self.room.map_or(buf.len(), |r| r.min(buf.len()));
            if n == 0 && !buf.is_empty() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            if let Some(r) = self.room.as_mut() {
                *r -= n;
            }
            self.output.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        pub(crate) fn sendfile(
            &mut self,
            file: &std::fs::File,
            offset: &mut u64,
            count: usize,
        ) -> io::Result<usize> {
            use std::os::unix::fs::FileExt;
            let mut chunk = vec![0; count.min(64 * 1024)];
            let got = file.read_at(&mut chunk, *offset)?;
            let n = self.send(&chunk[..got])?;
            *offset += n as u64;
            Ok(n)
        }
    }
}
