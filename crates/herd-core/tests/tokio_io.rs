//! Cosockets through tokio's I/O traits (feature `tokio-io`): code written against
//! `tokio::io::{AsyncRead, AsyncWrite}` (here tokio's own `AsyncReadExt`/`AsyncWriteExt`
//! helpers) runs on a herd loop with no tokio runtime, against a real loopback server.
#![cfg(feature = "tokio-io")]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use herd_core::codec::BytesCodec;
use herd_core::task::TcpStream;
use herd_core::{Conn, Handler, LoopCx, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Caller {
    port: u16,
    done: mpsc::Sender<std::io::Result<Vec<u8>>>,
}

impl Handler for Caller {
    type State = ();
    type Codec = BytesCodec;

    fn new_codec(&mut self) -> BytesCodec {
        BytesCodec
    }

    fn on_loop_start(&mut self, lp: &mut LoopCx<'_, Self>) {
        let (port, done) = (self.port, self.done.clone());
        lp.spawn(async move {
            let r = async {
                let addr = ([127, 0, 0, 1], port).into();
                let mut s = TcpStream::connect(addr).await?;
                s.write_all(b"through tokio's traits").await?;
                AsyncWriteExt::shutdown(&mut s).await?;
                let mut out = Vec::new();
                s.read_to_end(&mut out).await?;
                Ok(out)
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

#[test]
fn tokio_helpers_run_on_a_cosocket() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = upstream.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut s, _) = upstream.accept().unwrap();
        let mut req = Vec::new();
        s.read_to_end(&mut req).unwrap();
        s.write_all(&[b"echo: ".as_slice(), &req].concat()).unwrap();
    });
    let (tx, rx) = mpsc::channel();
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .serve(move || Caller {
            port,
            done: tx.clone(),
        })
        .unwrap();
    let got = rx.recv_timeout(Duration::from_secs(20)).unwrap().unwrap();
    assert_eq!(got, b"echo: through tokio's traits");
    server.stop(Duration::ZERO);
}
