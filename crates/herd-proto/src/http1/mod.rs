//! Strict, sans-IO HTTP/1.1: a request decoder, a response encoder and static-file helpers.
//!
//! This module is the protocol half of herd's HTTP/1.1 server. [`RequestDecoder`] turns bytes
//! read from a connection into request heads, body pieces and end-of-request events;
//! [`encode_head`], [`encode_chunk`] and friends write responses into an output buffer;
//! [`DateCache`] keeps the `Date` header value; [`encoding`] negotiates content codings
//! (`Accept-Encoding`); [`statics`] holds the pure decisions of a
//! static-file server (path resolution, MIME types, ETags, conditional and range requests).
//!
//! It must not touch sockets, files, threads or clocks (time comes in as an argument), keeps no
//! global state and never panics on input. Parsing is as strict as nginx and RFC 9112: every
//! request-smuggling ambiguity (`Transfer-Encoding` with `Content-Length`, differing lengths,
//! bare LF, obs-fold, odd transfer codings) is an [`HttpError`] carrying the status to answer,
//! after which the connection must be closed.
//!
//! Its caller is the HTTP connection handler on herd-core's event loop, which decodes straight
//! out of its read buffer, keeps only the unconsumed tail, and writes the encoded responses.
//!
//! ```
//! use herd_proto::http1::{Decoded, RequestDecoder};
//!
//! let mut dec = RequestDecoder::default();
//! let buf = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
//! let mut at = 0;
//! let mut paths = Vec::new();
//! loop {
//!     let (used, event) = dec.decode(&buf[at..]).unwrap();
//!     at += used;
//!     match event {
//!         Some(Decoded::Head(head)) => paths.push(head.request.uri.path().to_owned()),
//!         Some(Decoded::Body(_) | Decoded::End) => {}
//!         None => break,
//!     }
//! }
//! assert_eq!(paths, ["/a", "/b"]);
//! assert_eq!(at, buf.len());
//! ```

mod chunked;
mod date;
pub mod encoding;
mod error;
mod request;
mod response;
mod scan;
pub mod statics;

#[cfg(test)]
mod tests;

pub use date::DateCache;
pub use error::HttpError;
pub use request::{BodyKind, Decoded, RequestDecoder, RequestHead};
pub use response::{
    continue_100, encode_chunk, encode_head, encode_last_chunk, error_response, BodyFraming,
    BodyLen, HeadOutcome, ResponseContext,
};

/// Size limits for [`RequestDecoder`]. Every limit is checked before the bytes it guards are
/// buffered or allocated, so a peer can never make the decoder (or its caller) hold more than
/// these amounts.
///
/// ```
/// use herd_proto::http1::Limits;
///
/// let limits = Limits { max_body: 16 << 20, ..Limits::default() };
/// assert_eq!(limits.max_headers, 100);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line, without its CRLF (longer: 414). Default 8192.
    pub max_request_line: usize,
    /// Longest header or trailer line, without its CRLF (longer: 431). Default 8192.
    pub max_header_line: usize,
    /// Most header lines in one head (more: 431). Default 100.
    pub max_headers: usize,
    /// Largest head: request line, headers and all CRLFs including the final one (larger: 431).
    /// Default 64 KiB.
    pub max_head_bytes: usize,
    /// Largest body, by `Content-Length` at the head or by the running total of chunk sizes
    /// (larger: 413). Default 1 MiB.
    pub max_body: u64,
    /// Longest chunk-size line including chunk extensions, without its CRLF (longer: 400).
    /// Default 1024.
    pub max_chunk_line: usize,
    /// Most trailer lines after a chunked body (more: 431). Default 32.
    pub max_trailers: usize,
    /// Largest trailer section including all CRLFs (larger: 431). Default 16 KiB.
    pub max_trailer_bytes: usize,
    /// Most empty lines (CRLF) skipped before a request line, RFC 9112 §2.2 (more: 400).
    /// Default 8.
    pub max_empty_lines: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_line: 8192,
            max_header_line: 8192,
            max_headers: 100,
            max_head_bytes: 64 * 1024,
            max_body: 1024 * 1024,
            max_chunk_line: 1024,
            max_trailers: 32,
            max_trailer_bytes: 16 * 1024,
            max_empty_lines: 8,
        }
    }
}
