//! The `ws_chat` example, run in-process (its `service` builder, on two loops with a
//! round-robin acceptor so consecutive clients land on different loops): members on different
//! loops see each other's messages and arrivals and departures, names are cleaned, binary
//! messages are refused, and the page is served at `/`.

#[allow(dead_code)] // the example's `main` is not called here
#[path = "../examples/ws_chat.rs"]
mod ws_chat;
mod ws_support;

use herd::proto::ws::Opcode;
use herd::ws::Room;
use herd::{AcceptMode, Balance, Server, ServerHandle};
use ws_support::{send_request, Client, Got};

fn start() -> ServerHandle {
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(2)
        .accept_mode(AcceptMode::Acceptor(Balance::RoundRobin));
    ws_chat::service(&ws_chat::page_dir(), Room::new())
        .unwrap()
        .serve(server)
        .unwrap()
}

/// The next message, which must be text.
fn line(c: &mut Client) -> String {
    match c.recv() {
        Some(Got::Text(t)) => t,
        other => panic!("expected a text message, got {other:?}"),
    }
}

#[test]
fn members_on_different_loops_hear_each_other() {
    let server = start();
    let addr = server.local_addr();
    let mut ann = Client::connect(addr, "/chat?name=Ann");
    assert_eq!(line(&mut ann), "* Ann joined (1 online)");
    let mut bob = Client::connect(addr, "/chat?name=Bob");
    assert_eq!(line(&mut bob), "* Bob joined (2 online)");
    assert_eq!(line(&mut ann), "* Bob joined (2 online)");

    let open: Vec<u64> = server.loop_stats().iter().map(|s| s.open).collect();
    assert_eq!(open, [1, 1], "one member on each loop");

    ann.text("hello Bob");
    assert_eq!(line(&mut bob), "Ann: hello Bob");
    assert_eq!(
        line(&mut ann),
        "Ann: hello Bob",
        "the sender gets its line back"
    );
    bob.text("  hi Ann  ");
    assert_eq!(line(&mut ann), "Bob: hi Ann");
    assert_eq!(line(&mut bob), "Bob: hi Ann");

    drop(bob);
    assert_eq!(line(&mut ann), "* Bob left");
    ann.text("alone now");
    assert_eq!(line(&mut ann), "Ann: alone now");
}

#[test]
fn names_are_cleaned_and_binary_is_refused() {
    let server = start();
    let mut c = Client::connect(server.local_addr(), "/chat?x=1&name=%20Zo%C3%AB+Q%0A%zz");
    assert_eq!(line(&mut c), "* Zoë Q%zz joined (1 online)");
    let mut anon = Client::connect(server.local_addr(), "/chat");
    assert_eq!(line(&mut anon), "* anon joined (2 online)");
    assert_eq!(line(&mut c), "* anon joined (2 online)");
    anon.binary(b"\x00\x01");
    assert_eq!(anon.recv(), Some(Got::Close(Some(1003))));
    // Answer the Close so the server ends the connection now, not at its close timeout.
    anon.send_frame(true, Opcode::Close, &1003u16.to_be_bytes());
    assert_eq!(line(&mut c), "* anon left");
}

#[test]
fn long_names_are_cut_to_32_characters() {
    assert_eq!(
        ws_chat::name_from_query(&format!("name={}", "é".repeat(40)))
            .chars()
            .count(),
        32
    );
    assert_eq!(ws_chat::name_from_query("name=%E2%82%AC"), "€");
    assert_eq!(ws_chat::name_from_query("name=%FF"), "\u{FFFD}");
    assert_eq!(ws_chat::name_from_query("name=%"), "%");
    assert_eq!(ws_chat::name_from_query("name=%0D%0A"), "anon");
    assert_eq!(ws_chat::name_from_query("name=a+b%2Bc"), "a b+c");
}

#[test]
fn the_page_is_served() {
    let server = start();
    let (mut s, head, mut body) = send_request(
        server.local_addr(),
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    body.extend(herd_testkit::read_to_close(&mut s));
    let file = std::fs::read(ws_chat::page_dir().join("index.html")).unwrap();
    assert_eq!(body, file);
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("new WebSocket(url)") && page.contains("/chat?name="));

    // A plain GET of /chat is not an upgrade: the static site answers it (no such file).
    let (_s, head, _) = send_request(
        server.local_addr(),
        b"GET /chat HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
}
