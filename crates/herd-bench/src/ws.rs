//! WebSocket mode: many upgraded connections, `depth` binary messages in flight on each, every
//! echoed byte verified.
//!
//! Setup (before the measured run, blocking, per connection): connect, send an HTTP/1.1
//! upgrade request with a per-connection `Sec-WebSocket-Key`, and check the answer: status
//! `101`, `Upgrade: websocket`, `Connection: upgrade`, the `Sec-WebSocket-Accept` computed from
//! the key (with the `sha1` and `base64` crates, not with herd-proto's handshake code), no
//! extension, and nothing sent after the head. A failed handshake fails the run
//! ([`Error::Echo`]). Then, as in [`echo`](crate::echo), each
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
//! With `--deflate` or `--payload json` a second client path runs instead (`MsgConn`, the
//! plain path above is untouched): the upgrade offers permessage-deflate (RFC 7692; see
//! [`Deflate`]) and [`check_response_deflate`] fails the connection unless the `101` accepted
//! it; each message ([`json_message`] text or the pattern) is compressed with herd-proto's
//! sans-IO `Deflater` (reset per message when `client_no_context_takeover` was agreed) and
//! sent as one masked frame with RSV1; each echo is collected whole, inflated with an
//! `Inflater` if it has RSV1 (reset per message under `server_no_context_takeover`) and
//! compared with the message sent. [`hold_open`] and [`hold_echo`] do the same for
//! `herd-bench hold --ws` (memory per idle upgraded connection).
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
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use herd_proto::ws::deflate::{Deflater, Inflater};
use sha1::{Digest, Sha1};

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
    /// Offer permessage-deflate (RFC 7692) and send every message compressed; `None` (the
    /// default) offers no extension and keeps the plain binary path.
    pub deflate: Option<Deflate>,
    /// What the messages hold.
    pub payload: Payload,
}

/// The permessage-deflate offer of `--deflate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deflate {
    /// `permessage-deflate; client_no_context_takeover; server_no_context_takeover`: both
    /// ends reset their contexts per message (and the server must agree to).
    Shared,
    /// `permessage-deflate; client_max_window_bits`: contexts kept across messages, unless the
    /// server's answer says otherwise.
    Takeover,
}

impl Deflate {
    /// The `Sec-WebSocket-Extensions` value offered.
    pub fn offer(self) -> &'static str {
        match self {
            Deflate::Shared => {
                "permessage-deflate; client_no_context_takeover; server_no_context_takeover"
            }
            Deflate::Takeover => "permessage-deflate; client_max_window_bits",
        }
    }

    /// Parses `shared` or `takeover`.
    pub fn parse(s: &str) -> Result<Deflate, String> {
        match s {
            "shared" => Ok(Deflate::Shared),
            "takeover" => Ok(Deflate::Takeover),
            other => Err(format!("`{other}`: expected shared or takeover")),
        }
    }
}

/// What the messages of a run hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Payload {
    /// The connection's [`Pattern`] stream, in binary frames (incompressible).
    #[default]
    Pattern,
    /// JSON-like text of exactly `size` bytes ([`json_message`]), in text frames; it
    /// compresses about 3x per message, 5-6x with context takeover.
    Json,
}

impl Payload {
    /// Parses `pattern` or `json`.
    pub fn parse(s: &str) -> Result<Payload, String> {
        match s {
            "pattern" | "binary" => Ok(Payload::Pattern),
            "json" => Ok(Payload::Json),
            other => Err(format!("`{other}`: expected pattern or json")),
        }
    }
}

/// Smallest `--size` of a JSON message (its fixed head and tail must fit).
pub const MIN_JSON_SIZE: usize = 96;

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
            deflate: None,
            payload: Payload::Pattern,
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
        if self.payload == Payload::Json && self.size < MIN_JSON_SIZE {
            return Err(Error::Opts(format!(
                "--payload json needs --size of at least {MIN_JSON_SIZE}"
            )));
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

/// The `Sec-WebSocket-Accept` a server must answer to `key`: base64(SHA-1(key + GUID)).
///
/// ```
/// // The example of RFC 6455 section 1.3.
/// let accept = herd_bench::ws::accept_key("dGhlIHNhbXBsZSBub25jZQ==");
/// assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &str) -> String {
    let digest = Sha1::new()
        .chain_update(key.as_bytes())
        .chain_update(GUID.as_bytes())
        .finalize();
    STANDARD.encode(digest)
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
    STANDARD.encode(raw)
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

/// The upgrade request with a `Sec-WebSocket-Extensions: EXTENSIONS` line before the blank
/// line when `extensions` is given (and exactly [`upgrade_request`] when it is not).
///
/// ```
/// let req = herd_bench::ws::upgrade_request_with("/", "h", "a2V5", Some("permessage-deflate"));
/// assert!(req.ends_with("Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"));
/// assert_eq!(herd_bench::ws::upgrade_request_with("/", "h", "k", None), herd_bench::ws::upgrade_request("/", "h", "k"));
/// ```
pub fn upgrade_request_with(path: &str, host: &str, key: &str, extensions: Option<&str>) -> String {
    let mut req = upgrade_request(path, host, key);
    if let Some(ext) = extensions {
        req.truncate(req.len() - 2);
        req.push_str(&format!("Sec-WebSocket-Extensions: {ext}\r\n\r\n"));
    }
    req
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
    match check_head(head, key)? {
        None => Ok(()),
        Some(value) => Err(format!(
            "server chose extensions `{value}`, none were offered"
        )),
    }
}

/// Checks a handshake response to an upgrade that offered `mode`'s permessage-deflate: the
/// checks of [`check_response`], then the server must have accepted the extension
/// ([`parse_accepted`]); a declined offer is an error, so a run never measures plain frames
/// by mistake.
pub fn check_response_deflate(head: &str, key: &str, mode: Deflate) -> Result<Agreed, String> {
    match check_head(head, key)? {
        None => Err(format!(
            "server declined permessage-deflate (no Sec-WebSocket-Extensions in its 101 to `{}`)",
            mode.offer()
        )),
        Some(value) => parse_accepted(&value, mode),
    }
}

/// The permessage-deflate parameters a server's `101` accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// The client resets its compressor after each message (always, with [`Deflate::Shared`]).
    pub client_no_context_takeover: bool,
    /// The server resets its compressor after each message, so the client resets its
    /// decompressor.
    pub server_no_context_takeover: bool,
    /// The window the client must compress within (15 when the server set none).
    pub client_max_window_bits: u8,
}

/// Parses the `Sec-WebSocket-Extensions` value of a `101` against the offer of `mode`
/// (RFC 7692 section 7.1): exactly one `permessage-deflate`, known parameters each at most
/// once, `server_no_context_takeover` present when it was offered, `client_max_window_bits`
/// only when it was offered, and window bits of 9 to 15 (the compressor cannot use 8).
///
/// ```
/// use herd_bench::ws::{parse_accepted, Deflate};
/// let a = parse_accepted("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12", Deflate::Takeover).unwrap();
/// assert_eq!((a.client_no_context_takeover, a.server_no_context_takeover, a.client_max_window_bits), (false, false, 12));
/// assert!(parse_accepted("permessage-deflate", Deflate::Shared).is_err());
/// ```
pub fn parse_accepted(value: &str, mode: Deflate) -> Result<Agreed, String> {
    let bad = |why: &str| Err(format!("bad permessage-deflate answer `{value}`: {why}"));
    if value.contains(',') {
        return bad("more than one extension");
    }
    let mut parts = value.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|e| e.eq_ignore_ascii_case("permessage-deflate"))
    {
        return bad("not permessage-deflate");
    }
    let mut a = Agreed {
        client_no_context_takeover: mode == Deflate::Shared,
        server_no_context_takeover: false,
        client_max_window_bits: 15,
    };
    let mut seen: Vec<String> = Vec::new();
    for param in parts {
        let (name, val) = match param.split_once('=') {
            Some((n, v)) => (
                n.trim().to_ascii_lowercase(),
                Some(v.trim().trim_matches('"')),
            ),
            None => (param.to_ascii_lowercase(), None),
        };
        if seen.contains(&name) {
            return bad("a parameter is repeated");
        }
        seen.push(name.clone());
        let bits = || -> Result<u8, String> {
            match val.and_then(|v| v.parse::<u8>().ok()) {
                Some(b @ 9..=15) => Ok(b),
                _ => Err(format!(
                    "bad permessage-deflate answer `{value}`: window bits must be 9 to 15"
                )),
            }
        };
        match (name.as_str(), val) {
            ("server_no_context_takeover", None) => a.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => a.client_no_context_takeover = true,
            ("server_max_window_bits", Some(_)) => {
                bits()?;
            }
            ("client_max_window_bits", Some(_)) if mode == Deflate::Takeover => {
                a.client_max_window_bits = bits()?
            }
            _ => return bad(&format!("unexpected parameter `{param}`")),
        }
    }
    if mode == Deflate::Shared && !a.server_no_context_takeover {
        return bad("server_no_context_takeover was offered but not accepted");
    }
    Ok(a)
}

/// [`check_response`]'s checks; returns the `Sec-WebSocket-Extensions` value, if any.
fn check_head(head: &str, key: &str) -> Result<Option<String>, String> {
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 101") {
        return Err(format!("handshake answered `{status}`, not 101"));
    }
    let (mut upgrade, mut connection, mut accept) = (false, false, None);
    let mut extensions: Option<String> = None;
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
                extensions = Some(match extensions {
                    Some(before) => format!("{before}, {value}"),
                    None => value.to_string(),
                })
            }
            _ => {}
        }
    }
    if !upgrade || !connection {
        return Err("101 without `Upgrade: websocket` and `Connection: upgrade`".into());
    }
    let want = accept_key(key);
    match accept {
        Some(got) if got == want => Ok(extensions),
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
    put_header_b0(out, 0x80 | (opcode & 0x0F), len, mask);
}

/// A masked client frame header whose first byte (FIN, RSV bits, opcode) is `b0`.
fn put_header_b0(out: &mut Vec<u8>, b0: u8, len: usize, mask: [u8; 4]) {
    out.push(b0);
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
    if opts.deflate.is_some() || opts.payload != Payload::Pattern {
        return driver::run(&plan, |index| {
            let (stream, agreed) = open(opts, index)?;
            Ok((stream, MsgConn::new(opts, index, agreed)))
        });
    }
    driver::run(&plan, |index| {
        let (stream, _) = open(opts, index)?;
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
/// With `opts.deflate`, the offer is sent and the agreed parameters come back (a declined
/// offer fails the connection).
fn open(opts: &WsOpts, index: usize) -> Result<(std::net::TcpStream, Option<Agreed>), Error> {
    open_to(
        opts.addr,
        &opts.path,
        opts.deflate,
        index,
        opts.connect_attempts,
    )
}

fn open_to(
    addr: SocketAddr,
    path: &str,
    deflate: Option<Deflate>,
    index: usize,
    attempts: u32,
) -> Result<(std::net::TcpStream, Option<Agreed>), Error> {
    let mut s = connect_with_retry(addr, index, attempts)?;
    let fail = |reason: String| Error::Echo { index, reason };
    let io_fail = |e: io::Error| fail(format!("handshake: {e}"));
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    s.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let key = client_key(index);
    let host = addr.to_string();
    let req = upgrade_request_with(path, &host, &key, deflate.map(Deflate::offer));
    s.write_all(req.as_bytes()).map_err(io_fail)?;
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
    let head = String::from_utf8_lossy(&got[..end]);
    let agreed = match deflate {
        None => {
            check_response(&head, &key).map_err(fail)?;
            None
        }
        Some(mode) => Some(check_response_deflate(&head, &key, mode).map_err(fail)?),
    };
    if got.len() > end {
        return Err(fail(format!(
            "server sent {} bytes after the 101, before any message",
            got.len() - end
        )));
    }
    s.set_read_timeout(None)?;
    s.set_write_timeout(None)?;
    Ok((s, agreed))
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

const OP_TEXT: u8 = 0x1;
/// RSV1: the frame's message is compressed (RFC 7692 section 6).
const RSV1: u8 = 0x40;
/// zlib level of the client's compressor: the cheapest that compresses, so the generator
/// stays cheap (the server's inflate cost hardly depends on it).
const CLIENT_LEVEL: u32 = 1;

/// SplitMix64: the numbers of [`json_message`].
fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes message `seq` of connection `conn` into `out` (cleared first): JSON-like ASCII text
/// of exactly `size` bytes (at least [`MIN_JSON_SIZE`]): `{"seq":..,"conn":..,"items":[...],
/// "pad":"..."}` with records of ids, user names, timestamps, scores, tags and flags whose
/// numbers vary per message, so it compresses like real API traffic, not like a constant:
/// about 3x per message with zlib (2.5x at zlib-rs level 1, whose static Huffman trees
/// lose some), 5-6x with context takeover.
///
/// ```
/// let mut a = Vec::new();
/// let mut b = Vec::new();
/// herd_bench::ws::json_message(1, 7, 1024, &mut a);
/// herd_bench::ws::json_message(1, 8, 1024, &mut b);
/// assert_eq!((a.len(), b.len()), (1024, 1024));
/// assert!(a.starts_with(b"{\"seq\":7,") && a.ends_with(b"\"}") && a != b);
/// ```
pub fn json_message(conn: u64, seq: u64, size: usize, out: &mut Vec<u8>) {
    use std::io::Write as _;
    const TAGS: [&str; 8] = [
        "alpha", "beta", "gamma", "delta", "prod", "staging", "eu-west", "us-east",
    ];
    const STATUS: [&str; 4] = ["pending", "paid", "shipped", "delivered"];
    const TAIL: &[u8] = b"],\"pad\":\"\"}";
    out.clear();
    let mut x = conn.wrapping_mul(0xA24B_AED4_963E_E407) ^ seq;
    let _ = write!(out, "{{\"seq\":{seq},\"conn\":{conn},\"items\":[");
    let mut first = true;
    let mut rec = 0u64;
    loop {
        let at = out.len();
        let r = splitmix(&mut x);
        let n = (seq * 16 + rec) % 1_000_000;
        let _ = write!(
            out,
            "{}{{\"id\":{},\"type\":\"order.updated\",\"user\":{{\"name\":\"user_{:03}\",\
             \"role\":\"customer\"}},\"ts\":{},\"amount\":{}.{:02},\"currency\":\"EUR\",\
             \"status\":\"{}\",\"shipping\":{{\"country\":\"DE\",\"method\":\"standard\"}},\"tags\":[\"{}\",\"{}\"],\"active\":{}}}",
            if first { "" } else { "," },
            100_000 + n,
            r % 500,
            1_733_500_000_000 + seq * 1000 + rec * 7 + (r >> 20) % 100,
            (r >> 32) % 1000,
            (r >> 40) % 100,
            STATUS[(r >> 44) as usize % 4],
            TAGS[(r >> 48) as usize % 8],
            TAGS[(r >> 52) as usize % 8],
            (r >> 60) & 1 == 1,
        );
        rec += 1;
        if out.len() + TAIL.len() > size {
            out.truncate(at);
            break;
        }
        first = false;
    }
    out.extend_from_slice(&TAIL[..TAIL.len() - 2]);
    let mut k = 0u8;
    while out.len() + 2 < size {
        out.push(b'a' + k % 26);
        k = k.wrapping_add(1);
    }
    out.extend_from_slice(b"\"}");
    out.truncate(size);
}

/// The client's permessage-deflate contexts, set up from what the server agreed to.
struct Zlib {
    deflater: Deflater,
    inflater: Inflater,
}

impl Zlib {
    fn new(a: &Agreed) -> Zlib {
        Zlib {
            deflater: Deflater::new(
                CLIENT_LEVEL,
                a.client_max_window_bits,
                a.client_no_context_takeover,
            ),
            inflater: Inflater::new(a.server_no_context_takeover),
        }
    }
}

/// Message `seq` of connection `index` as `payload` says, `size` bytes, into `out`.
fn message(payload: Payload, index: usize, seq: u64, size: usize, out: &mut Vec<u8>) {
    match payload {
        Payload::Json => json_message(index as u64, seq, size, out),
        Payload::Pattern => {
            out.clear();
            out.resize(size, 0);
            Pattern::new(index as u64).fill(seq * size as u64, out);
        }
    }
}

/// A connection of the message path (`--deflate` or `--payload json`): whole messages are
/// generated, compressed (when deflate was agreed: RSV1 set), sent, and each echo is
/// collected, inflated if it has RSV1 and compared with what was sent. The server may echo
/// a message uncompressed (RSV1 clear; the extension allows it per message).
struct MsgConn {
    index: usize,
    size: usize,
    payload: Payload,
    opcode: u8,
    /// Messages queued so far; the next one's sequence number.
    sent: u64,
    /// Messages verified so far; the sequence number of the one being received.
    done: u64,
    frames: u32,
    inflight: VecDeque<Instant>,
    rx: Rx,
    /// The message being received is compressed (RSV1 on its frame).
    rsv1: bool,
    /// Payload bytes of the message being received.
    wire: Vec<u8>,
    /// Scratch: the plain message being sent, or the inflated echo.
    plain: Vec<u8>,
    /// Scratch: the expected echo, or the compressed message being sent.
    scratch: Vec<u8>,
    z: Option<Zlib>,
    ctl: Vec<u8>,
}

impl MsgConn {
    fn new(opts: &WsOpts, index: usize, agreed: Option<Agreed>) -> MsgConn {
        let size = opts.size;
        MsgConn {
            index,
            size,
            payload: opts.payload,
            opcode: match opts.payload {
                Payload::Json => OP_TEXT,
                Payload::Pattern => OP_BINARY,
            },
            sent: 0,
            done: 0,
            frames: 0,
            inflight: VecDeque::with_capacity(opts.depth),
            rx: Rx::header(),
            rsv1: false,
            wire: Vec::with_capacity(size + 64),
            plain: Vec::with_capacity(size + 64),
            scratch: Vec::with_capacity(size + 64),
            z: agreed.as_ref().map(Zlib::new),
            ctl: Vec::with_capacity(125),
        }
    }

    /// Largest frame payload accepted: the message, or its compressed form (deflate can grow
    /// incompressible data by a few bytes per 16 KiB block).
    fn max_wire(&self) -> usize {
        self.size + self.size / 64 + 64
    }

    fn next_mask(&mut self) -> [u8; 4] {
        self.frames = self.frames.wrapping_add(1);
        (self.frames.wrapping_mul(0x9E37_79B9) ^ self.index as u32 ^ 0x5A5A_0000).to_be_bytes()
    }

    /// A whole header: what comes next.
    fn header_done(&mut self, b0: u8, len: u64) -> Result<Rx, String> {
        let opcode = b0 & 0x0F;
        if b0 & 0x30 != 0 || (b0 & RSV1 != 0 && (self.z.is_none() || opcode >= 0x8)) {
            return Err(format!("reserved bits set in {b0:#04x}"));
        }
        match opcode {
            OP_TEXT | OP_BINARY if opcode == self.opcode => {
                if self.inflight.is_empty() {
                    return Err("a message arrived when none was in flight".into());
                }
                if b0 & RSV1 == 0 && len != self.size as u64 {
                    return Err(format!("message of {len} bytes, expected {}", self.size));
                }
                if len > self.max_wire() as u64 {
                    return Err(format!("compressed message of {len} bytes"));
                }
                self.rsv1 = b0 & RSV1 != 0;
                self.wire.clear();
                Ok(Rx::Data { left: len as usize })
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

    /// The payload of a whole echoed message is in `wire`: inflate, compare, count.
    fn message_done(
        &mut self,
        now: Instant,
        out: &mut Vec<u8>,
        w: &mut Window,
    ) -> Result<(), Stop> {
        let got: &[u8] = if self.rsv1 {
            let z = self
                .z
                .as_mut()
                .ok_or_else(|| "RSV1 without deflate".to_string())?;
            self.plain.clear();
            z.inflater
                .inflate(&self.wire, self.size as u64, &mut self.plain)
                .map_err(|e| format!("inflating the echo: {} ({})", e.reason, e.close_code))?;
            &self.plain
        } else {
            &self.wire
        };
        message(
            self.payload,
            self.index,
            self.done,
            self.size,
            &mut self.scratch,
        );
        if got != self.scratch.as_slice() {
            let at = got
                .iter()
                .zip(&self.scratch)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(self.scratch.len()));
            return Err(format!(
                "echo of message {} differs at byte {at} ({} bytes, expected {}{})",
                self.done,
                got.len(),
                self.size,
                if self.rsv1 { ", inflated" } else { "" }
            )
            .into());
        }
        self.done += 1;
        let sent_at = self.inflight.pop_front().unwrap_or(now);
        if w.complete(sent_at, now) {
            self.queue(out, now);
        }
        Ok(())
    }

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

impl Client for MsgConn {
    const MISMATCH: &'static str = "bad message";

    fn wire_len(&self) -> usize {
        client_header_len(self.max_wire()) + self.max_wire()
    }

    /// Appends the next message, compressed with RSV1 set when deflate was agreed.
    fn queue(&mut self, out: &mut Vec<u8>, now: Instant) {
        let mask = self.next_mask();
        message(
            self.payload,
            self.index,
            self.sent,
            self.size,
            &mut self.plain,
        );
        let (b0, body) = match &mut self.z {
            Some(z) => {
                self.scratch.clear();
                z.deflater.deflate(&self.plain, &mut self.scratch);
                (0x80 | RSV1 | self.opcode, &self.scratch)
            }
            None => (0x80 | self.opcode, &self.plain),
        };
        put_header_b0(out, b0, body.len(), mask);
        let at = out.len();
        out.extend_from_slice(body);
        apply_mask(&mut out[at..], mask);
        self.sent += 1;
        self.inflight.push_back(now);
    }

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
                    self.rx = self.header_done(b0, len)?;
                    match self.rx {
                        Rx::Control { opcode, left: 0 } => {
                            self.rx = Rx::header();
                            self.control_done(opcode, out)?;
                        }
                        Rx::Data { left: 0 } => {
                            self.rx = Rx::header();
                            self.message_done(now, out, w)?;
                        }
                        _ => {}
                    }
                }
                Rx::Data { left } => {
                    let take = (*left).min(chunk.len());
                    self.wire.extend_from_slice(&chunk[..take]);
                    *left -= take;
                    chunk = &chunk[take..];
                    if *left == 0 {
                        self.rx = Rx::header();
                        self.message_done(now, out, w)?;
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

/// What a WebSocket hold run does (`herd-bench hold --ws`): upgrade every connection (with
/// the `deflate` offer, checked as in a load run), then optionally one echoed message each.
#[derive(Clone, Debug)]
pub struct WsHoldOpts {
    /// Server address; the only place the run connects to.
    pub addr: SocketAddr,
    /// Request path of the upgrades.
    pub path: String,
    /// Connections to open and upgrade.
    pub connections: usize,
    /// Bytes of the one message echoed on each connection by [`hold_echo`].
    pub size: usize,
    /// The permessage-deflate offer, if any.
    pub deflate: Option<Deflate>,
    /// What the message holds.
    pub payload: Payload,
    /// Connect attempts per connection.
    pub connect_attempts: u32,
}

/// Opens and upgrades `opts.connections` connections (blocking, one after another) and
/// returns them with what each agreed; any failure is an error naming the connection.
pub fn hold_open(opts: &WsHoldOpts) -> Result<Vec<(std::net::TcpStream, Option<Agreed>)>, Error> {
    if opts.connections == 0
        || opts.size == 0
        || opts.size > MAX_SIZE
        || (opts.payload == Payload::Json && opts.size < MIN_JSON_SIZE)
    {
        return Err(Error::Opts(format!(
            "--connections must be at least 1 and --size between 1 byte ({MIN_JSON_SIZE} for \
             json) and 16 MiB"
        )));
    }
    (0..opts.connections)
        .map(|index| {
            open_to(
                opts.addr,
                &opts.path,
                opts.deflate,
                index,
                opts.connect_attempts,
            )
        })
        .collect()
}

/// Sends one message (compressed when deflate was agreed) on each held connection and checks
/// its echo (inflated if RSV1), blocking with a 5 s timeout per read; an error names the
/// connection.
pub fn hold_echo(
    opts: &WsHoldOpts,
    held: &mut [(std::net::TcpStream, Option<Agreed>)],
) -> Result<(), Error> {
    let (mut plain, mut comp, mut frame, mut back) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let opcode = match opts.payload {
        Payload::Json => OP_TEXT,
        Payload::Pattern => OP_BINARY,
    };
    for (index, (s, agreed)) in held.iter_mut().enumerate() {
        let fail = |reason: String| Error::Echo { index, reason };
        let mut z = agreed.as_ref().map(Zlib::new);
        message(opts.payload, index, 0, opts.size, &mut plain);
        frame.clear();
        let mask = (index as u32 ^ 0x1234_5678).to_be_bytes();
        let (b0, body) = match &mut z {
            Some(z) => {
                comp.clear();
                z.deflater.deflate(&plain, &mut comp);
                (0x80 | RSV1 | opcode, &comp)
            }
            None => (0x80 | opcode, &plain),
        };
        put_header_b0(&mut frame, b0, body.len(), mask);
        let at = frame.len();
        frame.extend_from_slice(body);
        apply_mask(&mut frame[at..], mask);
        s.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        s.write_all(&frame)
            .map_err(|e| fail(format!("write: {e}")))?;
        let (b0, payload) = read_server_frame(s).map_err(|e| fail(format!("read: {e}")))?;
        if b0 & 0x0F != opcode || b0 & 0x80 == 0 {
            return Err(fail(format!("echo frame starts {b0:#04x}")));
        }
        let got = if b0 & RSV1 != 0 {
            let z = z
                .as_mut()
                .ok_or_else(|| fail("RSV1 without deflate".into()))?;
            back.clear();
            z.inflater
                .inflate(&payload, opts.size as u64, &mut back)
                .map_err(|e| fail(format!("inflating the echo: {}", e.reason)))?;
            &back
        } else {
            &payload
        };
        if *got != plain {
            return Err(fail("echo mismatch".into()));
        }
        s.set_read_timeout(None)?;
    }
    Ok(())
}

/// Reads one unmasked server frame (blocking): its first byte and payload.
fn read_server_frame(s: &mut std::net::TcpStream) -> io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h)?;
    let len = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    if h[1] & 0x80 != 0 || len > MAX_SIZE as u64 {
        return Err(io::Error::other("masked or oversized server frame"));
    }
    let mut payload = vec![0u8; len as usize];
    s.read_exact(&mut payload)?;
    Ok((h[0], payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn client_keys_are_the_pattern_bytes_in_base64() {
        let mut raw = [0u8; 16];
        Pattern::new(!7u64).fill(0, &mut raw);
        assert_eq!(STANDARD.decode(client_key(7)).unwrap(), raw);
        // A second vector beside the RFC 6455 one in the doc test.
        assert_eq!(
            accept_key("x3JJHMbDL1EzLkh9GBhXDw=="),
            "HSmrc0sMlYUkAGmm5OPpG2HaGWk="
        );
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

    /// Splits a client frame at the start of `buf`: first byte, unmasked payload, length.
    fn decode_client_frame(buf: &[u8]) -> (u8, Vec<u8>, usize) {
        let (len, at) = match buf[1] & 0x7F {
            126 => (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
            127 => (
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (usize::from(n), 2),
        };
        assert_eq!(buf[1] & 0x80, 0x80, "client frames are masked");
        let mask = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        let mut payload = buf[at + 4..at + 4 + len].to_vec();
        apply_mask(&mut payload, mask);
        (buf[0], payload, at + 4 + len)
    }

    fn server_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![b0];
        match payload.len() {
            n @ 0..=125 => f.push(n as u8),
            n @ 126..=0xFFFF => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    /// The deflate client path against an in-memory server built from herd-proto's own
    /// Deflater/Inflater, in both modes: every message goes out as one masked text frame with
    /// RSV1, inflates to the JSON message it should be, and the server's compressed echo
    /// (fed in 7-byte pieces) completes it; a corrupted echo is a mismatch.
    #[test]
    fn deflate_client_round_trips_through_a_deflating_server() {
        for (mode, answer) in [
            (
                Deflate::Shared,
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            ),
            (
                Deflate::Takeover,
                "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
            ),
        ] {
            let agreed = parse_accepted(answer, mode).unwrap();
            let reset = mode == Deflate::Shared;
            assert_eq!(agreed.server_no_context_takeover, reset);
            assert_eq!(agreed.client_no_context_takeover, reset);
            let opts = WsOpts {
                size: 1024,
                deflate: Some(mode),
                payload: Payload::Json,
                ..WsOpts::new("127.0.0.1:1".parse().unwrap())
            };
            let mut conn = MsgConn::new(&opts, 3, Some(agreed));
            let mut server_in = Inflater::new(reset);
            let mut server_out = Deflater::new(6, 12, reset);
            let mut w = Window::for_test();
            let now = Instant::now();
            let mut out = Vec::new();
            conn.queue(&mut out, now);
            let mut wire_total = 0;
            for seq in 0..20u64 {
                let (b0, payload, used) = decode_client_frame(&out);
                assert_eq!(used, out.len(), "one frame per message");
                assert_eq!(b0, 0x80 | RSV1 | OP_TEXT);
                wire_total += payload.len();
                let mut plain = Vec::new();
                server_in.inflate(&payload, 1 << 20, &mut plain).unwrap();
                let mut want = Vec::new();
                json_message(3, seq, 1024, &mut want);
                assert_eq!(plain, want, "message {seq}");
                let mut echo = Vec::new();
                server_out.deflate(&plain, &mut echo);
                let frame = server_frame(0x80 | RSV1 | OP_TEXT, &echo);
                out.clear();
                for piece in frame.chunks(7) {
                    conn.take(piece, now, &mut out, &mut w).unwrap();
                }
                assert_eq!(w.completed(), seq + 1);
            }
            // JSON-like text compresses realistically, not to nothing.
            let ratio = 20.0 * 1024.0 / wire_total as f64;
            assert!((2.0..8.0).contains(&ratio), "{mode:?}: ratio {ratio:.2}");
            // An uncompressed echo (RSV1 clear) is fine too; a corrupted one is not.
            let (_, payload, _) = decode_client_frame(&out);
            let mut plain = Vec::new();
            server_in.inflate(&payload, 1 << 20, &mut plain).unwrap();
            let mut o2 = Vec::new();
            conn.take(&server_frame(0x80 | OP_TEXT, &plain), now, &mut o2, &mut w)
                .unwrap();
            assert_eq!(w.completed(), 21);
            let mut echo = Vec::new();
            Deflater::new(1, 15, true).deflate(&plain, &mut echo);
            let last = echo.len() - 3;
            echo[last] ^= 0x55;
            let bad = conn.take(
                &server_frame(0x80 | RSV1 | OP_TEXT, &echo),
                now,
                &mut Vec::new(),
                &mut w,
            );
            assert!(bad.is_err());
        }
    }

    #[test]
    fn deflate_answers_are_checked() {
        let s = Deflate::Shared;
        let t = Deflate::Takeover;
        assert!(parse_accepted("permessage-deflate; server_no_context_takeover", s).is_ok());
        for (bad, mode) in [
            ("permessage-deflate", s),
            ("x-webkit-deflate-frame", t),
            ("permessage-deflate; client_max_window_bits=10", s),
            ("permessage-deflate; client_max_window_bits=8", t),
            ("permessage-deflate; server_max_window_bits", t),
            ("permessage-deflate; foo", t),
            (
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                t,
            ),
            ("permessage-deflate, permessage-deflate", t),
        ] {
            assert!(parse_accepted(bad, mode).is_err(), "{bad}");
        }
        let key = client_key(1);
        let head = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\n\r\n",
            accept_key(&key)
        );
        assert!(
            check_response_deflate(&head, &key, s).is_err(),
            "declined offer"
        );
        let with = head.replace(
            "\r\n\r\n",
            "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
        );
        assert!(check_response_deflate(&with, &key, t).is_ok());
        assert!(check_response(&with, &key).is_err());
    }

    #[test]
    fn json_messages_have_the_size_asked() {
        let mut m = Vec::new();
        for size in [MIN_JSON_SIZE, 200, 1024, 1025, 4096] {
            for seq in 0..5 {
                json_message(9, seq, size, &mut m);
                assert_eq!(m.len(), size);
                assert!(m.is_ascii() && m.ends_with(b"\"}"));
            }
        }
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
