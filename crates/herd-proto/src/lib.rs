//! Sans-IO protocol codecs for herd.
//!
//! Every codec here is a pure state machine over byte slices: it never touches a socket, never
//! reads a clock and never spawns anything. The event loop in `herd-core` feeds it the bytes it
//! read and writes out the bytes it emits; tests and fuzzers drive it the same way.
//!
//! - [`frame`]: herd's length-prefixed message protocol (header + body, message ids).
//! - [`http1`]: a strict HTTP/1.1 request decoder and response encoder.
//! - [`ws`]: RFC 6455 WebSocket framing, handshake and close rules.
//! - [`proxy`]: the PROXY protocol header (v1 text, v2 binary) a load balancer sends first.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod frame;
pub mod http1;
pub mod proxy;
pub mod ws;
