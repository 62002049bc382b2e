//! Client limits through the `herd` binary: `limit_req`, where two worker processes share one
//! table (the master's memory file), so a client gets `rate` + `burst` requests in all, not per
//! worker, a reload keeps the table and `-t` explains a bad limit; and
//! `max_connections_per_ip` on WebSocket and frame listeners, refused and counted.

mod server_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;

use server_support::*;

/// One request on a fresh connection; the status and which worker answered.
fn get(addr: SocketAddr, path: &str, workers: &[i32]) -> (u16, Option<i32>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let owner = owner_of(&s, addr.port(), workers);
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, owner)
}

fn limited_herd(tag: &str, workers: usize, limit: &str) -> (Herd, SocketAddr, u16) {
    let site = free_port();
    let admin = free_port();
    let limit = limit.to_owned();
    let h = Herd::launch(TempDir::new(tag), workers, "", move |t| {
        t.push_str(&format!(
            "\n[[listener]]\nname = \"site\"\nbind = \"127.0.0.1:{site}\"\nprotocol = \"http\"\n\
             limit_req = {{ {limit} }}\n\
             \n[[listener]]\nname = \"admin\"\nbind = \"127.0.0.1:{admin}\"\nprotocol = \"admin\"\n"
        ))
    });
    (h, SocketAddr::from(([127, 0, 0, 1], site)), admin)
}

fn metric(admin: u16, series: &str) -> u64 {
    http_get_body(admin, "/metrics")
        .lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn two_workers_share_one_limit_and_a_reload_keeps_it() {
    // One request a minute and a burst of 4: five pass in all during this test (which takes
    // well under a minute), whichever worker each connection lands on.
    let (h, addr, admin) = limited_herd(
        "limit-req",
        2,
        "rate = \"1r/m\", burst = 4, nodelay = true, status = 429",
    );
    let workers = h.wait_ready_workers(h.pid(), 2);
    let mut passed = 0;
    let mut refused = 0;
    let mut owners = std::collections::HashSet::new();
    let mut tries = 0;
    // Until both workers have answered at least once (reuseport spreads new connections by
    // their ports), and at least 20 requests.
    while (tries < 20 || owners.len() < 2) && tries < 400 {
        tries += 1;
        let (status, owner) = get(addr, "/", &workers);
        owners.extend(owner);
        match status {
            200 => passed += 1,
            429 => refused += 1,
            other => panic!("status {other}"),
        }
    }
    assert_eq!(owners.len(), 2, "both workers served");
    assert_eq!(passed, 5, "rate + burst in all, not per worker");
    assert_eq!(refused, tries - 5);
    wait_until("the refusals in /metrics", || {
        metric(
            admin,
            "herd_http_limit_req_total{listener=\"site\",protocol=\"http\",outcome=\"rejected\"}",
        ) == refused as u64
    });
    // A reload keeps the table: the bucket is still full.
    let master = h.pid();
    h.signal(Signal::Hup);
    h.wait_log("configuration reloaded: generation 2", |l| l.pid == master);
    wait_until("old workers retired", || {
        let kids = children(master);
        kids.len() == 2 && kids.iter().all(|k| !workers.contains(k))
    });
    let new = h.wait_ready_workers(master, 2);
    let mut answered = std::collections::HashSet::new();
    for _ in 0..400 {
        let (status, owner) = get(addr, "/", &new);
        assert_eq!(status, 429, "the bucket survived the reload");
        answered.extend(owner);
        if answered.len() == 2 {
            break;
        }
    }
    assert_eq!(answered.len(), 2, "both new workers answered");
}

#[test]
fn config_test_explains_a_bad_limit() {
    let dir = TempDir::new("limit-req-t");
    let config = dir.path("herd.toml");
    for (limit, want) in [
        ("rate = \"fast\"", "limit_req.rate"),
        ("rate = \"10r/s\", status = 200", "limit_req.status"),
        ("rate = \"1r/m\", burst = 10000", "limit_req.burst"),
        ("burst = 5", "limit_req.rate"),
    ] {
        std::fs::write(
            &config,
            format!(
                "[[listener]]\nbind = \"127.0.0.1:{}\"\nprotocol = \"http\"\nlimit_req = {{ {limit} }}\n",
                free_port()
            ),
        )
        .unwrap();
        let out = Command::new(herd_bin())
            .arg("-t")
            .arg("-c")
            .arg(&config)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{limit}: {text}");
        assert!(text.contains(want), "{limit}: {text}");
    }
}

#[test]
fn max_connections_per_ip_covers_ws_and_frame_listeners_and_is_counted() {
    use std::time::{Duration, Instant};
    let (ws, frame, admin) = (free_port(), free_port(), free_port());
    let h = Herd::launch(TempDir::new("per-ip"), 1, "", move |t| {
        t.push_str(&format!(
            "\n[[listener]]\nname = \"ws\"\nbind = \"127.0.0.1:{ws}\"\nprotocol = \"ws\"\n\
             max_connections_per_ip = 1\n\
             \n[[listener]]\nname = \"fr\"\nbind = \"127.0.0.1:{frame}\"\nprotocol = \"frame\"\n\
             max_connections_per_ip = 1\n\
             \n[[listener]]\nname = \"admin\"\nbind = \"127.0.0.1:{admin}\"\nprotocol = \"admin\"\n"
        ))
    });
    h.wait_ready_workers(h.pid(), 1);
    // The first connection to each is served.
    let frame_addr = SocketAddr::from(([127, 0, 0, 1], frame));
    let mut first_frame = herd::frame::Client::connect(frame_addr).unwrap();
    assert_eq!(first_frame.call_raw(1, b"one").unwrap(), b"one");
    let _first_ws = TcpStream::connect(("127.0.0.1", ws)).unwrap();
    // A second one from the same address is closed at once.
    for port in [ws, frame] {
        let mut second = TcpStream::connect(("127.0.0.1", port)).unwrap();
        second.set_read_timeout(Some(WAIT)).unwrap();
        let _ = second.write_all(b"x");
        let start = Instant::now();
        let mut buf = [0u8; 16];
        let n = second.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "port {port}: the second connection was served");
        assert!(start.elapsed() < Duration::from_secs(10));
    }
    for (listener, protocol) in [("ws", "ws"), ("fr", "frame")] {
        let series = format!(
            "herd_connections_refused_total{{listener=\"{listener}\",protocol=\"{protocol}\",limit=\"per_ip\"}}"
        );
        wait_until("the refusal in /metrics", || metric(admin, &series) == 1);
    }
    // The first frame connection is still served.
    assert_eq!(first_frame.call_raw(1, b"two").unwrap(), b"two");
}
