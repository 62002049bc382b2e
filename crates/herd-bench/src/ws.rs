//! WebSocket mode: many upgraded connections, `depth` binary messages in flight on each, every
//! echoed byte verified.
//!
//! Setup (before the measured run, blocking, per connection): connect, send an HTTP/1.1
//! upgrade request with a per-connection `Sec-WebSocket-Key`, and check the answer: status
//! `101`, `Upgrade: websocket`, `Connection: upgrade`, the `Sec-WebSocket-Accept` computed from
//! the key (SHA-1 and base64, written here), no extension, and nothing sent after the head. A
//! failed handshake fails the run ([`Error::Echo`]). Then, as in [`echo`](crate::echo), each
//! connection sends `depth` messages and one more for each one that comes back: a masked
//! (client-role) binary frame whose `size` payload bytes are the next bytes of the
//! connection's [`Pattern`] stream, under a fresh mask key per frame. The server's frames are
//! parsed as they stream in: each must be an unmasked, unfragmented binary frame of exactly
//! `size` bytes, and its payload is checked against the stream as it arrives (no copy of the
//! payload, so 16 KiB messages split over reads cost nothing extra). A Ping is answered with a
//! Pong, a Pong is ignored, a Close counts as the server closing; anything else (text, a
//! fragment, a masked frame, reserved bits, a wrong length, a wrong byte) is a mismatch that
//! is printed (up to a few), counted, and closes that connection.
//!
//! Frames are encoded and parsed here by hand, independently of herd-proto, so the load
//! generator doubles as a check of the servers' framing. Threads, the measured window and the
//! report are the shared client driver (`driver.rs`), as for [`echo`](crate::echo): one mio
//! loop per client thread, one clock read per read syscall, the frames made by one read sent
//! in one write, no allocation per message once buffers have grown. Callers: the
//! `herd-bench ws` command, bench/ws.sh and the tests.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::driver::{self, connect_with_retry, Client, Plan, Stop, Window};
use crate::pattern::Pattern;
use crate::stats::Report;
use crate::Error;

/// Largest message accepted, so a typo cannot allocate gigabytes.
pub const MAX_SIZE: usize = 16 << 20;
/// Largest `size * depth` per connection.
pub const MAX_IN_FLIGHT: usize = 64 << 20;
/// Largest handshake response head accepted.
const MAX_HEAD: usize = 16 * 1024;
/// How long the handshake may take per connection.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The GUID of RFC 6455 section 1.3.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// What a WebSocket run does.
#[derive(Clone, Debug)]
pub struct WsOpts {
    /// Server address; the only place the run connects to.
    pub addr: SocketAddr,
    /// Request path of the upgrade (`/` by default).
    pub path: String,
    /// Connections to open and upgrade.
    pub connections: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Messages in flight per connection (1 = ping-pong).
    pub depth: usize,
    /// Measured window.
    pub duration: Duration,
    /// Time before the window whose messages are not counted.
    pub warmup: Duration,
    /// Client threads (event loops); capped at `connections`.
    pub threads: usize,
    /// Connect attempts per connection before giving up (at least 1).
    pub connect_attempts: u32,
}

impl WsOpts {
    /// Defaults of the command line: path `/`, 100 connections, 64 B, depth 1, 10 s after 1 s
    /// warmup, one thread, 20 connect attempts.
    ///
    /// ```
    /// let o = herd_bench::ws::WsOpts::new("127.0.0.1:9002".parse().unwrap());
    /// assert_eq!((o.path.as_str(), o.connections, o.size, o.depth), ("/", 100, 64, 1));
    /// assert!(o.validate().is_ok());
    /// ```
    pub fn new(addr: SocketAddr) -> Self {
        WsOpts {
            addr,
            path: "/".into(),
            connections: 100,
            size: 64,
            depth: 1,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            threads: 1,
            connect_attempts: 20,
        }
    }

    /// Rejects options that cannot make a run.
    pub fn validate(&self) -> Result<(), Error> {
        self.plan().check(
            MAX_SIZE,
            "16 MiB",
            usize::MAX,
            MAX_IN_FLIGHT,
            crate::echo::IN_FLIGHT_TEXT,
        )?;
        if !self.path.starts_with('/') || self.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(Error::Opts(
                "--path must start with / and hold no spaces or control bytes".into(),
            ));
        }
        Ok(())
    }

    /// The run's shape, for the driver.
    fn plan(&self) -> Plan {
        Plan {
            mode: "ws",
            connections: self.connections,
            size: self.size,
            depth: self.depth,
            duration: self.duration,
            warmup: self.warmup,
            threads: self.threads,
        }
    }
}

/// SHA-1 of `data` (FIPS 180-4), for the handshake only.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = Vec::with_capacity(data.len() + 72);
    msg.extend_from_slice(data);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            (e, d, c, b, a) = (d, c, b.rotate_left(30), a, t);
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, x) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&x.to_be_bytes());
    }
    out
}

/// Standard base64 with padding (RFC 4648 section 4).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from_be_bytes([0, b[0], b[1], b[2]]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The `Sec-WebSocket-Accept` a server must answer to `key`: base64(SHA-1(key + GUID)).
///
/// ```
/// // The example of RFC 6455 section 1.3.
/// let accept = herd_bench::ws::accept_key("dGhlIHNhbXBsZSBub25jZQ==");
/// assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &str) -> String {
    let mut input = Vec::with_capacity(key.len() + GUID.len());
    input.extend_from_slice(key.as_bytes());
    input.extend_from_slice(GUID.as_bytes());
    base64(&sha1(&input))
}

/// The `Sec-WebSocket-Key` connection `index` sends: 16 bytes of its own stream, base64.
///
/// ```
/// let k = herd_bench::ws::client_key(3);
/// assert_eq!(k.len(), 24);
/// assert_ne!(k, herd_bench::ws::client_key(4));
/// ```
pub fn client_key(index: usize) -> String {
    let mut raw = [0u8; 16];
    Pattern::new(!(index as u64)).fill(0, &mut raw);
    base64(&raw)
}

/// The upgrade request a connection sends.
///
/// ```
/// let req = herd_bench::ws::upgrade_request("/chat", "127.0.0.1:9002", "a2V5");
/// assert!(req.starts_with("GET /chat HTTP/1.1\r\nHost: 127.0.0.1:9002\r\n"));
/// assert!(req.contains("Sec-WebSocket-Key: a2V5\r\n") && req.ends_with("\r\n\r\n"));
/// ```
pub fn upgrade_request(path: &str, host: &str, key: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Checks a handshake response head (status line to the blank line) against the `key` sent.
///
/// ```
/// use herd_bench::ws::check_response;
/// let key = "dGhlIHNhbXBsZSBub25jZQ==";
/// let ok = "HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\n\
///           Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
/// assert_eq!(check_response(ok, key), Ok(()));
/// assert!(check_response(&ok.replace("xOo=", "xOp="), key).is_err());
/// assert!(check_response("HTTP/1.1 400 Bad Request\r\n\r\n", key).is_err());
/// ```
pub fn check_response(head: &str, key: &str) -> Result<(), String> {
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 101") {
        return Err(format!("handshake answered `{status}`, not 101"));
    }
    let (mut upgrade, mut connection, mut accept) = (false, false, None);
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("malformed header line `{line}`"));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "upgrade" => upgrade |= value.eq_ignore_ascii_case("websocket"),
            "connection" => {
                connection |= value
                    .split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            }
            "sec-websocket-accept" => accept = Some(value.to_string()),
            "sec-websocket-extensions" => {
                return Err(format!(
                    "server chose extensions `{value}`, none were offered"
                ))
            }
            _ => {}
        }
    }
    if !upgrade || !connection {
        return Err("101 without `Upgrade: websocket` and `Connection: upgrade`".into());
    }
    let want = accept_key(key);
    match accept {
        Some(got) if got == want => Ok(()),
        Some(got) => Err(format!("Sec-WebSocket-Accept `{got}`, expected `{want}`")),
        None => Err("101 without Sec-WebSocket-Accept".into()),
    }
}

/// Length of a client frame header (with its mask key) for a payload of `len` bytes.
fn client_header_len(len: usize) -> usize {
    match len {
        0..=125 => 6,
        126..=0xFFFF => 8,
        _ => 14,
    }
}

/// Appends a final, masked client frame with `opcode` and `payload` to `out`.
///
/// ```
/// let mut out = Vec::new();
/// herd_bench::ws::encode_client_frame(&mut out, 0x2, b"ab", [1, 2, 3, 4]);
/// assert_eq!(out, [0x82, 0x82, 1, 2, 3, 4, b'a' ^ 1, b'b' ^ 2]);
/// ```
pub fn encode_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    let at = out.len();
    put_client_header(out, opcode, payload.len(), mask);
    out.extend_from_slice(payload);
    apply_mask(&mut out[at + client_header_len(payload.len())..], mask);
}

fn put_client_header(out: &mut Vec<u8>, opcode: u8, len: usize, mask: [u8; 4]) {
    out.push(0x80 | (opcode & 0x0F));
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
}

/// XORs `data` (starting at payload offset 0) with the repeating 4-byte `mask`.
fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) ^ wide;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (k, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= mask[k % 4];
    }
}

/// Runs WebSocket mode as `opts` says and returns what it measured (mode `"ws"`).
///
/// Returns `Err` when the run could not happen: bad options, a connection that could not be
/// opened, a failed handshake ([`Error::Echo`]), a thread that could not start. Problems during
/// the run are counted in the report; `report.errors() > 0` means the run failed.
pub fn run(opts: &WsOpts) -> Result<Report, Error> {
    opts.validate()?;
    let plan = opts.plan();
    driver::run(&plan, |index| {
        let stream = open(opts, index)?;
        let conn = Conn {
            index,
            pattern: Pattern::new(index as u64),
            size: opts.size,
            queued: 0,
            received: 0,
            frames: 0,
            inflight: VecDeque::with_capacity(opts.depth),
            rx: Rx::header(),
            ctl: Vec::with_capacity(125),
        };
        Ok((stream, conn))
    })
}

/// Connects connection `index` and runs its handshake (blocking, bounded by
/// [`HANDSHAKE_TIMEOUT`]); the driver then makes the stream non-blocking.
fn open(opts: &WsOpts, index: usize) -> Result<std::net::TcpStream, Error> {
    let mut s = connect_with_retry(opts.addr, index, opts.connect_attempts)?;
    let fail = |reason: String| Error::Echo { index, reason };
    let io_fail = |e: io::Error| fail(format!("handshake: {e}"));
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    s.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let key = client_key(index);
    let host = opts.addr.to_string();
    s.write_all(upgrade_request(&opts.path, &host, &key).as_bytes())
        .map_err(io_fail)?;
    let mut got = Vec::with_capacity(512);
    let mut buf = [0u8; 2048];
    let end = loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if got.len() > MAX_HEAD {
            return Err(fail(format!(
                "handshake response head over {MAX_HEAD} bytes"
            )));
        }
        match s.read(&mut buf) {
            Ok(0) => return Err(fail("closed during the handshake".into())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_fail(e)),
        }
    };
    check_response(&String::from_utf8_lossy(&got[..end]), &key).map_err(fail)?;
    if got.len() > end {
        return Err(fail(format!(
            "server sent {} bytes after the 101, before any message",
            got.len() - end
        )));
    }
    s.set_read_timeout(None)?;
    s.set_write_timeout(None)?;
    Ok(s)
}

/// Where the parser is in the server's byte stream.
enum Rx {
    /// Collecting a frame header (without a mask key: server frames have none): `have`
    /// bytes of it in `buf`.
    Header { buf: [u8; 10], have: usize },
    /// Inside a data frame's payload, `left` bytes to go.
    Data { left: usize },
    /// Inside a control frame's payload (at most 125 bytes, kept in `ctl`).
    Control { opcode: u8, left: usize },
}

impl Rx {
    fn header() -> Rx {
        Rx::Header {
            buf: [0; 10],
            have: 0,
        }
    }
}

/// Header bytes needed so far: 2 until they are in, then 2 plus the extended length.
fn header_need(buf: &[u8; 10], have: usize) -> usize {
    if have < 2 {
        return 2;
    }
    2 + match buf[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    }
}

/// One connection's streams: what it sends and where the parser is in what comes back.
struct Conn {
    index: usize,
    pattern: Pattern,
    size: usize,
    /// Payload stream bytes queued so far (sent or waiting in the driver's output buffer).
    queued: u64,
    /// Payload stream bytes received and verified so far.
    received: u64,
    /// Frames queued so far (seeds each frame's mask key).
    frames: u32,
    /// Queue time of each message in flight, oldest first.
    inflight: VecDeque<Instant>,
    rx: Rx,
    /// Payload of the control frame being read.
    ctl: Vec<u8>,
}

impl Client for Conn {
    const MISMATCH: &'static str = "bad frame";

    fn wire_len(&self) -> usize {
        client_header_len(self.size) + self.size
    }

    /// Appends the next message (a masked binary frame of the next `size` stream bytes) to
    /// `out`, stamped `now`.
    fn queue(&mut self, out: &mut Vec<u8>, now: Instant) {
        let mask = self.next_mask();
        put_client_header(out, OP_BINARY, self.size, mask);
        let at = out.len();
        out.resize(at + self.size, 0);
        let payload = &mut out[at..];
        self.pattern.fill(self.queued, payload);
        apply_mask(payload, mask);
        self.queued += self.size as u64;
        self.inflight.push_back(now);
    }

    /// Parses and checks `chunk`, completing messages and queueing new ones (and Pongs).
    fn take(
        &mut self,
        mut chunk: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
        w: &mut Window,
    ) -> Result<(), Stop> {
        while !chunk.is_empty() {
            match &mut self.rx {
                Rx::Header { buf, have } => {
                    let need = header_need(buf, *have);
                    let take = (need - *have).min(chunk.len());
                    buf[*have..*have + take].copy_from_slice(&chunk[..take]);
                    *have += take;
                    chunk = &chunk[take..];
                    let (buf, have) = (*buf, *have);
                    if have < need {
                        continue;
                    }
                    let (b0, b1) = (buf[0], buf[1]);
                    if b1 & 0x80 != 0 {
                        return Err(Stop::Mismatch("server frame is masked".into()));
                    }
                    if b0 & 0x70 != 0 {
                        return Err(format!("reserved bits set in {b0:#04x}").into());
                    }
                    if b0 & 0x80 == 0 {
                        return Err(format!("fragmented frame (opcode {:#x})", b0 & 0x0F).into());
                    }
                    let full = header_need(&buf, have);
                    if have < full {
                        continue;
                    }
                    let len = match full {
                        2 => u64::from(b1 & 0x7F),
                        4 => u64::from(u16::from_be_bytes([buf[2], buf[3]])),
                        _ => u64::from_be_bytes([
                            buf[2], buf[3], buf[4], buf[5], buf[6], buf[7], buf[8], buf[9],
                        ]),
                    };
                    self.rx = self.header_done(b0 & 0x0F, len)?;
                    if let Rx::Control { opcode, left: 0 } = self.rx {
                        self.rx = Rx::header();
                        self.control_done(opcode, out)?;
                    }
                }
                Rx::Data { left } => {
                    let take = (*left).min(chunk.len());
                    self.pattern
                        .verify(self.received, &chunk[..take])
                        .map_err(|m| m.to_string())?;
                    self.received += take as u64;
                    *left -= take;
                    chunk = &chunk[take..];
                    if *left == 0 {
                        self.rx = Rx::header();
                        let sent_at = self.inflight.pop_front().unwrap_or(now);
                        if w.complete(sent_at, now) {
                            self.queue(out, now);
                        }
                    }
                }
                Rx::Control { opcode, left } => {
                    let take = (*left).min(chunk.len());
                    self.ctl.extend_from_slice(&chunk[..take]);
                    *left -= take;
                    chunk = &chunk[take..];
                    if *left == 0 {
                        let opcode = *opcode;
                        self.rx = Rx::header();
                        self.control_done(opcode, out)?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Conn {
    /// The next frame's mask key: varies per frame and per connection.
    fn next_mask(&mut self) -> [u8; 4] {
        self.frames = self.frames.wrapping_add(1);
        (self.frames.wrapping_mul(0x9E37_79B9) ^ self.index as u32 ^ 0x5A5A_0000).to_be_bytes()
    }

    /// A whole header with `opcode` and payload length `len` was read: what comes next.
    fn header_done(&mut self, opcode: u8, len: u64) -> Result<Rx, String> {
        match opcode {
            OP_BINARY => {
                if self.inflight.is_empty() {
                    return Err("a message arrived when none was in flight".into());
                }
                if len != self.size as u64 {
                    return Err(format!("message of {len} bytes, expected {}", self.size));
                }
                Ok(Rx::Data { left: self.size })
            }
            OP_CLOSE | OP_PING | OP_PONG => {
                if len > 125 {
                    return Err(format!("control frame of {len} bytes"));
                }
                self.ctl.clear();
                Ok(Rx::Control {
                    opcode,
                    left: len as usize,
                })
            }
            other => Err(format!("unexpected opcode {other:#x}")),
        }
    }

    /// A control frame's payload is in `ctl`: answer a Ping (into `out`), ignore a Pong,
    /// stop at a Close.
    fn control_done(&mut self, opcode: u8, out: &mut Vec<u8>) -> Result<(), Stop> {
        match opcode {
            OP_PING => {
                let mask = self.next_mask();
                encode_client_frame(out, OP_PONG, &self.ctl, mask);
                Ok(())
            }
            OP_CLOSE => Err(Stop::Closed("server sent a Close frame")),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn sha1_matches_the_standard_vectors() {
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        // 56 bytes: the padding spills into a second block.
        assert_eq!(
            hex(&sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(
            hex(&sha1(&[b'a'; 1000])),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
        );
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
        assert_eq!(base64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn handshake_response_checks() {
        let key = client_key(9);
        let accept = accept_key(&key);
        let ok = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        assert_eq!(check_response(&ok, &key), Ok(()));
        // The accept of another connection's key is wrong for this one.
        assert!(check_response(&ok, &client_key(10)).is_err());
        for broken in [
            ok.replace("Upgrade: websocket\r\n", ""),
            ok.replace("keep-alive, Upgrade", "keep-alive"),
            ok.replace(&format!("Sec-WebSocket-Accept: {accept}\r\n"), ""),
            ok.replace(
                "\r\n\r\n",
                "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
            ),
            ok.replace("Upgrade: websocket", "Upgrade websocket"),
            ok.replace("101 Switching", "200 Switching"),
            ok.replace("HTTP/1.1", "HTTP/1.0"),
        ] {
            assert!(check_response(&broken, &key).is_err(), "{broken}");
        }
    }

    #[test]
    fn frame_headers_use_the_shortest_length_form() {
        for (len, header) in [(0, 6), (125, 6), (126, 8), (65535, 8), (65536, 14)] {
            let mut out = Vec::new();
            encode_client_frame(&mut out, OP_BINARY, &vec![7u8; len], [9, 8, 7, 6]);
            assert_eq!(client_header_len(len), header);
            assert_eq!(out.len(), header + len);
            assert_eq!(out[0], 0x82);
            assert_eq!(out[1] & 0x80, 0x80, "client frames are masked");
            assert_eq!(&out[header - 4..header], &[9, 8, 7, 6]);
            match header {
                6 => assert_eq!(usize::from(out[1] & 0x7F), len),
                8 => assert_eq!(usize::from(u16::from_be_bytes([out[2], out[3]])), len),
                _ => assert_eq!(out[2..10], (len as u64).to_be_bytes()),
            }
        }
    }

    #[test]
    fn header_need_follows_the_length_byte() {
        let mut buf = [0u8; 10];
        assert_eq!(header_need(&buf, 0), 2);
        buf[1] = 125;
        assert_eq!(header_need(&buf, 2), 2);
        buf[1] = 126;
        assert_eq!(header_need(&buf, 2), 4);
        buf[1] = 127;
        assert_eq!(header_need(&buf, 3), 10);
    }

    #[test]
    fn options_are_checked() {
        let mut o = WsOpts::new("127.0.0.1:1".parse().unwrap());
        assert!(o.validate().is_ok());
        o.path = "chat".into();
        assert!(o.validate().is_err());
        o.path = "/a b".into();
        assert!(o.validate().is_err());
        o.path = "/".into();
        o.size = MAX_SIZE + 1;
        assert!(o.validate().is_err());
        o.size = 1 << 20;
        o.depth = 65;
        assert!(o.validate().is_err());
    }

    proptest! {
        #[test]
        fn masking_twice_restores_the_payload(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            mask in any::<[u8; 4]>(),
        ) {
            let mut out = Vec::new();
            encode_client_frame(&mut out, OP_BINARY, &data, mask);
            let h = client_header_len(data.len());
            for (k, (&m, &d)) in out[h..].iter().zip(&data).enumerate() {
                prop_assert_eq!(m, d ^ mask[k % 4]);
            }
            let mut back = out[h..].to_vec();
            apply_mask(&mut back, mask);
            prop_assert_eq!(back, data);
        }

        #[test]
        fn response_checking_never_panics(head in ".{0,300}", key in "[A-Za-z0-9+/=]{0,30}") {
            let _ = check_response(&head, &key);
        }
    }
}
