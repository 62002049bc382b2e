//! herd: a high-performance network server framework, the library behind the `herd` server.
//!
//! This crate is what a program that embeds herd depends on; it pulls in herd-core and
//! herd-proto and nothing of the server (no clap, toml, tracing-subscriber or herd-server):
//!
//! ```toml
//! [dependencies]
//! # A checkout beside your project; with `git = "<herd's repository>"` instead of `path`,
//! # Cargo finds this package (it is the one named `herd`) in the repository's workspace.
//! herd = { path = "../herd/crates/herd" }
//! # Without TLS (no rustls, no aws-lc-rs to build):
//! # herd = { path = "../herd/crates/herd", default-features = false }
//! ```
//!
//! Features: `tls` (default: TLS listeners on rustls) and `tokio-io` (tokio's
//! `AsyncRead`/`AsyncWrite` for cosockets, the traits only).
//!
//! Layers, top to bottom (each depends only on the ones below it):
//! - the `herd` binary (the repository's root package, its logic in crates/herd-server):
//!   config, master/worker processes, signals, logs; the examples and integration tests live
//!   beside it and use this crate as any user would;
//! - this facade: re-exports, and [`args`], the examples' tiny command-line parser;
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
