//! Cosockets through the futures crates' I/O traits (feature `futures-io`): code written
//! against `futures_io::{AsyncRead, AsyncWrite}` runs on a herd loop, with no other runtime,
//! against real loopback servers: futures-util's `AsyncReadExt`/`AsyncWriteExt` over plain
//! TCP and over TLS, and a third-party codec (`asynchronous-codec`'s `LinesCodec` in a
//! `Framed`, through futures-util's `SinkExt`/`StreamExt`) against a line server.
#![cfg(feature = "futures-io")]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use futures_util::io::{AsyncReadExt, AsyncWriteExt};
use futures_util::{SinkExt, StreamExt};
use herd_core::codec::BytesCodec;
use herd_core::task::{TcpStream, TlsConnector};
use herd_core::tls::rustls;
use herd_core::{Conn, Handler, LoopCx, Server};

struct Caller {
    port: u16,
    /// Over TLS, trusting this certificate (the upstream's, self-signed for `localhost`).
    tls: Option<rustls::pki_types::CertificateDer<'static>>,
    /// Talk lines through `asynchronous-codec` instead.
    lines: bool,
    done: mpsc::Sender<std::io::Result<Vec<u8>>>,
}

/// Read the request to its end and answer `echo: <request>`.
fn echo_once(s: &mut (impl Read + Write)) {
    let mut req = Vec::new();
    s.read_to_end(&mut req).unwrap();
    s.write_all(&[b"echo: ".as_slice(), &req].concat()).unwrap();
    s.flush().unwrap();
}

/// The code under test: futures-util's helpers on any stream with futures-io's traits.
async fn exchange<S>(mut s: S) -> std::io::Result<Vec<u8>>
where
    S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin,
{
    s.write_all(b"through futures-io").await?;
    s.close().await?;
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
        let (port, done, tls, lines) = (self.port, self.done.clone(), self.tls.clone(), self.lines);
        lp.spawn(async move {
            let r = async {
                let addr = ([127, 0, 0, 1], port).into();
                let s = TcpStream::connect(addr).await?;
                match tls {
                    None if lines => framed_lines(s).await,
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

/// The code under test: `asynchronous-codec`'s `Framed` with its `LinesCodec`: three lines
/// sent through the sink, three answers taken from the stream, joined.
async fn framed_lines(s: TcpStream) -> std::io::Result<Vec<u8>> {
    let mut framed = asynchronous_codec::Framed::new(s, asynchronous_codec::LinesCodec);
    for line in ["one\n", "two\n", "three\n"] {
        framed.send(line.to_string()).await?;
    }
    let mut out = Vec::new();
    for _ in 0..3 {
        let line = framed
            .next()
            .await
            .unwrap_or_else(|| Err(std::io::ErrorKind::UnexpectedEof.into()))?;
        out.extend_from_slice(line.trim_end().as_bytes());
        out.push(b' ');
    }
    Ok(out)
}

fn call(port: u16, tls: Option<rustls::pki_types::CertificateDer<'static>>) -> Vec<u8> {
    call_with(port, tls, false)
}

fn call_with(
    port: u16,
    tls: Option<rustls::pki_types::CertificateDer<'static>>,
    lines: bool,
) -> Vec<u8> {
    let (tx, rx) = mpsc::channel();
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .serve(move || Caller {
            port,
            tls: tls.clone(),
            lines,
            done: tx.clone(),
        })
        .unwrap();
    let got = rx.recv_timeout(Duration::from_secs(20)).unwrap().unwrap();
    server.stop(Duration::ZERO);
    got
}

#[test]
fn futures_util_helpers_run_on_a_cosocket() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = upstream.local_addr().unwrap().port();
    std::thread::spawn(move || echo_once(&mut upstream.accept().unwrap().0));
    assert_eq!(call(port, None), b"echo: through futures-io");
}

#[test]
fn futures_util_helpers_run_on_a_tls_cosocket() {
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
    assert_eq!(call(port, Some(der)), b"echo: through futures-io");
}

#[test]
fn asynchronous_codec_lines_run_on_a_cosocket() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = upstream.local_addr().unwrap().port();
    // A line server: each line answered in upper case.
    std::thread::spawn(move || {
        let s = upstream.accept().unwrap().0;
        let mut w = s.try_clone().unwrap();
        for line in std::io::BufRead::lines(std::io::BufReader::new(s)) {
            let Ok(line) = line else { break };
            if w.write_all(format!("{}\n", line.to_uppercase()).as_bytes())
                .is_err()
            {
                break;
            }
        }
    });
    assert_eq!(call_with(port, None, true), b"ONE TWO THREE ");
}
