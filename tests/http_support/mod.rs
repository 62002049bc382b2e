//! Shared pieces of the HTTP integration tests: start a service on loopback, and a raw-byte
//! client that parses responses (Content-Length, chunked, or until close) with bounded waits.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use herd::clock::FakeClock;
use herd::http::{HttpOptions, HttpService, Router};
use herd::{Server, ServerHandle};
use herd_testkit::WAIT;

/// Serve `router` with `opts` on one loop, on a free loopback port.
pub fn serve(router: Router, opts: HttpOptions) -> ServerHandle {
    serve_service(HttpService::new(router).options(opts), None)
}

/// Serve a prepared service on one loop, optionally on a fake clock.
pub fn serve_service(service: HttpService, clock: Option<&FakeClock>) -> ServerHandle {
    let mut server = Server::new().bind("127.0.0.1:0").unwrap().loops(1);
    if let Some(c) = clock {
        server = server.clock(Arc::new(c.clone()));
    }
    service.serve(server).unwrap()
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub trailers: Vec<(String, String)>,
    /// The body was chunked.
    pub chunked: bool,
}

impl Resp {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the response announces `Connection: close`.
    pub fn says_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP/1.1 client over one connection; keeps unparsed bytes between responses.
pub struct Client {
    pub s: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        Client {
            s: herd_testkit::connect(addr),
            buf: Vec::new(),
            eof: false,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).unwrap();
    }

    /// `GET path` with a Host header.
    pub fn get(&mut self, path: &str) -> Resp {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        self.response()
    }

    /// Read more bytes; false on EOF (or reset).
    fn fill(&mut self) -> bool {
        if self.eof {
            return false;
        }
        let mut tmp = [0u8; 65536];
        match self.s.read(&mut tmp) {
            Ok(0) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                self.eof = true;
                false
            }
            Err(e) => panic!("read: {e} (after {} buffered bytes)", self.buf.len()),
        }
    }

    /// Bytes up to and including the first `\r\n\r\n`, removed from the buffer.
    fn take_head(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..i + 4).collect();
                return String::from_utf8(head).expect("response head is UTF-8");
            }
            assert!(
                self.fill(),
                "connection closed before a response head; got {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    fn take_exact(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill(), "connection closed inside a body");
        }
        self.buf.drain(..n).collect()
    }

    fn take_line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            assert!(self.fill(), "connection closed inside a chunked body");
        }
    }

    /// The next response to a request that is not HEAD.
    pub fn response(&mut self) -> Resp {
        self.read_response(false)
    }

    /// The next response to a HEAD request (never a body).
    pub fn head_response(&mut self) -> Resp {
        self.read_response(true)
    }

    /// The next response head only: the status line and headers, nothing after.
    pub fn interim(&mut self) -> Resp {
        let head = self.take_head();
        parse_head(&head)
    }

    fn read_response(&mut self, head_request: bool) -> Resp {
        let head = self.take_head();
        let mut resp = parse_head(&head);
        let no_body = head_request
            || (100..200).contains(&resp.status)
            || resp.status == 204
            || resp.status == 304;
        if no_body {
            return resp;
        }
        if resp
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            resp.chunked = true;
            loop {
                let line = self.take_line();
                let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                    .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
                if size == 0 {
                    loop {
                        let t = self.take_line();
                        if t.is_empty() {
                            break;
                        }
                        let (k, v) = t.split_once(':').expect("trailer line");
                        resp.trailers.push((k.trim().into(), v.trim().into()));
                    }
                    break;
                }
                let data = self.take_exact(size);
                resp.body.extend_from_slice(&data);
                assert_eq!(self.take_exact(2), b"\r\n", "chunk not followed by CRLF");
            }
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().expect("numeric Content-Length");
            resp.body = self.take_exact(len);
        } else {
            while self.fill() {}
            resp.body = std::mem::take(&mut self.buf);
        }
        resp
    }

    /// Assert that the server closes the connection with nothing more to read.
    pub fn expect_close(&mut self) {
        let deadline = Instant::now() + WAIT;
        while self.fill() {
            assert!(Instant::now() < deadline, "server did not close");
        }
        assert!(
            self.buf.is_empty(),
            "unexpected bytes before close: {:?}",
            String::from_utf8_lossy(&self.buf)
        );
    }
}

fn parse_head(head: &str) -> Resp {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(
        status_line.starts_with("HTTP/1.1 "),
        "bad status line {status_line:?}"
    );
    let status: u16 = status_line[9..12].parse().unwrap();
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header line");
            (k.to_owned(), v.trim().to_owned())
        })
        .collect();
    Resp {
        status,
        headers,
        body: Vec::new(),
        trailers: Vec::new(),
        chunked: false,
    }
}

/// A cheap 64-bit hash of a byte stream fed in pieces of any size (FNV-1a over 8-byte words
/// with a byte tail), fast enough in debug builds for a gigabyte.
#[derive(Debug, Clone)]
pub struct StreamHash {
    h: u64,
    pending: [u8; 8],
    npending: usize,
    len: u64,
}

impl Default for StreamHash {
    fn default() -> Self {
        StreamHash {
            h: 0xcbf2_9ce4_8422_2325,
            pending: [0; 8],
            npending: 0,
            len: 0,
        }
    }
}

impl StreamHash {
    pub fn update(&mut self, mut data: &[u8]) {
        self.len += data.len() as u64;
        while self.npending > 0 && !data.is_empty() {
            self.pending[self.npending] = data[0];
            self.npending += 1;
            data = &data[1..];
            if self.npending == 8 {
                self.word(u64::from_le_bytes(self.pending));
                self.npending = 0;
            }
        }
        let mut words = data.chunks_exact(8);
        for w in &mut words {
            self.word(u64::from_le_bytes(w.try_into().unwrap()));
        }
        for &b in words.remainder() {
            self.pending[self.npending] = b;
            self.npending += 1;
        }
    }

    fn word(&mut self, w: u64) {
        self.h = (self.h ^ w).wrapping_mul(0x0000_0100_0000_01b3);
    }

    pub fn finish(&self) -> (u64, u64) {
        let mut h = self.h;
        for &b in &self.pending[..self.npending] {
            h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        (h, self.len)
    }
}
