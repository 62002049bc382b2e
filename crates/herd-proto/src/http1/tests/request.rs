//! Request-head rules: limits, smuggling rules, request-line and header syntax, pipelining,
//! split delivery.

use super::*;

fn get(extra: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: x\r\n{extra}\r\n").into_bytes()
}

#[test]
fn simple_get_fields() {
    let ev = head(b"GET /a/b?c=d HTTP/1.1\r\nHost: example.com\r\nX-A: 1\r\nx-a: 2\r\n\r\n");
    let Ev::Head {
        method,
        uri,
        version,
        headers,
        body,
        keep_alive,
        expect_continue,
        upgrade,
    } = ev
    else {
        panic!("{ev:?}")
    };
    assert_eq!(method, "GET");
    assert_eq!(uri, "/a/b?c=d");
    assert_eq!(version, Version::HTTP_11);
    assert_eq!(
        headers,
        [
            ("host".to_owned(), b"example.com".to_vec()),
            ("x-a".to_owned(), b"1".to_vec()),
            ("x-a".to_owned(), b"2".to_vec()),
        ]
    );
    assert_eq!(body, BodyKind::None);
    assert!(keep_alive && !expect_continue && !upgrade);
}

#[test]
fn get_without_body_yields_head_then_end() {
    let (events, r) = decode(&get(""));
    r.unwrap();
    assert_eq!(events.len(), 2);
    assert!(matches!(events[1], Ev::End { ref trailers } if trailers.is_empty()));
}

#[test]
fn end_is_returned_with_empty_input() {
    let mut dec = RequestDecoder::default();
    let req = get("");
    let (n, ev) = dec.decode(&req).unwrap();
    assert!(matches!(ev, Some(Decoded::Head(_))));
    assert_eq!(n, req.len());
    assert!(matches!(dec.decode(b"").unwrap(), (0, Some(Decoded::End))));
    assert!(matches!(dec.decode(b"").unwrap(), (0, None)));
    assert!(dec.is_idle());
}

#[test]
fn content_length_body() {
    let (events, r) =
        decode(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello worldGET");
    r.unwrap();
    assert!(matches!(
        &events[0],
        Ev::Head {
            body: BodyKind::Length(11),
            ..
        }
    ));
    assert_eq!(events[1], Ev::Body(b"hello world".to_vec()));
    assert!(matches!(events[2], Ev::End { .. }));
    assert_eq!(events.len(), 3);
}

#[test]
fn content_length_zero_is_no_body() {
    let ev = head(&get("Content-Length: 0\r\n"));
    assert!(matches!(
        ev,
        Ev::Head {
            body: BodyKind::None,
            ..
        }
    ));
}

#[test]
fn keep_alive_rules() {
    let ka = |req: &[u8]| match head(req) {
        Ev::Head { keep_alive, .. } => keep_alive,
        ev => panic!("{ev:?}"),
    };
    assert!(ka(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(!ka(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ));
    assert!(!ka(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Keep-Alive, CLOSE\r\n\r\n"
    ));
    assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
    assert!(ka(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    assert!(!ka(
        b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
    ));
}

#[test]
fn expect_continue_and_upgrade_flags() {
    let flags = |req: &[u8]| match head(req) {
        Ev::Head {
            expect_continue,
            upgrade,
            ..
        } => (expect_continue, upgrade),
        ev => panic!("{ev:?}"),
    };
    let post = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: 100-Continue\r\n\r\n";
    assert_eq!(flags(post), (true, false));
    // No body: nothing to continue.
    assert_eq!(flags(&get("Expect: 100-continue\r\n")), (false, false));
    let ws = get("Connection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n");
    assert_eq!(flags(&ws), (false, true));
    assert_eq!(flags(&get("Upgrade: websocket\r\n")), (false, false));
    assert_eq!(flags(&get("Connection: upgrade\r\n")), (false, false));
    let old = b"GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
    assert_eq!(flags(old), (false, false));
}

#[test]
fn hundred_pipelined_requests_in_one_buffer() {
    let mut buf = Vec::new();
    for i in 0..100 {
        buf.extend_from_slice(format!("GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
    }
    let (events, r) = decode(&buf);
    r.unwrap();
    let uris: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Ev::Head { uri, .. } => Some(uri.clone()),
            _ => None,
        })
        .collect();
    let want: Vec<String> = (0..100).map(|i| format!("/{i}")).collect();
    assert_eq!(uris, want);
    assert_eq!(events.len(), 200);
}

/// Requests covering every decoder state, used for split-delivery tests.
pub(crate) fn corpus() -> Vec<Vec<u8>> {
    vec![
        get("Accept: */*\r\n"),
        b"\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /y HTTP/1.0\r\n\r\n"
            .to_vec(),
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
          5;name=\"va\\\"l\"\r\nhello\r\n6 ; a ; b=c\r\n world\r\n0\r\nX-T: 1\r\nX-U: two\r\n\r\n\
          GET /after HTTP/1.1\r\nHost: a\r\n\r\n"
            .to_vec(),
        b"PUT /z HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
          1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n"
            .to_vec(),
    ]
}

#[test]
fn split_at_every_byte_decodes_identically() {
    for input in corpus() {
        let (whole, r) = decode(&input);
        r.unwrap();
        assert!(!whole.is_empty());
        for cut in 0..=input.len() {
            let (split, r) = decode_split(Limits::default(), &input, &[cut]);
            r.unwrap();
            assert_eq!(split, whole, "cut at {cut}");
        }
        let every: Vec<usize> = (1..input.len()).collect();
        let (bytewise, r) = decode_split(Limits::default(), &input, &every);
        r.unwrap();
        assert_eq!(bytewise, whole);
    }
}

#[test]
fn partial_head_needs_more_without_consuming() {
    let mut dec = RequestDecoder::default();
    let req = get("");
    for end in 0..req.len() {
        let (used, ev) = dec.decode(&req[..end]).unwrap();
        assert!(ev.is_none(), "at {end}");
        assert_eq!(used, 0);
    }
    assert!(matches!(
        dec.decode(&req).unwrap().1,
        Some(Decoded::Head(_))
    ));
}

#[test]
fn shorter_resend_after_need_more_rescans() {
    let mut dec = RequestDecoder::default();
    let req = get("");
    assert!(dec.decode(&req[..20]).unwrap().1.is_none());
    // A caller that (wrongly) presents fewer bytes must not break the decoder.
    assert!(dec.decode(&req[..5]).unwrap().1.is_none());
    assert!(matches!(
        dec.decode(&req).unwrap().1,
        Some(Decoded::Head(_))
    ));
}

// ---- limits ----

#[test]
fn request_line_at_limit_is_accepted_and_over_is_414() {
    let limits = Limits {
        max_request_line: 30,
        ..Limits::default()
    };
    // "GET /" + path + " HTTP/1.1" == 30 bytes.
    let path = "a".repeat(30 - 5 - 9);
    let ok = format!("GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(decode_with(limits.clone(), ok.as_bytes()).1.is_ok());
    let long = format!("GET /{path}b HTTP/1.1\r\nHost: x\r\n\r\n");
    let err = decode_with(limits, long.as_bytes()).1.unwrap_err();
    assert_eq!(err, HttpError::UriTooLong);
    assert_eq!(err.status(), 414);
}

#[test]
fn long_request_line_is_414_before_its_crlf() {
    let limits = Limits {
        max_request_line: 100,
        ..Limits::default()
    };
    let mut f = Feeder::new(limits);
    // 101 bytes: content 100 + a possible CR still fits.
    f.feed(format!("GET /{}", "a".repeat(96)).as_bytes())
        .unwrap();
    assert_eq!(f.buf.len(), 101);
    assert_eq!(f.feed(b"b").unwrap_err(), HttpError::UriTooLong);
    // A huge single read fails without scanning it all.
    let big = vec![b'a'; 1 << 20];
    assert_eq!(decode(&big).1.unwrap_err(), HttpError::UriTooLong);
}

#[test]
fn header_line_limit_is_431_complete_or_partial() {
    let limits = Limits {
        max_header_line: 20,
        ..Limits::default()
    };
    let ok = get(&format!("X: {}\r\n", "v".repeat(17)));
    assert!(decode_with(limits.clone(), &ok).1.is_ok());
    let long = get(&format!("X: {}\r\n", "v".repeat(18)));
    assert_eq!(
        decode_with(limits.clone(), &long).1.unwrap_err().status(),
        431
    );
    let partial = format!("GET / HTTP/1.1\r\nX: {}", "v".repeat(100));
    let err = decode_with(limits, partial.as_bytes()).1.unwrap_err();
    assert_eq!(err, HttpError::HeaderLineTooLong);
}

#[test]
fn header_count_limit_is_431() {
    let limits = Limits {
        max_headers: 3,
        ..Limits::default()
    };
    assert!(decode_with(limits.clone(), &get("A: 1\r\nB: 2\r\n"))
        .1
        .is_ok());
    let err = decode_with(limits, &get("A: 1\r\nB: 2\r\nC: 3\r\n"))
        .1
        .unwrap_err();
    assert_eq!(err, HttpError::TooManyHeaders);
    assert_eq!(err.status(), 431);
    // The default (100) with more than the stack buffer of header slots.
    let many: String = (0..100).map(|i| format!("X-{i}: {i}\r\n")).collect();
    assert_eq!(status(&get(&many)), 431);
    let fine: String = (0..99).map(|i| format!("X-{i}: {i}\r\n")).collect();
    assert!(matches!(head(&get(&fine)), Ev::Head { headers, .. } if headers.len() == 100));
}

#[test]
fn head_size_limit_is_431_complete_or_partial() {
    let limits = Limits {
        max_head_bytes: 64,
        ..Limits::default()
    };
    let req = get("A: 1234567890\r\nB: 1234567890\r\nC: 1234567890\r\n");
    assert!(req.len() > 64);
    assert_eq!(
        decode_with(limits.clone(), &req).1.unwrap_err(),
        HttpError::HeadTooLarge
    );
    let err = decode_with(limits, &req[..65]).1.unwrap_err();
    assert_eq!(err, HttpError::HeadTooLarge);
    assert_eq!(err.status(), 431);
}

#[test]
fn incomplete_head_stays_within_limits() {
    let limits = Limits {
        max_head_bytes: 1000,
        max_header_line: 100,
        ..Limits::default()
    };
    let mut f = Feeder::new(limits);
    f.feed(b"GET / HTTP/1.1\r\n").unwrap();
    let mut err = None;
    for _ in 0..200 {
        if let Err(e) = f.feed(b"X-Header: 1234567\r\n") {
            err = Some(e);
            break;
        }
        assert!(f.buf.len() <= 1000);
    }
    assert_eq!(err, Some(HttpError::HeadTooLarge));
}

#[test]
fn content_length_over_max_body_is_413_at_the_head() {
    let limits = Limits {
        max_body: 10,
        ..Limits::default()
    };
    assert!(decode_with(limits.clone(), &get("Content-Length: 10\r\n"))
        .1
        .is_ok());
    let err = decode_with(limits, &get("Content-Length: 11\r\n"))
        .1
        .unwrap_err();
    assert_eq!(err, HttpError::BodyTooLarge);
    assert_eq!(err.status(), 413);
}

// ---- smuggling rules ----

#[test]
fn transfer_encoding_with_content_length_is_400() {
    let req = get("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n");
    assert_eq!(
        decode(&req).1.unwrap_err(),
        HttpError::TransferEncodingWithContentLength
    );
    let req = get("Content-Length: 5\r\nTransfer-Encoding: gzip\r\n");
    assert_eq!(status(&req), 400);
}

#[test]
fn transfer_encoding_on_http10_is_400() {
    let req = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(
        decode(req).1.unwrap_err(),
        HttpError::TransferEncodingInHttp10
    );
    assert_eq!(status(req), 400);
}

#[test]
fn content_length_values() {
    for bad in [
        "abc",
        "+5",
        "-5",
        "5 5",
        "",
        " ",
        "0x10",
        "5.0",
        "18446744073709551616",
        "5,",
    ] {
        let req = get(&format!("Content-Length: {bad}\r\n"));
        assert_eq!(
            decode(&req).1.unwrap_err(),
            HttpError::BadContentLength,
            "{bad:?}"
        );
    }
    let req = get("Content-Length: 5\r\nContent-Length: 6\r\n");
    assert_eq!(
        decode(&req).1.unwrap_err(),
        HttpError::ConflictingContentLength
    );
    assert_eq!(status(&get("Content-Length: 5, 6\r\n")), 400);
    // RFC 9110 §8.6: identical repeated values may be taken as one.
    for same in [
        "Content-Length: 3\r\nContent-Length: 3\r\n",
        "Content-Length: 3, 003\r\n",
    ] {
        let (events, r) = decode(&[get(same), b"abc".to_vec()].concat());
        r.unwrap();
        assert!(matches!(
            events[0],
            Ev::Head {
                body: BodyKind::Length(3),
                ..
            }
        ));
        assert_eq!(events[1], Ev::Body(b"abc".to_vec()));
    }
    // The largest u64 parses (and is then over max_body).
    let max = get("Content-Length: 18446744073709551615\r\n");
    assert_eq!(decode(&max).1.unwrap_err(), HttpError::BodyTooLarge);
}

#[test]
fn transfer_encoding_not_ending_in_chunked_is_400_and_other_codings_501() {
    // RFC 9112 §6.3: the final coding must be `chunked` (once), else the length is unknown.
    for te in [
        "chunked, chunked",
        "xchunked",
        "gzip",
        "chunked;q=1",
        "",
        "chunked,",
        "identity",
        "chunked, gzip",
    ] {
        let req = get(&format!("Transfer-Encoding: {te}\r\n"));
        let err = decode(&req).1.unwrap_err();
        assert_eq!(err, HttpError::ChunkedNotFinal, "{te:?}");
        assert_eq!(err.status(), 400);
        assert!(err.must_close());
    }
    // Well framed, but a coding herd does not decode (RFC 9112 §6.1: 501).
    for te in ["gzip, chunked", "deflate, chunked", "identity, chunked"] {
        let req = get(&format!("Transfer-Encoding: {te}\r\n"));
        let err = decode(&req).1.unwrap_err();
        assert_eq!(err, HttpError::UnsupportedTransferEncoding, "{te:?}");
        assert_eq!(err.status(), 501);
    }
    let two_fields = get("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n");
    assert_eq!(status(&two_fields), 400);
    let split = get("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n");
    assert_eq!(status(&split), 501);
    let ok = get("Transfer-Encoding: Chunked\r\n");
    assert!(matches!(
        head(&ok),
        Ev::Head {
            body: BodyKind::Chunked,
            ..
        }
    ));
}

#[test]
fn host_rules() {
    assert_eq!(
        decode(b"GET / HTTP/1.1\r\n\r\n").1.unwrap_err(),
        HttpError::MissingHost
    );
    assert!(decode(b"GET / HTTP/1.0\r\n\r\n").1.is_ok());
    let two = b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n";
    assert_eq!(decode(two).1.unwrap_err(), HttpError::DuplicateHost);
    assert_eq!(status(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), 400);
    for good in [
        "example.com",
        "example.com:8080",
        "[::1]:80",
        "127.0.0.1",
        "",
        "a:",
    ] {
        let req = format!("GET / HTTP/1.1\r\nHost: {good}\r\n\r\n");
        assert!(decode(req.as_bytes()).1.is_ok(), "{good:?}");
    }
    for bad in [
        "a b",
        "user@host",
        "[::1",
        "[zz]",
        "host:80x",
        ":80",
        "a/b",
        "[]",
    ] {
        let req = format!("GET / HTTP/1.1\r\nHost: {bad}\r\n\r\n");
        assert_eq!(
            decode(req.as_bytes()).1.unwrap_err(),
            HttpError::BadHost,
            "{bad:?}"
        );
    }
}

// ---- syntax ----

#[test]
fn whitespace_before_colon_is_400() {
    assert_eq!(status(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n"), 400);
    assert_eq!(
        status(b"GET / HTTP/1.1\r\nHost: x\r\nX-A\t: 1\r\n\r\n"),
        400
    );
    assert_eq!(status(&get("Content-Length : 5\r\n")), 400);
}

#[test]
fn obs_fold_is_400() {
    let req = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  continued\r\n\r\n";
    assert_eq!(decode(req).1.unwrap_err(), HttpError::ObsFold);
    let tab = b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\tcontinued\r\n\r\n";
    assert_eq!(status(tab), 400);
    // Detected as soon as the folded line is complete, before the head ends.
    let partial = b"GET / HTTP/1.1\r\n Host: x\r\n";
    assert_eq!(decode(partial).1.unwrap_err(), HttpError::ObsFold);
}

#[test]
fn bare_lf_and_bare_cr_are_400() {
    let cases: [&[u8]; 8] = [
        b"GET / HTTP/1.1\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\n",
        b"GET / HTTP/1.1\r\nHost: x\n\n",
        b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\rHost: x\r\n\r\n",
        b"\r\rGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for req in cases {
        assert_eq!(status(req), 400, "{:?}", String::from_utf8_lossy(req));
    }
    assert_eq!(decode(cases[1]).1.unwrap_err(), HttpError::BadLineEnding);
}

#[test]
fn invalid_request_lines_are_400() {
    let cases: [&[u8]; 12] = [
        b"G(ET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n",
        b"GET /\r\nHost: x\r\n\r\n",
        b"GET\r\nHost: x\r\n\r\n",
        b"GET / http/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1x\r\nHost: x\r\n\r\n",
        b"GET / HTTP/11\r\nHost: x\r\n\r\n",
        b"GET /a\"b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
        b" GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET\t/ HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for req in cases {
        assert_eq!(status(req), 400, "{:?}", String::from_utf8_lossy(req));
    }
}

#[test]
fn unsupported_version_is_505() {
    for v in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0"] {
        let req = format!("GET / {v}\r\nHost: x\r\n\r\n");
        let err = decode(req.as_bytes()).1.unwrap_err();
        assert_eq!(err, HttpError::UnsupportedVersion, "{v}");
        assert_eq!(err.status(), 505);
    }
}

#[test]
fn request_target_forms() {
    let target = |method: &str, t: &str| {
        let req = format!("{method} {t} HTTP/1.1\r\nHost: h\r\n\r\n");
        decode(req.as_bytes()).1
    };
    assert!(target("OPTIONS", "*").is_ok());
    assert_eq!(target("GET", "*"), Err(HttpError::BadTarget));
    assert!(target("CONNECT", "example.com:443").is_ok());
    assert_eq!(target("CONNECT", "/x"), Err(HttpError::BadTarget));
    assert_eq!(target("CONNECT", "example.com"), Err(HttpError::BadTarget));
    assert!(target("GET", "http://example.com/x?y").is_ok());
    assert_eq!(
        target("GET", "http://u@example.com/"),
        Err(HttpError::BadTarget)
    );
    assert_eq!(target("GET", "example.com"), Err(HttpError::BadTarget));
    assert_eq!(target("GET", "/a#frag"), Err(HttpError::BadTarget));
    assert!(target("GET", "//double/slash").is_ok());
    assert!(target("PURGE", "/x").is_ok());
}

#[test]
fn invalid_header_bytes_are_400() {
    for req in [
        get("X-A: a\x00b\r\n"),
        get("X-A: a\x7fb\r\n"),
        get("X(A): 1\r\n"),
        get(": novalue\r\n"),
        get("X-é: 1\r\n"),
    ] {
        assert_eq!(
            decode(&req).1.unwrap_err(),
            HttpError::BadHeader,
            "{:?}",
            String::from_utf8_lossy(&req)
        );
    }
    // obs-text in values is allowed.
    assert!(decode(&get("X-A: café\r\n")).1.is_ok());
}

#[test]
fn leading_empty_lines_are_skipped_but_bounded() {
    let mut req = b"\r\n\r\n".to_vec();
    req.extend_from_slice(&get(""));
    assert!(matches!(head(&req), Ev::Head { .. }));
    let limits = Limits {
        max_empty_lines: 2,
        ..Limits::default()
    };
    let mut f = Feeder::new(limits);
    f.feed(b"\r\n\r").unwrap();
    assert_eq!(f.buf, b"\r", "the complete empty line is consumed");
    f.feed(b"\n").unwrap();
    assert_eq!(f.feed(b"\r\n").unwrap_err(), HttpError::TooManyEmptyLines);
    // The count restarts for every request.
    let two_each = [b"\r\n\r\n".to_vec(), get(""), b"\r\n\r\n".to_vec(), get("")].concat();
    assert_eq!(
        decode_with(
            Limits {
                max_empty_lines: 2,
                ..Limits::default()
            },
            &two_each
        )
        .0
        .len(),
        4
    );
}

#[test]
fn errors_poison_the_decoder() {
    let mut dec = RequestDecoder::default();
    let err = dec.decode(b"GET / HTTP/1.1\r\n\r\n").unwrap_err();
    assert_eq!(dec.decode(&get("")).unwrap_err(), err);
    assert_eq!(dec.decode(b"").unwrap_err(), err);
    assert!(!dec.is_idle());
}

#[test]
fn is_idle_tracks_request_boundaries() {
    let mut dec = RequestDecoder::default();
    assert!(dec.is_idle());
    assert!(dec.decode(b"GE").unwrap().1.is_none());
    assert!(!dec.is_idle());
    let req = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n";
    let mut dec = RequestDecoder::default();
    dec.decode(req).unwrap();
    assert!(!dec.is_idle());
    dec.decode(b"ab").unwrap();
    assert!(matches!(dec.decode(b"").unwrap().1, Some(Decoded::End)));
    assert!(dec.is_idle());
}

#[test]
fn errors_map_to_their_statuses() {
    use HttpError::*;
    let table = [
        (UriTooLong, 414),
        (HeaderLineTooLong, 431),
        (TooManyHeaders, 431),
        (HeadTooLarge, 431),
        (TrailersTooLarge, 431),
        (BodyTooLarge, 413),
        (UnsupportedTransferEncoding, 501),
        (ChunkedNotFinal, 400),
        (UnsupportedVersion, 505),
        (BadChunkSize, 400),
        (ObsFold, 400),
    ];
    for (err, code) in table {
        assert_eq!(err.status(), code, "{err}");
        assert!(err.must_close());
        assert!(err.to_string().contains(&code.to_string()));
    }
}
