//! The WebSocket codecs on the loop side: [`WsCodec`] (herd-core's [`Decoder`] around
//! herd-proto's sans-IO [`ws::Decoder`](herd_proto::ws::Decoder)) and [`UpgradeCodec`], the
//! per-connection codec of a [`WsProtocol`](super::WsProtocol) that starts as HTTP/1.1 and switches
//! to WebSocket framing after the `101` response.
//!
//! Copies: a single-frame data message that lies whole in the bytes the loop read (the common
//! case) is unmasked in place and handed out borrowed from the read buffer, with no copy. When
//! such a frame is only partly there (and at most [`WAIT_MAX`] bytes long), the codec consumes
//! nothing and lets the loop keep the tail, so it still comes out borrowed once complete.
//! Everything else goes through the proto decoder: fragmented messages are reassembled in its
//! buffer and, because it lends them from itself while a core codec's item may only borrow the
//! input, copied out once more into an owned item ([`WsEvent`] holds [`Cow`]s); a Ping, Pong or
//! Close met on that path is copied too (at most 125 bytes). The fast path takes a frame only
//! when it passes the rules the proto decoder checks for a whole frame at a frame boundary
//! (masking, RSV bits, opcode, sizes) and leaves every other case to it; the one error it
//! reports itself is invalid UTF-8 in such a frame (1007, as the proto decoder would). A text
//! frame that waits is unmasked and checked as far as it has arrived on every call, so bad
//! UTF-8 fails the connection as soon as its bytes are read, not when the frame is complete.
//!
//! With permessage-deflate negotiated, a compressed message (RSV1) always takes the proto
//! decoder's path and is inflated into an owned item, its size checked against
//! `max_message` while inflating (1009), its UTF-8 after (1007); uncompressed messages of such
//! a connection keep the paths above.
//!
//! It never writes (Pong and Close replies are the server's job), reads no clock and buffers
//! nothing of its own. Its caller is the event loop, for [`WsProtocol`](super::WsProtocol).

use std::borrow::Cow;
use std::fmt;

use herd_proto::http1::HttpError;
use herd_proto::ws::{
    self, apply_mask, parse_header, Message, Opcode, Role, Utf8Validator, WsError,
};

use super::deflate::RxDeflate;
use crate::codec::Decoder;
use crate::http::{Event, HttpCodec};

/// A whole frame of at most this many bytes (header included) is waited for in the loop's
/// read buffer rather than streamed into the proto decoder's reassembly buffer.
pub const WAIT_MAX: u64 = 256 * 1024;

/// One message or control frame from the peer. Borrowed from the read buffer when it arrived
/// as one whole frame, owned when it was reassembled from fragments or partial reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent<'a> {
    /// A complete text message (valid UTF-8).
    Text(Cow<'a, str>),
    /// A complete binary message.
    Binary(Cow<'a, [u8]>),
    /// A Ping (the server answers it with a Pong).
    Ping(Cow<'a, [u8]>),
    /// A Pong.
    Pong(Cow<'a, [u8]>),
    /// A Close, with its code and reason if it carried any.
    Close(Option<(u16, Cow<'a, str>)>),
}

impl WsEvent<'_> {
    /// An owned copy of a message the proto decoder lent.
    fn owned(msg: Message<'_>) -> WsEvent<'static> {
        match msg {
            Message::Text(t) => WsEvent::Text(Cow::Owned(t.to_owned())),
            Message::Binary(b) => WsEvent::Binary(Cow::Owned(b.to_vec())),
            Message::Ping(b) => WsEvent::Ping(Cow::Owned(b.to_vec())),
            Message::Pong(b) => WsEvent::Pong(Cow::Owned(b.to_vec())),
            Message::Close(c) => WsEvent::Close(c.map(|(code, r)| (code, Cow::Owned(r.into())))),
            // Inflated by the codec before it gets here; kept as its bytes if ever reached.
            Message::Compressed { data, .. } => WsEvent::Binary(Cow::Owned(data.to_vec())),
        }
    }
}

/// Decodes WebSocket frames sent by a client (server role) into [`WsEvent`]s.
///
/// ```
/// use herd_core::codec::Decoder;
/// use herd_core::ws::{WsCodec, WsEvent};
/// use herd_proto::ws::{encode_frame, Opcode};
///
/// let mut wire = Vec::new();
/// encode_frame(&mut wire, true, Opcode::Text, b"hi", Some([1, 2, 3, 4]));
/// let mut codec = WsCodec::new(1024, 1024);
/// let (used, ev) = codec.decode(&mut wire).unwrap();
/// assert_eq!(used, 8);
/// assert_eq!(ev, Some(WsEvent::Text("hi".into())));
/// ```
#[derive(Debug)]
pub struct WsCodec {
    dec: ws::Decoder,
    max_frame: u64,
    max_message: u64,
    /// A Close was received: the proto decoder ignores what follows.
    closed: bool,
    /// A protocol error was reported: it is repeated on every call.
    failed: Option<WsError>,
    /// Payload bytes of the waiting text frame at the front of the input that are already
    /// unmasked in place and checked by `utf8` (0 when no frame waits).
    checked: usize,
    /// UTF-8 state after the first `checked` payload bytes of the waiting text frame.
    utf8: Utf8Validator,
    /// permessage-deflate, once negotiated.
    deflate: Option<Box<RxDeflate>>,
}

impl WsCodec {
    /// A server-role codec failing with 1009 beyond `max_frame` (one frame's payload) or
    /// `max_message` (a whole message) bytes.
    pub fn new(max_frame: u64, max_message: u64) -> WsCodec {
        WsCodec {
            dec: ws::Decoder::with_limits(Role::Server, max_frame, max_message),
            max_frame,
            max_message,
            closed: false,
            failed: None,
            checked: 0,
            utf8: Utf8Validator::new(),
            deflate: None,
        }
    }

    /// Accept permessage-deflate compressed messages with the negotiated `params`.
    pub fn with_deflate(mut self, params: &herd_proto::ws::deflate::DeflateParams) -> Self {
        self.dec.set_permessage_deflate(true);
        self.deflate = Some(Box::new(RxDeflate::new(params)));
        self
    }

    /// Where the no-copy path applies: a whole, final, masked Text/Binary frame at a frame
    /// boundary, within the limits.
    fn plan(&self, src: &[u8]) -> Plan {
        if self.closed || self.dec.is_mid_message() {
            return Plan::Proto;
        }
        let Ok(Some(h)) = parse_header(src) else {
            return Plan::Proto;
        };
        let plain = h.fin
            && h.rsv == 0
            && matches!(h.opcode, Opcode::Text | Opcode::Binary)
            && h.payload_len <= self.max_frame
            && h.payload_len <= self.max_message;
        let Some(key) = h.mask.filter(|_| plain) else {
            return Plan::Proto;
        };
        let start = h.buffer_len();
        let total = start as u64 + h.payload_len;
        if total > src.len() as u64 {
            return if total <= WAIT_MAX {
                Plan::Wait {
                    start,
                    key,
                    text: h.opcode == Opcode::Text,
                }
            } else {
                Plan::Proto
            };
        }
        Plan::Whole {
            start,
            // `total` fits in `src`, so in usize.
            end: total as usize,
            key,
            text: h.opcode == Opcode::Text,
        }
    }
}

/// What [`WsCodec::plan`] decided.
enum Plan {
    /// Let the proto decoder handle it.
    Proto,
    /// A valid frame that is not all here yet, payload from `start`: consume nothing.
    Wait {
        start: usize,
        key: [u8; 4],
        text: bool,
    },
    /// A whole frame, payload at `start..end`.
    Whole {
        start: usize,
        end: usize,
        key: [u8; 4],
        text: bool,
    },
}

impl Decoder for WsCodec {
    type Item<'a> = WsEvent<'a>;
    type Error = WsError;

    fn decode<'a>(&mut self, src: &'a mut [u8]) -> Result<(usize, Option<WsEvent<'a>>), WsError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        match self.plan(src) {
            Plan::Wait { start, key, text } => {
                if text {
                    // Unmask and check what has arrived beyond what earlier calls checked, so
                    // bad UTF-8 fails now (1007) rather than when the frame is complete.
                    let from = (start + self.checked).min(src.len());
                    apply_mask(&mut src[from..], key, self.checked % 4);
                    if self.utf8.feed(&src[from..]).is_err() {
                        return Err(self.fail(WsError::invalid_payload("text is not UTF-8")));
                    }
                    self.checked = src.len() - start;
                }
                Ok((0, None))
            }
            Plan::Whole {
                start,
                end,
                key,
                text,
            } => {
                let done = std::mem::take(&mut self.checked);
                if done > 0 {
                    self.utf8.reset();
                }
                apply_mask(&mut src[start + done..end], key, done % 4);
                let payload: &'a [u8] = &src[start..end];
                if !text {
                    return Ok((end, Some(WsEvent::Binary(Cow::Borrowed(payload)))));
                }
                match std::str::from_utf8(payload) {
                    Ok(text) => Ok((end, Some(WsEvent::Text(Cow::Borrowed(text))))),
                    Err(_) => Err(self.fail(WsError::invalid_payload("text is not UTF-8"))),
                }
            }
            Plan::Proto => match self.dec.decode(src) {
                Ok((used, Some(Message::Compressed { text, data }))) => {
                    let Some(rx) = self.deflate.as_mut() else {
                        return Err(self.fail(WsError::protocol("RSV1 without the extension")));
                    };
                    let plain = match rx.inflate(data, self.max_message) {
                        Ok(plain) => plain,
                        Err(e) => return Err(self.fail(e)),
                    };
                    if !text {
                        return Ok((used, Some(WsEvent::Binary(Cow::Owned(plain)))));
                    }
                    match String::from_utf8(plain) {
                        Ok(t) => Ok((used, Some(WsEvent::Text(Cow::Owned(t))))),
                        Err(_) => Err(self.fail(WsError::invalid_payload("text is not UTF-8"))),
                    }
                }
                Ok((used, Some(msg))) => {
                    if matches!(msg, Message::Close(_)) {
                        self.closed = true;
                    }
                    Ok((used, Some(WsEvent::owned(msg))))
                }
                Ok((used, None)) => Ok((used, None)),
                Err(e) => Err(self.fail(e)),
            },
        }
    }
}

impl WsCodec {
    fn fail(&mut self, e: WsError) -> WsError {
        self.failed = Some(e);
        e
    }
}

/// Why an [`UpgradeCodec`] failed. HTTP errors are reported as [`Event::Error`] instead, so in
/// practice this is always the WebSocket variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeError {
    /// From the HTTP codec.
    Http(HttpError),
    /// A WebSocket protocol violation: answered with a Close carrying its code.
    Ws(WsError),
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpgradeError::Http(e) => write!(f, "http: {e}"),
            UpgradeError::Ws(e) => e.fmt(f),
        }
    }
}

/// What an [`UpgradeCodec`] decoded.
// Large only because an HTTP head is; boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Upgraded<'a> {
    /// An HTTP event (before the upgrade).
    Http(Event<'a>),
    /// A WebSocket event (after it).
    Ws(WsEvent<'a>),
}

/// The codec of a connection that may switch from HTTP/1.1 to WebSocket: the server replaces
/// the `Http` variant by `Ws` right after queuing the `101` response, and the loop decodes the
/// bytes after the request head (if the client sent frames at once) with the new variant.
#[derive(Debug)]
pub enum UpgradeCodec {
    /// Reading HTTP requests.
    Http(HttpCodec),
    /// Reading WebSocket frames.
    Ws(WsCodec),
}

impl Decoder for UpgradeCodec {
    type Item<'a> = Upgraded<'a>;
    type Error = UpgradeError;

    fn decode<'a>(
        &mut self,
        src: &'a mut [u8],
    ) -> Result<(usize, Option<Upgraded<'a>>), UpgradeError> {
        match self {
            UpgradeCodec::Http(c) => match c.decode(src) {
                Ok((n, ev)) => Ok((n, ev.map(Upgraded::Http))),
                Err(e) => Err(UpgradeError::Http(e)),
            },
            UpgradeCodec::Ws(c) => match c.decode(src) {
                Ok((n, ev)) => Ok((n, ev.map(Upgraded::Ws))),
                Err(e) => Err(UpgradeError::Ws(e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_proto::ws::encode_frame;
    use proptest::prelude::*;

    const KEY: Option<[u8; 4]> = Some([9, 8, 7, 6]);

    /// An owned, comparable event.
    fn own(ev: WsEvent<'_>) -> WsEvent<'static> {
        match ev {
            WsEvent::Text(t) => WsEvent::Text(Cow::Owned(t.into_owned())),
            WsEvent::Binary(b) => WsEvent::Binary(Cow::Owned(b.into_owned())),
            WsEvent::Ping(b) => WsEvent::Ping(Cow::Owned(b.into_owned())),
            WsEvent::Pong(b) => WsEvent::Pong(Cow::Owned(b.into_owned())),
            WsEvent::Close(c) => {
                WsEvent::Close(c.map(|(code, r)| (code, Cow::Owned(r.into_owned()))))
            }
        }
    }

    /// Feed `chunks` like the loop does (keeping unconsumed tails); events, or the error code.
    fn run(codec: &mut WsCodec, chunks: &[&[u8]]) -> Result<Vec<WsEvent<'static>>, u16> {
        let mut held = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            held.extend_from_slice(chunk);
            let mut pos = 0;
            while pos < held.len() {
                let (n, ev) = codec.decode(&mut held[pos..]).map_err(|e| e.close_code)?;
                pos += n;
                match ev {
                    Some(ev) => out.push(own(ev)),
                    None if n == 0 => break,
                    None => {}
                }
            }
            held.drain(..pos);
        }
        Ok(out)
    }

    fn text(s: &str) -> WsEvent<'static> {
        WsEvent::Text(Cow::Owned(s.into()))
    }

    #[test]
    fn whole_frames_are_borrowed() {
        let mut wire = Vec::new();
        encode_frame(&mut wire, true, Opcode::Binary, b"abc", KEY);
        let len = wire.len();
        let mut codec = WsCodec::new(1 << 20, 1 << 20);
        let (n, ev) = codec.decode(&mut wire).unwrap();
        assert_eq!(n, len);
        assert!(matches!(ev, Some(WsEvent::Binary(Cow::Borrowed(b"abc")))));
    }

    #[test]
    fn partial_frames_wait_in_the_read_buffer() {
        let mut wire = Vec::new();
        encode_frame(&mut wire, true, Opcode::Text, &[b'x'; 1000], KEY);
        let mut codec = WsCodec::new(1 << 20, 1 << 20);
        assert_eq!(codec.decode(&mut wire[..500]).unwrap(), (0, None));
        let len = wire.len();
        let (n, ev) = codec.decode(&mut wire).unwrap();
        assert_eq!(n, len);
        assert!(matches!(ev, Some(WsEvent::Text(Cow::Borrowed(_)))));
    }

    #[test]
    fn bad_utf8_in_a_waiting_frame_fails_before_the_frame_is_complete() {
        let mut payload = "é".repeat(500).into_bytes();
        payload[101] = 0xff;
        let mut wire = Vec::new();
        encode_frame(&mut wire, true, Opcode::Text, &payload, KEY);
        let mut codec = WsCodec::new(1 << 20, 1 << 20);
        // Up to the bad byte (a split inside a two-byte sequence on the way): no error yet.
        assert_eq!(codec.decode(&mut wire[..50]).unwrap(), (0, None));
        assert_eq!(codec.decode(&mut wire[..105]).unwrap(), (0, None));
        let err = codec.decode(&mut wire[..200]).unwrap_err();
        assert_eq!(err.close_code, 1007);
    }

    #[test]
    fn a_waiting_text_frame_checked_in_parts_comes_out_whole() {
        let text_in = "añb€c😀".repeat(100);
        let mut wire = Vec::new();
        encode_frame(&mut wire, true, Opcode::Text, text_in.as_bytes(), KEY);
        let mut codec = WsCodec::new(1 << 20, 1 << 20);
        for cut in [3, 7, 8, 9, 100, 333, 334, 335, 1000] {
            assert_eq!(codec.decode(&mut wire[..cut]).unwrap(), (0, None));
        }
        let len = wire.len();
        let (n, ev) = codec.decode(&mut wire).unwrap();
        assert_eq!(n, len);
        assert!(matches!(ev, Some(WsEvent::Text(Cow::Borrowed(t))) if t == text_in));
        // The next frame starts from a clean state.
        let mut next = Vec::new();
        encode_frame(&mut next, true, Opcode::Text, "ok".as_bytes(), KEY);
        let (_, ev) = codec.decode(&mut next).unwrap();
        assert_eq!(ev, Some(text("ok")));
    }

    #[test]
    fn fragments_and_controls_come_out_owned() {
        let mut wire = Vec::new();
        encode_frame(&mut wire, false, Opcode::Text, "Hé".as_bytes(), KEY);
        encode_frame(&mut wire, true, Opcode::Ping, b"p", KEY);
        encode_frame(&mut wire, true, Opcode::Continuation, "llo".as_bytes(), KEY);
        encode_frame(&mut wire, true, Opcode::Close, b"\x03\xe8ok", KEY);
        encode_frame(&mut wire, true, Opcode::Text, b"ignored", KEY);
        let mut codec = WsCodec::new(1 << 20, 1 << 20);
        let got = run(&mut codec, &[&wire]).unwrap();
        assert_eq!(
            got,
            vec![
                WsEvent::Ping(Cow::Owned(b"p".to_vec())),
                text("Héllo"),
                WsEvent::Close(Some((1000, Cow::Owned("ok".into())))),
            ]
        );
    }

    #[test]
    fn errors_carry_their_close_codes() {
        let mut codec = WsCodec::new(16, 32);
        let mut wire = Vec::new();
        encode_frame(&mut wire, true, Opcode::Binary, &[0; 17], KEY);
        assert_eq!(run(&mut codec, &[&wire]), Err(1009));

        let mut wire = Vec::new();
        encode_frame(&mut wire, true, Opcode::Text, &[0xff, 0xfe], KEY);
        assert_eq!(run(&mut WsCodec::new(16, 32), &[&wire]), Err(1007));

        let mut wire = Vec::new();
        encode_frame(&mut wire, true, Opcode::Text, b"unmasked", None);
        assert_eq!(run(&mut WsCodec::new(16, 32), &[&wire]), Err(1002));

        let mut wire = Vec::new();
        encode_frame(&mut wire, false, Opcode::Binary, &[1; 12], KEY);
        for _ in 0..2 {
            encode_frame(&mut wire, false, Opcode::Continuation, &[1; 12], KEY);
        }
        assert_eq!(run(&mut WsCodec::new(16, 32), &[&wire]), Err(1009));
    }

    #[test]
    fn http_then_ws_after_the_switch() {
        let mut codec = UpgradeCodec::Http(HttpCodec::default());
        let mut wire = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        let head_len = wire.len();
        encode_frame(&mut wire, true, Opcode::Text, b"hi", KEY);
        let (n, ev) = codec.decode(&mut wire).unwrap();
        assert_eq!(n, head_len);
        assert!(matches!(ev, Some(Upgraded::Http(Event::Head(_)))));
        codec = UpgradeCodec::Ws(WsCodec::new(64, 64));
        let len = wire.len();
        let (m, ev) = codec.decode(&mut wire[n..]).unwrap();
        assert_eq!(n + m, len);
        assert!(matches!(ev, Some(Upgraded::Ws(WsEvent::Text(t))) if t == "hi"));
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_messages(
            msgs in proptest::collection::vec(
                (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..300), 1usize..4), 0..6),
            cut in 0usize..3000,
        ) {
            let mut wire = Vec::new();
            let mut expect = Vec::new();
            for (is_text, data, parts) in &msgs {
                let data: Vec<u8> = if *is_text {
                    String::from_utf8_lossy(data).into_owned().into_bytes()
                } else {
                    data.clone()
                };
                let step = data.len().div_ceil(*parts).max(1);
                let pieces: Vec<&[u8]> = if data.is_empty() { vec![&data[..]] } else { data.chunks(step).collect() };
                for (i, piece) in pieces.iter().enumerate() {
                    let op = match (i, is_text) { (0, true) => Opcode::Text, (0, false) => Opcode::Binary, _ => Opcode::Continuation };
                    encode_frame(&mut wire, i + 1 == pieces.len(), op, piece, KEY);
                }
                expect.push(if *is_text {
                    WsEvent::Text(Cow::Owned(String::from_utf8(data).unwrap()))
                } else {
                    WsEvent::Binary(Cow::Owned(data))
                });
            }
            let cut = cut.min(wire.len());
            let (a, b) = wire.split_at(cut);
            let got = run(&mut WsCodec::new(1 << 16, 1 << 16), &[a, b]).unwrap();
            prop_assert_eq!(got, expect);
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600), cut in 0usize..600) {
            let cut = cut.min(data.len());
            let (a, b) = data.split_at(cut);
            let _ = run(&mut WsCodec::new(64, 128), &[a, b]);
        }
    }
}
