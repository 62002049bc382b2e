//! Static-file helpers: the path-traversal corpus, MIME types, ETags, conditionals, ranges.

use crate::http1::statics::*;
use http::HeaderMap;
use std::path::Path;

#[test]
fn traversal_corpus_is_refused() {
    let cases = [
        ("/../etc/passwd", PathError::DotDot),
        ("/%2e%2e/", PathError::DotDot),
        ("/%2E%2e/etc/passwd", PathError::DotDot),
        ("/a/..", PathError::DotDot),
        ("/a/%2F..%2F", PathError::EncodedSlash),
        ("/a%2fb", PathError::EncodedSlash),
        ("/..%5c", PathError::Backslash),
        ("/a\\b", PathError::Backslash),
        ("/%00", PathError::ControlByte),
        ("/a%0a", PathError::ControlByte),
        ("/%zz", PathError::BadEscape),
        ("/%2", PathError::BadEscape),
        ("/a%g1", PathError::BadEscape),
        ("/ok%41/x%", PathError::BadEscape),
        ("/%%41", PathError::BadEscape),
        ("/a%7F", PathError::ControlByte),
        ("/a\x01", PathError::ControlByte),
        ("/%ff", PathError::NotUtf8),
        ("relative", PathError::NotAbsolute),
        ("", PathError::NotAbsolute),
    ];
    for (path, want) in cases {
        assert_eq!(resolve_path(path), Err(want), "{path:?}");
        assert_eq!(want.status(), 400);
    }
}

#[test]
fn paths_are_normalised() {
    let rel = resolve_path("/a/./b//c").unwrap();
    assert_eq!(rel.segments(), ["a", "b", "c"]);
    assert!(!rel.is_dir());
    assert_eq!(rel.join_to(Path::new("/srv")), Path::new("/srv/a/b/c"));

    let root = resolve_path("/").unwrap();
    assert!(root.segments().is_empty());
    assert!(root.is_dir());
    assert_eq!(root.join_to(Path::new("/srv")), Path::new("/srv"));

    assert!(resolve_path("/docs/").unwrap().is_dir());
    assert!(resolve_path("/docs/.").unwrap().is_dir());
    assert!(!resolve_path("/docs/...").unwrap().is_dir());
    assert_eq!(
        resolve_path("/docs/...").unwrap().segments(),
        ["docs", "..."]
    );
    assert_eq!(resolve_path("/%2e/x").unwrap().segments(), ["x"]);
    // An encoded `%` decodes once: `%2541` is the three characters `%41`.
    assert_eq!(
        resolve_path("/100%25/%2541").unwrap().segments(),
        ["100%", "%41"]
    );
    assert_eq!(
        resolve_path("/caf%C3%A9.txt?x=../..").unwrap().segments(),
        ["café.txt"]
    );
    assert_eq!(resolve_path("/a#/../b").unwrap().segments(), ["a"]);
    assert_eq!(
        resolve_path("/.well-known/x").unwrap().segments(),
        [".well-known", "x"]
    );
}

#[test]
fn mime_types() {
    for (ext, mime) in [
        ("html", "text/html; charset=utf-8"),
        ("css", "text/css; charset=utf-8"),
        ("js", "text/javascript; charset=utf-8"),
        ("mjs", "text/javascript; charset=utf-8"),
        ("json", "application/json"),
        ("txt", "text/plain; charset=utf-8"),
        ("svg", "image/svg+xml"),
        ("png", "image/png"),
        ("jpg", "image/jpeg"),
        ("JPEG", "image/jpeg"),
        ("gif", "image/gif"),
        ("webp", "image/webp"),
        ("ico", "image/x-icon"),
        ("wasm", "application/wasm"),
        ("pdf", "application/pdf"),
        ("xml", "application/xml"),
        ("woff", "font/woff"),
        ("woff2", "font/woff2"),
        ("mp4", "video/mp4"),
        ("zip", "application/zip"),
        ("MJS", "text/javascript; charset=utf-8"),
        // Beyond the few herd used to list itself: mime_guess's table.
        ("tar", "application/x-tar"),
        ("odt", "application/vnd.oasis.opendocument.text"),
        ("webmanifest", "application/manifest+json"),
        ("yaml", "text/x-yaml; charset=utf-8"),
        ("", "application/octet-stream"),
        ("herd-unknown", "application/octet-stream"),
    ] {
        assert_eq!(mime_for(ext), mime, "{ext}");
    }
}

#[test]
fn etags_change_with_length_and_time() {
    let a = etag(10, 1000, 0);
    assert!(a.starts_with('"') && a.ends_with('"') && !a.starts_with("W/"));
    assert_ne!(a, etag(11, 1000, 0));
    assert_ne!(a, etag(10, 1001, 0));
    assert_ne!(a, etag(10, 1000, 1));
}

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (n, v) in pairs {
        map.append(*n, v.parse().unwrap());
    }
    map
}

#[test]
fn conditional_requests() {
    let tag = "\"abc\"";
    let lm = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
    let eval =
        |pairs: &[(&'static str, &'static str)]| evaluate_conditional(&headers(pairs), tag, lm);
    use Conditional::*;
    assert_eq!(eval(&[]), Proceed);
    assert_eq!(eval(&[("if-none-match", "\"abc\"")]), NotModified);
    assert_eq!(eval(&[("if-none-match", "W/\"abc\"")]), NotModified);
    assert_eq!(eval(&[("if-none-match", "\"x\", \"abc\"")]), NotModified);
    assert_eq!(
        eval(&[("if-none-match", "\"x\""), ("if-none-match", "\"abc\"")]),
        NotModified
    );
    assert_eq!(eval(&[("if-none-match", "*")]), NotModified);
    assert_eq!(eval(&[("if-none-match", "\"x\", \"y\"")]), Proceed);
    assert_eq!(eval(&[("if-none-match", "\"a,b\", \"abc\"")]), NotModified);
    assert_eq!(eval(&[("if-none-match", "abc")]), Proceed);
    let same = "Sun, 06 Nov 1994 08:49:37 GMT";
    let later = "Sun, 06 Nov 1994 08:49:38 GMT";
    let earlier = "Sun, 06 Nov 1994 08:49:36 GMT";
    assert_eq!(eval(&[("if-modified-since", same)]), NotModified);
    assert_eq!(eval(&[("if-modified-since", later)]), NotModified);
    assert_eq!(eval(&[("if-modified-since", earlier)]), Proceed);
    assert_eq!(eval(&[("if-modified-since", "garbage")]), Proceed);
    // If-None-Match takes precedence over If-Modified-Since.
    assert_eq!(
        eval(&[("if-none-match", "\"x\""), ("if-modified-since", later)]),
        Proceed
    );
    assert_eq!(
        eval(&[("if-none-match", "\"abc\""), ("if-modified-since", earlier)]),
        NotModified
    );
}

#[test]
fn if_range() {
    let tag = "\"abc\"";
    let lm = 784_111_777;
    let allows = |pairs: &[(&'static str, &'static str)]| if_range_allows(&headers(pairs), tag, lm);
    assert!(allows(&[]));
    assert!(allows(&[("if-range", "\"abc\"")]));
    assert!(!allows(&[("if-range", "\"abd\"")]));
    assert!(!allows(&[("if-range", "W/\"abc\"")]));
    assert!(allows(&[("if-range", "Sun, 06 Nov 1994 08:49:37 GMT")]));
    assert!(!allows(&[("if-range", "Sun, 06 Nov 1994 08:49:38 GMT")]));
    assert!(!allows(&[("if-range", "nonsense")]));
    assert!(!if_range_allows(
        &headers(&[("if-range", "W/\"abc\"")]),
        "W/\"abc\"",
        lm
    ));
}

#[test]
fn ranges() {
    use RangeResult::*;
    let cases = [
        ("bytes=0-99", 1000, Partial(0, 99)),
        ("bytes=500-", 1000, Partial(500, 999)),
        ("bytes=-100", 1000, Partial(900, 999)),
        ("bytes=-5000", 1000, Partial(0, 999)),
        ("bytes=900-5000", 1000, Partial(900, 999)),
        ("bytes=999-999", 1000, Partial(999, 999)),
        ("Bytes = 0-0", 1000, Partial(0, 0)),
        ("bytes=1000-", 1000, Unsatisfiable),
        ("bytes=1000-2000", 1000, Unsatisfiable),
        ("bytes=-0", 1000, Unsatisfiable),
        ("bytes=0-", 0, Unsatisfiable),
        ("bytes=-1", 0, Unsatisfiable),
        ("bytes=5-4", 1000, Full),
        ("bytes=0-1,5-6", 1000, Full),
        ("bytes=", 1000, Full),
        ("bytes=-", 1000, Full),
        ("bytes=a-b", 1000, Full),
        ("bytes=+1-2", 1000, Full),
        ("items=0-1", 1000, Full),
        ("0-1", 1000, Full),
        ("bytes=99999999999999999999-", 1000, Full),
        ("bytes=0-99,", 1000, Partial(0, 99)),
    ];
    for (header, len, want) in cases {
        assert_eq!(parse_range(header, len), want, "{header:?} of {len}");
    }
}
