//! A loop's command queue: how other threads reach a loop.
//!
//! Producers (handles, the acceptor thread, the server handle, worker pools) push a command
//! under a short mutex and wake the loop through its mio `Waker` only if no wake-up is already
//! pending, so a burst of a thousand sends costs the loop one `epoll_wait` return and one
//! eventfd read. The loop clears the pending flag *before* taking the queue, so a command
//! pushed after the take always wakes it again: nothing is ever left behind.

use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;

// Under `--cfg loom` the queue's lock and flag are loom's, so the model checker can explore
// every interleaving of producers and the loop (the test at the end of this file).
#[cfg(loom)]
use loom::sync::{
    atomic::{AtomicBool, Ordering},
    Mutex,
};
#[cfg(not(loom))]
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Mutex,
};

use bytes::Bytes;

use crate::id::ConnId;
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
    /// Poll this task (its waker was used on another thread).
    WakeTask(crate::task::TaskKey),
}

struct Queue<T> {
    items: Vec<T>,
    /// The loop has exited: items are dropped at once (so a waiting `Stats` sender sees
    /// its channel close instead of waiting for an answer that will never come).
    closed: bool,
}

/// How a queue wakes its consumer: the loop's mio `Waker` (an eventfd on Linux, where every
/// `wake` is reported by a later poll), or a model of it in the loom test.
pub(crate) trait Wake {
    /// Make the consumer's next poll report a wake-up.
    fn wake(&self) -> io::Result<()>;
}

impl Wake for mio::Waker {
    fn wake(&self) -> io::Result<()> {
        mio::Waker::wake(self)
    }
}

/// A multi-producer queue with one consumer and coalesced wake-ups: the inbox protocol,
/// generic over the item and the waker so that it can be model-checked alone.
pub(crate) struct WakeQueue<T, W> {
    queue: Mutex<Queue<T>>,
    /// A wake-up is pending: set by the producer that calls `wake`, cleared by the consumer
    /// before it takes the queue.
    notified: AtomicBool,
    waker: W,
}

/// A loop's inbox: commands, woken through the loop's mio `Waker`.
pub(crate) type Inbox = WakeQueue<Cmd, mio::Waker>;

impl<T, W: Wake> WakeQueue<T, W> {
    pub(crate) fn new(waker: W) -> Self {
        WakeQueue {
            queue: Mutex::new(Queue {
                items: Vec::new(),
                closed: false,
            }),
            notified: AtomicBool::new(false),
            waker,
        }
    }

    /// Queue an item and wake the consumer unless a wake-up is already pending.
    pub(crate) fn push(&self, item: T) {
        {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            if q.closed {
                return;
            }
            q.items.push(item);
        }
        if !self.notified.swap(true, Ordering::AcqRel) {
            if let Err(e) = self.waker.wake() {
                tracing::error!("loop wake-up failed: {e}");
            }
        }
    }

    /// Take every queued item (called by the loop on its waker event).
    ///
    /// The flag is cleared *before* the take: an item pushed after the take then finds the
    /// flag clear and wakes the loop again. (Clearing it after the take would lose that item
    /// until some unrelated wake-up; the loom test checks both orders.)
    pub(crate) fn drain(&self, into: &mut Vec<T>) {
        self.notified.store(false, Ordering::Release);
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(&mut q.items, into);
    }

    /// The consumer is exiting: drop what is queued and refuse what comes later.
    pub(crate) fn close(&self) {
        let dropped = {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.closed = true;
            std::mem::take(&mut q.items)
        };
        drop(dropped);
    }
}

/// Model checking of the wake-up protocol: `RUSTFLAGS="--cfg loom" cargo test -p herd-core
/// --release --lib loom` (.ci/run runs it). loom runs the model under every interleaving of
/// its threads that the C11 memory model allows.
#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicUsize;
    use loom::sync::Arc;

    /// The loop's eventfd: wake-ups written and not yet reported by a poll.
    struct EventFd(AtomicUsize);

    impl Wake for Arc<EventFd> {
        fn wake(&self) -> io::Result<()> {
            self.0.fetch_add(1, Ordering::Release);
            Ok(())
        }
    }

    /// A poll: true (and the count consumed) when a wake-up is pending.
    fn poll(fd: &EventFd) -> bool {
        fd.0.swap(0, Ordering::Acquire) > 0
    }

    /// Two producers push one item each while the loop handles one wake-up; after they are
    /// done, the loop keeps polling while wake-ups are reported. Every item must have been
    /// taken by then: an item left in the queue with no wake-up pending would wait for an
    /// unrelated event, forever on an idle loop.
    fn model(drain: fn(&WakeQueue<u32, Arc<EventFd>>, &mut Vec<u32>)) {
        loom::model(move || {
            let fd = Arc::new(EventFd(AtomicUsize::new(0)));
            let q = Arc::new(WakeQueue::new(fd.clone()));
            let producers: Vec<_> = (0..2)
                .map(|i| {
                    let q = q.clone();
                    loom::thread::spawn(move || q.push(i))
                })
                .collect();
            let mut got = Vec::new();
            let mut batch = Vec::new();
            if poll(&fd) {
                drain(&q, &mut batch);
                got.append(&mut batch);
            }
            for p in producers {
                p.join().unwrap();
            }
            while poll(&fd) {
                drain(&q, &mut batch);
                got.append(&mut batch);
            }
            got.sort_unstable();
            assert_eq!(
                got,
                [0, 1],
                "an item was left queued with no wake-up pending"
            );
        });
    }

    #[test]
    fn loom_every_pushed_item_is_taken() {
        model(|q, into| q.drain(into));
    }

    /// The same model with the flag cleared after the take, as a check that the model can
    /// fail: loom must find the interleaving that strands an item.
    #[test]
    #[should_panic(expected = "no wake-up pending")]
    fn loom_clearing_the_flag_after_the_take_loses_items() {
        model(|q, into| {
            {
                let mut g = q.queue.lock().unwrap();
                std::mem::swap(&mut g.items, into);
            }
            q.notified.store(false, Ordering::Release);
        });
    }
}
