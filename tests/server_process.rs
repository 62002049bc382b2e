//! Process-level tests of the `herd` binary: real master and worker processes, real signals,
//! loopback clients (the built-in line echo protocol), bounded waits.

mod server_support;

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use server_support::*;

#[test]
fn killed_worker_is_back_within_a_second_and_the_listener_never_closes() {
    let h = Herd::start("kill9", 2);
    let master = h.pid();
    let workers = h.wait_ready_workers(master, 2);
    // Persistent connections, each attributed to the worker process that serves it.
    let mut conns: Vec<(Persistent, i32)> = (0..8)
        .map(|i| {
            let mut p = Persistent::connect(h.addr());
            assert_eq!(p.echo(&format!("hello {i}")).unwrap(), format!("hello {i}"));
            let owner = owner_of(&p.stream, h.port, &workers).expect("connection owner");
            (p, owner)
        })
        .collect();
    let victim = conns[0].1;
    let load = Load::start(h.addr(), 2);
    load.wait_progress(50);

    let killed_at = Instant::now();
    kill(victim, Signal::Kill).unwrap();
    let mut replacement = 0;
    wait_until("a replacement worker that is ready", || {
        let kids = children(master);
        let lines = h.log_lines();
        replacement = kids
            .iter()
            .copied()
            .find(|k| {
                !workers.contains(k)
                    && lines
                        .iter()
                        .any(|l| l.pid == master && l.msg.contains(&format!("ready (pid {k},")))
            })
            .unwrap_or(0);
        replacement != 0
    });
    let back_after = killed_at.elapsed();
    assert!(
        back_after < Duration::from_secs(1),
        "respawn took {back_after:?}"
    );
    load.wait_progress(50);
    let report = load.finish();

    assert_eq!(
        report.refused(),
        0,
        "the listener closed: {:?}",
        report.failures
    );
    assert!(
        report.failures.len() <= 2,
        "more failures than requests in flight: {:?}",
        report.failures
    );
    for (i, (p, owner)) in conns.iter_mut().enumerate() {
        let r = p.echo(&format!("again {i}"));
        if *owner == victim {
            assert!(r.is_err(), "a connection of the killed worker survived");
        } else {
            assert_eq!(r.unwrap(), format!("again {i}"));
        }
    }
    let died = h.wait_log(&format!("(pid {victim}) died"), |l| l.pid == master);
    assert_eq!(died.level, "WARN");
    assert!(children(master).contains(&replacement));
}

#[test]
fn hup_under_load_loses_nothing_and_applies_the_new_config() {
    let h = Herd::start("hup", 2);
    let master = h.pid();
    let old = h.wait_ready_workers(master, 2);
    let load = Load::start(h.addr(), 2);
    load.wait_progress(50);

    // The new configuration adds a listener.
    let port2 = free_port();
    let mut text = std::fs::read_to_string(&h.config).unwrap();
    text.push_str(&format!(
        "\n[[listener]]\nname = \"echo2\"\nbind = \"127.0.0.1:{port2}\"\nprotocol = \"echo\"\n"
    ));
    std::fs::write(&h.config, text).unwrap();
    h.signal(Signal::Hup);
    h.wait_log("configuration reloaded: generation 2", |l| l.pid == master);
    wait_until("old workers retired", || {
        let kids = children(master);
        kids.len() == 2 && kids.iter().all(|k| !old.contains(k))
    });
    let new = h.wait_ready_workers(master, 2);
    for w in &old {
        h.wait_log(&format!("(pid {w}) exited (exit status: 0)"), |l| {
            l.pid == master
        });
    }
    load.wait_progress(50);
    let report = load.finish();

    assert!(
        report.failures.is_empty(),
        "failed requests: {:?}",
        report.failures
    );
    assert!(report.ok >= 100);
    assert!(new.iter().all(|w| !old.contains(w)));
    let addr2 = SocketAddr::from(([127, 0, 0, 1], port2));
    assert_eq!(echo_once(addr2, "new listener").unwrap(), "new listener");
}

/// The drain that loses nothing: 20 keep-alive HTTP clients sending each request the moment
/// the previous answer is in, through five reloads. A retiring worker answers each next
/// request with `Connection: close` and closes a connection only once it has been quiet for
/// `drain_grace`, so no client sees a request cut off (nginx loses one per connection here).
/// A herd with the echo listener and an HTTP one (the bundled site), `workers` workers, all
/// ready; the HTTP listener's address.
fn http_herd(tag: &str, workers: usize) -> (Herd, SocketAddr) {
    let site = free_port();
    let h = Herd::launch(TempDir::new(tag), workers, "drain_grace = \"2s\"", |t| {
        t.push_str(&format!(
            "\n[[listener]]\nname = \"site\"\nbind = \"127.0.0.1:{site}\"\nprotocol = \"http\"\n"
        ))
    });
    h.wait_ready_workers(h.pid(), workers);
    (h, SocketAddr::from(([127, 0, 0, 1], site)))
}

/// Stop `load` and assert that every request got its answer.
fn assert_nothing_lost(load: HttpLoad, at_least: u64) -> u64 {
    let (ok, closes, failures) = load.finish();
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok >= at_least, "only {ok} requests");
    closes
}

#[test]
fn five_hups_under_keep_alive_http_load_lose_no_request() {
    let (h, addr) = http_herd("drain", 2);
    let master = h.pid();
    let mut workers = h.wait_ready_workers(master, 2);
    let load = HttpLoad::start(addr, 20, "/api/status");
    load.wait_progress(200);
    for generation in 2..=6 {
        h.signal(Signal::Hup);
        h.wait_log(
            &format!("configuration reloaded: generation {generation}"),
            |l| l.pid == master,
        );
        let old = workers.clone();
        wait_until("old workers retired", || {
            let kids = children(master);
            kids.len() == 2 && kids.iter().all(|k| !old.contains(k))
        });
        workers = h.wait_ready_workers(master, 2);
        load.wait_progress(200);
    }
    let closes = assert_nothing_lost(load, 1200);
    // Each retiring worker told its kept-alive clients to reconnect.
    assert!(closes >= 5, "only {closes} Connection: close answers");
}

/// A binary upgrade (USR2, then QUIT to the old master) under the same load.
#[test]
fn usr2_and_quit_under_keep_alive_http_load_lose_no_request() {
    let (mut h, addr) = http_herd("drain-upgrade", 2);
    let old_master = h.pid();
    let load = HttpLoad::start(addr, 20, "/api/status");
    load.wait_progress(200);
    h.signal(Signal::Usr2);
    let mut new_master = 0;
    wait_until("the new master's pid file", || {
        new_master = h.pid_in_file(&h.pid_file).unwrap_or(0);
        new_master != 0 && new_master != old_master
    });
    h.also_kill.push(new_master);
    h.wait_ready_workers(new_master, 2);
    load.wait_progress(200);
    h.signal(Signal::Quit);
    assert!(h.wait_exit().success());
    load.wait_progress(200);
    assert_nothing_lost(load, 600);
    kill(new_master, Signal::Term).unwrap();
    wait_until("new master exit", || !alive(new_master));
}

/// A reload to fewer workers under the same load: the dropped slot's worker drains too.
#[test]
fn a_shrinking_reload_under_keep_alive_http_load_loses_no_request() {
    let (h, addr) = http_herd("drain-shrink", 2);
    let master = h.pid();
    let old = h.wait_ready_workers(master, 2);
    let load = HttpLoad::start(addr, 20, "/api/status");
    load.wait_progress(200);
    let text = std::fs::read_to_string(&h.config)
        .unwrap()
        .replace("workers = 2", "workers = 1");
    std::fs::write(&h.config, text).unwrap();
    h.signal(Signal::Hup);
    h.wait_log("configuration reloaded: generation 2", |l| l.pid == master);
    wait_until("old workers retired", || {
        let kids = children(master);
        kids.len() == 1 && !old.contains(&kids[0])
    });
    load.wait_progress(200);
    assert_nothing_lost(load, 400);
}

/// A reload to fewer workers must not reset connections waiting in the accept queue of a
/// slot that no longer has a worker: worker 1 is held stopped (SIGSTOP) while 32 clients
/// connect and send a line, so the ones the kernel routed to slot 1's socket wait there; after
/// a reload to one worker, all 32 get their echo from the new worker.
#[test]
fn hup_to_fewer_workers_serves_the_connections_queued_on_the_dropped_slot() {
    let h = Herd::start("shrink", 2);
    let master = h.pid();
    let old = h.wait_ready_workers(master, 2);
    let started = h.wait_log("worker 1 started (pid", |l| l.pid == master);
    let pid_text = started.msg.split("pid ").nth(1).unwrap();
    let slot1: i32 = pid_text[..pid_text.find(',').unwrap()].parse().unwrap();
    assert!(old.contains(&slot1));
    kill(slot1, Signal::Stop).unwrap();
    // The stop reaches each thread when it next leaves the kernel; until all of them show 'T',
    // the worker's loop could still accept one of the clients below and then hold it.
    wait_until("worker 1 stopped", || all_threads_stopped(slot1));

    // SO_REUSEPORT spreads these over both slots' sockets by their ports: with 32 of them,
    // all landing on slot 0 has a chance of 2^-32.
    let mut clients: Vec<Persistent> = (0..32)
        .map(|i| {
            let mut p = Persistent::connect(h.addr());
            p.send_raw(format!("queued {i}\n").as_bytes());
            p
        })
        .collect();

    let text = std::fs::read_to_string(&h.config)
        .unwrap()
        .replace("workers = 2", "workers = 1");
    std::fs::write(&h.config, text).unwrap();
    h.signal(Signal::Hup);
    h.wait_log("configuration reloaded: generation 2", |l| l.pid == master);
    h.wait_log("keeping listener", |l| l.pid == master);
    for (i, p) in clients.iter_mut().enumerate() {
        assert_eq!(
            p.read_line().unwrap_or_else(|e| panic!("client {i}: {e}")),
            format!("queued {i}\n"),
            "client {i}"
        );
    }
    // Nothing reached the stopped worker; let it finish its graceful stop.
    kill(slot1, Signal::Cont).unwrap();
    h.wait_log(&format!("(pid {slot1}) "), |l| l.pid == master);
    assert_eq!(echo_once(h.addr(), "after").unwrap(), "after");
}

#[test]
fn hup_with_a_broken_config_keeps_serving_the_old_one() {
    let h = Herd::start("badhup", 2);
    let master = h.pid();
    let workers = h.wait_ready_workers(master, 2);
    let good = std::fs::read_to_string(&h.config).unwrap();

    // A syntax error.
    std::fs::write(&h.config, "workers = [\n").unwrap();
    h.signal(Signal::Hup);
    let e = h.wait_log("reload failed", |l| l.pid == master);
    assert_eq!(e.level, "ERROR");
    assert!(e.msg.contains("keeping the old configuration"), "{}", e.msg);
    assert_eq!(echo_once(h.addr(), "still here").unwrap(), "still here");

    // Valid TOML, but a port someone else holds: fails when binding.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    std::fs::write(
        &h.config,
        format!("{good}\n[[listener]]\nbind = \"127.0.0.1:{busy}\"\nprotocol = \"echo\"\n"),
    )
    .unwrap();
    h.signal(Signal::Hup);
    wait_until("second reload failure", || {
        h.log_lines()
            .iter()
            .filter(|l| l.pid == master && l.msg.contains("reload failed"))
            .count()
            == 2
    });
    let lines = h.log_lines();
    let second = lines
        .iter()
        .filter(|l| l.msg.contains("reload failed"))
        .nth(1)
        .unwrap();
    assert!(second.msg.contains(&busy.to_string()), "{}", second.msg);
    assert!(!lines.iter().any(|l| l.msg.contains("generation 2")));
    assert_eq!(children(master), workers, "workers were replaced");
    assert_eq!(echo_once(h.addr(), "old config").unwrap(), "old config");
}

/// An unknown key is an error on reload too: the master logs it with the key's path and hint
/// and keeps serving with the old configuration and workers.
#[test]
fn hup_with_an_unknown_key_keeps_serving_the_old_config() {
    let h = Herd::start("unknownhup", 1);
    let master = h.pid();
    let workers = h.wait_ready_workers(master, 1);
    let good = std::fs::read_to_string(&h.config).unwrap();
    // Two workers asked for, but written below the listener: TOML puts it in the listener.
    std::fs::write(&h.config, format!("{good}workers = 2\nroots = \"/srv\"\n")).unwrap();
    h.signal(Signal::Hup);
    let e = h.wait_log("reload failed", |l| l.pid == master);
    assert_eq!(e.level, "ERROR");
    for part in [
        "listener[0].roots: unknown key; did you mean `root`?",
        "listener[0].workers: `workers` is a top-level key but is written after [[listener]] \
         number 1",
        "keeping the old configuration",
    ] {
        assert!(e.msg.contains(part), "{part} in {}", e.msg);
    }
    assert_eq!(echo_once(h.addr(), "old config").unwrap(), "old config");
    assert_eq!(children(master), workers, "workers were replaced");
    assert!(!h.log_lines().iter().any(|l| l.msg.contains("generation 2")));
}

/// systemd's `Type=notify`, against a fake notification socket: `READY=1` with the master's
/// pid once its workers are ready, `RELOADING=1` then `READY=1` around a HUP, the new
/// master's `READY=1` with its own `MAINPID` after USR2, nothing from the old master that QUIT
/// then retires, and `STOPPING=1` when the new master stops. Workers do not see the socket.
#[test]
fn systemd_notify_follows_start_reload_upgrade_and_stop() {
    use std::os::unix::net::UnixDatagram;
    let dir = TempDir::new("notify");
    let sock_path = dir.path("notify.sock");
    let rx = UnixDatagram::bind(&sock_path).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let next = || {
        let mut b = [0u8; 512];
        let n = rx.recv(&mut b).expect("a notification within 20 s");
        String::from_utf8_lossy(&b[..n]).into_owned()
    };
    let env = [("NOTIFY_SOCKET", sock_path.to_str().unwrap())];
    let mut h = Herd::launch_env(dir, 2, "", |_| {}, &env);
    let master = h.pid();
    let ready = next();
    assert!(
        ready.starts_with(&format!("READY=1\nMAINPID={master}\n")),
        "{ready:?}"
    );
    let workers = h.wait_ready_workers(master, 2);
    let environ = std::fs::read(format!("/proc/{}/environ", workers[0])).unwrap();
    assert!(
        !String::from_utf8_lossy(&environ).contains("NOTIFY_SOCKET="),
        "a worker inherited NOTIFY_SOCKET"
    );

    h.signal(Signal::Hup);
    assert_eq!(next(), "RELOADING=1\nSTATUS=reloading\n");
    let again = next();
    assert!(
        again.starts_with(&format!("READY=1\nMAINPID={master}\n"))
            && again.contains("generation 2"),
        "{again:?}"
    );

    h.signal(Signal::Usr2);
    let mut new_master = 0;
    wait_until("the new master's pid file", || {
        new_master = h.pid_in_file(&h.pid_file).unwrap_or(0);
        new_master != 0 && new_master != master
    });
    h.also_kill.push(new_master);
    let upgraded = next();
    assert!(
        upgraded.starts_with(&format!("READY=1\nMAINPID={new_master}\n")),
        "{upgraded:?}"
    );
    h.signal(Signal::Quit);
    assert!(h.wait_exit().success());
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut b = [0u8; 512];
    if let Ok(n) = rx.recv(&mut b) {
        panic!(
            "the retired master sent {:?}",
            String::from_utf8_lossy(&b[..n])
        );
    }
    rx.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    kill(new_master, Signal::Term).unwrap();
    assert_eq!(next(), "STOPPING=1\n");
    wait_until("new master exit", || !alive(new_master));
}

/// Socket activation through systemd's own test launcher, `systemd-socket-activate`: it
/// binds the port, waits for the first connection and only then starts herd with the socket
/// as `LISTEN_FDS`; herd serves on that socket (two workers sharing it, `reuseport = false`),
/// so the connection that woke it is answered, not lost.
#[test]
fn socket_activation_serves_the_connection_that_started_herd() {
    let Ok(activate) = which("systemd-socket-activate") else {
        eprintln!("skipped: systemd-socket-activate is not installed");
        return;
    };
    let dir = TempDir::new("activate");
    let port = free_port();
    let (log, pid_file, config) = (
        dir.path("error.log"),
        dir.path("herd.pid"),
        dir.path("herd.toml"),
    );
    let text = echo_config(port, 2, &log, &pid_file, "") + "reuseport = false\n";
    std::fs::write(&config, text).unwrap();
    let out = std::fs::File::create(dir.path("stderr.txt")).unwrap();
    let mut child = std::process::Command::new(activate)
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(herd_bin())
        .arg("-c")
        .arg(&config)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let master = child.id() as i32;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_until("the activator listens", || TcpStream::connect(addr).is_ok());
    // That probe was the first connection: herd is starting now. The next one waits in the
    // activated socket's queue until a worker takes it.
    let got = echo_once(addr, "woke herd up");
    let lines = read_log(&log);
    let _ = kill(master, Signal::Quit);
    let _ = child.wait();
    assert_eq!(got.unwrap(), "woke herd up");
    assert!(
        lines.iter().any(|l| l
            .msg
            .contains(&format!("socket activation: 127.0.0.1:{port} for listener"))),
        "no socket-activation line in {lines:?}"
    );
}

fn which(tool: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .ok_or(())
}

#[test]
fn usr2_then_quit_to_the_old_master_hands_over_without_failures() {
    let mut h = Herd::start("upgrade", 2);
    let old_master = h.pid();
    let load = Load::start(h.addr(), 2);
    load.wait_progress(50);

    h.signal(Signal::Usr2);
    let oldbin = h.dir.path("herd.pid.oldbin");
    let mut new_master = 0;
    wait_until("the new master's pid file", || {
        new_master = h.pid_in_file(&h.pid_file).unwrap_or(0);
        new_master != 0 && new_master != old_master
    });
    h.also_kill.push(new_master);
    assert_eq!(h.pid_in_file(&oldbin), Some(old_master));
    h.wait_ready_workers(new_master, 2);
    load.wait_progress(50);

    h.signal(Signal::Quit);
    assert!(h.wait_exit().success());
    load.wait_progress(100);
    let report = load.finish();

    assert!(
        report.failures.is_empty(),
        "failed requests: {:?}",
        report.failures
    );
    assert_eq!(h.pid_in_file(&h.pid_file), Some(new_master));
    assert!(!oldbin.exists(), "the old master left its .oldbin pid file");
    assert!(alive(new_master));
    kill(new_master, Signal::Term).unwrap();
    wait_until("new master exit", || !alive(new_master));
    wait_until("pid file removal", || !h.pid_file.exists());
}

#[test]
fn usr2_whose_new_master_dies_leaves_the_old_one_in_charge() {
    let h = Herd::start("upgrade-fail", 1);
    let master = h.pid();
    // Break the configuration so the new binary exits at start-up.
    std::fs::write(&h.config, "workers = [\n").unwrap();
    h.signal(Signal::Usr2);
    h.wait_log("this master carries on", |l| l.pid == master);
    wait_until("pid file restored", || {
        h.pid_in_file(&h.pid_file) == Some(master)
    });
    assert!(!h.dir.path("herd.pid.oldbin").exists());
    assert_eq!(
        echo_once(h.addr(), "still the old one").unwrap(),
        "still the old one"
    );
}

#[test]
fn usr1_reopens_a_moved_log_in_master_and_workers() {
    let h = Herd::start("reopen", 2);
    let master = h.pid();
    let workers = h.wait_ready_workers(master, 2);
    let moved = h.dir.path("error.log.1");
    std::fs::rename(&h.log, &moved).unwrap();
    h.signal(Signal::Usr1);
    wait_until("reopen lines from every process in the new file", || {
        let lines = read_log(&h.log);
        let has = |pid: i32| {
            lines
                .iter()
                .any(|l| l.pid == pid && l.msg.contains("reopened"))
        };
        has(master) && workers.iter().all(|&w| has(w))
    });
    let old = read_log(&moved);
    assert!(!old.is_empty());
    assert!(!old.iter().any(|l| l.msg.contains("reopened")));
    for l in read_log(&h.log) {
        let role_ok = l.role == "master" || l.role.starts_with("worker ");
        assert!(role_ok, "untagged line {l:?}");
    }

    // A USR1 that reaches workers still starting (right after a reload) is not fatal to
    // them: they start with the signals blocked until their handlers are in place.
    h.signal(Signal::Hup);
    h.signal(Signal::Usr1);
    h.wait_log("configuration reloaded: generation 2", |l| l.pid == master);
    wait_until("old workers retired", || {
        children(master).iter().all(|k| !workers.contains(k))
    });
    let new = h.wait_ready_workers(master, 2);
    let lines = read_log(&h.log);
    assert!(
        !lines.iter().any(|l| l.msg.contains("died")),
        "a worker died: {lines:?}"
    );
    assert!(new.iter().all(|w| alive(*w)));
}

/// What a graceful stop cuts at its deadline is counted and logged: a connection holding half
/// a line when `shutdown_timeout` (here 300 ms) passes is closed, and the worker says so.
#[test]
fn a_stop_deadline_cuts_what_is_still_busy_and_says_so() {
    let mut h = Herd::launch(TempDir::new("cut"), 1, "", |t| {
        *t = t.replace("shutdown_timeout = \"5s\"", "shutdown_timeout = \"300ms\"");
    });
    let master = h.pid();
    let worker = h.wait_ready_workers(master, 1)[0];
    let mut busy = Persistent::connect(h.addr());
    busy.send_raw(b"half a line");
    wait_until("the worker holds the busy connection", || {
        owner_of(&busy.stream, h.port, &[worker]).is_some()
    });
    h.signal(Signal::Quit);
    assert_eq!(busy.read_line().unwrap_or_default(), "", "not cut");
    let cut = h.wait_log("were cut", |l| l.pid == worker);
    assert!(
        cut.msg
            .contains("listener echo: 1 connections still busy at the stop deadline"),
        "{}",
        cut.msg
    );
    assert!(h.wait_exit().success());
}

#[test]
fn quit_lets_a_slow_request_finish_then_exits() {
    let mut h = Herd::start("slow", 1);
    let master = h.pid();
    let worker = h.wait_ready_workers(master, 1)[0];
    let mut slow = Persistent::connect(h.addr());
    slow.send_raw(b"slow request");
    wait_until("the worker accepted the slow connection", || {
        owner_of(&slow.stream, h.port, &[worker]).is_some()
    });

    h.signal(Signal::Quit);
    h.wait_log("graceful stop", |l| l.pid == worker);
    wait_until("new connections refused", || {
        TcpStream::connect(h.addr()).is_err()
    });
    assert!(
        h.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    assert!(alive(worker));

    slow.send_raw(b", finished\n");
    assert_eq!(slow.read_line().unwrap(), "slow request, finished\n");
    assert_eq!(
        slow.read_line().unwrap(),
        "",
        "connection not closed after the reply"
    );
    assert!(h.wait_exit().success());
    assert!(!h.pid_file.exists());
}

#[test]
fn term_stops_at_once_closing_connections() {
    let mut h = Herd::start("term", 2);
    let master = h.pid();
    let workers = h.wait_ready_workers(master, 2);
    let mut busy = Persistent::connect(h.addr());
    busy.send_raw(b"never finished");
    h.signal(Signal::Term);
    assert!(h.wait_exit().success());
    assert_eq!(busy.read_line().unwrap_or_default(), "");
    wait_until("workers gone", || workers.iter().all(|&w| !alive(w)));
    assert!(!h.pid_file.exists());
    let lines = h.log_lines();
    assert!(lines
        .iter()
        .any(|l| l.pid == master && l.msg.contains("fast stop")));
}

/// The user workers run as in the root-only tests, if this machine lets it run the binary.
fn nobody() -> Option<(u32, u32)> {
    use std::os::unix::process::CommandExt;
    if herd_server::geteuid() != 0 {
        eprintln!("skipped: needs root to drop privileges");
        return None;
    }
    let ids = herd_server::lookup_user("nobody").ok()?;
    let runs = std::process::Command::new(herd_bin())
        .arg("--version")
        .uid(ids.0)
        .gid(ids.1)
        .output()
        .is_ok_and(|o| o.status.success());
    if !runs {
        eprintln!("skipped: user nobody cannot run {}", herd_bin());
        return None;
    }
    Some(ids)
}

#[test]
fn workers_drop_to_the_configured_user() {
    let Some((uid, _)) = nobody() else { return };
    let h = Herd::start_with("user", 1, "user = \"nobody\"");
    let master = h.pid();
    let worker = h.wait_ready_workers(master, 1)[0];
    let status = std::fs::read_to_string(format!("/proc/{worker}/status")).unwrap();
    let uids = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uids.split_whitespace()
            .skip(1)
            .all(|u| u == uid.to_string()),
        "{uids}"
    );
    assert_eq!(echo_once(h.addr(), "as nobody").unwrap(), "as nobody");
    // Reopen works for the unprivileged worker too (the master hands it the new file).
    std::fs::rename(&h.log, h.dir.path("error.log.1")).unwrap();
    h.signal(Signal::Usr1);
    wait_until("worker reopened", || {
        read_log(&h.log)
            .iter()
            .any(|l| l.pid == worker && l.msg.contains("reopened"))
    });
}

#[test]
fn a_worker_failing_with_a_fatal_error_is_not_respawned() {
    use std::os::unix::fs::PermissionsExt;
    if nobody().is_none() {
        return;
    }
    // The workers' user cannot reach the log directory: fatal for them (exit code 2).
    let dir = TempDir::new("fatal");
    let private = dir.path("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let log = private.join("error.log");
    let log2 = log.clone();
    let mut h = Herd::launch(dir, 2, "user = \"nobody\"", move |text| {
        let default_log = text
            .lines()
            .find(|l| l.starts_with("file = "))
            .unwrap()
            .to_string();
        *text = text.replace(&default_log, &format!("file = {log2:?}"));
    });
    h.log = log;
    let status = h.wait_exit();
    assert_eq!(status.code(), Some(1));
    let lines = h.log_lines();
    let started = lines
        .iter()
        .filter(|l| l.msg.contains(" started (pid "))
        .count();
    let fatal = lines
        .iter()
        .filter(|l| l.msg.contains("not respawning"))
        .count();
    assert_eq!(started, 2, "{lines:?}");
    assert_eq!(fatal, 2, "{lines:?}");
    assert!(lines
        .iter()
        .any(|l| l.msg.contains("every worker failed with a fatal error")));
}

#[test]
fn site_frame_demo_and_access_log_through_the_binary() {
    use std::io::{Read, Write};
    let (http_port, frame_port) = (free_port(), free_port());
    let dir = TempDir::new("protocols");
    let access = dir.path("access.log");
    let access2 = access.clone();
    let h = Herd::launch(dir, 1, "", move |text| {
        *text = text.replace(
            "level = \"info\"",
            &format!("level = \"info\"\naccess_file = {access2:?}"),
        );
        text.push_str(&format!(
            "\n[[listener]]\nname = \"site\"\nbind = \"127.0.0.1:{http_port}\"\nprotocol = \"http\"\n\
             \n[[listener]]\nname = \"demo\"\nbind = \"127.0.0.1:{frame_port}\"\nprotocol = \"frame\"\n"
        ));
    });
    let master = h.pid();
    let worker = h.wait_ready_workers(master, 1)[0];

    let mut s = TcpStream::connect(("127.0.0.1", http_port)).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let body = resp.split("\r\n\r\n").nth(1).unwrap();
    assert!(body.contains(&format!("\"worker_pid\":{worker}")), "{body}");
    assert!(body.contains(&format!("\"master_pid\":{master}")), "{body}");

    let mut c =
        herd::frame::Client::connect(SocketAddr::from(([127, 0, 0, 1], frame_port))).unwrap();
    assert_eq!(c.call_raw(1, b"frame echo").unwrap(), b"frame echo");
    assert_eq!(c.call_raw(3, b"upper").unwrap(), b"UPPER");

    wait_until("access log line", || {
        std::fs::read_to_string(&access)
            .is_ok_and(|t| t.contains("\"GET /api/status HTTP/1.1\" 200") && t.contains(" site"))
    });
    assert_eq!(echo_once(h.addr(), "echo too").unwrap(), "echo too");

    // Malformed requests, as a scanner sends them: each answered 400 and access-logged, but
    // only the first of each reason (per minute, per loop) is a WARN line.
    let bad = [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"NOT HTTP\r\n\r\n",
        b"NOT HTTP\r\n\r\n",
    ];
    for req in bad {
        let mut s = TcpStream::connect(("127.0.0.1", http_port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(req).unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    }
    wait_until("access log lines of the bad requests", || {
        std::fs::read_to_string(&access).is_ok_and(|t| t.matches("\" 400 ").count() == bad.len())
    });
    let warned: Vec<String> = h
        .log_lines()
        .into_iter()
        .filter(|l| l.msg.contains("http: bad request"))
        .map(|l| format!("{} {}", l.level, l.msg))
        .collect();
    assert_eq!(warned.len(), 2, "{warned:#?}");
    assert!(warned.iter().all(|l| l.starts_with("WARN ")), "{warned:#?}");
    assert!(warned[0].contains("missing Host header"), "{warned:#?}");
    assert!(warned[1].contains("malformed request line"), "{warned:#?}");
    // ... and every one is counted by its reason, in the status JSON (and so in /metrics).
    use herd::proto::http1::HttpError;
    let want = |v: &serde_json::Value| {
        let b = &v["bad_requests"];
        b[HttpError::MissingHost.index()] == 3 && b[HttpError::BadRequestLine.index()] == 2
    };
    wait_until("the bad requests counted by reason", || {
        let status: serde_json::Value =
            serde_json::from_str(&http_get_body(http_port, "/api/status")).unwrap_or_default();
        let mut found = false;
        let mut stack = vec![&status];
        while let Some(v) = stack.pop() {
            found |= want(v);
            match v {
                serde_json::Value::Array(a) => stack.extend(a),
                serde_json::Value::Object(o) => stack.extend(o.values()),
                _ => {}
            }
        }
        found
    });
}

/// Whichever worker answers `/api/status`, the totals cover both workers: each publishes its
/// snapshot to the file the master shares, and the answering worker sums them.
#[test]
fn status_totals_cover_every_worker() {
    let http_port = free_port();
    let h = Herd::launch(TempDir::new("totals"), 2, "", move |text| {
        text.push_str(&format!(
            "\n[[listener]]\nname = \"site\"\nbind = \"127.0.0.1:{http_port}\"\nprotocol = \"http\"\n"
        ));
    });
    let master = h.pid();
    let workers = h.wait_ready_workers(master, 2);
    let status = || {
        serde_json::from_str::<serde_json::Value>(&http_get_body(http_port, "/api/status")).unwrap()
    };
    let mut last = serde_json::Value::Null;
    wait_until("status totals from both workers", || {
        last = status();
        last["totals"]["workers_reporting"] == 2
    });
    let answered = last["worker_pid"].as_i64().unwrap() as i32;
    assert!(workers.contains(&answered));
    let site = |v: &serde_json::Value, field: &str| {
        v["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == "site")
            .map(|l| l[field].as_u64().unwrap())
            .unwrap()
    };
    let total_accepted = site(&last["totals"], "accepted");
    assert!(
        total_accepted >= site(&last, "accepted"),
        "totals {} below this worker's own counters: {last}",
        last["totals"]
    );
}

#[test]
fn workers_die_with_a_killed_master() {
    let mut h = Herd::start("orphans", 2);
    let master = h.pid();
    let workers = h.wait_ready_workers(master, 2);
    kill(master, Signal::Kill).unwrap();
    h.wait_exit();
    wait_until("workers gone after the master", || {
        workers.iter().all(|&w| !alive(w))
    });
}

#[test]
fn a_worker_that_keeps_dying_at_start_up_is_respawned_with_back_off() {
    let h = Herd::start("backoff", 1);
    let master = h.pid();
    let mut victim = h.wait_ready_workers(master, 1)[0];
    // Kill each replacement as soon as it is ready: every death is within its first second.
    // (The first kill may find the original worker older than a second on a slow machine,
    // which then does not count as a start-up failure: hence four kills for two back-offs.)
    for _ in 0..4 {
        kill(victim, Signal::Kill).unwrap();
        let mut next = 0;
        wait_until("a replacement", || {
            next = children(master)
                .into_iter()
                .find(|&k| k != victim)
                .filter(|k| {
                    h.log_lines()
                        .iter()
                        .any(|l| l.pid == master && l.msg.contains(&format!("ready (pid {k},")))
                })
                .unwrap_or(0);
            next != 0
        });
        victim = next;
    }
    let lines = h.log_lines();
    let backoffs: Vec<&str> = lines
        .iter()
        .filter(|l| l.msg.contains("keeps failing at start-up"))
        .map(|l| l.msg.as_str())
        .collect();
    assert!(backoffs.len() >= 2, "{lines:?}");
    assert!(backoffs[0].ends_with("respawning in 100ms"), "{backoffs:?}");
    assert!(backoffs[1].ends_with("respawning in 200ms"), "{backoffs:?}");
    assert_eq!(echo_once(h.addr(), "survivor").unwrap(), "survivor");
}

/// Every thread of `pid` is in the stopped state ('T' in /proc/PID/task/TID/stat).
fn all_threads_stopped(pid: i32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| rest.trim_start().starts_with('T'))
            })
            .unwrap_or(false)
    })
}
