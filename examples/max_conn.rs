//! Max connections: an echo server that accepts at most `--max N` (default 100) clients at
//! once; the rest are closed at accept and counted. Prints the counters every 5 seconds.
//!
//! `cargo run --release --example max_conn -- --port 9003 --max 2`

use std::time::Duration;

use herd::args::ServeArgs;
use herd::codec::BytesCodec;
use herd::{CloseReason, Conn, Handler, Server};

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
    let args = ServeArgs::from_env(9003);
    let max: usize = args.get("max").unwrap_or(100);
    let server = Server::new()
        .bind(args.addr())?
        .loops(args.loops)
        .max_connections(max)
        .serve(|| Echo)?;
    eprintln!(
        "max_conn: {} (at most {max} connections)",
        server.local_addr()
    );
    loop {
        std::thread::sleep(Duration::from_secs(5));
        let s = server.stats();
        eprintln!(
            "open={} accepted={} refused_at_limit={}",
            s.open,
            s.accepted,
            s.closed_by(CloseReason::Limit)
        );
    }
}
