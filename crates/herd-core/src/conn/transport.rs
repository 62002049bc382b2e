//! The transport under a connection's send and receive sides: what moves bytes between the
//! connection's buffers and the peer.
//!
//! Today that is plain TCP ([`Transport::Tcp`]): `recv`/`send`/`sendfile` straight on the
//! socket, the system calls the loop's syscall discipline is written around. The seam exists
//! so that layers which change the bytes on the wire plug in here, below the codecs, and no
//! protocol knows which transport it runs on:
//!
//! - **TLS** becomes a variant holding the socket and a session. `send` takes the plaintext
//!   of everything the receive side's dispatch queued (the send side hands over its whole
//!   output buffer at once), seals it into records and writes them with one `send`, so all
//!   replies of one read still leave in one system call; `recv` reads ciphertext and returns
//!   plaintext. `sendfile` reports [`io::ErrorKind::Unsupported`] where the kernel cannot
//!   encrypt (no kTLS), and the send side then copies the file through its buffer.
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

/// What a connection's bytes travel over.
pub(crate) enum Transport {
    /// A plain TCP socket.
    Tcp(TcpStream),
    /// In-memory stand-in for a socket (unit tests only).
    #[cfg(test)]
    Memory(Box<memory::Memory>),
}

impl Transport {
    /// Read into `buf`: `Ok(0)` at the peer's end of stream, `WouldBlock` when nothing waits.
    #[inline]
    pub(crate) fn recv(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => crate::sys::recv(s, buf),
            #[cfg(test)]
            Transport::Memory(m) => m.recv(buf),
        }
    }

    /// Write from `buf`; returns how much was taken (`WouldBlock`: nothing).
    #[inline]
    pub(crate) fn send(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => crate::sys::send(s, buf),
            #[cfg(test)]
            Transport::Memory(m) => m.send(buf),
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
            #[cfg(test)]
            Transport::Memory(m) => m.sendfile(file, offset, count),
        }
    }

    /// Shut down the write side (the peer reads end of stream); reading goes on.
    pub(crate) fn shutdown_write(&mut self) {
        match self {
            Transport::Tcp(s) => {
                let _ = s.shutdown(Shutdown::Write);
            }
            #[cfg(test)]
            Transport::Memory(m) => m.write_shut = true,
        }
    }

    /// The local address the connection was accepted on.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Transport::Tcp(s) => s.local_addr().ok(),
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
            #[cfg(test)]
            Transport::Memory(_) => Ok(()),
        }
    }

    /// The in-memory peer, in tests.
    #[cfg(test)]
    pub(crate) fn memory(&mut self) -> &mut memory::Memory {
        match self {
            Transport::Memory(m) => m,
            Transport::Tcp(_) => panic!("not an in-memory transport"),
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
