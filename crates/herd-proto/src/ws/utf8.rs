//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! A text message may be split into fragments, and a fragment into reads, at any byte — even in
//! the middle of a code point. [`Utf8Validator`] checks each piece as it arrives, carrying at
//! most three bytes of an unfinished code point to the next piece, so an invalid sequence is
//! reported as soon as its first bad byte is seen (RFC 6455 section 8.1, "fail fast"), not when
//! the message ends. It does no allocation and keeps no copy of the text. It relies on
//! `std::str::from_utf8`, whose [`Utf8Error::error_len`](std::str::Utf8Error::error_len)
//! returning `None` means "incomplete so far, may continue". Used by the
//! [`Decoder`](super::Decoder).

use std::fmt;
use std::str;

/// The bytes fed to a [`Utf8Validator`] are not valid UTF-8 (or end in the middle of a code
/// point when [`finish`](Utf8Validator::finish) is called).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

impl fmt::Display for InvalidUtf8 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for InvalidUtf8 {}

/// Validates a UTF-8 stream fed in arbitrary pieces.
///
/// ```
/// use herd_proto::ws::Utf8Validator;
///
/// let euro = "€".as_bytes(); // E2 82 AC
/// let mut v = Utf8Validator::new();
/// assert!(v.feed(&euro[..1]).is_ok()); // an unfinished code point is fine for now
/// assert!(v.feed(&euro[1..]).is_ok());
/// assert!(v.finish().is_ok());
///
/// let mut v = Utf8Validator::new();
/// assert!(v.feed(&[0xE2, 0x28]).is_err()); // caught at the bad byte, before the end
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Utf8Validator {
    /// The start of an unfinished code point (at most 3 bytes are ever kept).
    partial: [u8; 4],
    /// How many bytes of `partial` are in use.
    len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Utf8Validator {
            partial: [0; 4],
            len: 0,
        }
    }

    /// Checks the next piece of the message.
    ///
    /// Call it with every piece in order. Returns an error as soon as the bytes seen so far
    /// cannot be the start of valid UTF-8; a code point left unfinished at the end of `bytes`
    /// is remembered and completed by the next call. After an error the validator's state is
    /// unspecified: [`reset`](Self::reset) it before reuse.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), InvalidUtf8> {
        let mut rest = bytes;
        if self.len > 0 {
            let have = usize::from(self.len);
            let width = sequence_width(self.partial[0]);
            let take = (width - have).min(rest.len());
            self.partial[have..have + take].copy_from_slice(&rest[..take]);
            let have = have + take;
            rest = &rest[take..];
            match str::from_utf8(&self.partial[..have]) {
                Ok(_) => self.len = 0,
                Err(e) if e.error_len().is_some() => return Err(InvalidUtf8),
                Err(_) => {
                    // Still unfinished: `rest` is empty, since we took all we had.
                    self.len = have as u8;
                    return Ok(());
                }
            }
        }
        match str::from_utf8(rest) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(InvalidUtf8),
            Err(e) => {
                let tail = &rest[e.valid_up_to()..];
                // An incomplete sequence is always shorter than 4 bytes.
                self.partial[..tail.len()].copy_from_slice(tail);
                self.len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// Ends the message: an error if it stopped in the middle of a code point.
    ///
    /// Call it after the last piece of the message has been fed. The validator is reset and
    /// ready for the next message either way.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.len == 0;
        self.reset();
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }

    /// Forgets any unfinished code point, ready for a new message.
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Whether everything fed so far ends on a code point boundary.
    pub fn is_complete(&self) -> bool {
        self.len == 0
    }
}

/// The length of the UTF-8 sequence that starts with `lead`, for a lead byte that
/// `from_utf8` reported as the valid start of an unfinished sequence.
fn sequence_width(lead: u8) -> usize {
    match lead {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn feed_split(bytes: &[u8], cuts: &[usize]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &cut in cuts {
            let cut = cut.clamp(start, bytes.len());
            v.feed(&bytes[start..cut])?;
            start = cut;
        }
        v.feed(&bytes[start..])?;
        v.finish()
    }

    #[test]
    fn every_split_of_valid_text_is_accepted() {
        // Autobahn 6.2.x: valid UTF-8 split at every byte.
        let text = "Hello-µ@ßöäüàá-UTF-8!! κόσμε 𝄞 \u{10FFFF}".as_bytes();
        for a in 0..=text.len() {
            for b in a..=text.len() {
                assert_eq!(feed_split(text, &[a, b]), Ok(()), "split at {a},{b}");
            }
        }
    }

    #[test]
    fn fails_fast_on_the_bad_byte() {
        // Autobahn 6.3.x / 6.4.x: the error is reported by the piece that contains the bad
        // byte, before the message ends.
        let mut v = Utf8Validator::new();
        assert!(v.feed("κόσμε".as_bytes()).is_ok());
        assert!(v.feed(&[0xF4]).is_ok());
        assert_eq!(v.feed(&[0x90]), Err(InvalidUtf8)); // U+110000 and above
    }

    #[test]
    fn rejects_surrogates_and_overlongs_byte_by_byte() {
        for bad in [
            &[0xED, 0xA0, 0x80][..],
            &[0xC0, 0x80],
            &[0xE0, 0x80, 0x80],
            &[0xFF],
        ] {
            let mut v = Utf8Validator::new();
            let mut failed = false;
            for b in bad {
                if v.feed(std::slice::from_ref(b)).is_err() {
                    failed = true;
                    break;
                }
            }
            assert!(failed, "{bad:02x?} accepted");
        }
    }

    #[test]
    fn truncated_at_the_end_fails_finish() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(&[b'a', 0xE2, 0x82]).is_ok());
        assert!(!v.is_complete());
        assert_eq!(v.finish(), Err(InvalidUtf8));
        // finish resets, ready for the next message.
        assert!(v.is_complete());
        assert!(v.feed(b"ok").is_ok());
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn unfinished_code_point_fed_one_byte_at_a_time() {
        let mut v = Utf8Validator::new();
        for b in "𝄞".as_bytes() {
            assert!(v.feed(std::slice::from_ref(b)).is_ok());
        }
        assert!(v.is_complete());
    }

    proptest! {
        #[test]
        fn agrees_with_from_utf8(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            cuts in proptest::collection::vec(0usize..64, 0..6),
        ) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let expected = std::str::from_utf8(&bytes).is_ok();
            prop_assert_eq!(feed_split(&bytes, &cuts).is_ok(), expected);
        }

        #[test]
        fn valid_strings_pass_any_split(
            text in "\\PC{0,40}",
            cuts in proptest::collection::vec(0usize..200, 0..6),
        ) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            prop_assert_eq!(feed_split(text.as_bytes(), &cuts), Ok(()));
        }
    }
}
