//! Chunked bodies: sizes, extensions, CRLF rules, trailers, limits.

use super::*;

fn chunked(body: &str) -> Vec<u8> {
    format!("POST /u HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}").into_bytes()
}

fn body_of(events: &[Ev]) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            Ev::Body(b) => Some(b.as_slice()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .concat()
}

#[test]
fn chunks_are_dechunked() {
    let (events, r) = decode(&chunked("3\r\nabc\r\nA\r\n0123456789\r\n0\r\n\r\n"));
    r.unwrap();
    assert!(matches!(
        events[0],
        Ev::Head {
            body: BodyKind::Chunked,
            ..
        }
    ));
    assert_eq!(body_of(&events), b"abc0123456789");
    assert_eq!(events.last(), Some(&Ev::End { trailers: vec![] }));
}

#[test]
fn extensions_are_accepted_and_ignored() {
    let body =
        "3;a\r\nabc\r\n3 ; a = b ;c=\"q \\\" ; x\"\r\ndef\r\n3;a=b;c=d\r\nghi\r\n0;last\r\n\r\n";
    let (events, r) = decode(&chunked(body));
    r.unwrap();
    assert_eq!(body_of(&events), b"abcdefghi");
}

#[test]
fn malformed_extensions_are_400() {
    for line in [
        "3;",
        "3;=b",
        "3 ",
        "3;a=",
        "3;a=\"open",
        "3;a b",
        "3;a=b c",
        "3x",
        "3;a=\"\x01\"",
    ] {
        let req = chunked(&format!("{line}\r\nabc\r\n0\r\n\r\n"));
        let err = decode(&req).1.unwrap_err();
        assert_eq!(err, HttpError::BadChunkSize, "{line:?}");
        assert_eq!(err.status(), 400);
    }
}

#[test]
fn trailers_are_parsed_and_reported_with_end() {
    let (events, r) = decode(&chunked(
        "2\r\nhi\r\n0\r\nX-Sum: 42\r\nX-Other: a b\r\n\r\n",
    ));
    r.unwrap();
    assert_eq!(
        events.last(),
        Some(&Ev::End {
            trailers: vec![
                ("x-sum".into(), b"42".to_vec()),
                ("x-other".into(), b"a b".to_vec())
            ]
        })
    );
}

#[test]
fn trailers_are_cleared_by_the_next_head() {
    let mut dec = RequestDecoder::default();
    let req = [chunked("0\r\nX-T: 1\r\n\r\n"), get_req()].concat();
    let (a, _) = dec.decode(&req).unwrap();
    let (b, ev) = dec.decode(&req[a..]).unwrap();
    assert!(matches!(ev, Some(Decoded::End)));
    assert!(dec.trailers().is_some());
    let (_, ev) = dec.decode(&req[a + b..]).unwrap();
    assert!(matches!(ev, Some(Decoded::Head(_))));
    assert!(dec.trailers().is_none());
    assert!(dec.take_trailers().is_none());
}

fn get_req() -> Vec<u8> {
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()
}

#[test]
fn trailer_syntax_follows_header_rules() {
    let cases = [
        ("0\r\nX: 1\r\n  fold\r\n\r\n", HttpError::ObsFold),
        ("0\r\nX : 1\r\n\r\n", HttpError::BadHeader),
        ("0\r\nX: 1\n\r\n", HttpError::BadLineEnding),
        ("0\r\n\n", HttpError::BadLineEnding),
        ("0\r\nX: a\x00\r\n\r\n", HttpError::BadHeader),
    ];
    for (body, want) in cases {
        assert_eq!(decode(&chunked(body)).1.unwrap_err(), want, "{body:?}");
    }
}

#[test]
fn trailer_limits_are_431() {
    let limits = Limits {
        max_trailers: 2,
        max_trailer_bytes: 60,
        max_header_line: 40,
        ..Limits::default()
    };
    let ok = chunked("0\r\nA: 1\r\nB: 2\r\n\r\n");
    assert!(decode_with(limits.clone(), &ok).1.is_ok());
    for body in [
        "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n".to_owned(),
        format!("0\r\nA: {}\r\n\r\n", "x".repeat(40)),
        format!("0\r\nA: {0}\r\nB: {0}\r\n\r\n", "x".repeat(35)),
        format!("0\r\nA: {}", "x".repeat(1000)),
    ] {
        let err = decode_with(limits.clone(), &chunked(&body)).1.unwrap_err();
        assert_eq!(err, HttpError::TrailersTooLarge, "{body:?}");
        assert_eq!(err.status(), 431);
    }
}

#[test]
fn chunk_size_syntax() {
    for bad in ["zz", "-1", "+1", "0x1", "", " 1", "11111111111111111"] {
        let req = chunked(&format!("{bad}\r\n"));
        assert_eq!(decode(&req).1.unwrap_err().status(), 400, "{bad:?}");
    }
    // 16 digits are fine syntactically; this one is just too large for max_body.
    let req = chunked("ffffffffffffffff\r\n");
    assert_eq!(decode(&req).1.unwrap_err(), HttpError::BodyTooLarge);
    // Leading zeros and upper case.
    let (events, r) = decode(&chunked("000A\r\n0123456789\r\n0\r\n\r\n"));
    r.unwrap();
    assert_eq!(body_of(&events).len(), 10);
}

#[test]
fn chunk_total_overflow_is_413() {
    let unlimited = Limits {
        max_body: u64::MAX,
        ..Limits::default()
    };
    let mut dec = RequestDecoder::new(unlimited);
    let req = chunked("1\r\na\r\nffffffffffffffff\r\n");
    let (n, _) = dec.decode(&req).unwrap();
    let (m, ev) = dec.decode(&req[n..]).unwrap();
    assert!(matches!(ev, Some(Decoded::Body(b"a"))));
    assert_eq!(
        dec.decode(&req[n + m..]).unwrap_err(),
        HttpError::BodyTooLarge
    );
}

#[test]
fn chunked_body_over_max_body_is_413_mid_stream() {
    let limits = Limits {
        max_body: 10,
        ..Limits::default()
    };
    let mut f = Feeder::new(limits);
    f.feed(&chunked("6\r\nabcdef\r\n")).unwrap();
    assert_eq!(body_of(&f.events), b"abcdef");
    let err = f.feed(b"5\r\n").unwrap_err();
    assert_eq!(err, HttpError::BodyTooLarge);
    assert_eq!(err.status(), 413);
}

#[test]
fn missing_crlf_after_data_is_400() {
    for body in [
        "3\r\nabcd\r\n0\r\n\r\n",
        "3\r\nabc\n0\r\n\r\n",
        "3\r\nabc\rx0\r\n\r\n",
    ] {
        let err = decode(&chunked(body)).1.unwrap_err();
        assert_eq!(err, HttpError::BadChunkEnd, "{body:?}");
        assert_eq!(err.status(), 400);
    }
}

#[test]
fn bare_lf_after_chunk_size_is_400() {
    assert_eq!(
        decode(&chunked("3\nabc\r\n")).1.unwrap_err(),
        HttpError::BadLineEnding
    );
}

#[test]
fn chunk_line_limit_is_400_complete_or_partial() {
    let limits = Limits {
        max_chunk_line: 10,
        ..Limits::default()
    };
    let ok = chunked("3;abcdefgh\r\nabc\r\n0\r\n\r\n");
    assert!(decode_with(limits.clone(), &ok).1.is_ok());
    let long = chunked("3;abcdefghi\r\nabc\r\n0\r\n\r\n");
    assert_eq!(
        decode_with(limits.clone(), &long).1.unwrap_err(),
        HttpError::ChunkLineTooLong
    );
    let partial = chunked(&format!("3;{}", "a".repeat(50)));
    let err = decode_with(limits, &partial).1.unwrap_err();
    assert_eq!(err, HttpError::ChunkLineTooLong);
    assert_eq!(err.status(), 400);
}

#[test]
fn partial_chunk_pieces_need_more() {
    let mut f = Feeder::new(Limits::default());
    f.feed(&chunked("1")).unwrap();
    assert_eq!(f.buf, b"1");
    f.feed(b"0\r\n0123").unwrap();
    assert_eq!(body_of(&f.events), b"0123");
    assert!(f.buf.is_empty());
    f.feed(b"456789abcdef\r").unwrap();
    assert_eq!(f.buf, b"\r");
    f.feed(b"\n0\r\n\r").unwrap();
    assert!(!matches!(f.events.last(), Some(Ev::End { .. })));
    f.feed(b"\n").unwrap();
    assert_eq!(body_of(&f.events), b"0123456789abcdef");
    assert!(matches!(f.events.last(), Some(Ev::End { .. })));
    assert!(f.buf.is_empty());
}
