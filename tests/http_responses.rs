//! What routes may return (`IntoResponse`), over loopback with a raw client: text, bytes, a
//! status, `(status, body)`, `Result` with `?`, JSON, HTML, redirects, from inline and async
//! routes; the router's own 404/405 in the application's format; a fallback route; per-loop
//! state that is not `Send`.

mod http_support;

use herd::http::{
    Body, Html, HttpOptions, IntoResponse, Json, Redirect, Request, Response, Router, StatusCode,
};
use http_support::{serve, Client};

fn id(req: &Request<Body>) -> Result<u32, (StatusCode, String)> {
    req.uri()
        .query()
        .unwrap_or("")
        .parse()
        .map_err(|_| (StatusCode::BAD_REQUEST, "id must be a number".to_owned()))
}

fn user(req: Request<Body>) -> Result<Json<serde_json::Value>, (StatusCode, String)> {
    let id = id(&req)?;
    Ok(Json(
        serde_json::json!({ "id": id, "name": format!("user {id}") }),
    ))
}

fn router() -> Router {
    Router::new()
        .get("/text", |_| "plain")
        .get("/string", |_| format!("made {}", 1 + 1))
        .get("/bytes", |_| vec![1u8, 2, 3])
        .get("/status", |_| StatusCode::NO_CONTENT)
        .get("/teapot", |_| (StatusCode::IM_A_TEAPOT, "short and stout"))
        .get("/user", user)
        .get("/page", |_| Html("<h1>hi</h1>"))
        .get("/old", |_| Redirect::permanent("/new"))
        .post("/form", |_| Redirect::to("/done"))
        .get("/response", |_| {
            Response::new(Body::from("a whole response")).into_response()
        })
        .get_async("/async", |req: Request<Body>| async move { user(req) })
        .error_page(|status: StatusCode| {
            (
                status,
                Json(serde_json::json!({ "error": status.as_u16() })),
            )
        })
}

#[test]
fn return_values_become_responses() {
    let server = serve(router(), HttpOptions::default());
    let mut c = Client::connect(server.local_addr());
    let r = c.get("/text");
    assert_eq!((r.status, r.text()), (200, "plain".to_owned()));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(c.get("/string").text(), "made 2");
    let r = c.get("/bytes");
    assert_eq!(
        (r.body.as_slice(), r.header("content-type")),
        (&[1u8, 2, 3][..], Some("application/octet-stream"))
    );
    let r = c.get("/status");
    assert_eq!((r.status, r.body.len()), (204, 0));
    let r = c.get("/teapot");
    assert_eq!((r.status, r.text()), (418, "short and stout".to_owned()));
    let r = c.get("/user?7");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v, serde_json::json!({ "id": 7, "name": "user 7" }));
    let r = c.get("/user?x");
    assert_eq!(
        (r.status, r.text()),
        (400, "id must be a number".to_owned())
    );
    let r = c.get("/async?8");
    assert_eq!(r.status, 200);
    assert!(r.text().contains("user 8"), "{}", r.text());
    let r = c.get("/page");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    let r = c.get("/old");
    assert_eq!((r.status, r.header("location")), (308, Some("/new")));
    c.send(b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    let r = c.response();
    assert_eq!((r.status, r.header("location")), (303, Some("/done")));
    assert_eq!(c.get("/response").text(), "a whole response");
    server.stop(std::time::Duration::ZERO);
}

#[test]
fn the_routers_own_errors_use_the_error_page_and_a_fallback_takes_the_rest() {
    let server = serve(router(), HttpOptions::default());
    let mut c = Client::connect(server.local_addr());
    let r = c.get("/nowhere");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), r#"{"error":404}"#);
    c.send(b"DELETE /text HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.response();
    assert_eq!((r.status, r.text()), (405, r#"{"error":405}"#.to_owned()));
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    server.stop(std::time::Duration::ZERO);

    let spa = router().fallback(|_| Html("<div id=app></div>"));
    let server = serve(spa, HttpOptions::default());
    let mut c = Client::connect(server.local_addr());
    let r = c.get("/deep/link/7");
    assert_eq!((r.status, r.text()), (200, "<div id=app></div>".to_owned()));
    assert_eq!(c.get("/text").text(), "plain");
    server.stop(std::time::Duration::ZERO);
}

/// Per-loop state that is not `Send`: an `Rc` counter, and the loop's thread name.
#[derive(Clone)]
struct PerLoop {
    served: std::rc::Rc<std::cell::Cell<u64>>,
    thread: String,
}

#[test]
fn routes_reach_per_loop_state_made_on_each_loop() {
    let router = Router::new().get("/count", |_: Request<Body>| {
        let st = herd::http::loop_state::<PerLoop>().expect("made for this loop");
        st.served.set(st.served.get() + 1);
        format!("{} {}", st.thread, st.served.get())
    });
    let service = herd::http::HttpService::new(router).loop_state(|| PerLoop {
        served: Default::default(),
        thread: std::thread::current().name().unwrap_or("?").to_owned(),
    });
    let server = http_support::serve_service(service, None);
    let mut c = Client::connect(server.local_addr());
    for n in 1..=3 {
        assert_eq!(c.get("/count").text(), format!("herd-loop-0 {n}"));
    }
    // Another connection on the same loop sees the same state.
    assert_eq!(
        Client::connect(server.local_addr()).get("/count").text(),
        "herd-loop-0 4"
    );
    server.stop(std::time::Duration::ZERO);
}

#[test]
fn routes_see_the_clients_address() {
    let router = Router::new()
        .get("/inline", |req: Request<Body>| {
            herd::http::client_addr(&req)
                .map(|a| a.to_string())
                .unwrap_or_default()
        })
        .get_async("/async", |req: Request<Body>| async move {
            herd::http::client_addr(&req)
                .map(|a| a.to_string())
                .unwrap_or_default()
        });
    let server = serve(router, HttpOptions::default());
    let mut c = Client::connect(server.local_addr());
    let me = c.s.local_addr().unwrap().to_string();
    assert_eq!(c.get("/inline").text(), me);
    assert_eq!(c.get("/async").text(), me);
    server.stop(std::time::Duration::ZERO);
}
