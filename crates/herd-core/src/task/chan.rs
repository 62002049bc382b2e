//! A channel between tasks of one loop: unbounded, not `Send`, no lock.
//!
//! [`channel`] gives a [`Sender`] (cloneable) and a [`Receiver`]; [`Receiver::recv`] waits for
//! the next value and ends with `None` once every sender is gone and the queue is empty.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Poll, Waker};

struct Shared<T> {
    queue: VecDeque<T>,
    waiter: Option<Waker>,
    senders: usize,
    receiver: bool,
}

/// The sending half of a [`channel`].
pub struct Sender<T> {
    shared: Rc<RefCell<Shared<T>>>,
}

/// The receiving half of a [`channel`].
pub struct Receiver<T> {
    shared: Rc<RefCell<Shared<T>>>,
}

/// A new local channel.
///
/// ```no_run
/// # async fn demo() {
/// let (tx, mut rx) = herd_core::task::channel();
/// herd_core::task::spawn_local(async move { tx.send(7).unwrap(); });
/// assert_eq!(rx.recv().await, Some(7));
/// # }
/// ```
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Rc::new(RefCell::new(Shared {
        queue: VecDeque::new(),
        waiter: None,
        senders: 1,
        receiver: true,
    }));
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Queue `value` for the receiver; `Err(value)` if the receiver is gone.
    pub fn send(&self, value: T) -> Result<(), T> {
        let waker = {
            let mut s = self.shared.borrow_mut();
            if !s.receiver {
                return Err(value);
            }
            s.queue.push_back(value);
            s.waiter.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.borrow_mut().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let waker = {
            let mut s = self.shared.borrow_mut();
            s.senders -= 1;
            if s.senders == 0 {
                s.waiter.take()
            } else {
                None
            }
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Receiver<T> {
    /// The next value; `None` once every sender is dropped and nothing is queued.
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| {
            let mut s = self.shared.borrow_mut();
            if let Some(v) = s.queue.pop_front() {
                return Poll::Ready(Some(v));
            }
            if s.senders == 0 {
                return Poll::Ready(None);
            }
            s.waiter = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// The next value if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        self.shared.borrow_mut().queue.pop_front()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let queued = {
            let mut s = self.shared.borrow_mut();
            s.receiver = false;
            std::mem::take(&mut s.queue)
        };
        drop(queued);
    }
}
