//! Send from a background thread: connections register their `Handle` in a shared list, and
//! a plain OS thread (no loop) sends each of them a counter line every second. Handles of
//! closed connections are harmless: their sends are dropped and counted.
//!
//! `cargo run --release --example background_send -- --port 9004`

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd::args::ServeArgs;
use herd::codec::LinesCodec;
use herd::{CloseReason, Conn, ConnId, Handle, Handler, Server};

type Registry = Arc<Mutex<Vec<Handle>>>;

struct Subscribe {
    registry: Registry,
}

impl Handler for Subscribe {
    type State = ();
    type Codec = LinesCodec;
    fn new_codec(&mut self) -> LinesCodec {
        LinesCodec::new(1024)
    }
    fn on_open(&mut self, cx: &mut Conn<'_, Self>) -> Option<()> {
        self.registry.lock().unwrap().push(cx.handle());
        Some(())
    }
    fn on_message(&mut self, _cx: &mut Conn<'_, Self>, _st: &mut (), _line: &[u8]) {}
    fn on_close(&mut self, cx: &mut Conn<'_, Self>, _st: (), _reason: CloseReason) {
        let id: ConnId = cx.id();
        self.registry.lock().unwrap().retain(|h| h.id() != id);
    }
}

fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(9004);
    let registry: Registry = Arc::default();
    let r2 = registry.clone();
    let server = Server::new()
        .bind(args.addr())?
        .loops(args.loops)
        .serve(move || Subscribe {
            registry: r2.clone(),
        })?;
    eprintln!("background_send: {}", server.local_addr());
    let mut n = 0u64;
    loop {
        std::thread::sleep(Duration::from_secs(1));
        n += 1;
        let line = format!("tick {n}\n");
        for h in registry.lock().unwrap().iter() {
            h.send(line.clone());
        }
    }
}
