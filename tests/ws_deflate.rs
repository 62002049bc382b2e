//! permessage-deflate (RFC 7692) over loopback: what the 101 answers to each kind of offer,
//! compressed messages in both directions (whole, fragmented, below the threshold, mixed with
//! plain ones), context takeover when configured, the shared per-loop contexts of several
//! connections, and the failures: a deflate bomb (1009), data that is not deflate or inflates
//! to bad UTF-8 (1007), RSV1 where the extension was not negotiated (1002).

mod ws_support;

use std::time::Duration;

use herd::proto::ws::Opcode;
use herd::ws::{DeflateConfig, Room, WsConn, WsHandler, WsOptions, WsService};
use herd::{CloseReason, Server, ServerHandle};
use ws_support::{send_request, upgrade_request, Client, Got};

/// Echoes every message as it came (text as text, binary as binary).
struct Echo;

impl WsHandler for Echo {
    type State = ();

    fn on_open(&mut self, _cx: &mut WsConn<'_, Self>, _req: &herd::ws::WsRequest) -> Option<()> {
        Some(())
    }

    fn on_text(&mut self, cx: &mut WsConn<'_, Self>, _st: &mut (), text: &str) {
        cx.send_text(text);
    }

    fn on_binary(&mut self, cx: &mut WsConn<'_, Self>, _st: &mut (), data: &[u8]) {
        cx.send_binary(data);
    }
}

fn serve(deflate: Option<DeflateConfig>) -> ServerHandle {
    let server = Server::new().bind("127.0.0.1:0").unwrap().loops(1);
    WsService::new(|| Echo)
        .options(WsOptions {
            max_message: 64 * 1024,
            max_frame: 64 * 1024,
            deflate,
            ..WsOptions::default()
        })
        .path("/ws")
        .serve(server)
        .unwrap()
}

/// Upgrade with `Sec-WebSocket-Extensions: <offer>` and return the answer's extension value.
fn offer(server: &ServerHandle, offer: &str) -> (Client, Option<String>) {
    let c = Client::connect_with(
        server.local_addr(),
        "/ws",
        &format!("Sec-WebSocket-Extensions: {offer}\r\n"),
        &[],
    );
    let ext = c.extensions().map(str::to_owned);
    (c, ext)
}

/// A text that compresses well and is above the default threshold.
fn long_text(seed: usize) -> String {
    (0..200)
        .map(|i| format!("line {} of message {seed}; ", i % 17))
        .collect()
}

/// A text with little redundancy inside it (hex of a pseudo-random sequence): it compresses
/// only about 2:1 on its own, so a repeat that refers back to it stands out.
fn noisy_text(seed: u64) -> String {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..300)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            format!("{:08x}", x >> 32)
        })
        .collect()
}

#[test]
fn negotiation_answers_each_kind_of_offer() {
    let off = serve(None);
    let (mut c, ext) = offer(&off, "permessage-deflate; client_max_window_bits");
    assert_eq!(ext, None, "declined when not configured");
    c.text("plain");
    assert_eq!(c.recv(), Some(Got::Text("plain".into())));
    off.stop(Duration::ZERO);

    let on = serve(Some(DeflateConfig::default()));
    let cases = [
        // What browsers send.
        (
            "permessage-deflate; client_max_window_bits",
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ),
        (
            "permessage-deflate",
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ),
        // The first offer asks for a window zlib cannot compress with; the second is taken.
        (
            "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=10",
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=10",
            ),
        ),
        (
            "permessage-deflate; client_max_window_bits=\"12\"",
            Some(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 client_max_window_bits=12",
            ),
        ),
        // Unknown, repeated or malformed parameters decline the offer, and the upgrade still
        // succeeds without the extension.
        ("permessage-deflate; foo", None),
        ("permessage-deflate; server_no_context_takeover; server_no_context_takeover", None),
        ("permessage-deflate; server_max_window_bits=016", None),
        ("x-webkit-deflate-frame", None),
    ];
    for (sent, want) in cases {
        let (mut c, ext) = offer(&on, sent);
        assert_eq!(ext.as_deref(), want, "offer {sent:?}");
        c.text("still works");
        assert_eq!(c.recv(), Some(Got::Text("still works".into())), "{sent:?}");
    }
    on.stop(Duration::ZERO);
}

#[test]
fn compressed_messages_both_ways_whole_and_fragmented() {
    let server = serve(Some(DeflateConfig::default()));
    let (mut c, ext) = offer(&server, "permessage-deflate; client_max_window_bits");
    assert!(ext.is_some());
    c.enable_deflate(true, true);

    // A compressed text, one frame: the echo comes back compressed and much smaller.
    let t = long_text(1);
    c.send_compressed(Opcode::Text, t.as_bytes(), usize::MAX);
    assert_eq!(c.recv(), Some(Got::Text(t.clone())));
    assert_eq!(c.compressed_in, 1);
    assert!(
        c.last_packed_len * 5 < t.len(),
        "{} of {}",
        c.last_packed_len,
        t.len()
    );

    // Fragmented over many frames (RSV1 on the first only), binary.
    let b: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8 / 8).collect();
    c.send_compressed(Opcode::Binary, &b, 7);
    assert_eq!(c.recv(), Some(Got::Binary(b)));
    assert_eq!(c.compressed_in, 2);

    // Below the threshold the server answers uncompressed, compressed or not on the way in.
    c.send_compressed(Opcode::Text, b"short", usize::MAX);
    assert_eq!(c.recv(), Some(Got::Text("short".into())));
    c.text("plain short");
    assert_eq!(c.recv(), Some(Got::Text("plain short".into())));
    assert_eq!(c.compressed_in, 2);

    // An uncompressed long message in is still answered compressed.
    c.text(&t);
    assert_eq!(c.recv(), Some(Got::Text(t.clone())));
    assert_eq!(c.compressed_in, 3);

    // An empty compressed message (a lone 0x00 stored block) and a control frame between
    // the fragments of a compressed message.
    c.send_packed(Opcode::Text, &[0x00], usize::MAX);
    assert_eq!(c.recv(), Some(Got::Text(String::new())));
    let mut packed = Vec::new();
    herd::proto::ws::deflate::Deflater::new(6, 15, true).deflate(t.as_bytes(), &mut packed);
    let (a, rest) = packed.split_at(packed.len() / 2);
    let mut raw = Vec::new();
    let key = Some([1, 2, 3, 4]);
    herd::proto::ws::encode_frame_rsv(&mut raw, false, 0b100, Opcode::Text, a, key);
    herd::proto::ws::encode_frame(&mut raw, true, Opcode::Ping, b"p", key);
    herd::proto::ws::encode_frame(&mut raw, true, Opcode::Continuation, rest, key);
    std::io::Write::write_all(&mut c.s, &raw).unwrap();
    assert_eq!(c.recv(), Some(Got::Pong(b"p".to_vec())));
    assert_eq!(c.recv(), Some(Got::Text(t)));
    server.stop(Duration::ZERO);
}

#[test]
fn context_takeover_when_configured() {
    let cfg = DeflateConfig {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        ..DeflateConfig::default()
    };
    let server = serve(Some(cfg));
    let (mut c, ext) = offer(&server, "permessage-deflate");
    assert_eq!(ext.as_deref(), Some("permessage-deflate"));
    c.enable_deflate(false, false);
    let t = noisy_text(7);
    let mut sizes = Vec::new();
    for _ in 0..3 {
        // The client keeps its window too: the server must keep its decompressor's.
        c.send_compressed(Opcode::Text, t.as_bytes(), 100);
        assert_eq!(c.recv(), Some(Got::Text(t.clone())));
        sizes.push(c.last_packed_len);
    }
    // Repeats refer back into the kept window: a fraction of the first message's size.
    assert!(sizes[1] * 4 < sizes[0], "{sizes:?}");
    assert!(sizes[2] * 4 < sizes[0], "{sizes:?}");

    // A client that asks for no takeover on either side gets it even from this server.
    let (mut c2, ext) = offer(
        &server,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
    );
    assert_eq!(
        ext.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    c2.enable_deflate(true, true);
    for _ in 0..2 {
        c2.send_compressed(Opcode::Text, t.as_bytes(), usize::MAX);
        assert_eq!(c2.recv(), Some(Got::Text(t.clone())));
        assert_eq!(
            c2.last_packed_len, sizes[0],
            "each message compressed on its own"
        );
    }
    server.stop(Duration::ZERO);
}

#[test]
fn connections_sharing_the_loops_contexts_stay_apart() {
    let server = serve(Some(DeflateConfig::default()));
    let mut clients: Vec<Client> = (0..4)
        .map(|_| {
            let (mut c, ext) = offer(&server, "permessage-deflate; client_max_window_bits");
            assert!(ext.is_some());
            c.enable_deflate(true, true);
            c
        })
        .collect();
    // Interleave: all send, then all read, so the one loop inflates and deflates for each in
    // turn with the same shared contexts.
    for round in 0..5 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.send_compressed(Opcode::Text, long_text(round * 10 + i).as_bytes(), 300);
        }
        for (i, c) in clients.iter_mut().enumerate() {
            assert_eq!(c.recv(), Some(Got::Text(long_text(round * 10 + i))));
        }
        // One connection sends garbage mid-round: it alone is closed (1007), and the shared
        // decompressor starts clean for the others.
        if round == 2 {
            let mut bad = clients.remove(0);
            bad.send_packed(Opcode::Text, &[0xff, 0xff, 0xff, 0x00, 0x01], usize::MAX);
            assert_eq!(bad.recv(), Some(Got::Close(Some(1007))));
            assert!(bad.closed());
        }
    }
    server.stop(Duration::ZERO);
}

#[test]
fn bombs_garbage_and_stray_rsv1_close_with_their_codes() {
    let server = serve(Some(DeflateConfig::default()));
    let addr = server.local_addr();
    let deflated = |c: &mut Client| {
        let (mut c2, _) = offer(&server, "permessage-deflate");
        c2.enable_deflate(true, true);
        std::mem::swap(c, &mut c2);
    };
    let mut c = Client::connect(addr, "/ws");
    // 16 MiB of zeros is about 16 KiB compressed: far over max_message (64 KiB) once inflated.
    deflated(&mut c);
    let bomb = vec![0u8; 16 << 20];
    c.send_compressed(Opcode::Binary, &bomb, 4096);
    assert_eq!(c.recv(), Some(Got::Close(Some(1009))));
    assert!(c.closed());

    // Not deflate data at all.
    deflated(&mut c);
    c.send_packed(Opcode::Binary, &[0xff; 32], usize::MAX);
    assert_eq!(c.recv(), Some(Got::Close(Some(1007))));

    // Deflate data that inflates to bad UTF-8 in a text message.
    deflated(&mut c);
    c.send_compressed(Opcode::Text, &[b'a', 0xff, 0xfe], usize::MAX);
    assert_eq!(c.recv(), Some(Got::Close(Some(1007))));

    // RSV1 on a continuation frame, and RSV1 where the extension was not negotiated: 1002.
    deflated(&mut c);
    let mut raw = Vec::new();
    let key = Some([9, 9, 9, 9]);
    herd::proto::ws::encode_frame_rsv(&mut raw, false, 0b100, Opcode::Text, &[0x00], key);
    herd::proto::ws::encode_frame_rsv(&mut raw, true, 0b100, Opcode::Continuation, &[], key);
    std::io::Write::write_all(&mut c.s, &raw).unwrap();
    assert_eq!(c.recv(), Some(Got::Close(Some(1002))));
    let mut plain = Client::connect(addr, "/ws");
    let mut raw = Vec::new();
    herd::proto::ws::encode_frame_rsv(&mut raw, true, 0b100, Opcode::Text, b"x", key);
    std::io::Write::write_all(&mut plain.s, &raw).unwrap();
    assert_eq!(plain.recv(), Some(Got::Close(Some(1002))));

    // A connection beside them all is unharmed.
    let (mut ok, _) = offer(&server, "permessage-deflate");
    ok.enable_deflate(true, true);
    ok.send_compressed(Opcode::Text, long_text(3).as_bytes(), usize::MAX);
    assert_eq!(ok.recv(), Some(Got::Text(long_text(3))));
    herd_testkit::wait_until("decode closes counted", || {
        server.stats().closed[CloseReason::Decode.index()] >= 5
    });
    server.stop(Duration::ZERO);
}

#[test]
fn the_upgrade_request_may_offer_with_other_extensions_and_case() {
    let server = serve(Some(DeflateConfig::default()));
    let req = upgrade_request(
        "/ws",
        "Sec-WebSocket-Extensions: x-unknown; a=1\r\nSec-WebSocket-Extensions: PerMessage-Deflate; Client_Max_Window_Bits\r\n",
    );
    let (_s, head, _) = send_request(server.local_addr(), req.as_bytes());
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(
        head.contains(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"
        ),
        "{head}"
    );
    server.stop(Duration::ZERO);
}

/// Joins every connection to one room; `all:<text>` broadcasts the rest, anything else echoes.
struct RoomEcho {
    room: Room,
}

impl WsHandler for RoomEcho {
    type State = ();

    fn on_open(&mut self, cx: &mut WsConn<'_, Self>, _req: &herd::ws::WsRequest) -> Option<()> {
        self.room.join(cx.member());
        Some(())
    }

    fn on_text(&mut self, cx: &mut WsConn<'_, Self>, _st: &mut (), text: &str) {
        match text.strip_prefix("all:") {
            Some(rest) => {
                self.room.send_text(rest);
            }
            None => {
                cx.send_text(text);
            }
        }
    }

    fn on_binary(&mut self, cx: &mut WsConn<'_, Self>, _st: &mut (), data: &[u8]) {
        cx.send_binary(data);
    }

    fn on_close(&mut self, cx: &mut WsConn<'_, Self>, _st: (), _code: u16, _reason: &str) {
        self.room.leave(cx.id());
    }
}

fn serve_room(deflate: DeflateConfig) -> (ServerHandle, Room) {
    let room = Room::new();
    let r = room.clone();
    let server = WsService::new(move || RoomEcho { room: r.clone() })
        .options(WsOptions {
            deflate: Some(deflate),
            ..WsOptions::default()
        })
        .path("/ws")
        .serve(Server::new().bind("127.0.0.1:0").unwrap().loops(2))
        .unwrap();
    (server, room)
}

#[test]
fn room_broadcasts_go_compressed_to_members_that_negotiated_it() {
    let (server, room) = serve_room(DeflateConfig::default());
    let mut members = Vec::new();
    for _ in 0..3 {
        let (mut c, ext) = offer(&server, "permessage-deflate; client_max_window_bits");
        assert!(ext.is_some());
        c.enable_deflate(true, true);
        members.push(c);
    }
    let mut plain = Client::connect(server.local_addr(), "/ws");
    herd_testkit::wait_until("4 members", || room.len() == 4);

    // One long broadcast: every deflate member gets it compressed (and small), the member
    // without the extension plain, all with the same text.
    let t = long_text(7);
    members[0].text(&format!("all:{t}"));
    for c in &mut members {
        assert_eq!(c.recv(), Some(Got::Text(t.clone())));
        assert_eq!(c.compressed_in, 1);
        assert!(c.last_packed_len * 5 < t.len(), "{}", c.last_packed_len);
    }
    assert_eq!(plain.recv(), Some(Got::Text(t.clone())));
    // Below the threshold a broadcast is plain for everyone.
    assert_eq!(room.send_text("hi all"), 4);
    for c in &mut members {
        assert_eq!(c.recv(), Some(Got::Text("hi all".into())));
        assert_eq!(c.compressed_in, 1);
    }
    assert_eq!(plain.recv(), Some(Got::Text("hi all".into())));
    // Binary, from outside any loop; then each connection's own messages still decode.
    let b: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8).collect();
    assert_eq!(room.send_binary(&b), 4);
    for (i, c) in members.iter_mut().enumerate() {
        assert_eq!(c.recv(), Some(Got::Binary(b.clone())));
        assert_eq!(c.compressed_in, 2);
        c.send_compressed(Opcode::Text, long_text(i).as_bytes(), usize::MAX);
        assert_eq!(c.recv(), Some(Got::Text(long_text(i))));
    }
    assert_eq!(plain.recv(), Some(Got::Binary(b)));
    server.stop(Duration::ZERO);
}

#[test]
fn room_broadcasts_go_plain_to_members_with_context_takeover() {
    // A compressed broadcast would enter the client's window without entering the server's
    // compressor for that connection: the next message it compresses would refer to the wrong
    // bytes. So these members get plain broadcasts, and their own stream stays in step.
    let (server, room) = serve_room(DeflateConfig {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        ..DeflateConfig::default()
    });
    let (mut c, ext) = offer(&server, "permessage-deflate");
    assert_eq!(ext.as_deref(), Some("permessage-deflate"));
    c.enable_deflate(false, false);
    herd_testkit::wait_until("1 member", || room.len() == 1);
    let (a, b) = (noisy_text(1), noisy_text(2));
    c.text(&a);
    assert_eq!(c.recv(), Some(Got::Text(a.clone())));
    assert_eq!(room.send_text(&b), 1);
    assert_eq!(c.recv(), Some(Got::Text(b.clone())));
    assert_eq!(c.compressed_in, 1, "the broadcast came plain");
    // The echo of `a` again refers back into the connection's own window: it is tiny, and it
    // decodes to `a` because the broadcast did not shift that window.
    c.text(&a);
    assert_eq!(c.recv(), Some(Got::Text(a.clone())));
    assert_eq!(c.compressed_in, 2);
    assert!(c.last_packed_len * 10 < a.len(), "{}", c.last_packed_len);
    server.stop(Duration::ZERO);
}
