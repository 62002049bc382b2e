//! The overload guard through the `herd` binary: clients that send long lines to the echo
//! listener and never read the echoes pile output up in the worker. With `memory_budget`, the
//! worker's peak resident memory stays under the budget plus a fixed overhead (without it, the
//! same load takes several times more), the guard shows in the status JSON, and a
//! well-behaved client keeps getting its echoes.

mod server_support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use server_support::*;

const MIB: u64 = 1 << 20;
const ATTACKERS: usize = 32;

/// Peak and current resident memory of `pid` (VmHWM, VmRSS), bytes.
fn memory(pid: i32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (kb("VmHWM:"), kb("VmRSS:"))
}

/// Send 60 KiB lines until the server stops taking them, never reading the echoes; hold the
/// connection a while.
fn attack(addr: SocketAddr) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let Ok(mut s) = TcpStream::connect(addr) else {
            return;
        };
        s.set_write_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut line = vec![b'a'; 60 * 1024];
        line.push(b'\n');
        for _ in 0..200 {
            if s.write_all(&line).is_err() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(800));
    })
}

/// One herd with `extra` config, one worker: (peak RSS growth during the attack, the echoes the
/// well-behaved client got, the worker's status JSON at the end).
fn run(tag: &str, extra: &str) -> (u64, usize, serde_json::Value) {
    let site = free_port();
    let h = Herd::launch(TempDir::new(tag), 1, extra, |t| {
        t.push_str(&format!(
            "\n[[listener]]\nname = \"site\"\nbind = \"127.0.0.1:{site}\"\nprotocol = \"http\"\n"
        ))
    });
    let worker = h.wait_ready_workers(h.pid(), 1)[0];
    let (_, before) = memory(worker);
    let attackers: Vec<_> = (0..ATTACKERS).map(|_| attack(h.addr())).collect();
    let mut echoes = 0;
    for i in 0..20 {
        let line = format!("well-behaved {i}");
        assert_eq!(echo_once(h.addr(), &line).unwrap(), line);
        echoes += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    for a in attackers {
        a.join().unwrap();
    }
    let (peak, _) = memory(worker);
    let body = http_get_body(site, "/api/status");
    let status = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    (peak.saturating_sub(before), echoes, status)
}

#[test]
fn a_memory_budget_bounds_the_worker_and_others_are_still_served() {
    let (unguarded, echoes, status) = run("overload-off", "");
    assert_eq!(echoes, 20);
    assert!(status.get("overload").is_none());
    let budget = 16 * MIB;
    let (guarded, echoes, status) = run("overload-on", &format!("memory_budget = {budget}"));
    eprintln!(
        "worker peak RSS growth: unguarded {:.1} MiB, with a 16 MiB budget {:.1} MiB; {}",
        unguarded as f64 / MIB as f64,
        guarded as f64 / MIB as f64,
        status["overload"]
    );
    assert_eq!(echoes, 20);
    assert!(
        unguarded > 2 * budget,
        "the load took only {unguarded} bytes unguarded: too little to test the guard"
    );
    // The budget, plus a fixed overhead: one read burst per loop, allocator slack.
    assert!(guarded < budget + 12 * MIB, "grew by {guarded} bytes");
    let o = &status["overload"];
    assert_eq!(o["budget_bytes"], budget);
    assert!(o["soft_entered"].as_u64().unwrap() + o["hard_entered"].as_u64().unwrap() >= 1);
}
