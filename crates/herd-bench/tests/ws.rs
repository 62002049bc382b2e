//! `herd_bench::ws::run` against tiny blocking WebSocket servers on loopback: a faithful echo
//! server (which also checks that the client masks its frames, and pings it) must give
//! messages and no errors; a server that answers the handshake wrongly must fail the run; one
//! that corrupts, mislabels or closes must be caught and counted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use herd_bench::ws::{accept_key, run, WsOpts};
use herd_bench::Error;

/// How a test server misbehaves, if at all.
#[derive(Clone, Copy, PartialEq)]
enum Behaviour {
    /// Echo every message unchanged (each frame split over two writes, so the client parses
    /// frames across reads; a Ping before every third echo).
    Faithful,
    /// Answer the handshake with a wrong Sec-WebSocket-Accept.
    BadAccept,
    /// Answer the handshake with 400.
    Refuse,
    /// Flip one payload byte of the third message.
    Corrupt,
    /// Echo messages as text frames.
    AsText,
    /// Send a Close frame instead of the third echo.
    CloseAfterTwo,
}

fn spawn_server(behaviour: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || serve(stream, behaviour));
        }
    });
    addr
}

/// Reads one request head; returns its Sec-WebSocket-Key.
fn read_key(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).ok()? == 0 {
            return None;
        }
        head.push(b[0]);
    }
    let head = String::from_utf8(head).ok()?;
    assert!(head.starts_with("GET / HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("Sec-WebSocket-Version: 13\r\n"), "{head}");
    head.lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .map(str::to_string)
}

/// Reads one client frame; asserts it is masked and final; returns (opcode, payload).
fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).ok()?;
    assert_eq!(h[0] & 0xF0, 0x80, "final frame, no reserved bits");
    assert_eq!(h[1] & 0x80, 0x80, "client frames must be masked");
    let len = match h[1] & 0x7F {
        126 => {
            let mut e = [0u8; 2];
            s.read_exact(&mut e).ok()?;
            u64::from(u16::from_be_bytes(e))
        }
        127 => {
            let mut e = [0u8; 8];
            s.read_exact(&mut e).ok()?;
            u64::from_be_bytes(e)
        }
        n => u64::from(n),
    };
    let mut mask = [0u8; 4];
    s.read_exact(&mut mask).ok()?;
    let mut payload = vec![0u8; usize::try_from(len).ok()?];
    s.read_exact(&mut payload).ok()?;
    for (k, b) in payload.iter_mut().enumerate() {
        *b ^= mask[k % 4];
    }
    Some((h[0] & 0x0F, payload))
}

/// An unmasked server frame.
fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

fn serve(mut s: TcpStream, behaviour: Behaviour) {
    let Some(key) = read_key(&mut s) else { return };
    let accept = match behaviour {
        Behaviour::BadAccept => accept_key("not the key"),
        _ => accept_key(&key),
    };
    let answer = if behaviour == Behaviour::Refuse {
        "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_string()
    } else {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        )
    };
    if s.write_all(answer.as_bytes()).is_err() || behaviour == Behaviour::Refuse {
        return;
    }
    let _ = s.set_nodelay(true);
    let mut count = 0u64;
    while let Some((opcode, mut payload)) = read_frame(&mut s) {
        match opcode {
            0x2 => {}
            0xA => {
                assert_eq!(payload, b"hb", "a Pong carries its Ping's payload");
                continue;
            }
            _ => return,
        }
        count += 1;
        let frame = match behaviour {
            Behaviour::Corrupt if count == 3 => {
                payload[0] ^= 0xFF;
                server_frame(0x2, &payload)
            }
            Behaviour::AsText => server_frame(0x1, &payload),
            Behaviour::CloseAfterTwo if count == 3 => server_frame(0x8, &1000u16.to_be_bytes()),
            _ => server_frame(0x2, &payload),
        };
        let (a, b) = frame.split_at(frame.len() / 2);
        // A Ping may not interrupt a frame's bytes, so it goes before the third echo.
        let ok = (!count.is_multiple_of(3) || s.write_all(&server_frame(0x9, b"hb")).is_ok())
            && s.write_all(a).is_ok()
            && s.write_all(b).is_ok();
        if !ok {
            return;
        }
    }
}

fn opts(addr: SocketAddr) -> WsOpts {
    WsOpts {
        connections: 6,
        size: 64,
        depth: 1,
        duration: Duration::from_millis(300),
        warmup: Duration::from_millis(50),
        threads: 2,
        ..WsOpts::new(addr)
    }
}

#[test]
fn ping_pong_against_a_faithful_server() {
    let addr = spawn_server(Behaviour::Faithful);
    let r = run(&opts(addr)).expect("run");
    assert_eq!(r.mode, "ws");
    assert!(r.messages > 0, "no messages echoed");
    assert_eq!(r.errors(), 0, "{r:?}");
    assert!(r.messages_total >= r.messages);
    assert_eq!(r.latency.count(), r.messages);
    assert!(r.to_json().contains("\"mode\":\"ws\""));
}

#[test]
fn large_pipelined_messages_use_every_length_form() {
    let addr = spawn_server(Behaviour::Faithful);
    for (size, depth) in [(125, 3), (126, 3), (16 * 1024 + 3, 4), (70_000, 2)] {
        let o = WsOpts {
            connections: 2,
            size,
            depth,
            threads: 1,
            ..opts(addr)
        };
        let r = run(&o).expect("run");
        assert!(r.messages > 0, "size {size}: no messages");
        assert_eq!(r.errors(), 0, "size {size}: {r:?}");
    }
}

#[test]
fn a_wrong_accept_fails_the_run() {
    let addr = spawn_server(Behaviour::BadAccept);
    match run(&opts(addr)) {
        Err(Error::Echo { reason, .. }) => assert!(reason.contains("Accept"), "{reason}"),
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[test]
fn a_refused_upgrade_fails_the_run() {
    let addr = spawn_server(Behaviour::Refuse);
    match run(&opts(addr)) {
        Err(Error::Echo { reason, .. }) => assert!(reason.contains("400"), "{reason}"),
        other => panic!("expected a handshake error, got {other:?}"),
    }
}

#[test]
fn a_corrupted_echo_is_a_mismatch() {
    let addr = spawn_server(Behaviour::Corrupt);
    let r = run(&opts(addr)).expect("run");
    assert_eq!(
        r.mismatches, 6,
        "every connection's third echo is corrupted: {r:?}"
    );
    assert_eq!(
        r.messages_total, 12,
        "two good echoes per connection: {r:?}"
    );
}

#[test]
fn a_text_echo_is_a_mismatch() {
    let addr = spawn_server(Behaviour::AsText);
    let r = run(&opts(addr)).expect("run");
    assert_eq!(r.mismatches, 6, "{r:?}");
    assert_eq!(r.messages_total, 0);
}

#[test]
fn a_close_frame_counts_as_a_disconnect() {
    let addr = spawn_server(Behaviour::CloseAfterTwo);
    let r = run(&opts(addr)).expect("run");
    assert_eq!(r.disconnects, 6, "{r:?}");
    assert_eq!(r.mismatches, 0, "{r:?}");
    assert_eq!(r.messages_total, 12, "{r:?}");
}
