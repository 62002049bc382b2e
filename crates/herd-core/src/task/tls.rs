//! TLS over cosockets (feature `tls`): a task's outbound connection encrypted with rustls, the
//! client side of what [`crate::tls`] does for listeners.
//!
//! A [`TlsConnector`] holds the client configuration: the roots a server's certificate must
//! chain to (Mozilla's, from `webpki-roots`, or a CA file), ALPN protocols, an optional client
//! certificate (mTLS to an upstream), and the handshake timeout. It is `Send + Sync` and cheap
//! to clone, so one made at start-up serves every loop; rustls keeps resumable sessions in it
//! (per server name), so a second connection to the same upstream resumes instead of paying a
//! full handshake. [`TlsConnector::connect`] takes a connected [`TcpStream`], sends the server
//! name (SNI), verifies the certificate for that name and returns a [`TlsStream`] with the
//! stream's read/write API (and tokio's I/O traits with the feature `tokio-io`).
//!
//! Records are written as soon as they are made; a write waits first for the records of the
//! previous one to leave (so a peer that stops reading holds the task, not the loop's
//! memory), and `write_all` ends with a flush. A failed verification or handshake is an
//! `InvalidData` error whose source is the [`rustls::Error`] (e.g. the certificate expired or
//! is not valid for the name); the alert goes out to the server before the error returns.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore};

use super::io::{Dir, TcpStream};
use crate::tls::{CertFiles, TlsError};

/// Default time a server has to finish the TLS handshake of an outbound connection.
pub const CLIENT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes TLS client connections over cosockets (see the module docs).
///
/// ```no_run
/// use herd_core::task::{TcpStream, TlsConnector};
/// # async fn call() -> std::io::Result<()> {
/// let tls = TlsConnector::webpki_roots().alpn(&["http/1.1"]);
/// let tcp = TcpStream::connect("93.184.215.14:443".parse().unwrap()).await?;
/// let mut s = tls.connect("example.com", tcp).await?;
/// s.write_all(b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n").await?;
/// let mut buf = vec![0u8; 4096];
/// let n = s.read(&mut buf).await?;
/// assert!(buf[..n].starts_with(b"HTTP/1.1"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
    roots: Arc<RootCertStore>,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("roots", &self.roots.len())
            .field("alpn", &self.config.alpn_protocols)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

fn config_for(roots: &Arc<RootCertStore>) -> ClientConfig {
    ClientConfig::builder()
        .with_root_certificates(roots.clone())
        .with_no_client_auth()
}

impl TlsConnector {
    /// Use `config` as it is (its roots, verifier, ALPN, session store).
    pub fn new(config: Arc<ClientConfig>) -> Self {
        TlsConnector {
            config,
            roots: Arc::new(RootCertStore::empty()),
            handshake_timeout: CLIENT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Verify servers against `roots`.
    pub fn with_roots(roots: RootCertStore) -> Self {
        let roots = Arc::new(roots);
        TlsConnector {
            config: Arc::new(config_for(&roots)),
            roots,
            handshake_timeout: CLIENT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Verify servers against Mozilla's root certificates (the `webpki-roots` crate), as a
    /// browser would: for upstreams with public certificates.
    pub fn webpki_roots() -> Self {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Self::with_roots(roots)
    }

    /// Verify servers against the CA certificates in the PEM file `path` (a private CA).
    pub fn ca_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let path = path.as_ref();
        let mut roots = RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(TlsError(format!(
                "{}: no usable CA certificate in the file",
                path.display()
            )));
        }
        Ok(Self::with_roots(roots))
    }

    /// Offer these ALPN protocols, in preference order (e.g. `["http/1.1"]`).
    pub fn alpn(mut self, protocols: &[&str]) -> Self {
        let mut cfg = (*self.config).clone();
        cfg.alpn_protocols = protocols.iter().map(|p| p.as_bytes().to_vec()).collect();
        self.config = Arc::new(cfg);
        self
    }

    /// Present this client certificate to servers that ask for one (mTLS). Keeps the roots and
    /// ALPN protocols set so far.
    pub fn client_cert(mut self, files: &CertFiles) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_file_iter(&files.cert)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError(format!("{}: {e}", files.cert.display())))?;
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .map_err(|e| TlsError(format!("{}: {e}", files.key.display())))?;
        let mut cfg = ClientConfig::builder()
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError(format!("{}: {e}", files.key.display())))?;
        cfg.alpn_protocols = self.config.alpn_protocols.clone();
        self.config = Arc::new(cfg);
        Ok(self)
    }

    /// Fail a handshake that has not finished after `d` on the loop's clock (default
    /// [`CLIENT_HANDSHAKE_TIMEOUT`]).
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }

    /// The rustls client configuration.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    /// Run the TLS handshake over `tcp` for the server `name` (sent as SNI unless it is an IP
    /// address, and the name the certificate must be valid for).
    pub async fn connect(&self, name: &str, tcp: TcpStream) -> io::Result<TlsStream> {
        let server = ServerName::try_from(name.to_owned())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = ClientConnection::new(self.config.clone(), server).map_err(io::Error::other)?;
        let mut s = TlsStream {
            tcp,
            tls,
            closing: false,
        };
        let handshake = std::future::poll_fn(|cx| s.poll_handshake(cx));
        match super::timeout(self.handshake_timeout, handshake).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TLS handshake timed out",
                ))
            }
        }
        Ok(s)
    }

    /// Connect to `addr` (within `connect_timeout`) and run the handshake for `name`.
    pub async fn connect_to(
        &self,
        addr: SocketAddr,
        name: &str,
        connect_timeout: Duration,
    ) -> io::Result<TlsStream> {
        let tcp = TcpStream::connect_timeout(addr, connect_timeout).await?;
        self.connect(name, tcp).await
    }
}

/// A TLS client connection over a cosocket, made by [`TlsConnector::connect`].
pub struct TlsStream {
    tcp: TcpStream,
    tls: ClientConnection,
    /// `close_notify` queued.
    closing: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("tcp", &self.tcp)
            .field("version", &self.tls.protocol_version())
            .field("resumed", &self.resumed())
            .finish()
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

macro_rules! ready {
    ($e:expr) => {
        match $e {
            Poll::Ready(v) => v,
            Poll::Pending => return Poll::Pending,
        }
    };
}

impl TlsStream {
    /// Write queued records until none is left or the socket is full.
    fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.tls.wants_write() {
            let tls = &mut self.tls;
            match ready!(self.tcp.poll_op(Dir::Write, cx, |s| tls.write_tls(s))) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Read what the socket has into rustls and process it: `false` at the end of the TCP
    /// stream. A protocol error is returned after its alert was written (as far as the socket
    /// takes it).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let tls = &mut self.tls;
        let n = ready!(self.tcp.poll_op(Dir::Read, cx, |s| tls.read_tls(s)))?;
        if let Err(e) = self.tls.process_new_packets() {
            let _ = self.poll_flush_tls(cx);
            return Poll::Ready(Err(tls_error(e)));
        }
        Poll::Ready(Ok(n > 0))
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.tls.wants_write() {
                ready!(self.poll_flush_tls(cx))?;
            }
            if !self.tls.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if !ready!(self.poll_fill(cx))? {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during the TLS handshake",
                )));
            }
        }
    }

    /// Poll-style read of plaintext: 0 at the server's `close_notify`; `UnexpectedEof` if the
    /// connection ends without one.
    pub fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            // Records rustls wants to send (a key update, an alert) go out on the way, without
            // waiting for the socket.
            if self.tls.wants_write() {
                if let Poll::Ready(Err(e)) = self.poll_flush_tls(cx) {
                    return Poll::Ready(Err(e));
                }
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    /// Poll-style write of plaintext: waits while records of earlier writes have not left,
    /// then encrypts what fits rustls' buffer and starts sending it.
    pub fn poll_write(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_flush_tls(cx))?;
        let n = self.tls.writer().write(buf)?;
        if let Poll::Ready(Err(e)) = self.poll_flush_tls(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(n))
    }

    /// Poll-style flush: until every record made so far is written to the socket.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush_tls(cx)
    }

    /// Poll-style shutdown of the write side: `close_notify`, flushed, then a FIN.
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.closing {
            self.tls.send_close_notify();
            self.closing = true;
        }
        ready!(self.poll_flush_tls(cx))?;
        Poll::Ready(self.tcp.shutdown(Shutdown::Write))
    }

    /// Read plaintext into `buf`; 0 at the server's end of stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_read(cx, buf)).await
    }

    /// Write plaintext from `buf`; returns how much was taken.
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_write(cx, buf)).await
    }

    /// Write all of `buf` and flush it to the socket.
    pub async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        super::io::write_all(|cx, b| self.poll_write(cx, b), buf).await?;
        self.flush().await
    }

    /// Read until `buf` is full (`UnexpectedEof` if the stream ends first).
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        super::io::read_exact(|cx, b| self.poll_read(cx, b), buf).await
    }

    /// Wait until every record made so far is written to the socket.
    pub async fn flush(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Send `close_notify` and a FIN (the read side stays open for the server's answer).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_shutdown(cx)).await
    }

    /// The ALPN protocol the server chose, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.tls.alpn_protocol()
    }

    /// Whether the handshake resumed an earlier session (no certificate exchange).
    pub fn resumed(&self) -> bool {
        self.tls.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// The rustls connection (negotiated version, cipher suite, peer certificates).
    pub fn connection(&self) -> &ClientConnection {
        &self.tls
    }

    /// The cosocket underneath.
    pub fn get_ref(&self) -> &TcpStream {
        &self.tcp
    }

    /// The server's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// tokio's I/O traits for TLS cosockets (features `tls` and `tokio-io`), as for [`TcpStream`].
#[cfg(feature = "tokio-io")]
mod tokio_io {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::TlsStream;

    impl tokio::io::AsyncRead for TlsStream {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let dst = buf.initialize_unfilled();
            let n = ready!(TlsStream::poll_read(self.get_mut(), cx, dst))?;
            buf.advance(n);
            Poll::Ready(Ok(()))
        }
    }

    impl tokio::io::AsyncWrite for TlsStream {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            TlsStream::poll_write(self.get_mut(), cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            TlsStream::poll_flush(self.get_mut(), cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            TlsStream::poll_shutdown(self.get_mut(), cx)
        }
    }
}

/// The futures crates' I/O traits for TLS cosockets (features `tls` and `futures-io`), as for
/// [`TcpStream`].
#[cfg(feature = "futures-io")]
mod futures_io_impl {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::TlsStream;

    impl futures_io::AsyncRead for TlsStream {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            TlsStream::poll_read(self.get_mut(), cx, buf)
        }
    }

    impl futures_io::AsyncWrite for TlsStream {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            TlsStream::poll_write(self.get_mut(), cx, buf)
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            TlsStream::poll_flush(self.get_mut(), cx)
        }

        fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            TlsStream::poll_shutdown(self.get_mut(), cx)
        }
    }
}
