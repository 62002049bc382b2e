//! The HTTP/1.1 request codec: herd-core's [`Decoder`] around herd-proto's sans-IO
//! [`RequestDecoder`].
//!
//! It turns the bytes the loop read into [`Event`]s the HTTP handler acts on: a request head,
//! body pieces borrowed straight from the read buffer, the end of a body, "a head has started
//! but is not complete" (so the handler can start the header timeout), and a protocol error
//! (so the handler can answer it in order, after responses still being computed). It adds
//! what the loop's calling convention needs on top of the proto decoder: a request without a
//! body, or whose `Content-Length` body just completed, is reported complete in the same call,
//! since the loop never calls a decoder again on an empty buffer. It must not buffer bytes
//! (the loop keeps the unconsumed tail), read clocks or write anything. Its only caller is
//! the event loop on behalf of [`HttpProtocol`](super::HttpProtocol).

use ::http::HeaderMap;
use herd_proto::http1::{BodyKind, Decoded, HttpError, Limits, RequestDecoder, RequestHead};

use crate::codec::Decoder;

/// What [`HttpCodec`] found in the input.
// The head is large, but boxing it would cost an allocation per request; it is moved once.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Event<'a> {
    /// The first bytes of a request head arrived, but not all of it (reported at most once
    /// per request, and only when a head spans reads).
    HeadStarted,
    /// A validated request head. When `head.body` is [`BodyKind::None`] the request is
    /// complete; otherwise [`Body`](Event::Body) pieces and one [`Last`](Event::Last) follow.
    Head(RequestHead),
    /// A piece of the body (de-chunked), borrowed from the read buffer; more follows.
    Body(&'a [u8]),
    /// The last piece of the body (possibly empty) and the chunked trailers, if any: the
    /// request is complete.
    Last {
        /// The final body bytes.
        data: &'a [u8],
        /// Trailer fields of a chunked body.
        trailers: Option<HeaderMap>,
    },
    /// The input is invalid: answer [`HttpError::status`] and close. The codec swallows all
    /// input after it.
    Error(HttpError),
}

/// Where the codec is within the current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Head,
    Length(u64),
    Chunked,
    Failed,
}

/// Decodes pipelined HTTP/1.1 requests into [`Event`]s.
///
/// ```
/// use herd_core::codec::Decoder;
/// use herd_core::http::{Event, HttpCodec};
///
/// let mut codec = HttpCodec::default();
/// let mut wire = *b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi";
/// let (n, head) = codec.decode(&mut wire).unwrap();
/// assert!(matches!(head, Some(Event::Head(_))));
/// let (m, last) = codec.decode(&mut wire[n..]).unwrap();
/// assert!(matches!(last, Some(Event::Last { data: b"hi", trailers: None })));
/// assert_eq!(n + m, wire.len());
/// ```
#[derive(Debug)]
pub struct HttpCodec {
    dec: RequestDecoder,
    phase: Phase,
    /// `HeadStarted` was reported for the head being received.
    started: bool,
}

impl Default for HttpCodec {
    fn default() -> Self {
        HttpCodec::new(Limits::default())
    }
}

impl HttpCodec {
    /// A codec enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        HttpCodec {
            dec: RequestDecoder::new(limits),
            phase: Phase::Head,
            started: false,
        }
    }

    /// Consumes the `End` the proto decoder reports right after a request completes without
    /// needing more bytes (no body, or the last `Content-Length` byte).
    fn take_end(&mut self, rest: &[u8]) -> Result<(), HttpError> {
        self.phase = Phase::Head;
        match self.dec.decode(rest)? {
            (0, Some(Decoded::End)) => Ok(()),
            // Unreachable with a conforming decoder; refuse rather than lose framing.
            _ => Err(HttpError::BadRequestLine),
        }
    }

    fn fail<'a>(&mut self, src: &[u8], e: HttpError) -> (usize, Option<Event<'a>>) {
        self.phase = Phase::Failed;
        (src.len(), Some(Event::Error(e)))
    }
}

impl Decoder for HttpCodec {
    type Item<'a> = Event<'a>;
    type Error = HttpError;

    fn decode<'a>(&mut self, src: &'a mut [u8]) -> Result<(usize, Option<Event<'a>>), HttpError> {
        let src: &'a [u8] = src;
        if self.phase == Phase::Failed {
            return Ok((src.len(), None));
        }
        let (used, ev) = match self.dec.decode(src) {
            Ok(r) => r,
            Err(e) => return Ok(self.fail(src, e)),
        };
        match ev {
            None => {
                let partial_head = self.phase == Phase::Head
                    && !self.started
                    && (used < src.len() || !self.dec.is_idle());
                if partial_head {
                    self.started = true;
                    return Ok((used, Some(Event::HeadStarted)));
                }
                Ok((used, None))
            }
            Some(Decoded::Head(head)) => {
                self.started = false;
                match head.body {
                    BodyKind::None => {
                        if let Err(e) = self.take_end(&src[used..]) {
                            return Ok(self.fail(src, e));
                        }
                    }
                    BodyKind::Length(n) => self.phase = Phase::Length(n),
                    BodyKind::Chunked => self.phase = Phase::Chunked,
                }
                Ok((used, Some(Event::Head(head))))
            }
            Some(Decoded::Body(data)) => match self.phase {
                Phase::Length(left) => {
                    let left = left.saturating_sub(data.len() as u64);
                    if left > 0 {
                        self.phase = Phase::Length(left);
                        return Ok((used, Some(Event::Body(data))));
                    }
                    if let Err(e) = self.take_end(&src[used..]) {
                        return Ok(self.fail(src, e));
                    }
                    let trailers = None;
                    Ok((used, Some(Event::Last { data, trailers })))
                }
                _ => Ok((used, Some(Event::Body(data)))),
            },
            Some(Decoded::End) => {
                self.phase = Phase::Head;
                let trailers = self.dec.take_trailers();
                Ok((
                    used,
                    Some(Event::Last {
                        data: &[],
                        trailers,
                    }),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A simplified, owned view of an event for comparisons.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Started,
        Head(String, bool),
        Body(Vec<u8>),
        Last(Vec<u8>, usize),
        Error(u16),
    }

    fn own(ev: Event<'_>) -> Ev {
        match ev {
            Event::HeadStarted => Ev::Started,
            Event::Head(h) => Ev::Head(h.request.uri.to_string(), h.body == BodyKind::None),
            Event::Body(d) => Ev::Body(d.to_vec()),
            Event::Last { data, trailers } => {
                Ev::Last(data.to_vec(), trailers.map_or(0, |t| t.len()))
            }
            Event::Error(e) => Ev::Error(e.status()),
        }
    }

    /// Feed `chunks` one by one like the loop does (keeping unconsumed tails), collecting
    /// events; body pieces are merged so different splits compare equal.
    fn run(chunks: &[&[u8]]) -> Vec<Ev> {
        let mut codec = HttpCodec::default();
        let mut held: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            held.extend_from_slice(chunk);
            let mut pos = 0;
            while pos < held.len() {
                let (n, ev) = codec.decode(&mut held[pos..]).unwrap();
                pos += n;
                match ev.map(own) {
                    Some(Ev::Body(d)) => match out.last_mut() {
                        Some(Ev::Body(prev)) => prev.extend_from_slice(&d),
                        _ => out.push(Ev::Body(d)),
                    },
                    Some(Ev::Last(d, t)) => {
                        let mut all = match out.last() {
                            Some(Ev::Body(_)) => match out.pop() {
                                Some(Ev::Body(prev)) => prev,
                                _ => unreachable!(),
                            },
                            _ => Vec::new(),
                        };
                        all.extend_from_slice(&d);
                        out.push(Ev::Last(all, t));
                    }
                    Some(Ev::Started) => {}
                    Some(ev) => out.push(ev),
                    None if n == 0 => break,
                    None => {}
                }
            }
            held.drain(..pos);
        }
        out
    }

    #[test]
    fn bodiless_requests_complete_in_one_call() {
        let mut codec = HttpCodec::default();
        let mut wire = *b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let len = wire.len();
        let (n, ev) = codec.decode(&mut wire).unwrap();
        assert_eq!(n, len);
        assert_eq!(own(ev.unwrap()), Ev::Head("/a".into(), true));
        // The next request decodes normally: the End was consumed.
        let mut next = *b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n";
        let (_, ev) = codec.decode(&mut next).unwrap();
        assert_eq!(own(ev.unwrap()), Ev::Head("/b".into(), true));
    }

    #[test]
    fn head_started_once_for_a_split_head() {
        let mut codec = HttpCodec::default();
        let mut part = *b"GET /a HTTP/1.1\r\nHo";
        let (n, ev) = codec.decode(&mut part).unwrap();
        assert!(matches!(ev, Some(Event::HeadStarted)));
        assert_eq!(n, 0);
        assert!(codec.decode(&mut part).unwrap().1.is_none());
        let mut whole = *b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(matches!(
            codec.decode(&mut whole).unwrap().1,
            Some(Event::Head(_))
        ));
        let mut empty: [u8; 0] = [];
        assert_eq!(codec.decode(&mut empty).unwrap().0, 0);
    }

    #[test]
    fn chunked_with_trailers() {
        let wire = b"POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
                     3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n";
        let whole = run(&[wire]);
        assert_eq!(
            whole,
            vec![Ev::Head("/u".into(), false), Ev::Last(b"abcde".to_vec(), 1)]
        );
        for cut in 0..wire.len() {
            let (a, b) = wire.split_at(cut);
            assert_eq!(run(&[a, b]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn errors_swallow_the_rest() {
        let mut codec = HttpCodec::default();
        let mut wire = *b"GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let len = wire.len();
        let (n, ev) = codec.decode(&mut wire).unwrap();
        assert_eq!(n, len);
        assert_eq!(own(ev.unwrap()), Ev::Error(400));
        let mut more = *b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let len = more.len();
        let (n, ev) = codec.decode(&mut more).unwrap();
        assert_eq!(n, len);
        assert!(ev.is_none());
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..5),
            chunked in any::<bool>(),
            cut in 0usize..2000,
        ) {
            let mut wire = Vec::new();
            let mut expect = Vec::new();
            for (i, b) in bodies.iter().enumerate() {
                let path = format!("/r{i}");
                if chunked {
                    wire.extend_from_slice(format!("POST {path} HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes());
                    for piece in b.chunks(7) {
                        wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                        wire.extend_from_slice(piece);
                        wire.extend_from_slice(b"\r\n");
                    }
                    wire.extend_from_slice(b"0\r\n\r\n");
                    expect.push(Ev::Head(path, false));
                    expect.push(Ev::Last(b.clone(), 0));
                } else {
                    wire.extend_from_slice(format!("POST {path} HTTP/1.1\r\nHost: h\r\nContent-Length: {}\r\n\r\n", b.len()).as_bytes());
                    wire.extend_from_slice(b);
                    expect.push(Ev::Head(path, b.is_empty()));
                    if !b.is_empty() {
                        expect.push(Ev::Last(b.clone(), 0));
                    }
                }
            }
            let cut = cut.min(wire.len());
            let (a, b) = wire.split_at(cut);
            prop_assert_eq!(run(&[a, b]), expect);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), cut in 0usize..512) {
            let cut = cut.min(data.len());
            let (a, b) = data.split_at(cut);
            let _ = run(&[a, b]);
        }
    }
}
