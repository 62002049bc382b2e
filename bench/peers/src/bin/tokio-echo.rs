//! tokio-echo: the idiomatic tokio echo server, the peer herd's echo benchmark must beat.
//!
//! A multi-thread runtime with `--threads` workers, an accept loop, and per connection a task
//! that reads into an 8 KiB buffer and `write_all`s it back, exactly as tokio's own echo
//! example does (plus TCP_NODELAY, which every peer sets). Listens on 127.0.0.1 only. Started
//! by `bench/echo.sh`; it must not be tuned beyond what a typical tokio user would write.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn main() -> std::io::Result<()> {
    let opts = herd_bench_peers::from_env("tokio-echo");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.threads)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", opts.port)).await?;
        loop {
            let (mut socket, _) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: keep serving the connections we have.
                    eprintln!("tokio-echo: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8 * 1024];
                loop {
                    let n = match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if socket.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    })
}
