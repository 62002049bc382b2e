//! The frame protocol server: herd-proto's length-prefixed frames routed by message id to
//! typed handlers, inline on the loop or on a worker pool, with pings, a heartbeat, a flood
//! guard and error frames; plus a small blocking [`Client`].
//!
//! Top to bottom:
//! - [`FrameService`] (in `service.rs`) is what a user configures: it holds the shared
//!   configuration and makes a [`FrameProtocol`] (the [`Handler`](crate::Handler)) per loop,
//!   which decodes frames with [`FrameCodec`], keeps the
//!   per-connection [`FrameConnState`] (user data, last-seen time, flood buckets, pending pool
//!   jobs), answers pings, enforces the heartbeat and flood limits, and calls the [`Router`].
//! - [`Router`] maps message ids to handlers: raw bytes, prost messages, or blocking work on
//!   the [`WorkerPool`](crate::pool::WorkerPool); handlers reply and push through [`FrameConn`],
//!   and later pushes from any thread go through a [`FrameHandle`].
//! - [`FloodGuard`]/[`TokenBucket`] are the per-connection rate limits.
//! - [`Client`] is a blocking client for tests, tools and benchmarks: calls, pipelined
//!   calls, pings, pushes.
//!
//! The wire format itself (header layout, reserved ids, error payloads) lives in
//! [`herd_proto::frame`]; this module never parses bytes by hand. It adds no lock or shared
//! atomic to the path of a frame that is handled normally.
//!
//! ```no_run
//! use herd_core::frame::{FrameService, Router};
//! use herd_core::Server;
//!
//! let frames = FrameService::new(Router::new().route_raw(1, |_cx, body| Ok(Some(body.to_vec()))));
//! let server = Server::new().bind("127.0.0.1:7000")?.serve(move || frames.protocol())?;
//!
//! let mut client = herd_core::frame::Client::connect(server.local_addr())?;
//! assert_eq!(client.call_raw(1, b"echo").unwrap(), b"echo");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Policies
//!
//! - Unknown message id → error frame [`ErrorCode::UnknownId`]; undecodable prost body →
//!   `BadBody`; handler error → its code (`Handler` by default); full pool → `Busy` at once.
//!   Each answers its request (request id echoed) and the connection stays open. A frame with
//!   the RESPONSE or ERROR flag and no route is ignored (counted), never answered, so two
//!   peers cannot bounce errors at each other forever.
//! - A bad header (too large, reserved flags) → an error frame (`TooLarge` / `Protocol`,
//!   request id 0), then the loop closes the connection ([`CloseReason::Decode`], logged).
//! - A handler that panics: the router catches the panic, answers `Internal` for that
//!   request and closes the connection once that is written ([`CloseReason::Panic`]), because
//!   its user data may be half-updated. A blocking handler that panics only gets `Internal`:
//!   it touched no connection state.
//! - Blocking routes: the reply travels back through the connection's [`Handle`] (the loop's
//!   queue and one coalesced wake-up); if the connection closed meanwhile it is dropped and
//!   counted in [`Stats::stale_commands`], never written to the slot's next tenant. During a
//!   graceful stop a connection with a job on the pool counts as busy.
//! - Heartbeat: one loop timer sweeps the loop's connections every quarter of the timeout (or
//!   of the ping interval); a connection silent for longer than the timeout is closed
//!   ([`CloseReason::Heartbeat`]), between 1× and 1.25× the timeout after its last frame. No
//!   timer per connection or per message. Server pings go to connections quiet for the ping
//!   interval; any frame, a pong included, counts as a sign of life.
//! - Flood: token buckets per connection, refilled from the loop clock; going over closes
//!   the connection at once ([`CloseReason::Flood`]), with one warning per peer IP per loop.
//! - Counters of all these events: [`FrameService::stats`].
//!
//! [`ErrorCode::UnknownId`]: herd_proto::frame::ErrorCode::UnknownId
//! [`CloseReason::Decode`]: crate::CloseReason::Decode
//! [`CloseReason::Panic`]: crate::CloseReason::Panic
//! [`CloseReason::Heartbeat`]: crate::CloseReason::Heartbeat
//! [`CloseReason::Flood`]: crate::CloseReason::Flood
//! [`Handle`]: crate::Handle
//! [`Stats::stale_commands`]: crate::Stats::stale_commands
//!
//! Messages are prost types; `prost` is re-exported as [`frame::prost`](prost) so that users
//! can derive messages without a direct dependency:
//! `#[derive(herd_core::frame::prost::Message)] #[prost(prost_path = "::herd_core::frame::prost")]`
//! (or `herd::frame::prost` through the facade).

mod async_client;
mod client;
mod codec;
mod guard;
mod router;
mod service;

pub use async_client::{AsyncClient, AsyncClientOptions, FramePool};
pub use client::{Client, ClientError, OwnedFrame};
pub use codec::{FrameCodec, OutFrame};
pub use guard::{Flood, FloodGuard, FloodLimits, TokenBucket};
pub use router::{
    encode_frame, encode_msg, CloseInfo, FrameConn, FrameHandle, HandlerError, Router,
};
pub use service::{FrameConnState, FrameProtocol, FrameService, FrameStats};

pub use prost;
