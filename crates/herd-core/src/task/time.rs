//! Sleeps and timeouts for tasks, on the loop's clock (a fake clock moves them in tests).
//!
//! A [`Sleep`] takes a timer entry in its loop's reactor on first poll; the loop wakes it once
//! its deadline has passed (checked every iteration, and the loop's poll waits no longer than
//! the earliest deadline). Dropping it frees the entry.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::cmp::Reverse;

use super::io::TimerEntry;
use super::Executor;

/// A future that is ready once `duration` has passed on the loop's clock (see [`sleep`]).
pub struct Sleep {
    exec: Rc<Executor>,
    deadline: u64,
    slot: Option<usize>,
}

impl std::fmt::Debug for Sleep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// Wait `duration` (whole milliseconds, rounded up) on the current loop's clock.
///
/// Panics outside an event loop's thread.
pub fn sleep(duration: Duration) -> Sleep {
    let exec = super::current().expect("herd::task::sleep used outside an event loop");
    let ms = duration.as_micros().div_ceil(1000) as u64;
    let deadline = exec.now().saturating_add(ms);
    Sleep {
        exec,
        deadline,
        slot: None,
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let r = &self.exec.reactor;
        if let Some(slot) = self.slot {
            let mut timers = r.timers.borrow_mut();
            let t = &mut timers[slot];
            if t.fired {
                return Poll::Ready(());
            }
            t.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        if self.exec.now() >= self.deadline {
            return Poll::Ready(());
        }
        let seq = r.next_seq.get().wrapping_add(1);
        r.next_seq.set(seq);
        let slot = r.timers.borrow_mut().insert(TimerEntry {
            waker: Some(cx.waker().clone()),
            fired: false,
            seq,
        });
        r.heap
            .borrow_mut()
            .push(Reverse((self.deadline, seq, slot)));
        self.slot = Some(slot);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            // Its heap entry stays until its deadline and is skipped then (the slot is gone or
            // holds another sequence).
            let r = &self.exec.reactor;
            let removed = r.timers.borrow_mut().try_remove(slot);
            drop(removed);
            // Keep the heap within a few times the live timers (timeouts that finish early
            // would otherwise pile up there until their deadlines).
            let live = r.timers.borrow().len();
            let mut heap = r.heap.borrow_mut();
            if heap.len() > 64 && heap.len() > 4 * live {
                let timers = r.timers.borrow();
                heap.retain(|Reverse((_, seq, slot))| {
                    timers.get(*slot).is_some_and(|t| t.seq == *seq)
                });
            }
        }
    }
}

/// The time limit of a [`timeout`] passed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl std::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline has elapsed")
    }
}

impl std::error::Error for Elapsed {}

/// Run `fut` for at most `limit` on the loop's clock: its output, or [`Elapsed`] (and `fut` is
/// dropped).
pub async fn timeout<F: Future>(limit: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = std::pin::pin!(fut);
    let mut timer = std::pin::pin!(sleep(limit));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(v));
        }
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(Elapsed));
        }
        Poll::Pending
    })
    .await
}
