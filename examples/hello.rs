//! HTTP hello world: `GET /hello` answers `Hello, World!` (13 bytes, `text/plain`, keep-alive).
//!
//! `cargo run --release --example hello -- --port 8080 --loops 1`, then
//! `curl http://127.0.0.1:8080/hello`. Used by bench/http.sh against a hyper peer. The handler
//! allocates nothing of its own: the body is static and the header value is static.
//! `--root DIR` also serves that directory under `/static/` (sendfile bodies), for the
//! benchmark's file scenarios.
//!
//! `--layer MODE` puts middleware around `/hello`, for bench/callgrind.sh's `layers` scenario
//! (the cost of each per request): `none` (the default: the route as above), `from_fn` (a
//! herd middleware closure that passes the request on), `tower` (a tower layer that passes
//! it on, `MapRequestLayer` of the identity, through `Router::tower_layer`), or `unused` (the
//! extractor, herd-middleware and tower machinery registered on other routes, `/hello`
//! itself left bare: it must cost what `none` does).

use herd::args::ServeArgs;
use herd::http::extract::{Path, Query};
use herd::http::middleware::{from_fn, Next};
use herd::http::{header, Body, HeaderValue, HttpService, Request, Response, Router, StaticDir};
use herd::Server;

fn hello(_req: Request<Body>) -> Response<Body> {
    let mut resp = Response::new(Body::from_static(b"Hello, World!"));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// A herd middleware that does nothing but call the rest of the chain.
fn pass_on(req: Request<Body>, next: Next<'_>) -> Response<Body> {
    next.run(req)
}

/// A tower layer that does nothing but call the inner service.
type PassOn = tower::util::MapRequestLayer<fn(Request<Body>) -> Request<Body>>;

fn tower_pass_on() -> PassOn {
    tower::util::MapRequestLayer::new(std::convert::identity)
}

#[derive(serde::Deserialize)]
struct Page {
    limit: Option<u32>,
}

fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(8080);
    let layer = args.get::<String>("layer").unwrap_or_else(|| "none".into());
    let mut router = Router::new().get("/hello", hello);
    router = match layer.as_str() {
        "none" => router,
        "from_fn" => router.layer(from_fn(pass_on)),
        "tower" => router.tower_layer(tower_pass_on()),
        "unused" => router
            .get_with(
                "/users/:id",
                |Path(id): Path<u32>, Query(p): Query<Page>| {
                    format!("user {id} limit {:?}\n", p.limit)
                },
            )
            .get("/mw", hello)
            .get("/tw", hello)
            .tower_route_layer("/tw", tower_pass_on())
            // Wraps every route so far, the first `/hello` too; the bare one below replaces it.
            .route_layer(from_fn(pass_on))
            .get("/hello", hello),
        other => {
            eprintln!("hello: --layer must be none, from_fn, tower or unused, not {other:?}");
            std::process::exit(2);
        }
    };
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
