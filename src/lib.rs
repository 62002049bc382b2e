//! herd: a high-performance network server framework, and the pieces of the `herd` server.
//!
//! Layers, top to bottom (each depends only on the ones below it):
//! - the `herd` binary (crates/herd-server): config, master/worker processes, signals, logs;
//! - this facade: re-exports, plus the examples, integration tests and benchmarks at the top
//!   of the repository;
//! - [`herd_core`](crate#core-re-exports): per-thread event loops on mio, connections, buffers,
//!   the timer wheel, codecs, handles, accept modes, stats;
//! - [`proto`]: sans-IO protocol codecs (frame, HTTP/1.1, WebSocket): no sockets, no clocks.
//!
//! # Core re-exports
//! Everything in `herd_core` is re-exported at the root: [`Server`], [`Handler`], [`Conn`],
//! [`Handle`], [`codec`], [`clock`], [`timer`], [`Stats`], and the protocol modules [`http`],
//! [`frame`] and [`ws`], whose names follow one scheme: [`http::HttpService`] (what you
//! configure) makes an [`http::HttpProtocol`] (the [`Handler`] of each loop), and likewise
//! `FrameService`/`FrameProtocol` and `WsService`/`WsProtocol`; callbacks see a
//! [`frame::FrameConn`] or [`ws::WsConn`].
//!
//! ```no_run
//! use herd::{codec::BytesCodec, Conn, Handler, Server};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     type State = ();
//!     type Codec = BytesCodec;
//!     fn new_codec(&mut self) -> BytesCodec { BytesCodec }
//!     fn on_open(&mut self, _cx: &mut Conn<'_, Self>) -> Option<()> { Some(()) }
//!     fn on_message(&mut self, cx: &mut Conn<'_, Self>, _st: &mut (), msg: &[u8]) {
//!         cx.send(msg);
//!     }
//! }
//!
//! Server::new().bind("127.0.0.1:9000")?.serve(|| Echo)?.join();
//! # Ok::<(), std::io::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use herd_core::*;
pub use herd_proto as proto;

pub mod args;
