//! python3 clients and backends for the integration tests: a client script prints `ok` once
//! every check in it passed; a backend script prints the port it listens on, then serves.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Run `script` with `python3 -c` and assert that it printed `ok` (its stderr, a failed
/// assert's traceback, is the message otherwise).
pub fn run_ok(script: &str) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .output()
        .expect("python3 runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Start `python3 -c script args...` (a backend) and read the port it prints on its first
/// line. The caller owns the child and must kill it.
pub fn spawn_backend<I, S>(script: &str, args: I) -> (Child, u16)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut child = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the backend printed {line:?}, not a port"));
    (child, port)
}
