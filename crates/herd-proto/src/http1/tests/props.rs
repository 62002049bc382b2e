//! Property tests: arbitrary input never panics, consumption stays within the input, chunked
//! encoding round-trips through the decoder, split delivery never changes the result.

use super::request::corpus;
use super::*;
use crate::http1::statics::{parse_range, resolve_path, RangeResult};
use crate::http1::{encode_chunk, encode_last_chunk};
use proptest::prelude::*;

/// Runs the decoder over `input` like the event loop would; returns how many events it produced.
fn drive(limits: Limits, input: &[u8]) -> usize {
    let mut dec = RequestDecoder::new(limits);
    let mut at = 0;
    for events in 0.. {
        match dec.decode(&input[at..]) {
            Err(_) => return events,
            Ok((used, ev)) => {
                assert!(used <= input.len() - at);
                at += used;
                if ev.is_none() {
                    return events;
                }
            }
        }
        assert!(events < 1_000_000, "no progress");
    }
    unreachable!()
}

fn small_limits() -> Limits {
    Limits {
        max_request_line: 40,
        max_header_line: 30,
        max_headers: 4,
        max_head_bytes: 120,
        max_body: 100,
        max_chunk_line: 12,
        max_trailers: 2,
        max_trailer_bytes: 50,
        max_empty_lines: 2,
    }
}

fn huge_limits() -> Limits {
    Limits {
        max_request_line: usize::MAX,
        max_header_line: usize::MAX,
        max_headers: usize::MAX,
        max_head_bytes: usize::MAX,
        max_body: u64::MAX,
        max_chunk_line: usize::MAX,
        max_trailers: usize::MAX,
        max_trailer_bytes: usize::MAX,
        max_empty_lines: usize::MAX,
    }
}

/// Bytes that look HTTP-ish often enough to reach deep states.
fn http_ish() -> impl Strategy<Value = Vec<u8>> {
    let atoms = prop_oneof![
        Just(b"GET / HTTP/1.1\r\n".to_vec()),
        Just(b"POST /x HTTP/1.1\r\n".to_vec()),
        Just(b"Host: a\r\n".to_vec()),
        Just(b"Content-Length: 3\r\n".to_vec()),
        Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"3\r\nabc\r\n".to_vec()),
        Just(b"0\r\n".to_vec()),
        Just(b"5;a=\"b\"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b" ".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    proptest::collection::vec(atoms, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..2048)) {
        drive(Limits::default(), &input);
        drive(small_limits(), &input);
    }

    #[test]
    fn http_ish_bytes_never_panic(input in http_ish()) {
        drive(Limits::default(), &input);
        drive(small_limits(), &input);
        drive(huge_limits(), &input);
    }

    #[test]
    fn split_delivery_matches_whole(input in http_ish(), cuts in proptest::collection::vec(0usize..400, 0..6)) {
        let mut cuts = cuts;
        cuts.sort_unstable();
        let (whole, whole_result) = decode_with(small_limits(), &input);
        let (split, split_result) = decode_split(small_limits(), &input, &cuts);
        prop_assert_eq!(whole_result, split_result);
        if whole_result.is_ok() {
            prop_assert_eq!(split, whole);
        }
    }

    #[test]
    fn corpus_split_at_random_points(which in 0usize..4, cuts in proptest::collection::vec(0usize..300, 0..8)) {
        let input = &corpus()[which];
        let mut cuts = cuts;
        cuts.sort_unstable();
        let (whole, _) = decode(input);
        let (split, r) = decode_split(Limits::default(), input, &cuts);
        prop_assert!(r.is_ok());
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn encode_chunk_round_trips(
        pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
        cut in 0usize..4000,
    ) {
        let mut wire = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for p in &pieces {
            encode_chunk(&mut wire, p);
        }
        encode_last_chunk(&mut wire);
        let limits = Limits { max_body: 1 << 20, ..Limits::default() };
        let (events, r) = decode_split(limits, &wire, &[cut]);
        prop_assert!(r.is_ok());
        let body: Vec<u8> = events.iter().filter_map(|e| match e {
            Ev::Body(b) => Some(b.clone()),
            _ => None,
        }).flatten().collect();
        prop_assert_eq!(body, pieces.concat());
        prop_assert_eq!(events.last(), Some(&Ev::End { trailers: vec![] }));
    }

    #[test]
    fn resolved_paths_never_escape(path in "/[a-z./%25cC2eEfF5\\\\0]{0,24}") {
        if let Ok(rel) = resolve_path(&path) {
            for s in rel.segments() {
                prop_assert!(!s.is_empty() && s != "." && s != "..");
                prop_assert!(!s.contains(['/', '\\', '\0']));
            }
        }
    }

    #[test]
    fn ranges_stay_in_bounds(header in "[bytes= 0-9,-]{0,20}", len in 0u64..2000) {
        if let RangeResult::Partial(start, end) = parse_range(&header, len) {
            prop_assert!(start <= end && end < len);
        }
    }
}
