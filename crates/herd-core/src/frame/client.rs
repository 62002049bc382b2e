//! A small blocking frame client: connect, call, pipelined calls, ping, pushes.
//!
//! Meant for tests, tools and simple services, not for high load (it is one blocking socket;
//! `herd-bench frame` is the load generator). It numbers requests itself, matches replies by
//! request id, keeps frames it was not waiting for (pushes, replies to other requests) in
//! arrival order for [`Client::recv`], and answers server pings while it waits. Every read is
//! bounded by the size limit before anything is allocated for a body. It uses std's
//! `TcpStream` and herd-proto's codec only; it knows nothing of the event loop.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use herd_proto::frame::{
    self as wire, ErrorCode, ErrorPayload, Flags, FrameDecoder, FrameError, Header, GOAWAY_ID,
    PING_ID, PONG_ID,
};
use prost::Message;

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// A frame received by the [`Client`], owning its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedFrame {
    /// The header as received.
    pub header: Header,
    /// The body.
    pub body: Vec<u8>,
}

impl OwnedFrame {
    /// Whether this is a push (the PUSH flag).
    pub fn is_push(&self) -> bool {
        self.header.flags.is_push()
    }

    /// The error payload (code and text) if this is an error frame.
    pub fn error(&self) -> Option<(ErrorCode, String)> {
        if !self.header.flags.is_error() {
            return None;
        }
        let p = ErrorPayload::parse(&self.body).ok()?;
        Some((p.code, p.text.into_owned()))
    }

    /// Decode the body as a prost message.
    pub fn decode<M: Message + Default>(&self) -> Result<M, ClientError> {
        M::decode(&self.body[..]).map_err(ClientError::BadBody)
    }
}

/// Why a client call failed.
#[derive(Debug)]
pub enum ClientError {
    /// The socket failed (including a read timeout).
    Io(io::Error),
    /// The server closed the connection before the awaited reply.
    Closed,
    /// The server sent bytes that are not a valid frame (or one over the size limit).
    Frame(FrameError),
    /// The server answered with an error frame.
    Server {
        /// The error code.
        code: ErrorCode,
        /// The error text.
        text: String,
    },
    /// A reply body did not decode as the expected prost message.
    BadBody(prost::DecodeError),
}

impl ClientError {
    /// The server's error code, if this is an error reply.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "i/o: {e}"),
            ClientError::Closed => f.write_str("connection closed by the server"),
            ClientError::Frame(e) => write!(f, "bad frame from the server: {e}"),
            ClientError::Server { code, text } => write!(f, "server error {code}: {text}"),
            ClientError::BadBody(e) => write!(f, "reply body does not decode: {e}"),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Io(e) => Some(e),
            ClientError::Frame(e) => Some(e),
            ClientError::BadBody(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> ClientError {
        ClientError::Io(e)
    }
}

/// A blocking frame-protocol client over one TCP connection.
///
/// ```no_run
/// use herd_core::frame::Client;
///
/// let mut c = Client::connect("127.0.0.1:7000")?;
/// c.set_timeout(Some(std::time::Duration::from_secs(5)))?;
/// let reply = c.call_raw(1, b"hello")?;                 // one round trip
/// let replies = c.pipeline_raw(&[(1, b"a"), (1, b"b")])?; // one write, two replies
/// c.ping()?;
/// # Ok::<(), herd_core::frame::ClientError>(())
/// ```
pub struct Client {
    stream: TcpStream,
    decoder: FrameDecoder,
    /// Bytes read and not yet decoded are `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
    /// Frames received while waiting for something else, oldest first.
    queued: VecDeque<OwnedFrame>,
    next_id: u32,
    out: Vec<u8>,
    /// The server sent GOAWAY: the next request goes on a new connection.
    going_away: bool,
    /// Where a new connection goes (the first server address).
    addr: Option<SocketAddr>,
    timeout: std::cell::Cell<Option<Duration>>,
    max_frame: Option<u32>,
    reconnects: u64,
}

impl Client {
    /// Connect (with `TCP_NODELAY`), no timeouts, the default 4 MiB frame limit.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Client::from_stream(stream))
    }

    /// Use an already connected stream.
    pub fn from_stream(stream: TcpStream) -> Client {
        let addr = stream.peer_addr().ok();
        Client {
            stream,
            decoder: FrameDecoder::default(),
            buf: Vec::new(),
            start: 0,
            queued: VecDeque::new(),
            next_id: 1,
            out: Vec::new(),
            going_away: false,
            addr,
            timeout: std::cell::Cell::new(None),
            max_frame: None,
            reconnects: 0,
        }
    }

    /// Whether the server said GOAWAY (it is draining). The next call reconnects first: to the
    /// same address, where the listening socket now belongs to a worker that stays.
    pub fn going_away(&self) -> bool {
        self.going_away
    }

    /// How many times a GOAWAY made this client reconnect.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Before a new request: after a GOAWAY, move to a new connection (same address, same
    /// timeouts and limits). Frames still queued from the old one stay queued.
    fn before_request(&mut self) -> io::Result<()> {
        if !self.going_away {
            return Ok(());
        }
        let addr = self.addr.ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotConnected, "no address to reconnect to")
        })?;
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(self.timeout.get())?;
        stream.set_write_timeout(self.timeout.get())?;
        self.stream = stream;
        self.decoder = self
            .max_frame
            .map_or_else(FrameDecoder::default, FrameDecoder::new);
        self.buf.clear();
        self.start = 0;
        self.going_away = false;
        self.reconnects += 1;
        Ok(())
    }

    /// Bound every read and write by `timeout` (`None`: wait forever). A timed-out call fails
    /// with [`ClientError::Io`].
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.timeout.set(timeout);
        self.stream.set_read_timeout(timeout)?;
        self.stream.set_write_timeout(timeout)
    }

    /// Refuse frames from the server with bodies over `max_frame` bytes.
    pub fn set_max_frame(&mut self, max_frame: u32) {
        self.max_frame = Some(max_frame);
        self.decoder = FrameDecoder::new(max_frame);
    }

    /// The server's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// The socket, e.g. to shut down its write side.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Frames received while waiting for something else and not yet handed out by
    /// [`recv`](Self::recv) or [`next_push`](Self::next_push).
    pub fn queued(&self) -> usize {
        self.queued.len()
    }

    /// A fresh request id (never 0, which means "no request").
    pub fn next_request_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        id
    }

    /// Send one frame as given (no waiting).
    pub fn send_frame(
        &mut self,
        msg_id: u16,
        flags: Flags,
        request_id: u32,
        body: &[u8],
    ) -> Result<(), ClientError> {
        self.out.clear();
        wire::encode(&mut self.out, msg_id, flags, request_id, body).map_err(ClientError::Frame)?;
        self.stream.write_all(&self.out)?;
        Ok(())
    }

    /// Write bytes as they are (for tests that send malformed or partial frames).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// One request with a raw body; waits for its reply body. An error frame answering it
    /// becomes [`ClientError::Server`].
    pub fn call_raw(&mut self, msg_id: u16, body: &[u8]) -> Result<Vec<u8>, ClientError> {
        self.before_request()?;
        let rid = self.next_request_id();
        self.send_frame(msg_id, Flags::EMPTY, rid, body)?;
        reply_body(self.wait_reply(rid)?)
    }

    /// One request with prost messages both ways.
    pub fn call<Req: Message, Resp: Message + Default>(
        &mut self,
        msg_id: u16,
        req: &Req,
    ) -> Result<Resp, ClientError> {
        self.before_request()?;
        let rid = self.next_request_id();
        self.out.clear();
        wire::encode_with(&mut self.out, msg_id, Flags::EMPTY, rid, |b| {
            req.encode_raw(b)
        })
        .map_err(ClientError::Frame)?;
        self.stream.write_all(&self.out)?;
        let body = reply_body(self.wait_reply(rid)?)?;
        Resp::decode(&body[..]).map_err(ClientError::BadBody)
    }

    /// Pipelined requests: all written in one `write`, then every reply awaited (they may
    /// arrive in any order; results are in request order). The outer error is a connection
    /// failure; the inner ones are per-request error replies.
    pub fn pipeline_raw(
        &mut self,
        calls: &[(u16, &[u8])],
    ) -> Result<Vec<Result<Vec<u8>, ClientError>>, ClientError> {
        self.before_request()?;
        self.out.clear();
        let mut ids = Vec::with_capacity(calls.len());
        for (msg_id, body) in calls {
            let rid = self.next_request_id();
            wire::encode(&mut self.out, *msg_id, Flags::EMPTY, rid, body)
                .map_err(ClientError::Frame)?;
            ids.push(rid);
        }
        self.stream.write_all(&self.out)?;
        let mut results = Vec::with_capacity(ids.len());
        for rid in ids {
            results.push(reply_body(self.wait_reply(rid)?));
        }
        Ok(results)
    }

    /// Send a ping and wait for its pong.
    pub fn ping(&mut self) -> Result<(), ClientError> {
        self.before_request()?;
        let rid = self.next_request_id();
        self.out.clear();
        wire::encode_ping(&mut self.out, rid);
        self.stream.write_all(&self.out)?;
        let pong = self.wait_for(|f| f.header.msg_id == PONG_ID && f.header.request_id == rid)?;
        debug_assert!(pong.body.is_empty());
        Ok(())
    }

    /// The next frame not yet handed out (queued ones first), of any kind; server pings are
    /// answered and not returned.
    pub fn recv(&mut self) -> Result<OwnedFrame, ClientError> {
        if let Some(f) = self.queued.pop_front() {
            return Ok(f);
        }
        self.read_frame()
    }

    /// The next push (PUSH flag); other frames met on the way stay queued for [`recv`].
    ///
    /// [`recv`]: Self::recv
    pub fn next_push(&mut self) -> Result<OwnedFrame, ClientError> {
        self.wait_for(|f| f.is_push())
    }

    /// Wait for the reply (RESPONSE flag) to request `rid`, or a connection-level error frame
    /// (request id 0).
    fn wait_reply(&mut self, rid: u32) -> Result<OwnedFrame, ClientError> {
        self.wait_for(|f| {
            let h = &f.header;
            (h.flags.is_response() && h.request_id == rid)
                || (h.flags.is_error() && h.request_id == 0)
        })
    }

    /// The first frame (queued or new) for which `want` holds; others are queued.
    fn wait_for(&mut self, want: impl Fn(&OwnedFrame) -> bool) -> Result<OwnedFrame, ClientError> {
        if let Some(i) = self.queued.iter().position(&want) {
            return Ok(self.queued.remove(i).expect("index from position"));
        }
        loop {
            let f = self.read_frame()?;
            if want(&f) {
                return Ok(f);
            }
            self.queued.push_back(f);
        }
    }

    /// Read the next frame from the socket, answering (and skipping) server pings.
    fn read_frame(&mut self) -> Result<OwnedFrame, ClientError> {
        loop {
            let pending = &self.buf[self.start..];
            if let (used, Some(frame)) = self.decoder.decode(pending).map_err(ClientError::Frame)? {
                let f = OwnedFrame {
                    header: frame.header,
                    body: frame.body.to_vec(),
                };
                self.start += used;
                if f.header.msg_id == PING_ID {
                    self.out.clear();
                    wire::encode_pong(&mut self.out, f.header.request_id);
                    self.stream.write_all(&self.out)?;
                    continue;
                }
                if f.header.msg_id == GOAWAY_ID {
                    self.going_away = true;
                    continue;
                }
                return Ok(f);
            }
            self.fill()?;
        }
    }

    /// Read more bytes into the buffer (compacting it first).
    fn fill(&mut self) -> Result<(), ClientError> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let have = self.buf.len();
        let want = self.decoder.needed(&self.buf).max(have + 1);
        let room = (want - have).max(READ_CHUNK);
        self.buf.resize(have + room, 0);
        let n = loop {
            match self.stream.read(&mut self.buf[have..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(have);
                    return Err(if e.kind() == io::ErrorKind::ConnectionReset {
                        ClientError::Closed
                    } else {
                        ClientError::Io(e)
                    });
                }
            }
        };
        self.buf.truncate(have + n);
        if n == 0 {
            return Err(ClientError::Closed);
        }
        Ok(())
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("peer", &self.stream.peer_addr().ok())
            .field("queued", &self.queued.len())
            .finish()
    }
}

/// A reply's body, or its error payload as [`ClientError::Server`].
fn reply_body(f: OwnedFrame) -> Result<Vec<u8>, ClientError> {
    match f.error() {
        Some((code, text)) => Err(ClientError::Server { code, text }),
        None if f.header.flags.is_error() => Err(ClientError::Server {
            code: ErrorCode::Other(0),
            text: "malformed error payload".into(),
        }),
        None => Ok(f.body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Reads one whole frame from a blocking socket.
    fn read_one(s: &mut TcpStream) -> (Header, Vec<u8>) {
        let mut head = [0u8; wire::HEADER_LEN];
        s.read_exact(&mut head).unwrap();
        let h = Header::parse(&head).unwrap();
        let mut body = vec![0; h.len as usize];
        s.read_exact(&mut body).unwrap();
        (h, body)
    }

    /// A scripted peer: answers the first request with a ping, a push, an unrelated reply
    /// and then the real reply, and checks that the client ponged the ping.
    #[test]
    fn waits_for_its_reply_answers_pings_and_queues_the_rest() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let (req, body) = read_one(&mut s);
            assert_eq!((req.msg_id, &body[..]), (3, &b"question"[..]));
            let mut out = Vec::new();
            wire::encode_ping(&mut out, 77);
            wire::encode(&mut out, 9, Flags::PUSH, 0, b"news").unwrap();
            wire::encode(
                &mut out,
                3,
                Flags::RESPONSE,
                req.request_id + 100,
                b"not yours",
            )
            .unwrap();
            // The reply arrives split over two writes.
            wire::encode(&mut out, 3, Flags::RESPONSE, req.request_id, b"answer").unwrap();
            let cut = out.len() - 3;
            s.write_all(&out[..cut]).unwrap();
            let (pong, _) = read_one(&mut s);
            assert_eq!((pong.msg_id, pong.request_id), (PONG_ID, 77));
            s.write_all(&out[cut..]).unwrap();
            // Then a connection-level error and close.
            let (req, _) = read_one(&mut s);
            out.clear();
            wire::encode_error(&mut out, 0, ErrorCode::Protocol, "bye").unwrap();
            s.write_all(&out).unwrap();
            drop(s);
            req.request_id
        });
        let mut c = Client::connect(addr).unwrap();
        c.set_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(c.call_raw(3, b"question").unwrap(), b"answer");
        assert_eq!(c.queued(), 2);
        assert_eq!(c.next_push().unwrap().body, b"news");
        assert_eq!(c.recv().unwrap().body, b"not yours");
        match c.call_raw(4, b"") {
            Err(ClientError::Server { code, text }) => {
                assert_eq!((code, text.as_str()), (ErrorCode::Protocol, "bye"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(c.recv(), Err(ClientError::Closed)));
        assert_eq!(peer.join().unwrap(), 2);
    }

    #[test]
    fn an_oversized_frame_from_the_server_is_refused_before_reading_it() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(&[0x7F, 0xFF, 0xFF, 0xFF, 0, 1, 0, 1, 0, 0, 0, 1])
                .unwrap();
            s
        });
        let mut c = Client::connect(addr).unwrap();
        c.set_max_frame(1024);
        c.set_timeout(Some(Duration::from_secs(10))).unwrap();
        match c.recv() {
            Err(ClientError::Frame(FrameError::TooLarge { max: 1024, .. })) => {}
            other => panic!("{other:?}"),
        }
        drop(peer.join().unwrap());
    }
}
