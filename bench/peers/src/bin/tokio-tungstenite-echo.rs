//! tokio-tungstenite-echo: the idiomatic tokio-tungstenite WebSocket echo server, the peer
//! `bench/ws.sh` measures herd's `ws_echo` example against.
//!
//! A multi-thread runtime with `--threads` workers, an accept loop, and per connection a task
//! that runs `tokio_tungstenite::accept_async` (the server handshake, any path) and then
//! `ws.next().await` / `ws.send(msg).await` for every Text and Binary message, exactly as
//! tokio-tungstenite's own echo-server example does (plus TCP_NODELAY, which every peer sets).
//! Pings are answered and the close handshake is run by tungstenite itself. Listens on
//! 127.0.0.1 only; it must not be tuned beyond what a typical user would write.

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};

fn main() -> std::io::Result<()> {
    let opts = herd_bench_peers::from_env("tokio-tungstenite-echo");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", opts.port)).await?;
        loop {
            let (socket, _) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: keep serving the connections we have.
                    eprintln!("tokio-tungstenite-echo: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            tokio::spawn(serve(socket));
        }
    })
}

/// One connection: handshake, then echo data messages until the peer closes or errs.
async fn serve(socket: TcpStream) {
    let mut ws = match tokio_tungstenite::accept_async(socket).await {
        Ok(ws) => ws,
        Err(e) => {
            eprintln!("tokio-tungstenite-echo: handshake: {e}");
            return;
        }
    };
    while let Some(msg) = ws.next().await {
        let msg = match msg {
            Ok(m) => m,
            Err(_) => return,
        };
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            return;
        }
    }
}
