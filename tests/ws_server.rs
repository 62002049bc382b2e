//! The WebSocket server over loopback: handshake, echo, fragmentation, ping, the close
//! handshake, protocol errors with their codes, HTTP beside WebSocket, the heartbeat on a fake
//! clock, and a room broadcast across loops.

mod ws_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use herd::clock::FakeClock;
use herd::http::{Body, HttpService, Response, Router, StatusCode};
use herd::proto::ws::Opcode;
use herd::ws::{Room, WsConn, WsHandler, WsOptions, WsRequest, WsService};
use herd::{Server, ServerHandle};
use ws_support::{send_request, upgrade_request, Client, Got};

/// Close codes seen by `on_close`, shared with the test.
type Closes = Arc<Mutex<Vec<(u16, String)>>>;

/// Echoes messages; `bye` starts a close (4000); `proto` answers the selected subprotocol.
struct Probe {
    closes: Closes,
    room: Room,
}

struct St {
    protocol: String,
}

impl WsHandler for Probe {
    type State = St;

    fn on_request(&mut self, req: &mut WsRequest) -> Result<(), StatusCode> {
        if req.path() == "/forbidden" {
            return Err(StatusCode::FORBIDDEN);
        }
        Ok(())
    }

    fn on_open(&mut self, cx: &mut WsConn<'_, Self>, req: &WsRequest) -> Option<St> {
        if req.path() == "/room" {
            self.room.join(cx.handle());
        }
        Some(St {
            protocol: req.protocol.clone().unwrap_or_default(),
        })
    }

    fn on_text(&mut self, cx: &mut WsConn<'_, Self>, st: &mut St, text: &str) {
        match text {
            "bye" => cx.close(4000, "bye"),
            "proto" => {
                let p = st.protocol.clone();
                cx.send_text(&p);
            }
            t if t.starts_with("all:") => {
                self.room.send_text(&t[4..]);
            }
            t => {
                cx.send_text(t);
            }
        }
    }

    fn on_binary(&mut self, cx: &mut WsConn<'_, Self>, _st: &mut St, data: &[u8]) {
        cx.send_binary(data);
    }

    fn on_close(&mut self, cx: &mut WsConn<'_, Self>, _st: St, code: u16, reason: &str) {
        self.room.leave(cx.id());
        self.closes.lock().unwrap().push((code, reason.to_owned()));
    }
}

struct Fixture {
    server: ServerHandle,
    closes: Closes,
    room: Room,
}

fn serve(opts: WsOptions, loops: usize, clock: Option<&FakeClock>) -> Fixture {
    let closes = Closes::default();
    let room = Room::new();
    let (c, r) = (closes.clone(), room.clone());
    let page = Router::new().get("/", |_| Response::new(Body::from("page")));
    let mut server = Server::new().bind("127.0.0.1:0").unwrap().loops(loops);
    if let Some(clock) = clock {
        server = server.clock(Arc::new(clock.clone()));
    }
    let server = WsService::new(move || Probe {
        closes: c.clone(),
        room: r.clone(),
    })
    .options(opts)
    .path("/ws")
    .path("/room")
    .path("/forbidden")
    .http(HttpService::new(page))
    .serve(server)
    .unwrap();
    Fixture {
        server,
        closes,
        room,
    }
}

fn default_fixture() -> Fixture {
    serve(
        WsOptions {
            max_message: 1024,
            max_frame: 1024,
            protocols: vec!["chat".into(), "superchat".into()],
            allowed_origins: Some(vec!["http://good.example".into()]),
            ..WsOptions::default()
        },
        1,
        None,
    )
}

fn wait_close(f: &Fixture) -> (u16, String) {
    herd_testkit::wait_until("on_close", || !f.closes.lock().unwrap().is_empty());
    f.closes.lock().unwrap().remove(0)
}

#[test]
fn echoes_text_binary_and_fragments_and_answers_pings() {
    let f = default_fixture();
    let mut c = Client::connect(f.server.local_addr(), "/ws");
    c.text("hello");
    assert_eq!(c.recv(), Some(Got::Text("hello".into())));
    c.binary(&[0, 1, 2, 255]);
    assert_eq!(c.recv(), Some(Got::Binary(vec![0, 1, 2, 255])));
    // A fragmented text with a ping between fragments; a multi-byte char split across them.
    let word = "héllo wörld".as_bytes();
    c.send_frame(false, Opcode::Text, &word[..2]);
    c.send_frame(true, Opcode::Ping, b"p1");
    c.send_frame(false, Opcode::Continuation, &word[2..7]);
    c.send_frame(true, Opcode::Continuation, &word[7..]);
    assert_eq!(c.recv(), Some(Got::Pong(b"p1".to_vec())));
    assert_eq!(c.recv(), Some(Got::Text("héllo wörld".into())));
    // Larger than one read chunk but under the limit (the frame waits for its tail).
    let big = herd_testkit::pattern(7, 1000);
    c.binary(&big);
    assert_eq!(c.recv(), Some(Got::Binary(big)));
    // Close handshake started by the client: echoed, then TCP closed by the server.
    c.send_frame(true, Opcode::Close, &[0x0b, 0xb8, b'o', b'k']); // 3000 "ok"
    assert_eq!(c.recv(), Some(Got::Close(Some(3000))));
    assert!(c.closed());
    assert_eq!(wait_close(&f), (3000, "ok".into()));
    f.server.stop(Duration::ZERO);
}

#[test]
fn frames_sent_with_the_handshake_are_read() {
    let f = default_fixture();
    let mut frames = Vec::new();
    herd::proto::ws::encode_frame(
        &mut frames,
        true,
        Opcode::Text,
        b"early",
        Some([1, 2, 3, 4]),
    );
    let mut c = Client::connect_with(f.server.local_addr(), "/ws", "", &frames);
    assert_eq!(c.recv(), Some(Got::Text("early".into())));
    f.server.stop(Duration::ZERO);
}

#[test]
fn protocol_errors_close_with_their_codes() {
    let f = default_fixture();
    let addr = f.server.local_addr();
    // Invalid UTF-8 (whole frame, then split over fragments).
    let mut c = Client::connect(addr, "/ws");
    c.send_frame(true, Opcode::Text, &[b'a', 0xff]);
    assert_eq!(c.recv(), Some(Got::Close(Some(1007))));
    assert!(c.closed());
    assert_eq!(wait_close(&f).0, 1007);
    let mut c = Client::connect(addr, "/ws");
    c.send_frame(false, Opcode::Text, &[0xce]);
    c.send_frame(true, Opcode::Continuation, &[0x28]);
    assert_eq!(c.recv(), Some(Got::Close(Some(1007))));
    assert_eq!(wait_close(&f).0, 1007);
    // Oversized message (over max_message 1024, in fragments) and frame.
    let mut c = Client::connect(addr, "/ws");
    c.send_frame(false, Opcode::Binary, &[0; 600]);
    c.send_frame(true, Opcode::Continuation, &[0; 600]);
    assert_eq!(c.recv(), Some(Got::Close(Some(1009))));
    assert_eq!(wait_close(&f).0, 1009);
    let mut c = Client::connect(addr, "/ws");
    c.binary(&[0; 2000]);
    assert_eq!(c.recv(), Some(Got::Close(Some(1009))));
    assert_eq!(wait_close(&f).0, 1009);
    // Unmasked frame, reserved bits, invalid close code, 1-byte close payload: 1002.
    for bad in [
        vec![0x81, 0x01, b'x'],
        vec![0xc1, 0x80, 0, 0, 0, 0],
        vec![0x88, 0x82, 0, 0, 0, 0, 0x03, 0xed], // 1005
        vec![0x88, 0x81, 0, 0, 0, 0, 0x03],
    ] {
        let mut c = Client::connect(addr, "/ws");
        std::io::Write::write_all(&mut c.s, &bad).unwrap();
        assert_eq!(c.recv(), Some(Got::Close(Some(1002))), "{bad:?}");
        assert!(c.closed());
        assert_eq!(wait_close(&f).0, 1002);
    }
    let stats = f.server.stats();
    assert!(
        stats.closed[herd::CloseReason::Decode.index()] >= 8,
        "{stats:?}"
    );
    f.server.stop(Duration::ZERO);
}

#[test]
fn server_close_waits_for_the_peer() {
    let f = default_fixture();
    let mut c = Client::connect(f.server.local_addr(), "/ws");
    c.text("bye");
    assert_eq!(c.recv(), Some(Got::Close(Some(4000))));
    // Data sent before our Close is dropped; the server keeps reading until it arrives.
    c.send_frame(true, Opcode::Close, &[0x0f, 0xa0]);
    assert!(c.closed());
    assert_eq!(wait_close(&f), (4000, "bye".into()));
    f.server.stop(Duration::ZERO);
}

#[test]
fn handshake_errors_and_http_beside() {
    let f = default_fixture();
    let addr = f.server.local_addr();
    let (_, head, _) = send_request(
        addr,
        upgrade_request("/ws", "")
            .replace("Version: 13", "Version: 8")
            .as_bytes(),
    );
    assert!(head.starts_with("HTTP/1.1 426 "), "{head}");
    assert!(head.contains("Sec-WebSocket-Version: 13"), "{head}");
    let bad_key = upgrade_request("/ws", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "short");
    let (_, head, _) = send_request(addr, bad_key.as_bytes());
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    let (_, head, _) = send_request(addr, upgrade_request("/forbidden", "").as_bytes());
    assert!(head.starts_with("HTTP/1.1 403 "), "{head}");
    let (_, head, _) = send_request(
        addr,
        upgrade_request("/ws", "Origin: http://evil.example\r\n").as_bytes(),
    );
    assert!(head.starts_with("HTTP/1.1 403 "), "{head}");
    // Subprotocol: the server's first choice among the offered ones; no extension echoed.
    let mut c = Client::connect_with(
        addr,
        "/ws",
        "Origin: http://good.example\r\nSec-WebSocket-Protocol: superchat, chat\r\n\
         Sec-WebSocket-Extensions: permessage-deflate\r\n",
        &[],
    );
    assert!(
        c.head.contains("Sec-WebSocket-Protocol: chat\r\n"),
        "{}",
        c.head
    );
    assert!(!c.head.contains("Extensions"), "{}", c.head);
    c.text("proto");
    assert_eq!(c.recv(), Some(Got::Text("chat".into())));
    // Plain HTTP on the same port: pages and 404 as usual.
    let (mut s, head, mut body) = send_request(addr, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    let more = 4 - body.len();
    body.extend(herd_testkit::read_n(&mut s, more));
    assert_eq!(body, b"page");
    let (_, head, _) = send_request(addr, upgrade_request("/elsewhere", "").as_bytes());
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
    f.server.stop(Duration::ZERO);
}

#[test]
fn heartbeat_pings_then_closes_a_silent_peer() {
    let clock = FakeClock::new(1_000);
    let f = serve(
        WsOptions {
            ping_interval: Some(Duration::from_secs(10)),
            idle_timeout: Some(Duration::from_secs(30)),
            ..WsOptions::default()
        },
        1,
        Some(&clock),
    );
    let mut c = Client::connect(f.server.local_addr(), "/ws");
    c.text("x");
    assert_eq!(c.recv(), Some(Got::Text("x".into())));
    clock.advance(10_000);
    f.server.tick();
    assert_eq!(c.recv(), Some(Got::Ping(vec![])));
    // A pong counts as traffic: the idle clock restarts.
    c.send_frame(true, Opcode::Pong, b"");
    herd_testkit::wait_until("the pong is read", || f.server.stats().msgs_in >= 2);
    clock.advance(25_000);
    f.server.tick();
    assert_eq!(c.recv(), Some(Got::Ping(vec![])));
    clock.advance(10_000);
    f.server.tick();
    assert_eq!(c.recv(), Some(Got::Close(Some(1001))));
    assert!(c.closed());
    assert_eq!(wait_close(&f).0, 1001);
    assert_eq!(
        f.server.stats().closed[herd::CloseReason::Heartbeat.index()],
        1
    );
    f.server.stop(Duration::ZERO);
}

#[test]
fn close_timeout_drops_a_peer_that_never_answers() {
    let clock = FakeClock::new(1_000);
    let f = serve(WsOptions::default(), 1, Some(&clock));
    let mut c = Client::connect(f.server.local_addr(), "/ws");
    c.text("bye");
    assert_eq!(c.recv(), Some(Got::Close(Some(4000))));
    clock.advance(5_000);
    f.server.tick();
    assert!(c.closed());
    assert_eq!(wait_close(&f).0, 4000);
    f.server.stop(Duration::ZERO);
}

#[test]
fn room_broadcast_reaches_members_on_every_loop() {
    let f = serve(WsOptions::default(), 3, None);
    let addr = f.server.local_addr();
    let mut members: Vec<Client> = (0..6).map(|_| Client::connect(addr, "/room")).collect();
    herd_testkit::wait_until("all joined", || f.room.len() == 6);
    members[0].text("all:hi everyone");
    for m in &mut members {
        assert_eq!(m.recv(), Some(Got::Text("hi everyone".into())));
    }
    // A member that left gets nothing; the others still do.
    let mut gone = members.pop().unwrap();
    gone.send_frame(true, Opcode::Close, &[0x03, 0xe8]);
    assert_eq!(gone.recv(), Some(Got::Close(Some(1000))));
    herd_testkit::wait_until("left", || f.room.len() == 5);
    assert_eq!(f.room.send_text("second"), 5);
    for m in &mut members {
        assert_eq!(m.recv(), Some(Got::Text("second".into())));
    }
    f.server.stop(Duration::ZERO);
}

/// A graceful stop says goodbye: each WebSocket gets Close 1001 and the server waits for the
/// peer's Close before dropping TCP; the stop finishes without forcing anything.
#[test]
fn graceful_stop_sends_going_away_and_waits_for_the_peer() {
    let f = default_fixture();
    let mut c = Client::connect(f.server.local_addr(), "/ws");
    c.text("hi");
    assert_eq!(c.recv(), Some(Got::Text("hi".into())));
    f.server.shutdown(Duration::from_secs(30));
    assert_eq!(c.recv(), Some(Got::Close(Some(1001))));
    c.send_frame(true, Opcode::Close, &1001u16.to_be_bytes());
    assert!(c.closed());
    let report = f.server.join();
    // Closed by the close handshake itself, not by the stop's idle sweep or its deadline.
    assert_eq!((report.closed_forced, report.stats.open), (0, 0));
    assert_eq!(f.closes.lock().unwrap()[0].0, 1001);
}
