//! RFC 6455 WebSocket, sans-IO: the opening handshake, frame wire format, masking, the
//! message decoder (fragmentation, control frames, incremental UTF-8 checks, size limits) and
//! the close handshake, and the permessage-deflate extension (RFC 7692).
//!
//! This module turns bytes into events and events into bytes. It never touches a socket, never
//! reads a clock and never spawns anything: the WebSocket connection code in `herd-core` (the
//! event loop) calls it with the bytes it read and writes out the bytes it gets back; tests and
//! fuzzers drive it the same way (`herd-bench` frames by hand, to check servers
//! independently). It must not learn about connections, timers or handlers. The one extension
//! it knows is permessage-deflate ([`deflate`]): once a connection negotiated it, RSV1 marks a
//! compressed message; every other RSV bit on the wire is a protocol error.
//!
//! The pieces, in the order a connection uses them:
//!
//! - [`handshake`]: check an HTTP/1.1 upgrade request ([`check_upgrade`]), compute
//!   `Sec-WebSocket-Accept` ([`accept_key`]) and write the `101` or the `400`/`426` response.
//! - [`frame`]: the frame header as a checked wire view ([`frame::Frame`]) and a validated
//!   representation ([`FrameHeader`]), plus encoders ([`encode_frame`], [`encode_close`]).
//! - [`mask`]: [`apply_mask`], the XOR masking that can resume mid-payload.
//! - [`utf8`]: [`Utf8Validator`], UTF-8 checking that works across fragment boundaries.
//! - [`decoder`]: [`Decoder`], the receive state machine that yields [`Message`]s, borrowed
//!   from the caller's read buffer whenever the message arrived whole.
//! - [`deflate`]: permessage-deflate negotiation ([`deflate::negotiate`]) and the per-message
//!   [`deflate::Deflater`] and [`deflate::Inflater`] (size-limited while inflating).
//! - [`close`]: close-code rules and [`CloseState`], which tells the loop what to send and when
//!   to drop the TCP connection.
//!
//! Every protocol violation is a [`WsError`] carrying the close code to send (1002, 1007,
//! 1009) and a short static reason for the log line.
//!
//! ```
//! use herd_proto::ws::{encode_frame, CloseAction, CloseState, Decoder, Message, Opcode, Role};
//!
//! // What a client sent after the handshake: a masked "hi", then a masked Close(1000).
//! let mut wire = Vec::new();
//! encode_frame(&mut wire, true, Opcode::Text, b"hi", Some([1, 2, 3, 4]));
//! encode_frame(&mut wire, true, Opcode::Close, &1000u16.to_be_bytes(), Some([5, 6, 7, 8]));
//!
//! let mut decoder = Decoder::new(Role::Server);
//! let mut close = CloseState::default();
//! let mut out = Vec::new();
//! let mut pos = 0;
//! loop {
//!     let (used, msg) = decoder.decode(&mut wire[pos..]).expect("valid stream");
//!     pos += used;
//!     match msg {
//!         Some(Message::Text(text)) => encode_frame(&mut out, true, Opcode::Text, text.as_bytes(), None),
//!         Some(Message::Close(payload)) => {
//!             assert_eq!(close.on_peer_close(&mut out, payload), CloseAction::SendThenClose);
//!         }
//!         Some(_) => {}
//!         None if used == 0 => break, // need more bytes: keep wire[pos..] and read again
//!         None => {}
//!     }
//! }
//! assert_eq!(pos, wire.len());
//! assert_eq!(out, [0x81, 2, b'h', b'i', 0x88, 2, 0x03, 0xE8]);
//! ```

use std::fmt;

pub mod close;
pub mod decoder;
pub mod deflate;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod utf8;

#[cfg(test)]
mod tests;

pub use close::{CloseAction, CloseState};
pub use decoder::{Decoder, Message, Role, DEFAULT_MAX_FRAME, DEFAULT_MAX_MESSAGE};
pub use frame::{
    encode_close, encode_close_with_mask, encode_frame, encode_frame_rsv, parse_header,
    FrameHeader, Opcode,
};
pub use handshake::{
    accept_key, check_upgrade, check_upgrade_parts, encode_accept_response,
    encode_accept_response_with, HandshakeError, Upgrade,
};
pub use mask::apply_mask;
pub use utf8::Utf8Validator;

/// A protocol violation by the peer: the connection must be failed.
///
/// Returned by [`Decoder::decode`] and [`FrameHeader::parse`]. The loop sends a Close frame
/// with [`close_code`](Self::close_code) (for example through [`CloseState::on_error`]), then
/// closes the TCP connection; [`reason`](Self::reason) is short, static and safe to log or to
/// put in the Close frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsError {
    /// The RFC 6455 close code to send: 1002 (protocol error), 1007 (invalid payload data) or
    /// 1009 (message too big).
    pub close_code: u16,
    /// What was wrong, in a few words.
    pub reason: &'static str,
}

impl WsError {
    /// A 1002 "protocol error" with `reason`.
    pub const fn protocol(reason: &'static str) -> Self {
        WsError {
            close_code: close::PROTOCOL_ERROR,
            reason,
        }
    }

    /// A 1007 "invalid frame payload data" error (bad UTF-8) with `reason`.
    pub const fn invalid_payload(reason: &'static str) -> Self {
        WsError {
            close_code: close::INVALID_PAYLOAD,
            reason,
        }
    }

    /// A 1009 "message too big" error with `reason`.
    pub const fn too_big(reason: &'static str) -> Self {
        WsError {
            close_code: close::MESSAGE_TOO_BIG,
            reason,
        }
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "websocket error {}: {}", self.close_code, self.reason)
    }
}

impl std::error::Error for WsError {}
