//! rustls in memory, client and server in one thread, with one crypto provider: full
//! handshakes (TLS 1.3, ECDSA P-256 certificate, X25519) or bulk transfer (16 KiB application
//! records, server to client). Prints time per operation; run it under callgrind for
//! instruction counts (bench/tls-provider/run.sh does both for each provider).
//!
//! Usage: `herd-tls-provider-bench aws-lc-rs|aws-lc-rs-x25519|ring|ring-x25519 handshake|resume|bulk N`

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

/// `aws-lc-rs` is rustls' default (key exchange X25519MLKEM768 first, the post-quantum
/// hybrid, when the client offers it); `aws-lc-rs-x25519` the same provider with X25519 only,
/// for a like-for-like comparison with `ring` (which has no ML-KEM); `ring-x25519` pins ring
/// to X25519 too (with ring's default list, a resumed TLS 1.3 session was seen to fall back to
/// P-384).
#[allow(deprecated)] // ring::default_provider: "no support for post-quantum algorithms"
fn provider(name: &str) -> Arc<CryptoProvider> {
    Arc::new(match name {
        "aws-lc-rs" => rustls::crypto::aws_lc_rs::default_provider(),
        "aws-lc-rs-x25519" => CryptoProvider {
            kx_groups: vec![rustls::crypto::aws_lc_rs::kx_group::X25519],
            ..rustls::crypto::aws_lc_rs::default_provider()
        },
        "ring" => rustls::crypto::ring::default_provider(),
        "ring-x25519" => CryptoProvider {
            kx_groups: vec![rustls::crypto::ring::kx_group::X25519],
            ..rustls::crypto::ring::default_provider()
        },
        other => panic!("unknown provider {other}"),
    })
}

fn transfer<A, B>(from: &mut rustls::ConnectionCommon<A>, to: &mut rustls::ConnectionCommon<B>)
where
    A: rustls::SideData,
    B: rustls::SideData,
{
    let mut buf = Vec::with_capacity(64 * 1024);
    while from.wants_write() {
        from.write_tls(&mut buf).unwrap();
    }
    let mut rd = &buf[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
        to.process_new_packets().unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (prov, mode, n) = match &args[1..] {
        [p, m, n] => (p.as_str(), m.as_str(), n.parse::<usize>().unwrap()),
        _ => panic!("usage: herd-tls-provider-bench aws-lc-rs|ring handshake|resume|bulk N"),
    };
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let p = provider(prov);
    let mut server = ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    if mode == "resume" {
        server.ticketer = match prov {
            "ring" => rustls::crypto::ring::Ticketer::new().unwrap(),
            _ => rustls::crypto::aws_lc_rs::Ticketer::new().unwrap(),
        };
    } else {
        server.send_tls13_tickets = 0;
    }
    let server = Arc::new(server);
    let mut roots = RootCertStore::empty();
    roots.add(der).unwrap();
    let client = Arc::new(
        ClientConfig::builder_with_provider(p)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let name = ServerName::try_from("localhost").unwrap();
    let connect = || {
        let mut c = ClientConnection::new(client.clone(), name.clone()).unwrap();
        let mut s = ServerConnection::new(server.clone()).unwrap();
        while c.is_handshaking() || s.is_handshaking() {
            transfer(&mut c, &mut s);
            transfer(&mut s, &mut c);
        }
        (c, s)
    };
    let t = Instant::now();
    let mut resumed = 0;
    match mode {
        "handshake" | "resume" => {
            if mode == "resume" {
                // One full handshake that leaves tickets in the client's cache.
                let (mut c, mut s) = connect();
                s.writer().write_all(b"x").unwrap();
                transfer(&mut s, &mut c);
            }
            for _ in 0..n {
                let (mut c, mut s) = connect();
                if mode == "resume" {
                    resumed += usize::from(matches!(
                        s.handshake_kind(),
                        Some(rustls::HandshakeKind::Resumed)
                    ));
                    // New tickets for the next round.
                    s.writer().write_all(b"x").unwrap();
                    transfer(&mut s, &mut c);
                }
            }
        }
        "bulk" => {
            let (mut c, mut s) = connect();
            eprintln!(
                "{prov}: {:?}, {:?}",
                s.negotiated_cipher_suite().map(|x| x.suite()),
                s.negotiated_key_exchange_group().map(|g| g.name())
            );
            let chunk = vec![0x5a; 16 * 1024];
            let mut sink = vec![0; 64 * 1024];
            for _ in 0..n {
                s.writer().write_all(&chunk).unwrap();
                transfer(&mut s, &mut c);
                let mut got = 0;
                while got < chunk.len() {
                    got += c.reader().read(&mut sink).unwrap();
                }
            }
        }
        other => panic!("unknown mode {other}"),
    }
    let per = t.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64;
    println!("{prov} {mode} n={n} {per:.2} us/op resumed={resumed}");
}
