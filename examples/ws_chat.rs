//! WebSocket chat room: a page at `/` and one room at `/chat` where every text message is
//! broadcast to every member, whichever loop serves them.
//!
//! `cargo run --release --example ws_chat -- --port 9003 --loops 2`, then open
//! <http://127.0.0.1:9003/> in two browser tabs. The page (`examples/ws_chat/index.html`, served
//! by herd's static-file module) asks for a name and connects to `/chat?name=NAME`.
//!
//! Protocol, all text frames: the server sends `* NAME joined (N online)` and `* NAME left`
//! when members come and go, and `NAME: TEXT` for each message a member sends (the sender
//! gets its own line back too, as confirmation). Names come from the `name` query parameter
//! (percent-decoded, control characters dropped, at most 32 characters, `anon` if empty), so a
//! member cannot speak under another name inside a message. Messages are at most 4 KiB (a
//! larger one closes with 1009); binary messages close with 1003.
//!
//! One [`Room`] is shared by the handlers of every loop: each line is encoded once (and, for
//! members whose browser negotiated permessage-deflate, compressed once when it is at least
//! 256 bytes) and queued to every member through its handle. `selftest.html` beside the page is
//! what `.ci/interop-ws-browser.sh` opens in headless Chromium. The service is built by [`service`] so that
//! `tests/ws_chat.rs` runs the same code in-process.

use std::io;
use std::path::{Path, PathBuf};

use herd::args::ServeArgs;
use herd::http::{HttpService, Router, StaticDir};
use herd::ws::{codes, DeflateConfig, Room, WsConn, WsHandler, WsOptions, WsRequest, WsService};
use herd::Server;

/// Longest name kept, in characters.
const MAX_NAME: usize = 32;
/// Largest message accepted, in bytes.
const MAX_TEXT: u64 = 4096;

/// The per-loop handler: every loop's handler holds a clone of the same room.
pub struct Chat {
    room: Room,
}

impl WsHandler for Chat {
    /// The member's name.
    type State = String;

    fn on_open(&mut self, cx: &mut WsConn<'_, Self>, req: &WsRequest) -> Option<String> {
        let name = name_from_query(req.query().unwrap_or(""));
        self.room.join(cx.member());
        let online = self.room.len();
        self.room
            .send_text(&format!("* {name} joined ({online} online)"));
        Some(name)
    }

    fn on_text(&mut self, _cx: &mut WsConn<'_, Self>, name: &mut String, text: &str) {
        let text = text.trim();
        if !text.is_empty() {
            self.room.send_text(&format!("{name}: {text}"));
        }
    }

    fn on_binary(&mut self, cx: &mut WsConn<'_, Self>, _name: &mut String, _data: &[u8]) {
        cx.close(codes::UNSUPPORTED_DATA, "text messages only");
    }

    fn on_close(&mut self, cx: &mut WsConn<'_, Self>, name: String, _code: u16, _reason: &str) {
        if self.room.leave(cx.id()) {
            self.room.send_text(&format!("* {name} left"));
        }
    }
}

/// The directory holding the page (`examples/ws_chat/`).
pub fn page_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ws_chat")
}

/// The chat service: `pages` served at `/`, the room's WebSocket endpoint at `/chat`.
pub fn service(pages: &Path, room: Room) -> io::Result<WsService<Chat>> {
    let site = HttpService::new(Router::new().statics("/", StaticDir::new(pages)?));
    let opts = WsOptions {
        max_frame: MAX_TEXT,
        max_message: MAX_TEXT,
        deflate: Some(DeflateConfig::default()),
        ..WsOptions::default()
    };
    Ok(WsService::new(move || Chat { room: room.clone() })
        .options(opts)
        .path("/chat")
        .http(site))
}

/// The member name in a query string such as `name=Ann%20Lee&x=1`.
pub fn name_from_query(query: &str) -> String {
    let raw = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("name="))
        .unwrap_or("");
    let decoded = percent_decode(raw);
    let name: String = decoded
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect();
    let name = name.trim();
    if name.is_empty() {
        "anon".into()
    } else {
        name.into()
    }
}

/// Decodes `%XX` escapes and `+` (as a space; `%2B` is a `+`); a malformed escape is kept as
/// written, and invalid UTF-8 becomes U+FFFD.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(&s.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

fn main() -> io::Result<()> {
    let args = ServeArgs::from_env(9003);
    let server = service(&page_dir(), Room::new())?
        .serve(Server::new().bind(args.addr())?.loops(args.loops))?;
    eprintln!(
        "ws_chat: open http://{}/ ({} loop(s))",
        server.local_addr(),
        server.loops()
    );
    server.join();
    Ok(())
}
