//! A 1 GiB static file downloaded over loopback and checked by hash, while the server's
//! memory stays bounded (the body goes out with sendfile, never through a buffer).
//!
//! The file is sparse (zeros) with a distinct 64 KiB pattern block every 64 MiB, so it costs
//! almost no disk and a wrong offset or a lost block changes the hash. It is deleted after.
//! The server runs in this process, alone in this test binary, so the process RSS is the
//! server's plus this client's fixed buffers.

mod http_support;

use std::io::{Read, Seek, SeekFrom, Write};

use herd::http::{HttpOptions, Router, StaticDir};
use http_support::{serve, Client, StreamHash};

const SIZE: u64 = 1 << 30;
const BLOCK: usize = 64 * 1024;
const STRIDE: u64 = 64 << 20;

#[test]
fn one_gib_file_by_sendfile_with_bounded_memory() {
    let dir = std::env::temp_dir().join(format!("herd-http-bigfile-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("big.bin");
    {
        let mut f = std::fs::File::create(&path).unwrap();
        f.set_len(SIZE).unwrap();
        let mut at = 0;
        while at < SIZE {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&herd_testkit::pattern(at, BLOCK)).unwrap();
            at += STRIDE;
        }
    }
    // The expected hash, from the file itself.
    let mut want = StreamHash::default();
    {
        let mut f = std::fs::File::open(&path).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            want.update(&buf[..n]);
        }
    }

    let server = serve(
        Router::new().statics("/", StaticDir::new(&dir).unwrap()),
        HttpOptions::default(),
    );
    let rss_before = herd_testkit::rss_kib().expect("VmRSS");
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    // Read the head, then stream the body through the hash without keeping it.
    let mut s = c.s.try_clone().unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let mut head = Vec::new();
    let mut got = StreamHash::default();
    let mut body_bytes: u64 = 0;
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the head");
        head.extend_from_slice(&buf[..n]);
    }
    let end = head.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let text = String::from_utf8_lossy(&head[..end]).to_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains(&format!("content-length: {SIZE}\r\n")),
        "{text}"
    );
    got.update(&head[end..]);
    body_bytes += (head.len() - end) as u64;
    let mut rss_peak = rss_before;
    let mut reads = 0u64;
    while body_bytes < SIZE {
        let want_n = buf.len().min((SIZE - body_bytes) as usize);
        let n = s.read(&mut buf[..want_n]).unwrap();
        assert!(n > 0, "closed after {body_bytes} body bytes");
        got.update(&buf[..n]);
        body_bytes += n as u64;
        reads += 1;
        if reads % 256 == 0 {
            rss_peak = rss_peak.max(herd_testkit::rss_kib().unwrap_or(0));
        }
    }
    rss_peak = rss_peak.max(herd_testkit::rss_kib().unwrap_or(0));
    assert_eq!(
        got.finish(),
        want.finish(),
        "downloaded bytes differ from the file"
    );
    let growth_mib = rss_peak.saturating_sub(rss_before) / 1024;
    assert!(
        growth_mib < 64,
        "RSS grew by {growth_mib} MiB while serving 1 GiB (before {rss_before} KiB, peak {rss_peak} KiB)"
    );
    // The connection is still good for another request.
    assert_eq!(c.get("/").status, 404);
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}
