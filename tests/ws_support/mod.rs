//! Shared pieces of the WebSocket integration tests: a raw client over loopback that performs
//! the handshake by hand and speaks frames with herd-proto's encoder and decoder in client
//! role (masked frames out, unmasked frames expected back). Every read has a deadline.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use herd::proto::ws::deflate::{Deflater, Inflater};
use herd::proto::ws::{encode_frame, encode_frame_rsv, Decoder, Message, Opcode, Role};

/// A message as the client received it (owned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>),
}

/// One masked client text frame (for writing many in one go).
pub fn masked_text(t: &str) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(
        &mut out,
        true,
        Opcode::Text,
        t.as_bytes(),
        Some([0x12, 0x34, 0x56, 0x78]),
    );
    out
}

/// A raw WebSocket client.
pub struct Client {
    pub s: TcpStream,
    dec: Decoder,
    buf: Vec<u8>,
    /// The handshake response head.
    pub head: String,
    /// permessage-deflate, once [`Client::enable_deflate`] was called: the client's
    /// compressor and decompressor.
    deflate: Option<(Deflater, Inflater)>,
    /// How many received messages were compressed (RSV1).
    pub compressed_in: usize,
    /// The compressed size of the last compressed message received.
    pub last_packed_len: usize,
}

/// The request head of a valid upgrade to `path` with `extra` header lines.
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Send `request` and read the response head (up to the blank line); returns the stream, the
/// head and whatever followed it.
pub fn send_request(addr: SocketAddr, request: &[u8]) -> (TcpStream, String, Vec<u8>) {
    let mut s = herd_testkit::connect(addr);
    s.write_all(request).unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 4096];
    loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..i + 4]).into_owned();
            let rest = got[i + 4..].to_vec();
            return (s, head, rest);
        }
        let n = s.read(&mut byte).expect("reading the response head");
        assert!(n > 0, "closed before a response head: {got:?}");
        got.extend_from_slice(&byte[..n]);
    }
}

impl Client {
    /// Connect and upgrade on `path`; panics unless the answer is 101.
    pub fn connect(addr: SocketAddr, path: &str) -> Client {
        Client::connect_with(addr, path, "", &[])
    }

    /// Connect and upgrade with extra header lines, sending `after` in the same write as the
    /// request (frames pipelined behind the handshake).
    pub fn connect_with(addr: SocketAddr, path: &str, extra: &str, after: &[u8]) -> Client {
        let mut req = upgrade_request(path, extra).into_bytes();
        req.extend_from_slice(after);
        let (s, head, rest) = send_request(addr, &req);
        assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
        assert!(
            head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{head}"
        );
        Client {
            s,
            dec: Decoder::new(Role::Client),
            buf: rest,
            head,
            deflate: None,
            compressed_in: 0,
            last_packed_len: 0,
        }
    }

    /// The value of the `Sec-WebSocket-Extensions` response header, if any.
    pub fn extensions(&self) -> Option<&str> {
        self.head.lines().find_map(|l| {
            l.strip_prefix("Sec-WebSocket-Extensions: ")
                .map(str::trim_end)
        })
    }

    /// Speak permessage-deflate from now on (the 101 accepted it): compressed messages are
    /// inflated on receipt, [`Client::send_compressed`] deflates. `reset_tx` resets the
    /// client's compressor per message (it promised `client_no_context_takeover`),
    /// `reset_rx` the decompressor (the server said `server_no_context_takeover`).
    pub fn enable_deflate(&mut self, reset_tx: bool, reset_rx: bool) {
        self.dec.set_permessage_deflate(true);
        self.deflate = Some((Deflater::new(6, 15, reset_tx), Inflater::new(reset_rx)));
    }

    /// Send one message compressed, split into frames of at most `frame` compressed bytes.
    pub fn send_compressed(&mut self, op: Opcode, payload: &[u8], frame: usize) {
        let mut packed = Vec::new();
        let (tx, _) = self.deflate.as_mut().expect("enable_deflate first");
        tx.deflate(payload, &mut packed);
        self.send_packed(op, &packed, frame);
    }

    /// Send `packed` as an already compressed message (RSV1 on the first frame), split into
    /// frames of at most `frame` bytes.
    pub fn send_packed(&mut self, op: Opcode, packed: &[u8], frame: usize) {
        let mut out = Vec::new();
        let pieces: Vec<&[u8]> = if packed.is_empty() {
            vec![&[][..]]
        } else {
            packed.chunks(frame.max(1)).collect()
        };
        for (i, piece) in pieces.iter().enumerate() {
            let fin = i + 1 == pieces.len();
            let (rsv, opcode) = if i == 0 {
                (0b100, op)
            } else {
                (0, Opcode::Continuation)
            };
            encode_frame_rsv(
                &mut out,
                fin,
                rsv,
                opcode,
                piece,
                Some([0x12, 0x34, 0x56, 0x78]),
            );
        }
        self.s.write_all(&out).unwrap();
    }

    /// Send one frame, masked.
    pub fn send_frame(&mut self, fin: bool, op: Opcode, payload: &[u8]) {
        let mut out = Vec::new();
        encode_frame(&mut out, fin, op, payload, Some([0x12, 0x34, 0x56, 0x78]));
        self.s.write_all(&out).unwrap();
    }

    pub fn text(&mut self, t: &str) {
        self.send_frame(true, Opcode::Text, t.as_bytes());
    }

    pub fn binary(&mut self, b: &[u8]) {
        self.send_frame(true, Opcode::Binary, b);
    }

    /// The next message from the server; `None` if the connection closed first.
    pub fn recv(&mut self) -> Option<Got> {
        loop {
            if !self.buf.is_empty() {
                let (used, msg) = self
                    .dec
                    .decode(&mut self.buf)
                    .expect("server broke the protocol");
                let deflate = &mut self.deflate;
                let compressed_in = &mut self.compressed_in;
                let last_packed_len = &mut self.last_packed_len;
                let got = msg.map(|m| match m {
                    Message::Text(t) => Got::Text(t.into()),
                    Message::Binary(b) => Got::Binary(b.to_vec()),
                    Message::Ping(b) => Got::Ping(b.to_vec()),
                    Message::Pong(b) => Got::Pong(b.to_vec()),
                    Message::Close(c) => Got::Close(c.map(|(code, _)| code)),
                    Message::Compressed { text, data } => {
                        let (_, rx) = deflate.as_mut().expect("RSV1 without the extension");
                        let mut plain = Vec::new();
                        rx.inflate(data, u64::MAX, &mut plain)
                            .expect("the server's deflate data");
                        *compressed_in += 1;
                        *last_packed_len = data.len();
                        if text {
                            Got::Text(String::from_utf8(plain).expect("compressed text is UTF-8"))
                        } else {
                            Got::Binary(plain)
                        }
                    }
                });
                self.buf.drain(..used);
                if got.is_some() {
                    return got;
                }
                if used > 0 {
                    continue;
                }
            }
            let mut chunk = [0u8; 65536];
            match self.s.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    /// True once the server has closed TCP (after any data).
    pub fn closed(&mut self) -> bool {
        herd_testkit::read_to_close(&mut self.s);
        true
    }
}
