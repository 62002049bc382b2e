//! Push: every client receives the current Unix time in ms, once a second, from a loop timer.
//!
//! `cargo run --release --example push -- --port 9001 --loops 2` then `nc 127.0.0.1 9001`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herd::args::ServeArgs;
use herd::codec::LinesCodec;
use herd::{Conn, Handler, LoopCx, Server};

struct Push;

impl Handler for Push {
    type State = ();
    type Codec = LinesCodec;

    fn new_codec(&mut self) -> LinesCodec {
        LinesCodec::new(1024)
    }

    fn on_loop_start(&mut self, lp: &mut LoopCx<'_, Self>) {
        lp.run_every(Duration::from_secs(1), 0);
    }

    fn on_loop_timer(&mut self, lp: &mut LoopCx<'_, Self>, _token: u64) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            .to_string();
        // A client that stopped reading is skipped until it drains (backpressure).
        lp.for_each(|cx, _| {
            if !cx.is_paused() {
                cx.send(now.as_str());
            }
        });
    }

    fn on_open(&mut self, _cx: &mut Conn<'_, Self>) -> Option<()> {
        Some(())
    }

    fn on_message(&mut self, _cx: &mut Conn<'_, Self>, _st: &mut (), _line: &[u8]) {}
}

fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(9001);
    let server = Server::new()
        .bind(args.addr())?
        .loops(args.loops)
        .serve(|| Push)?;
    eprintln!("push: {} (a timestamp every second)", server.local_addr());
    server.join();
    Ok(())
}
