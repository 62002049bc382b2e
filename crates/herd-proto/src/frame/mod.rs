//! herd's length-prefixed message protocol: a fixed 12-byte header, then the body.
//!
//! A TCP stream has no message boundaries; this codec puts them back. Each message travels as
//! one *frame* whose header carries the body length, so a reader always knows where the next
//! message starts ("sticky packets" cannot confuse it), and a message id, so a router can
//! dispatch to a typed handler. The layer is sans-IO: it decodes borrowed byte slices and
//! appends to a `Vec<u8>`; it never touches a socket, reads a clock or keeps global state.
//! It does not route, time out or rate-limit anything — heartbeats, flood guards and the
//! message-id router live in `herd-core`, which calls [`FrameDecoder::decode`] on its read
//! buffer and the `encode*` functions on its write buffer. Fuzzers and tests drive it the same
//! way.
//!
//! # Wire format
//!
//! Every integer is big-endian (network order).
//!
//! | offset | size | field      | meaning                                                    |
//! |-------:|-----:|------------|------------------------------------------------------------|
//! | 0      | 4    | length     | body length in bytes, header not included                 |
//! | 4      | 2    | message id | what the body is; see the reserved ids below               |
//! | 6      | 2    | flags      | [`Flags`]: bit 0 RESPONSE, bit 1 ERROR, bit 2 PUSH         |
//! | 8      | 4    | request id | chosen by the requester, echoed in the reply (pipelining)  |
//! | 12     | len  | body       | opaque bytes (a protobuf message, raw bytes, an error)     |
//!
//! Flag bits 3..=15 are reserved and must be zero; a frame with one set is a protocol error
//! ([`FrameError::ReservedFlags`]). A body longer than the decoder's `max_frame` is refused
//! from the length field alone, before any body byte arrives ([`FrameError::TooLarge`]).
//!
//! Reserved message ids (a user may not register any id in `0xFFF0..=0xFFFF`, see
//! [`is_user_id`]):
//!
//! | id                  | name         | body                                   | flags          |
//! |---------------------|--------------|----------------------------------------|----------------|
//! | `0xFFFF`            | [`ERROR_ID`] | [`ErrorPayload`]                       | RESPONSE+ERROR |
//! | `0xFFFE`            | [`PING_ID`]  | empty                                  | none           |
//! | `0xFFFD`            | [`PONG_ID`]  | empty, request id echoed from the ping | RESPONSE       |
//! | `0xFFFC`            | [`GOAWAY_ID`]| empty, request id 0                    | PUSH           |
//! | `0xFFF0..=0xFFFB`   | —            | reserved for future use                |                |
//!
//! A server that begins a graceful stop sends GOAWAY once on every connection: the replies
//! to requests already sent still come, but new requests belong on a new connection (to a
//! worker that is not leaving). The server closes the connection once it has been quiet for
//! its drain grace.
//!
//! An error payload is a big-endian u16 [`ErrorCode`] followed by UTF-8 text (decoded lossily).
//! A handler may also answer with its own message id and the ERROR flag; the body is then an
//! error payload too.
//!
//! A ping with request id 7 and its pong, byte by byte:
//!
//! ```text
//! ping: 00 00 00 00 | FF FE | 00 00 | 00 00 00 07
//! pong: 00 00 00 00 | FF FD | 00 01 | 00 00 00 07
//! ```
//!
//! # Example
//!
//! ```
//! use herd_proto::frame::{encode, FrameDecoder, Flags};
//!
//! let mut out = Vec::new();
//! encode(&mut out, 42, Flags::EMPTY, 1, b"hello").unwrap();
//! encode(&mut out, 43, Flags::EMPTY, 2, b"world").unwrap();
//!
//! let mut decoder = FrameDecoder::default();
//! let mut rest = &out[..];
//! let mut seen = Vec::new();
//! while let (consumed, Some(frame)) = decoder.decode(rest).unwrap() {
//!     seen.push((frame.header.msg_id, frame.body.to_vec()));
//!     rest = &rest[consumed..];
//! }
//! assert_eq!(seen, vec![(42, b"hello".to_vec()), (43, b"world".to_vec())]);
//! assert!(rest.is_empty());
//! ```

mod codec;
mod error;
mod payload;
mod wire;

#[cfg(test)]
mod tests;

pub use codec::{
    encode, encode_error, encode_goaway, encode_ping, encode_pong, encode_with, Frame, FrameDecoder,
};
pub use error::FrameError;
pub use payload::{ErrorCode, ErrorPayload};
pub use wire::{Flags, FrameView, Header};

/// Length of the fixed frame header in bytes.
pub const HEADER_LEN: usize = 12;

/// Default largest body (the header's length field) a [`FrameDecoder`] accepts: 4 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 4 * 1024 * 1024;

/// Message id of an error frame; its body is an [`ErrorPayload`].
pub const ERROR_ID: u16 = 0xFFFF;

/// Message id of a heartbeat ping; the peer answers with [`PONG_ID`] and the same request id.
pub const PING_ID: u16 = 0xFFFE;

/// Message id of a heartbeat pong, the answer to a [`PING_ID`] frame.
pub const PONG_ID: u16 = 0xFFFD;

/// Message id of "going away": the server is draining; send new requests on a new connection.
pub const GOAWAY_ID: u16 = 0xFFFC;

/// Lowest message id reserved for the protocol itself; ids at or above it are not for users.
pub const FIRST_RESERVED_ID: u16 = 0xFFF0;

/// Whether a user handler may be registered for `msg_id` (it is below [`FIRST_RESERVED_ID`]).
///
/// Call it when registering a route; frames with reserved ids the router does not know are
/// answered with [`ErrorCode::UnknownId`], not rejected by the decoder.
///
/// ```
/// use herd_proto::frame::{is_user_id, PING_ID};
///
/// assert!(is_user_id(0));
/// assert!(is_user_id(0xFFEF));
/// assert!(!is_user_id(0xFFF0));
/// assert!(!is_user_id(PING_ID));
/// ```
pub const fn is_user_id(msg_id: u16) -> bool {
    msg_id < FIRST_RESERVED_ID
}
