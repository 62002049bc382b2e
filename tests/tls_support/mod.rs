//! Shared pieces of the TLS tests: a rustls client config trusting a test CA, a blocking
//! client stream, and a reader of Content-Length responses.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use herd::tls::rustls::{
    self, pki_types::pem::PemObject, pki_types::ServerName, ClientConfig, RootCertStore,
};

/// The CA file's certificates as a root store.
pub fn roots(ca: &Path) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

/// A client trusting `ca`, offering `http/1.1` by ALPN if `alpn`.
pub fn client_config(ca: &Path, alpn: bool) -> ClientConfig {
    let mut cfg = ClientConfig::builder()
        .with_root_certificates(roots(ca))
        .with_no_client_auth();
    if alpn {
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    }
    cfg
}

/// A blocking TLS client stream.
pub type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Connect to `addr` asking for `name` (SNI, and the name verified).
pub fn connect(addr: SocketAddr, cfg: &Arc<ClientConfig>, name: &str) -> Tls {
    let sock = herd_testkit::connect(addr);
    let conn =
        rustls::ClientConnection::new(cfg.clone(), ServerName::try_from(name.to_string()).unwrap())
            .unwrap();
    rustls::StreamOwned::new(conn, sock)
}

/// Read one response with a Content-Length body; returns (status line, body).
pub fn read_response(s: &mut impl Read, buf: &mut Vec<u8>) -> (String, Vec<u8>) {
    let (status, _, body) = read_response_head(s, buf);
    (status, body)
}

/// Read one response with a Content-Length body; returns (status line, head, body).
pub fn read_response_head(s: &mut impl Read, buf: &mut Vec<u8>) -> (String, String, Vec<u8>) {
    let mut chunk = [0u8; 16384];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = buf[end + 4..end + 4 + len].to_vec();
                buf.drain(..end + 4 + len);
                let status = head.lines().next().unwrap_or("").to_string();
                return (status, head, body);
            }
        }
        let n = s.read(&mut chunk).expect("read");
        assert!(n > 0, "closed before a whole response");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `GET path` and its response.
pub fn get(s: &mut Tls, path: &str, buf: &mut Vec<u8>) -> (String, Vec<u8>) {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .unwrap();
    read_response(s, buf)
}
