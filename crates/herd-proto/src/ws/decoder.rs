//! The receive side of a WebSocket connection: bytes in, [`Message`]s out (RFC 6455 sections
//! 5 and 8).
//!
//! [`Decoder::decode`] reads frames from the front of the caller's read buffer, unmasks them
//! in place and enforces every per-connection rule: masking by role, no RSV bits (but RSV1 on
//! the first frame of a data message once permessage-deflate is on), fragmentation order, control frames between fragments, UTF-8 of text
//! checked as it arrives, Close payloads, and the frame and message size limits, checked from
//! the header before anything is buffered. A message that arrived whole in one buffer is
//! returned borrowed from that buffer (no copy). Fragmented messages, and frames whose payload
//! is still arriving, are copied once into one internal buffer and returned from there when
//! complete, so the caller never holds more than one frame header of unconsumed bytes. It does
//! not write replies (Pong, Close): the loop does, helped by [`CloseState`](super::CloseState).
//! Called by the loop's WebSocket connection code, by the integration tests' client (client
//! role) and by fuzzers.

use super::close::parse_close_payload;
use super::frame::{Frame, FrameHeader, Opcode};
use super::{apply_mask, Utf8Validator, WsError};

/// Default largest accepted frame payload: 16 MiB.
pub const DEFAULT_MAX_FRAME: u64 = 16 << 20;
/// Default largest accepted message (all fragments together): 16 MiB.
pub const DEFAULT_MAX_MESSAGE: u64 = 16 << 20;

/// The reassembly buffer keeps at most this much capacity between messages; a larger one is
/// freed once its message has been handed out, so idle connections stay small.
const RETAINED_CAPACITY: usize = 1024;

const NOT_UTF8: &str = "text is not UTF-8";
const OVER_MAX_MESSAGE: &str = "message over max_message";

/// Which end of the connection this decoder serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Receives client frames: every frame must be masked.
    Server,
    /// Receives server frames: no frame may be masked (for tests and clients).
    Client,
}

/// One complete message or control frame from the peer.
///
/// Borrowed from the buffer passed to [`Decoder::decode`], or from the decoder itself for
/// reassembled messages; handle it (or copy it) before the next `decode` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A complete text message, valid UTF-8.
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    /// A Ping: answer with a Pong carrying the same payload (unless closing).
    Ping(&'a [u8]),
    /// A Pong: a heartbeat answer, or unsolicited; needs no reply.
    Pong(&'a [u8]),
    /// A permessage-deflate compressed message (RSV1 set on its first frame), still
    /// compressed: inflate it with [`Inflater::inflate`](super::deflate::Inflater::inflate),
    /// then check UTF-8 if `text`. Only after
    /// [`set_permessage_deflate`](Decoder::set_permessage_deflate).
    Compressed {
        /// A Text message (else Binary).
        text: bool,
        /// The compressed payload, all frames together.
        data: &'a [u8],
    },
    /// A Close with its code and reason, or `None` if it carried no payload. Pass it to
    /// [`CloseState::on_peer_close`](super::CloseState::on_peer_close). The decoder ignores
    /// everything after it.
    Close(Option<(u16, &'a str)>),
}

/// The kind of data message being reassembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataKind {
    Text,
    Binary,
}

/// A data frame whose payload is still arriving.
#[derive(Debug, Clone, Copy)]
struct PartialFrame {
    fin: bool,
    mask: Option<[u8; 4]>,
    /// Payload bytes already received (the mask offset of the next byte).
    done: u64,
    /// Payload bytes still to come.
    remaining: u64,
}

/// What one decoding step produced, before any message borrows the input.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// No message yet; this many bytes were consumed.
    More(usize),
    /// A whole frame (control, or a single-frame data message) at `src[start..end]`,
    /// unmasked; `end` bytes were consumed.
    InPlace {
        opcode: Opcode,
        start: usize,
        end: usize,
        compressed: bool,
    },
    /// A message was completed in the reassembly buffer; `used` bytes were consumed.
    Buffered {
        text: bool,
        compressed: bool,
        used: usize,
    },
}

/// Where the decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading frames.
    Open,
    /// A Close was received: further input is ignored.
    Closed,
    /// A protocol error was found: every call returns it again.
    Failed(WsError),
}

/// The WebSocket receive state machine for one connection.
///
/// ```
/// use herd_proto::ws::{encode_frame, Decoder, Message, Opcode, Role};
///
/// let key = Some([7, 7, 7, 7]);
/// let mut wire = Vec::new();
/// encode_frame(&mut wire, false, Opcode::Text, "Hel".as_bytes(), key);
/// encode_frame(&mut wire, true, Opcode::Ping, b"?", key); // control frames may interleave
/// encode_frame(&mut wire, true, Opcode::Continuation, "lo €".as_bytes(), key);
///
/// let mut decoder = Decoder::new(Role::Server);
/// let (n1, msg) = decoder.decode(&mut wire).unwrap();
/// assert_eq!((n1, msg), (9, None)); // first fragment buffered
/// let (n2, msg) = decoder.decode(&mut wire[n1..]).unwrap();
/// assert_eq!(msg, Some(Message::Ping(b"?")));
/// let (_, msg) = decoder.decode(&mut wire[n1 + n2..]).unwrap();
/// assert_eq!(msg, Some(Message::Text("Hello €")));
/// ```
#[derive(Debug, Clone)]
pub struct Decoder {
    role: Role,
    max_frame: u64,
    max_message: u64,
    state: State,
    /// The data message being reassembled, if any.
    message: Option<DataKind>,
    /// The data frame whose payload is still arriving, if any.
    frame: Option<PartialFrame>,
    /// Reassembled payload of `message`.
    buf: Vec<u8>,
    /// `buf` was handed out as the last message and must be cleared on the next call.
    lent: bool,
    /// UTF-8 state of a text `message`.
    utf8: Utf8Validator,
    /// permessage-deflate was negotiated: RSV1 may mark a data message.
    deflate: bool,
    /// The `message` being reassembled is compressed (its UTF-8 is checked after inflating).
    compressed: bool,
}

impl Decoder {
    /// A decoder for `role` with the default limits (16 MiB frames and messages).
    pub fn new(role: Role) -> Self {
        Self::with_limits(role, DEFAULT_MAX_FRAME, DEFAULT_MAX_MESSAGE)
    }

    /// A decoder for `role` that fails with 1009 on a frame payload over `max_frame` bytes or
    /// a message over `max_message` bytes (fragments summed).
    pub fn with_limits(role: Role, max_frame: u64, max_message: u64) -> Self {
        Decoder {
            role,
            max_frame,
            max_message,
            state: State::Open,
            message: None,
            frame: None,
            buf: Vec::new(),
            lent: false,
            utf8: Utf8Validator::new(),
            deflate: false,
            compressed: false,
        }
    }

    /// Accept RSV1 on the first frame of a data message, as permessage-deflate (RFC 7692)
    /// uses it: such messages come out as [`Message::Compressed`]. Call it right after a
    /// handshake that negotiated the extension.
    pub fn set_permessage_deflate(&mut self, on: bool) {
        self.deflate = on;
    }

    /// Decodes from the front of `src`, the connection's unconsumed received bytes.
    ///
    /// Call it whenever bytes arrive, then again on `src[consumed..]`, until it returns
    /// `(0, None)`; keep the unconsumed tail and put the next read after it. Returns how many
    /// bytes of `src` were consumed and the next message, if one is complete (the shape of
    /// herd-core's `codec::Decoder`). `(n, None)` with `n > 0` means payload was taken into the
    /// decoder's buffer. Payload bytes are
    /// unmasked in place in `src`. A message is borrowed from `src` when its single frame lay
    /// whole in it, else from the decoder's reassembly buffer.
    ///
    /// An error means the peer broke the protocol: send a Close with `err.close_code` (see
    /// [`CloseState::on_error`](super::CloseState::on_error)) and close the connection; every
    /// later call returns the same error. After a Close message, input is consumed and
    /// ignored.
    pub fn decode<'a>(
        &'a mut self,
        src: &'a mut [u8],
    ) -> Result<(usize, Option<Message<'a>>), WsError> {
        if self.lent {
            self.lent = false;
            self.buf.clear();
            if self.buf.capacity() > RETAINED_CAPACITY {
                self.buf = Vec::new();
            }
        }
        match self.state {
            State::Open => {}
            State::Closed => return Ok((src.len(), None)),
            State::Failed(err) => return Err(err),
        }
        let step = if self.frame.is_some() {
            self.continue_frame(src)
        } else {
            self.start_frame(src)
        };
        match step {
            Err(err) => Err(self.fail(err)),
            Ok(Step::More(used)) => Ok((used, None)),
            Ok(Step::InPlace {
                opcode,
                start,
                end,
                compressed,
            }) => {
                let payload = &src[start..end];
                if compressed {
                    let text = opcode == Opcode::Text;
                    return Ok((
                        end,
                        Some(Message::Compressed {
                            text,
                            data: payload,
                        }),
                    ));
                }
                let msg = match opcode {
                    Opcode::Text => match std::str::from_utf8(payload) {
                        Ok(text) => Message::Text(text),
                        Err(_) => return Err(self.fail(WsError::invalid_payload(NOT_UTF8))),
                    },
                    Opcode::Ping => Message::Ping(payload),
                    Opcode::Pong => Message::Pong(payload),
                    Opcode::Close => match parse_close_payload(payload) {
                        Ok(close) => {
                            self.state = State::Closed;
                            self.message = None;
                            self.frame = None;
                            self.buf = Vec::new();
                            Message::Close(close)
                        }
                        Err(err) => return Err(self.fail(err)),
                    },
                    Opcode::Binary | Opcode::Continuation => Message::Binary(payload),
                };
                Ok((end, Some(msg)))
            }
            Ok(Step::Buffered {
                text,
                compressed,
                used,
            }) => {
                self.lent = true;
                let msg = if compressed {
                    Message::Compressed {
                        text,
                        data: &self.buf,
                    }
                } else if text {
                    // Already validated piece by piece (so this cannot fail); checked again
                    // only to obtain a &str without unsafe code.
                    let text = std::str::from_utf8(&self.buf)
                        .map_err(|_| WsError::invalid_payload(NOT_UTF8))?;
                    Message::Text(text)
                } else {
                    Message::Binary(&self.buf)
                };
                Ok((used, Some(msg)))
            }
        }
    }

    /// Whether a fragmented message or a frame's payload is partly received.
    pub fn is_mid_message(&self) -> bool {
        self.message.is_some()
    }

    /// Bytes currently held in the reassembly buffer.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Heap bytes this decoder holds (the reassembly buffer's capacity), for memory
    /// statistics. Between messages it is at most 1 KiB; a bigger buffer is freed on the
    /// `decode` call after the message that needed it.
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// Enters the failed state and returns `err` for the caller.
    fn fail(&mut self, err: WsError) -> WsError {
        self.state = State::Failed(err);
        self.message = None;
        self.frame = None;
        self.buf = Vec::new();
        err
    }

    /// Reads a frame header from `src` and handles the frame, or its first part.
    fn start_frame(&mut self, src: &mut [u8]) -> Result<Step, WsError> {
        let Some(frame) = Frame::new_checked(&*src) else {
            return Ok(Step::More(0));
        };
        let header = FrameHeader::parse(&frame)?;
        self.check_header(&header)?;
        let header_len = header.buffer_len();
        let available = (src.len() - header_len) as u64;
        let len = header.payload_len;

        match header.opcode {
            Opcode::Close | Opcode::Ping | Opcode::Pong => {
                // At most 125 bytes (checked by the parse): wait until all of it is here.
                if available < len {
                    return Ok(Step::More(0));
                }
                return Ok(in_place(&header, src, header_len));
            }
            Opcode::Continuation => {
                if self.message.is_none() {
                    return Err(WsError::protocol("continuation frame without a message"));
                }
                if self.buf.len() as u64 + len > self.max_message {
                    return Err(WsError::too_big(OVER_MAX_MESSAGE));
                }
            }
            Opcode::Text | Opcode::Binary => {
                if self.message.is_some() {
                    return Err(WsError::protocol(
                        "new data frame inside a fragmented message",
                    ));
                }
                if len > self.max_message {
                    return Err(WsError::too_big(OVER_MAX_MESSAGE));
                }
                if header.fin && available >= len {
                    // The fast path: a whole single-frame message, returned in place.
                    return Ok(in_place(&header, src, header_len));
                }
                let text = header.opcode == Opcode::Text;
                self.compressed = header.rsv != 0;
                self.message = Some(if text {
                    DataKind::Text
                } else {
                    DataKind::Binary
                });
                self.utf8.reset();
            }
        }
        self.frame = Some(PartialFrame {
            fin: header.fin,
            mask: header.mask,
            done: 0,
            remaining: len,
        });
        Ok(match self.continue_frame(&mut src[header_len..])? {
            Step::More(used) => Step::More(header_len + used),
            Step::Buffered {
                text,
                compressed,
                used,
            } => Step::Buffered {
                text,
                compressed,
                used: header_len + used,
            },
            in_place @ Step::InPlace { .. } => in_place,
        })
    }

    /// Takes as much of the current data frame's payload as `src` holds into the buffer.
    fn continue_frame(&mut self, src: &mut [u8]) -> Result<Step, WsError> {
        let Some(mut frame) = self.frame else {
            return Ok(Step::More(0));
        };
        // `take` is at most `src.len()`, so it fits in usize.
        let take = frame.remaining.min(src.len() as u64) as usize;
        let chunk = &mut src[..take];
        if let Some(key) = frame.mask {
            // Only `done % 4` matters for the key position.
            apply_mask(chunk, key, (frame.done % 4) as usize);
        }
        let text = self.message == Some(DataKind::Text);
        let compressed = self.compressed;
        if text && !compressed && self.utf8.feed(chunk).is_err() {
            return Err(WsError::invalid_payload(NOT_UTF8));
        }
        self.buf.extend_from_slice(chunk);
        frame.done += take as u64;
        frame.remaining -= take as u64;
        if frame.remaining > 0 {
            self.frame = Some(frame);
            return Ok(Step::More(take));
        }
        self.frame = None;
        if !frame.fin {
            return Ok(Step::More(take));
        }
        // The last frame of the message is complete.
        self.message = None;
        if text && !compressed && self.utf8.finish().is_err() {
            return Err(WsError::invalid_payload(
                "text ends inside a UTF-8 sequence",
            ));
        }
        Ok(Step::Buffered {
            text,
            compressed,
            used: take,
        })
    }

    /// Checks the header against the connection's rules: masking by role, RSV bits, size.
    fn check_header(&self, header: &FrameHeader) -> Result<(), WsError> {
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(WsError::protocol("client frame not masked")),
            (Role::Client, true) => return Err(WsError::protocol("server frame masked")),
            _ => {}
        }
        if header.rsv != 0 {
            let first_data = matches!(header.opcode, Opcode::Text | Opcode::Binary);
            if !self.deflate {
                return Err(WsError::protocol(
                    "RSV bits set without a negotiated extension",
                ));
            }
            if header.rsv != 0b100 || !first_data {
                return Err(WsError::protocol(
                    "RSV bits other than RSV1 on a message's first frame",
                ));
            }
        }
        if header.payload_len > self.max_frame {
            return Err(WsError::too_big("frame over max_frame"));
        }
        Ok(())
    }
}

/// Unmasks a frame that lies whole in `src` and says where its payload is.
fn in_place(header: &FrameHeader, src: &mut [u8], header_len: usize) -> Step {
    // The caller checked that the payload is in `src`, so it fits in usize.
    let end = header_len + header.payload_len as usize;
    if let Some(key) = header.mask {
        apply_mask(&mut src[header_len..end], key, 0);
    }
    Step::InPlace {
        opcode: header.opcode,
        start: header_len,
        end,
        compressed: header.rsv != 0,
    }
}
