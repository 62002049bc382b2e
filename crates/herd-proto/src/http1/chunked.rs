//! The chunked transfer coding (RFC 9112 §7.1): chunk-size lines and the trailer section.
//!
//! The request decoder calls [`scan_chunk_line`] at the start of every chunk and
//! [`parse_trailers`] once a trailer section is complete; chunk data itself is passed through by
//! the decoder without copying. A chunk-size line is bounded and must be 1 to 16 hex digits,
//! optionally followed by syntactically valid extensions (which are otherwise ignored), and CRLF.
//! Nothing here buffers or allocates except the trailers' `HeaderMap`.

use http::HeaderMap;

use super::request::{to_header_map, with_header_slots};
use super::HttpError;

/// Most hex digits in a chunk size: 16 digits fill a u64, so no overflow is possible.
const MAX_SIZE_DIGITS: usize = 16;

/// The outcome of scanning for a chunk-size line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkLine {
    /// The line is not complete yet (and not over the limit).
    Partial,
    /// A chunk of `size` bytes follows the `len` bytes of the line (CRLF included).
    Size { size: u64, len: usize },
}

/// Looks for a complete chunk-size line at the start of `src`, resuming at `*pos` (bytes already
/// searched; reset to 0 once a line is found). `max_line` bounds the line without its CRLF.
pub(crate) fn scan_chunk_line(
    src: &[u8],
    pos: &mut usize,
    max_line: usize,
) -> Result<ChunkLine, HttpError> {
    if *pos > src.len() {
        *pos = 0;
    }
    if src.first().is_some_and(|b| !b.is_ascii_hexdigit()) {
        return Err(HttpError::BadChunkSize);
    }
    let window_end = src.len().min(max_line.saturating_add(2));
    let Some(offset) = src[*pos..window_end].iter().position(|&b| b == b'\n') else {
        if src.len() > max_line.saturating_add(1) {
            return Err(HttpError::ChunkLineTooLong);
        }
        *pos = window_end;
        return Ok(ChunkLine::Partial);
    };
    let lf = *pos + offset;
    *pos = 0;
    if lf == 0 || src[lf - 1] != b'\r' {
        return Err(HttpError::BadLineEnding);
    }
    let size = parse_chunk_line(&src[..lf - 1])?;
    Ok(ChunkLine::Size { size, len: lf + 1 })
}

/// Parses `chunk-size [ chunk-ext ]` (the line without CRLF) into the chunk size.
pub(crate) fn parse_chunk_line(line: &[u8]) -> Result<u64, HttpError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > MAX_SIZE_DIGITS {
        return Err(HttpError::BadChunkSize);
    }
    let size = line[..digits].iter().fold(0u64, |acc, &b| {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        (acc << 4) | u64::from(d)
    });
    check_extensions(&line[digits..])?;
    Ok(size)
}

/// Validates `*( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] )` with ext-val a token or a
/// quoted-string. Whitespace is only accepted where BWS is.
fn check_extensions(ext: &[u8]) -> Result<(), HttpError> {
    let bad = HttpError::BadChunkSize;
    let mut i = 0;
    while i < ext.len() {
        i = skip_ws(ext, i);
        if ext.get(i) != Some(&b';') {
            return Err(bad);
        }
        i = skip_ws(ext, i + 1);
        i = token_end(ext, i).ok_or(bad)?;
        let after_name = skip_ws(ext, i);
        if ext.get(after_name) == Some(&b'=') {
            let v = skip_ws(ext, after_name + 1);
            i = if ext.get(v) == Some(&b'"') {
                quoted_end(ext, v).ok_or(bad)?
            } else {
                token_end(ext, v).ok_or(bad)?
            };
        }
    }
    Ok(())
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while matches!(s.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// Whether `b` is a tchar (RFC 9110 §5.6.2).
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The end of a non-empty token starting at `i`.
fn token_end(s: &[u8], i: usize) -> Option<usize> {
    let n = s[i.min(s.len())..]
        .iter()
        .take_while(|&&b| is_tchar(b))
        .count();
    (n > 0).then_some(i + n)
}

/// The end of a quoted-string whose opening quote is at `i`.
fn quoted_end(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match *s.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => {
                let escaped = *s.get(j + 1)?;
                if escaped != b'\t' && !(0x20..0x7f).contains(&escaped) && escaped < 0x80 {
                    return None;
                }
                j += 2;
            }
            b'\t' | 0x20..=0x7e | 0x80..=0xff => j += 1,
            _ => return None,
        }
    }
}

/// Tokenizes a complete trailer section of `lines` field lines (ending with its empty line).
pub(crate) fn parse_trailers(block: &[u8], lines: usize) -> Result<HeaderMap, HttpError> {
    with_header_slots(lines, |slots| match httparse::parse_headers(block, slots) {
        Ok(httparse::Status::Complete((_, headers))) => to_header_map(headers),
        Ok(httparse::Status::Partial) => Err(HttpError::BadHeader),
        Err(httparse::Error::NewLine) => Err(HttpError::BadLineEnding),
        Err(httparse::Error::TooManyHeaders) => Err(HttpError::TrailersTooLarge),
        Err(_) => Err(HttpError::BadHeader),
    })
}
