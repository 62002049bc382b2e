//! axum-json: the idiomatic axum 0.8 JSON route, the peer of herd's JSON benchmark
//! (bench/json.sh).
//!
//! `POST /api/echo` parses its `application/json` body into a `serde_json::Value` with
//! axum's `Json` extractor and answers it back as JSON, like the same route of herd's
//! `json_api` example. Served as hyper-hello is: a multi-thread runtime with `--threads`
//! workers, an accept loop, a task per connection running hyper's `http1` connection over the
//! axum `Router` (through hyper-util's tower adapter), TCP_NODELAY. Listens on 127.0.0.1.
//! Started by `bench/json.sh` as `axum-json --port P --threads N`.

use axum::routing::post;
use axum::{Json, Router};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

async fn echo(Json(v): Json<serde_json::Value>) -> Json<serde_json::Value> {
    Json(v)
}

fn main() -> std::io::Result<()> {
    let opts = herd_bench_peers::from_env("axum-json");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads)
        .enable_all()
        .build()?;
    let app = Router::new().route("/api/echo", post(echo));
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", opts.port)).await?;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("axum-json: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let service = TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
