//! Codecs: how a byte stream becomes messages and messages become bytes.
//!
//! A codec is per connection (the handler makes one for every accepted connection) and is pure
//! framing logic: it never touches a socket. The event loop calls [`Decoder::decode`] on the
//! bytes it has read — usually straight out of the loop's scratch buffer, so a decoded item can
//! borrow them without a copy — and [`Encoder::encode`] to append replies to the connection's
//! output buffer. The shape follows tokio-util's `Decoder`/`Encoder` so codecs port easily; the
//! differences are that decoding works on a borrowed slice and reports how many bytes it
//! consumed (so items may borrow the input), and that the loop, not the codec, owns buffers.
//!
//! Built-ins: [`BytesCodec`] (whatever arrived), [`LinesCodec`] (`\n`-terminated lines) and
//! [`LengthDelimited`] (a 4-byte big-endian length prefix, checked against a maximum before
//! anything is buffered).

use std::fmt;

/// Why an encoder refused an item. The loop counts it, logs it and closes the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError {
    /// A short, static label used as the counted reason (e.g. `"frame too large"`).
    pub reason: &'static str,
    /// Detail for the log line.
    pub detail: String,
}

impl CodecError {
    /// A new error with a static reason and a detail string.
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        CodecError {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            f.write_str(self.reason)
        } else {
            write!(f, "{}: {}", self.reason, self.detail)
        }
    }
}

impl std::error::Error for CodecError {}

/// Turns bytes read from a connection into items.
///
/// The loop calls `decode` with every unconsumed byte it holds for the connection. The codec
/// returns how many bytes it consumed and, if a whole item was there, the item:
/// - `Ok((0, None))`: nothing complete yet; the loop keeps the bytes and calls again when more
///   arrive (it copies only this unconsumed tail into the connection's own buffer);
/// - `Ok((n, Some(item)))`: an item built from the first `n` bytes; it may borrow `src`;
/// - `Ok((n, None))` with `n > 0`: bytes consumed without an item (skipped or buffered inside
///   the codec); the loop calls again on the rest;
/// - `Err(e)`: the input is invalid; the loop hands `e` to the handler's `on_decode_error`, counts
///   it, logs it and closes the connection.
///
/// `src` is mutable so codecs may transform in place (WebSocket unmasking). A decoder must check
/// any length it reads from the wire against its limit before it buffers or allocates.
pub trait Decoder {
    /// The decoded item; it may borrow the input slice.
    type Item<'a>;
    /// The error reported for invalid input.
    type Error: fmt::Display;
    /// Decode at most one item from the front of `src`.
    fn decode<'a>(
        &mut self,
        src: &'a mut [u8],
    ) -> Result<(usize, Option<Self::Item<'a>>), Self::Error>;
}

/// Appends the wire form of an item to a connection's output buffer.
pub trait Encoder<T> {
    /// Append `item` to `dst`. On error nothing useful may have been appended; the loop discards
    /// the connection's output and closes it.
    fn encode(&mut self, item: T, dst: &mut Vec<u8>) -> Result<(), CodecError>;

    /// The bytes `encode` would append for `item`, when they are the item itself (a
    /// pass-through encoding such as [`BytesCodec`]'s). `Conn::send` may then write a large
    /// item straight to the socket instead of copying it into the output buffer. The default
    /// says no, and `encode` is always used.
    fn as_bytes<'b>(&self, item: &'b T) -> Option<&'b [u8]> {
        let _ = item;
        None
    }
}

/// Passes through whatever bytes arrived, as they arrived. Encodes byte slices verbatim.
///
/// ```
/// use herd_core::codec::{BytesCodec, Decoder};
/// let mut data = *b"hello";
/// let (used, item) = BytesCodec.decode(&mut data).unwrap();
/// assert_eq!((used, item), (5, Some(&b"hello"[..])));
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct BytesCodec;

impl Decoder for BytesCodec {
    type Item<'a> = &'a [u8];
    type Error = CodecError;
    fn decode<'a>(&mut self, src: &'a mut [u8]) -> Result<(usize, Option<&'a [u8]>), CodecError> {
        if src.is_empty() {
            Ok((0, None))
        } else {
            Ok((src.len(), Some(&*src)))
        }
    }
}

impl Encoder<&[u8]> for BytesCodec {
    fn encode(&mut self, item: &[u8], dst: &mut Vec<u8>) -> Result<(), CodecError> {
        dst.extend_from_slice(item);
        Ok(())
    }

    fn as_bytes<'b>(&self, item: &'b &[u8]) -> Option<&'b [u8]> {
        Some(item)
    }
}

/// `\n`-terminated lines (a trailing `\r` is stripped), at most `max_len` bytes each.
///
/// Items are the line's bytes without the terminator; the encoder appends `\n`.
///
/// ```
/// use herd_core::codec::{Decoder, LinesCodec};
/// let mut codec = LinesCodec::new(64);
/// let mut data = *b"one\r\ntwo";
/// let (used, line) = codec.decode(&mut data).unwrap();
/// assert_eq!((used, line), (5, Some(&b"one"[..])));
/// assert_eq!(codec.decode(&mut data[5..]).unwrap(), (0, None));
/// ```
#[derive(Debug, Clone)]
pub struct LinesCodec {
    max_len: usize,
    /// How far the previous call already searched (avoids rescanning a growing partial line).
    scanned: usize,
}

impl LinesCodec {
    /// Lines longer than `max_len` bytes (excluding the terminator) are an error.
    pub fn new(max_len: usize) -> Self {
        LinesCodec {
            max_len,
            scanned: 0,
        }
    }
}

impl Decoder for LinesCodec {
    type Item<'a> = &'a [u8];
    type Error = CodecError;
    fn decode<'a>(&mut self, src: &'a mut [u8]) -> Result<(usize, Option<&'a [u8]>), CodecError> {
        let start = self.scanned.min(src.len());
        let limit = src.len().min(self.max_len + 2);
        match src[start..limit].iter().position(|&b| b == b'\n') {
            Some(i) => {
                let nl = start + i;
                self.scanned = 0;
                let mut line = &src[..nl];
                if let [rest @ .., b'\r'] = line {
                    line = rest;
                }
                if line.len() > self.max_len {
                    return Err(CodecError::new(
                        "line too long",
                        format!("{} bytes", line.len()),
                    ));
                }
                Ok((nl + 1, Some(line)))
            }
            None if src.len() > self.max_len + 1 => Err(CodecError::new(
                "line too long",
                format!("no newline within {} bytes", self.max_len),
            )),
            None => {
                self.scanned = limit;
                Ok((0, None))
            }
        }
    }
}

impl Encoder<&[u8]> for LinesCodec {
    fn encode(&mut self, item: &[u8], dst: &mut Vec<u8>) -> Result<(), CodecError> {
        if item.len() > self.max_len {
            return Err(CodecError::new(
                "line too long",
                format!("{} bytes", item.len()),
            ));
        }
        dst.extend_from_slice(item);
        dst.push(b'\n');
        Ok(())
    }
}

impl Encoder<&str> for LinesCodec {
    fn encode(&mut self, item: &str, dst: &mut Vec<u8>) -> Result<(), CodecError> {
        self.encode(item.as_bytes(), dst)
    }
}

/// Frames prefixed by a 4-byte big-endian body length; items are the bodies.
///
/// The length is checked against `max_frame` as soon as the 4 prefix bytes are there, before any
/// of the body is buffered, so a peer announcing 4 GiB is rejected at once.
///
/// ```
/// use herd_core::codec::{Decoder, Encoder, LengthDelimited};
/// let mut codec = LengthDelimited::new(1024);
/// let mut wire = Vec::new();
/// codec.encode(&b"ping"[..], &mut wire).unwrap();
/// assert_eq!(wire, b"\0\0\0\x04ping");
/// let (used, body) = codec.decode(&mut wire).unwrap();
/// assert_eq!((used, body), (8, Some(&b"ping"[..])));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LengthDelimited {
    max_frame: usize,
}

impl LengthDelimited {
    /// Bodies longer than `max_frame` bytes are an error, on decode and on encode.
    pub fn new(max_frame: usize) -> Self {
        LengthDelimited { max_frame }
    }
}

impl Decoder for LengthDelimited {
    type Item<'a> = &'a [u8];
    type Error = CodecError;
    fn decode<'a>(&mut self, src: &'a mut [u8]) -> Result<(usize, Option<&'a [u8]>), CodecError> {
        let Some(prefix) = src.get(..4) else {
            return Ok((0, None));
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len > self.max_frame {
            return Err(CodecError::new(
                "frame too large",
                format!("{len} bytes > max {}", self.max_frame),
            ));
        }
        match src.get(4..4 + len) {
            Some(body) => Ok((4 + len, Some(body))),
            None => Ok((0, None)),
        }
    }
}

impl Encoder<&[u8]> for LengthDelimited {
    fn encode(&mut self, item: &[u8], dst: &mut Vec<u8>) -> Result<(), CodecError> {
        if item.len() > self.max_frame {
            return Err(CodecError::new(
                "frame too large",
                format!("{} bytes > max {}", item.len(), self.max_frame),
            ));
        }
        dst.extend_from_slice(&(item.len() as u32).to_be_bytes());
        dst.extend_from_slice(item);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decode everything from `chunks` fed one by one, keeping unconsumed tails like the loop.
    fn decode_all<D>(codec: &mut D, chunks: &[&[u8]]) -> Result<Vec<Vec<u8>>, String>
    where
        D: for<'a> Decoder<Item<'a> = &'a [u8]>,
    {
        let mut held = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            held.extend_from_slice(chunk);
            loop {
                let (used, item) = codec.decode(&mut held).map_err(|e| e.to_string())?;
                if let Some(item) = item {
                    out.push(item.to_vec());
                }
                if used == 0 {
                    break;
                }
                held.drain(..used);
            }
        }
        Ok(out)
    }

    #[test]
    fn lines_split_and_joined() {
        let wire = b"a\r\nbb\n\nccc\n";
        let whole = decode_all(&mut LinesCodec::new(8), &[wire]).unwrap();
        assert_eq!(
            whole,
            vec![b"a".to_vec(), b"bb".to_vec(), vec![], b"ccc".to_vec()]
        );
        for cut in 0..wire.len() {
            let (a, b) = wire.split_at(cut);
            assert_eq!(decode_all(&mut LinesCodec::new(8), &[a, b]).unwrap(), whole);
        }
    }

    #[test]
    fn lines_too_long_fails_before_newline() {
        let mut c = LinesCodec::new(4);
        assert!(decode_all(&mut c, &[b"abcdefgh"]).is_err());
        let mut c = LinesCodec::new(4);
        assert_eq!(
            decode_all(&mut c, &[b"abcd\r\n"]).unwrap(),
            vec![b"abcd".to_vec()]
        );
    }

    #[test]
    fn length_delimited_rejects_huge_prefix_at_once() {
        let mut c = LengthDelimited::new(1 << 20);
        let mut wire = [0xff, 0xff, 0xff, 0xff];
        assert_eq!(c.decode(&mut wire).unwrap_err().reason, "frame too large");
        let mut short = [0u8, 0, 0];
        assert_eq!(c.decode(&mut short).unwrap(), (0, None));
    }

    #[test]
    fn length_delimited_encode_checks_limit() {
        let mut c = LengthDelimited::new(3);
        let mut out = Vec::new();
        assert!(c.encode(&b"abcd"[..], &mut out).is_err());
    }

    proptest! {
        #[test]
        fn length_delimited_any_split(bodies in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..300), 0..8), cut in 0usize..4000) {
            let mut c = LengthDelimited::new(300);
            let mut wire = Vec::new();
            for b in &bodies { c.encode(&b[..], &mut wire).unwrap(); }
            let cut = cut.min(wire.len());
            let (a, b) = wire.split_at(cut);
            prop_assert_eq!(decode_all(&mut c, &[a, b]).unwrap(), bodies);
        }

        #[test]
        fn decoders_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_all(&mut LengthDelimited::new(64), &[&data]);
            let _ = decode_all(&mut LinesCodec::new(16), &[&data]);
        }
    }
}
