//! The `json_api` example, run in-process on two loops and driven by real clients: curl for
//! the todo list's life cycle and every error answer (bad JSON 400, wrong content type 415,
//! unknown id 404, each in the app's JSON format), python3's urllib for a query filter and
//! the static files.

#[allow(dead_code)] // the example's `main` is not called here
#[path = "../examples/json_api.rs"]
mod json_api;
mod python_support;

use std::net::SocketAddr;
use std::process::Command;

use herd::{Server, ServerHandle};

fn start(root: &str) -> ServerHandle {
    let server = Server::new().bind("127.0.0.1:0").unwrap().loops(2);
    json_api::service(Some(root))
        .unwrap()
        .serve(server)
        .unwrap()
}

/// curl's status code and body for `args` against `path`.
fn curl(addr: SocketAddr, path: &str, args: &[&str]) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    let json = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
    };
    (code.trim().parse().unwrap(), json)
}

const JSON: [&str; 2] = ["-H", "content-type: application/json"];

#[test]
fn todo_life_cycle_and_errors_through_curl_and_python() {
    let dir = std::env::temp_dir().join(format!("herd-json-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<h1>todos</h1>").unwrap();
    let server = start(dir.to_str().unwrap());
    let a = server.local_addr();

    let (s, t) = curl(
        a,
        "/api/todos",
        &[&JSON[..], &["-d", r#"{"title":"milk"}"#]].concat(),
    );
    assert_eq!(
        (s, t["id"].as_u64(), t["done"].as_bool()),
        (201, Some(1), Some(false))
    );
    let (s, _) = curl(
        a,
        "/api/todos",
        &[&JSON[..], &["-d", r#"{"title":"eggs","done":true}"#]].concat(),
    );
    assert_eq!(s, 201);
    let (s, t) = curl(a, "/api/todos", &[]);
    assert_eq!((s, t.as_array().map(Vec::len)), (200, Some(2)));
    let (s, t) = curl(a, "/api/todos/2", &[]);
    assert_eq!((s, t["title"].as_str()), (200, Some("eggs")));

    // Errors, all in the app's {"error": ...} format.
    let (s, t) = curl(
        a,
        "/api/todos",
        &[&JSON[..], &["-d", r#"{"title": 5"#]].concat(),
    );
    assert_eq!(s, 400);
    assert!(t["error"].as_str().unwrap().contains("line 1"), "{t}");
    let (s, t) = curl(
        a,
        "/api/todos",
        &["-H", "content-type: text/plain", "-d", "{}"],
    );
    assert_eq!(s, 415);
    assert!(
        t["error"].as_str().unwrap().contains("application/json"),
        "{t}"
    );
    let (s, t) = curl(a, "/api/todos/99", &[]);
    assert_eq!((s, t["error"].as_str()), (404, Some("no such todo")));
    let (s, t) = curl(a, "/api/todos/abc", &[]);
    assert_eq!(s, 400, "{t}");
    let (s, t) = curl(a, "/api/todos?done=maybe", &[]);
    assert_eq!(s, 400, "{t}");
    let (s, t) = curl(a, "/api/todos/1", &["-X", "PUT"]);
    assert_eq!((s, t["error"].as_str()), (405, Some("Method Not Allowed")));

    let (s, _) = curl(a, "/api/todos/1", &["-X", "DELETE"]);
    assert_eq!(s, 204);
    let (s, _) = curl(a, "/api/todos/1", &["-X", "DELETE"]);
    assert_eq!(s, 404);
    let (s, t) = curl(a, "/api/stats", &[]);
    assert_eq!(s, 200);
    assert!(t["served_by_this_loop"].as_u64().is_some(), "{t}");

    // python3: the filter and a static file.
    let script = format!(
        r#"
import json, urllib.request
base = "http://{a}"
done = json.load(urllib.request.urlopen(base + "/api/todos?done=true", timeout=10))
assert [t["title"] for t in done] == ["eggs"], done
assert json.load(urllib.request.urlopen(base + "/api/todos?done=false", timeout=10)) == []
page = urllib.request.urlopen(base + "/index.html", timeout=10).read()
assert page == b"<h1>todos</h1>", page
print("ok")
"#
    );
    python_support::run_ok(&script);

    server.stop(std::time::Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(&dir);
}
