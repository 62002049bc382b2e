//! Frame RPC: the server `bench/frame.sh` measures against tokio + LengthDelimitedCodec + prost
//! (`bench/peers/src/bin/tokio-frame.rs` does exactly the same work).
//!
//! Message id 1 answers inline on the loop, id 2 on the worker pool. Both decode an `RpcReq`
//! (`uint64 id = 1; bytes payload = 2`) and answer an `RpcResp` with the same fields, so the
//! reply body equals the request body and `herd-bench frame` can check every byte.
//!
//! `cargo run --release --example frame_rpc -- --port 9200 --loops 1 [--pool-threads 1]`

use herd::args::ServeArgs;
use herd::frame::prost;
use herd::frame::{FrameService, Router};
use herd::pool::WorkerPool;
use herd::Server;

const RPC_INLINE: u16 = 1;
const RPC_POOL: u16 = 2;

#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
struct RpcReq {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(bytes = "vec", tag = "2")]
    payload: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
#[prost(prost_path = "::herd::frame::prost")]
struct RpcResp {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(bytes = "vec", tag = "2")]
    payload: Vec<u8>,
}

fn answer(req: RpcReq) -> RpcResp {
    RpcResp {
        id: req.id,
        payload: req.payload,
    }
}

fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(9200);
    let pool_threads = args.get::<usize>("pool-threads").unwrap_or(1);
    let router = Router::new()
        .route(RPC_INLINE, |_cx, req: RpcReq| Ok(Some(answer(req))))
        .route_blocking(RPC_POOL, |req: RpcReq| Ok(answer(req)));
    let frames = FrameService::new(router).pool(WorkerPool::new(pool_threads, 4096));
    let server = Server::new()
        .bind(args.addr())?
        .loops(args.loops)
        .serve(move || frames.protocol())?;
    eprintln!(
        "frame_rpc: listening on {} with {} loop(s), {pool_threads} pool thread(s)",
        server.local_addr(),
        server.loops()
    );
    server.join();
    Ok(())
}
