//! HTTP hello world: `GET /hello` answers `Hello, World!` (13 bytes, `text/plain`, keep-alive).
//!
//! `cargo run --release --example hello -- --port 8080 --loops 1`, then
//! `curl http://127.0.0.1:8080/hello`. Used by bench/http.sh against a hyper peer. The handler
//! allocates nothing of its own: the body is static and the header value is static.
//! `--root DIR` also serves that directory under `/static/` (sendfile bodies), for the
//! benchmark's file scenarios.

use herd::args::ServeArgs;
use herd::http::{header, Body, HeaderValue, HttpService, Request, Response, Router, StaticDir};
use herd::Server;

fn hello(_req: Request<Body>) -> Response<Body> {
    let mut resp = Response::new(Body::from_static(b"Hello, World!"));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(8080);
    let mut router = Router::new().get("/hello", hello);
    if let Some(root) = args.get::<String>("root") {
        router = router.statics("/static", StaticDir::new(root)?);
    }
    let server =
        HttpService::new(router).serve(Server::new().bind(args.addr())?.loops(args.loops))?;
    eprintln!(
        "hello: listening on http://{}/hello with {} loop(s)",
        server.local_addr(),
        server.loops()
    );
    server.join();
    Ok(())
}
