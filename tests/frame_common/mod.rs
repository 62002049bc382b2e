//! Shared pieces of the frame-server integration tests: prost messages, a start helper, raw
//! frame reading with bounded waits.
#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpStream};

use herd::frame::prost;
use herd::frame::{Client, FrameService};
use herd::proto::frame::{self as wire, Flags, FrameDecoder, Header, HEADER_LEN};
use herd::{Server, ServerHandle};

/// Request of the `ADD` route.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
pub struct Add {
    #[prost(int64, tag = "1")]
    pub a: i64,
    #[prost(int64, tag = "2")]
    pub b: i64,
}

/// Reply of the `ADD` route.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
pub struct Sum {
    #[prost(int64, tag = "1")]
    pub sum: i64,
}

/// Start `frames` on 127.0.0.1 with `loops` loops.
pub fn start<U: 'static>(frames: &FrameService<U>, loops: usize) -> ServerHandle {
    let f = frames.clone();
    Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(loops)
        .serve(move || f.protocol())
        .unwrap()
}

/// A client with the testkit's bounded timeouts.
pub fn client(addr: SocketAddr) -> Client {
    let c = Client::connect(addr).unwrap();
    c.set_timeout(Some(herd_testkit::WAIT)).unwrap();
    c
}

/// One encoded frame.
pub fn frame(msg_id: u16, flags: Flags, request_id: u32, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    wire::encode(&mut v, msg_id, flags, request_id, body).unwrap();
    v
}

/// Read exactly one frame from a raw socket (bounded by the socket's timeout).
pub fn read_frame(s: &mut TcpStream) -> (Header, Vec<u8>) {
    let mut head = [0u8; HEADER_LEN];
    s.read_exact(&mut head).expect("reading a frame header");
    let header = Header::parse(&head).unwrap();
    let mut body = vec![0; header.len as usize];
    s.read_exact(&mut body).expect("reading a frame body");
    let mut whole = head.to_vec();
    whole.extend_from_slice(&body);
    assert!(FrameDecoder::default().decode(&whole).unwrap().1.is_some());
    (header, body)
}

/// `tick` the loops, then make sure their timers of that tick have run: a stats request is
/// answered before the timers of the iteration that drained it, so a second one, sent after
/// the first answer, is answered only after them.
pub fn settle(server: &ServerHandle) {
    server.tick();
    server.stats();
    server.stats();
}
