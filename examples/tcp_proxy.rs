//! TCP proxy: every accepted connection is relayed to an upstream, both ways, by one task per
//! connection (`ConnTasks`) and a cosocket to the upstream, on the connection's own loop.
//!
//! `cargo run --release --example echo -- --port 9000` (an upstream), then
//! `cargo run --release --example tcp_proxy -- --port 9003 --upstream 127.0.0.1:9000`;
//! whatever `nc 127.0.0.1 9003` sends comes back through the proxy. A half-close on either
//! side is passed on; an upstream that cannot be reached within a second closes the client.

use std::cell::RefCell;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use herd::args::ServeArgs;
use herd::codec::BytesCodec;
use herd::task::{self, ConnTasks, TaskConn, TcpStream};
use herd::Server;

async fn relay(mut client: TaskConn, upstream: SocketAddr) {
    let Ok(up) = TcpStream::connect_timeout(upstream, Duration::from_secs(1)).await else {
        return; // the connection closes when the task returns
    };
    // Two directions, two tasks, one socket: each borrows it only while it polls.
    let up = Rc::new(RefCell::new(up));
    let down = {
        let (up, to_client) = (up.clone(), client.handle());
        task::spawn_local(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = std::future::poll_fn(|cx| up.borrow_mut().poll_read(cx, &mut buf)).await;
                match n {
                    Ok(n) if n > 0 => to_client.send(Bytes::copy_from_slice(&buf[..n])),
                    _ => break,
                }
            }
        })
    };
    while let Some(msg) = client.recv().await {
        let mut rest = &msg[..];
        while !rest.is_empty() {
            match std::future::poll_fn(|cx| up.borrow_mut().poll_write(cx, rest)).await {
                Ok(n) if n > 0 => rest = &rest[n..],
                _ => return,
            }
        }
    }
    // The client half-closed: pass it on, then wait for the upstream's end.
    let _ = up.borrow().shutdown(Shutdown::Write);
    let _ = down.await;
}

fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(9003);
    let upstream: SocketAddr = args
        .get::<String>("upstream")
        .unwrap_or_else(|| "127.0.0.1:9000".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let opts = herd::Options {
        loops: args.loops,
        ..herd::Options::default()
    };
    let server = Server::new()
        .bind(args.addr())?
        .options(opts)
        .serve(move || ConnTasks::new(BytesCodec, move |c| relay(c, upstream)))?;
    eprintln!(
        "tcp proxy: {} -> {upstream}, {} loop(s)",
        server.local_addr(),
        server.loops()
    );
    server.join();
    Ok(())
}
