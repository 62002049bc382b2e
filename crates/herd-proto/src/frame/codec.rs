//! Streaming decode ([`FrameDecoder`]) and encode (`encode*`) of whole frames.
//!
//! The decoder works on the borrowed bytes the event loop just read and says how many it
//! consumed; it never copies or allocates, and it refuses an oversized frame from its length
//! field alone. The encoders append to the loop's write buffer. Neither does I/O, keeps a
//! buffer of its own or routes messages: `herd-core`'s connection and frame router call them.

use super::error::FrameError;
use super::payload::{ErrorCode, ErrorPayload};
use super::wire::{self, Flags, Header};
use super::{DEFAULT_MAX_FRAME, ERROR_ID, HEADER_LEN, PING_ID, PONG_ID};

/// One decoded frame, borrowing its body from the decoder's input.
///
/// `header.len == body.len()` for every frame [`FrameDecoder::decode`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The validated header.
    pub header: Header,
    /// The body bytes, borrowed from the input slice.
    pub body: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Whether this is a heartbeat ping ([`PING_ID`](super::PING_ID)), to be answered with
    /// [`encode_pong`] and the same request id.
    pub fn is_ping(&self) -> bool {
        self.header.msg_id == PING_ID
    }

    /// Whether this is a heartbeat pong ([`PONG_ID`](super::PONG_ID)).
    pub fn is_pong(&self) -> bool {
        self.header.msg_id == PONG_ID
    }

    /// Whether the ERROR flag is set, i.e. the body is an [`ErrorPayload`].
    pub fn is_error(&self) -> bool {
        self.header.flags.is_error()
    }

    /// Parses the body as an [`ErrorPayload`]; call it when [`Frame::is_error`] holds.
    pub fn error_payload(&self) -> Result<ErrorPayload<'a>, FrameError> {
        ErrorPayload::parse(self.body)
    }
}

/// Splits a byte stream into frames, refusing bodies longer than `max_frame`.
///
/// Call [`FrameDecoder::decode`] on the unconsumed bytes each time more arrive (typically
/// straight on the loop's scratch read buffer), and again after every frame it returns, until
/// it answers `Ok((0, None))`; then keep only the unconsumed tail — at most one incomplete frame —
/// and call [`FrameDecoder::needed`] to size the buffer for it once. After an error the stream
/// has no recoverable frame boundary: send an error frame if desired and close.
///
/// The decoder is stateless today (the same bytes always give the same answer), so it can be
/// handed any slice that starts at a frame boundary.
///
/// ```
/// use herd_proto::frame::{encode, Flags, FrameDecoder, FrameError, HEADER_LEN};
///
/// let mut wire = Vec::new();
/// encode(&mut wire, 7, Flags::EMPTY, 99, b"payload").unwrap();
///
/// let mut decoder = FrameDecoder::new(1024);
/// // Only part of the frame has arrived: need more, and we now know how much in total.
/// assert_eq!(decoder.decode(&wire[..5]), Ok((0, None)));
/// assert_eq!(decoder.needed(&wire[..5]), HEADER_LEN + 7);
///
/// let (consumed, frame) = decoder.decode(&wire).unwrap();
/// let frame = frame.unwrap();
/// assert_eq!((frame.header.msg_id, frame.header.request_id, frame.body), (7, 99, &b"payload"[..]));
/// assert_eq!(consumed, wire.len());
///
/// // A length prefix over the limit fails from its first four bytes.
/// let huge = [0x40, 0, 0, 0];
/// assert_eq!(decoder.decode(&huge), Err(FrameError::TooLarge { len: 1 << 30, max: 1024 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameDecoder {
    /// Largest body length accepted; longer frames fail with [`FrameError::TooLarge`].
    pub max_frame: u32,
}

impl Default for FrameDecoder {
    /// A decoder with `max_frame` = [`DEFAULT_MAX_FRAME`].
    fn default() -> FrameDecoder {
        FrameDecoder::new(DEFAULT_MAX_FRAME)
    }
}

impl FrameDecoder {
    /// A decoder that accepts bodies of at most `max_frame` bytes.
    pub const fn new(max_frame: u32) -> FrameDecoder {
        FrameDecoder { max_frame }
    }

    /// Decodes the frame at the start of `src`.
    ///
    /// Returns `Ok((consumed, Some(frame)))` with the number of bytes the first complete frame
    /// took (`consumed <= src.len()`; the next frame starts at `src[consumed..]`) and the frame,
    /// or `Ok((0, None))` if `src` holds only part of a frame: the shape of herd-core's
    /// `codec::Decoder`. Errors are reported as soon as the
    /// bytes that prove them are present, without waiting for the rest:
    /// [`FrameError::TooLarge`] from the first 4 bytes, [`FrameError::ReservedFlags`] from the
    /// first 8.
    pub fn decode<'a>(&mut self, src: &'a [u8]) -> Result<(usize, Option<Frame<'a>>), FrameError> {
        let Some(len) = wire::peek_len(src) else {
            return Ok((0, None));
        };
        let total = self.checked_frame_len(len)?;
        if let Some(flags) = wire::peek_flags(src) {
            if Flags::from_bits(flags).is_none() {
                return Err(FrameError::ReservedFlags { flags });
            }
        }
        if src.len() < total {
            return Ok((0, None));
        }
        let header = Header::parse(src)?;
        let body = &src[HEADER_LEN..total];
        Ok((total, Some(Frame { header, body })))
    }

    /// Total bytes (header plus body) the frame at the start of `src` occupies.
    ///
    /// [`HEADER_LEN`] until the 4-byte length field is present, then `HEADER_LEN + len`. Call
    /// it after [`FrameDecoder::decode`] answered `Ok((0, None))` to reserve room for the whole
    /// frame at once. It never exceeds `max_frame + HEADER_LEN`: for a length that `decode`
    /// refuses it answers [`HEADER_LEN`].
    pub fn needed(&self, src: &[u8]) -> usize {
        wire::peek_len(src)
            .and_then(|len| self.checked_frame_len(len).ok())
            .unwrap_or(HEADER_LEN)
    }

    fn checked_frame_len(&self, len: u32) -> Result<usize, FrameError> {
        let too_large = FrameError::TooLarge {
            len,
            max: self.max_frame,
        };
        if len > self.max_frame {
            return Err(too_large);
        }
        wire::frame_len(len).ok_or(too_large)
    }
}

/// The length field for a body of `len` bytes, or [`FrameError::BodyTooLong`].
pub(super) fn body_len_field(len: usize) -> Result<u32, FrameError> {
    u32::try_from(len).map_err(|_| FrameError::BodyTooLong { len })
}

/// Appends one frame with `body` to `dst`.
///
/// Fails with [`FrameError::BodyTooLong`] (leaving `dst` untouched) if `body` is longer than
/// `u32::MAX` bytes. It does not check the peer's `max_frame`; that is the caller's policy.
///
/// ```
/// use herd_proto::frame::{encode, Flags};
///
/// let mut out = Vec::new();
/// encode(&mut out, 0x0102, Flags::RESPONSE, 9, b"ok").unwrap();
/// assert_eq!(out, [0, 0, 0, 2, 0x01, 0x02, 0, 1, 0, 0, 0, 9, b'o', b'k']);
/// ```
pub fn encode(
    dst: &mut Vec<u8>,
    msg_id: u16,
    flags: Flags,
    request_id: u32,
    body: &[u8],
) -> Result<(), FrameError> {
    let len = body_len_field(body.len())?;
    let header = Header {
        len,
        msg_id,
        flags,
        request_id,
    };
    let start = dst.len();
    dst.reserve(HEADER_LEN + body.len());
    dst.resize(start + HEADER_LEN, 0);
    header.emit(&mut dst[start..]);
    dst.extend_from_slice(body);
    Ok(())
}

/// Appends one frame whose body `f` appends to `dst`, then patches the length field.
///
/// This lets a body be serialized straight into the write buffer (for example
/// `|buf| msg.encode(buf).unwrap()` with prost) with no temporary buffer. `f` must only
/// append; whatever it appends after the header is the body. If the body turns out longer
/// than `u32::MAX` bytes, `dst` is cut back to its original length and
/// [`FrameError::BodyTooLong`] is returned.
///
/// # Panics
///
/// If `f` shrinks `dst` below the end of the header this function wrote (a caller bug).
///
/// ```
/// use herd_proto::frame::{encode_with, FrameDecoder, Flags};
///
/// let mut out = b"earlier bytes stay".to_vec();
/// encode_with(&mut out, 5, Flags::PUSH, 0, |buf| {
///     buf.extend_from_slice(b"built ");
///     buf.extend_from_slice(b"in place");
/// })
/// .unwrap();
///
/// let frame = FrameDecoder::default().decode(&out[18..]).unwrap().1.unwrap();
/// assert_eq!(frame.body, b"built in place");
/// assert!(frame.header.flags.is_push());
/// ```
pub fn encode_with<F: FnOnce(&mut Vec<u8>)>(
    dst: &mut Vec<u8>,
    msg_id: u16,
    flags: Flags,
    request_id: u32,
    f: F,
) -> Result<(), FrameError> {
    let start = dst.len();
    let body_start = start + HEADER_LEN;
    dst.resize(body_start, 0);
    f(dst);
    assert!(
        dst.len() >= body_start,
        "encode_with: the body closure removed bytes it did not append"
    );
    let len = match body_len_field(dst.len() - body_start) {
        Ok(len) => len,
        Err(err) => {
            dst.truncate(start);
            return Err(err);
        }
    };
    // Write the whole header now, so nothing `f` did to those bytes survives.
    let header = Header {
        len,
        msg_id,
        flags,
        request_id,
    };
    header.emit(&mut dst[start..body_start]);
    Ok(())
}

/// Appends an error frame: id [`ERROR_ID`](super::ERROR_ID), flags RESPONSE | ERROR, and an
/// [`ErrorPayload`] of `code` and `text`.
///
/// Use `request_id` 0 for an error that answers no particular request (such as a protocol
/// error sent before closing). Fails with [`FrameError::BodyTooLong`], leaving `dst`
/// untouched, if the text does not fit the 32-bit length field.
///
/// ```
/// use herd_proto::frame::{encode_error, ErrorCode, FrameDecoder};
///
/// let mut out = Vec::new();
/// encode_error(&mut out, 3, ErrorCode::Busy, "try later").unwrap();
/// let frame = FrameDecoder::default().decode(&out).unwrap().1.unwrap();
/// assert!(frame.is_error() && frame.header.flags.is_response());
/// let payload = frame.error_payload().unwrap();
/// assert_eq!((payload.code, &*payload.text), (ErrorCode::Busy, "try later"));
/// ```
pub fn encode_error(
    dst: &mut Vec<u8>,
    request_id: u32,
    code: ErrorCode,
    text: &str,
) -> Result<(), FrameError> {
    let payload = ErrorPayload::new(code, text);
    let body_len = ErrorPayload::CODE_LEN.saturating_add(text.len());
    body_len_field(body_len)?;
    dst.reserve(HEADER_LEN + body_len);
    encode_with(
        dst,
        ERROR_ID,
        Flags::RESPONSE | Flags::ERROR,
        request_id,
        |buf| payload.append_to(buf),
    )
}

/// Appends a heartbeat ping (id [`PING_ID`](super::PING_ID), no flags, empty body).
///
/// The peer answers with a pong carrying the same `request_id`.
pub fn encode_ping(dst: &mut Vec<u8>, request_id: u32) {
    push_empty(dst, PING_ID, Flags::EMPTY, request_id);
}

/// Appends a heartbeat pong (id [`PONG_ID`](super::PONG_ID), flag RESPONSE, empty body).
///
/// Call it on receiving a ping, with the ping's request id.
///
/// ```
/// use herd_proto::frame::{encode_ping, encode_pong};
///
/// let (mut ping, mut pong) = (Vec::new(), Vec::new());
/// encode_ping(&mut ping, 7);
/// encode_pong(&mut pong, 7);
/// assert_eq!(ping, [0, 0, 0, 0, 0xFF, 0xFE, 0, 0, 0, 0, 0, 7]);
/// assert_eq!(pong, [0, 0, 0, 0, 0xFF, 0xFD, 0, 1, 0, 0, 0, 7]);
/// ```
pub fn encode_pong(dst: &mut Vec<u8>, request_id: u32) {
    push_empty(dst, PONG_ID, Flags::RESPONSE, request_id);
}

/// Appends a "going away" frame (id [`GOAWAY_ID`](super::GOAWAY_ID), flag PUSH, request id 0,
/// empty body): the sender is draining and new requests belong on a new connection.
///
/// ```
/// use herd_proto::frame::encode_goaway;
///
/// let mut out = Vec::new();
/// encode_goaway(&mut out);
/// assert_eq!(out, [0, 0, 0, 0, 0xFF, 0xFC, 0, 4, 0, 0, 0, 0]);
/// ```
pub fn encode_goaway(dst: &mut Vec<u8>) {
    push_empty(dst, super::GOAWAY_ID, Flags::PUSH, 0);
}

fn push_empty(dst: &mut Vec<u8>, msg_id: u16, flags: Flags, request_id: u32) {
    let header = Header {
        len: 0,
        msg_id,
        flags,
        request_id,
    };
    let mut bytes = [0u8; HEADER_LEN];
    header.emit(&mut bytes);
    dst.extend_from_slice(&bytes);
}
