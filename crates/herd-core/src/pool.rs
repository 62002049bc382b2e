//! A worker pool for blocking work, whose results go back to the owning loop.
//!
//! Handlers must never block their loop. Work that may block (a database call, a file read, a
//! slow computation) is submitted here with [`WorkerPool::try_submit`]; the job runs on one of
//! the pool's threads and delivers its result through a [`Handle`](crate::Handle)
//! (`send` for ready bytes, `notify` to run the handler's `on_notify` on the loop), so the reply
//! is written by the loop that owns the connection — or dropped and counted if that
//! connection has closed meanwhile. The queue is bounded: when it is full, `try_submit` fails
//! at once and the caller answers "busy"; the loop never waits.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of threads taking jobs from one bounded queue. Cheap to clone (shared).
#[derive(Clone)]
pub struct WorkerPool {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Mutex<Option<SyncSender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    size: usize,
    capacity: usize,
    /// Jobs queued and not yet started (for metrics; touched once per job, never per message).
    queued: Arc<AtomicUsize>,
}

/// The pool's queue is full (or the pool was shut down); the job was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("worker pool busy")
    }
}

impl std::error::Error for Busy {}

impl WorkerPool {
    /// Start `threads` workers sharing a queue of at most `queue` waiting jobs.
    ///
    /// ```
    /// let pool = herd_core::pool::WorkerPool::new(2, 16);
    /// let (tx, rx) = std::sync::mpsc::channel();
    /// pool.try_submit(move || tx.send(6 * 7).unwrap()).unwrap();
    /// assert_eq!(rx.recv().unwrap(), 42);
    /// ```
    pub fn new(threads: usize, queue: usize) -> WorkerPool {
        let threads = threads.max(1);
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        let queued = Arc::new(AtomicUsize::new(0));
        let handles = (0..threads)
            .map(|i| {
                let rx = rx.clone();
                let queued = queued.clone();
                std::thread::Builder::new()
                    .name(format!("herd-worker-{i}"))
                    .spawn(move || loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => {
                                queued.fetch_sub(1, Ordering::Relaxed);
                                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                                    .is_err()
                                {
                                    tracing::error!("worker job panicked");
                                }
                            }
                            Err(_) => return,
                        }
                    })
                    .expect("spawn worker thread")
            })
            .collect();
        WorkerPool {
            inner: Arc::new(Inner {
                tx: Mutex::new(Some(tx)),
                threads: Mutex::new(handles),
                size: threads,
                capacity: queue,
                queued,
            }),
        }
    }

    /// Queue a job, or fail at once with [`Busy`] if the queue is full.
    pub fn try_submit(&self, job: impl FnOnce() + Send + 'static) -> Result<(), Busy> {
        let guard = self.inner.tx.lock().map_err(|_| Busy)?;
        let tx = guard.as_ref().ok_or(Busy)?;
        // Counted before the send so a job taken at once never makes the count wrap.
        self.inner.queued.fetch_add(1, Ordering::Relaxed);
        match tx.try_send(Box::new(job)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.inner.queued.fetch_sub(1, Ordering::Relaxed);
                Err(Busy)
            }
        }
    }

    /// Jobs waiting in the queue (not yet started), at this moment.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::Relaxed)
    }

    /// Number of worker threads.
    pub fn threads(&self) -> usize {
        self.inner.size
    }

    /// Maximum number of queued (not yet running) jobs.
    pub fn capacity(&self) -> usize {
        self.inner.capacity
    }

    /// Stop taking jobs, let queued ones finish, and wait for the threads.
    pub fn shutdown(&self) {
        if let Ok(mut tx) = self.inner.tx.lock() {
            tx.take();
        }
        let threads =
            std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn full_queue_is_busy_at_once() {
        let pool = WorkerPool::new(1, 1);
        let (block_tx, block_rx) = channel::<()>();
        let (started_tx, started_rx) = channel::<()>();
        pool.try_submit(move || {
            started_tx.send(()).unwrap();
            block_rx.recv().unwrap();
        })
        .unwrap();
        started_rx.recv().unwrap(); // the worker is busy; the queue is empty
        pool.try_submit(|| {}).unwrap(); // fills the queue
        assert_eq!(pool.try_submit(|| {}), Err(Busy));
        block_tx.send(()).unwrap();
        pool.shutdown();
        assert_eq!(pool.try_submit(|| {}), Err(Busy));
    }

    #[test]
    fn a_panicking_job_does_not_kill_the_worker() {
        let pool = WorkerPool::new(1, 4);
        pool.try_submit(|| panic!("job panic")).unwrap();
        let (tx, rx) = channel();
        pool.try_submit(move || tx.send(1).unwrap()).unwrap();
        assert_eq!(rx.recv().unwrap(), 1);
        pool.shutdown();
    }
}
