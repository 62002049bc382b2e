//! tokio-frame: herd's frame-RPC work done the idiomatic tokio way, the peer `bench/frame.sh`
//! measures herd's `frame_rpc` example against.
//!
//! Wire format: herd's 12-byte frame header (u32 body length, u16 message id, u16 flags, u32
//! request id, big-endian) then the body, read and written by tokio-util's
//! `LengthDelimitedCodec` configured for it (4-byte length, `length_adjustment(8)` for the
//! id/flags/request-id fields that follow it, `num_skip(4)`), in a `Framed` stream/sink.
//! Per connection, one task: for each frame, decode the prost `RpcReq`, build the `RpcResp`
//! with the same fields, encode it after the reply header (same message id, RESPONSE flag,
//! the request id) and `send` it — `SinkExt::send` flushes after every item, as a typical
//! user writes it. Message id 1 answers on the task; id 2 runs the same work through
//! `spawn_blocking` (tokio's pool for blocking work). Any other id gets herd's UNKNOWN_ID
//! error frame. A multi-thread runtime with `--threads` workers; 127.0.0.1 only.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use prost::Message;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

const RPC_INLINE: u16 = 1;
const RPC_POOL: u16 = 2;
const RESPONSE: u16 = 1;
const ERROR: u16 = 2;
const ERROR_ID: u16 = 0xFFFF;
const UNKNOWN_ID: u16 = 1;
const MAX_FRAME: usize = 4 << 20;

#[derive(Clone, PartialEq, Message)]
struct RpcReq {
    #[prost(uint64, tag = "1")]
    id: u64,
    #[prost(bytes = "vec", tag = "2")]
    payload: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
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

/// The id/flags/request-id fields and the prost body of a reply (the codec adds the length).
fn reply(msg_id: u16, rid: u32, resp: &RpcResp) -> Bytes {
    let mut out = BytesMut::with_capacity(8 + resp.encoded_len());
    out.put_u16(msg_id);
    out.put_u16(RESPONSE);
    out.put_u32(rid);
    resp.encode(&mut out).expect("BytesMut grows");
    out.freeze()
}

fn error(rid: u32, code: u16, text: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(10 + text.len());
    out.put_u16(ERROR_ID);
    out.put_u16(RESPONSE | ERROR);
    out.put_u32(rid);
    out.put_u16(code);
    out.put_slice(text.as_bytes());
    out.freeze()
}

async fn serve(socket: TcpStream) {
    let codec = LengthDelimitedCodec::builder()
        .length_field_offset(0)
        .length_field_length(4)
        .length_adjustment(8)
        .num_skip(4)
        .max_frame_length(MAX_FRAME + 8)
        .big_endian()
        .new_codec();
    let mut framed = Framed::new(socket, codec);
    while let Some(frame) = framed.next().await {
        let Ok(mut frame) = frame else { return };
        if frame.len() < 8 {
            return;
        }
        let msg_id = frame.get_u16();
        let _flags = frame.get_u16();
        let rid = frame.get_u32();
        let out = match msg_id {
            RPC_INLINE => match RpcReq::decode(frame) {
                Ok(req) => reply(msg_id, rid, &answer(req)),
                Err(_) => return,
            },
            RPC_POOL => {
                let work = tokio::task::spawn_blocking(move || {
                    RpcReq::decode(frame).map(|req| reply(msg_id, rid, &answer(req)))
                });
                match work.await {
                    Ok(Ok(out)) => out,
                    _ => return,
                }
            }
            other => error(
                rid,
                UNKNOWN_ID,
                &format!("no handler for message id {other}"),
            ),
        };
        if framed.send(out).await.is_err() {
            return;
        }
    }
}

fn main() -> std::io::Result<()> {
    let opts = herd_bench_peers::from_env("tokio-frame");
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
                    eprintln!("tokio-frame: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            tokio::spawn(serve(socket));
        }
    })
}
