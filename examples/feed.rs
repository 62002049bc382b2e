//! Feed: a plain background thread pushes lines to every subscribed client through their
//! connection `Handle`s (docs/handles.md).
//!
//! A client sends `subscribe` (or `unsubscribe`) as a line; the loop stores its `Handle` in a
//! shared set. The feed thread, which owns no connection and runs no loop, sends each line to
//! every handle in the set. A closed connection leaves the set in `on_close`; a line sent to
//! it in the meantime is dropped by its loop and counted (`Stats::stale_commands`), never an
//! error for anyone else.
//!
//! `cargo run --example feed -- --port 9005 --loops 2`, then `nc 127.0.0.1 9005` and type
//! `subscribe`: a `tick N` line arrives every second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd::args::ServeArgs;
use herd::codec::LinesCodec;
use herd::{Bytes, CloseReason, Conn, ConnId, Handle, Handler, Server};

/// The subscribers: one `Handle` per subscribed connection, shared by every loop and the
/// feed thread. Cheap to clone.
#[derive(Clone, Default)]
pub struct Feed {
    subscribers: Arc<Mutex<HashMap<ConnId, Handle>>>,
}

impl Feed {
    /// Send `line` to every subscriber (from any thread); returns how many it was sent to.
    pub fn publish(&self, line: &str) -> usize {
        let bytes = Bytes::from(format!("{line}\n")); // encoded once, shared by all sends
        let subscribers = self.subscribers.lock().unwrap();
        for handle in subscribers.values() {
            handle.send(bytes.clone());
        }
        subscribers.len()
    }

    /// How many connections are subscribed.
    pub fn subscribers(&self) -> usize {
        self.subscribers.lock().unwrap().len()
    }

    fn add(&self, handle: Handle) {
        self.subscribers.lock().unwrap().insert(handle.id(), handle);
    }

    fn remove(&self, id: ConnId) {
        self.subscribers.lock().unwrap().remove(&id);
    }
}

/// The per-loop handler: turns `subscribe` / `unsubscribe` lines into set changes.
pub struct Subscriptions {
    feed: Feed,
}

impl Subscriptions {
    /// A handler for one loop, sharing `feed`.
    pub fn new(feed: Feed) -> Subscriptions {
        Subscriptions { feed }
    }
}

impl Handler for Subscriptions {
    type State = ();
    type Codec = LinesCodec;

    fn new_codec(&mut self) -> LinesCodec {
        LinesCodec::new(256)
    }

    fn on_open(&mut self, _cx: &mut Conn<'_, Self>) -> Option<()> {
        Some(())
    }

    fn on_message(&mut self, cx: &mut Conn<'_, Self>, _st: &mut (), line: &[u8]) {
        match line.trim_ascii() {
            b"subscribe" => {
                self.feed.add(cx.handle());
                cx.send("subscribed");
            }
            b"unsubscribe" => {
                self.feed.remove(cx.id());
                cx.send("unsubscribed");
            }
            _ => cx.send("commands: subscribe, unsubscribe"),
        }
    }

    fn on_close(&mut self, cx: &mut Conn<'_, Self>, _st: (), _reason: CloseReason) {
        self.feed.remove(cx.id());
    }
}

fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(9005);
    let feed = Feed::default();
    let for_loops = feed.clone();
    let server = Server::new()
        .bind(args.addr())?
        .loops(args.loops)
        .serve(move || Subscriptions::new(for_loops.clone()))?;
    eprintln!("feed: {} (send `subscribe`)", server.local_addr());
    std::thread::spawn(move || {
        for n in 1.. {
            std::thread::sleep(Duration::from_secs(1));
            feed.publish(&format!("tick {n}"));
        }
    });
    server.join();
    Ok(())
}
