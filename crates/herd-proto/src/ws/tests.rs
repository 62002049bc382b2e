//! Tests of the [`Decoder`] state machine, driven the way the event loop drives it: bytes fed
//! in arbitrary chunks, unconsumed tails kept and extended. Section numbers in comments are
//! the Autobahn testsuite's (1.x framing, 2.x ping/pong, 3.x reserved bits, 4.x opcodes, 5.x
//! fragmentation, 6.x UTF-8, 7.x close, 9.x limits).

use super::frame::encode_close_with_mask;
use super::*;
use proptest::prelude::*;

const KEY: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

/// The most bytes the caller may ever have to hold: an incomplete header, or an incomplete
/// control frame (6-byte header with a 7-bit length, plus 125 bytes).
const MAX_HELD: usize = 6 + 125;

/// An owned copy of a [`Message`], so tests can collect them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Msg {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<(u16, String)>),
    Compressed(bool, Vec<u8>),
}

impl From<Message<'_>> for Msg {
    fn from(m: Message<'_>) -> Msg {
        match m {
            Message::Text(t) => Msg::Text(t.to_owned()),
            Message::Binary(b) => Msg::Binary(b.to_vec()),
            Message::Ping(b) => Msg::Ping(b.to_vec()),
            Message::Pong(b) => Msg::Pong(b.to_vec()),
            Message::Close(c) => Msg::Close(c.map(|(code, r)| (code, r.to_owned()))),
            Message::Compressed { text, data } => Msg::Compressed(text, data.to_vec()),
        }
    }
}

/// A loop-like driver: a pending buffer that keeps what the decoder did not consume.
struct Conn {
    dec: Decoder,
    pending: Vec<u8>,
    out: Vec<Msg>,
}

impl Conn {
    fn new(dec: Decoder) -> Self {
        Conn {
            dec,
            pending: Vec::new(),
            out: Vec::new(),
        }
    }

    fn server() -> Self {
        Conn::new(Decoder::new(Role::Server))
    }

    /// Feeds one read's worth of bytes and collects every message it completes.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), WsError> {
        self.pending.extend_from_slice(bytes);
        let mut pos = 0;
        loop {
            let rest = self.pending.len() - pos;
            let (used, msg) = self.dec.decode(&mut self.pending[pos..])?;
            assert!(used <= rest, "consumed {used} of {rest}");
            pos += used;
            match msg {
                Some(m) => self.out.push(m.into()),
                None if used == 0 => break,
                None => {}
            }
        }
        self.pending.drain(..pos);
        assert!(
            self.pending.len() <= MAX_HELD,
            "caller holds {} bytes",
            self.pending.len()
        );
        Ok(())
    }

    /// Feeds `bytes` in chunks ending at `cuts` (sorted, clamped), then the rest.
    fn feed_split(&mut self, bytes: &[u8], cuts: &[usize]) -> Result<(), WsError> {
        let mut start = 0;
        for &cut in cuts {
            let cut = cut.clamp(start, bytes.len());
            self.feed(&bytes[start..cut])?;
            start = cut;
        }
        self.feed(&bytes[start..])
    }
}

/// Decodes a whole stream fed in one piece.
fn decode_all(bytes: &[u8]) -> Result<Vec<Msg>, WsError> {
    let mut conn = Conn::server();
    conn.feed(bytes)?;
    Ok(conn.out)
}

/// Decodes a stream fed in one piece, expecting an error; returns it with the messages
/// delivered before it.
fn decode_err(bytes: &[u8]) -> (Vec<Msg>, WsError) {
    let mut conn = Conn::server();
    let err = conn.feed(bytes).expect_err("stream should fail");
    (conn.out, err)
}

/// A masked client frame with the raw first byte (FIN, RSV, any opcode).
fn raw(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    encode_frame(&mut wire, true, Opcode::Binary, payload, KEY);
    wire[0] = first;
    wire
}

/// A masked client frame.
fn frame(fin: bool, opcode: Opcode, payload: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    encode_frame(&mut wire, fin, opcode, payload, KEY);
    wire
}

fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

// ---- 1.x framing -------------------------------------------------------------------------

#[test]
fn single_frames_at_length_boundaries_are_zero_copy() {
    // Autobahn 1.1.1-1.1.6 (text) and 1.2.1-1.2.6 (binary).
    for len in [0usize, 125, 126, 127, 128, 65535, 65536] {
        for opcode in [Opcode::Text, Opcode::Binary] {
            let payload = vec![b'*'; len];
            let mut wire = frame(true, opcode, &payload);
            let header_len = wire.len() - len;
            let base = wire.as_ptr() as usize;
            let mut dec = Decoder::new(Role::Server);
            let (used, msg) = dec.decode(&mut wire).unwrap();
            assert_eq!(used, header_len + len);
            let body = match msg.unwrap() {
                Message::Text(t) => t.as_bytes(),
                Message::Binary(b) => b,
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(body, &payload[..]);
            if len > 0 {
                assert_eq!(
                    body.as_ptr() as usize,
                    base + header_len,
                    "not borrowed in place"
                );
            }
            assert_eq!(dec.heap_bytes(), 0);
        }
    }
}

#[test]
fn payload_in_chops_of_997_bytes() {
    // Autobahn 1.1.8 / 1.2.8: 65536 bytes sent in chops of 997 octets.
    let payload: Vec<u8> = (0..65536u32).map(|i| b'a' + (i % 26) as u8).collect();
    let wire = frame(true, Opcode::Text, &payload);
    let cuts: Vec<usize> = (997..wire.len()).step_by(997).collect();
    let mut conn = Conn::server();
    conn.feed_split(&wire, &cuts).unwrap();
    assert_eq!(conn.out, [Msg::Text(String::from_utf8(payload).unwrap())]);
    // The big reassembly buffer is released on the next call.
    conn.feed(&[]).unwrap();
    assert!(conn.dec.heap_bytes() <= 1024);
}

#[test]
fn several_messages_in_one_read() {
    let wire = cat(&[
        frame(true, Opcode::Text, b"one"),
        frame(true, Opcode::Binary, &[0, 1, 2]),
        frame(true, Opcode::Text, b""),
    ]);
    assert_eq!(
        decode_all(&wire).unwrap(),
        [
            Msg::Text("one".into()),
            Msg::Binary(vec![0, 1, 2]),
            Msg::Text(String::new())
        ]
    );
}

#[test]
fn server_requires_masked_frames() {
    let mut wire = Vec::new();
    encode_frame(&mut wire, true, Opcode::Text, b"hi", None);
    let (_, err) = decode_err(&wire);
    assert_eq!(
        (err.close_code, err.reason),
        (1002, "client frame not masked")
    );
}

#[test]
fn client_rejects_masked_frames_and_reads_unmasked_ones() {
    let mut wire = Vec::new();
    encode_frame(&mut wire, true, Opcode::Text, b"hi", None);
    let mut conn = Conn::new(Decoder::new(Role::Client));
    conn.feed(&wire).unwrap();
    assert_eq!(conn.out, [Msg::Text("hi".into())]);
    let err = conn.feed(&frame(true, Opcode::Text, b"hi")).unwrap_err();
    assert_eq!((err.close_code, err.reason), (1002, "server frame masked"));
}

// ---- 2.x ping / pong ---------------------------------------------------------------------

#[test]
fn pings_and_pongs() {
    // 2.1-2.4: empty, text, binary and 125-byte pings; 2.7/2.8: unsolicited pongs.
    let big = vec![0xFE; 125];
    let wire = cat(&[
        frame(true, Opcode::Ping, b""),
        frame(true, Opcode::Ping, b"Hello, world!"),
        frame(true, Opcode::Ping, &big),
        frame(true, Opcode::Pong, b"unsolicited"),
    ]);
    assert_eq!(
        decode_all(&wire).unwrap(),
        [
            Msg::Ping(vec![]),
            Msg::Ping(b"Hello, world!".to_vec()),
            Msg::Ping(big),
            Msg::Pong(b"unsolicited".to_vec()),
        ]
    );
}

#[test]
fn ping_over_125_bytes_fails() {
    // 2.5.
    let (_, err) = decode_err(&frame(true, Opcode::Ping, &[0; 126]));
    assert_eq!(err.close_code, 1002);
}

#[test]
fn ping_sent_byte_by_byte() {
    // 2.6: a 125-byte ping in octet-wise chops; 2.11: ten pings in chops.
    let one = frame(true, Opcode::Ping, &[b'p'; 125]);
    let wire = cat(&vec![one; 10]);
    let cuts: Vec<usize> = (1..wire.len()).collect();
    let mut conn = Conn::server();
    conn.feed_split(&wire, &cuts).unwrap();
    assert_eq!(conn.out, vec![Msg::Ping(vec![b'p'; 125]); 10]);
}

// ---- 3.x reserved bits -------------------------------------------------------------------

#[test]
fn any_rsv_bit_fails() {
    // 3.1-3.7: RSV 1..=7 on text, binary, ping and close frames.
    for rsv in 1..=7u8 {
        for opcode in [0x1, 0x2, 0x9, 0x8] {
            let (_, err) = decode_err(&raw(0x80 | rsv << 4 | opcode, b"x\x03\xe8"));
            assert_eq!(err.close_code, 1002, "rsv {rsv} opcode {opcode}");
        }
    }
}

#[test]
fn rsv_frame_after_a_good_one_fails_after_delivering_it() {
    // 3.2: small text, then text with RSV=2, then ping.
    let wire = cat(&[
        frame(true, Opcode::Text, b"ok"),
        raw(0xA1, b"x"),
        frame(true, Opcode::Ping, b""),
    ]);
    let (out, err) = decode_err(&wire);
    assert_eq!(out, [Msg::Text("ok".into())]);
    assert_eq!(err.close_code, 1002);
}

#[test]
fn errors_are_sticky() {
    let mut dec = Decoder::new(Role::Server);
    let mut bad = raw(0xC1, b"x");
    let err = dec.decode(&mut bad).unwrap_err();
    let mut good = frame(true, Opcode::Text, b"ok");
    assert_eq!(dec.decode(&mut good).unwrap_err(), err);
    assert_eq!(dec.decode(&mut []).unwrap_err(), err);
}

// ---- 4.x opcodes -------------------------------------------------------------------------

#[test]
fn reserved_opcodes_fail() {
    // 4.1.1-4.1.5 (3-7) and 4.2.1-4.2.5 (0xB-0xF), after a good message.
    for opcode in (3..=7).chain(0xB..=0xF) {
        let wire = cat(&[frame(true, Opcode::Text, b"ok"), raw(0x80 | opcode, b"x")]);
        let (out, err) = decode_err(&wire);
        assert_eq!(out, [Msg::Text("ok".into())], "opcode {opcode}");
        assert_eq!(err.close_code, 1002);
    }
}

// ---- 5.x fragmentation -------------------------------------------------------------------

#[test]
fn fragmented_control_frames_fail() {
    // 5.1 (ping) and 5.2 (pong) in two fragments.
    for opcode in [Opcode::Ping, Opcode::Pong] {
        let (_, err) = decode_err(&frame(false, opcode, b"frag"));
        assert_eq!(err.close_code, 1002);
    }
}

#[test]
fn fragments_reassemble_with_control_frames_between() {
    // 5.3-5.8: two fragments, with a ping between, in one chop and frame by frame.
    let wire = cat(&[
        frame(false, Opcode::Text, b"frag"),
        frame(true, Opcode::Ping, b"between"),
        frame(true, Opcode::Continuation, b"ment1"),
    ]);
    let expected = [
        Msg::Ping(b"between".to_vec()),
        Msg::Text("fragment1".into()),
    ];
    assert_eq!(decode_all(&wire).unwrap(), expected);
    let mut conn = Conn::server();
    for cut in [frame(false, Opcode::Text, b"frag").len(), wire.len() - 11] {
        conn.feed_split(&wire, &[cut]).unwrap();
        assert_eq!(conn.out, expected);
        conn = Conn::server();
    }
}

#[test]
fn continuation_without_a_message_fails() {
    // 5.9-5.14: continuation (final or not) with nothing to continue.
    for fin in [true, false] {
        let wire = cat(&[
            frame(fin, Opcode::Continuation, b"x"),
            frame(true, Opcode::Text, b"y"),
        ]);
        let (out, err) = decode_err(&wire);
        assert!(out.is_empty());
        assert_eq!(
            (err.close_code, err.reason),
            (1002, "continuation frame without a message")
        );
    }
}

#[test]
fn stray_continuation_after_a_complete_message_fails() {
    // 5.15: a two-fragment message, then a continuation with nothing to continue.
    let wire = cat(&[
        frame(false, Opcode::Text, b"frag"),
        frame(true, Opcode::Continuation, b"ment1"),
        frame(false, Opcode::Continuation, b"x"),
        frame(true, Opcode::Text, b"never"),
    ]);
    let (out, err) = decode_err(&wire);
    assert_eq!(out, [Msg::Text("fragment1".into())]);
    assert_eq!(err.close_code, 1002);
}

#[test]
fn new_data_frame_inside_a_message_fails() {
    // 5.16-5.18: a second Text frame where a continuation belongs.
    let wire = cat(&[
        frame(false, Opcode::Text, b"frag"),
        frame(true, Opcode::Text, b"ment"),
    ]);
    let (_, err) = decode_err(&wire);
    assert_eq!(
        (err.close_code, err.reason),
        (1002, "new data frame inside a fragmented message")
    );
}

#[test]
fn five_fragments_with_pings() {
    // 5.19 / 5.20: five fragments, pings after the first and fourth.
    let wire = cat(&[
        frame(false, Opcode::Text, b"1"),
        frame(true, Opcode::Ping, b"p1"),
        frame(false, Opcode::Continuation, b"2"),
        frame(false, Opcode::Continuation, b"3"),
        frame(false, Opcode::Continuation, b"4"),
        frame(true, Opcode::Ping, b"p2"),
        frame(true, Opcode::Continuation, b"5"),
    ]);
    let expected = [
        Msg::Ping(b"p1".to_vec()),
        Msg::Ping(b"p2".to_vec()),
        Msg::Text("12345".into()),
    ];
    for cut in 0..=wire.len() {
        let mut conn = Conn::server();
        conn.feed_split(&wire, &[cut]).unwrap();
        assert_eq!(conn.out, expected, "cut {cut}");
    }
}

#[test]
fn empty_fragments() {
    // 6.1.2 / 6.1.3: empty fragments, including an empty final one.
    let wire = cat(&[
        frame(false, Opcode::Text, b""),
        frame(false, Opcode::Continuation, b""),
        frame(true, Opcode::Continuation, b""),
        frame(false, Opcode::Binary, b""),
        frame(true, Opcode::Continuation, b"x"),
    ]);
    assert_eq!(
        decode_all(&wire).unwrap(),
        [Msg::Text(String::new()), Msg::Binary(vec![b'x'])]
    );
}

// ---- 6.x UTF-8 ---------------------------------------------------------------------------

#[test]
fn invalid_utf8_in_a_single_frame_fails_with_1007() {
    // 6.3.1 and the 6.6-6.21 families: invalid sequences, surrogates, overlongs.
    for bad in [
        &[0xCE, 0xBA, 0xE1, 0xBD][..],
        &[0xED, 0xA0, 0x80],
        &[0xC0, 0xAF],
        &[0xFF],
    ] {
        let (_, err) = decode_err(&frame(true, Opcode::Text, bad));
        assert_eq!(err.close_code, 1007, "{bad:02x?}");
    }
    // Binary payloads are not checked.
    assert!(decode_all(&frame(true, Opcode::Binary, &[0xFF])).is_ok());
}

#[test]
fn valid_utf8_split_at_every_fragment_boundary() {
    // 6.2.1-6.2.4: valid UTF-8 split into fragments at every byte, code points included.
    let text = "Hello-µ@ßöäüàá-UTF-8!! κόσμε 𝄞";
    let bytes = text.as_bytes();
    for cut in 0..=bytes.len() {
        let wire = cat(&[
            frame(false, Opcode::Text, &bytes[..cut]),
            frame(true, Opcode::Continuation, &bytes[cut..]),
        ]);
        assert_eq!(
            decode_all(&wire).unwrap(),
            [Msg::Text(text.into())],
            "cut {cut}"
        );
    }
}

#[test]
fn invalid_utf8_fails_fast_on_the_fragment_that_contains_it() {
    // 6.4.1 / 6.4.2: the second of three fragments is invalid; the error comes before the
    // third is sent.
    let mut conn = Conn::server();
    conn.feed(&frame(false, Opcode::Text, "κόσμε".as_bytes()))
        .unwrap();
    let err = conn
        .feed(&frame(
            false,
            Opcode::Continuation,
            &[0xF4, 0x90, 0x80, 0x80],
        ))
        .unwrap_err();
    assert_eq!(err.close_code, 1007);
}

#[test]
fn invalid_utf8_fails_fast_inside_one_chopped_frame() {
    // 6.4.3 / 6.4.4: one frame sent in three chops; the second chop holds the bad bytes.
    let part1 = "κόσμε".as_bytes();
    let part2 = [0xF4, 0x90, 0x80, 0x80];
    let part3 = b"edited";
    let payload = [part1, &part2[..], part3].concat();
    let wire = frame(true, Opcode::Text, &payload);
    let header_len = wire.len() - payload.len();
    let cut1 = header_len + part1.len();
    let mut conn = Conn::server();
    conn.feed(&wire[..cut1]).unwrap();
    let err = conn.feed(&wire[cut1..cut1 + part2.len()]).unwrap_err();
    assert_eq!(err.close_code, 1007);
    // 6.4.4: even a single bad byte in a chop is caught at once.
    let mut conn = Conn::server();
    conn.feed(&wire[..cut1]).unwrap();
    assert_eq!(
        conn.feed(&wire[cut1..cut1 + 2]).unwrap_err().close_code,
        1007
    );
}

#[test]
fn text_ending_inside_a_code_point_fails() {
    // A truncated sequence at the end of the final fragment (and of a single frame).
    let wire = cat(&[
        frame(false, Opcode::Text, b"ok"),
        frame(true, Opcode::Continuation, &[0xE2, 0x82]),
    ]);
    let (_, err) = decode_err(&wire);
    assert_eq!(
        (err.close_code, err.reason),
        (1007, "text ends inside a UTF-8 sequence")
    );
    let (_, err) = decode_err(&frame(true, Opcode::Text, &[b'a', 0xE2]));
    assert_eq!(err.close_code, 1007);
    // The same truncated frame arriving in chops.
    let wire = frame(true, Opcode::Text, &[b'a', 0xE2]);
    let mut conn = Conn::server();
    let err = conn.feed_split(&wire, &[wire.len() - 1]).unwrap_err();
    assert_eq!(err.close_code, 1007);
}

// ---- 7.x close ---------------------------------------------------------------------------

fn close_frame(payload: &[u8]) -> Vec<u8> {
    frame(true, Opcode::Close, payload)
}

#[test]
fn close_payloads() {
    // 7.3.1 empty; 7.3.3 code only; 7.3.4 code and reason; 7.3.5 123-byte reason.
    let reason = "*".repeat(123);
    let mut with_reason = 1000u16.to_be_bytes().to_vec();
    with_reason.extend_from_slice(reason.as_bytes());
    for (payload, expected) in [
        (vec![], None),
        (vec![0x03, 0xE8], Some((1000, String::new()))),
        (b"\x03\xe8Hello".to_vec(), Some((1000, "Hello".to_owned()))),
        (with_reason, Some((1000, reason.clone()))),
    ] {
        assert_eq!(
            decode_all(&close_frame(&payload)).unwrap(),
            [Msg::Close(expected)]
        );
    }
}

#[test]
fn bad_close_payloads() {
    // 7.3.2: 1 byte; 7.3.6: 126 bytes; 7.5.1: reason not UTF-8; 7.9.x / 7.13.x: bad codes.
    assert_eq!(decode_err(&close_frame(&[0x03])).1.close_code, 1002);
    let mut long = vec![0x03, 0xE8];
    long.extend_from_slice(&[b'*'; 124]);
    assert_eq!(decode_err(&close_frame(&long)).1.close_code, 1002);
    let bad_reason = [
        0x03, 0xE8, 0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xED, 0xA0, 0x80,
    ];
    assert_eq!(decode_err(&close_frame(&bad_reason)).1.close_code, 1007);
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let err = decode_err(&close_frame(&code.to_be_bytes())).1;
        assert_eq!(err.close_code, 1002, "code {code}");
    }
    for code in [
        1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
    ] {
        let out = decode_all(&close_frame(&code.to_be_bytes())).unwrap();
        assert_eq!(
            out,
            [Msg::Close(Some((code, String::new())))],
            "code {code}"
        );
    }
}

#[test]
fn input_after_close_is_ignored() {
    // 7.1.2 close twice; 7.1.3 close then ping; 7.1.4 close then text; 7.1.5 a fragment,
    // close, then the continuation.
    let wire = cat(&[
        frame(false, Opcode::Text, b"frag"),
        close_frame(b"\x03\xe8"),
        frame(true, Opcode::Continuation, b"ment"),
        frame(true, Opcode::Ping, b""),
        close_frame(b""),
        b"\xff\xff garbage".to_vec(),
    ]);
    let mut conn = Conn::server();
    conn.feed(&wire).unwrap();
    assert_eq!(conn.out, [Msg::Close(Some((1000, String::new())))]);
    assert!(conn.pending.is_empty());
    conn.feed(&frame(true, Opcode::Text, b"late")).unwrap();
    assert_eq!(conn.out.len(), 1);
}

#[test]
fn close_handshake_with_the_decoder() {
    // 7.1.1: echo a text message, then the close is answered and TCP closed.
    let wire = cat(&[
        frame(true, Opcode::Text, b"Hello"),
        close_frame(b"\x03\xe8"),
    ]);
    let mut conn = Conn::server();
    conn.feed(&wire).unwrap();
    let mut state = CloseState::default();
    let mut out = Vec::new();
    let Msg::Close(Some((code, reason))) = &conn.out[1] else {
        panic!("no close")
    };
    assert_eq!(
        state.on_peer_close(&mut out, Some((*code, reason.as_str()))),
        CloseAction::SendThenClose
    );
    let mut client = Conn::new(Decoder::new(Role::Client));
    client.feed(&out).unwrap();
    assert_eq!(client.out, [Msg::Close(Some((1000, String::new())))]);
}

#[test]
fn masked_close_encoder_round_trips() {
    let mut wire = Vec::new();
    encode_close_with_mask(&mut wire, 4000, "done", KEY);
    assert_eq!(
        decode_all(&wire).unwrap(),
        [Msg::Close(Some((4000, "done".into())))]
    );
}

// ---- 9.x limits --------------------------------------------------------------------------

#[test]
fn oversized_frame_fails_from_its_header_alone() {
    // 9.x: the limit is enforced before any payload is buffered.
    let mut dec = Decoder::with_limits(Role::Server, 1000, 4000);
    let wire = frame(true, Opcode::Binary, &[0; 1001]);
    let mut header = wire[..8].to_vec(); // 2 + 2 (length) + 4 (key) bytes
    let err = dec.decode(&mut header).unwrap_err();
    assert_eq!((err.close_code, err.reason), (1009, "frame over max_frame"));
    assert_eq!(dec.heap_bytes(), 0);
}

#[test]
fn oversized_message_fails_at_the_fragment_that_crosses_the_limit() {
    let mut conn = Conn::new(Decoder::with_limits(Role::Server, 1000, 2500));
    conn.feed(&frame(false, Opcode::Binary, &[1; 1000]))
        .unwrap();
    conn.feed(&frame(false, Opcode::Continuation, &[2; 1000]))
        .unwrap();
    let next = frame(false, Opcode::Continuation, &[3; 501]);
    let err = conn.feed(&next[..8]).unwrap_err(); // the header is enough
    assert_eq!(
        (err.close_code, err.reason),
        (1009, "message over max_message")
    );
    // A single frame over max_message (but under max_frame) fails the same way.
    let mut conn = Conn::new(Decoder::with_limits(Role::Server, 1000, 500));
    assert_eq!(
        conn.feed(&frame(true, Opcode::Text, &[b'a'; 501]))
            .unwrap_err()
            .close_code,
        1009
    );
}

#[test]
fn limits_are_inclusive_and_default_to_16_mib() {
    let mut conn = Conn::new(Decoder::with_limits(Role::Server, 1000, 2000));
    conn.feed(&frame(false, Opcode::Binary, &[1; 1000]))
        .unwrap();
    conn.feed(&frame(true, Opcode::Continuation, &[2; 1000]))
        .unwrap();
    assert_eq!(conn.out.len(), 1);

    // Only headers are fed: a 16 MiB frame is accepted, one byte more is not.
    let header = |len: u64| {
        let h = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: Opcode::Binary,
            mask: KEY,
            payload_len: len,
        };
        let mut wire = Vec::new();
        h.encode(&mut wire);
        wire
    };
    let mut dec = Decoder::new(Role::Server);
    let mut ok = header(16 << 20);
    let len = ok.len();
    assert_eq!(dec.decode(&mut ok).unwrap(), (len, None));
    assert!(dec.is_mid_message());
    let mut dec = Decoder::new(Role::Server);
    assert_eq!(
        dec.decode(&mut header((16 << 20) + 1))
            .unwrap_err()
            .close_code,
        1009
    );
}

#[test]
fn a_huge_announced_length_allocates_nothing_up_front() {
    // A peer announcing a big frame and trickling it in costs only what it sent.
    let mut dec = Decoder::new(Role::Server);
    let h = FrameHeader {
        fin: true,
        rsv: 0,
        opcode: Opcode::Binary,
        mask: KEY,
        payload_len: 8 << 20,
    };
    let mut wire = Vec::new();
    h.encode(&mut wire);
    wire.extend_from_slice(&[0; 10]);
    let len = wire.len();
    assert_eq!(dec.decode(&mut wire).unwrap(), (len, None));
    assert_eq!(dec.buffered_len(), 10);
    assert!(dec.heap_bytes() < 1024);
}

// ---- whole-stream properties -------------------------------------------------------------

/// One thing a client sends: a data message (split into fragments at `cuts`, with a ping
/// after the first fragment if `ping` is set), or a lone control frame.
#[derive(Debug, Clone)]
enum Sent {
    Data {
        text: bool,
        payload: Vec<u8>,
        cuts: Vec<usize>,
        ping: Option<Vec<u8>>,
    },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn sent_strategy() -> impl Strategy<Value = Sent> {
    let cuts = proptest::collection::vec(0usize..700, 0..4);
    let control = proptest::collection::vec(any::<u8>(), 0..=125);
    prop_oneof![
        (
            "\\PC{0,200}",
            cuts.clone(),
            proptest::option::of(control.clone())
        )
            .prop_map(|(text, cuts, ping)| Sent::Data {
                text: true,
                payload: text.into_bytes(),
                cuts,
                ping
            }),
        (
            proptest::collection::vec(any::<u8>(), 0..700),
            cuts,
            proptest::option::of(control.clone())
        )
            .prop_map(|(payload, cuts, ping)| Sent::Data {
                text: false,
                payload,
                cuts,
                ping
            }),
        control.clone().prop_map(Sent::Ping),
        control.prop_map(Sent::Pong),
    ]
}

/// Encodes what the client sent with per-frame keys derived from `seed`, and the messages
/// the server must see.
fn encode_stream(sent: &[Sent], seed: u32) -> (Vec<u8>, Vec<Msg>) {
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    let mut n = seed;
    let mut key = || {
        n = n.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        Some(n.to_le_bytes())
    };
    for s in sent {
        match s {
            Sent::Data {
                text,
                payload,
                cuts,
                ping,
            } => {
                let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(payload.len())).collect();
                bounds.sort_unstable();
                bounds.push(payload.len());
                let mut start = 0;
                for (i, &end) in bounds.iter().enumerate() {
                    let fin = i + 1 == bounds.len();
                    let opcode = match (i, text) {
                        (0, true) => Opcode::Text,
                        (0, false) => Opcode::Binary,
                        _ => Opcode::Continuation,
                    };
                    encode_frame(&mut wire, fin, opcode, &payload[start..end], key());
                    start = end;
                    if let (0, false, Some(p)) = (i, fin, ping) {
                        encode_frame(&mut wire, true, Opcode::Ping, p, key());
                        expected.push(Msg::Ping(p.clone()));
                    }
                }
                expected.push(if *text {
                    Msg::Text(String::from_utf8(payload.clone()).unwrap())
                } else {
                    Msg::Binary(payload.clone())
                });
            }
            Sent::Ping(p) => {
                encode_frame(&mut wire, true, Opcode::Ping, p, key());
                expected.push(Msg::Ping(p.clone()));
            }
            Sent::Pong(p) => {
                encode_frame(&mut wire, true, Opcode::Pong, p, key());
                expected.push(Msg::Pong(p.clone()));
            }
        }
    }
    (wire, expected)
}

#[test]
fn every_split_point_gives_the_same_messages() {
    let sent = [
        Sent::Data {
            text: true,
            payload: "κόσμε 𝄞 €".as_bytes().to_vec(),
            cuts: vec![3, 9],
            ping: Some(b"p".to_vec()),
        },
        Sent::Pong(vec![1, 2, 3]),
        Sent::Data {
            text: false,
            payload: vec![7; 300],
            cuts: vec![],
            ping: None,
        },
        Sent::Data {
            text: true,
            payload: b"tail".to_vec(),
            cuts: vec![],
            ping: None,
        },
    ];
    let (wire, expected) = encode_stream(&sent, 42);
    assert_eq!(decode_all(&wire).unwrap(), expected);
    for cut in 0..=wire.len() {
        let mut conn = Conn::server();
        conn.feed_split(&wire, &[cut]).unwrap();
        assert_eq!(conn.out, expected, "split at {cut}");
    }
    // And every pair of split points on a shorter stream.
    let (wire, expected) = encode_stream(&sent[..2], 7);
    for a in 0..=wire.len() {
        for b in a..=wire.len() {
            let mut conn = Conn::server();
            conn.feed_split(&wire, &[a, b]).unwrap();
            assert_eq!(conn.out, expected, "split at {a},{b}");
        }
    }
}

proptest! {
    #[test]
    fn masked_client_streams_decode_to_what_was_sent(
        sent in proptest::collection::vec(sent_strategy(), 0..6),
        seed in any::<u32>(),
        cuts in proptest::collection::vec(0usize..4000, 0..8),
    ) {
        let (wire, expected) = encode_stream(&sent, seed);
        let mut cuts = cuts;
        cuts.sort_unstable();
        let mut conn = Conn::server();
        conn.feed_split(&wire, &cuts).unwrap();
        prop_assert_eq!(conn.out, expected);
        prop_assert!(conn.pending.is_empty());
        prop_assert!(!conn.dec.is_mid_message());
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        cuts in proptest::collection::vec(0usize..400, 0..6),
        client in any::<bool>(),
    ) {
        let mut cuts = cuts;
        cuts.sort_unstable();
        let role = if client { Role::Client } else { Role::Server };
        let mut conn = Conn::new(Decoder::with_limits(role, 300, 600));
        // Errors are fine; panics and over-long held tails (asserted in feed) are not.
        let _ = conn.feed_split(&bytes, &cuts);
    }

    #[test]
    fn corrupted_streams_never_panic(
        sent in proptest::collection::vec(sent_strategy(), 1..4),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cuts in proptest::collection::vec(0usize..3000, 0..4),
    ) {
        let (mut wire, _) = encode_stream(&sent, 1);
        for (at, byte) in flips {
            let i = at.index(wire.len());
            wire[i] ^= byte;
        }
        let mut cuts = cuts;
        cuts.sort_unstable();
        let mut conn = Conn::server();
        let _ = conn.feed_split(&wire, &cuts);
    }
}

#[test]
fn rsv1_marks_compressed_messages_only_when_negotiated() {
    use super::deflate::{Deflater, Inflater};
    use super::encode_frame_rsv;
    let mut packed = Vec::new();
    Deflater::new(1, 15, true).deflate("héllo héllo héllo".as_bytes(), &mut packed);
    let mut wire = Vec::new();
    encode_frame_rsv(&mut wire, true, 0b100, Opcode::Text, &packed, KEY);
    // Fragmented: RSV1 on the first frame only.
    let (a, b) = packed.split_at(packed.len() / 2);
    encode_frame_rsv(&mut wire, false, 0b100, Opcode::Binary, a, KEY);
    encode_frame(&mut wire, true, Opcode::Ping, b"p", KEY);
    encode_frame(&mut wire, true, Opcode::Continuation, b, KEY);
    encode_frame(&mut wire, true, Opcode::Text, b"plain", KEY);

    // Without the extension RSV1 is a protocol error.
    let mut dec = Decoder::new(Role::Server);
    assert_eq!(dec.decode(&mut wire.clone()).unwrap_err().close_code, 1002);

    for split in [1, 7, wire.len() / 2, wire.len()] {
        let mut dec = Decoder::new(Role::Server);
        dec.set_permessage_deflate(true);
        let mut held = Vec::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(split) {
            held.extend_from_slice(chunk);
            let mut pos = 0;
            loop {
                let (n, m) = dec.decode(&mut held[pos..]).unwrap();
                pos += n;
                match m {
                    Some(m) => got.push(Msg::from(m)),
                    None if n == 0 => break,
                    None => {}
                }
            }
            held.drain(..pos);
        }
        assert_eq!(
            got,
            vec![
                Msg::Compressed(true, packed.clone()),
                Msg::Ping(b"p".to_vec()),
                Msg::Compressed(false, packed.clone()),
                Msg::Text("plain".into()),
            ],
            "split {split}"
        );
        let mut out = Vec::new();
        Inflater::new(true)
            .inflate(&packed, 1 << 10, &mut out)
            .unwrap();
        assert_eq!(out, "héllo héllo héllo".as_bytes());
    }

    // RSV1 on a continuation, on a control frame, and RSV2: errors even with the extension.
    for (fin, rsv, op) in [(true, 0b100, Opcode::Ping), (true, 0b010, Opcode::Text)] {
        let mut w = Vec::new();
        encode_frame_rsv(&mut w, fin, rsv, op, b"x", KEY);
        let mut dec = Decoder::new(Role::Server);
        dec.set_permessage_deflate(true);
        assert_eq!(dec.decode(&mut w).unwrap_err().close_code, 1002);
    }
    let mut w = Vec::new();
    encode_frame(&mut w, false, Opcode::Text, b"a", KEY);
    encode_frame_rsv(&mut w, true, 0b100, Opcode::Continuation, b"b", KEY);
    let mut dec = Decoder::new(Role::Server);
    dec.set_permessage_deflate(true);
    let (n, _) = dec.decode(&mut w).unwrap();
    assert_eq!(dec.decode(&mut w[n..]).unwrap_err().close_code, 1002);
}
