//! Cosockets through tokio's I/O traits (feature `tokio-io`): code written against
//! `tokio::io::{AsyncRead, AsyncWrite}` (here tokio's own `AsyncReadExt`/`AsyncWriteExt`
//! helpers) runs on a herd loop with no tokio runtime, against a real loopback server, over
//! plain TCP and over TLS.
#![cfg(feature = "tokio-io")]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use herd_core::codec::BytesCodec;
use herd_core::task::{TcpStream, TlsConnector};
use herd_core::tls::rustls;
use herd_core::{Conn, Handler, LoopCx, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Caller {
    port: u16,
    /// Over TLS, trusting this certificate (the upstream's, self-signed for `localhost`).
    tls: Option<rustls::pki_types::CertificateDer<'static>>,
    done: mpsc::Sender<std::io::Result<Vec<u8>>>,
}

/// Read the request to its end and answer `echo: <request>`.
fn echo_once(s: &mut (impl Read + Write)) {
    let mut req = Vec::new();
    s.read_to_end(&mut req).unwrap();
    s.write_all(&[b"echo: ".as_slice(), &req].concat()).unwrap();
    s.flush().unwrap();
}

/// The code under test: tokio's helpers on any stream with tokio's traits.
async fn exchange<S>(mut s: S) -> std::io::Result<Vec<u8>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(b"through tokio's traits").await?;
    s.shutdown().await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(out)
}

impl Handler for Caller {
    type State = ();
    type Codec = BytesCodec;

    fn new_codec(&mut self) -> BytesCodec {
        BytesCodec
    }

    fn on_loop_start(&mut self, lp: &mut LoopCx<'_, Self>) {
        let (port, done, tls) = (self.port, self.done.clone(), self.tls.clone());
        lp.spawn(async move {
            let r = async {
                let addr = ([127, 0, 0, 1], port).into();
                let s = TcpStream::connect(addr).await?;
                match tls {
                    None => exchange(s).await,
                    Some(cert) => {
                        let mut roots = rustls::RootCertStore::empty();
                        roots.add(cert).unwrap();
                        let tls = TlsConnector::with_roots(roots);
                        exchange(tls.connect("localhost", s).await?).await
                    }
                }
            }
            .await;
            let _ = done.send(r);
        });
    }

    fn on_open(&mut self, _cx: &mut Conn<'_, Self>) -> Option<()> {
        Some(())
    }

    fn on_message(&mut self, _cx: &mut Conn<'_, Self>, _st: &mut (), _msg: &[u8]) {}
}

fn call(port: u16, tls: Option<rustls::pki_types::CertificateDer<'static>>) -> Vec<u8> {
    let (tx, rx) = mpsc::channel();
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .serve(move || Caller {
            port,
            tls: tls.clone(),
            done: tx.clone(),
        })
        .unwrap();
    let got = rx.recv_timeout(Duration::from_secs(20)).unwrap().unwrap();
    server.stop(Duration::ZERO);
    got
}

#[test]
fn tokio_helpers_run_on_a_cosocket() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = upstream.local_addr().unwrap().port();
    std::thread::spawn(move || echo_once(&mut upstream.accept().unwrap().0));
    assert_eq!(call(port, None), b"echo: through tokio's traits");
}

#[test]
fn tokio_helpers_run_on_a_tls_cosocket() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = cert.der().clone();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![der.clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = upstream.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let sock = upstream.accept().unwrap().0;
        let conn = rustls::ServerConnection::new(std::sync::Arc::new(config)).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, sock);
        echo_once(&mut tls);
        tls.conn.send_close_notify();
        let _ = tls.flush();
    });
    assert_eq!(call(port, Some(der)), b"echo: through tokio's traits");
}
