//! The overload guard on real loopback connections: clients that pipeline large request
//! bodies and never read the answers drive an HTTP server past a small memory budget. With the
//! guard, what the server's connections hold stays near the budget (without it, the same load
//! holds several times as much), the guard's levels are counted, and a well-behaved client on
//! other connections keeps getting answers (200, or 503 while over the budget), never a hang.

mod http_support;

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use herd::http::{Body, HttpService, Request, Response, Router};
use herd::overload::{Level, MemoryBudget};
use herd::{CloseReason, Server, ServerHandle};
use http_support::Client;

const BODY: usize = 256 * 1024;
const ATTACKERS: usize = 24;
const REQUESTS_EACH: usize = 24;

fn serve(budget: Arc<MemoryBudget>) -> ServerHandle {
    let router = Router::new()
        .get("/hello", |_: Request<Body>| Response::new(Body::from("hi")))
        .post("/echo", |req: Request<Body>| Response::new(req.into_body()));
    let server = Server::new()
        .bind("127.0.0.1:0")
        .unwrap()
        .loops(1)
        .memory_budget(budget);
    HttpService::new(router).serve(server).unwrap()
}

/// Pipeline `REQUESTS_EACH` echo requests with large bodies and never read; stop when the
/// server stops taking them (a write times out) or it closes the connection.
fn attack(addr: SocketAddr) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(mut s) = TcpStream::connect(addr) else {
            return;
        };
        s.set_write_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let head = format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {BODY}\r\n\r\n");
        let body = vec![b'x'; BODY];
        for _ in 0..REQUESTS_EACH {
            let sent = s
                .write_all(head.as_bytes())
                .and_then(|_| s.write_all(&body));
            match sent {
                Ok(()) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(_) => break,
            }
        }
        // Hold the connection (and whatever the server queued for it) a while, unread.
        std::thread::sleep(Duration::from_millis(500));
    })
}

/// Run the attack against a server with `budget`; while it runs, a well-behaved client makes
/// requests on fresh connections. Returns (peak bytes held, the client's statuses).
fn run(budget: Arc<MemoryBudget>) -> (u64, Vec<u16>, ServerHandle) {
    let server = serve(budget.clone());
    let addr = server.local_addr();
    let attackers: Vec<_> = (0..ATTACKERS).map(|_| attack(addr)).collect();
    let mut statuses = Vec::new();
    for _ in 0..30 {
        // Each answer comes within the client's bounded wait (it panics otherwise).
        let mut c = Client::connect(addr);
        statuses.push(c.get("/hello").status);
        std::thread::sleep(Duration::from_millis(10));
    }
    for a in attackers {
        a.join().unwrap();
    }
    (budget.peak(), statuses, server)
}

#[test]
fn a_small_budget_bounds_what_connections_hold_and_others_are_still_served() {
    const MIB: u64 = 1 << 20;
    // The same load with a budget too large to matter: how much it holds unguarded.
    let loose = MemoryBudget::new(1 << 40);
    let (unguarded, statuses, server) = run(loose.clone());
    assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
    server.stop(Duration::ZERO);

    let budget = MemoryBudget::new(8 * MIB);
    let (peak, statuses, server) = run(budget.clone());
    let stats = server.stop(Duration::ZERO).stats;
    eprintln!(
        "held at most: unguarded {:.1} MiB, with an 8 MiB budget {:.1} MiB; soft {} hard {}, \
         paused {}, reset {}; the other client got {statuses:?}",
        unguarded as f64 / MIB as f64,
        peak as f64 / MIB as f64,
        budget.entered(Level::Soft),
        budget.entered(Level::Hard),
        stats.overload_paused,
        stats.closed_by(CloseReason::Overload),
    );
    assert!(
        unguarded > 2 * budget.hard(),
        "the load holds {unguarded} bytes unguarded: too little to test the guard"
    );
    // One read burst (16 reads of 64 KiB, echoed) past the budget at most.
    assert!(peak < budget.hard() + 4 * MIB, "peak {peak}");
    assert!(budget.entered(Level::Soft) + budget.entered(Level::Hard) >= 1);
    assert!(stats.overload_paused + stats.closed_by(CloseReason::Overload) >= 1);
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200));
    // A stopped server holds nothing.
    assert_eq!(budget.held(), 0);
}

/// A budget so small that one read burst passes it: the hard level resets the largest
/// holders and stops accepting until the rest fits; the other client still gets answers.
#[test]
fn past_the_hard_mark_the_largest_holders_are_reset() {
    const MIB: u64 = 1 << 20;
    let budget = MemoryBudget::new(MIB);
    let (peak, statuses, server) = run(budget.clone());
    let stats = server.stop(Duration::ZERO).stats;
    eprintln!(
        "1 MiB budget: held at most {:.1} MiB; soft {} hard {}, paused {}, reset {}; the \
         other client got {statuses:?}",
        peak as f64 / MIB as f64,
        budget.entered(Level::Soft),
        budget.entered(Level::Hard),
        stats.overload_paused,
        stats.closed_by(CloseReason::Overload),
    );
    assert!(budget.entered(Level::Hard) >= 1);
    assert!(stats.closed_by(CloseReason::Overload) >= 1);
    assert!(peak < budget.hard() + 4 * MIB, "peak {peak}");
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200));
    assert_eq!(budget.held(), 0);
}
