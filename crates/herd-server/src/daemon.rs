//! Daemon mode: detach from the terminal with a double fork and `setsid`, before any thread
//! exists, and report start-up success or failure back to the terminal.
//!
//! [`daemonize`] returns only in the detached grandchild. The original process waits on a pipe
//! until the daemon calls [`Detached::report`] (after the pid file is written and the sockets
//! are bound) and then exits 0, or prints the daemon's error and exits 1, so `herd -d` in a
//! script fails visibly. After a successful report stdio points at `/dev/null`. Called by the
//! server's start-up code only; this module knows nothing about configuration.

use std::io::{self, Read, Write};

use crate::sys::{exit_now, fork, setsid, stdio_to_devnull, umask, waitpid, Fork};

/// The detached process, holding the pipe to the waiting original process.
#[derive(Debug)]
pub struct Detached {
    ready: std::io::PipeWriter,
}

/// Detach. Returns in the daemon (grandchild); the original process waits for its report and
/// exits; the intermediate process exits at once. Fails if the process already has threads.
pub fn daemonize() -> io::Result<Detached> {
    let (mut reader, writer) = std::io::pipe()?;
    match fork()? {
        Fork::Parent(child) => {
            drop(writer);
            let _ = waitpid(child);
            let mut report = String::new();
            let _ = reader.read_to_string(&mut report);
            match report.strip_prefix("ok") {
                Some(_) => std::process::exit(0),
                None if report.is_empty() => {
                    eprintln!("herd: the daemon exited during start-up (see its log)");
                    std::process::exit(1)
                }
                None => {
                    eprint!("{report}");
                    std::process::exit(1)
                }
            }
        }
        Fork::Child => {}
    }
    drop(reader);
    setsid()?;
    // The session leader forks again so the daemon can never reacquire a terminal.
    match fork()? {
        Fork::Parent(_) => exit_now(0),
        Fork::Child => {}
    }
    umask(0o022);
    std::env::set_current_dir("/")?;
    Ok(Detached { ready: writer })
}

impl Detached {
    /// Tell the waiting terminal how start-up went; on success point stdio at `/dev/null`.
    pub fn report(mut self, result: Result<(), String>) -> io::Result<()> {
        match result {
            Ok(()) => {
                self.ready.write_all(b"ok\n")?;
                drop(self.ready);
                stdio_to_devnull()
            }
            Err(msg) => self.ready.write_all(format!("herd: {msg}\n").as_bytes()),
        }
    }
}
