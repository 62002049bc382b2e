//! axum-json-api: the axum 0.8 twin of herd's `json_api` example (examples/json_api.rs), to
//! compare what the same small JSON API takes to write on each (docs/http.md gives both line
//! counts).
//!
//! The same routes and answers: a todo list shared by all worker threads behind an `RwLock`
//! (`State`), `GET/POST /api/todos` (with `?done=`), `GET/DELETE /api/todos/:id`,
//! `GET /api/stats` (requests served by this worker thread: axum has no per-loop state, so a
//! thread-local stands in for herd's `LoopState`), `POST /api/echo`, and every error as
//! `{"error": "..."}` (axum's rejections and 404s are plain text, so one response mapper
//! rewrites them). Not twinned: the static files under `/` (tower-http's `ServeDir`, not in
//! this workspace's dependencies). Served as axum-json is; started as
//! `axum-json-api --port P --threads N`.

use std::cell::Cell;
use std::sync::{Arc, RwLock};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

#[derive(Clone, Serialize)]
struct Todo {
    id: u64,
    title: String,
    done: bool,
}

#[derive(Deserialize)]
struct NewTodo {
    title: String,
    #[serde(default)]
    done: bool,
}

#[derive(Deserialize)]
struct Filter {
    done: Option<bool>,
}

#[derive(Default)]
struct Todos {
    next: u64,
    list: Vec<Todo>,
}

type Db = Arc<RwLock<Todos>>;

thread_local! {
    /// Requests served by this worker thread.
    static SERVED: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    SERVED.with(|s| s.set(s.get() + 1));
}

fn error(status: StatusCode, msg: &str) -> Response {
    (status, Json(serde_json::json!({ "error": msg }))).into_response()
}

async fn list(State(db): State<Db>, Query(f): Query<Filter>) -> Json<Vec<Todo>> {
    count();
    let db = db.read().unwrap();
    let list = db
        .list
        .iter()
        .filter(|t| f.done.is_none_or(|d| t.done == d))
        .cloned()
        .collect();
    Json(list)
}

async fn create(State(db): State<Db>, Json(new): Json<NewTodo>) -> (StatusCode, Json<Todo>) {
    count();
    let mut db = db.write().unwrap();
    db.next += 1;
    let todo = Todo {
        id: db.next,
        title: new.title,
        done: new.done,
    };
    db.list.push(todo.clone());
    (StatusCode::CREATED, Json(todo))
}

async fn show(State(db): State<Db>, Path(id): Path<u64>) -> Response {
    count();
    let db = db.read().unwrap();
    match db.list.iter().find(|t| t.id == id) {
        Some(t) => Json(t.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such todo"),
    }
}

async fn remove(State(db): State<Db>, Path(id): Path<u64>) -> Response {
    count();
    let mut db = db.write().unwrap();
    let before = db.list.len();
    db.list.retain(|t| t.id != id);
    match db.list.len() < before {
        true => StatusCode::NO_CONTENT.into_response(),
        false => error(StatusCode::NOT_FOUND, "no such todo"),
    }
}

async fn stats() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "served_by_this_loop": SERVED.with(Cell::get) }))
}

async fn echo(Json(v): Json<serde_json::Value>) -> Json<serde_json::Value> {
    Json(v)
}

/// axum's rejections and its 404/405 are plain text: answer every error as JSON instead.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if json || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let body = axum::body::to_bytes(resp.into_body(), 64 << 10)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let msg = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error"),
        t => t,
    };
    error(status, msg)
}

fn app() -> Router {
    Router::new()
        .route("/api/todos", get(list).post(create))
        .route("/api/todos/{id}", get(show).delete(remove))
        .route("/api/stats", get(stats))
        .route("/api/echo", post(echo))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(Db::default())
}

fn main() -> std::io::Result<()> {
    let opts = herd_bench_peers::from_env("axum-json-api");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads)
        .enable_all()
        .build()?;
    let app = app();
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", opts.port)).await?;
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    eprintln!("axum-json-api: accept: {e}");
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
