//! Echo server: writes back every byte it reads.
//!
//! `cargo run --release --example echo -- --port 9000 --loops 1`
//! (also `--mode acceptor` to use the acceptor thread instead of SO_REUSEPORT listeners, and
//! `--nodelay 0` to leave Nagle's algorithm on, `--notsent-lowat 0` for the system's unsent-bytes
//! limit instead of herd's 64 KiB).

use herd::args::ServeArgs;
use herd::codec::BytesCodec;
use herd::{AcceptMode, Balance, Conn, Handler, Server};

struct Echo;

impl Handler for Echo {
    type State = ();
    type Codec = BytesCodec;

    fn new_codec(&mut self) -> BytesCodec {
        BytesCodec
    }

    fn on_open(&mut self, _cx: &mut Conn<'_, Self>) -> Option<()> {
        Some(())
    }

    fn on_message(&mut self, cx: &mut Conn<'_, Self>, _st: &mut (), msg: &[u8]) {
        cx.send(msg);
    }
}

fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(9000);
    let mode = match args.get::<String>("mode").as_deref() {
        Some("acceptor") => AcceptMode::Acceptor(Balance::LeastConnections),
        _ => AcceptMode::ReusePort,
    };
    let mut opts = herd::Options {
        loops: args.loops,
        accept_mode: mode,
        ..herd::Options::default()
    };
    if let Some(nodelay) = args.get::<u8>("nodelay") {
        opts.nodelay = nodelay != 0;
    }
    if let Some(lowat) = args.get::<u32>("notsent-lowat") {
        opts.notsent_lowat = (lowat != 0).then_some(lowat);
    }
    let server = Server::new()
        .bind(args.addr())?
        .options(opts)
        .serve(|| Echo)?;
    eprintln!(
        "echo: listening on {} with {} loop(s)",
        server.local_addr(),
        server.loops()
    );
    server.join();
    Ok(())
}
