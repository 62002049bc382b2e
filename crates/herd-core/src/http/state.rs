//! Per-loop state for HTTP handlers, and the client's address.
//!
//! Per-loop state: values that need not be `Send` (an `Rc<RefCell<..>>`
//! cache, a cosocket pool, a connection to a local service), made once per event loop on
//! that loop's thread by [`HttpService::loop_state`](super::HttpService::loop_state) and
//! reached from any route running on the loop with [`loop_state`].
//!
//! Routes must be `Send + Sync` (one router serves every loop), so they cannot capture such a
//! value; they look it up instead, by type, in a map the loop's thread owns: no lock, one
//! hash lookup. State shared by all loops needs nothing from here: capture an `Arc` in the
//! route.

use std::any::{Any, TypeId};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;

thread_local! {
    static STATE: RefCell<HashMap<TypeId, Box<dyn Any>>> = RefCell::new(HashMap::new());
    /// The client of the request an inline handler is running for.
    static CLIENT: Cell<Option<SocketAddr>> = const { Cell::new(None) };
}

/// The client's address (after the PROXY protocol, when the listener reads it), in the
/// extensions of a request given to an async or worker-pool route; see [`client_addr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub SocketAddr);

/// The address of the client that sent `req`: the real client behind a balancer that sends
/// the PROXY protocol (`proxy_protocol` on the listener), else the socket's peer. Works in
/// inline, worker-pool and async routes; `None` for a request the server did not make.
///
/// ```
/// use herd_core::http::{client_addr, Body, Request, Router};
///
/// let router = Router::new().get("/ip", |req: Request<Body>| {
///     client_addr(&req).map(|a| a.ip().to_string()).unwrap_or_default()
/// });
/// # let _ = router;
/// ```
pub fn client_addr(req: &::http::Request<super::Body>) -> Option<SocketAddr> {
    if let Some(ClientAddr(a)) = req.extensions().get::<ClientAddr>() {
        return Some(*a);
    }
    CLIENT.with(Cell::get)
}

/// The client of the inline handler running on this thread.
#[allow(dead_code)]
pub(crate) fn current_client() -> Option<SocketAddr> {
    CLIENT.with(Cell::get)
}

/// Set (or clear) the client of the inline handler about to run on this thread.
#[inline(always)]
pub(crate) fn set_client(addr: Option<SocketAddr>) {
    CLIENT.with(|c| c.set(addr));
}

/// Make `value` this thread's (this loop's) state of its type, replacing an earlier one.
pub(crate) fn install<T: 'static>(value: T) {
    STATE.with(|s| {
        s.borrow_mut().insert(TypeId::of::<T>(), Box::new(value));
    });
}

/// A clone of the current loop's state of type `T` (made by
/// [`HttpService::loop_state`](super::HttpService::loop_state)); `None` if the service made
/// none of that type (or outside a loop). Keep it cheap to clone: an `Rc`.
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// use herd_core::http::{loop_state, Body, HttpService, Request, Router};
///
/// /// Requests this loop has served (no atomics: one loop, one thread).
/// #[derive(Clone, Default)]
/// struct Served(Rc<Cell<u64>>);
///
/// let router = Router::new().get("/count", |_: Request<Body>| {
///     let served = loop_state::<Served>().expect("made for every loop");
///     served.0.set(served.0.get() + 1);
///     format!("{} on this loop", served.0.get())
/// });
/// let service = HttpService::new(router).loop_state(Served::default);
/// # let _ = service;
/// ```
pub fn loop_state<T: Clone + 'static>() -> Option<T> {
    STATE.with(|s| {
        s.borrow()
            .get(&TypeId::of::<T>())
            .and_then(|v| v.downcast_ref::<T>())
            .cloned()
    })
}
