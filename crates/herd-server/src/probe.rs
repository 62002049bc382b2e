//! `herd-probe [HOST:PORT] [PATH]`: the container image's health check. Sends one HTTP/1.1
//! `GET PATH` (default `/api/status`) to `HOST:PORT` (default `127.0.0.1:8081`) and exits 0
//! if the answer's status is 2xx, 1 otherwise (no answer within 3 s, refused, another
//! status), with the reason on standard error. Standard library only. The `herd` binary runs
//! it when it is called as `herd-probe` (the image links `/usr/sbin/herd-probe` to `herd`, so
//! the probe costs the image no second static binary); `herd-dist` also builds it standalone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(3);

fn probe(addr: &str, path: &str) -> Result<u16, String> {
    let sa: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    let mut s = TcpStream::connect_timeout(&sa, TIMEOUT).map_err(|e| format!("{sa}: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    // The status line is all we need: read until its end (or 1 KiB).
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = s.read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let line = line.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    match (
        parts.next(),
        parts.next().and_then(|c| c.parse::<u16>().ok()),
    ) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => Ok(code),
        _ => Err(format!("not an HTTP answer: {line:?}")),
    }
}

/// Runs the probe with `args` (the arguments after the program name) and returns the exit
/// status: success for a 2xx answer, failure (reason on standard error) otherwise.
pub fn run(args: &[String]) -> ExitCode {
    let addr = args.first().map_or("127.0.0.1:8081", String::as_str);
    let path = args.get(1).map_or("/api/status", String::as_str);
    match probe(addr, path) {
        Ok(code) if (200..300).contains(&code) => ExitCode::SUCCESS,
        Ok(code) => {
            eprintln!("herd-probe: {addr}{path}: status {code}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("herd-probe: {e}");
            ExitCode::FAILURE
        }
    }
}
