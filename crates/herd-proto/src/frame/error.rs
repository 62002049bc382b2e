//! [`FrameError`]: everything that can go wrong decoding or encoding a frame.
//!
//! Plain data with a hand-written `Display`; it carries no I/O error and allocates nothing.
//! Every fallible function of the frame module returns it.

use core::fmt;

use super::payload::ErrorCode;

/// Why a frame could not be decoded or encoded.
///
/// A decode error means the stream is unusable (there is no way to find the next frame
/// boundary): the caller should send an error frame with [`FrameError::code`] if it wants,
/// then close the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameError {
    /// The buffer ends before the header or the body does (views, [`Header::parse`] and
    /// [`ErrorPayload::parse`]; the streaming decoder answers `Ok((0, None))` instead).
    ///
    /// [`Header::parse`]: super::Header::parse
    /// [`ErrorPayload::parse`]: super::ErrorPayload::parse
    Truncated {
        /// Bytes the complete unit needs.
        needed: usize,
        /// Bytes that were given.
        got: usize,
    },
    /// The header announces a body longer than the decoder's `max_frame`.
    TooLarge {
        /// The length field.
        len: u32,
        /// The limit it exceeds.
        max: u32,
    },
    /// A reserved flag bit (3..=15) is set.
    ReservedFlags {
        /// The raw flags field.
        flags: u16,
    },
    /// An encoder was handed a body longer than the 32-bit length field can express.
    BodyTooLong {
        /// The body length that did not fit.
        len: usize,
    },
}

impl FrameError {
    /// The [`ErrorCode`] to report this error to the peer with.
    ///
    /// ```
    /// use herd_proto::frame::{ErrorCode, FrameError};
    ///
    /// assert_eq!(FrameError::TooLarge { len: 9, max: 8 }.code(), ErrorCode::TooLarge);
    /// assert_eq!(FrameError::ReservedFlags { flags: 8 }.code(), ErrorCode::Protocol);
    /// ```
    pub const fn code(&self) -> ErrorCode {
        match self {
            FrameError::TooLarge { .. } | FrameError::BodyTooLong { .. } => ErrorCode::TooLarge,
            FrameError::Truncated { .. } | FrameError::ReservedFlags { .. } => ErrorCode::Protocol,
        }
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameError::Truncated { needed, got } => {
                write!(f, "truncated frame: need {needed} bytes, got {got}")
            }
            FrameError::TooLarge { len, max } => {
                write!(f, "frame body of {len} bytes exceeds the limit of {max}")
            }
            FrameError::ReservedFlags { flags } => {
                write!(f, "reserved flag bits set in flags {flags:#06x}")
            }
            FrameError::BodyTooLong { len } => {
                write!(
                    f,
                    "body of {len} bytes does not fit the 32-bit length field"
                )
            }
        }
    }
}

impl std::error::Error for FrameError {}
