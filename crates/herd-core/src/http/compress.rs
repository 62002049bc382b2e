//! On-the-fly response compression (gzip, Brotli) for the HTTP server, nginx's `gzip on`.
//!
//! [`Compression`] in [`HttpOptions`](super::HttpOptions) turns it on. The server calls
//! [`encode_response`] on every response before writing its head; it compresses when all of
//! these hold, like nginx's gzip filter: the status is 200, 403 or 404; the request accepts
//! a coding herd offers ([`AcceptEncoding`], q-values honoured); the `Content-Type` is
//! compressible ([`is_compressible`]); the body is at least [`Compression::min_length`] bytes
//! (streams always qualify); the response carries no `Content-Encoding`, `Content-Range` or
//! `Cache-Control: no-transform` of its own. An encoded response gets `Content-Encoding`,
//! `Vary: Accept-Encoding`, a weak `ETag`, and loses `Accept-Ranges` (ranges of the encoded
//! form are not offered). A response that qualifies but goes out uncompressed because of the
//! request still gets `Vary`, so a cache never hands a compressed copy to a client that did not
//! ask for one.
//!
//! Bodies: bytes, and file regions up to [`Compression::max_buffered`], are compressed whole
//! (one `Content-Length` response, one write); larger files are read and compressed in 64 KiB
//! pieces as a chunked stream pulled under the connection's watermarks, so memory stays
//! bounded; streams are compressed chunk by chunk with a flush after each, so a stream that
//! trickles (server-sent events) still arrives as it is produced. Whole-body gzip reuses one
//! compressor per loop thread (a zlib context costs ~256 KiB to set up); streams own theirs.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;

use ::http::header::{
    HeaderValue, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, ETAG, VARY,
};
use ::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use flate2::{Compress, FlushCompress, Status};
use herd_proto::http1::encoding::{add_vary, is_compressible, weak_etag, AcceptEncoding, Coding};

use super::body::{Body, ChunkSource, Kind};

/// Response compression settings. `Default`: gzip level 1 and Brotli quality 4 on the fly,
/// Brotli preferred when the client rates both the same, bodies from 256 bytes, whole-body
/// compression up to 1 MiB.
///
/// ```
/// use herd_core::http::{Compression, HttpOptions};
///
/// let opts = HttpOptions {
///     compression: Some(Compression { brotli_level: 0, ..Compression::default() }),
///     ..HttpOptions::default()
/// };
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    /// gzip level, 1 (fastest, nginx's default) to 9; 0 turns gzip off.
    pub gzip_level: u32,
    /// Brotli quality, 1 to 11; 0 turns Brotli off on the fly (pre-compressed `.br` files are
    /// still served, see [`StaticDir::precompressed`](super::StaticDir::precompressed)).
    pub brotli_level: u32,
    /// Bodies shorter than this are sent as they are (nginx's `gzip_min_length`).
    pub min_length: u64,
    /// Bodies (or file regions) up to this size are compressed whole into memory and sent
    /// with a `Content-Length`; larger files are compressed in pieces and sent chunked.
    pub max_buffered: u64,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            gzip_level: 1,
            brotli_level: 4,
            min_length: 256,
            max_buffered: 1024 * 1024,
        }
    }
}

impl Compression {
    /// The codings this configuration produces on the fly, in the server's preference order.
    fn offered(&self) -> &'static [Coding] {
        match (self.brotli_level > 0, self.gzip_level > 0) {
            (true, true) => &[Coding::Brotli, Coding::Gzip],
            (true, false) => &[Coding::Brotli],
            (false, true) => &[Coding::Gzip],
            (false, false) => &[],
        }
    }
}

/// A file is read in pieces of this size when it is compressed as a stream.
const FILE_PIECE: usize = 64 * 1024;

/// Compress `body` for the request's `accept` if the response qualifies (see the module
/// docs), rewriting `headers`; otherwise return it unchanged (with `Vary` added when only the
/// request kept it from being compressed). A failure to read a file region is an error: the
/// caller answers 500.
pub(crate) fn encode_response(
    cfg: &Compression,
    accept: &AcceptEncoding,
    status: StatusCode,
    headers: &mut HeaderMap,
    body: Body,
) -> io::Result<Body> {
    if !matches!(status.as_u16(), 200 | 403 | 404) {
        return Ok(body);
    }
    let long_enough = match &body.kind {
        Kind::Empty => false,
        Kind::Bytes(b) => b.len() as u64 >= cfg.min_length,
        Kind::File { len, .. } => *len >= cfg.min_length,
        Kind::Stream(_) => true,
        // Each chunk must reach the client when it is sent (server-sent events).
        Kind::Channel(_) => false,
    };
    if !long_enough
        || headers.contains_key(CONTENT_ENCODING)
        || headers.contains_key(CONTENT_RANGE)
        || !headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(is_compressible)
        || headers.get_all(CACHE_CONTROL).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.to_ascii_lowercase().contains("no-transform"))
        })
    {
        return Ok(body);
    }
    set_vary(headers);
    let Some(coding) = accept.choose(cfg.offered()) else {
        return Ok(body);
    };
    let body = match body.kind {
        Kind::Bytes(b) => Body::from(compress_whole(cfg, coding, &b)),
        Kind::File { file, offset, len } if len <= cfg.max_buffered => {
            let mut buf = vec![0u8; len as usize];
            file.read_exact_at(&mut buf, offset)?;
            Body::from(compress_whole(cfg, coding, &buf))
        }
        Kind::File { file, offset, len } => Body {
            kind: Kind::Stream(Box::new(Encoded::new(
                cfg,
                coding,
                Box::new(FilePieces {
                    file,
                    offset,
                    left: len,
                }),
            ))),
        },
        Kind::Stream(src) => Body {
            kind: Kind::Stream(Box::new(Encoded::new(cfg, coding, src))),
        },
        Kind::Empty => return Ok(Body::empty()),
        kind @ Kind::Channel(_) => return Ok(Body { kind }),
    };
    mark_encoded(headers, coding);
    Ok(body)
}

/// Add `Accept-Encoding` to the response's `Vary`.
pub(crate) fn set_vary(headers: &mut HeaderMap) {
    let existing = headers.get(VARY).and_then(|v| v.to_str().ok());
    if let Some(v) = add_vary(existing).and_then(|v| HeaderValue::from_str(&v).ok()) {
        headers.insert(VARY, v);
    }
}

/// The headers of a response whose body is now `coding`-encoded.
fn mark_encoded(headers: &mut HeaderMap, coding: Coding) {
    headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.as_str()));
    headers.remove(CONTENT_LENGTH);
    headers.remove(ACCEPT_RANGES);
    if let Some(tag) = headers.get(ETAG).and_then(|v| v.to_str().ok()) {
        if let Ok(v) = HeaderValue::from_str(&weak_etag(tag)) {
            headers.insert(ETAG, v);
        }
    }
}

thread_local! {
    /// The loop's gzip compressors (raw deflate), one per level in use, reset per response.
    static GZIP: RefCell<Vec<(u32, Compress)>> = const { RefCell::new(Vec::new()) };
}

/// `data` compressed whole with `coding`.
fn compress_whole(cfg: &Compression, coding: Coding, data: &[u8]) -> Vec<u8> {
    match coding {
        Coding::Gzip => gzip_whole(cfg.gzip_level, data),
        Coding::Brotli => {
            let mut out = Vec::with_capacity(data.len() / 4 + 64);
            {
                let mut w = brotli::CompressorWriter::new(
                    &mut out,
                    4096,
                    cfg.brotli_level.min(11),
                    brotli_window(data.len()),
                );
                // Writing into a Vec cannot fail.
                let _ = w.write_all(data);
            }
            out
        }
    }
}

/// Brotli's window (log2) for a body of `len` bytes: no larger than the body needs (less
/// memory for the encoder and the decoder), between 10 and 22.
fn brotli_window(len: usize) -> u32 {
    let bits = usize::BITS - len.max(1).leading_zeros();
    bits.clamp(10, 22)
}

/// A gzip member (RFC 1952) of `data`: header, raw deflate from the loop's shared compressor,
/// CRC-32 and length.
fn gzip_whole(level: u32, data: &[u8]) -> Vec<u8> {
    let level = level.clamp(1, 9);
    let mut out = Vec::with_capacity(data.len() / 3 + 64);
    out.extend_from_slice(&GZIP_HEADER);
    GZIP.with(|g| {
        let mut g = g.borrow_mut();
        let i = match g.iter().position(|(l, _)| *l == level) {
            Some(i) => i,
            None => {
                g.push((level, Compress::new(flate2::Compression::new(level), false)));
                g.len() - 1
            }
        };
        let c = &mut g[i].1;
        c.reset();
        deflate_into(c, data, &mut out, FlushCompress::Finish);
    });
    gzip_trailer(&mut out, data);
    out
}

/// The fixed gzip header: deflate, no name, no time, OS unknown.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

fn gzip_trailer(out: &mut Vec<u8>, data: &[u8]) {
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
}

/// Run `c` over all of `input` with `flush`, appending to `out` (grown as needed).
fn deflate_into(c: &mut Compress, mut input: &[u8], out: &mut Vec<u8>, flush: FlushCompress) {
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        let before = c.total_in();
        let status = c.compress_vec(input, out, flush);
        input = &input[(c.total_in() - before) as usize..];
        match status {
            Ok(Status::StreamEnd) => return,
            Ok(_)
                if input.is_empty()
                    && out.capacity() > out.len()
                    && flush != FlushCompress::Finish =>
            {
                return
            }
            Ok(_) => {}
            Err(e) => {
                // Only a misuse of the stream (impossible here) makes deflate fail.
                tracing::error!("gzip: deflate failed: {e}");
                return;
            }
        }
    }
}

/// A file region read in pieces (for compression as a stream).
struct FilePieces {
    file: File,
    offset: u64,
    left: u64,
}

impl Iterator for FilePieces {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.left == 0 {
            return None;
        }
        let n = (self.left as usize).min(FILE_PIECE);
        let mut buf = vec![0u8; n];
        match self.file.read_at(&mut buf, self.offset) {
            Ok(0) => None, // the file shrank: end the body where it ends
            Ok(got) => {
                buf.truncate(got);
                self.offset += got as u64;
                self.left -= got as u64;
                Some(Bytes::from(buf))
            }
            Err(e) => {
                tracing::warn!("gzip: reading a file to compress: {e}");
                self.left = 0;
                None
            }
        }
    }
}

/// A stream's own encoder.
enum Encoder {
    Gzip {
        c: Box<Compress>,
        crc: flate2::Crc,
        header: bool,
    },
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
}

/// A chunk source compressed as it is pulled: each input chunk becomes the compressed bytes
/// it produced up to a flush, and the end of the input the stream's trailer.
struct Encoded {
    src: ChunkSource,
    enc: Option<Encoder>,
}

impl Encoded {
    fn new(cfg: &Compression, coding: Coding, src: ChunkSource) -> Encoded {
        let enc = match coding {
            Coding::Gzip => Encoder::Gzip {
                c: Box::new(Compress::new(
                    flate2::Compression::new(cfg.gzip_level.clamp(1, 9)),
                    false,
                )),
                crc: flate2::Crc::new(),
                header: false,
            },
            Coding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                cfg.brotli_level.min(11),
                22,
            ))),
        };
        Encoded {
            src,
            enc: Some(enc),
        }
    }
}

impl Iterator for Encoded {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let enc = self.enc.as_mut()?;
        let chunk = self.src.next();
        let mut out = Vec::new();
        match enc {
            Encoder::Gzip { c, crc, header } => {
                if !*header {
                    out.extend_from_slice(&GZIP_HEADER);
                    *header = true;
                }
                match &chunk {
                    Some(data) => {
                        crc.update(data);
                        deflate_into(c, data, &mut out, FlushCompress::Sync);
                    }
                    None => {
                        deflate_into(c, &[], &mut out, FlushCompress::Finish);
                        out.extend_from_slice(&crc.sum().to_le_bytes());
                        out.extend_from_slice(&crc.amount().to_le_bytes());
                    }
                }
            }
            Encoder::Brotli(w) => match &chunk {
                Some(data) => {
                    let _ = w.write_all(data);
                    let _ = w.flush();
                    out = std::mem::take(w.get_mut());
                }
                None => {
                    let Some(Encoder::Brotli(w)) = self.enc.take() else {
                        return None;
                    };
                    out = w.into_inner();
                }
            },
        }
        if chunk.is_none() {
            self.enc = None;
        }
        Some(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn gunzip(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(b)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn unbrotli(b: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        brotli::Decompressor::new(b, 4096)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n).map(|i| b"herd compresses text "[i % 21]).collect()
    }

    #[test]
    fn whole_bodies_round_trip_and_shrink() {
        let cfg = Compression::default();
        for n in [0, 1, 300, 70_000, 1 << 20] {
            let data = text(n);
            let gz = compress_whole(&cfg, Coding::Gzip, &data);
            assert_eq!(gunzip(&gz), data, "gzip {n}");
            let br = compress_whole(&cfg, Coding::Brotli, &data);
            assert_eq!(unbrotli(&br), data, "br {n}");
            if n >= 300 {
                assert!(
                    gz.len() < n / 4 && br.len() < n / 4,
                    "{n}: {} {}",
                    gz.len(),
                    br.len()
                );
            }
        }
        // The shared compressor is reset between bodies.
        let a = compress_whole(&cfg, Coding::Gzip, b"first body, first body");
        let b = compress_whole(&cfg, Coding::Gzip, b"first body, first body");
        assert_eq!(a, b);
    }

    #[test]
    fn streams_flush_each_chunk() {
        let cfg = Compression::default();
        for coding in [Coding::Gzip, Coding::Brotli] {
            let chunks: Vec<Bytes> = (0..5)
                .map(|i| Bytes::from(format!("event {i}\n").repeat(50)))
                .collect();
            let whole: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
            let mut enc = Encoded::new(&cfg, coding, Box::new(chunks.into_iter()));
            let mut got = Vec::new();
            let mut pieces = 0;
            for piece in enc.by_ref() {
                pieces += 1;
                got.extend_from_slice(&piece);
            }
            assert_eq!(
                pieces, 6,
                "{coding:?}: a piece per chunk and one for the end"
            );
            let plain = match coding {
                Coding::Gzip => gunzip(&got),
                Coding::Brotli => unbrotli(&got),
            };
            assert_eq!(plain, whole, "{coding:?}");
            assert!(enc.next().is_none());
        }
    }

    #[test]
    fn what_qualifies() {
        let cfg = Compression::default();
        let gz = AcceptEncoding::parse(["gzip"]);
        let run = |status: u16, h: &[(&str, &str)], body: Body, accept: &AcceptEncoding| {
            let mut headers = HeaderMap::new();
            for (k, v) in h {
                headers.append(
                    ::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            let b = encode_response(
                &cfg,
                accept,
                StatusCode::from_u16(status).unwrap(),
                &mut headers,
                body,
            )
            .unwrap();
            (headers, b)
        };
        let html = [("content-type", "text/html"), ("etag", "\"1-2\"")];
        let (h, b) = run(200, &html, Body::from(text(1000)), &gz);
        assert_eq!(h["content-encoding"], "gzip");
        assert_eq!(h["vary"], "Accept-Encoding");
        assert_eq!(h["etag"], "W/\"1-2\"");
        assert_eq!(gunzip(b.as_bytes().unwrap()), text(1000));
        // Not for the client: unchanged, but Vary.
        let (h, b) = run(
            200,
            &html,
            Body::from(text(1000)),
            &AcceptEncoding::default(),
        );
        assert!(h.get("content-encoding").is_none());
        assert_eq!(h["vary"], "Accept-Encoding");
        assert_eq!(b.len(), Some(1000));
        // Too short, wrong type, wrong status, already encoded, a range, no-transform: untouched.
        for (status, hs, n) in [
            (200, &[("content-type", "text/html")][..], 100),
            (200, &[("content-type", "image/png")][..], 1000),
            (301, &[("content-type", "text/html")][..], 1000),
            (
                200,
                &[("content-type", "text/html"), ("content-encoding", "br")][..],
                1000,
            ),
            (
                200,
                &[
                    ("content-type", "text/html"),
                    ("content-range", "bytes 0-9/10"),
                ][..],
                1000,
            ),
            (
                200,
                &[
                    ("content-type", "text/html"),
                    ("cache-control", "public, No-Transform"),
                ][..],
                1000,
            ),
        ] {
            let (h, b) = run(status, hs, Body::from(text(n)), &gz);
            assert_eq!(
                h.get("content-encoding").map(|v| v.to_str().unwrap()),
                hs.iter()
                    .find(|(k, _)| *k == "content-encoding")
                    .map(|(_, v)| *v),
                "{hs:?}"
            );
            assert!(h.get("vary").is_none(), "{hs:?}");
            assert_eq!(b.len(), Some(n as u64));
        }
        let (h, _) = run(
            404,
            &[("content-type", "text/plain"), ("vary", "Origin")],
            Body::from(text(500)),
            &gz,
        );
        assert_eq!(
            (
                h["content-encoding"].to_str().unwrap(),
                h["vary"].to_str().unwrap()
            ),
            ("gzip", "Origin, Accept-Encoding")
        );
    }

    #[test]
    fn brotli_windows_fit_the_body() {
        assert_eq!(brotli_window(0), 10);
        assert_eq!(brotli_window(100_000), 17);
        assert_eq!(brotli_window(usize::MAX), 22);
    }
}
