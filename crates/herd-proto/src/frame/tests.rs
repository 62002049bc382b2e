//! Tests of the frame codec: byte-exact headers, every error path, split and concatenated
//! streams, the fuzz seed corpus, and property tests (round trips, arbitrary bytes).

use proptest::prelude::*;

use super::codec::body_len_field;
use super::*;

/// A decoded frame detached from its input buffer.
type Owned = (Header, Vec<u8>);

/// Feeds `chunks` to a decoder the way the event loop does: decode in place from the start of
/// the pending bytes, then keep only the unconsumed tail. Returns the frames and the tail.
fn decode_chunked<'c>(
    max_frame: u32,
    chunks: impl IntoIterator<Item = &'c [u8]>,
) -> Result<(Vec<Owned>, Vec<u8>), FrameError> {
    let mut decoder = FrameDecoder::new(max_frame);
    let mut pending = Vec::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        let mut at = 0;
        while let (consumed, Some(frame)) = decoder.decode(&pending[at..])? {
            assert_eq!(consumed, HEADER_LEN + frame.body.len());
            assert_eq!(frame.header.len as usize, frame.body.len());
            frames.push((frame.header, frame.body.to_vec()));
            at += consumed;
        }
        pending.drain(..at);
    }
    Ok((frames, pending))
}

fn header(len: u32, msg_id: u16, flags: Flags, request_id: u32) -> Header {
    Header {
        len,
        msg_id,
        flags,
        request_id,
    }
}

/// A stream of several kinds of frame, and what decoding it must give.
fn sample_stream() -> (Vec<u8>, Vec<Owned>) {
    let big: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let mut wire = Vec::new();
    let mut want = Vec::new();
    encode(&mut wire, 1, Flags::EMPTY, 10, b"hello").unwrap();
    want.push((header(5, 1, Flags::EMPTY, 10), b"hello".to_vec()));
    encode_ping(&mut wire, 11);
    want.push((header(0, PING_ID, Flags::EMPTY, 11), vec![]));
    encode(&mut wire, 2, Flags::RESPONSE, 12, &big).unwrap();
    want.push((header(300, 2, Flags::RESPONSE, 12), big));
    encode_error(&mut wire, 13, ErrorCode::Handler, "bad").unwrap();
    let err_flags = Flags::RESPONSE | Flags::ERROR;
    want.push((header(5, ERROR_ID, err_flags, 13), b"\x00\x03bad".to_vec()));
    encode(&mut wire, 3, Flags::PUSH, 0, b"").unwrap();
    want.push((header(0, 3, Flags::PUSH, 0), vec![]));
    encode_pong(&mut wire, 14);
    want.push((header(0, PONG_ID, Flags::RESPONSE, 14), vec![]));
    (wire, want)
}

// ---- byte-exact encoding ---------------------------------------------------------------

#[test]
fn header_emit_and_parse_are_byte_exact() {
    let h = header(
        0x0102_0304,
        0xA1B2,
        Flags::RESPONSE | Flags::PUSH,
        0xDEAD_BEEF,
    );
    let mut buf = [0xEEu8; HEADER_LEN + 2];
    h.emit(&mut buf);
    assert_eq!(
        buf,
        [1, 2, 3, 4, 0xA1, 0xB2, 0, 5, 0xDE, 0xAD, 0xBE, 0xEF, 0xEE, 0xEE],
        "emit writes exactly the header bytes"
    );
    assert_eq!(Header::parse(&buf), Ok(h));
    assert_eq!(h.buffer_len(), HEADER_LEN);
    assert_eq!(h.frame_len(), HEADER_LEN + 0x0102_0304);
}

#[test]
fn view_accessors_read_the_documented_offsets() {
    let bytes = [0, 0, 0, 2, 0x12, 0x34, 0, 2, 0, 0, 1, 0, b'x', b'y', b'z'];
    let view = FrameView::new_checked(&bytes[..]).unwrap();
    assert_eq!(view.body_len(), 2);
    assert_eq!(view.msg_id(), 0x1234);
    assert_eq!(view.flags(), 2);
    assert_eq!(view.request_id(), 256);
    assert_eq!(
        view.body(),
        b"xy",
        "body stops at body_len, not at the buffer end"
    );
    assert_eq!(view.into_inner().len(), 15);
}

#[test]
fn view_setters_match_header_emit() {
    let h = header(3, 0xBEEF, Flags::ERROR, 0x0A0B_0C0D);
    let mut from_emit = [0u8; HEADER_LEN + 3];
    h.emit(&mut from_emit);
    let mut from_view = [0u8; HEADER_LEN + 3];
    let mut view = FrameView::new_unchecked(&mut from_view[..]);
    view.set_body_len(3);
    view.set_msg_id(0xBEEF);
    view.set_flags(Flags::ERROR.bits());
    view.set_request_id(0x0A0B_0C0D);
    view.body_mut().copy_from_slice(b"abc");
    assert_eq!(from_view[..HEADER_LEN], from_emit[..HEADER_LEN]);
    assert_eq!(&from_view[HEADER_LEN..], b"abc");
}

#[test]
fn encode_error_ping_pong_are_byte_exact() {
    let mut out = Vec::new();
    encode_error(&mut out, 0x0102_0304, ErrorCode::Busy, "hi").unwrap();
    assert_eq!(
        out,
        [0, 0, 0, 4, 0xFF, 0xFF, 0, 3, 1, 2, 3, 4, 0, 4, b'h', b'i']
    );
    out.clear();
    encode_ping(&mut out, 0xAABB_CCDD);
    encode_pong(&mut out, 1);
    assert_eq!(
        out,
        [
            0, 0, 0, 0, 0xFF, 0xFE, 0, 0, 0xAA, 0xBB, 0xCC, 0xDD, // ping
            0, 0, 0, 0, 0xFF, 0xFD, 0, 1, 0, 0, 0, 1, // pong
        ]
    );
}

#[test]
fn encode_appends_after_existing_bytes() {
    let mut out = b"xyz".to_vec();
    encode(&mut out, 1, Flags::EMPTY, 2, b"body").unwrap();
    assert_eq!(&out[..3], b"xyz");
    assert_eq!(
        out[3..],
        [0, 0, 0, 4, 0, 1, 0, 0, 0, 0, 0, 2, b'b', b'o', b'd', b'y']
    );
}

#[test]
fn encode_with_patches_the_length_and_rewrites_the_header() {
    let mut out = b"ab".to_vec();
    encode_with(&mut out, 9, Flags::PUSH, 4, |buf| {
        // A closure that scribbles over the header it was not meant to touch.
        buf[2..14].fill(0xFF);
        buf.extend_from_slice(b"123456");
    })
    .unwrap();
    assert_eq!(
        out,
        [b'a', b'b', 0, 0, 0, 6, 0, 9, 0, 4, 0, 0, 0, 4, b'1', b'2', b'3', b'4', b'5', b'6']
    );

    let mut empty = Vec::new();
    encode_with(&mut empty, 1, Flags::EMPTY, 1, |_| {}).unwrap();
    assert_eq!(empty, [0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
}

#[test]
#[should_panic(expected = "removed bytes")]
fn encode_with_panics_if_the_closure_eats_the_header() {
    let mut out = Vec::new();
    let _ = encode_with(&mut out, 1, Flags::EMPTY, 1, |buf| buf.truncate(4));
}

#[test]
fn body_length_must_fit_32_bits() {
    assert_eq!(body_len_field(0), Ok(0));
    assert_eq!(body_len_field(u32::MAX as usize), Ok(u32::MAX));
    #[cfg(target_pointer_width = "64")]
    {
        let len = u32::MAX as usize + 1;
        assert_eq!(body_len_field(len), Err(FrameError::BodyTooLong { len }));
        assert_eq!(FrameError::BodyTooLong { len }.code(), ErrorCode::TooLarge);
    }
}

// ---- error paths -----------------------------------------------------------------------

#[test]
fn header_parse_and_view_reject_short_buffers() {
    let full = [0, 0, 0, 3, 0, 1, 0, 0, 0, 0, 0, 1, b'a', b'b', b'c'];
    for n in 0..HEADER_LEN {
        let want = FrameError::Truncated {
            needed: HEADER_LEN,
            got: n,
        };
        assert_eq!(Header::parse(&full[..n]), Err(want), "header of {n} bytes");
        assert_eq!(FrameView::new_checked(&full[..n]).map(|_| ()), Err(want));
    }
    for n in HEADER_LEN..full.len() {
        let want = Err(FrameError::Truncated {
            needed: full.len(),
            got: n,
        });
        assert_eq!(FrameView::new_checked(&full[..n]).map(|_| ()), want);
        assert!(
            Header::parse(&full[..n]).is_ok(),
            "parse needs the header only"
        );
    }
    assert!(FrameView::new_checked(&full[..]).is_ok());
}

#[test]
fn every_reserved_flag_bit_is_a_protocol_error() {
    for bit in 3..16 {
        let flags = (1u16 << bit) | Flags::RESPONSE.bits();
        let mut wire = [0u8; HEADER_LEN];
        FrameView::new_unchecked(&mut wire[..]).set_flags(flags);
        let want = FrameError::ReservedFlags { flags };
        assert_eq!(Header::parse(&wire), Err(want));
        assert_eq!(want.code(), ErrorCode::Protocol);

        let mut decoder = FrameDecoder::default();
        for n in 0..=HEADER_LEN {
            let got = decoder.decode(&wire[..n]);
            if n < 8 {
                assert_eq!(got, Ok((0, None)), "flags not yet visible in {n} bytes");
            } else {
                assert_eq!(got, Err(want), "flags visible in {n} bytes");
            }
        }
    }
}

#[test]
fn one_gigabyte_prefix_fails_from_four_bytes_alone() {
    let wire = [0x40, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
    let mut decoder = FrameDecoder::default();
    let want = Err(FrameError::TooLarge {
        len: 1 << 30,
        max: DEFAULT_MAX_FRAME,
    });
    for n in 0..4 {
        assert_eq!(decoder.decode(&wire[..n]), Ok((0, None)));
    }
    for n in 4..=HEADER_LEN {
        assert_eq!(decoder.decode(&wire[..n]), want, "prefix of {n} bytes");
        assert_eq!(
            decoder.needed(&wire[..n]),
            HEADER_LEN,
            "never reserve for it"
        );
    }
}

#[test]
fn max_frame_is_inclusive() {
    let mut decoder = FrameDecoder::new(5);
    let mut ok = Vec::new();
    encode(&mut ok, 1, Flags::EMPTY, 1, b"12345").unwrap();
    let (consumed, frame) = decoder.decode(&ok).unwrap();
    let frame = frame.unwrap();
    assert_eq!((frame.body, consumed), (&b"12345"[..], ok.len()));

    let mut big = Vec::new();
    encode(&mut big, 1, Flags::EMPTY, 1, b"123456").unwrap();
    let err = decoder.decode(&big).unwrap_err();
    assert_eq!(err, FrameError::TooLarge { len: 6, max: 5 });
    assert_eq!(err.code(), ErrorCode::TooLarge);
    assert_eq!(
        err.to_string(),
        "frame body of 6 bytes exceeds the limit of 5"
    );

    let mut zero = FrameDecoder::new(0);
    assert!(zero.decode(&big).is_err());
    let mut ping = Vec::new();
    encode_ping(&mut ping, 1);
    assert!(
        zero.decode(&ping).unwrap().1.is_some(),
        "empty bodies pass max 0"
    );
}

#[test]
fn needed_reports_the_whole_frame_once_the_length_is_known() {
    let decoder = FrameDecoder::new(1000);
    let mut wire = Vec::new();
    encode(&mut wire, 1, Flags::EMPTY, 1, &[7; 100]).unwrap();
    for n in 0..4 {
        assert_eq!(decoder.needed(&wire[..n]), HEADER_LEN);
    }
    for n in 4..=wire.len() {
        assert_eq!(decoder.needed(&wire[..n]), HEADER_LEN + 100);
    }
    // A decoder with the largest limit copes with the largest length field.
    let mut unlimited = FrameDecoder::new(u32::MAX);
    let max_len = [0xFF, 0xFF, 0xFF, 0xFF, 0, 1, 0, 0, 0, 0, 0, 0];
    assert_eq!(unlimited.decode(&max_len), Ok((0, None)));
    #[cfg(target_pointer_width = "64")]
    assert_eq!(unlimited.needed(&max_len), HEADER_LEN + u32::MAX as usize);
}

#[test]
fn error_payload_parse_paths() {
    for short in [&b""[..], &b"\x00"[..]] {
        assert_eq!(
            ErrorPayload::parse(short),
            Err(FrameError::Truncated {
                needed: 2,
                got: short.len()
            })
        );
    }
    let empty_text = ErrorPayload::parse(b"\x00\x07").unwrap();
    assert_eq!(empty_text, ErrorPayload::new(ErrorCode::Internal, ""));

    let lossy = ErrorPayload::parse(b"\x12\x34ok\xFF").unwrap();
    assert_eq!(lossy.code, ErrorCode::Other(0x1234));
    assert_eq!(lossy.text, "ok\u{FFFD}");
    let owned: ErrorPayload<'static> = lossy.clone().into_owned();
    assert_eq!(owned, lossy);
}

#[test]
fn error_codes_round_trip_and_name_themselves() {
    for raw in 0..=u16::MAX {
        let code = ErrorCode::from_u16(raw);
        assert_eq!(code.as_u16(), raw);
        assert_eq!(u16::from(ErrorCode::from(raw)), raw);
        assert_eq!(code.name().is_some(), (1..=7).contains(&raw), "code {raw}");
    }
    let named = [
        (ErrorCode::UnknownId, 1, "UNKNOWN_ID"),
        (ErrorCode::BadBody, 2, "BAD_BODY"),
        (ErrorCode::Handler, 3, "HANDLER"),
        (ErrorCode::Busy, 4, "BUSY"),
        (ErrorCode::TooLarge, 5, "TOO_LARGE"),
        (ErrorCode::Protocol, 6, "PROTOCOL"),
        (ErrorCode::Internal, 7, "INTERNAL"),
    ];
    for (code, raw, name) in named {
        assert_eq!((code.as_u16(), code.to_string()), (raw, name.to_string()));
    }
    assert_eq!(ErrorCode::Other(0).to_string(), "ERROR_0");
}

#[test]
fn flags_accept_exactly_the_defined_bits() {
    for bits in 0..=u16::MAX {
        let flags = Flags::from_bits(bits);
        assert_eq!(flags.is_some(), bits < 8, "bits {bits:#x}");
        assert_eq!(Flags::from_bits_truncate(bits).bits(), bits & 7);
    }
    let all = Flags::RESPONSE | Flags::ERROR | Flags::PUSH;
    assert_eq!(all, Flags::ALL);
    assert!(all.is_response() && all.is_error() && all.is_push());
    assert_eq!(all.difference(Flags::ERROR), Flags::RESPONSE | Flags::PUSH);
    let mut f = Flags::default();
    assert!(f.is_empty() && f.contains(Flags::EMPTY));
    f |= Flags::PUSH;
    assert!(f.is_push() && !f.is_response());
    assert_eq!(format!("{:?}", Flags::EMPTY), "Flags(EMPTY)");
    assert_eq!(format!("{all:?}"), "Flags(RESPONSE | ERROR | PUSH)");
}

#[test]
fn frame_helpers_classify_frames() {
    let (wire, _) = sample_stream();
    let mut decoder = FrameDecoder::default();
    let mut rest = &wire[..];
    let mut kinds = Vec::new();
    while let (consumed, Some(frame)) = decoder.decode(rest).unwrap() {
        kinds.push((frame.is_ping(), frame.is_pong(), frame.is_error()));
        if frame.is_error() {
            let payload = frame.error_payload().unwrap();
            assert_eq!((payload.code, &*payload.text), (ErrorCode::Handler, "bad"));
        }
        rest = &rest[consumed..];
    }
    let f = false;
    let t = true;
    let want = [
        (f, f, f),
        (t, f, f),
        (f, f, f),
        (f, f, t),
        (f, f, f),
        (f, t, f),
    ];
    assert_eq!(kinds, want);
}

#[test]
fn every_error_displays() {
    let errors = [
        FrameError::Truncated { needed: 12, got: 3 },
        FrameError::TooLarge { len: 9, max: 8 },
        FrameError::ReservedFlags { flags: 0x10 },
        FrameError::BodyTooLong { len: 1 << 33 },
    ];
    let texts: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        texts,
        [
            "truncated frame: need 12 bytes, got 3",
            "frame body of 9 bytes exceeds the limit of 8",
            "reserved flag bits set in flags 0x0010",
            "body of 8589934592 bytes does not fit the 32-bit length field",
        ]
    );
}

// ---- streams: splits and concatenation -------------------------------------------------

#[test]
fn a_stream_split_at_every_byte_boundary_decodes_the_same() {
    let (wire, want) = sample_stream();
    let whole = decode_chunked(DEFAULT_MAX_FRAME, [&wire[..]]).unwrap();
    assert_eq!(whole, (want.clone(), vec![]));
    for cut in 0..=wire.len() {
        let split = decode_chunked(DEFAULT_MAX_FRAME, [&wire[..cut], &wire[cut..]]).unwrap();
        assert_eq!(split, (want.clone(), vec![]), "split at {cut}");
    }
    let bytewise = decode_chunked(DEFAULT_MAX_FRAME, wire.chunks(1)).unwrap();
    assert_eq!(bytewise, (want, vec![]));
}

#[test]
fn concatenated_frames_decode_as_they_do_alone() {
    let (wire, want) = sample_stream();
    let mut alone = Vec::new();
    let mut decoder = FrameDecoder::default();
    let mut at = 0;
    for (h, _) in &want {
        let one = &wire[at..at + h.frame_len()];
        let (consumed, frame) = decoder.decode(one).unwrap();
        let frame = frame.unwrap();
        assert_eq!(consumed, one.len());
        alone.push((frame.header, frame.body.to_vec()));
        at += consumed;
    }
    assert_eq!(alone, want);
    // Many copies back to back, with a partial frame left over at the end.
    let mut many = wire.repeat(50);
    many.extend_from_slice(&wire[..7]);
    let (frames, tail) = decode_chunked(DEFAULT_MAX_FRAME, [&many[..]]).unwrap();
    let want_many: Vec<Owned> = (0..50).flat_map(|_| want.iter().cloned()).collect();
    assert_eq!(frames, want_many);
    assert_eq!(tail, &wire[..7]);
}

#[test]
fn an_error_mid_stream_comes_after_the_good_frames() {
    let (mut wire, _) = sample_stream();
    wire.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0x80, 0, 0, 0, 0, 1]);
    let want = Err(FrameError::ReservedFlags { flags: 0x8000 });
    assert_eq!(decode_chunked(DEFAULT_MAX_FRAME, [&wire[..]]), want);
    assert_eq!(decode_chunked(DEFAULT_MAX_FRAME, wire.chunks(5)), want);
}

// ---- fuzz seed corpus ------------------------------------------------------------------

#[test]
fn fuzz_seeds_decode_as_their_names_say() {
    macro_rules! seed {
        ($name:literal) => {
            &include_bytes!(concat!("../../../../fuzz-seeds/frame/", $name))[..]
        };
    }
    let ok = |bytes: &[u8]| decode_chunked(DEFAULT_MAX_FRAME, [bytes]).unwrap();
    let (req, _) = ok(seed!("request.bin"));
    assert_eq!(req, [(header(5, 42, Flags::EMPTY, 1), b"hello".to_vec())]);
    let (resp, _) = ok(seed!("response.bin"));
    assert_eq!(
        resp,
        [(header(5, 42, Flags::RESPONSE, 1), b"world".to_vec())]
    );
    let (push, _) = ok(seed!("push.bin"));
    assert_eq!(push, [(header(5, 7, Flags::PUSH, 0), b"event".to_vec())]);
    let (ping, _) = ok(seed!("ping.bin"));
    assert_eq!(ping, [(header(0, PING_ID, Flags::EMPTY, 7), vec![])]);
    let (pong, _) = ok(seed!("pong.bin"));
    assert_eq!(pong, [(header(0, PONG_ID, Flags::RESPONSE, 7), vec![])]);

    let (err, _) = ok(seed!("error.bin"));
    assert_eq!(err.len(), 1);
    let payload = ErrorPayload::parse(&err[0].1).unwrap();
    assert_eq!(payload.code, ErrorCode::UnknownId);
    assert_eq!(payload.text, "unknown message id 42");

    let (piped, tail) = ok(seed!("pipelined.bin"));
    let ids: Vec<_> = piped
        .iter()
        .map(|(h, _)| (h.msg_id, h.request_id))
        .collect();
    assert_eq!((ids, tail), (vec![(42, 1), (PING_ID, 2), (43, 3)], vec![]));

    let truncated = seed!("truncated.bin");
    assert_eq!(ok(truncated), (vec![], truncated.to_vec()));

    let mut decoder = FrameDecoder::default();
    assert!(matches!(
        decoder.decode(seed!("oversized_len.bin")),
        Err(FrameError::TooLarge {
            len: 0x4000_0000,
            ..
        })
    ));
    assert_eq!(
        decoder.decode(seed!("reserved_flags.bin")),
        Err(FrameError::ReservedFlags { flags: 8 })
    );
}

// ---- property tests --------------------------------------------------------------------

fn any_flags() -> impl Strategy<Value = Flags> {
    (0u16..8).prop_map(|bits| Flags::from_bits(bits).unwrap())
}

fn any_frame() -> impl Strategy<Value = (u16, Flags, u32, Vec<u8>)> {
    (
        any::<u16>(),
        any_flags(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..300),
    )
}

/// Byte strings that often start with a small, acceptable length so decoding gets past it.
fn wire_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..80),
        (
            0u32..40,
            0u16..16,
            prop::collection::vec(any::<u8>(), 0..80)
        )
            .prop_map(|(len, flags, rest)| {
                let mut v = len.to_be_bytes().to_vec();
                v.extend_from_slice(&[0, 1]);
                v.extend_from_slice(&flags.to_be_bytes());
                v.extend_from_slice(&rest);
                v
            }),
    ]
}

proptest! {
    #[test]
    fn encode_then_decode_round_trips((msg_id, flags, request_id, body) in any_frame()) {
        let mut wire = Vec::new();
        encode(&mut wire, msg_id, flags, request_id, &body).unwrap();
        prop_assert_eq!(wire.len(), HEADER_LEN + body.len());

        let mut via_closure = Vec::new();
        encode_with(&mut via_closure, msg_id, flags, request_id, |b| b.extend_from_slice(&body))
            .unwrap();
        prop_assert_eq!(&via_closure, &wire);

        let (consumed, frame) = FrameDecoder::default().decode(&wire).unwrap();
        let frame = frame.unwrap();
        let want = header(body.len() as u32, msg_id, flags, request_id);
        prop_assert_eq!(frame.header, want);
        prop_assert_eq!(frame.body, &body[..]);
        prop_assert_eq!(consumed, wire.len());

        let view = FrameView::new_checked(&wire[..]).unwrap();
        prop_assert_eq!((view.msg_id(), view.flags(), view.request_id()),
            (msg_id, flags.bits(), request_id));
        prop_assert_eq!(view.body(), &body[..]);
    }

    #[test]
    fn split_streams_decode_like_whole_ones(
        frames in prop::collection::vec(any_frame(), 1..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut wire = Vec::new();
        let mut want = Vec::new();
        for (msg_id, flags, request_id, body) in &frames {
            encode(&mut wire, *msg_id, *flags, *request_id, body).unwrap();
            want.push((header(body.len() as u32, *msg_id, *flags, *request_id), body.clone()));
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.sort_unstable();
        let mut chunks = Vec::new();
        let mut from = 0;
        for p in points {
            chunks.push(&wire[from..p]);
            from = p;
        }
        chunks.push(&wire[from..]);
        prop_assert_eq!(decode_chunked(DEFAULT_MAX_FRAME, chunks).unwrap(), (want, vec![]));
    }

    #[test]
    fn error_frames_round_trip(code in any::<u16>(), text in ".{0,40}", request_id in any::<u32>()) {
        let mut wire = Vec::new();
        encode_error(&mut wire, request_id, ErrorCode::from_u16(code), &text).unwrap();
        let frame = FrameDecoder::default().decode(&wire).unwrap().1.unwrap();
        prop_assert!(frame.is_error() && frame.header.flags.is_response());
        prop_assert_eq!(frame.header.msg_id, ERROR_ID);
        prop_assert_eq!(frame.header.request_id, request_id);
        let payload = frame.error_payload().unwrap();
        prop_assert_eq!(payload.code.as_u16(), code);
        prop_assert_eq!(&*payload.text, text.as_str());
        let mut emitted = vec![0; payload.buffer_len()];
        payload.emit(&mut emitted);
        prop_assert_eq!(emitted, frame.body);
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_overconsume(
        bytes in wire_like_bytes(),
        max_frame in prop_oneof![Just(0u32), 0u32..64, Just(DEFAULT_MAX_FRAME), Just(u32::MAX)],
    ) {
        let mut decoder = FrameDecoder::new(max_frame);
        let mut rest = &bytes[..];
        loop {
            let needed = decoder.needed(rest);
            prop_assert!(needed >= HEADER_LEN);
            prop_assert!(needed as u64 <= max_frame as u64 + HEADER_LEN as u64);
            match decoder.decode(rest) {
                Ok((consumed, Some(frame))) => {
                    prop_assert!(consumed <= rest.len());
                    prop_assert_eq!(consumed, HEADER_LEN + frame.body.len());
                    prop_assert_eq!(consumed, needed);
                    prop_assert!(frame.header.len <= max_frame);
                    rest = &rest[consumed..];
                }
                Ok((_, None)) => {
                    prop_assert!(rest.len() < needed, "need more bytes only if short");
                    break;
                }
                Err(FrameError::TooLarge { len, max }) => {
                    prop_assert!(len > max && max == max_frame);
                    break;
                }
                Err(FrameError::ReservedFlags { flags }) => {
                    prop_assert!(Flags::from_bits(flags).is_none());
                    break;
                }
                Err(other) => return Err(TestCaseError::fail(format!("unexpected {other}"))),
            }
        }
        // The other entry points must not panic either.
        let _ = Header::parse(&bytes);
        if let Ok(view) = FrameView::new_checked(&bytes[..]) {
            prop_assert!(view.body().len() <= bytes.len() - HEADER_LEN);
        }
        let _ = ErrorPayload::parse(&bytes);
    }
}
