//! The `herd` binary. Until the configurable server lands, it runs the echo service on
//! 127.0.0.1:8081 so `cargo run --release` always starts something useful.

use herd::args::ServeArgs;
use herd::codec::BytesCodec;
use herd::{Conn, Handler, Server};

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
    let args = ServeArgs::from_env(8081);
    let server = Server::new()
        .bind(args.addr())?
        .loops(args.loops)
        .serve(|| Echo)?;
    eprintln!("herd: echo service on {}", server.local_addr());
    server.join();
    Ok(())
}
