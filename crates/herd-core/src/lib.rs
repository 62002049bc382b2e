//! herd-core: the event-loop layer of herd.
//!
//! Top to bottom:
//! - [`Server`] starts N event loops (threads) and, in acceptor mode, an accept thread; it
//!   returns a [`ServerHandle`] to read counters and stop gracefully.
//! - Each loop owns a mio `Poll`, a slab of connections addressed by [`ConnId`] (loop, slot,
//!   generation), a timer wheel ([`timer`]), a buffer pool ([`buf`]) and one [`Handler`] made
//!   by the factory given to [`Server::serve`]. Nothing on the per-message path takes a lock or
//!   touches a shared atomic.
//! - A handler decodes with a per-connection [`codec`] and sees each connection through
//!   [`Conn`] (send, close, timers) and the loop through [`LoopCx`]; other threads use a
//!   [`Handle`], whose commands go through the loop's queue with one coalesced wake-up.
//! - [`http`], [`frame`] and [`ws`] run herd-proto's codecs as handlers, and name their parts
//!   alike: `XService` is what a user configures ([`http::HttpService`],
//!   [`frame::FrameService`], [`ws::WsService`]); `XProtocol` is the per-loop [`Handler`] it
//!   makes ([`http::HttpProtocol`], [`frame::FrameProtocol`], [`ws::WsProtocol`]); `XConn` is
//!   the connection a callback sees ([`frame::FrameConn`], [`ws::WsConn`]; HTTP routes see only
//!   the request); `XConnState` is the per-connection state; `XHandler` is a trait the user
//!   implements ([`ws::WsHandler`]).
//! - The private `sys` module holds everything OS-specific, and is the only module with
//!   `unsafe`: the crate is `#![deny(unsafe_code)]` with the lint allowed on `sys` alone, so
//!   the compiler rejects `unsafe` anywhere else. [`os`] re-exports the two helpers of it that
//!   other crates need.
//!
//! What this crate does not do: parse protocol bytes (that is `herd-proto`, sans-IO), read
//! config files or manage processes (that is the `herd` server).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod buf;
pub mod clock;
pub mod codec;
mod conn;
mod event_loop;
pub mod frame;
mod handler;
pub mod http;
mod id;
mod inbox;
pub mod limit;
pub mod names;
pub mod os;
pub mod overload;
pub mod pool;
pub mod proxy;
mod reason;
mod server;
pub mod stats;
#[allow(unsafe_code)]
mod sys;
pub mod task;
pub mod timer;
#[cfg(feature = "tls")]
pub mod tls;
pub mod ws;

pub use bytes::Bytes;
pub use conn::{Conn, ConnId, Handle, LoopCx, Timer};
pub use handler::{Handler, Item};
pub use reason::CloseReason;
pub use server::{AcceptMode, Balance, Options, Server, ServerHandle, StopReport, NOTSENT_LOWAT};
pub use stats::{Histogram, ProtoStats, Stats};
