//! WebSocket connections served by tasks (`WsTasks`) over loopback: messages are read in
//! order by one task per connection, which awaits a sleep on a fake clock between them and
//! answers in order; a flood past the queue bound is held back and still answered whole; the
//! task's close starts the close handshake.

mod ws_support;

use std::sync::Arc;
use std::time::Duration;

use herd::clock::FakeClock;
use herd::task;
use herd::ws::{WsMessage, WsService, WsTaskConn, WsTasks};
use herd::{Server, ServerHandle};
use ws_support::{Client, Got};

/// `sleep N` waits N ms, then answers `slept N`; `bye` closes with 4001; anything else is
/// echoed.
async fn serve_conn(mut ws: WsTaskConn) {
    while let Some(msg) = ws.recv().await {
        match msg {
            WsMessage::Text(t) if t.starts_with("sleep ") => {
                let ms: u64 = t[6..].parse().unwrap_or(0);
                task::sleep(Duration::from_millis(ms)).await;
                ws.send_text(format!("slept {ms}"));
            }
            WsMessage::Text(t) if t == "bye" => ws.close(4001, "task says bye"),
            WsMessage::Text(t) => ws.send_text(format!("{} {t}", ws.path())),
            WsMessage::Binary(b) => ws.send_binary(b),
        }
    }
}

fn serve(clock: Option<&FakeClock>) -> ServerHandle {
    let mut b = Server::new().bind("127.0.0.1:0").unwrap().loops(1);
    if let Some(c) = clock {
        b = b.clock(Arc::new(c.clone()));
    }
    WsService::new(|| WsTasks::new(serve_conn))
        .path("/ws")
        .serve(b)
        .unwrap()
}

#[test]
fn a_task_answers_in_order_across_its_awaits() {
    let clock = FakeClock::new(1_000);
    let server = serve(Some(&clock));
    let mut c = Client::connect(server.local_addr(), "/ws");
    c.text("sleep 300");
    c.text("after");
    c.binary(b"\x00\x01");
    herd_testkit::wait_until("the three messages are read", || {
        server.stats().proto.ws.messages_in == 3
    });
    clock.advance(300);
    server.tick();
    assert_eq!(c.recv(), Some(Got::Text("slept 300".into())));
    assert_eq!(c.recv(), Some(Got::Text("/ws after".into())));
    assert_eq!(c.recv(), Some(Got::Binary(vec![0, 1])));
    c.text("bye");
    assert_eq!(c.recv(), Some(Got::Close(Some(4001))));
    server.stop(Duration::ZERO);
}

#[test]
fn a_flood_is_held_back_and_answered_whole() {
    let server = serve(None);
    let mut c = Client::connect(server.local_addr(), "/ws");
    let mut w = c.s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut burst = Vec::new();
        for i in 0..3_000 {
            burst.extend(ws_support::masked_text(&format!("m{i}")));
        }
        std::io::Write::write_all(&mut w, &burst).unwrap();
    });
    for i in 0..3_000 {
        assert_eq!(c.recv(), Some(Got::Text(format!("/ws m{i}"))));
    }
    writer.join().unwrap();
    server.stop(Duration::ZERO);
}
