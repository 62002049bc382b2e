//! The body type of requests and responses: bytes, a chunked stream, or a region of a file.
//!
//! A request body is bytes (the server collects it, bounded by
//! [`Limits::max_body`](herd_proto::http1::Limits::max_body), before the handler runs); chunked
//! trailers ride along as the [`Trailers`] extension. Only a streaming route
//! ([`Router::route_stream`](super::Router::route_stream)) reads its body as it arrives, from
//! a [`BodyStream`](super::BodyStream) instead. A response body is one of four kinds,
//! and the server picks the framing from it: no body, bytes with a `Content-Length`, a
//! [`stream`](Body::stream) sent chunked and pulled on the loop only while the connection's
//! output stays below its high watermark, or a [`file`](Body::file) region sent with
//! `sendfile` (no copy, no buffer). This module only describes bodies; it performs no I/O and
//! never touches a connection. Callers: handlers (to build responses), the HTTP server (to
//! build requests and write responses).

use std::fmt;
use std::fs::File;
use std::io;
use std::path::Path;

use bytes::Bytes;

/// A pull source of body chunks, run on the event loop: it must not block.
pub type ChunkSource = Box<dyn Iterator<Item = Bytes> + Send + 'static>;

/// The body of a request or a response.
///
/// ```
/// use herd_core::http::Body;
///
/// let b = Body::from("hi");
/// assert_eq!(b.len(), Some(2));
/// assert_eq!(b.as_bytes(), Some(&b"hi"[..]));
/// assert!(Body::empty().is_empty());
/// let s = Body::stream(vec![herd_core::Bytes::from_static(b"a")]);
/// assert_eq!(s.len(), None);
/// ```
#[derive(Default)]
pub struct Body {
    pub(crate) kind: Kind,
}

/// What a [`Body`] holds.
#[derive(Default)]
pub(crate) enum Kind {
    #[default]
    Empty,
    Bytes(Bytes),
    Stream(ChunkSource),
    /// Written by a task through a [`BodySender`](super::BodySender).
    Channel(super::channel::BodyReceiver),
    File {
        file: File,
        offset: u64,
        len: u64,
    },
}

impl Body {
    /// No body.
    pub fn empty() -> Body {
        Body { kind: Kind::Empty }
    }

    /// A body of static bytes (no allocation).
    pub fn from_static(bytes: &'static [u8]) -> Body {
        Body::from(Bytes::from_static(bytes))
    }

    /// A body of unknown length, sent with chunked transfer coding (or, to an HTTP/1.0 client,
    /// until the connection closes). The server pulls the next chunk only while the
    /// connection's pending output is below its high watermark, so a large stream never sits
    /// in memory; each pull runs on the event loop, so `next` must return at once.
    pub fn stream<I>(chunks: I) -> Body
    where
        I: IntoIterator<Item = Bytes>,
        I::IntoIter: Send + 'static,
    {
        Body {
            kind: Kind::Stream(Box::new(chunks.into_iter())),
        }
    }

    /// `len` bytes of `file` from `offset`, sent with `sendfile` after the response head. The
    /// file must hold them: if it turns out shorter, the connection is closed.
    pub fn file(file: File, offset: u64, len: u64) -> Body {
        Body {
            kind: Kind::File { file, offset, len },
        }
    }

    /// The whole file at `path` (opened and measured now).
    pub fn open(path: impl AsRef<Path>) -> io::Result<Body> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Body::file(file, 0, len))
    }

    /// The length in bytes, if known (`None` for a stream).
    pub fn len(&self) -> Option<u64> {
        match &self.kind {
            Kind::Empty => Some(0),
            Kind::Bytes(b) => Some(b.len() as u64),
            Kind::Stream(_) | Kind::Channel(_) => None,
            Kind::File { len, .. } => Some(*len),
        }
    }

    /// True when the body is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// The bytes of an empty or in-memory body (`None` for a stream or a file).
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Empty => Some(&[]),
            Kind::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The bytes of an empty or in-memory body, by value (`None` for a stream or a file).
    pub fn into_bytes(self) -> Option<Bytes> {
        match self.kind {
            Kind::Empty => Some(Bytes::new()),
            Kind::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// True for a body made by [`Body::stream`] or [`Body::channel`].
    pub fn is_stream(&self) -> bool {
        matches!(self.kind, Kind::Stream(_) | Kind::Channel(_))
    }

    /// True for a body made by [`Body::file`] or [`Body::open`].
    pub fn is_file(&self) -> bool {
        matches!(self.kind, Kind::File { .. })
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Empty => f.write_str("Body::Empty"),
            Kind::Bytes(b) => write!(f, "Body::Bytes({} bytes)", b.len()),
            Kind::Stream(_) => f.write_str("Body::Stream"),
            Kind::Channel(_) => f.write_str("Body::Channel"),
            Kind::File { offset, len, .. } => write!(f, "Body::File({len} bytes at {offset})"),
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Body {
        if b.is_empty() {
            Body::empty()
        } else {
            Body {
                kind: Kind::Bytes(b),
            }
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Body {
        Body::from(Bytes::from(v))
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Body::from(Bytes::from(s))
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Body {
        Body::from_static(s.as_bytes())
    }
}

impl From<&'static [u8]> for Body {
    fn from(s: &'static [u8]) -> Body {
        Body::from_static(s)
    }
}

impl From<()> for Body {
    fn from(_: ()) -> Body {
        Body::empty()
    }
}

/// The trailer fields of a chunked request body, in the request's extensions when the client
/// sent any.
///
/// ```
/// use herd_core::http::{Body, HeaderMap, Request, Trailers};
///
/// let mut req = Request::new(Body::empty());
/// assert!(req.extensions().get::<Trailers>().is_none());
/// req.extensions_mut().insert(Trailers(HeaderMap::new()));
/// assert!(req.extensions().get::<Trailers>().is_some());
/// ```
#[derive(Debug, Clone, Default)]
pub struct Trailers(pub ::http::HeaderMap);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_bytes() {
        assert_eq!(Body::empty().len(), Some(0));
        assert_eq!(Body::from(Vec::new()).len(), Some(0));
        assert!(Body::from(String::new()).is_empty());
        let b = Body::from(vec![1u8, 2, 3]);
        assert_eq!(b.len(), Some(3));
        assert_eq!(b.into_bytes().unwrap(), Bytes::from_static(&[1, 2, 3]));
        let s = Body::stream(std::iter::empty());
        assert!(s.is_stream() && s.as_bytes().is_none() && s.len().is_none());
    }

    #[test]
    fn file_body_reports_its_region() {
        let path = std::env::temp_dir().join(format!("herd-body-{}", std::process::id()));
        std::fs::write(&path, b"0123456789").unwrap();
        let whole = Body::open(&path).unwrap();
        assert!(whole.is_file());
        assert_eq!(whole.len(), Some(10));
        let part = Body::file(File::open(&path).unwrap(), 2, 5);
        assert_eq!(part.len(), Some(5));
        assert_eq!(format!("{part:?}"), "Body::File(5 bytes at 2)");
        std::fs::remove_file(&path).unwrap();
    }
}
