//! Serving a directory: the file-system half of herd's static-file site.
//!
//! [`StaticDir`] answers GET and HEAD for files below a root directory, using herd-proto's pure
//! helpers for every decision (path resolution, MIME type, ETag, conditional requests, ranges)
//! and doing only the file-system work itself: open (non-blocking, so a FIFO cannot stall the
//! loop) below the root with `openat2(RESOLVE_BENEATH)` where available (the kernel refuses a
//! symlink leading outside in the same lookup), otherwise by path with a check of where the
//! descriptor really leads; then `fstat`. Bodies are [`Body::file`] regions, written by the loop with
//! `sendfile`, so memory stays bounded whatever the file size; only bodies up to
//! [`StaticDir::inline_max`] (8 KiB) are read into memory, to leave with their head in one
//! write. Opening and `fstat` run inline on the loop, as nginx does. It must not buffer large
//! files or serve anything outside the root. Callers: [`Router::statics`] (mounting) and the
//! `herd` server.

use std::borrow::Cow;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use ::http::header::{
    HeaderValue, ACCEPT_ENCODING, ACCEPT_RANGES, ALLOW, CONTENT_ENCODING, CONTENT_RANGE,
    CONTENT_TYPE, ETAG, LAST_MODIFIED, LOCATION, RANGE,
};
use ::http::{Method, Request, Response, StatusCode};
use herd_proto::http1::encoding::{is_compressible, AcceptEncoding, Coding};
use herd_proto::http1::statics::{
    etag, evaluate_conditional, if_range_allows, mime_for, parse_range, resolve_path, Conditional,
    PathError, RangeResult,
};
use herd_proto::http1::DateCache;

use super::body::Kind;
use super::compress::set_vary;
use super::router::{Endpoint, Params, Router};
use super::{text_response, Body};

/// A directory served over HTTP.
///
/// ```
/// use herd_core::http::{Router, StaticDir};
///
/// let dir = StaticDir::new(std::env::temp_dir())?;
/// let router = Router::new().statics("/files", dir);
/// # let _ = router;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct StaticDir {
    root: PathBuf,
    /// The root, open, for `openat2(RESOLVE_BENEATH)` lookups below it.
    root_dir: Arc<File>,
    index: String,
    inline_max: u64,
    precompressed: bool,
}

/// Default for [`StaticDir::inline_max`].
const INLINE_MAX: u64 = 8 * 1024;

impl StaticDir {
    /// Serve the directory `root` (resolved now to its canonical path; it must exist and be a
    /// directory). Directory URLs serve `index.html`.
    pub fn new(root: impl AsRef<Path>) -> io::Result<StaticDir> {
        let root = root.as_ref().canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory", root.display()),
            ));
        }
        let root_dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&root)?;
        Ok(StaticDir {
            root,
            root_dir: Arc::new(root_dir),
            index: "index.html".into(),
            inline_max: INLINE_MAX,
            precompressed: false,
        })
    }

    /// Serve `name` for directory URLs instead of `index.html`.
    pub fn index(mut self, name: &str) -> StaticDir {
        self.index = name.into();
        self
    }

    /// Bodies of at most `bytes` (default 8 KiB) are read into memory and leave in the same
    /// write as the response head: one system call instead of a head plus a `sendfile`, which
    /// is what small files gain most from. Larger bodies go out with `sendfile` (the head is
    /// written with `MSG_MORE`, so it still shares the body's first segment): past a few KiB,
    /// reading and copying the body twice costs more than the extra call (a 15 KB
    /// pre-compressed page took 1.1x nginx's CPU per request inlined at the old 32 KiB
    /// default, 0.9x with `sendfile`). 0 sends everything with `sendfile`.
    pub fn inline_max(mut self, bytes: u64) -> StaticDir {
        self.inline_max = bytes;
        self
    }

    /// Serve `file.br` or `file.gz` from beside `file`, when the request accepts that coding
    /// and the file exists, as nginx's `gzip_static` (and `brotli_static`): no compression
    /// work per request. The variant is sent with the original's `Content-Type`,
    /// `Content-Encoding`, `Vary: Accept-Encoding` and its own validators (ETag and
    /// Last-Modified of the compressed file); Brotli is preferred when the client rates both
    /// the same. Range requests always get the original. Default: off.
    pub fn precompressed(mut self, on: bool) -> StaticDir {
        self.precompressed = on;
        self
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Answer `req` for `rel`, the URL path below the mount point as written (percent-encoded,
    /// no leading `/`; empty for the mount point itself).
    ///
    /// Outcomes: 200 with the file, 206/416 for `Range`, 304 for a matching `If-None-Match` or
    /// `If-Modified-Since`, 301 to add the `/` a directory URL lacks, 403 for traversal
    /// attempts (`..`, encoded slashes or backslashes, control bytes) and symlinks leading
    /// outside the root, 404 for anything missing or not a regular file, 405 for methods other
    /// than GET and HEAD.
    pub fn serve(&self, req: &Request<Body>, rel: &str) -> Response<Body> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            let mut resp = text_response(StatusCode::METHOD_NOT_ALLOWED);
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        let url = format!("/{rel}");
        let rp = match resolve_path(&url) {
            Ok(rp) => rp,
            Err(PathError::BadEscape | PathError::NotUtf8 | PathError::NotAbsolute) => {
                return text_response(StatusCode::BAD_REQUEST)
            }
            Err(e) => {
                tracing::debug!("static: refused {url:?}: {e}");
                return text_response(StatusCode::FORBIDDEN);
            }
        };
        let mut path = rp.join_to(&self.root);
        // A file URL with a pre-compressed variant the client takes: open only the variant
        // (as nginx's gzip_static does), not the original first.
        let tried = self.precompressed && !rp.is_dir();
        if tried {
            if let Some(resp) = self.serve_variant(req, &path) {
                return resp;
            }
        }
        let (mut file, mut meta) = match self.open_inside(&path) {
            Ok(f) => f,
            Err(status) => return text_response(status),
        };
        if meta.is_dir() {
            if !rp.is_dir() {
                return redirect_to_dir(req);
            }
            path.push(&self.index);
            (file, meta) = match self.open_inside(&path) {
                Ok(f) => f,
                Err(status) => return text_response(status),
            };
        } else if rp.is_dir() {
            // "/file.txt/": a file is not a directory.
            return text_response(StatusCode::NOT_FOUND);
        }
        if !meta.is_file() {
            return text_response(StatusCode::NOT_FOUND);
        }
        if self.precompressed {
            // The index of a directory URL has not been looked for with a variant yet.
            if !tried {
                if let Some(resp) = self.serve_variant(req, &path) {
                    return resp;
                }
            }
            let mut resp = file_response(req, file, &meta, &path, &path, self.inline_max);
            if is_compressible(&mime_for(extension(&path))) {
                set_vary(resp.headers_mut());
            }
            return resp;
        }
        file_response(req, file, &meta, &path, &path, self.inline_max)
    }

    /// [`StaticDir::precompressed`]: the answer from the `.br`/`.gz` variant of `path` the
    /// request accepts, if `path` is of a compressible type, the request has no `Range` and
    /// such a variant exists; `Vary: Accept-Encoding` on it.
    fn serve_variant(&self, req: &Request<Body>, path: &Path) -> Option<Response<Body>> {
        if !is_compressible(&mime_for(extension(path))) || req.headers().contains_key(RANGE) {
            return None;
        }
        let accept = AcceptEncoding::parse(req.headers().get_all(ACCEPT_ENCODING));
        let first = accept.choose(&[Coding::Brotli, Coding::Gzip])?;
        let other = if first == Coding::Brotli {
            Coding::Gzip
        } else {
            Coding::Brotli
        };
        let second = accept.choose(&[other]);
        for coding in std::iter::once(first).chain(second) {
            let mut name = path.as_os_str().to_owned();
            name.push(coding.file_suffix());
            let variant = PathBuf::from(name);
            let Ok((vfile, vmeta)) = self.open_inside(&variant) else {
                continue;
            };
            if !vmeta.is_file() {
                continue;
            }
            let mut resp = file_response(req, vfile, &vmeta, &variant, path, self.inline_max);
            let not_modified = resp.status() == StatusCode::NOT_MODIFIED;
            let h = resp.headers_mut();
            h.remove(ACCEPT_RANGES);
            if !not_modified {
                h.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.as_str()));
            }
            set_vary(resp.headers_mut());
            return Some(resp);
        }
        None
    }

    /// Opens `path` (below the root) without blocking on FIFOs, making sure that what opens
    /// lies below the root. The kernel checks that in the same lookup where it can
    /// (`openat2` with `RESOLVE_BENEATH`: one system call); a path it refuses because it
    /// crosses an absolute symlink, or a system without `openat2`, takes the slower way: open
    /// by path, then ask `/proc/self/fd` where the descriptor really leads.
    fn open_inside(&self, path: &Path) -> Result<(File, Metadata), StatusCode> {
        let rel = match path.strip_prefix(&self.root) {
            Ok(r) if r.as_os_str().is_empty() => Path::new("."),
            Ok(r) => r,
            Err(_) => return Err(StatusCode::FORBIDDEN),
        };
        let file = match crate::sys::open_beneath(&self.root_dir, rel) {
            Ok(Some(file)) => file,
            Ok(None) => self.open_checked(path)?,
            Err(e) if crate::sys::is_escape_error(&e) => self.open_checked(path)?,
            Err(e) => return Err(open_error_status(&e)),
        };
        let meta = file
            .metadata()
            .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
        Ok((file, meta))
    }

    /// Opens `path` by name, then checks where the descriptor really leads (symlinks
    /// resolved) and refuses anything outside the root.
    fn open_checked(&self, path: &Path) -> Result<File, StatusCode> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| open_error_status(&e))?;
        match real_path(&file, path) {
            Ok(real) if real.starts_with(&self.root) => Ok(file),
            Ok(real) => {
                tracing::debug!(
                    "static: {} leads outside the root to {}",
                    path.display(),
                    real.display()
                );
                Err(StatusCode::FORBIDDEN)
            }
            Err(_) => Err(StatusCode::FORBIDDEN),
        }
    }
}

impl Router {
    /// Serve `dir` under the URL prefix `mount` (`"/"` for the whole site) with GET and HEAD.
    pub fn statics(self, mount: &str, dir: StaticDir) -> Router {
        let pattern = format!("{}/*", mount.trim_end_matches('/'));
        let dir = Arc::new(dir);
        let ep = Endpoint::Inline(Arc::new(move |req: Request<Body>| {
            let rel = req
                .extensions()
                .get::<Params>()
                .and_then(|p| p.get("*"))
                .unwrap_or("");
            dir.serve(&req, rel)
        }));
        self.add(Some(Method::GET), &pattern, ep)
    }
}

/// The status for a failed open.
fn open_error_status(e: &io::Error) -> StatusCode {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => StatusCode::NOT_FOUND,
        io::ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        _ if e.raw_os_error() == Some(libc::ELOOP) => StatusCode::NOT_FOUND,
        _ if e.raw_os_error() == Some(libc::ENAMETOOLONG) => StatusCode::NOT_FOUND,
        _ => {
            tracing::warn!("static: open failed: {e}");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// Where the opened file really is: its `/proc/self/fd` link (exact, no race), or the
/// canonical form of `path` where `/proc` is not mounted.
fn real_path(file: &File, path: &Path) -> io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .or_else(|_| path.canonicalize())
}

/// 301 to the same URL with a trailing `/` (query kept).
fn redirect_to_dir(req: &Request<Body>) -> Response<Body> {
    let mut location = format!("{}/", req.uri().path());
    if let Some(q) = req.uri().query() {
        location.push('?');
        location.push_str(q);
    }
    let mut resp = text_response(StatusCode::MOVED_PERMANENTLY);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

/// The 200/206/304/416 response for an opened regular file (`path`), typed by `type_path`'s
/// extension (the original's, for a pre-compressed variant).
fn file_response(
    req: &Request<Body>,
    file: File,
    meta: &Metadata,
    path: &Path,
    type_path: &Path,
    inline_max: u64,
) -> Response<Body> {
    let len = meta.len();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    let (secs, nanos) = (mtime.as_secs(), mtime.subsec_nanos());
    let tag = etag(len, secs, nanos);
    let mut date = DateCache::new();
    date.update(secs);
    let validators = |resp: &mut Response<Body>| {
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&tag) {
            h.insert(ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_bytes(date.header_value()) {
            h.insert(LAST_MODIFIED, v);
        }
    };
    if evaluate_conditional(req.headers(), &tag, secs) == Conditional::NotModified {
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::NOT_MODIFIED;
        validators(&mut resp);
        return resp;
    }
    let range = req
        .headers()
        .get(RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| if_range_allows(req.headers(), &tag, secs))
        .map_or(RangeResult::Full, |v| parse_range(v, len));
    let (status, body, content_range) = match range {
        RangeResult::Full => (StatusCode::OK, Body::file(file, 0, len), None),
        RangeResult::Partial(a, b) => (
            StatusCode::PARTIAL_CONTENT,
            Body::file(file, a, b - a + 1),
            Some(format!("bytes {a}-{b}/{len}")),
        ),
        RangeResult::Unsatisfiable => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            Body::empty(),
            Some(format!("bytes */{len}")),
        ),
    };
    let body = match body.kind {
        Kind::File { file, offset, len } if len <= inline_max && req.method() == Method::GET => {
            let mut buf = vec![0u8; len as usize];
            if let Err(e) = file.read_exact_at(&mut buf, offset) {
                tracing::warn!("static: reading {}: {e}", path.display());
                return text_response(StatusCode::INTERNAL_SERVER_ERROR);
            }
            Body::from(buf)
        }
        kind => Body { kind },
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if status != StatusCode::RANGE_NOT_SATISFIABLE {
        let ext = type_path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let mime = match mime_for(ext) {
            Cow::Borrowed(mime) => HeaderValue::from_static(mime),
            Cow::Owned(mime) => HeaderValue::try_from(mime)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        };
        resp.headers_mut().insert(CONTENT_TYPE, mime);
        validators(&mut resp);
    }
    resp.headers_mut()
        .insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(v) = content_range.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(CONTENT_RANGE, v);
    }
    resp
}

/// The extension of `path` ("" without one or when it is not UTF-8).
fn extension(path: &Path) -> &str {
    path.extension().and_then(|e| e.to_str()).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn site(tag: &str) -> (Tmp, StaticDir) {
        let base = std::env::temp_dir().join(format!("herd-statics-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.txt"), b"hello static").unwrap();
        std::fs::write(root.join("sub/index.html"), b"<p>index</p>").unwrap();
        std::fs::write(base.join("secret.txt"), b"secret").unwrap();
        std::os::unix::fs::symlink(base.join("secret.txt"), root.join("escape.txt")).unwrap();
        std::os::unix::fs::symlink(root.join("a.txt"), root.join("inside.txt")).unwrap();
        let dir = StaticDir::new(&root).unwrap();
        (Tmp(base), dir)
    }

    fn get(dir: &StaticDir, rel: &str, headers: &[(&str, &str)]) -> Response<Body> {
        let mut b = Request::builder().uri(format!("/s/{rel}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        dir.serve(&b.body(Body::empty()).unwrap(), rel)
    }

    #[test]
    fn serves_files_with_validators() {
        let (_t, dir) = site("ok");
        let r = get(&dir, "a.txt", &[]);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(
            r.body().as_bytes(),
            Some(&b"hello static"[..]),
            "small: inline"
        );
        let big = get(&dir.clone().inline_max(4), "a.txt", &[]);
        assert!(big.body().is_file());
        assert_eq!(big.body().len(), Some(12));
        let tag = r.headers()[ETAG].to_str().unwrap().to_owned();
        let lm = r.headers()[LAST_MODIFIED].to_str().unwrap().to_owned();
        assert_eq!(get(&dir, "a.txt", &[("if-none-match", &tag)]).status(), 304);
        assert_eq!(
            get(&dir, "a.txt", &[("if-modified-since", &lm)]).status(),
            304
        );
        let idx = get(&dir, "sub/", &[]);
        assert_eq!(idx.status(), 200);
        assert_eq!(idx.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        let redirect = get(&dir, "sub", &[]);
        assert_eq!(redirect.status(), 301);
        assert_eq!(redirect.headers()[LOCATION], "/s/sub/");
        assert_eq!(get(&dir, "inside.txt", &[]).status(), 200);
    }

    #[test]
    fn ranges() {
        let (_t, dir) = site("range");
        let r = get(&dir, "a.txt", &[("range", "bytes=6-")]);
        assert_eq!(r.status(), 206);
        assert_eq!(r.headers()[CONTENT_RANGE], "bytes 6-11/12");
        assert_eq!(r.body().len(), Some(6));
        let r = get(&dir, "a.txt", &[("range", "bytes=12-")]);
        assert_eq!(r.status(), 416);
        assert_eq!(r.headers()[CONTENT_RANGE], "bytes */12");
    }

    #[test]
    fn refusals() {
        let (_t, dir) = site("refuse");
        assert_eq!(get(&dir, "../secret.txt", &[]).status(), 403);
        assert_eq!(get(&dir, "%2e%2e/secret.txt", &[]).status(), 403);
        assert_eq!(get(&dir, "sub%2f..%2f..%2fsecret.txt", &[]).status(), 403);
        assert_eq!(get(&dir, "escape.txt", &[]).status(), 403);
        assert_eq!(get(&dir, "missing", &[]).status(), 404);
        assert_eq!(get(&dir, "a.txt/", &[]).status(), 404);
        assert_eq!(get(&dir, "a.txt/x", &[]).status(), 404);
        assert_eq!(get(&dir, "", &[]).status(), 404, "no index in the root");
        let post = Request::post("/s/a.txt").body(Body::empty()).unwrap();
        assert_eq!(dir.serve(&post, "a.txt").status(), 405);
    }
}
