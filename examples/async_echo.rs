//! Echo server written as one task per connection: straight-line async code on herd's loop.
//!
//! `cargo run --release --example async_echo -- --port 9000 --loops 1`
//!
//! The same protocol as `examples/echo.rs` (callbacks), for comparing what the task API costs
//! per message (`bench/echo.sh` runs both beside tokio and a mio loop).

use herd::args::ServeArgs;
use herd::codec::BytesCodec;
use herd::task::{ConnTasks, TaskConn};
use herd::Server;

async fn echo(mut conn: TaskConn) {
    while let Some(msg) = conn.recv().await {
        conn.send(msg);
    }
}

fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(9000);
    let opts = herd::Options {
        loops: args.loops,
        ..herd::Options::default()
    };
    let server = Server::new()
        .bind(args.addr())?
        .options(opts)
        .serve(|| ConnTasks::new(BytesCodec, echo))?;
    eprintln!(
        "async echo: listening on {} with {} loop(s)",
        server.local_addr(),
        server.loops()
    );
    server.join();
    Ok(())
}
