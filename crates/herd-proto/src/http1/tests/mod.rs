//! Tests for the http1 module, driving the decoder the way the event loop does: a buffer that
//! keeps only the unconsumed tail, fed whole, split at every byte, or byte by byte.

mod chunked;
mod props;
mod request;
mod response;
mod statics;

use super::{BodyKind, Decoded, HttpError, Limits, RequestDecoder};
use http::{HeaderMap, Version};

/// An owned, comparable form of one decoder event (consecutive body pieces merged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ev {
    Head {
        method: String,
        uri: String,
        version: Version,
        headers: Vec<(String, Vec<u8>)>,
        body: BodyKind,
        keep_alive: bool,
        expect_continue: bool,
        upgrade: bool,
    },
    Body(Vec<u8>),
    End {
        trailers: Vec<(String, Vec<u8>)>,
    },
}

pub(crate) fn header_list(map: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    map.iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

/// A decoder plus the caller-side buffer of unconsumed bytes.
pub(crate) struct Feeder {
    pub dec: RequestDecoder,
    pub buf: Vec<u8>,
    pub events: Vec<Ev>,
}

impl Feeder {
    pub fn new(limits: Limits) -> Self {
        Feeder {
            dec: RequestDecoder::new(limits),
            buf: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Appends `bytes` and decodes until no event is complete, dropping consumed bytes.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), HttpError> {
        self.buf.extend_from_slice(bytes);
        let mut at = 0;
        let result = loop {
            match self.dec.decode(&self.buf[at..]) {
                Err(e) => break Err(e),
                Ok((used, ev)) => {
                    assert!(used <= self.buf.len() - at, "consumed more than given");
                    let ev = match ev {
                        None => {
                            at += used;
                            break Ok(());
                        }
                        Some(Decoded::Head(h)) => Ev::Head {
                            method: h.request.method.to_string(),
                            uri: h.request.uri.to_string(),
                            version: h.request.version,
                            headers: header_list(&h.request.headers),
                            body: h.body,
                            keep_alive: h.keep_alive,
                            expect_continue: h.expect_continue,
                            upgrade: h.upgrade,
                        },
                        Some(Decoded::Body(b)) => {
                            assert!(!b.is_empty(), "empty body piece");
                            Ev::Body(b.to_vec())
                        }
                        Some(Decoded::End) => Ev::End {
                            trailers: self.dec.trailers().map(header_list).unwrap_or_default(),
                        },
                    };
                    at += used;
                    match (self.events.last_mut(), ev) {
                        (Some(Ev::Body(prev)), Ev::Body(more)) => prev.extend_from_slice(&more),
                        (_, ev) => self.events.push(ev),
                    }
                }
            }
        };
        self.buf.drain(..at);
        result
    }
}

/// Decodes `input` in one piece with `limits`.
pub(crate) fn decode_with(limits: Limits, input: &[u8]) -> (Vec<Ev>, Result<(), HttpError>) {
    let mut f = Feeder::new(limits);
    let r = f.feed(input);
    (f.events, r)
}

/// Decodes `input` in one piece with default limits.
pub(crate) fn decode(input: &[u8]) -> (Vec<Ev>, Result<(), HttpError>) {
    decode_with(Limits::default(), input)
}

/// Decodes `input` fed in pieces of the given lengths (the rest in a last piece).
pub(crate) fn decode_split(
    limits: Limits,
    input: &[u8],
    cuts: &[usize],
) -> (Vec<Ev>, Result<(), HttpError>) {
    let mut f = Feeder::new(limits);
    let mut prev = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(prev, input.len());
        if let Err(e) = f.feed(&input[prev..cut]) {
            return (f.events, Err(e));
        }
        prev = cut;
    }
    (f.events, Ok(()))
}

/// The status of the error `input` must produce.
pub(crate) fn status(input: &[u8]) -> u16 {
    match decode(input).1 {
        Err(e) => e.status(),
        Ok(()) => panic!("no error for {:?}", String::from_utf8_lossy(input)),
    }
}

/// The single head decoded from `input`, which must be valid and complete.
pub(crate) fn head(input: &[u8]) -> Ev {
    let (events, r) = decode(input);
    r.unwrap_or_else(|e| panic!("{e} for {:?}", String::from_utf8_lossy(input)));
    events
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no head for {:?}", String::from_utf8_lossy(input)))
}
