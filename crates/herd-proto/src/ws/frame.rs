//! The WebSocket frame header (RFC 6455 section 5.2): a checked wire view, a validated
//! representation, and the frame encoders.
//!
//! [`Frame`] is a view over received bytes that only exists once the whole header is there
//! ([`Frame::new_checked`]); its accessors read raw fields. [`FrameHeader::parse`] turns it into
//! a validated [`FrameHeader`]: known opcode, minimal length encoding, a 64-bit length with its
//! top bit clear, control frames final and at most 125 bytes. Rules that depend on the
//! connection (masking per role, RSV bits per negotiated extensions, fragmentation order, size
//! limits) are the [`Decoder`](super::Decoder)'s, not this file's. Nothing here allocates
//! except the encoders, which append to the caller's `Vec`. Called by the decoder and by
//! whoever writes frames (the loop, tests).

use super::{apply_mask, WsError};

/// Byte offsets and bit masks of the header fields.
mod field {
    /// FIN, RSV1-3 and the opcode.
    pub const FLAGS: usize = 0;
    /// MASK and the 7-bit payload length.
    pub const LEN: usize = 1;
    /// Where the 16- or 64-bit extended payload length starts, if any.
    pub const EXT_LEN: usize = 2;

    pub const FIN: u8 = 0x80;
    pub const RSV: u8 = 0x70;
    pub const RSV_SHIFT: u32 = 4;
    pub const OPCODE: u8 = 0x0F;
    pub const MASK: u8 = 0x80;
    pub const LEN7: u8 = 0x7F;
    /// A 7-bit length of 126: the real length is the next 2 bytes.
    pub const LEN_16: u8 = 126;
    /// A 7-bit length of 127: the real length is the next 8 bytes.
    pub const LEN_64: u8 = 127;
}

/// The longest possible frame header: 2 + 8 (length) + 4 (masking key) bytes.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload a control frame (Close, Ping, Pong) may carry.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame opcode (RFC 6455 section 5.2). The reserved values 3-7 and 0xB-0xF have no variant:
/// [`Opcode::from_u8`] returns `None` for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Opcode {
    /// 0x0: continues a fragmented Text or Binary message.
    Continuation = 0x0,
    /// 0x1: the first (or only) frame of a UTF-8 text message.
    Text = 0x1,
    /// 0x2: the first (or only) frame of a binary message.
    Binary = 0x2,
    /// 0x8: starts or answers the close handshake.
    Close = 0x8,
    /// 0x9: asks the peer for a Pong with the same payload.
    Ping = 0x9,
    /// 0xA: answers a Ping (or is an unsolicited heartbeat).
    Pong = 0xA,
}

impl Opcode {
    /// The opcode for the low 4 bits of `bits`, or `None` for a reserved value.
    pub fn from_u8(bits: u8) -> Option<Opcode> {
        match bits & field::OPCODE {
            0x0 => Some(Opcode::Continuation),
            0x1 => Some(Opcode::Text),
            0x2 => Some(Opcode::Binary),
            0x8 => Some(Opcode::Close),
            0x9 => Some(Opcode::Ping),
            0xA => Some(Opcode::Pong),
            _ => None,
        }
    }

    /// Whether this is a control opcode (Close, Ping, Pong): such frames must be final and
    /// carry at most 125 bytes, and may arrive between the fragments of a data message.
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A read-only view of a received frame header whose bytes are all present.
///
/// The accessors read raw, unvalidated fields; use [`FrameHeader::parse`] to check them.
///
/// ```
/// use herd_proto::ws::frame::Frame;
///
/// let bytes = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f]; // header of a masked "Hello"
/// let frame = Frame::new_checked(&bytes[..]).expect("the header is complete");
/// assert!(frame.fin());
/// assert_eq!(frame.opcode_bits(), 1);
/// assert_eq!(frame.header_len(), 6);
/// assert_eq!(frame.payload_len(), 5);
/// assert_eq!(frame.masking_key(), Some([0x37, 0xfa, 0x21, 0x3d]));
/// assert!(Frame::new_checked(&bytes[..5]).is_none()); // the masking key is cut short
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` if it holds a whole frame header (the payload may be missing); `None`
    /// means more bytes are needed.
    pub fn new_checked(buffer: T) -> Option<Frame<T>> {
        let frame = Frame { buffer };
        if frame.check_len() {
            Some(frame)
        } else {
            None
        }
    }

    /// Whether the buffer holds the whole header, including extended length and masking key.
    pub fn check_len(&self) -> bool {
        let data = self.buffer.as_ref();
        data.len() > field::LEN && data.len() >= header_len_from(data[field::LEN])
    }

    /// Consumes the view, returning the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn data(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The FIN bit: this is the last frame of a message.
    pub fn fin(&self) -> bool {
        self.data()[field::FLAGS] & field::FIN != 0
    }

    /// RSV1, RSV2 and RSV3 as a 3-bit number (RSV1 is `0b100`).
    pub fn rsv(&self) -> u8 {
        (self.data()[field::FLAGS] & field::RSV) >> field::RSV_SHIFT
    }

    /// The raw 4-bit opcode.
    pub fn opcode_bits(&self) -> u8 {
        self.data()[field::FLAGS] & field::OPCODE
    }

    /// The MASK bit: a masking key follows the length.
    pub fn masked(&self) -> bool {
        self.data()[field::LEN] & field::MASK != 0
    }

    /// The 7-bit length field (126 and 127 announce an extended length).
    fn len7(&self) -> u8 {
        self.data()[field::LEN] & field::LEN7
    }

    /// The header length in bytes: 2, plus 2 or 8 for an extended length, plus 4 for a key.
    pub fn header_len(&self) -> usize {
        header_len_from(self.data()[field::LEN])
    }

    /// The payload length as written on the wire (not yet checked for minimal encoding or the
    /// 64-bit top bit).
    pub fn payload_len(&self) -> u64 {
        let data = self.data();
        match self.len7() {
            field::LEN_16 => u64::from(u16::from_be_bytes([
                data[field::EXT_LEN],
                data[field::EXT_LEN + 1],
            ])),
            field::LEN_64 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&data[field::EXT_LEN..field::EXT_LEN + 8]);
                u64::from_be_bytes(be)
            }
            short => u64::from(short),
        }
    }

    /// The masking key, if the MASK bit is set.
    pub fn masking_key(&self) -> Option<[u8; 4]> {
        if !self.masked() {
            return None;
        }
        let at = self.header_len() - 4;
        let data = self.data();
        Some([data[at], data[at + 1], data[at + 2], data[at + 3]])
    }
}

/// The header length implied by the second header byte.
fn header_len_from(len_byte: u8) -> usize {
    let ext = match len_byte & field::LEN7 {
        field::LEN_16 => 2,
        field::LEN_64 => 8,
        _ => 0,
    };
    let key = if len_byte & field::MASK != 0 { 4 } else { 0 };
    2 + ext + key
}

/// A validated frame header.
///
/// Produced by [`FrameHeader::parse`] (or [`parse_header`]) from received bytes, or built by
/// hand and written with [`emit`](Self::emit). `buffer_len()` is both the number of bytes
/// `parse` consumed and the number `emit` writes: only the minimal length encoding is accepted,
/// so the two always agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// This is the last frame of its message.
    pub fin: bool,
    /// RSV1-3 as a 3-bit number (RSV1 is `0b100`); must be 0 without a negotiated extension.
    pub rsv: u8,
    /// What the frame carries.
    pub opcode: Opcode,
    /// The masking key: present on every client-to-server frame, absent on server frames.
    pub mask: Option<[u8; 4]>,
    /// The payload length in bytes.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Validates a complete header view.
    ///
    /// Errors (all 1002): a reserved opcode, a 64-bit length with its top bit set, a length not
    /// in its shortest encoding (RFC 6455 section 5.2 says "the minimal number of bytes MUST be
    /// used"), a control frame that is not final or carries more than 125 bytes.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<FrameHeader, WsError> {
        let opcode =
            Opcode::from_u8(frame.opcode_bits()).ok_or(WsError::protocol("reserved opcode"))?;
        let payload_len = frame.payload_len();
        let minimal = match frame.len7() {
            field::LEN_16 => payload_len > 125,
            field::LEN_64 => payload_len > 0xFFFF,
            _ => true,
        };
        if payload_len >> 63 != 0 {
            return Err(WsError::protocol(
                "64-bit payload length with the top bit set",
            ));
        }
        if !minimal {
            return Err(WsError::protocol("payload length not minimally encoded"));
        }
        if opcode.is_control() {
            if !frame.fin() {
                return Err(WsError::protocol("fragmented control frame"));
            }
            if payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(WsError::protocol("control frame payload over 125 bytes"));
            }
        }
        Ok(FrameHeader {
            fin: frame.fin(),
            rsv: frame.rsv(),
            opcode,
            mask: frame.masking_key(),
            payload_len,
        })
    }

    /// The header's length on the wire.
    pub fn buffer_len(&self) -> usize {
        let ext = match self.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header into the front of `buf`, which must be at least
    /// [`buffer_len`](Self::buffer_len) bytes long (shorter is a caller bug and panics).
    ///
    /// `payload_len` should be below 2^63 and `rsv` at most 7; larger values are truncated to
    /// what the wire can carry.
    pub fn emit(&self, buf: &mut [u8]) {
        let mut flags = (self.opcode as u8) | ((self.rsv & 0x7) << field::RSV_SHIFT);
        if self.fin {
            flags |= field::FIN;
        }
        buf[field::FLAGS] = flags;
        let mask_bit = if self.mask.is_some() { field::MASK } else { 0 };
        let mut at = field::EXT_LEN;
        match self.payload_len {
            len @ 0..=125 => buf[field::LEN] = mask_bit | len as u8,
            len @ 126..=0xFFFF => {
                buf[field::LEN] = mask_bit | field::LEN_16;
                buf[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
                at += 2;
            }
            len => {
                buf[field::LEN] = mask_bit | field::LEN_64;
                let len = len & (u64::MAX >> 1);
                buf[at..at + 8].copy_from_slice(&len.to_be_bytes());
                at += 8;
            }
        }
        if let Some(key) = self.mask {
            buf[at..at + 4].copy_from_slice(&key);
        }
    }

    /// Appends the header to `dst`. Use it to write a header in front of a payload that is
    /// sent separately (for example one broadcast payload shared by many connections).
    pub fn encode(&self, dst: &mut Vec<u8>) {
        let mut buf = [0u8; MAX_HEADER_LEN];
        let len = self.buffer_len();
        self.emit(&mut buf[..len]);
        dst.extend_from_slice(&buf[..len]);
    }
}

/// Parses and validates the frame header at the start of `src`.
///
/// Returns `Ok(None)` if `src` does not yet hold the whole header (call again with more
/// bytes), or the header, whose [`buffer_len`](FrameHeader::buffer_len) is the number of
/// header bytes; the payload follows them. Errors are those of [`FrameHeader::parse`].
///
/// ```
/// use herd_proto::ws::{parse_header, Opcode};
///
/// let header = parse_header(&[0x89, 0x00]).unwrap().unwrap(); // an empty, unmasked Ping
/// assert_eq!(header.opcode, Opcode::Ping);
/// assert_eq!(header.buffer_len(), 2);
/// assert_eq!(parse_header(&[0x82]).unwrap(), None);
/// assert_eq!(parse_header(&[0x83, 0x00]).unwrap_err().close_code, 1002); // reserved opcode
/// ```
pub fn parse_header(src: &[u8]) -> Result<Option<FrameHeader>, WsError> {
    match Frame::new_checked(src) {
        Some(frame) => FrameHeader::parse(&frame).map(Some),
        None => Ok(None),
    }
}

/// Appends a whole frame to `dst`: header, then `payload` (masked with `mask` if given).
///
/// Servers pass `mask: None`; clients (tests) must pass a fresh random key. The
/// caller keeps control frames final and at most 125 bytes long.
///
/// ```
/// use herd_proto::ws::{encode_frame, Opcode};
///
/// let mut out = Vec::new();
/// encode_frame(&mut out, true, Opcode::Text, b"Hello", None);
/// assert_eq!(out, [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
///
/// out.clear();
/// encode_frame(&mut out, true, Opcode::Text, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d]));
/// assert_eq!(out, [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]);
/// ```
pub fn encode_frame(
    dst: &mut Vec<u8>,
    fin: bool,
    opcode: Opcode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    encode_frame_rsv(dst, fin, 0, opcode, payload, mask);
}

/// [`encode_frame`] with RSV bits `rsv` (0 to 7; `0b100` is RSV1, which marks the first frame
/// of a permessage-deflate compressed message).
pub fn encode_frame_rsv(
    dst: &mut Vec<u8>,
    fin: bool,
    rsv: u8,
    opcode: Opcode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let header = FrameHeader {
        fin,
        rsv,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    dst.reserve(header.buffer_len() + payload.len());
    header.encode(dst);
    let start = dst.len();
    dst.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut dst[start..], key, 0);
    }
}

/// Appends an unmasked (server) Close frame with `code` and `reason` to `dst`.
///
/// `reason` is cut to the longest prefix of at most 123 bytes that ends on a character
/// boundary, so the frame stays a valid control frame. Do not send 1005, 1006 or 1015: those
/// codes only describe a close locally and must never appear on the wire.
///
/// ```
/// use herd_proto::ws::encode_close;
///
/// let mut out = Vec::new();
/// encode_close(&mut out, 1000, "bye");
/// assert_eq!(out, [0x88, 0x05, 0x03, 0xE8, b'b', b'y', b'e']);
/// ```
pub fn encode_close(dst: &mut Vec<u8>, code: u16, reason: &str) {
    encode_close_with_mask(dst, code, reason, None);
}

/// [`encode_close`] with an optional masking key, for client-role writers.
pub fn encode_close_with_mask(dst: &mut Vec<u8>, code: u16, reason: &str, mask: Option<[u8; 4]>) {
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
    encode_frame(dst, true, Opcode::Close, &payload[..2 + cut], mask);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(bytes: &[u8]) -> Result<Option<FrameHeader>, WsError> {
        parse_header(bytes)
    }

    #[test]
    fn lengths_7_16_64_bit() {
        // Autobahn 1.1.1-1.1.6: payload lengths at the encoding boundaries.
        for len in [0u64, 125, 126, 127, 128, 65535, 65536, 1 << 32] {
            let h = FrameHeader {
                fin: true,
                rsv: 0,
                opcode: Opcode::Binary,
                mask: Some([1, 2, 3, 4]),
                payload_len: len,
            };
            let mut wire = Vec::new();
            h.encode(&mut wire);
            assert_eq!(wire.len(), h.buffer_len());
            assert_eq!(header(&wire), Ok(Some(h)), "len {len}");
            // Every strict prefix is "need more", never an error.
            for cut in 0..wire.len() {
                assert_eq!(header(&wire[..cut]), Ok(None), "len {len} cut {cut}");
            }
        }
    }

    #[test]
    fn top_bit_of_64_bit_length_is_an_error() {
        let mut wire = vec![0x82, 0x7F];
        wire.extend_from_slice(&(1u64 << 63 | 70_000).to_be_bytes());
        let err = header(&wire).unwrap_err();
        assert_eq!(err.close_code, 1002);
    }

    #[test]
    fn non_minimal_lengths_are_errors() {
        // 5 written as a 16-bit length, 200 written as a 64-bit length.
        assert_eq!(
            header(&[0x82, 0x7E, 0x00, 0x05]).unwrap_err().close_code,
            1002
        );
        let mut wire = vec![0x82, 0x7F];
        wire.extend_from_slice(&200u64.to_be_bytes());
        assert_eq!(header(&wire).unwrap_err().close_code, 1002);
    }

    #[test]
    fn reserved_opcodes_are_errors() {
        // Autobahn 4.1.x (3-7) and 4.2.x (0xB-0xF).
        for op in (3..=7).chain(0xB..=0xF) {
            let err = header(&[0x80 | op, 0x00]).unwrap_err();
            assert_eq!(
                (err.close_code, err.reason),
                (1002, "reserved opcode"),
                "opcode {op}"
            );
        }
    }

    #[test]
    fn control_frame_rules() {
        // Autobahn 2.5: a Ping with 126 bytes; 5.1/5.2: a fragmented Ping / Pong.
        assert_eq!(
            header(&[0x89, 0x7E, 0x00, 0x7E]).unwrap_err().close_code,
            1002
        );
        assert_eq!(header(&[0x09, 0x00]).unwrap_err().close_code, 1002);
        assert_eq!(header(&[0x0A, 0x00]).unwrap_err().close_code, 1002);
        // 125 bytes is the limit and is fine.
        assert!(header(&[0x89, 0x7D]).unwrap().is_some());
    }

    #[test]
    fn rsv_bits_are_reported_not_judged() {
        let h = header(&[0xF1, 0x00]).unwrap().unwrap();
        assert_eq!(h.rsv, 0b111);
        let h = header(&[0xC1, 0x00]).unwrap().unwrap();
        assert_eq!(h.rsv, 0b100);
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let mut out = Vec::new();
        encode_close(&mut out, 1001, &reason);
        let h = header(&out).unwrap().unwrap();
        assert!(h.payload_len <= 125);
        let body = &out[h.buffer_len()..];
        assert_eq!(&body[..2], &1001u16.to_be_bytes());
        assert!(std::str::from_utf8(&body[2..]).is_ok());
        assert_eq!(body.len(), 2 + 122); // 61 two-byte characters
    }

    #[test]
    fn opcode_classes() {
        assert!(Opcode::Close.is_control() && Opcode::Ping.is_control());
        assert!(Opcode::Pong.is_control());
        assert!(!Opcode::Text.is_control() && !Opcode::Continuation.is_control());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            if let Ok(Some(h)) = header(&bytes) {
                prop_assert!(h.buffer_len() <= bytes.len());
            }
        }

        #[test]
        fn encode_parse_round_trip(
            fin in any::<bool>(),
            op in prop_oneof![Just(Opcode::Continuation), Just(Opcode::Text), Just(Opcode::Binary)],
            rsv in 0u8..8,
            mask in any::<Option<[u8; 4]>>(),
            payload_len in prop_oneof![0u64..300, 65_000u64..70_000, 0u64..(1 << 63)],
        ) {
            let h = FrameHeader { fin, rsv, opcode: op, mask, payload_len };
            let mut wire = Vec::new();
            h.encode(&mut wire);
            prop_assert_eq!(wire.len(), h.buffer_len());
            prop_assert_eq!(header(&wire), Ok(Some(h)));
        }

        #[test]
        fn encode_frame_unmasks_to_payload(
            payload in proptest::collection::vec(any::<u8>(), 0..600),
            key in any::<[u8; 4]>(),
        ) {
            let mut wire = Vec::new();
            encode_frame(&mut wire, true, Opcode::Binary, &payload, Some(key));
            let h = header(&wire).unwrap().unwrap();
            prop_assert_eq!(h.mask, Some(key));
            let body = &mut wire[h.buffer_len()..];
            apply_mask(body, key, 0);
            prop_assert_eq!(&*body, &payload[..]);
        }
    }
}
