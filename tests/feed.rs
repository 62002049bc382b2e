//! The `feed` example (docs/handles.md), run in-process on two loops with a round-robin
//! acceptor, so the subscribers live on different loops. Three python3 clients subscribe; the
//! test publishes from its own thread (like the example's feed thread, it runs no loop), and
//! every subscriber gets every line; a client that closes leaves the set, lines published
//! while it is closing reach the others intact, and one that unsubscribes is left out. The
//! python script and the test take turns over its stdin and stdout.

#[allow(dead_code)] // the example's `main` is not called here
#[path = "../examples/feed.rs"]
mod feed;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use herd::{AcceptMode, Balance, Server};
use herd_testkit::wait_until;

const CLIENTS: &str = r#"
import socket, sys

def say(word):
    print(word, flush=True)

def wait(word):
    got = sys.stdin.readline().strip()
    assert got == word, (got, word)

def connect():
    s = socket.create_connection(("127.0.0.1", {port}), timeout=10)
    s.settimeout(10)
    return s, s.makefile("rb")

def line(f):
    got = f.readline()
    assert got.endswith(b"\n"), got
    return got.decode().rstrip("\n")

clients = [connect() for _ in range(3)]
for s, f in clients:
    s.sendall(b"subscribe\n")
    assert line(f) == "subscribed"
say("subscribed")

wait("published 1")
for s, f in clients:
    assert line(f) == "line 1"

clients[0][1].close()  # the socket only closes once its file object is closed too
clients[0][0].close()
say("closed")

wait("published 2")
for s, f in clients[1:]:
    assert line(f) == "line 2"

clients[1][0].sendall(b"unsubscribe\n")
assert line(clients[1][1]) == "unsubscribed"
say("unsubscribed")

wait("published 3")
assert line(clients[2][1]) == "line 3"
clients[1][0].sendall(b"help\n")  # the next thing client 1 reads is this answer, not line 3
assert line(clients[1][1]) == "commands: subscribe, unsubscribe"
say("ok")
"#;

#[test]
fn every_subscriber_gets_every_line_and_closed_ones_drop_out() {
    let feed = feed::Feed::default();
    let for_loops = feed.clone();
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(2)
        .accept_mode(AcceptMode::Acceptor(Balance::RoundRobin))
        .serve(move || feed::Subscriptions::new(for_loops.clone()))
        .unwrap();
    let mut py = Command::new("python3")
        .arg("-c")
        .arg(CLIENTS.replace("{port}", &server.local_addr().port().to_string()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs"); // its stderr (a failed assert) goes to the test's
    let mut to_py = py.stdin.take().unwrap();
    let mut from_py = BufReader::new(py.stdout.take().unwrap());
    let mut expect = |word: &str| {
        let mut got = String::new();
        from_py.read_line(&mut got).unwrap();
        assert_eq!(got.trim(), word, "python's turn (see its stderr above)");
    };
    // From a plain thread, as the example's feed thread does.
    let publish = |line: &'static str| {
        let feed = feed.clone();
        std::thread::spawn(move || feed.publish(line))
            .join()
            .unwrap()
    };

    expect("subscribed");
    assert_eq!(feed.subscribers(), 3);
    let open: Vec<u64> = server.loop_stats().iter().map(|s| s.open).collect();
    assert!(open.len() == 2 && open.iter().all(|&n| n > 0), "{open:?}");
    assert_eq!(publish("line 1"), 3);
    writeln!(to_py, "published 1").unwrap();

    expect("closed");
    // Published while the closed client may still be in the set: its copy is dropped (and
    // counted as stale if its loop had already closed it); the others get theirs.
    let sent = publish("line 2");
    assert!(sent == 3 || sent == 2, "{sent}");
    wait_until("the closed client leaves the set", || {
        feed.subscribers() == 2
    });
    writeln!(to_py, "published 2").unwrap();

    expect("unsubscribed");
    assert_eq!(feed.subscribers(), 1);
    assert_eq!(publish("line 3"), 1);
    writeln!(to_py, "published 3").unwrap();
    expect("ok");
    drop(to_py);
    assert!(py.wait().unwrap().success());
    wait_until("python's connections are closed", || {
        server.stats().open == 0
    });
    assert_eq!(feed.subscribers(), 0);
    let stats = server.stats();
    assert!(stats.stale_commands <= 1, "{stats:?}");
}
