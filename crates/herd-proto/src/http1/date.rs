//! A cached IMF-fixdate for the `Date` response header.
//!
//! The event loop reads its clock once per iteration and calls [`DateCache::update`] with the
//! Unix time; the string is reformatted only when the second changes, so responses copy 29 bytes
//! instead of formatting a date each. It never reads a clock itself.

use std::time::{Duration, UNIX_EPOCH};

/// Length of an IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`.
const DATE_LEN: usize = 29;

/// Last second httpdate can format (9999-12-31T23:59:59Z); later times are clamped to it.
const MAX_SECS: u64 = 253_402_300_799;

/// The `Date` header value for the current second, formatted once per second.
///
/// ```
/// use herd_proto::http1::DateCache;
///
/// let mut date = DateCache::new();
/// date.update(784_111_777);
/// assert_eq!(date.header_value(), b"Sun, 06 Nov 1994 08:49:37 GMT");
/// ```
#[derive(Debug, Clone)]
pub struct DateCache {
    secs: Option<u64>,
    text: [u8; DATE_LEN],
}

impl Default for DateCache {
    fn default() -> Self {
        DateCache::new()
    }
}

impl DateCache {
    /// A cache holding the Unix epoch until the first [`update`](Self::update).
    pub fn new() -> Self {
        DateCache {
            secs: None,
            text: *b"Thu, 01 Jan 1970 00:00:00 GMT",
        }
    }

    /// Sets the current time in seconds since the Unix epoch. Call it once per loop iteration
    /// with the loop's clock; it reformats only when the second differs from the last call.
    pub fn update(&mut self, unix_secs: u64) {
        let unix_secs = unix_secs.min(MAX_SECS);
        if self.secs == Some(unix_secs) {
            return;
        }
        self.secs = Some(unix_secs);
        let date = httpdate::HttpDate::from(UNIX_EPOCH + Duration::from_secs(unix_secs));
        let mut cursor = std::io::Cursor::new(&mut self.text[..]);
        // The buffer holds exactly one IMF-fixdate, which is what HttpDate displays.
        let _ = std::io::Write::write_fmt(&mut cursor, format_args!("{date}"));
    }

    /// The `Date` header value (29 bytes, without the name or CRLF).
    pub fn header_value(&self) -> &[u8] {
        &self.text
    }
}
