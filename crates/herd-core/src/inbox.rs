//! A loop's command queue: how other threads reach a loop.
//!
//! Producers (handles, the acceptor thread, the server handle, worker pools) push a command
//! under a short mutex and wake the loop through its mio `Waker` only if no wake-up is already
//! pending, so a burst of a thousand sends costs the loop one `epoll_wait` return and one
//! eventfd read. The loop clears the pending flag *before* taking the queue, so a command
//! pushed after the take always wakes it again: nothing is ever left behind.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Mutex};

use bytes::Bytes;

use crate::conn::ConnId;
use crate::stats::Stats;

/// A command for a loop.
pub(crate) enum Cmd {
    /// Write these bytes to the connection (if it is still the same connection).
    Send(ConnId, Bytes),
    /// Run the handler's `on_notify(token, data)` for the connection.
    Notify(ConnId, u64, Bytes),
    /// Close the connection; `true` waits for pending output first.
    Close(ConnId, bool),
    /// Take over a connection accepted by the acceptor thread.
    Adopt(mio::net::TcpStream, SocketAddr),
    /// Stop: stop accepting, close idle connections, force the rest at `grace_ms` from now.
    Stop { grace_ms: u64 },
    /// Reply with a snapshot of the loop's counters.
    Stats(mpsc::Sender<Stats>),
    /// Re-read the clock and run due timers (used with fake clocks).
    Tick,
}

struct Queue {
    cmds: Vec<Cmd>,
    /// The loop has exited: commands are dropped at once (so a waiting `Stats` sender sees
    /// its channel close instead of waiting for an answer that will never come).
    closed: bool,
}

/// The queue plus its wake-up.
pub(crate) struct Inbox {
    queue: Mutex<Queue>,
    notified: AtomicBool,
    waker: mio::Waker,
}

impl Inbox {
    pub(crate) fn new(waker: mio::Waker) -> Self {
        Inbox {
            queue: Mutex::new(Queue {
                cmds: Vec::new(),
                closed: false,
            }),
            notified: AtomicBool::new(false),
            waker,
        }
    }

    /// Queue a command and wake the loop unless a wake-up is already pending.
    pub(crate) fn push(&self, cmd: Cmd) {
        {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.closed {
                return;
            }
            q.cmds.push(cmd);
        }
        if !self.notified.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.waker.wake() {
                tracing::error!("loop wake-up failed: {e}");
            }
        }
    }

    /// Take every queued command (called by the loop on its waker event).
    pub(crate) fn drain(&self, into: &mut Vec<Cmd>) {
        self.notified.store(false, Ordering::Release);
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(&mut q.cmds, into);
    }

    /// The loop is exiting: drop what is queued and refuse what comes later.
    pub(crate) fn close(&self) {
        let dropped = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.closed = true;
            std::mem::take(&mut q.cmds)
        };
        drop(dropped);
    }
}
