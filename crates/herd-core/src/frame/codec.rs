//! [`FrameCodec`]: herd-proto's sans-IO frame decoder and encoder as a herd-core codec.
//!
//! The event loop hands [`Decoder::decode`] the bytes it has read (usually its scratch buffer);
//! a decoded [`Frame`] borrows its body from them, so an inline handler reads the body without
//! a copy. Oversized or malformed headers are refused from the header alone, before anything
//! is buffered (see `herd_proto::frame`). The encoder appends whole frames ([`OutFrame`]) to
//! the connection's output buffer. This module does no routing and keeps no per-connection
//! state besides the size limit; the frame protocol ([`FrameProtocol`](super::FrameProtocol))
//! uses it, and so can any handler that wants frames without the router.

use herd_proto::frame::{self as wire, Flags, Frame, FrameDecoder, FrameError};

use crate::codec::{CodecError, Decoder, Encoder};

/// Decodes frames (refusing bodies over `max_frame`) and encodes [`OutFrame`]s.
///
/// ```
/// use herd_core::codec::{Decoder, Encoder};
/// use herd_core::frame::{FrameCodec, OutFrame};
/// use herd_proto::frame::Flags;
///
/// let mut codec = FrameCodec::new(1024);
/// let mut wire = Vec::new();
/// codec.encode(OutFrame::new(7, Flags::EMPTY, 1, b"hi"), &mut wire).unwrap();
/// let (used, frame) = codec.decode(&mut wire).unwrap();
/// let frame = frame.unwrap();
/// assert_eq!((used, frame.header.msg_id, frame.body), (14, 7, &b"hi"[..]));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    decoder: FrameDecoder,
}

impl Default for FrameCodec {
    /// A codec with the default 4 MiB limit.
    fn default() -> Self {
        FrameCodec::new(wire::DEFAULT_MAX_FRAME)
    }
}

impl FrameCodec {
    /// A codec refusing bodies longer than `max_frame` bytes, in both directions.
    pub fn new(max_frame: u32) -> FrameCodec {
        FrameCodec {
            decoder: FrameDecoder::new(max_frame),
        }
    }

    /// The body size limit.
    pub fn max_frame(&self) -> u32 {
        self.decoder.max_frame
    }
}

impl Decoder for FrameCodec {
    type Item<'a> = Frame<'a>;
    type Error = FrameError;

    fn decode<'a>(&mut self, src: &'a mut [u8]) -> Result<(usize, Option<Frame<'a>>), FrameError> {
        self.decoder.decode(src)
    }
}

/// One frame to send: header fields and a borrowed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutFrame<'a> {
    /// Message id.
    pub msg_id: u16,
    /// Flags (RESPONSE, ERROR, PUSH).
    pub flags: Flags,
    /// Request id (the request's for a reply, 0 for a push).
    pub request_id: u32,
    /// Body bytes.
    pub body: &'a [u8],
}

impl<'a> OutFrame<'a> {
    /// A frame with these fields.
    pub fn new(msg_id: u16, flags: Flags, request_id: u32, body: &'a [u8]) -> OutFrame<'a> {
        OutFrame {
            msg_id,
            flags,
            request_id,
            body,
        }
    }
}

impl Encoder<OutFrame<'_>> for FrameCodec {
    /// Appends the frame; a body over `max_frame` is refused (the loop then closes the
    /// connection with [`CloseReason::Encode`](crate::CloseReason::Encode)).
    fn encode(&mut self, item: OutFrame<'_>, dst: &mut Vec<u8>) -> Result<(), CodecError> {
        if item.body.len() > self.max_frame() as usize {
            return Err(CodecError::new(
                "frame too large",
                format!("{} bytes > max {}", item.body.len(), self.max_frame()),
            ));
        }
        wire::encode(dst, item.msg_id, item.flags, item.request_id, item.body)
            .map_err(|e| CodecError::new("frame too large", e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feed `chunks` one by one like the loop does (keeping unconsumed tails).
    fn decode_all(
        codec: &mut FrameCodec,
        chunks: &[&[u8]],
    ) -> Result<Vec<(u16, u32, Vec<u8>)>, FrameError> {
        let mut held = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            held.extend_from_slice(chunk);
            loop {
                let (used, frame) = codec.decode(&mut held)?;
                if let Some(f) = frame {
                    out.push((f.header.msg_id, f.header.request_id, f.body.to_vec()));
                }
                if used == 0 {
                    break;
                }
                held.drain(..used);
            }
        }
        Ok(out)
    }

    #[test]
    fn oversized_is_refused_both_ways() {
        let mut codec = FrameCodec::new(4);
        let mut out = Vec::new();
        let err = codec
            .encode(OutFrame::new(1, Flags::EMPTY, 0, b"12345"), &mut out)
            .unwrap_err();
        assert_eq!(err.reason, "frame too large");
        assert!(out.is_empty());
        let mut big = Vec::new();
        wire::encode(&mut big, 1, Flags::EMPTY, 0, b"12345").unwrap();
        assert_eq!(
            codec.decode(&mut big[..4]).unwrap_err(),
            FrameError::TooLarge { len: 5, max: 4 }
        );
    }

    #[test]
    fn reserved_flags_are_an_error() {
        let mut bytes = [0, 0, 0, 0, 0, 1, 0, 8, 0, 0, 0, 0];
        assert_eq!(
            FrameCodec::default().decode(&mut bytes).unwrap_err(),
            FrameError::ReservedFlags { flags: 8 }
        );
    }

    proptest! {
        #[test]
        fn any_split_round_trips(
            frames in proptest::collection::vec(
                (any::<u16>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..200)), 0..8),
            cut in 0usize..2000,
        ) {
            let mut codec = FrameCodec::new(200);
            let mut wire = Vec::new();
            for (id, rid, body) in &frames {
                codec.encode(OutFrame::new(*id, Flags::PUSH, *rid, body), &mut wire).unwrap();
            }
            let (a, b) = wire.split_at(cut.min(wire.len()));
            prop_assert_eq!(decode_all(&mut codec, &[a, b]).unwrap(), frames);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_all(&mut FrameCodec::new(64), &[&data]);
        }
    }
}
