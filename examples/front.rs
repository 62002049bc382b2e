//! An HTTP front service: each `GET /front?user=NAME` calls a frame RPC backend (a prost
//! `ScoreReq` -> `ScoreResp`) and an HTTP backend (`GET /profile?user=NAME`, JSON) at the same
//! time, from the request's own task on its loop, and merges both answers into one JSON
//! response. Each call has its own time limit on the loop's clock: a backend that does not
//! answer in time gives `504`, one that refuses the connection (or fails otherwise) `502`,
//! and the body says which backend it was. Connections come from per-loop pools
//! (`frame::FramePool`, `task::HttpClient`), so the backends see one frame connection and a
//! few keep-alive HTTP connections per loop, not one per request.
//!
//! Without arguments it starts both backends in-process, on free loopback ports:
//!
//! `cargo run --example front -- --port 9300` then `curl 'http://127.0.0.1:9300/front?user=ann'`
//!
//! or points at running ones: `--frame 127.0.0.1:9200 --http 127.0.0.1:9201` (both needed),
//! and `--timeout-ms 500` (the default is 1000). The user `slow-frame` makes the in-process
//! frame backend hold its answer forever, `slow-http` the HTTP backend, to see the 504.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use herd::args::ServeArgs;
use herd::frame::prost;
use herd::frame::{AsyncClientOptions, FramePool, FrameService};
use herd::http::{Body, HttpService, IntoResponse, Json, Request, Response, Router, StatusCode};
use herd::task::{self, ClientOptions, HttpClient, Upstream};
use herd::{Server, ServerHandle};
use serde_json::{json, Value};

/// The frame backend's message id for a score lookup.
pub const SCORE: u16 = 1;

/// Asks the frame backend for a user's score.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
pub struct ScoreReq {
    /// The user.
    #[prost(string, tag = "1")]
    pub user: String,
}

/// The frame backend's answer.
#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
pub struct ScoreResp {
    /// The user asked about.
    #[prost(string, tag = "1")]
    pub user: String,
    /// Their score.
    #[prost(uint64, tag = "2")]
    pub score: u64,
}

/// Where the backends are and how long one call to each may take.
#[derive(Debug, Clone, Copy)]
pub struct Backends {
    /// The frame RPC backend.
    pub frame: SocketAddr,
    /// The HTTP backend.
    pub http: SocketAddr,
    /// Limit for one call (connecting included), on the loop's clock.
    pub timeout: Duration,
}

thread_local! {
    // One pool of each kind per loop: a route's future runs on its connection's loop.
    static FRAMES: FramePool = FramePool::new(
        AsyncClientOptions { connect_timeout: Duration::from_secs(1), ..Default::default() },
        Duration::from_secs(60),
    );
    static HTTP: HttpClient = HttpClient::new(ClientOptions {
        connect_timeout: Duration::from_secs(1),
        ..Default::default()
    });
}

/// Why a backend call failed.
#[derive(Debug)]
enum Failure {
    /// No answer within the limit: 504.
    Timeout,
    /// Refused, reset, or an answer that makes no sense: 502.
    Down(String),
}

fn io_failure(e: &std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::TimedOut {
        Failure::Timeout
    } else {
        Failure::Down(e.to_string())
    }
}

async fn call_frame(addr: SocketAddr, user: String) -> Result<ScoreResp, Failure> {
    let client = FRAMES.with(|p| p.client(addr));
    let client = client.await.map_err(|e| io_failure(&e))?;
    client
        .call::<ScoreReq, ScoreResp>(SCORE, &ScoreReq { user })
        .await
        .map_err(|e| match e {
            herd::frame::ClientError::Io(e) => io_failure(&e),
            other => Failure::Down(other.to_string()),
        })
}

async fn call_http(addr: SocketAddr, user: &str) -> Result<Value, Failure> {
    let client = HTTP.with(|c| c.clone());
    let req = herd::http::Request::get(format!("/profile?user={user}"))
        .body(bytes::Bytes::new())
        .map_err(|e| Failure::Down(e.to_string()))?;
    let resp = client
        .request(&Upstream::tcp(addr), req)
        .await
        .map_err(|e| match e.kind() {
            task::ErrorKind::Timeout => Failure::Timeout,
            _ => Failure::Down(e.to_string()),
        })?;
    if resp.status() != StatusCode::OK {
        return Err(Failure::Down(format!("status {}", resp.status().as_u16())));
    }
    serde_json::from_slice(resp.body()).map_err(|e| Failure::Down(format!("bad JSON: {e}")))
}

/// Run `fut` within `limit`; running out is a [`Failure::Timeout`].
async fn limited<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    task::timeout(limit, fut)
        .await
        .unwrap_or(Err(Failure::Timeout))
}

fn user_of(req: &Request<Body>) -> String {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("user="))
        .filter(|u| !u.is_empty() && u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .unwrap_or("anonymous")
        .to_owned()
}

/// One front request: both calls at once, then one answer.
async fn front(b: Backends, user: String) -> Response<Body> {
    let (score, profile) = task::join(
        limited(b.timeout, call_frame(b.frame, user.clone())),
        limited(b.timeout, call_http(b.http, &user)),
    )
    .await;
    let mut failed = Vec::new();
    let mut status = StatusCode::OK;
    for (backend, err) in [
        ("frame", score.as_ref().err()),
        ("http", profile.as_ref().err()),
    ] {
        match err {
            None => {}
            Some(Failure::Timeout) => {
                if status == StatusCode::OK {
                    status = StatusCode::GATEWAY_TIMEOUT;
                }
                failed.push(json!({ "backend": backend, "error": "timeout" }));
            }
            Some(Failure::Down(why)) => {
                status = StatusCode::BAD_GATEWAY;
                failed.push(json!({ "backend": backend, "error": "down", "detail": why }));
            }
        }
    }
    let body = match (score, profile) {
        (Ok(s), Ok(p)) => json!({ "user": user, "score": s.score, "profile": p }),
        _ => json!({ "user": user, "failed": failed }),
    };
    (status, Json(body)).into_response()
}

/// The front service for `backends`.
pub fn front_service(backends: Backends) -> HttpService {
    HttpService::new(
        Router::new().get_async("/front", move |req: Request<Body>| {
            front(backends, user_of(&req))
        }),
    )
}

/// The in-process frame backend: a score per user; `slow-frame` never gets an answer
/// (`held` counts those calls).
pub fn frame_backend(addr: &str, held: Arc<AtomicUsize>) -> std::io::Result<ServerHandle> {
    let router = herd::frame::Router::new().route_async(SCORE, move |req: ScoreReq| {
        let held = held.clone();
        async move {
            if req.user == "slow-frame" {
                held.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
            let score = req.user.bytes().map(u64::from).sum();
            Ok(ScoreResp {
                user: req.user,
                score,
            })
        }
    });
    let frames = FrameService::new(router);
    Server::new()
        .bind(addr)?
        .loops(1)
        .serve(move || frames.protocol())
}

/// The in-process HTTP backend: `/profile?user=NAME` answers a JSON profile; `slow-http`
/// never gets an answer (`held` counts those requests).
pub fn http_backend(addr: &str, held: Arc<AtomicUsize>) -> std::io::Result<ServerHandle> {
    let router = Router::new().get_async("/profile", move |req: Request<Body>| {
        let user = user_of(&req);
        let held = held.clone();
        async move {
            if user == "slow-http" {
                held.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
            }
            Json(json!({ "user": user, "name": user.to_uppercase() }))
        }
    });
    HttpService::new(router).serve(Server::new().bind(addr)?.loops(1))
}

fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(9300);
    let timeout = Duration::from_millis(args.get::<u64>("timeout-ms").unwrap_or(1000));
    let mut own = Vec::new();
    let (frame, http) = match (
        args.get::<SocketAddr>("frame"),
        args.get::<SocketAddr>("http"),
    ) {
        (Some(f), Some(h)) => (f, h),
        (None, None) => {
            own.push(frame_backend("127.0.0.1:0", Arc::default())?);
            own.push(http_backend("127.0.0.1:0", Arc::default())?);
            (own[0].local_addr(), own[1].local_addr())
        }
        _ => {
            eprintln!("front: give both --frame ADDR and --http ADDR, or neither");
            std::process::exit(2);
        }
    };
    let backends = Backends {
        frame,
        http,
        timeout,
    };
    let server =
        front_service(backends).serve(Server::new().bind(args.addr())?.loops(args.loops))?;
    eprintln!(
        "front: {} (frame backend {frame}, HTTP backend {http}, {} ms per call)",
        server.local_addr(),
        timeout.as_millis()
    );
    server.join();
    Ok(())
}
