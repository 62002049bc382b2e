//! A small JSON API on herd's typed extractors (docs/http.md): a todo list with static files.
//!
//! `cargo run --example json_api -- --port 8080 --root ./public`, then
//! `curl -d '{"title":"milk"}' -H 'content-type: application/json' 127.0.0.1:8080/api/todos`,
//! `curl '127.0.0.1:8080/api/todos?done=false'`, `curl -X DELETE 127.0.0.1:8080/api/todos/1`.
//! The list is shared by all loops behind an `RwLock` (`State`); each loop counts the requests
//! it served in an `Rc<Cell>` (`LoopState`, not `Send`), shown by `GET /api/stats`. Errors,
//! the extractors' rejections included, are JSON: `{"error": "..."}`. `POST /api/echo` is the
//! JSON benchmark's route (bench/json.sh).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::{Arc, RwLock};

use herd::args::ServeArgs;
use herd::http::extract::{LoopState, Path, Query, Rejection, State};
use herd::http::{HttpService, Json, Router, StaticDir, StatusCode};
use herd::Server;
use serde::{Deserialize, Serialize};

#[derive(Clone, Serialize)]
pub struct Todo {
    id: u64,
    title: String,
    done: bool,
}

#[derive(Deserialize)]
pub struct NewTodo {
    title: String,
    #[serde(default)]
    done: bool,
}

#[derive(Deserialize)]
pub struct Filter {
    done: Option<bool>,
}

#[derive(Default)]
pub struct Todos {
    next: u64,
    list: Vec<Todo>,
}

type Db = Arc<RwLock<Todos>>;

/// Requests served by this loop (one thread: no atomics).
#[derive(Clone, Default)]
pub struct Served(Rc<Cell<u64>>);

type ApiError = (StatusCode, Json<serde_json::Value>);

fn error(status: StatusCode, msg: &str) -> ApiError {
    (status, Json(serde_json::json!({ "error": msg })))
}

fn count(LoopState(s): &LoopState<Served>) {
    s.0.set(s.0.get() + 1);
}

/// The todo list's routes, static files from `root` under `/`.
pub fn router(root: Option<&str>) -> std::io::Result<Router> {
    let mut r = Router::new()
        .get_with(
            "/api/todos",
            |n: LoopState<Served>, State(db): State<Db>, Query(f): Query<Filter>| {
                count(&n);
                let db = db.read().unwrap();
                let list: Vec<Todo> = db
                    .list
                    .iter()
                    .filter(|t| f.done.map_or(true, |d| t.done == d))
                    .cloned()
                    .collect();
                Json(list)
            },
        )
        .post_with(
            "/api/todos",
            |n: LoopState<Served>, State(db): State<Db>, Json(new): Json<NewTodo>| {
                count(&n);
                let mut db = db.write().unwrap();
                db.next += 1;
                let todo = Todo {
                    id: db.next,
                    title: new.title,
                    done: new.done,
                };
                db.list.push(todo.clone());
                (StatusCode::CREATED, Json(todo))
            },
        )
        .get_with(
            "/api/todos/:id",
            |n: LoopState<Served>, State(db): State<Db>, Path(id): Path<u64>| {
                count(&n);
                let db = db.read().unwrap();
                match db.list.iter().find(|t| t.id == id) {
                    Some(t) => Ok(Json(t.clone())),
                    None => Err(error(StatusCode::NOT_FOUND, "no such todo")),
                }
            },
        )
        .delete_with(
            "/api/todos/:id",
            |n: LoopState<Served>, State(db): State<Db>, Path(id): Path<u64>| {
                count(&n);
                let mut db = db.write().unwrap();
                let before = db.list.len();
                db.list.retain(|t| t.id != id);
                match db.list.len() < before {
                    true => Ok(StatusCode::NO_CONTENT),
                    false => Err(error(StatusCode::NOT_FOUND, "no such todo")),
                }
            },
        )
        .get_with("/api/stats", |LoopState(s): LoopState<Served>| {
            Json(serde_json::json!({ "served_by_this_loop": s.0.get() }))
        })
        .post_with("/api/echo", |Json(v): Json<serde_json::Value>| Json(v))
        .with_state(Db::default())
        .rejection(|r: Rejection| error(r.status(), r.message()))
        .error_page(|s: StatusCode| error(s, s.canonical_reason().unwrap_or("error")));
    if let Some(root) = root {
        r = r.statics("/", StaticDir::new(root)?);
    }
    Ok(r)
}

/// The service: the router and the per-loop counter.
pub fn service(root: Option<&str>) -> std::io::Result<HttpService> {
    Ok(HttpService::new(router(root)?).loop_state(Served::default))
}

fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(8080);
    let root = args.get::<String>("root");
    let server =
        service(root.as_deref())?.serve(Server::new().bind(args.addr())?.loops(args.loops))?;
    eprintln!(
        "json_api: listening on http://{}/api/todos",
        server.local_addr()
    );
    server.join();
    Ok(())
}
