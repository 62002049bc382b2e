//! Incremental, bounded line scanning for a request head or a trailer section.
//!
//! [`BlockScan`] finds where a block of CRLF-terminated lines ends (at the first empty line),
//! enforcing line-length, line-count and total-size limits as soon as the bytes arrive, so an
//! incomplete block can never grow past its limits. It remembers how far it has looked, so a head
//! arriving a few bytes at a time is scanned once, not from the start on every call. It rejects
//! bare LF and lines starting with whitespace (obs-fold); it does not tokenize (httparse does that
//! once the block is complete). Used only by the request decoder and the chunked-body decoder.

use super::HttpError;

/// The limits and the errors reported when they are broken, for one kind of block.
pub(crate) struct BlockRules {
    /// The first line is a request line with its own limit and error (heads only).
    pub first_line: Option<(usize, HttpError)>,
    /// Longest other line, without CRLF.
    pub max_line: usize,
    /// Error for a line over `max_line`.
    pub line_error: HttpError,
    /// Most lines, not counting the first line when `first_line` is set, nor the final empty line.
    pub max_lines: usize,
    /// Error for too many lines.
    pub lines_error: HttpError,
    /// Largest block, all CRLFs included.
    pub max_bytes: usize,
    /// Error for a block over `max_bytes`.
    pub bytes_error: HttpError,
}

/// Result of scanning: the block is complete (with its length and its non-empty line count) or
/// more bytes are needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scanned {
    /// More bytes are needed; nothing is wrong so far.
    Partial,
    /// The block ends at `len` (just after its final empty line) and has `lines` non-empty lines.
    Complete { len: usize, lines: usize },
}

/// Resumable scan state. The caller must present the same bytes again (plus more) after a
/// `Partial`; if it presents fewer, the scan restarts from the beginning.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BlockScan {
    /// Bytes already searched for LF.
    pos: usize,
    /// Start of the line being scanned.
    line_start: usize,
    /// Non-empty lines completed so far.
    lines: usize,
}

impl BlockScan {
    /// Whether nothing of a block has been seen yet.
    pub fn is_fresh(&self) -> bool {
        self.pos == 0
    }

    /// Forgets all progress, ready for the next block.
    pub fn reset(&mut self) {
        *self = BlockScan::default();
    }

    /// Scans `src` (the block starts at `src[0]`) from where the last call stopped.
    pub fn scan(&mut self, src: &[u8], rules: &BlockRules) -> Result<Scanned, HttpError> {
        if self.pos > src.len() {
            self.reset();
        }
        loop {
            let (max_line, line_error) = match rules.first_line {
                Some(first) if self.lines == 0 => first,
                _ => (rules.max_line, rules.line_error),
            };
            // A line of `max_line` content bytes plus CR fits in `max_line + 1` bytes before LF;
            // never look further than that.
            let window_end = src
                .len()
                .min(self.line_start.saturating_add(max_line).saturating_add(2));
            let found = memchr::memchr(b'\n', &src[self.pos..window_end]);
            let Some(offset) = found else {
                self.pos = window_end;
                if src.len() - self.line_start > max_line.saturating_add(1) {
                    return Err(line_error);
                }
                if src.len() > rules.max_bytes {
                    return Err(rules.bytes_error);
                }
                return Ok(Scanned::Partial);
            };
            let lf = self.pos + offset;
            if lf == self.line_start || src[lf - 1] != b'\r' {
                return Err(HttpError::BadLineEnding);
            }
            let line = &src[self.line_start..lf - 1];
            if lf + 1 > rules.max_bytes {
                return Err(if line.len() > max_line {
                    line_error
                } else {
                    rules.bytes_error
                });
            }
            self.pos = lf + 1;
            self.line_start = lf + 1;
            if line.is_empty() {
                let lines = self.lines;
                self.reset();
                return Ok(Scanned::Complete { len: lf + 1, lines });
            }
            if line.len() > max_line {
                return Err(line_error);
            }
            let is_first = rules.first_line.is_some() && self.lines == 0;
            if line[0] == b' ' || line[0] == b'\t' {
                return Err(if is_first {
                    HttpError::BadRequestLine
                } else {
                    HttpError::ObsFold
                });
            }
            self.lines += 1;
            let counted = if rules.first_line.is_some() {
                self.lines - 1
            } else {
                self.lines
            };
            if counted > rules.max_lines {
                return Err(rules.lines_error);
            }
        }
    }
}
