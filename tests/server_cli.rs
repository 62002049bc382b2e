//! The `herd` binary's command line: `--version`, `-t`, `-d` (daemon with pid file), `-s`.

mod server_support;

use std::process::{Command, Output, Stdio};

use server_support::*;

fn herd(args: &[&str]) -> Output {
    herd_in(&std::env::temp_dir(), args)
}

fn herd_in(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(herd_bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn version_and_help() {
    let o = herd(&["--version"]);
    assert!(o.status.success());
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("herd {}", env!("CARGO_PKG_VERSION"))
    );
    let o = herd(&["--help"]);
    assert!(o.status.success());
    let help = String::from_utf8_lossy(&o.stdout);
    for flag in ["--config", "--test", "--signal", "--daemon"] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    assert!(!help.contains("--worker"), "the internal flag is hidden");
}

#[test]
fn test_flag_validates_and_explains() {
    let dir = TempDir::new("cli-t");
    let good = dir.path("good.toml");
    let log = dir.path("e.log");
    let pid = dir.path("herd.pid");
    let port = free_port();
    std::fs::write(&good, echo_config(port, 1, &log, &pid, "")).unwrap();
    let o = herd(&["-t", "-c", good.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("is valid"), "{}", stderr(&o));
    assert!(!log.exists(), "-t must not start anything");

    // Unknown keys are errors: -t and a start refuse them, naming the key and a hint.
    let unknown = [
        (
            "colour = \"blue\"",
            "",
            "colour: unknown key (docs/config.md lists the keys)",
        ),
        (
            "",
            "ssl_certificate = \"/etc/ssl/c.pem\"\n",
            "listener[0].ssl_certificate: unknown key: `ssl_certificate` is nginx's; herd's \
             equivalent is `tls.cert`",
        ),
        (
            "",
            "workers = 2\n",
            "listener[0].workers: `workers` is a top-level key but is written after \
             [[listener]] number 1, so TOML reads it as part of that listener: move it above \
             the first [[listener]]",
        ),
    ];
    for (top, below, why) in unknown {
        let bad = dir.path("unknown.toml");
        std::fs::write(&bad, echo_config(port, 1, &log, &pid, top) + below).unwrap();
        let o = herd(&["-t", "-c", bad.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{why}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("is invalid") && err.contains(why),
            "{why}: {err}"
        );
        let o = herd(&["-c", bad.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{why}: {}", stderr(&o));
        assert!(stderr(&o).contains(why), "{why}: {}", stderr(&o));
        assert!(!log.exists(), "a refused start must not start anything");
    }

    let cases = [
        ("workers = [\n", "TOML parse error at line 1"),
        (
            "workers = 0\n[[listener]]\nbind = \"127.0.0.1:1\"\nprotocol = \"echo\"\n",
            "workers: must be between 1 and 1024",
        ),
        (
            "[[listener]]\nbind = \"127.0.0.1:99999\"\nprotocol = \"echo\"\n",
            "listener[0].bind",
        ),
        (
            "[[listener]]\nbind = \"127.0.0.1:1\"\nprotocol = \"gopher\"\n",
            "gopher",
        ),
    ];
    for (text, why) in cases {
        let bad = dir.path("bad.toml");
        std::fs::write(&bad, text).unwrap();
        let o = herd(&["-t", "-c", bad.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{text:?}");
        let err = stderr(&o);
        assert!(
            err.contains("is invalid") && err.contains(why),
            "{text:?}: {err}"
        );
    }
    let o = herd(&["-t", "-c", dir.path("missing.toml").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("No such file"), "{}", stderr(&o));
}

#[test]
fn signal_without_a_running_master_fails_clearly() {
    let dir = TempDir::new("cli-s");
    let cfg = dir.path("herd.toml");
    let pid = dir.path("herd.pid");
    std::fs::write(
        &cfg,
        echo_config(free_port(), 1, &dir.path("e.log"), &pid, ""),
    )
    .unwrap();
    let o = herd(&["-s", "reload", "-c", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is herd running"), "{}", stderr(&o));
    let o = herd(&["-s", "explode", "-c", cfg.to_str().unwrap()]);
    assert!(!o.status.success());
}

#[test]
fn daemon_detaches_writes_its_pid_file_and_obeys_s() {
    let dir = TempDir::new("cli-d");
    let cfg = dir.path("herd.toml");
    let (log, pid_file) = (dir.path("error.log"), dir.path("herd.pid"));
    let port = free_port();
    std::fs::write(&cfg, echo_config(port, 2, &log, &pid_file, "")).unwrap();
    // A relative path: the daemon changes to `/` but must still find it to reload.
    let cfg_s = "herd.toml";
    let herd = |args: &[&str]| herd_in(&dir.0, args);

    // `herd -d` returns once the daemon is serving.
    let o = herd(&["-d", "-c", cfg_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    let daemon: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file written before -d returns")
        .trim()
        .parse()
        .unwrap();
    let guard = KillOnDrop(daemon);
    assert!(alive(daemon));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(echo_once(addr, "daemon").unwrap(), "daemon");

    // Detached: a new session without a terminal, stdio on /dev/null, not our child.
    let stat = std::fs::read_to_string(format!("/proc/{daemon}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let (ppid, session, tty) = (fields[1], fields[3], fields[4]);
    assert_ne!(ppid, std::process::id().to_string());
    let own_session = std::fs::read_to_string("/proc/self/stat").unwrap();
    let own_session = own_session
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(3)
        .unwrap()
        .to_string();
    assert_ne!(session, own_session);
    assert_eq!(tty, "0");
    for fd in 0..=2 {
        let target = std::fs::read_link(format!("/proc/{daemon}/fd/{fd}")).unwrap();
        assert_eq!(target, std::path::Path::new("/dev/null"));
    }

    // A second daemon on the same pid file is refused.
    let o = herd(&["-d", "-c", cfg_s]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&daemon.to_string()), "{}", stderr(&o));

    // -s reload: a new generation of workers.
    let o = herd(&["-s", "reload", "-c", cfg_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("reload in the log", || {
        read_log(&log)
            .iter()
            .any(|l| l.pid == daemon && l.msg.contains("configuration reloaded: generation 2"))
    });
    assert_eq!(echo_once(addr, "reloaded").unwrap(), "reloaded");

    // Binary upgrade of a daemon: the new master takes over the pid file, the old one quits.
    kill(daemon, Signal::Usr2).unwrap();
    let mut upgraded = 0;
    wait_until("the new master's pid file", || {
        upgraded = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        upgraded != 0 && upgraded != daemon
    });
    let guard2 = KillOnDrop(upgraded);
    wait_until("the new master's workers", || {
        read_log(&log)
            .iter()
            .filter(|l| l.pid == upgraded && l.msg.contains(" ready (pid "))
            .count()
            == 2
    });
    kill(daemon, Signal::Quit).unwrap();
    wait_until("old master exit", || !alive(daemon));
    assert_eq!(echo_once(addr, "upgraded").unwrap(), "upgraded");

    // -s stop (to whoever the pid file names now): gone, pid file removed.
    let o = herd(&["-s", "stop", "-c", cfg_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_until("daemon exit", || !alive(upgraded));
    wait_until("pid file removed", || !pid_file.exists());
    drop((guard, guard2));
}

#[test]
fn daemon_start_failure_is_reported_on_the_terminal() {
    let dir = TempDir::new("cli-dfail");
    let cfg = dir.path("herd.toml");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::write(
        &cfg,
        echo_config(port, 1, &dir.path("e.log"), &dir.path("herd.pid"), ""),
    )
    .unwrap();
    let o = herd(&["-d", "-c", cfg.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot listen"), "{}", stderr(&o));
    assert!(!dir.path("herd.pid").exists());
}

/// Kills a process tree this test started if an assertion fails first.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            kill_tree(self.0);
        }
    }
}
