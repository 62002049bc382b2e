//! Frame greeter: the smallest typed service on the frame protocol (docs/frame.md).
//!
//! Message id 1 takes a `Hello` (`string name = 1`) and answers a `Greeting`
//! (`string text = 1`) with the RESPONSE flag and the request's id. An empty name is answered
//! with an error frame (code 3, HANDLER); an id with no route with one of code 1 (UNKNOWN_ID),
//! and a body that is not a `Hello` with code 2 (BAD_BODY). The connection stays open after
//! each of these. A header announcing more than 64 KiB is answered TOO_LARGE (code 5) and the
//! connection is closed. `tests/frame_greeter.rs` speaks the wire format by hand from python3.
//!
//! `cargo run --example frame_greeter -- --port 9300 --loops 1`

use herd::args::ServeArgs;
use herd::frame::prost;
use herd::frame::{FrameService, HandlerError, Router};
use herd::Server;

/// The message id of the greeting route.
pub const GREET: u16 = 1;

/// Largest frame body the service accepts: 64 KiB.
pub const MAX_FRAME: u32 = 64 * 1024;

/// The request: who to greet.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
pub struct Hello {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// The reply.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
pub struct Greeting {
    #[prost(string, tag = "1")]
    pub text: String,
}

/// The service: one typed route, a 64 KiB frame limit, everything else at its default.
pub fn service() -> FrameService {
    let router = Router::new().route(GREET, |_cx, req: Hello| {
        if req.name.is_empty() {
            return Err(HandlerError::new("name is empty"));
        }
        Ok(Some(Greeting {
            text: format!("Hello, {}!", req.name),
        }))
    });
    FrameService::new(router).max_frame(MAX_FRAME)
}

fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(9300);
    let frames = service();
    let server = Server::new()
        .bind(args.addr())?
        .loops(args.loops)
        .serve(move || frames.protocol())?;
    eprintln!("frame_greeter: listening on {}", server.local_addr());
    server.join();
    Ok(())
}
