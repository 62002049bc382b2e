//! The body of an error frame: an [`ErrorCode`] and a human-readable text ([`ErrorPayload`]).
//!
//! Pure parsing and emitting of the body bytes; it knows nothing of headers or streams.
//! `codec.rs` (for [`encode_error`](super::encode_error)) and clients reading error replies
//! call it.

use std::borrow::Cow;
use std::fmt;

use super::error::FrameError;

/// Size of the code field at the start of an error payload.
const CODE_LEN: usize = 2;

/// Why a request failed, as carried in the first two bytes of an error payload.
///
/// [`ErrorCode::from_u16`] accepts any value: codes this version does not know become
/// [`ErrorCode::Other`], so a newer peer cannot make an older one fail to decode, and
/// `from_u16(c).as_u16() == c` for every `c`.
///
/// ```
/// use herd_proto::frame::ErrorCode;
///
/// assert_eq!(ErrorCode::from_u16(4), ErrorCode::Busy);
/// assert_eq!(ErrorCode::Busy.as_u16(), 4);
/// assert_eq!(ErrorCode::from_u16(900), ErrorCode::Other(900));
/// assert_eq!(ErrorCode::Handler.to_string(), "HANDLER");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 1: no handler is registered for the request's message id.
    UnknownId,
    /// 2: a handler exists but the body could not be decoded into its message type.
    BadBody,
    /// 3: the handler ran and returned an error; the text says which.
    Handler,
    /// 4: the worker pool's queue was full; the request was not run and may be retried.
    Busy,
    /// 5: the frame (or the reply) exceeded the size limit.
    TooLarge,
    /// 6: the peer broke the framing rules (reserved flag bits, a truncated unit, ...); the
    /// connection is closed after this error is sent.
    Protocol,
    /// 7: the handler panicked or the server failed in a way that is not the client's fault.
    Internal,
    /// Any other value, kept as received. Build it through [`ErrorCode::from_u16`] so that
    /// known values map to their named variant.
    Other(u16),
}

impl ErrorCode {
    /// The code for a wire value; never fails.
    pub const fn from_u16(code: u16) -> ErrorCode {
        match code {
            1 => ErrorCode::UnknownId,
            2 => ErrorCode::BadBody,
            3 => ErrorCode::Handler,
            4 => ErrorCode::Busy,
            5 => ErrorCode::TooLarge,
            6 => ErrorCode::Protocol,
            7 => ErrorCode::Internal,
            other => ErrorCode::Other(other),
        }
    }

    /// The wire value.
    pub const fn as_u16(self) -> u16 {
        match self {
            ErrorCode::UnknownId => 1,
            ErrorCode::BadBody => 2,
            ErrorCode::Handler => 3,
            ErrorCode::Busy => 4,
            ErrorCode::TooLarge => 5,
            ErrorCode::Protocol => 6,
            ErrorCode::Internal => 7,
            ErrorCode::Other(code) => code,
        }
    }

    /// The protocol name (`"UNKNOWN_ID"`, ...), or `None` for [`ErrorCode::Other`].
    pub const fn name(self) -> Option<&'static str> {
        Some(match self {
            ErrorCode::UnknownId => "UNKNOWN_ID",
            ErrorCode::BadBody => "BAD_BODY",
            ErrorCode::Handler => "HANDLER",
            ErrorCode::Busy => "BUSY",
            ErrorCode::TooLarge => "TOO_LARGE",
            ErrorCode::Protocol => "PROTOCOL",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::Other(_) => return None,
        })
    }
}

impl From<u16> for ErrorCode {
    fn from(code: u16) -> ErrorCode {
        ErrorCode::from_u16(code)
    }
}

impl From<ErrorCode> for u16 {
    fn from(code: ErrorCode) -> u16 {
        code.as_u16()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "ERROR_{}", self.as_u16()),
        }
    }
}

/// An error frame's body: a big-endian u16 code, then UTF-8 text.
///
/// [`ErrorPayload::parse`] borrows the text when it is valid UTF-8 and replaces bad sequences
/// with U+FFFD otherwise (only then does it allocate).
///
/// ```
/// use herd_proto::frame::{ErrorCode, ErrorPayload};
///
/// let payload = ErrorPayload::parse(b"\x00\x03no such user").unwrap();
/// assert_eq!(payload.code, ErrorCode::Handler);
/// assert_eq!(payload.text, "no such user");
///
/// let mut buf = vec![0; payload.buffer_len()];
/// payload.emit(&mut buf);
/// assert_eq!(buf, b"\x00\x03no such user");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorPayload<'a> {
    /// What went wrong.
    pub code: ErrorCode,
    /// Details for humans; may be empty.
    pub text: Cow<'a, str>,
}

impl<'a> ErrorPayload<'a> {
    /// Bytes taken by the code before the text.
    pub const CODE_LEN: usize = CODE_LEN;

    /// A payload borrowing `text`.
    pub fn new(code: ErrorCode, text: &'a str) -> ErrorPayload<'a> {
        ErrorPayload {
            code,
            text: Cow::Borrowed(text),
        }
    }

    /// Parses an error frame's body.
    ///
    /// Errors with [`FrameError::Truncated`] if `body` is shorter than the two code bytes.
    /// Call it on the body of a frame whose flags have [`Flags::ERROR`](super::Flags::ERROR).
    pub fn parse(body: &'a [u8]) -> Result<ErrorPayload<'a>, FrameError> {
        let Some((code, text)) = body.split_first_chunk::<CODE_LEN>() else {
            return Err(FrameError::Truncated {
                needed: Self::CODE_LEN,
                got: body.len(),
            });
        };
        Ok(ErrorPayload {
            code: ErrorCode::from_u16(u16::from_be_bytes(*code)),
            text: String::from_utf8_lossy(text),
        })
    }

    /// Bytes [`ErrorPayload::emit`] writes: the code plus the text.
    pub fn buffer_len(&self) -> usize {
        Self::CODE_LEN + self.text.len()
    }

    /// Writes the payload into the first [`ErrorPayload::buffer_len`] bytes of `buf`.
    ///
    /// # Panics
    ///
    /// If `buf` is shorter than [`ErrorPayload::buffer_len`] (a caller bug).
    pub fn emit(&self, buf: &mut [u8]) {
        let (code, rest) = buf.split_at_mut(Self::CODE_LEN);
        code.copy_from_slice(&self.code.as_u16().to_be_bytes());
        rest[..self.text.len()].copy_from_slice(self.text.as_bytes());
    }

    /// Appends the payload to `dst`, for use inside [`encode_with`](super::encode_with).
    pub fn append_to(&self, dst: &mut Vec<u8>) {
        dst.extend_from_slice(&self.code.as_u16().to_be_bytes());
        dst.extend_from_slice(self.text.as_bytes());
    }

    /// The same payload owning its text, detached from the frame buffer.
    pub fn into_owned(self) -> ErrorPayload<'static> {
        ErrorPayload {
            code: self.code,
            text: Cow::Owned(self.text.into_owned()),
        }
    }
}
