//! Waiting for signals and notifications in a single-threaded supervisor loop.
//!
//! A [`Waiter`] owns a connected pair of Unix datagram sockets. Each registered signal sets an
//! atomic flag and sends a wake-up datagram into the pair (both through signal-hook, so the
//! handlers are async-signal-safe); other processes (workers telling the master they are
//! ready) and threads send text datagrams to the same socket through a [`Notifier`].
//! [`Waiter::wait`] blocks until something arrives or a timeout passes, and returns the
//! signals that fired plus the text messages. No thread is started, so the master can still
//! `fork` safely. This module decides nothing about what a signal means; the master and the
//! worker do.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

// Public for the process tests at the repository root, which signal the processes they start
// the way `herd -s` does; the wrappers themselves are in the private `sys`.
pub use crate::sys::{kill, Signal};

/// The signals herd processes act on. Children are started with these blocked, and unblock
/// them once their handlers are installed ([`Waiter::new`] does), so a signal sent to a
/// process that is still starting is delayed, never fatal.
pub const CONTROL_SIGNALS: [Signal; 8] = [
    Signal::Term,
    Signal::Int,
    Signal::Quit,
    Signal::Hup,
    Signal::Usr1,
    Signal::Usr2,
    Signal::Winch,
    Signal::Chld,
];

/// What woke a [`Waiter`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Wake {
    /// Signals that arrived (each at most once per wake, in registration order).
    pub signals: Vec<Signal>,
    /// Text messages received (datagrams longer than one byte).
    pub messages: Vec<String>,
}

/// Signal flags plus a datagram socket to sleep on.
pub struct Waiter {
    rx: UnixDatagram,
    tx: UnixDatagram,
    flags: Vec<(Signal, Arc<AtomicBool>)>,
    ids: Vec<signal_hook::SigId>,
}

/// The sending end of a [`Waiter`]: cloneable, usable from other threads, and inheritable by
/// child processes (by descriptor number).
#[derive(Debug)]
pub struct Notifier {
    tx: UnixDatagram,
}

impl Notifier {
    /// Wrap an already connected datagram socket (e.g. one inherited from the master).
    pub fn from_socket(tx: UnixDatagram) -> Notifier {
        Notifier { tx }
    }

    /// Send one text message (never blocks for long: a 1 s write timeout).
    pub fn send(&self, msg: &str) -> io::Result<()> {
        self.tx.set_write_timeout(Some(Duration::from_secs(1)))?;
        self.tx.send(msg.as_bytes()).map(|_| ())
    }

    /// The descriptor number (to hand to a child process).
    pub fn raw_fd(&self) -> RawFd {
        self.tx.as_raw_fd()
    }

    /// Another notifier on the same socket.
    pub fn try_clone(&self) -> io::Result<Notifier> {
        Ok(Notifier {
            tx: self.tx.try_clone()?,
        })
    }
}

impl Waiter {
    /// Catch `signals` (their default actions no longer apply) and wait for them; unblocks
    /// them for the calling thread once caught.
    pub fn new(signals: &[Signal]) -> io::Result<Waiter> {
        let (rx, tx) = UnixDatagram::pair()?;
        let mut flags = Vec::new();
        let mut ids = Vec::new();
        for &sig in signals {
            let flag = Arc::new(AtomicBool::new(false));
            ids.push(signal_hook::flag::register(sig.as_raw(), flag.clone())?);
            ids.push(signal_hook::low_level::pipe::register(
                sig.as_raw(),
                tx.try_clone()?,
            )?);
            flags.push((sig, flag));
        }
        // Deliver what arrived while a parent kept these blocked (a no-op otherwise).
        crate::sys::unblock_signals(signals)?;
        Ok(Waiter { rx, tx, flags, ids })
    }

    /// A sender for messages to this waiter.
    pub fn notifier(&self) -> io::Result<Notifier> {
        Ok(Notifier {
            tx: self.tx.try_clone()?,
        })
    }

    /// Block until a signal or message arrives or `timeout` passes (then the result is empty
    /// unless a signal slipped in).
    pub fn wait(&mut self, timeout: Duration) -> io::Result<Wake> {
        let mut buf = [0u8; 512];
        let mut wake = Wake::default();
        self.rx.set_nonblocking(false)?;
        self.rx
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let mut first = true;
        loop {
            match self.rx.recv(&mut buf) {
                Ok(n) if n > 1 => wake
                    .messages
                    .push(String::from_utf8_lossy(&buf[..n]).into_owned()),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e),
            }
            if first {
                // Drain whatever else is queued without blocking.
                first = false;
                self.rx.set_nonblocking(true)?;
            }
        }
        for (sig, flag) in &self.flags {
            if flag.swap(false, Ordering::SeqCst) {
                wake.signals.push(*sig);
            }
        }
        Ok(wake)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_timeouts() {
        let mut w = Waiter::new(&[]).unwrap();
        let n = w.notifier().unwrap();
        assert_eq!(w.wait(Duration::from_millis(5)).unwrap(), Wake::default());
        n.send("ready 1").unwrap();
        n.try_clone().unwrap().send("ready 2").unwrap();
        let wake = w.wait(Duration::from_secs(5)).unwrap();
        assert_eq!(wake.messages, ["ready 1", "ready 2"]);
        assert!(wake.signals.is_empty());
    }

    #[test]
    fn signals_wake_the_waiter() {
        // SIGWINCH is harmless if it reaches another part of the test process.
        let mut w = Waiter::new(&[Signal::Winch]).unwrap();
        crate::sys::kill(std::process::id() as i32, Signal::Winch).unwrap();
        let mut got = Vec::new();
        for _ in 0..100 {
            got.extend(w.wait(Duration::from_millis(100)).unwrap().signals);
            if !got.is_empty() {
                break;
            }
        }
        assert_eq!(got, [Signal::Winch]);
    }
}
