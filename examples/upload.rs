//! Upload: `PUT` or `POST` a body of any size to `/upload/NAME`; the server streams it into
//! `NAME` in a temporary directory as it arrives (never holding more than about 64 KiB of it
//! in memory) and answers `BYTES FNV1A64-HEX\n`.
//!
//! `cargo run --release --example upload -- --port 9003` then
//! `curl -T big.iso http://127.0.0.1:9003/upload/big.iso` (Content-Length) or
//! `some-command | curl -T - http://127.0.0.1:9003/upload/piped` (chunked). Bodies up to
//! 4 GiB are taken; larger ones get 413. `--dir D` stores into `D` instead.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use herd::args::ServeArgs;
use herd::http::{BodyStream, HttpService, IntoResponse, Params, Request, Router, StatusCode};
use herd::Server;

/// The largest body taken.
pub const MAX_UPLOAD: u64 = 4 << 30;

/// FNV-1a, 64 bits: the checksum the answer carries (cheap, no dependency).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(pub u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Add `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Stream the request body into `path`; the byte count and checksum.
async fn store(body: &mut BodyStream, path: &Path) -> Result<(u64, Fnv), String> {
    // Page-cache writes are short; a server writing to slow disks would hand them to a
    // worker pool instead of doing them on the loop.
    let mut file = File::create(path).map_err(|e| format!("create: {e}"))?;
    let (mut total, mut sum) = (0u64, Fnv::default());
    while let Some(chunk) = body.next_chunk().await.map_err(|e| e.to_string())? {
        file.write_all(&chunk).map_err(|e| format!("write: {e}"))?;
        sum.update(&chunk);
        total += chunk.len() as u64;
    }
    Ok((total, sum))
}

/// The upload routes, storing into `dir`.
pub fn router(dir: PathBuf) -> Router {
    let dir = Arc::new(dir);
    let handler = move |mut req: Request<BodyStream>| {
        let dir = dir.clone();
        async move {
            let name = req
                .extensions()
                .get::<Params>()
                .and_then(|p| p.get("name"))
                .unwrap_or("")
                .to_owned();
            if name.is_empty() || name.starts_with('.') || name.contains('/') {
                return (StatusCode::BAD_REQUEST, "bad file name\n").into_response();
            }
            match store(req.body_mut(), &dir.join(&name)).await {
                Ok((n, sum)) => format!("{n} {:016x}\n", sum.0).into_response(),
                Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
            }
        }
    };
    Router::new()
        .put_stream("/upload/:name", MAX_UPLOAD, handler.clone())
        .post_stream("/upload/:name", MAX_UPLOAD, handler)
}

#[allow(dead_code)] // the tests include this file for `router`
fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(9003);
    let dir = match args.extra.iter().find(|(k, _)| k == "dir") {
        Some((_, d)) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("herd-upload-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)?;
    let server = Server::new().bind(args.addr())?.loops(args.loops);
    let server = HttpService::new(router(dir.clone())).serve(server)?;
    eprintln!(
        "upload: {} (PUT /upload/NAME stores into {})",
        server.local_addr(),
        dir.display()
    );
    server.join();
    Ok(())
}
