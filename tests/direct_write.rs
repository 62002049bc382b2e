//! Large pass-through replies (`BytesCodec`) that `Conn::send` writes straight to the socket:
//! the bytes and their order must be exactly what the copying path would produce, whether
//! the reply comes alone, before another send, after one, or overflows the socket.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::thread;

use herd::codec::BytesCodec;
use herd::{Conn, Handler, Server, ServerHandle};
use herd_testkit::connect;

/// What the handler sends around each message it gets.
#[derive(Clone, Copy)]
enum Shape {
    /// The message alone (an echo).
    Alone,
    /// The message, then a marker.
    Before,
    /// A marker, then the message.
    After,
}

const MARK: &[u8] = b"|mark|";

struct Shaper(Shape);

impl Handler for Shaper {
    type State = ();
    type Codec = BytesCodec;

    fn new_codec(&mut self) -> BytesCodec {
        BytesCodec
    }

    fn on_open(&mut self, _cx: &mut Conn<'_, Self>) -> Option<()> {
        Some(())
    }

    fn on_message(&mut self, cx: &mut Conn<'_, Self>, _st: &mut (), msg: &[u8]) {
        match self.0 {
            Shape::Alone => cx.send(msg),
            Shape::Before => {
                cx.send(msg);
                cx.send(MARK);
            }
            Shape::After => {
                cx.send(MARK);
                cx.send(msg);
            }
        }
    }
}

fn server(shape: Shape) -> ServerHandle {
    Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .serve(move || Shaper(shape))
        .unwrap()
}

/// Lowercase letters only, so the marker can never occur in it.
fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i * 7 % 26) as u8).collect()
}

/// Writes `input` from a thread while reading everything back until the server has echoed
/// and the client has half-closed; returns what came back.
fn round_trip(addr: SocketAddr, input: Vec<u8>) -> Vec<u8> {
    let mut c = connect(addr);
    let mut w = c.try_clone().unwrap();
    let writer = thread::spawn(move || {
        for chunk in input.chunks(100_000) {
            w.write_all(chunk).unwrap();
        }
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    writer.join().unwrap();
    out
}

/// Splits `out` at the markers: the pieces between them, and how many markers there were.
fn strip_marks(out: &[u8]) -> (Vec<u8>, usize) {
    let mut rest = out;
    let mut data = Vec::new();
    let mut marks = 0;
    while let Some(at) = rest.windows(MARK.len()).position(|w| w == MARK) {
        data.extend_from_slice(&rest[..at]);
        rest = &rest[at + MARK.len()..];
        marks += 1;
    }
    data.extend_from_slice(rest);
    (data, marks)
}

#[test]
fn a_large_echo_overflowing_the_socket_arrives_whole_and_in_order() {
    let server = server(Shape::Alone);
    let input = payload(8 << 20);
    let out = round_trip(server.local_addr(), input.clone());
    assert_eq!(out.len(), input.len());
    assert!(out == input, "echoed bytes differ");
    server.stop(std::time::Duration::from_secs(5));
}

/// Round trip of a 2 MiB payload through a server that adds a marker to every message: the
/// payload must come back whole once the markers are removed. Returns the raw stream.
fn marked_round_trip(shape: Shape) -> Vec<u8> {
    let server = server(shape);
    let input = payload(2 << 20);
    let out = round_trip(server.local_addr(), input.clone());
    let (data, marks) = strip_marks(&out);
    assert!(marks >= 1);
    assert!(
        data == input,
        "payload bytes differ once the markers are removed"
    );
    server.stop(std::time::Duration::from_secs(5));
    out
}

#[test]
fn a_send_after_a_direct_write_follows_it() {
    let out = marked_round_trip(Shape::Before);
    // Message, marker, message, marker, ...: a marker never overtakes its message.
    assert!(
        out.ends_with(MARK),
        "every message is followed by its marker"
    );
    assert!(!out.starts_with(MARK));
}

#[test]
fn a_large_send_after_queued_output_waits_its_turn() {
    let out = marked_round_trip(Shape::After);
    assert!(
        out.starts_with(MARK),
        "every message is preceded by its marker"
    );
    assert!(!out.ends_with(MARK));
}
