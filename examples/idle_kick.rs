//! Idle kick: a line-echo server that closes connections silent for `--idle-secs` (default 10),
//! telling them why first via a per-connection warning timer.
//!
//! `cargo run --release --example idle_kick -- --port 9002 --idle-secs 5`

use std::time::Duration;

use herd::args::ServeArgs;
use herd::codec::LinesCodec;
use herd::{CloseReason, Conn, Handler, Server, Timer};

struct IdleKick {
    idle: Duration,
}

impl Handler for IdleKick {
    /// The pending "you are about to be kicked" warning.
    type State = Option<Timer>;
    type Codec = LinesCodec;

    fn new_codec(&mut self) -> LinesCodec {
        LinesCodec::new(4096)
    }

    fn on_open(&mut self, cx: &mut Conn<'_, Self>) -> Option<Self::State> {
        cx.send("hello; stay quiet and you will be disconnected");
        Some(Some(cx.run_after(self.idle / 2, 0)))
    }

    fn on_message(&mut self, cx: &mut Conn<'_, Self>, warn: &mut Self::State, line: &[u8]) {
        if let Some(t) = warn.take() {
            cx.cancel_timer(t);
        }
        *warn = Some(cx.run_after(self.idle / 2, 0));
        cx.send(line);
    }

    fn on_timer(&mut self, cx: &mut Conn<'_, Self>, warn: &mut Self::State, _token: u64) {
        *warn = None;
        cx.send("you have been quiet for a while");
    }

    fn on_close(&mut self, cx: &mut Conn<'_, Self>, _st: Self::State, reason: CloseReason) {
        eprintln!("{} closed: {reason}", cx.peer_addr());
    }
}

fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(9002);
    let idle = Duration::from_secs(args.get("idle-secs").unwrap_or(10));
    let server = Server::new()
        .bind(args.addr())?
        .loops(args.loops)
        .idle_timeout(idle)
        .serve(move || IdleKick { idle })?;
    eprintln!("idle_kick: {} (idle timeout {idle:?})", server.local_addr());
    server.join();
    Ok(())
}
