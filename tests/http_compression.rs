//! Response compression over real sockets: `Accept-Encoding` negotiation (q-values,
//! `identity`, several codings), gzip and Brotli bodies that decode to the original (bytes,
//! streams, small and large files), `Vary`, weak ETags and 304s, ranges left alone, HEAD, and
//! pre-compressed `.gz`/`.br` files served as they are.

mod http_support;

use std::io::Read;
use std::path::PathBuf;

use herd::http::{header, Body, Compression, HttpOptions, Response, Router, StaticDir};
use herd::Bytes;
use http_support::{serve, Client, Resp};

fn text(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| b"<p>herd serves compressed pages</p>\n"[i % 36])
        .collect()
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn unbrotli(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(b, 4096)
        .read_to_end(&mut out)
        .expect("valid brotli");
    out
}

/// The body as the client would see it after undoing `Content-Encoding`.
fn decoded(r: &Resp) -> Vec<u8> {
    match r.header("content-encoding") {
        None => r.body.clone(),
        Some("gzip") => gunzip(&r.body),
        Some("br") => unbrotli(&r.body),
        Some(other) => panic!("unexpected coding {other}"),
    }
}

fn get(c: &mut Client, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.send(req.as_bytes());
    c.response()
}

struct Site(PathBuf);

impl Site {
    fn new(tag: &str) -> Site {
        let d = std::env::temp_dir().join(format!("herd-compress-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("page.html"), text(40_000)).unwrap(); // above inline_max: a file body
        std::fs::write(d.join("big.txt"), text(3 << 20)).unwrap(); // above max_buffered: streamed
        std::fs::write(d.join("photo.png"), text(5000)).unwrap();
        // Pre-compressed variants whose contents say which file was served.
        std::fs::write(d.join("app.js"), text(5000)).unwrap();
        std::fs::write(d.join("app.js.gz"), b"GZ-FILE").unwrap();
        std::fs::write(d.join("app.js.br"), b"BR-FILE!!").unwrap();
        std::fs::write(d.join("only-gz.css"), text(5000)).unwrap();
        std::fs::write(d.join("only-gz.css.gz"), b"GZ-CSS").unwrap();
        Site(d)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn router(site: &Site, precompressed: bool) -> Router {
    Router::new()
        .get("/page", |_| html(text(10_000)))
        .get("/tiny", |_| html(text(100)))
        .get("/png", |_| {
            let mut r = html(text(10_000));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, "image/png".parse().unwrap());
            r
        })
        .get("/stream", |_| {
            let chunks: Vec<Bytes> = (0..5).map(|i| Bytes::from(text(2000 + i))).collect();
            let mut r = Response::new(Body::stream(chunks));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
            r
        })
        .get("/tagged", |_| {
            let mut r = html(text(5000));
            r.headers_mut()
                .insert(header::ETAG, "\"v1\"".parse().unwrap());
            r
        })
        .statics(
            "/s",
            StaticDir::new(&site.0)
                .unwrap()
                .precompressed(precompressed),
        )
}

fn html(body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        "text/html; charset=utf-8".parse().unwrap(),
    );
    r
}

fn opts() -> HttpOptions {
    HttpOptions {
        compression: Some(Compression::default()),
        ..HttpOptions::default()
    }
}

#[test]
fn negotiation_picks_the_coding_and_bodies_decode() {
    let site = Site::new("neg");
    let server = serve(router(&site, false), opts());
    let mut c = Client::connect(server.local_addr());
    let cases: &[(&str, Option<&str>)] = &[
        ("gzip", Some("gzip")),
        ("br", Some("br")),
        ("gzip, deflate, br, zstd", Some("br")), // what Chromium sends: a tie, herd prefers br
        ("gzip;q=1.0, br;q=0.5", Some("gzip")),
        ("br;q=0, gzip", Some("gzip")),
        ("*", Some("br")),
        ("gzip;q=0, br;q=0", None),
        ("identity", None),
        ("deflate, zstd", None),
        ("gzip;q=7", None), // an invalid q-value drops the member
    ];
    for (accept, want) in cases {
        let r = get(&mut c, "/page", &[("Accept-Encoding", accept)]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), *want, "{accept}");
        assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{accept}");
        assert_eq!(decoded(&r), text(10_000), "{accept}");
        if want.is_some() {
            assert!(r.body.len() < 1000, "{accept}: {} bytes", r.body.len());
            assert_eq!(r.header("content-length"), Some(&*r.body.len().to_string()));
        }
    }
    let r = c.get("/page"); // no Accept-Encoding at all: identity
    assert_eq!((r.header("content-encoding"), r.body.len()), (None, 10_000));
    // Two fields are one list.
    let r = get(
        &mut c,
        "/page",
        &[
            ("Accept-Encoding", "br;q=0.1"),
            ("Accept-Encoding", "gzip;q=0.9"),
        ],
    );
    assert_eq!(r.header("content-encoding"), Some("gzip"));
}

#[test]
fn what_is_left_alone() {
    let site = Site::new("alone");
    let server = serve(router(&site, false), opts());
    let mut c = Client::connect(server.local_addr());
    let gz = [("Accept-Encoding", "gzip, br")];
    let r = get(&mut c, "/tiny", &gz); // below min_length
    assert_eq!((r.header("content-encoding"), r.body.len()), (None, 100));
    let r = get(&mut c, "/png", &gz); // not a compressible type
    assert_eq!(
        (r.header("content-encoding"), r.header("vary")),
        (None, None)
    );
    // A range of a static file: the identity bytes, as asked.
    let r = get(&mut c, "/s/page.html", &[gz[0], ("Range", "bytes=0-99")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.body, text(40_000)[..100].to_vec());
    // A 404 page is compressed as nginx does, a 301 is not.
    let r = get(&mut c, "/s/nope.html", &gz);
    assert_eq!(r.status, 404);
    // Without compression configured nothing changes, not even Vary.
    let plain = serve(router(&site, false), HttpOptions::default());
    let mut p = Client::connect(plain.local_addr());
    let r = get(&mut p, "/page", &gz);
    assert_eq!(
        (r.header("content-encoding"), r.header("vary")),
        (None, None)
    );
    assert_eq!(r.body.len(), 10_000);
}

#[test]
fn streams_files_and_validators() {
    let site = Site::new("files");
    let server = serve(router(&site, false), opts());
    let mut c = Client::connect(server.local_addr());
    for coding in ["gzip", "br"] {
        let ae = [("Accept-Encoding", coding)];
        let r = get(&mut c, "/stream", &ae);
        assert!(r.chunked);
        assert_eq!(r.header("content-encoding"), Some(coding));
        let want: Vec<u8> = (0..5).flat_map(|i| text(2000 + i)).collect();
        assert_eq!(decoded(&r), want, "{coding} stream");
        // A file body (sendfile when plain) is read and compressed whole.
        let r = get(&mut c, "/s/page.html", &ae);
        assert_eq!(r.header("content-encoding"), Some(coding));
        assert!(!r.chunked);
        assert_eq!(r.header("accept-ranges"), None);
        assert_eq!(decoded(&r), text(40_000));
        let tag = r.header("etag").unwrap().to_owned();
        assert!(tag.starts_with("W/\""), "{tag}");
        // The weak tag revalidates: 304.
        let r = get(&mut c, "/s/page.html", &[ae[0], ("If-None-Match", &tag)]);
        assert_eq!(r.status, 304);
        // A file above max_buffered is compressed in pieces, chunked.
        let r = get(&mut c, "/s/big.txt", &ae);
        assert!(r.chunked, "{coding} big");
        assert_eq!(r.header("content-encoding"), Some(coding));
        assert_eq!(decoded(&r), text(3 << 20), "{coding} big");
        assert!(r.body.len() < 200_000, "{coding}: {}", r.body.len());
    }
    // A handler's own strong tag becomes weak when encoded.
    let r = get(&mut c, "/tagged", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.header("etag"), Some("W/\"v1\""));
    // HEAD: the same headers as GET, no body.
    c.send(b"HEAD /page HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    let r = c.head_response();
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert!(r.body.is_empty());
    // The connection is still in step after all of that.
    assert_eq!(c.get("/tiny").body.len(), 100);
}

#[test]
fn precompressed_files_are_served_as_they_are() {
    let site = Site::new("static");
    // Compression on the fly off: only the files beside the originals.
    let server = serve(router(&site, true), HttpOptions::default());
    let mut c = Client::connect(server.local_addr());
    let r = get(&mut c, "/s/app.js", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.body, b"GZ-FILE");
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    assert_eq!(
        r.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    assert_eq!(r.header("accept-ranges"), None);
    let gz_tag = r.header("etag").unwrap().to_owned();
    let r = get(&mut c, "/s/app.js", &[("Accept-Encoding", "gzip, br")]);
    assert_eq!(
        (r.body.as_slice(), r.header("content-encoding")),
        (&b"BR-FILE!!"[..], Some("br"))
    );
    assert_ne!(
        r.header("etag").unwrap(),
        gz_tag,
        "each variant has its own validator"
    );
    let r = get(
        &mut c,
        "/s/app.js",
        &[("Accept-Encoding", "gzip;q=1, br;q=0.5")],
    );
    assert_eq!(r.body, b"GZ-FILE");
    let r = get(
        &mut c,
        "/s/only-gz.css",
        &[("Accept-Encoding", "br, gzip;q=0.5")],
    );
    assert_eq!(r.body, b"GZ-CSS", "falls back to the variant that exists");
    let r = get(
        &mut c,
        "/s/app.js",
        &[("Accept-Encoding", "gzip"), ("If-None-Match", &gz_tag)],
    );
    assert_eq!(r.status, 304);
    let r = c.get("/s/app.js");
    assert_eq!(
        (r.header("content-encoding"), r.body.clone()),
        (None, text(5000))
    );
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
    let r = get(
        &mut c,
        "/s/app.js",
        &[("Accept-Encoding", "gzip"), ("Range", "bytes=0-9")],
    );
    assert_eq!((r.status, r.body.clone()), (206, text(10)));
    // Not a compressible type: no variant lookup, no Vary.
    let r = get(&mut c, "/s/photo.png", &[("Accept-Encoding", "gzip")]);
    assert_eq!(
        (r.header("content-encoding"), r.header("vary")),
        (None, None)
    );
    // With compression on as well, a present variant still wins over compressing again.
    let both = serve(router(&site, true), opts());
    let mut b = Client::connect(both.local_addr());
    let r = get(&mut b, "/s/app.js", &[("Accept-Encoding", "gzip")]);
    assert_eq!(r.body, b"GZ-FILE");
    let r = get(&mut b, "/s/page.html", &[("Accept-Encoding", "gzip")]);
    assert_eq!(decoded(&r), text(40_000));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"));
}
