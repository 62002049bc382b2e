//! The frame header on the wire: a checked byte view ([`FrameView`]), the validated header
//! representation ([`Header`]) and the flag set ([`Flags`]).
//!
//! This file only reads and writes header bytes at fixed offsets; it does not decide when a
//! frame is complete or too large (that is `codec.rs`). `codec.rs` and users who build or
//! inspect frames in place call it.

use core::fmt;
use core::ops::{BitOr, BitOrAssign};

use super::error::FrameError;
use super::HEADER_LEN;

/// Byte offsets of the header fields (see the table in the module docs).
mod field {
    pub type Field = core::ops::Range<usize>;

    pub const LENGTH: Field = 0..4;
    pub const MSG_ID: Field = 4..6;
    pub const FLAGS: Field = 6..8;
    pub const REQUEST_ID: Field = 8..12;
    pub const BODY: usize = 12;
}

// The header length constant and the field table must agree.
const _: () = assert!(field::BODY == HEADER_LEN);

fn read_u16(buf: &[u8], at: field::Field) -> u16 {
    let b = &buf[at];
    u16::from_be_bytes([b[0], b[1]])
}

fn read_u32(buf: &[u8], at: field::Field) -> u32 {
    let b = &buf[at];
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Reads the body length from the first four bytes, if there are four.
///
/// The decoder uses this to refuse an oversized frame before the rest of the header arrives.
pub(super) fn peek_len(buf: &[u8]) -> Option<u32> {
    (buf.len() >= field::LENGTH.end).then(|| read_u32(buf, field::LENGTH))
}

/// Reads the raw flag bits, if the buffer reaches them.
pub(super) fn peek_flags(buf: &[u8]) -> Option<u16> {
    (buf.len() >= field::FLAGS.end).then(|| read_u16(buf, field::FLAGS))
}

/// Total frame length (header plus body) for a body of `body_len` bytes, if it fits a `usize`.
pub(super) fn frame_len(body_len: u32) -> Option<usize> {
    usize::try_from(body_len).ok()?.checked_add(HEADER_LEN)
}

/// The flag bits of a frame header, with every reserved bit clear.
///
/// A hand-written bitflags-like newtype. Values of this type never carry reserved bits:
/// [`Flags::from_bits`] refuses them, so anything encoded from a `Flags` is valid on the wire.
///
/// ```
/// use herd_proto::frame::Flags;
///
/// let f = Flags::RESPONSE | Flags::ERROR;
/// assert_eq!(f.bits(), 0b011);
/// assert!(f.contains(Flags::ERROR));
/// assert!(!f.is_push());
/// assert_eq!(Flags::from_bits(0b1000), None); // bit 3 is reserved
/// assert_eq!(format!("{f:?}"), "Flags(RESPONSE | ERROR)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u16);

impl Flags {
    /// No flag set: a request from the client.
    pub const EMPTY: Flags = Flags(0);
    /// Bit 0: this frame is a reply; its request id echoes the request's.
    pub const RESPONSE: Flags = Flags(1 << 0);
    /// Bit 1: the body is an [`ErrorPayload`](super::ErrorPayload), not the message itself.
    pub const ERROR: Flags = Flags(1 << 1);
    /// Bit 2: the server sent this frame on its own initiative; it answers no request.
    pub const PUSH: Flags = Flags(1 << 2);
    /// Every defined bit; the complement is reserved and must be zero on the wire.
    pub const ALL: Flags = Flags(0b111);

    const NAMES: [(Flags, &'static str); 3] = [
        (Flags::RESPONSE, "RESPONSE"),
        (Flags::ERROR, "ERROR"),
        (Flags::PUSH, "PUSH"),
    ];

    /// The flags for `bits`, or `None` if any reserved bit (3..=15) is set.
    pub const fn from_bits(bits: u16) -> Option<Flags> {
        if bits & !Flags::ALL.0 == 0 {
            Some(Flags(bits))
        } else {
            None
        }
    }

    /// The flags for `bits` with every reserved bit dropped.
    pub const fn from_bits_truncate(bits: u16) -> Flags {
        Flags(bits & Flags::ALL.0)
    }

    /// The raw bits, as they go on the wire.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Whether no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every flag in `other` is also set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags set in either `self` or `other`.
    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// `self` without the flags in `other`.
    pub const fn difference(self, other: Flags) -> Flags {
        Flags(self.0 & !other.0)
    }

    /// Whether [`Flags::RESPONSE`] is set.
    pub const fn is_response(self) -> bool {
        self.contains(Flags::RESPONSE)
    }

    /// Whether [`Flags::ERROR`] is set.
    pub const fn is_error(self) -> bool {
        self.contains(Flags::ERROR)
    }

    /// Whether [`Flags::PUSH`] is set.
    pub const fn is_push(self) -> bool {
        self.contains(Flags::PUSH)
    }
}

impl BitOr for Flags {
    type Output = Flags;

    fn bitor(self, rhs: Flags) -> Flags {
        self.union(rhs)
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        *self = self.union(rhs);
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Flags(")?;
        if self.is_empty() {
            f.write_str("EMPTY")?;
        }
        let mut sep = "";
        for (flag, name) in Flags::NAMES {
            if self.contains(flag) {
                write!(f, "{sep}{name}")?;
                sep = " | ";
            }
        }
        f.write_str(")")
    }
}

/// A read/write view of a frame in a byte buffer, smoltcp style.
///
/// [`FrameView::new_checked`] makes sure the buffer holds the header and the whole body, after
/// which every accessor is in bounds. Accessors on a view made with
/// [`FrameView::new_unchecked`] panic if the buffer is too short. The buffer may run past the
/// frame (say, the next frame follows); [`FrameView::body`] stops at the body length.
///
/// Accessors return raw field values: [`FrameView::flags`] may carry reserved bits. Use
/// [`Header::parse`] to validate.
///
/// ```
/// use herd_proto::frame::{FrameView, HEADER_LEN};
///
/// let mut buf = [0u8; HEADER_LEN + 3];
/// let mut view = FrameView::new_unchecked(&mut buf[..]);
/// view.set_body_len(3);
/// view.set_msg_id(9);
/// view.set_request_id(77);
/// view.body_mut().copy_from_slice(b"abc");
///
/// let view = FrameView::new_checked(&buf[..]).unwrap();
/// assert_eq!((view.msg_id(), view.request_id(), view.body()), (9, 77, &b"abc"[..]));
/// assert!(FrameView::new_checked(&buf[..HEADER_LEN + 2]).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameView<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FrameView<T> {
    /// Wraps `buffer` without checking its length; accessors may then panic.
    pub const fn new_unchecked(buffer: T) -> FrameView<T> {
        FrameView { buffer }
    }

    /// Wraps `buffer` after [`FrameView::check_len`] succeeds.
    pub fn new_checked(buffer: T) -> Result<FrameView<T>, FrameError> {
        let view = FrameView::new_unchecked(buffer);
        view.check_len()?;
        Ok(view)
    }

    /// Checks that the buffer holds the header and the whole body the header announces.
    ///
    /// Returns [`FrameError::Truncated`] with the bytes needed otherwise. Call it before the
    /// accessors on a view made with [`FrameView::new_unchecked`].
    pub fn check_len(&self) -> Result<(), FrameError> {
        let got = self.buffer.as_ref().len();
        if got < HEADER_LEN {
            return Err(FrameError::Truncated {
                needed: HEADER_LEN,
                got,
            });
        }
        let needed = frame_len(self.body_len()).unwrap_or(usize::MAX);
        if got < needed {
            return Err(FrameError::Truncated { needed, got });
        }
        Ok(())
    }

    /// Unwraps the view, giving the buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The length field: body bytes after the header.
    pub fn body_len(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::LENGTH)
    }

    /// The message id field.
    pub fn msg_id(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::MSG_ID)
    }

    /// The raw flags field, reserved bits included.
    pub fn flags(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLAGS)
    }

    /// The request id field.
    pub fn request_id(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::REQUEST_ID)
    }

    /// The body: exactly [`FrameView::body_len`] bytes after the header.
    pub fn body(&self) -> &[u8] {
        let end = frame_len(self.body_len()).unwrap_or(usize::MAX);
        &self.buffer.as_ref()[field::BODY..end]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> FrameView<T> {
    fn write(&mut self, at: field::Field, bytes: &[u8]) {
        self.buffer.as_mut()[at].copy_from_slice(bytes);
    }

    /// Sets the length field (it does not resize anything).
    pub fn set_body_len(&mut self, len: u32) {
        self.write(field::LENGTH, &len.to_be_bytes());
    }

    /// Sets the message id field.
    pub fn set_msg_id(&mut self, msg_id: u16) {
        self.write(field::MSG_ID, &msg_id.to_be_bytes());
    }

    /// Sets the raw flags field; reserved bits are written as given.
    pub fn set_flags(&mut self, flags: u16) {
        self.write(field::FLAGS, &flags.to_be_bytes());
    }

    /// Sets the request id field.
    pub fn set_request_id(&mut self, request_id: u32) {
        self.write(field::REQUEST_ID, &request_id.to_be_bytes());
    }

    /// The body, writable: exactly [`FrameView::body_len`] bytes after the header.
    pub fn body_mut(&mut self) -> &mut [u8] {
        let end = frame_len(self.body_len()).unwrap_or(usize::MAX);
        &mut self.buffer.as_mut()[field::BODY..end]
    }
}

/// A validated frame header: reserved flag bits are known to be zero.
///
/// `len` is the body length. [`Header::parse`] reads one from the first [`HEADER_LEN`] bytes
/// of a slice; [`Header::emit`] writes one back.
///
/// ```
/// use herd_proto::frame::{Flags, Header, HEADER_LEN};
///
/// let header = Header { len: 5, msg_id: 0x0102, flags: Flags::RESPONSE, request_id: 0x0A0B0C0D };
/// let mut buf = [0u8; HEADER_LEN];
/// header.emit(&mut buf);
/// assert_eq!(buf, [0, 0, 0, 5, 1, 2, 0, 1, 0x0A, 0x0B, 0x0C, 0x0D]);
/// assert_eq!(Header::parse(&buf), Ok(header));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// Body length in bytes, header not included.
    pub len: u32,
    /// Message id; ids from [`FIRST_RESERVED_ID`](super::FIRST_RESERVED_ID) up are the
    /// protocol's own.
    pub msg_id: u16,
    /// Flag bits.
    pub flags: Flags,
    /// Request id, echoed in replies.
    pub request_id: u32,
}

impl Header {
    /// Parses the header in the first [`HEADER_LEN`] bytes of `bytes` (later bytes are ignored).
    ///
    /// Errors: [`FrameError::Truncated`] if `bytes` is shorter than the header,
    /// [`FrameError::ReservedFlags`] if a reserved flag bit is set. It does not check the
    /// length against a maximum; [`FrameDecoder`](super::FrameDecoder) does.
    pub fn parse(bytes: &[u8]) -> Result<Header, FrameError> {
        if bytes.len() < HEADER_LEN {
            return Err(FrameError::Truncated {
                needed: HEADER_LEN,
                got: bytes.len(),
            });
        }
        let view = FrameView::new_unchecked(bytes);
        let flags = Flags::from_bits(view.flags()).ok_or(FrameError::ReservedFlags {
            flags: view.flags(),
        })?;
        Ok(Header {
            len: view.body_len(),
            msg_id: view.msg_id(),
            flags,
            request_id: view.request_id(),
        })
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `buf`.
    ///
    /// # Panics
    ///
    /// If `buf` is shorter than [`HEADER_LEN`] (a caller bug; size it with
    /// [`Header::buffer_len`]).
    pub fn emit(&self, buf: &mut [u8]) {
        let mut view = FrameView::new_unchecked(buf);
        view.set_body_len(self.len);
        view.set_msg_id(self.msg_id);
        view.set_flags(self.flags.bits());
        view.set_request_id(self.request_id);
    }

    /// Bytes [`Header::emit`] writes: always [`HEADER_LEN`].
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Bytes the whole frame occupies on the wire: header plus body.
    ///
    /// Saturates at `usize::MAX` on targets where that is below `u32::MAX + 12`.
    pub fn frame_len(&self) -> usize {
        frame_len(self.len).unwrap_or(usize::MAX)
    }
}
