//! Async call: each line `ADDR TEXT` makes the server call the line service at `ADDR` from a
//! task on the connection's own loop (a cosocket), and answer with what it said.
//!
//! `cargo run --release --example echo -- --port 9000` (a backend), then
//! `cargo run --release --example async_call -- --port 9002` and
//! sending it the line `127.0.0.1:9000 hello` (`nc 127.0.0.1 9002`) answers `hello`. Answers
//! leave in the order the calls finish.

use std::time::Duration;

use herd::args::ServeArgs;
use herd::codec::LinesCodec;
use herd::task::{self, TcpStream};
use herd::{Conn, Handler, Server};

struct Front;

/// Send `text` and a newline to `addr`; read one answer (within a second).
async fn ask(addr: &str, text: &str) -> std::io::Result<Vec<u8>> {
    let addr = addr
        .parse()
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut s = TcpStream::connect_timeout(addr, Duration::from_millis(200)).await?;
    s.write_all(format!("{text}\n").as_bytes()).await?;
    let mut buf = vec![0u8; 4096];
    let n = task::timeout(Duration::from_secs(1), s.read(&mut buf))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    buf.truncate(n);
    Ok(buf)
}

impl Handler for Front {
    type State = ();
    type Codec = LinesCodec;

    fn new_codec(&mut self) -> LinesCodec {
        LinesCodec::new(4096)
    }

    fn on_open(&mut self, _cx: &mut Conn<'_, Self>) -> Option<()> {
        Some(())
    }

    fn on_message(&mut self, cx: &mut Conn<'_, Self>, _st: &mut (), line: &[u8]) {
        let line = String::from_utf8_lossy(line).into_owned();
        let reply = cx.handle();
        // On this loop, without blocking it; dropped if the client goes away first.
        cx.spawn(async move {
            let (addr, text) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            let mut out = match ask(addr, text).await {
                Ok(v) => v,
                Err(e) => format!("error: {e}\n").into_bytes(),
            };
            if !out.ends_with(b"\n") {
                out.push(b'\n');
            }
            reply.send(out);
        });
    }
}

fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(9002);
    let server = Server::new()
        .bind(args.addr())?
        .loops(args.loops)
        .serve(|| Front)?;
    eprintln!("async_call: {} (lines: ADDR TEXT)", server.local_addr());
    server.join();
    Ok(())
}
