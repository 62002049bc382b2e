//! What an HTTP server is made of before it runs: [`HttpService`] (router, options, access-log
//! hook, worker pool), and the [`HttpConfig`] it freezes into, which every loop's
//! [`HttpProtocol`](super::HttpProtocol) reads.
//!
//! Built once by the user (or the `herd` server from its configuration), then frozen behind an
//! `Arc` when serving starts; nothing here changes or locks afterwards. It runs no requests
//! (that is `server.rs`).

use std::io;
use std::sync::Arc;

use super::router::Router;
use super::server::HttpProtocol;
use super::{AccessEntry, HttpOptions};
use crate::pool::WorkerPool;
use crate::{Server, ServerHandle};

/// A callback receiving one [`AccessEntry`] per response.
type AccessLogFn = dyn Fn(&AccessEntry<'_>) + Send + Sync + 'static;

/// Everything an [`HttpService`] was configured with (router, options, access-log hook, pool),
/// frozen behind an `Arc` and read by every loop.
pub(super) struct HttpConfig {
    pub(super) router: Router,
    pub(super) opts: HttpOptions,
    pub(super) access_log: Option<Box<AccessLogFn>>,
    pub(super) pool: Option<WorkerPool>,
}

/// An HTTP service: routes, options and hooks, ready to be served on a [`Server`].
///
/// ```no_run
/// use herd_core::http::{Body, HttpOptions, HttpService, Method, Response, Router};
/// use herd_core::Server;
///
/// let router = Router::new()
///     .get("/", |_| Response::new(Body::from("home")))
///     .route_blocking(Method::POST, "/report", |req| {
///         // May block: runs on the worker pool.
///         Response::new(Body::from(format!("{} bytes", req.body().len().unwrap_or(0))))
///     });
/// let service = HttpService::new(router)
///     .options(HttpOptions::default())
///     .access_log(|e| eprintln!("{} {} {} {}", e.peer_addr, e.method, e.path, e.status));
/// let server = service.serve(Server::new().bind("127.0.0.1:8080")?.loops(2))?;
/// server.join();
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct HttpService {
    config: HttpConfig,
    /// Run on each loop's thread before it serves: install its per-loop state.
    loop_init: Vec<Arc<dyn Fn() + Send + Sync>>,
}

impl HttpService {
    /// A service answering with `router`, default options, no access log.
    pub fn new(router: Router) -> HttpService {
        HttpService {
            config: HttpConfig {
                router,
                opts: HttpOptions::default(),
                access_log: None,
                pool: None,
            },
            loop_init: Vec::new(),
        }
    }

    /// Replace the options.
    pub fn options(mut self, opts: HttpOptions) -> HttpService {
        self.config.opts = opts;
        self
    }

    /// Call `f` once per response (after it is queued) and per refused request. It runs on
    /// the event loop: hand the entry to a writer, do not block.
    pub fn access_log(mut self, f: impl Fn(&AccessEntry<'_>) + Send + Sync + 'static) -> Self {
        self.config.access_log = Some(Box::new(f));
        self
    }

    /// Run blocking routes on `pool` (e.g. one shared with other protocols). Without one, a
    /// router with blocking routes gets a pool of 4 threads and 1024 queued jobs.
    pub fn pool(mut self, pool: WorkerPool) -> HttpService {
        self.config.pool = Some(pool);
        self
    }

    /// Make a value of type `T` for every loop, on that loop's thread, for routes to reach
    /// with [`loop_state`](super::loop_state) (see [`super::state`]): `T` need not be `Send`.
    pub fn loop_state<T: 'static>(mut self, make: impl Fn() -> T + Send + Sync + 'static) -> Self {
        self.loop_init
            .push(Arc::new(move || super::state::install(make())));
        self
    }

    /// The handler factory for [`Server::serve`].
    pub fn into_factory(mut self) -> impl Fn() -> HttpProtocol + Send + Sync + Clone + 'static {
        if self.config.pool.is_none() && self.config.router.has_blocking() {
            self.config.pool = Some(WorkerPool::new(4, 1024));
        }
        let config = Arc::new(self.config);
        let init = Arc::new(self.loop_init);
        // The server calls the factory on each loop's own thread.
        move || {
            for f in init.iter() {
                f();
            }
            HttpProtocol::new(config.clone())
        }
    }

    /// Start serving on `server` (its listeners and options).
    pub fn serve(self, server: Server) -> io::Result<ServerHandle> {
        server.serve(self.into_factory())
    }
}
