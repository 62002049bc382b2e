//! The error a [`RequestDecoder`](super::RequestDecoder) reports for a bad or oversized request.
//!
//! Each variant names one rule of RFC 9112 (or one limit) and maps to the status code the server
//! answers with before it closes the connection. This file only classifies; it formats nothing
//! (see [`error_response`](super::error_response)) and is used by the decoder and its caller.

use std::fmt;

/// Why a request was refused. Every error is final: answer with [`HttpError::status`] (for
/// example through [`error_response`](super::error_response)) and close the connection, since
/// the framing of whatever follows can no longer be trusted.
///
/// ```
/// use herd_proto::http1::{HttpError, RequestDecoder};
///
/// let mut dec = RequestDecoder::default();
/// let err = dec.decode(b"GET / HTTP/1.1\r\n\r\n").unwrap_err();
/// assert_eq!(err, HttpError::MissingHost);
/// assert_eq!(err.status(), 400);
/// assert!(err.must_close());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HttpError {
    /// The request line is longer than `max_request_line` (414).
    UriTooLong,
    /// A header line is longer than `max_header_line` (431).
    HeaderLineTooLong,
    /// More header lines than `max_headers` (431).
    TooManyHeaders,
    /// The head is larger than `max_head_bytes` (431).
    HeadTooLarge,
    /// A trailer line too long, too many trailers, or a trailer section too large (431).
    TrailersTooLarge,
    /// More than `max_empty_lines` empty lines before a request line (400).
    TooManyEmptyLines,
    /// A line ended in a bare LF, or a CR was not followed by LF (400).
    BadLineEnding,
    /// A header line starts with whitespace: obsolete line folding (400).
    ObsFold,
    /// The request line is not `method SP request-target SP HTTP-version` (400).
    BadRequestLine,
    /// The request-target is not a valid origin, absolute, authority or asterisk form for the
    /// method, or holds a byte outside RFC 3986 (non-ASCII, `"`, `{`, `|`...), a fragment or
    /// userinfo (400).
    BadTarget,
    /// The HTTP version is malformed (400).
    BadVersion,
    /// A well-formed HTTP version other than 1.0 and 1.1, e.g. `HTTP/2.0` (505).
    UnsupportedVersion,
    /// A header name or value has a forbidden byte, or there is whitespace before the colon (400).
    BadHeader,
    /// An HTTP/1.1 request without a `Host` header (400).
    MissingHost,
    /// More than one `Host` header (400).
    DuplicateHost,
    /// A `Host` value that is not `host[:port]` (400).
    BadHost,
    /// A `Content-Length` that is not 1*DIGIT or overflows u64 (400).
    BadContentLength,
    /// Several `Content-Length` values that differ (400).
    ConflictingContentLength,
    /// Both `Transfer-Encoding` and `Content-Length` (400).
    TransferEncodingWithContentLength,
    /// `Transfer-Encoding` in an HTTP/1.0 request (400).
    TransferEncodingInHttp10,
    /// A `Transfer-Encoding` whose codings end in `chunked` but include another one, such as
    /// `gzip, chunked`: well framed, but herd does not decode it (501).
    UnsupportedTransferEncoding,
    /// A `Transfer-Encoding` whose final coding is not `chunked`, or with `chunked` twice: the
    /// body's length cannot be determined (400, RFC 9112 §6.3).
    ChunkedNotFinal,
    /// The body is larger than `max_body` (413).
    BodyTooLarge,
    /// A chunk size that is not 1..=16 hex digits, or a malformed chunk extension (400).
    BadChunkSize,
    /// A chunk-size line longer than `max_chunk_line` (400).
    ChunkLineTooLong,
    /// Chunk data not followed by CRLF (400).
    BadChunkEnd,
}

impl HttpError {
    /// The status code to answer with: 400, 413, 414, 431, 501 or 505.
    pub fn status(&self) -> u16 {
        use HttpError::*;
        match self {
            UriTooLong => 414,
            HeaderLineTooLong | TooManyHeaders | HeadTooLarge | TrailersTooLarge => 431,
            BodyTooLarge => 413,
            UnsupportedTransferEncoding => 501,
            UnsupportedVersion => 505,
            _ => 400,
        }
    }

    /// Whether the connection must close after the error response: always `true`, because
    /// after a framing error the decoder cannot find where the next request starts.
    pub fn must_close(&self) -> bool {
        true
    }

    /// Every error, in [`index`](Self::index) order (for counters by reason).
    pub const ALL: [HttpError; 26] = [
        HttpError::UriTooLong,
        HttpError::HeaderLineTooLong,
        HttpError::TooManyHeaders,
        HttpError::HeadTooLarge,
        HttpError::TrailersTooLarge,
        HttpError::TooManyEmptyLines,
        HttpError::BadLineEnding,
        HttpError::ObsFold,
        HttpError::BadRequestLine,
        HttpError::BadTarget,
        HttpError::BadVersion,
        HttpError::UnsupportedVersion,
        HttpError::BadHeader,
        HttpError::MissingHost,
        HttpError::DuplicateHost,
        HttpError::BadHost,
        HttpError::BadContentLength,
        HttpError::ConflictingContentLength,
        HttpError::TransferEncodingWithContentLength,
        HttpError::TransferEncodingInHttp10,
        HttpError::UnsupportedTransferEncoding,
        HttpError::ChunkedNotFinal,
        HttpError::BodyTooLarge,
        HttpError::BadChunkSize,
        HttpError::ChunkLineTooLong,
        HttpError::BadChunkEnd,
    ];

    /// This error's place in [`ALL`](Self::ALL).
    pub fn index(self) -> usize {
        Self::ALL.iter().position(|e| *e == self).unwrap_or(0)
    }

    /// A short lowercase description, for logs and counters.
    pub fn as_str(&self) -> &'static str {
        use HttpError::*;
        match self {
            UriTooLong => "request line too long",
            HeaderLineTooLong => "header line too long",
            TooManyHeaders => "too many headers",
            HeadTooLarge => "request head too large",
            TrailersTooLarge => "trailers too large",
            TooManyEmptyLines => "too many empty lines before request line",
            BadLineEnding => "bare LF or CR in line ending",
            ObsFold => "obsolete header line folding",
            BadRequestLine => "malformed request line",
            BadTarget => "invalid request target",
            BadVersion => "malformed HTTP version",
            UnsupportedVersion => "unsupported HTTP version",
            BadHeader => "invalid header field",
            MissingHost => "missing Host header",
            DuplicateHost => "duplicate Host header",
            BadHost => "invalid Host header",
            BadContentLength => "invalid Content-Length",
            ConflictingContentLength => "conflicting Content-Length values",
            TransferEncodingWithContentLength => "Transfer-Encoding with Content-Length",
            TransferEncodingInHttp10 => "Transfer-Encoding in HTTP/1.0 request",
            UnsupportedTransferEncoding => "unsupported Transfer-Encoding",
            ChunkedNotFinal => "Transfer-Encoding not ending in chunked",
            BodyTooLarge => "body too large",
            BadChunkSize => "invalid chunk size line",
            ChunkLineTooLong => "chunk size line too long",
            BadChunkEnd => "chunk data not followed by CRLF",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.as_str(), self.status())
    }
}

impl std::error::Error for HttpError {}
