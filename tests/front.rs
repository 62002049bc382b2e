//! The `front` example, run in-process and driven with curl: a merged answer from the frame
//! and the HTTP backend; a backend that is down (refused) gives 502 naming it; a backend that
//! never answers gives 504 naming it once the front's fake clock passes the call's limit; 100
//! requests at once (curl --parallel) all answer 200 with their own user's data.

#[allow(dead_code)] // the example's `main` is not called here
#[path = "../examples/front.rs"]
mod front;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use herd::clock::FakeClock;
use herd::{Server, ServerHandle};
use herd_testkit::{wait_until, WAIT};
use serde_json::Value;

struct Setup {
    front: ServerHandle,
    _backends: Vec<ServerHandle>,
    frame_held: Arc<AtomicUsize>,
    http_held: Arc<AtomicUsize>,
}

/// A loopback address nothing listens on (bound once, then released).
fn dead_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Both backends (or a dead address for the one named in `down`) and the front on `clock`.
fn setup(down: Option<&str>, timeout: Duration, clock: Option<&FakeClock>) -> Setup {
    let (frame_held, http_held) = (Arc::default(), Arc::default());
    let mut backends = Vec::new();
    let frame = if down == Some("frame") {
        dead_addr()
    } else {
        backends.push(front::frame_backend("127.0.0.1:0", Arc::clone(&frame_held)).unwrap());
        backends.last().unwrap().local_addr()
    };
    let http = if down == Some("http") {
        dead_addr()
    } else {
        backends.push(front::http_backend("127.0.0.1:0", Arc::clone(&http_held)).unwrap());
        backends.last().unwrap().local_addr()
    };
    let mut server = Server::new().bind("127.0.0.1:0").unwrap().loops(1);
    if let Some(c) = clock {
        server = server.clock(Arc::new(c.clone()));
    }
    let svc = front::front_service(front::Backends {
        frame,
        http,
        timeout,
    });
    Setup {
        front: svc.serve(server).unwrap(),
        _backends: backends,
        frame_held,
        http_held,
    }
}

fn url(front: &ServerHandle, user: &str) -> String {
    format!("http://{}/front?user={user}", front.local_addr())
}

/// curl's status code and body for one URL.
fn curl(url: &str) -> (u16, Value) {
    let out = Command::new("curl")
        .args(["-s", "-m", "20", "-w", "\n%{http_code}", url])
        .output()
        .expect("curl runs");
    parse(&String::from_utf8_lossy(&out.stdout))
}

fn parse(out: &str) -> (u16, Value) {
    let (body, code) = out.rsplit_once('\n').expect("a status line from curl");
    (
        code.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// The `failed` entry for `backend`, if any.
fn failure<'a>(body: &'a Value, backend: &str) -> Option<&'a Value> {
    body["failed"]
        .as_array()?
        .iter()
        .find(|f| f["backend"] == backend)
}

#[test]
fn merges_both_answers() {
    let s = setup(None, Duration::from_secs(10), None);
    let (code, body) = curl(&url(&s.front, "ann"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["user"], "ann");
    assert_eq!(body["score"], 317);
    assert_eq!(body["profile"]["name"], "ANN");
    assert_eq!(body["profile"]["user"], "ann");
}

#[test]
fn a_backend_down_is_a_502_naming_it() {
    for down in ["frame", "http"] {
        let s = setup(Some(down), Duration::from_secs(10), None);
        let (code, body) = curl(&url(&s.front, "bob"));
        assert_eq!(code, 502, "{down} down: {body}");
        let f = failure(&body, down).unwrap_or_else(|| panic!("{down} named in {body}"));
        assert_eq!(f["error"], "down");
        let other = if down == "frame" { "http" } else { "frame" };
        assert!(failure(&body, other).is_none(), "{body}");
    }
}

#[test]
fn a_backend_that_does_not_answer_is_a_504_on_the_loop_clock() {
    for slow in ["frame", "http"] {
        let clock = FakeClock::new(1_000);
        let s = setup(None, Duration::from_millis(500), Some(&clock));
        let held = if slow == "frame" {
            &s.frame_held
        } else {
            &s.http_held
        };
        let mut child = Command::new("curl")
            .args(["-s", "-m", "20", "-w", "\n%{http_code}"])
            .arg(url(&s.front, &format!("slow-{slow}")))
            .stdout(Stdio::piped())
            .spawn()
            .expect("curl runs");
        // The backend holds the call; until the clock moves, the front waits with it.
        wait_until("the backend holds the call", || {
            held.load(Ordering::SeqCst) == 1
        });
        assert!(
            child.try_wait().unwrap().is_none(),
            "answered before the limit"
        );
        clock.advance(499);
        s.front.tick();
        // (The front's loop has seen the tick once a later request is answered.)
        let (code, _) = curl(&url(&s.front, "probe"));
        assert_eq!(code, 200);
        assert!(
            child.try_wait().unwrap().is_none(),
            "answered before the limit"
        );
        clock.advance(1);
        s.front.tick();
        let out = child.wait_with_output().unwrap();
        let (code, body) = parse(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(code, 504, "{slow} slow: {body}");
        let f = failure(&body, slow).unwrap_or_else(|| panic!("{slow} named in {body}"));
        assert_eq!(f["error"], "timeout");
    }
}

#[test]
fn a_hundred_requests_at_once() {
    let s = setup(None, Duration::from_secs(10), None);
    let dir = std::env::temp_dir().join(format!("herd-front-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-Z", "--parallel-max", "100", "-m", "20"]);
    for i in 0..100 {
        cmd.arg("-o")
            .arg(dir.join(format!("r{i}")))
            .arg(url(&s.front, &format!("u{i}")));
    }
    let started = Instant::now();
    let status = cmd.stderr(Stdio::null()).status().expect("curl runs");
    assert!(status.success(), "curl: {status}");
    assert!(started.elapsed() < WAIT);
    for i in 0..100 {
        let text = std::fs::read_to_string(dir.join(format!("r{i}"))).unwrap();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let user = format!("u{i}");
        assert_eq!(body["user"], user.as_str(), "{text}");
        assert_eq!(
            body["profile"]["name"],
            user.to_uppercase().as_str(),
            "{text}"
        );
        let score: u64 = user.bytes().map(u64::from).sum();
        assert_eq!(body["score"], score, "{text}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
