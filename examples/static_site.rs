//! Static site: serves a directory over HTTP/1.1 (MIME types, ETag/304, Range, index.html,
//! sendfile bodies, no escape from the root), with an access log on stderr.
//!
//! `cargo run --release --example static_site -- --root ./public --port 8080 --loops 2`
//! (`--mount /prefix` serves it below a prefix; `--quiet 1` turns the access log off;
//! `--compress 1` turns on gzip/Brotli responses and pre-compressed `.br`/`.gz` files).

use herd::args::ServeArgs;
use herd::http::{Compression, HttpOptions, HttpService, Router, StaticDir};
use herd::Server;

fn main() -> std::io::Result<()> {
    let args = ServeArgs::from_env(8080);
    let root: String = args.get("root").unwrap_or_else(|| ".".into());
    let mount: String = args.get("mount").unwrap_or_else(|| "/".into());
    let quiet = args.get::<u8>("quiet").unwrap_or(0) != 0;
    let compress = args.get::<u8>("compress").unwrap_or(0) != 0;
    let dir = StaticDir::new(&root)?.precompressed(compress);
    eprintln!("static_site: serving {} at {mount}", dir.root().display());
    let opts = HttpOptions {
        compression: compress.then(Compression::default),
        ..HttpOptions::default()
    };
    let mut service = HttpService::new(Router::new().statics(&mount, dir)).options(opts);
    if !quiet {
        service = service.access_log(|e| {
            eprintln!(
                "{} \"{} {}\" {} {} {}ms",
                e.peer_addr,
                e.method,
                e.path,
                e.status,
                e.bytes,
                e.duration.as_millis()
            )
        });
    }
    let server = service.serve(Server::new().bind(args.addr())?.loops(args.loops))?;
    eprintln!(
        "static_site: listening on http://{} with {} loop(s)",
        server.local_addr(),
        server.loops()
    );
    server.join();
    Ok(())
}
