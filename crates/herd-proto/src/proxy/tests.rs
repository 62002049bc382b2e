//! Tests of the PROXY protocol decoder: both versions, every address family, byte-by-byte
//! arrival, each rejection, the fuzz seeds, and arbitrary input.

use super::*;
use proptest::prelude::*;

fn v4(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Decodes `bytes` fed one byte more at a time: `None` for every proper prefix, then the
/// header at the full length (and again with extra bytes behind it).
fn incremental(bytes: &[u8], max: usize) -> (ProxyHeader, usize) {
    let mut found = None;
    for end in 1..=bytes.len() {
        match decode(&bytes[..end], max) {
            Ok(None) => assert!(found.is_none(), "None after a header at {end}"),
            Ok(Some((h, used))) => {
                if found.is_none() {
                    assert_eq!(used, end, "the header ends where it was found");
                    found = Some((h, used));
                }
            }
            Err(e) => panic!("error at byte {end} of a valid header: {e}"),
        }
    }
    found.expect("a complete header")
}

#[test]
fn v1_tcp4_tcp6_unknown() {
    let line = b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n";
    let (h, used) = incremental(line, 4096);
    assert_eq!(used, line.len());
    assert_eq!(h.version, 1);
    assert_eq!(h.source(), Some(v4("192.0.2.1:56324")));
    assert_eq!(h.destination(), Some(v4("198.51.100.2:443")));
    let mut with_data = line.to_vec();
    with_data.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(decode(&with_data, 4096).unwrap().unwrap().1, line.len());

    let line = b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
    let (h, _) = incremental(line, 4096);
    assert_eq!(h.source(), Some("[2001:db8::1]:65535".parse().unwrap()));
    assert_eq!(h.destination(), Some("[::1]:0".parse().unwrap()));

    for line in [
        &b"PROXY UNKNOWN\r\n"[..],
        b"PROXY UNKNOWN anything at all 1 2\r\n",
    ] {
        let (h, used) = incremental(line, 4096);
        assert_eq!((&h.addresses, used), (&Addresses::Unknown, line.len()));
        assert_eq!(h.source(), None);
    }
    // The longest line the specification allows decodes.
    let longest = b"PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(longest.len(), V1_MAX_LEN - 3);
    assert!(decode(longest, 0).unwrap().is_some());
}

#[test]
fn v1_rejections() {
    let bad = |line: &[u8]| decode(line, 4096).unwrap_err();
    for line in [
        &b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
        b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY TCP4 1.2.3.4\n5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.\xff 5.6.7.8 1 2\r\n",
    ] {
        assert_eq!(
            bad(line).reason(),
            "bad_v1",
            "{}",
            String::from_utf8_lossy(line)
        );
    }
    // 107 bytes without the CRLF: too long, whatever follows.
    let mut long = b"PROXY UNKNOWN ".to_vec();
    long.resize(V1_MAX_LEN, b'x');
    assert_eq!(bad(&long), ProxyError::TooLong);
    long.truncate(V1_MAX_LEN - 1);
    assert_eq!(decode(&long, 4096), Ok(None));
}

#[test]
fn anything_else_fails_at_its_first_wrong_byte() {
    for start in [
        &b"G"[..],
        b"GET / HTTP/1.1\r\n",
        b"\x16\x03\x01",
        b"proxy ",
        b"PROXX",
        b"\r\n\r\n\x01",
    ] {
        assert_eq!(decode(start, 4096), Err(ProxyError::NotProxy), "{start:?}");
    }
    assert_eq!(decode(b"", 4096), Ok(None));
    assert_eq!(decode(b"PRO", 4096), Ok(None));
    assert_eq!(decode(&V2_SIGNATURE[..5], 4096), Ok(None));
}

#[test]
fn v2_round_trips_with_tlvs_over_ipv4_and_ipv6() {
    let tlvs = vec![
        Tlv {
            kind: TLV_AUTHORITY,
            value: b"example.com".to_vec(),
        },
        Tlv {
            kind: TLV_UNIQUE_ID,
            value: vec![7; 32],
        },
    ];
    for (src, dst) in [
        (v4("10.0.0.7:51000"), v4("10.0.0.1:8080")),
        (
            "[2001:db8::7]:443".parse().unwrap(),
            "[2001:db8::1]:8443".parse().unwrap(),
        ),
    ] {
        let mut b = Vec::new();
        encode_v2(&mut b, src, dst, &tlvs);
        let (h, used) = incremental(&b, 4096);
        assert_eq!(used, b.len());
        assert_eq!((h.version, h.command), (2, Command::Proxy));
        assert_eq!(h.addresses, Addresses::Tcp { src, dst });
        assert_eq!(h.tlvs, tlvs);
        assert_eq!(h.tlv(TLV_AUTHORITY), Some(&b"example.com"[..]));
        assert_eq!(h.tlv(TLV_SSL), None);
        b.extend_from_slice(b"\x16\x03\x01 the TLS ClientHello");
        assert_eq!(decode(&b, 4096).unwrap().unwrap().1, used);
    }
}

/// A v2 header with `ver_cmd`, `fam` and `body` as given.
fn v2(ver_cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut b = V2_SIGNATURE.to_vec();
    b.extend_from_slice(&[ver_cmd, fam]);
    b.extend_from_slice(&(body.len() as u16).to_be_bytes());
    b.extend_from_slice(body);
    b
}

#[test]
fn v2_local_unspec_udp_unix_and_noop() {
    // LOCAL: whatever address block, no client address.
    let (h, _) = incremental(&v2(0x20, 0x11, &[1; 12]), 4096);
    assert_eq!(
        (h.command, h.addresses.clone()),
        (Command::Local, Addresses::Unknown)
    );
    assert_eq!(h.source(), None);
    let (h, used) = incremental(&v2(0x20, 0x00, &[]), 4096);
    assert_eq!((h.command, used), (Command::Local, 16));
    // PROXY over AF_UNSPEC: no address either.
    let (h, _) = incremental(&v2(0x21, 0x00, &[]), 4096);
    assert_eq!(h.addresses, Addresses::Unknown);
    // UDP over IPv4.
    let body = [192, 0, 2, 1, 192, 0, 2, 2, 0, 53, 0, 54];
    let (h, _) = incremental(&v2(0x21, 0x12, &body), 4096);
    assert_eq!(
        h.addresses,
        Addresses::Udp {
            src: v4("192.0.2.1:53"),
            dst: v4("192.0.2.2:54")
        }
    );
    assert_eq!(h.source(), Some(v4("192.0.2.1:53")));
    // UNIX stream: two NUL-padded paths; the noop TLV is dropped.
    let mut body = vec![0u8; 216];
    body[..9].copy_from_slice(b"/tmp/a.sk");
    body[108..117].copy_from_slice(b"/tmp/b.sk");
    body.extend_from_slice(&[TLV_NOOP, 0, 3, 0, 0, 0]);
    let (h, _) = incremental(&v2(0x21, 0x31, &body), 4096);
    assert_eq!(
        h.addresses,
        Addresses::Unix {
            src: b"/tmp/a.sk".to_vec(),
            dst: b"/tmp/b.sk".to_vec()
        }
    );
    assert!(h.tlvs.is_empty());
    assert_eq!(h.source(), None);
}

#[test]
fn v2_rejections() {
    let addr = [10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2];
    let bad = |b: &[u8]| decode(b, 4096).unwrap_err();
    assert_eq!(bad(&v2(0x11, 0x11, &addr)).reason(), "bad_v2"); // version 1 in binary
    assert_eq!(bad(&v2(0x22, 0x11, &addr)).reason(), "bad_v2"); // command 2
    assert_eq!(bad(&v2(0x21, 0x41, &addr)).reason(), "bad_v2"); // family 4
    assert_eq!(bad(&v2(0x21, 0x13, &addr)).reason(), "bad_v2"); // transport 3
    assert_eq!(bad(&v2(0x21, 0x21, &addr)).reason(), "bad_v2"); // IPv6 in 12 bytes
    let mut t = addr.to_vec();
    t.extend_from_slice(&[TLV_ALPN, 0]);
    assert_eq!(
        bad(&v2(0x21, 0x11, &t)),
        ProxyError::BadV2("a truncated TLV")
    );
    let mut t = addr.to_vec();
    t.extend_from_slice(&[TLV_ALPN, 0, 9, b'h', b'2']);
    assert_eq!(bad(&v2(0x21, 0x11, &t)).reason(), "bad_v2");
    // The version byte is checked as soon as it arrives, before the length.
    assert_eq!(bad(&v2(0x31, 0x11, &addr)[..13]).reason(), "bad_v2");
    // A length over the limit fails from the fixed part alone, before any body is buffered.
    let big = v2(0x21, 0x11, &vec![0; 300]);
    assert_eq!(decode(&big[..16], 200), Err(ProxyError::TooLong));
    assert!(decode(&big, 400).unwrap().is_some());
}

#[test]
fn fuzz_seeds_decode_as_their_names_say() {
    macro_rules! seed {
        ($name:literal) => {
            &include_bytes!(concat!("../../../../fuzz-seeds/proxy/", $name))[..]
        };
    }
    let ok = |b: &[u8]| decode(b, 4096).unwrap().unwrap();
    let (h, used) = ok(seed!("v1_tcp4.bin"));
    assert_eq!(h.source(), Some(v4("192.0.2.1:56324")));
    assert!(seed!("v1_tcp4.bin")[used..].starts_with(b"GET / "));
    assert_eq!(ok(seed!("v1_tcp6.bin")).0.version, 1);
    assert_eq!(ok(seed!("v1_unknown.bin")).0.addresses, Addresses::Unknown);
    let (h, used) = ok(seed!("v2_tcp4_tlvs.bin"));
    assert_eq!(h.source(), Some(v4("10.0.0.7:51000")));
    assert_eq!(h.tlv(TLV_AUTHORITY), Some(&b"example.com"[..]));
    assert_eq!(&seed!("v2_tcp4_tlvs.bin")[used..], b"after");
    assert_eq!(
        ok(seed!("v2_tcp6.bin")).0.destination(),
        Some("[2001:db8::1]:8443".parse().unwrap())
    );
    assert_eq!(ok(seed!("v2_local.bin")).0.command, Command::Local);
    assert_eq!(
        decode(seed!("v2_too_long.bin"), 4096),
        Err(ProxyError::TooLong)
    );
    assert_eq!(
        decode(seed!("v1_garbage.bin"), 4096).unwrap_err().reason(),
        "bad_v1"
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_or_overrun(data in proptest::collection::vec(any::<u8>(), 0..400), v2_prefix in any::<bool>(), max in 0usize..600) {
        let mut b = if v2_prefix { V2_SIGNATURE.to_vec() } else { Vec::new() };
        b.extend_from_slice(&data);
        if let Ok(Some((_, used))) = decode(&b, max) {
            prop_assert!(used <= b.len());
            prop_assert!(used <= max.max(V1_MAX_LEN));
        }
    }

    #[test]
    fn any_v2_header_round_trips(a in any::<[u8; 4]>(), b in any::<[u8; 16]>(), sp in any::<u16>(), dp in any::<u16>(), value in proptest::collection::vec(any::<u8>(), 0..64)) {
        let src = SocketAddr::new(Ipv4Addr::from(a).into(), sp);
        let dst = SocketAddr::new(Ipv6Addr::from(b).into(), dp);
        let tlvs = [Tlv { kind: TLV_UNIQUE_ID, value }];
        let mut buf = Vec::new();
        encode_v2(&mut buf, src, dst, &tlvs);
        let (h, used) = decode(&buf, 4096).unwrap().unwrap();
        prop_assert_eq!(used, buf.len());
        let mapped = SocketAddr::new(Ipv4Addr::from(a).to_ipv6_mapped().into(), sp);
        prop_assert_eq!(h.source(), Some(mapped));
        prop_assert_eq!(h.destination(), Some(dst));
        prop_assert_eq!(&h.tlvs[..], &tlvs[..]);
    }
}
