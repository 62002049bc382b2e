//! Primes: CPU-heavy work offloaded to the blocking pool (docs/pool.md).
//!
//! `GET /primes?n=N` counts the primes below N with a sieve on a worker-pool thread, so the
//! loop keeps serving other connections meanwhile; the answer comes back to the loop and is
//! written in request order. `n` missing, not a number or above `MAX_N` is answered 400;
//! a full pool queue 503.
//!
//! `cargo run --release --example primes -- --port 8090 --loops 1 --pool-threads 2`, then
//! `curl '127.0.0.1:8090/primes?n=1000000'` (prints `78498`).

use herd::args::ServeArgs;
use herd::http::extract::Query;
use herd::http::{HttpService, Method, Router, StatusCode};
use herd::pool::WorkerPool;
use herd::Server;
use serde::Deserialize;

/// The largest N the route accepts (the sieve takes N bytes).
pub const MAX_N: u64 = 10_000_000;

/// The query string: `?n=N`.
#[derive(Deserialize)]
pub struct Below {
    n: u64,
}

/// How many primes are below `n` (sieve of Eratosthenes).
pub fn count_primes(n: u64) -> u64 {
    let n = n as usize;
    if n < 3 {
        return 0;
    }
    let mut composite = vec![false; n];
    let mut i = 2;
    while i * i < n {
        if !composite[i] {
            for m in (i * i..n).step_by(i) {
                composite[m] = true;
            }
        }
        i += 1;
    }
    composite[2..].iter().filter(|c| !**c).count() as u64
}

/// The route's handler. It runs on a pool thread, its extractor too.
fn primes_below(Query(q): Query<Below>) -> Result<String, (StatusCode, String)> {
    if q.n > MAX_N {
        let why = format!("n must be at most {MAX_N}\n");
        return Err((StatusCode::BAD_REQUEST, why));
    }
    Ok(format!("{}\n", count_primes(q.n)))
}

/// The service: one route on `pool`. Query errors are the extractor's 400.
pub fn service(pool: WorkerPool) -> HttpService {
    let router = Router::new().route_blocking_with(Method::GET, "/primes", primes_below);
    HttpService::new(router).pool(pool)
}

fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(8090);
    let threads = args.get::<usize>("pool-threads").unwrap_or(2);
    let pool = WorkerPool::new(threads, 256);
    let server = service(pool).serve(Server::new().bind(args.addr())?.loops(args.loops))?;
    eprintln!(
        "primes: http://{}/primes?n=1000000 ({threads} pool thread(s))",
        server.local_addr()
    );
    server.join();
    Ok(())
}
