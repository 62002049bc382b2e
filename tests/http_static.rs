//! Static files over real sockets: MIME types, ETag/304, If-Modified-Since, Range 206/416,
//! index.html and redirects, HEAD, and every way out of the root refused.

mod http_support;

use std::path::{Path, PathBuf};

use herd::http::{HttpOptions, Router, StaticDir};
use http_support::{serve, Client};

/// A temporary site, removed on drop:
/// base/secret.txt (outside), base/root/{index.html, a.txt, style.CSS, data.bin, docs/,
/// empty/, escape -> ../secret.txt, outdir -> .., ok-link -> a.txt}.
struct Site {
    base: PathBuf,
}

impl Site {
    fn new(tag: &str) -> Site {
        let base =
            std::env::temp_dir().join(format!("herd-http-static-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::create_dir_all(root.join("empty")).unwrap();
        std::fs::write(base.join("secret.txt"), b"top secret").unwrap();
        std::fs::write(root.join("index.html"), b"<h1>home</h1>").unwrap();
        std::fs::write(root.join("a.txt"), b"0123456789abcdef").unwrap();
        std::fs::write(root.join("style.CSS"), b"body{}").unwrap();
        std::fs::write(root.join("data.bin"), herd_testkit::pattern(3, 100_000)).unwrap();
        std::fs::write(root.join("docs/index.html"), b"<p>docs</p>").unwrap();
        std::fs::write(root.join("docs/with space.txt"), b"spaced").unwrap();
        std::os::unix::fs::symlink(base.join("secret.txt"), root.join("escape")).unwrap();
        std::os::unix::fs::symlink(&base, root.join("outdir")).unwrap();
        std::os::unix::fs::symlink(root.join("a.txt"), root.join("ok-link")).unwrap();
        Site { base }
    }

    fn root(&self) -> PathBuf {
        self.base.join("root")
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn serve_site(root: &Path, mount: &str) -> herd::ServerHandle {
    let router = Router::new().statics(mount, StaticDir::new(root).unwrap());
    serve(router, HttpOptions::default())
}

fn request(c: &mut Client, path: &str, headers: &[(&str, &str)]) -> http_support::Resp {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    c.send(req.as_bytes());
    c.response()
}

#[test]
fn files_mime_and_index() {
    let site = Site::new("mime");
    let server = serve_site(&site.root(), "/");
    let mut c = Client::connect(server.local_addr());
    let r = c.get("/a.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "0123456789abcdef"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        c.get("/style.CSS").header("content-type"),
        Some("text/css; charset=utf-8")
    );
    let r = c.get("/data.bin");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(r.body, herd_testkit::pattern(3, 100_000));
    let r = c.get("/");
    assert_eq!((r.status, r.text().as_str()), (200, "<h1>home</h1>"));
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(c.get("/docs/").text(), "<p>docs</p>");
    let r = c.get("/docs?x=1");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("/docs/?x=1"));
    assert_eq!(c.get("/docs/with%20space.txt").text(), "spaced");
    assert_eq!(
        c.get("/ok-link").text(),
        "0123456789abcdef",
        "links inside the root work"
    );
    assert_eq!(c.get("/empty/").status, 404, "no listing");
    assert_eq!(c.get("/nothing-here").status, 404);
    // HEAD: same headers, no body (the next response parses cleanly).
    c.send(b"HEAD /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let h = c.head_response();
    assert_eq!((h.status, h.header("content-length")), (200, Some("16")));
    assert_eq!(c.get("/a.txt").text(), "0123456789abcdef");
    c.send(b"DELETE /a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
}

#[test]
fn etag_and_if_modified_since() {
    let site = Site::new("cond");
    let server = serve_site(&site.root(), "/");
    let mut c = Client::connect(server.local_addr());
    let r = c.get("/a.txt");
    let etag = r.header("etag").unwrap().to_owned();
    let lm = r.header("last-modified").unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'));
    let r = request(&mut c, "/a.txt", &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    let r = request(&mut c, "/a.txt", &[("If-None-Match", "\"other\"")]);
    assert_eq!(r.status, 200);
    let r = request(&mut c, "/a.txt", &[("If-Modified-Since", &lm)]);
    assert_eq!(r.status, 304);
    let r = request(
        &mut c,
        "/a.txt",
        &[("If-Modified-Since", "Thu, 01 Jan 1970 00:00:00 GMT")],
    );
    assert_eq!(r.status, 200);
    // If-None-Match wins over If-Modified-Since.
    let r = request(
        &mut c,
        "/a.txt",
        &[("If-None-Match", "\"other\""), ("If-Modified-Since", &lm)],
    );
    assert_eq!(r.status, 200);
    // A rewritten file gets a new ETag.
    std::fs::write(site.root().join("a.txt"), b"changed content!!").unwrap();
    let r = request(&mut c, "/a.txt", &[("If-None-Match", &etag)]);
    assert_eq!((r.status, r.text().as_str()), (200, "changed content!!"));
}

#[test]
fn ranges() {
    let site = Site::new("range");
    let server = serve_site(&site.root(), "/");
    let mut c = Client::connect(server.local_addr());
    let r = request(&mut c, "/a.txt", &[("Range", "bytes=2-5")]);
    assert_eq!((r.status, r.text().as_str()), (206, "2345"));
    assert_eq!(r.header("content-range"), Some("bytes 2-5/16"));
    let r = request(&mut c, "/a.txt", &[("Range", "bytes=-3")]);
    assert_eq!((r.status, r.text().as_str()), (206, "def"));
    let r = request(&mut c, "/a.txt", &[("Range", "bytes=10-999")]);
    assert_eq!((r.status, r.text().as_str()), (206, "abcdef"));
    let r = request(&mut c, "/a.txt", &[("Range", "bytes=16-")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */16"));
    let r = request(&mut c, "/a.txt", &[("Range", "bytes=0-1,4-5")]);
    assert_eq!(
        (r.status, r.body.len()),
        (200, 16),
        "multiple ranges: whole file"
    );
    let etag = c.get("/a.txt").header("etag").unwrap().to_owned();
    let r = request(
        &mut c,
        "/a.txt",
        &[("Range", "bytes=0-0"), ("If-Range", &etag)],
    );
    assert_eq!((r.status, r.text().as_str()), (206, "0"));
    let r = request(
        &mut c,
        "/a.txt",
        &[("Range", "bytes=0-0"), ("If-Range", "\"stale\"")],
    );
    assert_eq!(r.status, 200, "If-Range mismatch: whole file");
    // A large range of a larger file, through sendfile.
    let r = request(&mut c, "/data.bin", &[("Range", "bytes=1000-98999")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, herd_testkit::pattern(3, 100_000)[1000..99_000]);
}

#[test]
fn no_escape_from_the_root() {
    let site = Site::new("escape");
    let server = serve_site(&site.root(), "/files");
    let mut c = Client::connect(server.local_addr());
    assert_eq!(c.get("/files/a.txt").status, 200);
    let attempts = [
        "/files/../secret.txt",
        "/files/docs/../../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/%2E%2E/secret.txt",
        "/files/docs/%2e%2e/%2e%2e/secret.txt",
        "/files/..%2fsecret.txt",
        "/files/docs%2f..%2f..%2fsecret.txt",
        "/files/..%5csecret.txt",
        "/files/%00",
        "/files/escape",
        "/files/outdir/secret.txt",
    ];
    for path in attempts {
        let r = c.get(path);
        assert!(
            r.status == 403 || r.status == 404,
            "{path}: status {}",
            r.status
        );
        assert!(!r.text().contains("top secret"), "{path} leaked the secret");
    }
    // Outside the mount point nothing is served at all.
    assert_eq!(c.get("/secret.txt").status, 404);
    assert_eq!(c.get("/a.txt").status, 404);
    // Dot segments in the request target itself.
    c.send(b"GET /files/./a.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(c.response().status, 200);
}
