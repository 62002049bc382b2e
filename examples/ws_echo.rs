//! WebSocket echo server: every text or binary message comes back as it was, on any path.
//!
//! `cargo run --release --example ws_echo -- --port 9002 --loops 1`
//! then e.g. `python3 -m websockets ws://127.0.0.1:9002/`. Used by `.ci/interop-ws.sh` and
//! `bench/ws.sh`. Options: `--max-message BYTES` (default 16 MiB; larger messages close with
//! 1009), `--idle-ms MS` (close peers silent that long; default 60000), `--deflate MODE`
//! (`off`, the default; `shared`: permessage-deflate with contexts reset per message and
//! shared per loop; `takeover`: with each connection's own contexts kept between messages).

use std::time::Duration;

use herd::args::ServeArgs;
use herd::ws::{DeflateConfig, WsConn, WsHandler, WsOptions, WsRequest, WsService};
use herd::Server;

/// The echo handler: one per loop, no per-connection state.
pub struct Echo;

impl WsHandler for Echo {
    type State = ();

    fn on_open(&mut self, _cx: &mut WsConn<'_, Self>, _req: &WsRequest) -> Option<()> {
        Some(())
    }

    fn on_text(&mut self, cx: &mut WsConn<'_, Self>, _st: &mut (), text: &str) {
        cx.send_text(text);
    }

    fn on_binary(&mut self, cx: &mut WsConn<'_, Self>, _st: &mut (), data: &[u8]) {
        cx.send_binary(data);
    }
}

/// The service: the echo on every path, with `opts`.
pub fn service(opts: WsOptions) -> WsService<Echo> {
    WsService::new(|| Echo).options(opts)
}

/// The options the command line asks for (see the module docs).
pub fn options(args: &ServeArgs) -> WsOptions {
    let mut opts = WsOptions::default();
    if let Some(max) = args.get::<u64>("max-message") {
        opts.max_message = max;
        opts.max_frame = max;
    }
    if let Some(ms) = args.get::<u64>("idle-ms") {
        opts.idle_timeout = Some(Duration::from_millis(ms));
        opts.ping_interval = Some(Duration::from_millis(ms / 2));
    }
    match args.get::<String>("deflate").as_deref() {
        None | Some("off") => {}
        Some(mode) => {
            let takeover = mode == "takeover";
            opts.deflate = Some(DeflateConfig {
                server_no_context_takeover: !takeover,
                client_no_context_takeover: !takeover,
                ..DeflateConfig::default()
            });
        }
    }
    opts
}

fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(9002);
    let server =
        service(options(&args)).serve(Server::new().bind(args.addr())?.loops(args.loops))?;
    eprintln!(
        "ws_echo: listening on {} with {} loop(s)",
        server.local_addr(),
        server.loops()
    );
    server.join();
    Ok(())
}
