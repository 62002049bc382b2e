//! Codecs over real sockets: sticky packets, split frames, a 16 MiB message, bad input.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use herd::{CloseReason, Server, ServerHandle};
use herd_testkit::*;

fn probe_server(max_frame: usize) -> (ServerHandle, Log) {
    let log = Log::default();
    let l2 = log.clone();
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .serve(move || {
            let mut p = Probe::new(l2.clone());
            p.max_frame = max_frame;
            p
        })
        .unwrap();
    (server, log)
}

/// Frames split at every byte boundary reach the handler exactly like frames written whole,
/// and the server really did see the two halves in separate reads.
#[test]
fn frames_split_at_every_byte_boundary() {
    let (server, log) = probe_server(1024);
    let bodies: [&[u8]; 3] = [b"alpha", b"", b"a longer third frame body"];
    let wire: Vec<u8> = bodies.iter().flat_map(|b| frame(b)).collect();
    let mut c = connect(server.local_addr());
    for cut in 1..wire.len() {
        let before = server.stats().bytes_in;
        c.write_all(&wire[..cut]).unwrap();
        wait_until("first half read", || {
            server.stats().bytes_in == before + cut as u64
        });
        c.write_all(&wire[cut..]).unwrap();
        assert_eq!(read_n(&mut c, wire.len()), wire, "cut at {cut}");
    }
    let msgs: Vec<Vec<u8>> = log
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Ev::Msg(_, m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(msgs.len(), 3 * (wire.len() - 1));
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.as_slice(), bodies[i % 3]);
    }
}

/// Many frames in one write: decoded in order, all replies coalesced.
#[test]
fn many_frames_in_one_write() {
    let (server, log) = probe_server(1024);
    let mut c = connect(server.local_addr());
    let wire: Vec<u8> = (0..500u32)
        .flat_map(|i| frame(format!("msg {i}").as_bytes()))
        .collect();
    c.write_all(&wire).unwrap();
    assert_eq!(read_n(&mut c, wire.len()), wire);
    assert_eq!(log.events().len(), 501);
    let stats = server.stats();
    assert_eq!(stats.msgs_in, 500);
    assert!(
        stats.writes < 50,
        "replies to one read must share a write ({} writes for 500 replies)",
        stats.writes
    );
}

#[test]
fn sixteen_mib_message_round_trip() {
    let (server, _log) = probe_server(32 << 20);
    let body = pattern(16, 16 << 20);
    let mut c = connect(server.local_addr());
    let wire = frame(&body);
    let mut w = c.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&wire).unwrap());
    let back = read_n(&mut c, body.len() + 4);
    writer.join().unwrap();
    assert_eq!(&back[..4], &(body.len() as u32).to_be_bytes());
    assert!(back[4..] == body[..], "16 MiB body came back altered");
    drop(c);
    let stats = server.stop(Duration::from_secs(5)).stats;
    assert_eq!(stats.msgs_in, 1);
    assert_eq!(stats.closed_by(CloseReason::PeerClosed), 1);
}

/// A length prefix over the limit closes that connection at once (counted), others live on.
#[test]
fn oversized_frame_is_rejected_before_buffering() {
    let (server, log) = probe_server(1024);
    let mut good = connect(server.local_addr());
    let mut bad = connect(server.local_addr());
    bad.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert_eq!(read_to_close(&mut bad), b"");
    assert_eq!(roundtrip(&mut good, &frame(b"ok")), frame(b"ok"));
    assert_eq!(server.stats().closed_by(CloseReason::Decode), 1);
    log.assert_lifecycles();
}
