//! hyper-hello: the idiomatic hyper 1.x HTTP/1.1 server, the peer herd's HTTP benchmark must
//! beat.
//!
//! `GET /hello` answers `Hello, World!` (13 bytes, `text/plain`, keep-alive), like herd's
//! `hello` example; `GET /static/NAME` answers the file NAME of `--root DIR` (read with
//! `tokio::fs::read`, as a typical hyper user without a static-file crate would), for the
//! 4 KiB / 1 MiB file comparison; anything else is 404. A multi-thread runtime with
//! `--threads` workers, an accept loop, and a task per connection running hyper's `http1`
//! connection with default options (keep-alive on, Date header cached by hyper), plus
//! TCP_NODELAY as every peer sets. Listens on 127.0.0.1 only. Started by `bench/http.sh` as
//! `hyper-hello --port P --threads N [--root DIR]`.

use std::convert::Infallible;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

async fn handle(
    root: Arc<Option<PathBuf>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path();
    if path == "/hello" {
        let mut resp = Response::new(Full::new(Bytes::from_static(b"Hello, World!")));
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        return Ok(resp);
    }
    if let (Some(root), Some(name)) = (root.as_ref(), path.strip_prefix("/static/")) {
        let rel = Path::new(name);
        if rel.components().all(|c| matches!(c, Component::Normal(_))) {
            if let Ok(data) = tokio::fs::read(root.join(rel)).await {
                let mut resp = Response::new(Full::new(Bytes::from(data)));
                resp.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                return Ok(resp);
            }
        }
    }
    let mut resp = Response::new(Full::new(Bytes::from_static(b"404 Not Found\n")));
    *resp.status_mut() = StatusCode::NOT_FOUND;
    Ok(resp)
}

fn main() -> std::io::Result<()> {
    // `--root DIR` is ours; the rest is the peers' common `--port P --threads N`.
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut root = None;
    if let Some(i) = args.iter().position(|a| a == "--root") {
        if i + 1 >= args.len() {
            eprintln!("hyper-hello: --root needs a value");
            std::process::exit(2);
        }
        root = Some(PathBuf::from(args.remove(i + 1)));
        args.remove(i);
    }
    let opts = herd_bench_peers::parse(args).unwrap_or_else(|e| {
        eprintln!("hyper-hello: {e}\nusage: hyper-hello --port P [--threads N] [--root DIR]");
        std::process::exit(2)
    });
    let root = Arc::new(root);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", opts.port)).await?;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: keep serving the connections we have.
                    eprintln!("hyper-hello: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let root = root.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(root.clone(), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
