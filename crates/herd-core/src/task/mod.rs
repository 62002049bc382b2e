//! Async tasks on the event loop: a per-loop executor, cosockets (outbound TCP on the loop's
//! own poller), sleeps on the loop's clock, and a local channel.
//!
//! Each loop owns one executor. [`spawn_local`] (or [`Conn::spawn`](crate::Conn::spawn) and
//! [`LoopCx::spawn`](crate::LoopCx::spawn) from callbacks) starts a future on the current loop,
//! with no `Send` bound: a task may hold `Rc`s and the loop's own state. A task woken by a
//! socket event (its connection's message, its cosocket's readiness) is polled right after
//! that event, while what it brought is still in the cache; new tasks, and tasks woken by
//! timers or other threads, are polled after the loop has handled its events and timers. Both
//! go in the order they were woken, at most [`POLL_BUDGET`] per round so a busy task cannot
//! starve the sockets. A task's [`Waker`]
//! may be used from any thread: on the loop's own thread it queues the task directly, from
//! elsewhere it goes through the loop's command queue and its coalesced wake-up, so a burst of
//! wake-ups costs one `epoll_wait` return.
//!
//! A task spawned for a connection ([`Conn::spawn`](crate::Conn::spawn)) is dropped
//! (cancelled) when that connection closes, and a panic in it closes that connection only; a
//! free task that panics is logged and dropped. [`JoinHandle`] awaits a task's output or aborts
//! it; dropping the handle lets the task run on.
//!
//! What it offers to await: [`TcpStream`] (connect with a timeout, read, write, shutdown,
//! registered edge-triggered on the loop's `Poll`), [`sleep`] and [`timeout`] on the loop's
//! clock (a fake clock in tests moves them), and [`channel`]. It must not block: a task that
//! blocks the thread blocks every connection of its loop. Nothing here runs, or costs anything,
//! on a loop with no tasks: the loop checks one empty queue per iteration.

mod chan;
mod conn;
mod http_client;
mod io;
mod time;
#[cfg(feature = "tls")]
mod tls;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use slab::Slab;

use crate::id::ConnId;
use crate::inbox::{Cmd, Inbox};

pub use chan::{channel, Receiver, Sender};
pub(crate) use conn::TaskQueue;
pub use conn::{ConnTasks, TaskConn, TaskConnState, QUEUE_MAX};
pub use http_client::{
    is_idempotent, BodySource, ClientBody, ClientError, ClientOptions, ClientStats, ErrorKind,
    HttpClient, Upstream,
};
pub use io::TcpStream;
pub use time::{sleep, timeout, Elapsed, Sleep};
#[cfg(feature = "tls")]
pub use tls::{TlsConnector, TlsStream, CLIENT_HANDSHAKE_TIMEOUT};

pub(crate) use io::{Reactor, COSOCKET_BASE};

/// Tasks polled per loop iteration at most; the rest wait for the next (which then does not
/// block in `epoll_wait`).
pub const POLL_BUDGET: usize = 1024;

/// A task's place in its loop's executor: slot and generation (a stale wake-up for a reused
/// slot is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TaskKey {
    slot: u32,
    gen: u32,
}

type BoxFuture = Pin<Box<dyn Future<Output = ()>>>;

struct TaskSlot {
    gen: u32,
    /// `None` while the task is being polled.
    fut: Option<BoxFuture>,
    /// In the ready queue already (wake-ups before the next poll coalesce).
    queued: bool,
    /// Aborted while being polled: dropped when the poll returns.
    aborted: bool,
    owner: Option<ConnId>,
    /// `None` while the task is being polled (moved out with `fut`: no reference count is
    /// touched per poll).
    waker: Option<Waker>,
}

/// One loop's executor (see the module docs).
pub(crate) struct Executor {
    /// A process-unique id: wakers compare it with the current thread's executor.
    id: usize,
    tasks: RefCell<Slab<TaskSlot>>,
    ready: RefCell<VecDeque<TaskKey>>,
    /// Tasks spawned and not yet polled: polled after the woken ones of the same turn, so
    /// that tasks finishing their work (returning pooled connections, freeing buffers) run
    /// before new ones start and take what they freed.
    fresh: RefCell<VecDeque<TaskKey>>,
    /// Work for the end of the turn, after every ready task ran ([`defer`]).
    deferred: RefCell<Vec<Box<dyn FnOnce()>>>,
    next_gen: Cell<u32>,
    /// Tasks spawned for each connection (only connections that have some).
    owned: RefCell<HashMap<ConnId, Vec<TaskKey>>>,
    inbox: Arc<Inbox>,
    /// Commands for this loop's connections given on the loop's own thread (a task's or a
    /// callback's `Handle::send`, `notify`, `close`): run by the loop after its tasks, without
    /// the inbox's lock and eventfd wake-up.
    local_cmds: RefCell<Vec<Cmd>>,
    pub(crate) reactor: Reactor,
    /// The loop's time (ms), set by the loop before it polls tasks.
    now: Cell<u64>,
    /// Some task is alive (or was, since the loop last found none): only then does the loop
    /// look at ready tasks and task timers, so a loop without tasks pays one load per
    /// iteration.
    active: Cell<bool>,
}

thread_local! {
    /// The executor of the loop running on this thread.
    static CURRENT: RefCell<Option<Rc<Executor>>> = const { RefCell::new(None) };
}

static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// The executor of the loop on this thread.
pub(crate) fn current() -> Option<Rc<Executor>> {
    CURRENT.with(|c| c.borrow().clone())
}

fn with_current<R>(f: impl FnOnce(&Rc<Executor>) -> R) -> R {
    let exec = current().expect(
        "herd::task used outside an event loop: spawn tasks from a handler callback or another task",
    );
    f(&exec)
}

/// Queue `cmd` for the loop that owns `inbox` without going through it, if that loop runs on
/// this thread (`Err` gives the command back otherwise: it goes through the inbox).
pub(crate) fn push_local(inbox: &Arc<Inbox>, cmd: Cmd) -> Result<(), Cmd> {
    CURRENT.with(|c| match c.try_borrow() {
        Ok(cur) => match cur.as_ref() {
            Some(e) if Arc::ptr_eq(&e.inbox, inbox) => {
                e.local_cmds.borrow_mut().push(cmd);
                Ok(())
            }
            _ => Err(cmd),
        },
        Err(_) => Err(cmd),
    })
}

/// Await `fut`, catching a panic in any of its polls (the panic's payload comes back as
/// `Err`): for tasks that must answer even when the code they run panics.
pub(crate) async fn catch_panic<F: Future>(
    fut: F,
) -> Result<F::Output, Box<dyn std::any::Any + Send>> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        },
    )
    .await
}

/// The current loop's time in ms (its clock as of its last poll: a `FakeClock` in tests), as
/// pools age their connections; 0 outside a loop.
pub fn loop_now_ms() -> u64 {
    current().map_or(0, |e| e.now())
}

/// What a task's waker holds: enough to find the task from any thread.
struct TaskWaker {
    exec: usize,
    key: TaskKey,
    inbox: Arc<Inbox>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let local = CURRENT.with(|c| match c.try_borrow() {
            Ok(cur) => match cur.as_ref() {
                Some(e) if e.id == self.exec => {
                    e.wake(self.key);
                    true
                }
                _ => false,
            },
            Err(_) => false,
        });
        if !local {
            self.inbox.push(Cmd::WakeTask(self.key));
        }
    }
}

impl Executor {
    pub(crate) fn new(inbox: Arc<Inbox>, registry: mio::Registry, now: u64) -> Rc<Executor> {
        Rc::new(Executor {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            tasks: RefCell::new(Slab::new()),
            ready: RefCell::new(VecDeque::new()),
            fresh: RefCell::new(VecDeque::new()),
            deferred: RefCell::new(Vec::new()),
            next_gen: Cell::new(0),
            owned: RefCell::new(HashMap::new()),
            inbox,
            local_cmds: RefCell::new(Vec::new()),
            reactor: Reactor::new(registry),
            now: Cell::new(now),
            active: Cell::new(false),
        })
    }

    /// Whether the loop has to look at tasks at all (see `active`).
    #[inline]
    pub(crate) fn active(&self) -> bool {
        self.active.get()
    }

    /// After running tasks: with no task alive, the loop stops looking until the next spawn.
    /// (Timers and cosockets belong to tasks, so none can be pending then.)
    pub(crate) fn settle(&self) {
        if self.tasks.borrow().is_empty() && !self.has_ready() && self.deferred.borrow().is_empty()
        {
            self.active.set(false);
        }
    }

    /// Commands given on the loop's thread wait to be run.
    #[inline]
    pub(crate) fn has_local_cmds(&self) -> bool {
        !self.local_cmds.borrow().is_empty()
    }

    /// Move the waiting local commands into `into` (empty).
    pub(crate) fn take_local_cmds(&self, into: &mut Vec<Cmd>) {
        std::mem::swap(&mut *self.local_cmds.borrow_mut(), into);
    }

    /// Make this the executor of the current thread (the loop's, for its whole run).
    pub(crate) fn enter(self: &Rc<Self>) {
        CURRENT.with(|c| *c.borrow_mut() = Some(self.clone()));
    }

    /// The loop ends: drop every task (outside any borrow: their drops may touch the
    /// executor) and leave the thread.
    pub(crate) fn shut_down(self: &Rc<Self>) {
        let tasks: Vec<TaskSlot> = self.tasks.borrow_mut().drain().collect();
        drop(tasks);
        self.owned.borrow_mut().clear();
        self.ready.borrow_mut().clear();
        let cmds = std::mem::take(&mut *self.local_cmds.borrow_mut());
        drop(cmds);
        CURRENT.with(|c| *c.borrow_mut() = None);
    }

    /// The loop's time in ms.
    pub(crate) fn now(&self) -> u64 {
        self.now.get()
    }

    /// Set the loop's time (ms) before running tasks and timers.
    pub(crate) fn set_now(&self, now: u64) {
        self.now.set(now);
    }

    /// Some task is ready to be polled (the loop must not block).
    #[inline]
    pub(crate) fn has_ready(&self) -> bool {
        !self.ready.borrow().is_empty() || !self.fresh.borrow().is_empty()
    }

    /// Run the work [`defer`]red during this turn.
    pub(crate) fn run_deferred(&self) {
        loop {
            let work = std::mem::take(&mut *self.deferred.borrow_mut());
            if work.is_empty() {
                return;
            }
            for f in work {
                f();
            }
        }
    }

    /// Tasks alive (not finished, not cancelled).
    pub(crate) fn live(&self) -> usize {
        self.tasks.borrow().len()
    }

    fn spawn_boxed(&self, fut: BoxFuture, owner: Option<ConnId>) -> TaskKey {
        self.active.set(true);
        let gen = self.next_gen.get().wrapping_add(1);
        self.next_gen.set(gen);
        let mut tasks = self.tasks.borrow_mut();
        let entry = tasks.vacant_entry();
        let key = TaskKey {
            slot: entry.key() as u32,
            gen,
        };
        let waker = Waker::from(Arc::new(TaskWaker {
            exec: self.id,
            key,
            inbox: self.inbox.clone(),
        }));
        entry.insert(TaskSlot {
            gen,
            fut: Some(fut),
            queued: true,
            aborted: false,
            owner,
            waker: Some(waker),
        });
        drop(tasks);
        if let Some(id) = owner {
            self.owned.borrow_mut().entry(id).or_default().push(key);
        }
        self.fresh.borrow_mut().push_back(key);
        key
    }

    /// Queue `key` to be polled (a no-op for a finished task or one already queued).
    pub(crate) fn wake(&self, key: TaskKey) {
        let mut tasks = self.tasks.borrow_mut();
        if let Some(t) = tasks.get_mut(key.slot as usize) {
            if t.gen == key.gen && !t.queued {
                t.queued = true;
                self.ready.borrow_mut().push_back(key);
            }
        }
    }

    /// Drop the task now (or, while it is being polled, when its poll returns).
    fn abort(&self, key: TaskKey) {
        let removed = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.get_mut(key.slot as usize) {
                Some(t) if t.gen == key.gen => {
                    if t.fut.is_none() {
                        t.aborted = true;
                        None
                    } else {
                        Some(tasks.remove(key.slot as usize))
                    }
                }
                _ => None,
            }
        };
        if let Some(t) = removed {
            self.forget_owned(t.owner, key);
            drop(t);
        }
    }

    fn forget_owned(&self, owner: Option<ConnId>, key: TaskKey) {
        let Some(id) = owner else { return };
        let mut owned = self.owned.borrow_mut();
        if let Some(keys) = owned.get_mut(&id) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                owned.remove(&id);
            }
        }
    }

    /// Whether any connection has tasks (the close path looks only then).
    #[inline]
    pub(crate) fn has_owned(&self) -> bool {
        !self.owned.borrow().is_empty()
    }

    /// The connection `id` closed: cancel its tasks.
    pub(crate) fn cancel_owned(&self, id: ConnId) {
        let keys = self.owned.borrow_mut().remove(&id).unwrap_or_default();
        for key in keys {
            self.abort(key);
        }
    }

    /// Some task was woken and waits to be polled (fresh tasks aside).
    #[inline]
    pub(crate) fn has_woken(&self) -> bool {
        !self.ready.borrow().is_empty()
    }

    /// Poll ready tasks, at most [`POLL_BUDGET`]. Returns the connections whose task panicked
    /// (the loop closes them).
    pub(crate) fn run_ready(&self) -> Vec<ConnId> {
        let mut panicked = Vec::new();
        // The tasks woken before this turn first, then the new ones, then whatever woke
        // meanwhile (a task that keeps waking itself cannot hold the new ones back).
        let mut woken = self.ready.borrow().len();
        for _ in 0..POLL_BUDGET {
            let next = if woken > 0 {
                woken -= 1;
                self.ready.borrow_mut().pop_front()
            } else {
                let fresh = self.fresh.borrow_mut().pop_front();
                fresh.or_else(|| self.ready.borrow_mut().pop_front())
            };
            let Some(key) = next else {
                break;
            };
            self.poll_task(key, &mut panicked);
        }
        panicked
    }

    /// Poll the tasks woken so far, and those they wake, but not the fresh ones: the loop
    /// calls this right after the event that woke them, while what the event brought is still
    /// in the cache. New tasks keep waiting for the end of the turn (after the woken ones have
    /// returned what they hold, see `fresh`). At most [`POLL_BUDGET`] polls; returns the
    /// connections whose task panicked.
    pub(crate) fn run_woken(&self) -> Vec<ConnId> {
        let mut panicked = Vec::new();
        for _ in 0..POLL_BUDGET {
            let next = self.ready.borrow_mut().pop_front();
            let Some(key) = next else {
                break;
            };
            self.poll_task(key, &mut panicked);
        }
        panicked
    }

    /// Poll one queued task (a stale or finished key is skipped); a connection whose task
    /// panicked is added to `panicked`.
    fn poll_task(&self, key: TaskKey, panicked: &mut Vec<ConnId>) {
        let (mut fut, waker) = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(t) = tasks.get_mut(key.slot as usize) else {
                return;
            };
            if t.gen != key.gen {
                return;
            }
            t.queued = false;
            let Some(fut) = t.fut.take() else { return };
            let Some(waker) = t.waker.take() else {
                t.fut = Some(fut);
                return;
            };
            (fut, waker)
        };
        let mut cx = Context::from_waker(&waker);
        let polled = catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
        let mut tasks = self.tasks.borrow_mut();
        let aborted = tasks.get(key.slot as usize).is_none_or(|t| t.aborted);
        match polled {
            Ok(Poll::Pending) if !aborted => {
                if let Some(t) = tasks.get_mut(key.slot as usize) {
                    t.fut = Some(fut);
                    t.waker = Some(waker);
                }
            }
            outcome => {
                let owner = tasks.try_remove(key.slot as usize).and_then(|t| t.owner);
                drop(tasks);
                self.forget_owned(owner, key);
                if outcome.is_err() {
                    tracing::error!("task panicked; dropped");
                    panicked.extend(owner);
                }
                drop(fut);
                drop(waker);
            }
        }
    }
}

/// The output of a task, or why there is none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the task was cancelled")
    }
}

impl std::error::Error for Cancelled {}

struct JoinState<T> {
    out: Option<T>,
    done: bool,
    waiter: Option<Waker>,
}

/// Awaits a task's output ([`Cancelled`] if it was aborted, its connection closed or it
/// panicked). Dropping it detaches the task, which runs on.
pub struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
    key: TaskKey,
    exec: std::rc::Weak<Executor>,
}

impl<T> JoinHandle<T> {
    /// Cancel the task: it is dropped without being polled again.
    pub fn abort(&self) {
        if let Some(e) = self.exec.upgrade() {
            e.abort(self.key);
        }
    }

    /// The task has finished (or was cancelled).
    pub fn is_finished(&self) -> bool {
        self.state.borrow().done
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, Cancelled>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut st = self.state.borrow_mut();
        if let Some(v) = st.out.take() {
            return Poll::Ready(Ok(v));
        }
        if st.done {
            return Poll::Ready(Err(Cancelled));
        }
        st.waiter = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Marks the join state done when the task's future is dropped (finished or cancelled), and
/// wakes the awaiting handle.
struct Finish<T>(Rc<RefCell<JoinState<T>>>);

impl<T> Drop for Finish<T> {
    fn drop(&mut self) {
        let waiter = {
            let mut st = self.0.borrow_mut();
            st.done = true;
            st.waiter.take()
        };
        if let Some(w) = waiter {
            w.wake();
        }
    }
}

pub(crate) fn spawn_on<F>(
    exec: &Rc<Executor>,
    fut: F,
    owner: Option<ConnId>,
) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let state = Rc::new(RefCell::new(JoinState {
        out: None,
        done: false,
        waiter: None,
    }));
    let finish = Finish(state.clone());
    let key = exec.spawn_boxed(
        Box::pin(async move {
            let finish = finish;
            let v = fut.await;
            finish.0.borrow_mut().out = Some(v);
        }),
        owner,
    );
    JoinHandle {
        state,
        key,
        exec: Rc::downgrade(exec),
    }
}

/// Run `f` at the end of the loop's current turn, after every ready task was polled (a
/// pool trims what it holds then, so that what a finishing task returns can still be taken
/// by a task that starts in the same turn). Outside an event loop `f` runs now.
pub(crate) fn defer(f: impl FnOnce() + 'static) {
    match current() {
        Some(exec) => {
            exec.active.set(true);
            exec.deferred.borrow_mut().push(Box::new(f));
        }
        None => f(),
    }
}

/// Run `fut` on the current loop (from a handler callback or another task). Panics outside
/// an event loop's thread.
///
/// ```no_run
/// use herd_core::task;
/// # fn in_a_callback() {
/// let handle = task::spawn_local(async {
///     task::sleep(std::time::Duration::from_millis(10)).await;
///     42
/// });
/// # let _ = handle;
/// # }
/// ```
pub fn spawn_local<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    with_current(|e| spawn_on(e, fut, None))
}

/// Tasks alive on the current loop (for tests and metrics); 0 outside a loop.
pub fn live_tasks() -> usize {
    current().map_or(0, |e| e.live())
}

/// Await `a` and `b` at once, in the same task, and give both outputs. Each is polled only
/// when the task is woken and until it is ready, so two cosocket calls made this way run
/// concurrently without a second task.
///
/// ```
/// # fn main() {
/// # let fut = async {
/// let (x, y) = herd_core::task::join(async { 1 }, async { "two" }).await;
/// assert_eq!((x, y), (1, "two"));
/// # };
/// # let _ = fut;
/// # }
/// ```
pub async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(move |cx| {
        if ra.is_none() {
            if let Poll::Ready(v) = a.as_mut().poll(cx) {
                ra = Some(v);
            }
        }
        if rb.is_none() {
            if let Poll::Ready(v) = b.as_mut().poll(cx) {
                rb = Some(v);
            }
        }
        match (ra.take(), rb.take()) {
            (Some(x), Some(y)) => Poll::Ready((x, y)),
            (x, y) => {
                (ra, rb) = (x, y);
                Poll::Pending
            }
        }
    })
    .await
}
