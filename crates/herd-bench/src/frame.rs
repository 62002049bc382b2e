//! Frame mode: RPC round trips in herd's frame protocol, `depth` requests in flight per
//! connection, every reply checked.
//!
//! Each request is one frame (12-byte header: u32 body length, u16 message id, u16 flags,
//! u32 request id, big-endian) whose body is the protobuf `RpcReq { uint64 id = 1; bytes
//! payload = 2; }` with `id` = the connection index and `size` payload bytes from the
//! connection's [`Pattern`]. The server (herd's `frame_rpc` example, or the `tokio-frame` peer)
//! answers an `RpcResp` with the same fields, so a correct reply is: same message id, flags
//! RESPONSE, a request id that is in flight on that connection, and a body byte-identical to
//! the request's. Anything else (an error frame such as BUSY, a wrong body, an unknown request
//! id) is a mismatch: printed (up to a few), counted, and that connection is closed.
//!
//! The header and the two protobuf fields are encoded here by hand, independently of
//! herd-proto and prost, so the load generator doubles as a check of both servers' encoders.
//! Threads, connecting, the measured window and the report are the shared client driver
//! (`driver.rs`), as for [`echo`](crate::echo): one mio loop per client thread, one clock read
//! per read syscall, the requests made by one read sent in one write, no allocation per
//! message once buffers have grown. Callers: the `herd-bench frame` command and bench/frame.sh.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::driver::{self, connect_with_retry, Client, Plan, Stop, Window};
use crate::pattern::Pattern;
use crate::stats::Report;
use crate::Error;

/// Frame header length.
const HEADER: usize = 12;
/// RESPONSE and ERROR flag bits.
const RESPONSE: u16 = 1;
const ERROR: u16 = 2;
/// Largest payload accepted.
pub const MAX_SIZE: usize = 4 << 20;

/// What a frame run does.
#[derive(Clone, Debug)]
pub struct FrameOpts {
    /// Server address; the only place the run connects to.
    pub addr: SocketAddr,
    /// Connections to open.
    pub connections: usize,
    /// Payload bytes per request (the protobuf body is a few bytes more).
    pub size: usize,
    /// Requests in flight per connection (1 = one round trip at a time).
    pub depth: usize,
    /// Message id of the requests (herd's `frame_rpc`: 1 inline, 2 worker pool).
    pub msg_id: u16,
    /// Measured window.
    pub duration: Duration,
    /// Time before the window whose messages are not counted.
    pub warmup: Duration,
    /// Client threads (event loops); capped at `connections`.
    pub threads: usize,
    /// Connect attempts per connection before giving up (at least 1).
    pub connect_attempts: u32,
}

impl FrameOpts {
    /// Defaults of the command line: 100 connections, 64 B, depth 1, message id 1, 10 s after
    /// 1 s warmup, one thread, 20 connect attempts.
    ///
    /// ```
    /// let o = herd_bench::frame::FrameOpts::new("127.0.0.1:9200".parse().unwrap());
    /// assert_eq!((o.connections, o.size, o.depth, o.msg_id), (100, 64, 1, 1));
    /// ```
    pub fn new(addr: SocketAddr) -> Self {
        FrameOpts {
            addr,
            connections: 100,
            size: 64,
            depth: 1,
            msg_id: 1,
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
            "4 MiB",
            4096,
            usize::MAX,
            "--depth must be between 1 and 4096",
        )?;
        if self.msg_id >= 0xFFF0 {
            return Err(Error::Opts(
                "--msg-id must be below 0xFFF0 (the reserved ids)".into(),
            ));
        }
        Ok(())
    }

    /// The run's shape, for the driver.
    fn plan(&self) -> Plan {
        Plan {
            mode: "frame",
            connections: self.connections,
            size: self.size,
            depth: self.depth,
            duration: self.duration,
            warmup: self.warmup,
            threads: self.threads,
        }
    }
}

/// Appends `v` as a protobuf varint.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The protobuf encoding of `RpcReq { id, payload }` as prost writes it (default-valued
/// fields omitted), which is also the encoding of the matching `RpcResp`.
///
/// ```
/// let body = herd_bench::frame::rpc_body(1, b"ab");
/// assert_eq!(body, [0x08, 0x01, 0x12, 0x02, b'a', b'b']);
/// assert_eq!(herd_bench::frame::rpc_body(0, b"")[..], []);
/// ```
pub fn rpc_body(id: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 16);
    if id != 0 {
        out.push(0x08); // field 1, varint
        put_varint(&mut out, id);
    }
    if !payload.is_empty() {
        out.push(0x12); // field 2, length-delimited
        put_varint(&mut out, payload.len() as u64);
        out.extend_from_slice(payload);
    }
    out
}

/// Runs frame mode as `opts` says and returns what it measured (mode `"frame"`).
///
/// Returns `Err` only when the run could not happen; problems during the run are counted in
/// the report (`report.errors() > 0` means the run failed).
pub fn run(opts: &FrameOpts) -> Result<Report, Error> {
    opts.validate()?;
    let plan = opts.plan();
    driver::run(&plan, |index| {
        let stream = connect_with_retry(opts.addr, index, opts.connect_attempts)?;
        let mut payload = vec![0u8; opts.size];
        Pattern::new(index as u64).fill(0, &mut payload);
        let body = rpc_body(index as u64, &payload);
        let mut template = Vec::with_capacity(HEADER + body.len());
        template.extend_from_slice(&(body.len() as u32).to_be_bytes());
        template.extend_from_slice(&opts.msg_id.to_be_bytes());
        template.extend_from_slice(&[0, 0, 0, 0, 0, 0]); // flags, request id
        template.extend_from_slice(&body);
        let conn = Conn {
            template,
            next_rid: 1,
            inbuf: Vec::new(),
            inflight: VecDeque::with_capacity(opts.depth),
        };
        Ok((stream, conn))
    })
}

/// One connection's requests and the replies it waits for.
struct Conn {
    /// One request frame with request id 0; each request is a copy with its id patched in.
    template: Vec<u8>,
    next_rid: u32,
    /// Received bytes not yet parsed into whole frames.
    inbuf: Vec<u8>,
    /// (request id, queue time) of each request in flight, oldest first.
    inflight: VecDeque<(u32, Instant)>,
}

impl Client for Conn {
    const MISMATCH: &'static str = "bad reply";

    fn wire_len(&self) -> usize {
        self.template.len()
    }

    /// Appends the next request, stamped `now`.
    fn queue(&mut self, out: &mut Vec<u8>, now: Instant) {
        let rid = self.next_rid;
        self.next_rid = self.next_rid.wrapping_add(1).max(1);
        let at = out.len();
        out.extend_from_slice(&self.template);
        out[at + 8..at + 12].copy_from_slice(&rid.to_be_bytes());
        self.inflight.push_back((rid, now));
    }

    /// Checks and completes every whole reply received so far, queueing a new request for
    /// each while the window is open.
    fn take(
        &mut self,
        chunk: &[u8],
        now: Instant,
        out: &mut Vec<u8>,
        w: &mut Window,
    ) -> Result<(), Stop> {
        self.inbuf.extend_from_slice(chunk);
        let body_len = self.template.len() - HEADER;
        let mut pos = 0;
        while self.inbuf.len() - pos >= HEADER {
            let h = &self.inbuf[pos..pos + HEADER];
            let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
            let msg_id = u16::from_be_bytes([h[4], h[5]]);
            let flags = u16::from_be_bytes([h[6], h[7]]);
            let rid = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
            if flags & ERROR != 0 {
                let end = (pos + HEADER + len).min(self.inbuf.len());
                let body = &self.inbuf[pos + HEADER..end];
                let code = body
                    .get(..2)
                    .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
                let text = String::from_utf8_lossy(body.get(2..).unwrap_or_default());
                return Err(format!("error frame for request {rid}: code {code}: {text}").into());
            }
            if len != body_len {
                return Err(format!("reply body of {len} bytes, expected {body_len}").into());
            }
            if self.inbuf.len() - pos < HEADER + len {
                break;
            }
            if msg_id != u16::from_be_bytes([self.template[4], self.template[5]])
                || flags != RESPONSE
            {
                return Err(format!("reply with message id {msg_id}, flags {flags:#x}").into());
            }
            let body = &self.inbuf[pos + HEADER..pos + HEADER + len];
            if body != &self.template[HEADER..] {
                return Err(
                    format!("reply body to request {rid} differs from the request's").into(),
                );
            }
            let Some(i) = self.inflight.iter().position(|(r, _)| *r == rid) else {
                return Err(format!("reply to request {rid}, which is not in flight").into());
            };
            let (_, sent_at) = self.inflight.remove(i).unwrap_or((rid, now));
            pos += HEADER + len;
            if w.complete(sent_at, now) {
                self.queue(out, now);
            }
        }
        self.inbuf.drain(..pos);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_match_protobuf() {
        let enc = |v| {
            let mut o = Vec::new();
            put_varint(&mut o, v);
            o
        };
        assert_eq!(enc(0), [0]);
        assert_eq!(enc(127), [0x7F]);
        assert_eq!(enc(128), [0x80, 0x01]);
        assert_eq!(enc(300), [0xAC, 0x02]);
        assert_eq!(enc(u64::MAX).len(), 10);
    }

    #[test]
    fn options_are_checked() {
        let mut o = FrameOpts::new("127.0.0.1:1".parse().unwrap());
        assert!(o.validate().is_ok());
        o.msg_id = 0xFFFE;
        assert!(o.validate().is_err());
        o.msg_id = 1;
        o.size = 0;
        assert!(o.validate().is_err());
    }
}
