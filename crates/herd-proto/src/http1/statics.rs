//! Pure decisions of a static-file server: safe path resolution, MIME types, ETags,
//! conditional requests and byte ranges.
//!
//! The server's static-file handler calls these with what it got from the request and from
//! `stat`; they never open a file, read a clock or touch the file system. [`resolve_path`] is the
//! security boundary: what it returns can be joined to a document root without escaping it.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use http::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE};
use http::HeaderMap;
use percent_encoding::percent_decode_str;

use super::request::parse_decimal;

/// A URL path resolved to safe, decoded segments below a document root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelPath {
    segments: Vec<String>,
    dir: bool,
}

impl RelPath {
    /// The decoded segments; none is empty, `.`, `..`, or holds `/`, `\` or a control byte.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Whether the URL named a directory (it ended in `/`, or is the root): serve its index.
    pub fn is_dir(&self) -> bool {
        self.dir
    }

    /// `root` followed by the segments.
    ///
    /// ```
    /// use herd_proto::http1::statics::resolve_path;
    /// use std::path::Path;
    ///
    /// let rel = resolve_path("/css//site%20main.css").unwrap();
    /// assert_eq!(rel.join_to(Path::new("/srv/www")), Path::new("/srv/www/css/site main.css"));
    /// ```
    pub fn join_to(&self, root: &Path) -> PathBuf {
        let mut path = root.to_path_buf();
        path.extend(&self.segments);
        path
    }
}

/// Why [`resolve_path`] refused a URL path. Answer 400 ([`PathError::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathError {
    /// The path does not start with `/`.
    NotAbsolute,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// The decoded path is not UTF-8.
    NotUtf8,
    /// A `..` segment, written plainly or percent-encoded.
    DotDot,
    /// A `%2F` (encoded slash) inside a segment.
    EncodedSlash,
    /// A backslash, plain or `%5C`.
    Backslash,
    /// A NUL or other control byte, plain or encoded.
    ControlByte,
}

impl PathError {
    /// The status to answer with: 400.
    pub fn status(&self) -> u16 {
        400
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "path does not start with /",
            PathError::BadEscape => "invalid percent escape",
            PathError::NotUtf8 => "path is not UTF-8",
            PathError::DotDot => "path has a .. segment",
            PathError::EncodedSlash => "path has an encoded slash",
            PathError::Backslash => "path has a backslash",
            PathError::ControlByte => "path has a control byte",
        })
    }
}

impl std::error::Error for PathError {}

/// Resolves a URL path (e.g. `uri.path()`; anything from `?` or `#` on is ignored) into segments
/// safe to join to a document root.
///
/// Each segment is percent-decoded on its own. Empty and `.` segments are dropped; `..` (also
/// `%2e%2e`) is refused rather than clamped, as are encoded slashes, backslashes, NUL and other
/// control bytes, bad escapes and non-UTF-8 results. Dot-files are allowed; refuse them in the
/// caller if wanted.
///
/// ```
/// use herd_proto::http1::statics::{resolve_path, PathError};
///
/// let rel = resolve_path("/a/./b//c/").unwrap();
/// assert_eq!(rel.segments(), ["a", "b", "c"]);
/// assert!(rel.is_dir());
/// assert_eq!(resolve_path("/%2e%2e/etc/passwd"), Err(PathError::DotDot));
/// ```
pub fn resolve_path(url_path: &str) -> Result<RelPath, PathError> {
    let end = url_path.find(['?', '#']).unwrap_or(url_path.len());
    let raw = url_path[..end]
        .strip_prefix('/')
        .ok_or(PathError::NotAbsolute)?;
    let mut segments = Vec::new();
    let mut dir = true;
    for raw_segment in raw.split('/') {
        let segment = decode_segment(raw_segment)?;
        dir = segment.is_empty() || segment == ".";
        match segment.as_str() {
            "" | "." => {}
            ".." => return Err(PathError::DotDot),
            _ => segments.push(segment),
        }
    }
    Ok(RelPath { segments, dir })
}

/// Percent-decodes one segment and checks its bytes.
///
/// `percent-encoding` keeps a malformed escape as written; here it is an error, so it is
/// looked for first. A decoded `/` can only come from `%2F`, since `raw` holds none.
fn decode_segment(raw: &str) -> Result<String, PathError> {
    if has_bad_escape(raw) {
        return Err(PathError::BadEscape);
    }
    let decoded = Cow::from(percent_decode_str(raw));
    if let Some(b) = decoded
        .iter()
        .find(|&&b| matches!(b, b'/' | b'\\' | 0..=0x1f | 0x7f))
    {
        return Err(match b {
            b'/' => PathError::EncodedSlash,
            b'\\' => PathError::Backslash,
            _ => PathError::ControlByte,
        });
    }
    String::from_utf8(decoded.into_owned()).map_err(|_| PathError::NotUtf8)
}

/// Whether some `%` in `s` is not followed by two hex digits.
fn has_bad_escape(s: &str) -> bool {
    s.match_indices('%').any(|(i, _)| {
        !s.as_bytes()
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    })
}

/// Types `mime_guess` gives otherwise: the registered ones (RFC 9239 `text/javascript` for
/// modules, RFC 7303 `application/xml`, RFC 8081 `font/woff`).
const MIME_OVERRIDES: &[(&str, &str)] = &[
    ("mjs", "text/javascript; charset=utf-8"),
    ("xml", "application/xml"),
    ("woff", "font/woff"),
];

/// The `Content-Type` for a file extension (without the dot, any case), from `mime_guess`'s
/// table; text types carry `; charset=utf-8`; unknown extensions are
/// `application/octet-stream`.
///
/// ```
/// use herd_proto::http1::statics::mime_for;
///
/// assert_eq!(mime_for("HTML"), "text/html; charset=utf-8");
/// assert_eq!(mime_for("wasm"), "application/wasm");
/// assert_eq!(mime_for("exe"), "application/octet-stream");
/// ```
pub fn mime_for(ext: &str) -> Cow<'static, str> {
    if let Some((_, mime)) = MIME_OVERRIDES
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(ext))
    {
        return Cow::Borrowed(mime);
    }
    match mime_guess::from_ext(ext).first_raw() {
        Some(mime) if mime.starts_with("text/") => Cow::Owned(format!("{mime}; charset=utf-8")),
        Some(mime) => Cow::Borrowed(mime),
        None => Cow::Borrowed("application/octet-stream"),
    }
}

/// A strong entity tag (with its quotes) from a file's length and modification time, in the
/// spirit of nginx's `"mtime-length"` but with nanoseconds, so a same-second rewrite of the same
/// length is still told apart on file systems that keep them. Strong, so it also serves
/// `If-Range`.
///
/// ```
/// assert_eq!(herd_proto::http1::statics::etag(420, 1_700_000_000, 5), "\"6553f100.00000005-1a4\"");
/// ```
pub fn etag(len: u64, mtime_secs: u64, mtime_nanos: u32) -> String {
    format!("\"{mtime_secs:x}.{mtime_nanos:08x}-{len:x}\"")
}

/// The outcome of [`evaluate_conditional`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conditional {
    /// Answer 304 Not Modified (with the ETag and Last-Modified, no body).
    NotModified,
    /// Serve the representation normally.
    Proceed,
}

/// Evaluates `If-None-Match` and `If-Modified-Since` for a GET or HEAD of a file whose entity
/// tag is `etag` and whose modification time is `last_modified_secs` (RFC 9110 §13.2.2).
///
/// `If-None-Match` takes precedence: when present, `If-Modified-Since` is ignored. It matches
/// `*` or any listed tag by weak comparison (`W/` ignored). An unparsable `If-Modified-Since` is
/// ignored. Other methods, and `If-Match`/`If-Unmodified-Since`, are the caller's business.
///
/// ```
/// use herd_proto::http1::statics::{evaluate_conditional, Conditional};
/// use http::HeaderMap;
///
/// let mut h = HeaderMap::new();
/// h.insert("if-none-match", "\"x\", W/\"abc\"".parse().unwrap());
/// assert_eq!(evaluate_conditional(&h, "\"abc\"", 0), Conditional::NotModified);
/// ```
pub fn evaluate_conditional(
    headers: &HeaderMap,
    etag: &str,
    last_modified_secs: u64,
) -> Conditional {
    let mut if_none_match = headers.get_all(IF_NONE_MATCH).iter().peekable();
    if if_none_match.peek().is_some() {
        let ours = strip_weak(etag.as_bytes());
        let hit = if_none_match.any(|v| {
            let v = v.as_bytes();
            super::request::trim_ows(v) == b"*" || EntityTags(v).any(|t| strip_weak(t) == ours)
        });
        return if hit {
            Conditional::NotModified
        } else {
            Conditional::Proceed
        };
    }
    let mut since = headers.get_all(IF_MODIFIED_SINCE).iter();
    match (
        since.next().and_then(|v| http_date_secs(v.as_bytes())),
        since.next(),
    ) {
        (Some(since), None) if last_modified_secs <= since => Conditional::NotModified,
        _ => Conditional::Proceed,
    }
}

/// Whether a `Range` may be honoured given `If-Range` (RFC 9110 §13.1.5): true when there is no
/// `If-Range`, when it is an entity tag strongly equal to `etag`, or an HTTP date equal to
/// `last_modified_secs`; false otherwise (serve the full representation).
///
/// ```
/// use herd_proto::http1::statics::if_range_allows;
/// use http::HeaderMap;
///
/// let mut h = HeaderMap::new();
/// assert!(if_range_allows(&h, "\"a\"", 0));
/// h.insert("if-range", "W/\"a\"".parse().unwrap());
/// assert!(!if_range_allows(&h, "\"a\"", 0));
/// ```
pub fn if_range_allows(headers: &HeaderMap, etag: &str, last_modified_secs: u64) -> bool {
    let Some(value) = headers.get(IF_RANGE) else {
        return true;
    };
    let value = super::request::trim_ows(value.as_bytes());
    if value.starts_with(b"\"") {
        !etag.starts_with("W/") && value == etag.as_bytes()
    } else if value.starts_with(b"W/") {
        false
    } else {
        http_date_secs(value) == Some(last_modified_secs)
    }
}

/// The outcome of [`parse_range`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeResult {
    /// Serve the whole representation with 200 (no usable range).
    Full,
    /// Serve bytes `start..=end` with 206 and `Content-Range: bytes start-end/len`.
    Partial(u64, u64),
    /// Answer 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

/// Interprets a `Range` header for a representation of `len` bytes: `bytes=a-b`, `bytes=a-` and
/// `bytes=-suffix` (RFC 9110 §14.1.2). An end past the last byte is clamped. A malformed header,
/// another unit, or several ranges give `Full` (a server may ignore `Range`; multipart/byteranges
/// is not produced). A first byte at or past `len`, or an empty suffix, is `Unsatisfiable`.
///
/// ```
/// use herd_proto::http1::statics::{parse_range, RangeResult};
///
/// assert_eq!(parse_range("bytes=0-99", 1000), RangeResult::Partial(0, 99));
/// assert_eq!(parse_range("bytes=-100", 1000), RangeResult::Partial(900, 999));
/// assert_eq!(parse_range("bytes=1000-", 1000), RangeResult::Unsatisfiable);
/// assert_eq!(parse_range("bytes=0-1,5-6", 1000), RangeResult::Full);
/// ```
pub fn parse_range(header: &str, len: u64) -> RangeResult {
    let Some((unit, set)) = header.split_once('=') else {
        return RangeResult::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeResult::Full;
    }
    let mut specs = set.split(',').map(str::trim).filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return RangeResult::Full;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return RangeResult::Full;
    };
    let number = |s: &str| parse_decimal(s.as_bytes());
    if first.is_empty() {
        return match number(last) {
            None => RangeResult::Full,
            Some(0) => RangeResult::Unsatisfiable,
            Some(_) if len == 0 => RangeResult::Unsatisfiable,
            Some(n) => RangeResult::Partial(len - n.min(len), len - 1),
        };
    }
    let Some(start) = number(first) else {
        return RangeResult::Full;
    };
    let end = if last.is_empty() {
        u64::MAX
    } else {
        match number(last) {
            Some(end) if end >= start => end,
            _ => return RangeResult::Full,
        }
    };
    if start >= len {
        RangeResult::Unsatisfiable
    } else {
        RangeResult::Partial(start, end.min(len - 1))
    }
}

/// `tag` without a leading `W/`.
fn strip_weak(tag: &[u8]) -> &[u8] {
    tag.strip_prefix(b"W/").unwrap_or(tag)
}

/// Seconds since the epoch of an HTTP date, if it parses.
fn http_date_secs(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    let time = httpdate::parse_http_date(text.trim()).ok()?;
    time.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// Iterates the entity tags (`W/"..."` or `"..."`, quotes included) of a comma-separated list;
/// stops at the first malformed element.
struct EntityTags<'a>(&'a [u8]);

impl<'a> Iterator for EntityTags<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let s = self.0;
        let start = s.iter().position(|&b| !matches!(b, b' ' | b'\t' | b','))?;
        let quote = start + if s[start..].starts_with(b"W/") { 2 } else { 0 };
        if s.get(quote) != Some(&b'"') {
            self.0 = &[];
            return None;
        }
        let Some(close) = s[quote + 1..].iter().position(|&b| b == b'"') else {
            self.0 = &[];
            return None;
        };
        let end = quote + 1 + close + 1;
        self.0 = &s[end..];
        Some(&s[start..end])
    }
}
