//! herd-tls-client: the TLS load generator of bench/tls.sh for what wrk cannot do.
//!
//! Two modes, both against one address on loopback, with rustls (aws-lc-rs) sending an X25519
//! key share (as wrk's and Python's OpenSSL clients do, so both servers run the same key
//! exchange; P-256 is offered second, TLS 1.2 needs it with an ECDSA certificate), checking
//! the handshake signature but not the certificate chain:
//!
//! - `loop`: `--threads` threads each make one connection after another: TCP connect, TLS
//!   handshake (resuming the session of an earlier connection unless `--full`), `GET PATH`
//!   with `Connection: close`, read until the server closes, check for `200` and `--expect`.
//!   Unmeasured for `--warmup` seconds, then `--duration` measured seconds; prints
//!   `total N resumed R errors E seconds S rate X p50_us P p99_us Q mean_us connect C
//!   handshake H response R client_cpu_us U first_error ...` (the mean time of each phase and
//!   the client's own CPU per request, warm-up included).
//! - `hold`: opens `--conns` connections (`--threads` at a time), completes every handshake
//!   (and with `--request` one keep-alive `GET PATH` on each), prints `open N` and holds them
//!   all idle for `--hold` seconds, then closes them and exits.
//!
//! `--aes128` offers only the AES-128-GCM suites (SHA-256) instead of the default order
//! (AES-256-GCM with SHA-384 first).
//!
//! Every socket has read and write timeouts, so a run is bounded.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, StreamOwned};

/// The command line, parsed by hand (`--key value` pairs and flags).
struct Args {
    mode: String,
    addr: SocketAddr,
    path: String,
    expect: String,
    threads: usize,
    duration: f64,
    warmup: f64,
    tls12: bool,
    full: bool,
    conns: usize,
    hold: f64,
    request: bool,
    aes128: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: herd-tls-client loop|hold --addr IP:PORT [--path P] [--expect BODY] \
         [--threads N] [--duration S] [--warmup S] [--tls12] [--full] [--conns N] [--hold S] \
         [--request] [--aes128]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_else(|| usage());
    if mode != "loop" && mode != "hold" {
        usage();
    }
    let mut a = Args {
        mode,
        addr: SocketAddr::from(([127, 0, 0, 1], 443)),
        path: "/hello.txt".into(),
        expect: "Hello, world!".into(),
        threads: 8,
        duration: 5.0,
        warmup: 1.0,
        tls12: false,
        full: false,
        conns: 1000,
        hold: 5.0,
        request: false,
        aes128: false,
    };
    let mut addr = None;
    while let Some(k) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match k.as_str() {
            "--addr" => addr = Some(val().parse().unwrap_or_else(|_| usage())),
            "--path" => a.path = val(),
            "--expect" => a.expect = val(),
            "--threads" => a.threads = val().parse().unwrap_or_else(|_| usage()),
            "--duration" => a.duration = val().parse().unwrap_or_else(|_| usage()),
            "--warmup" => a.warmup = val().parse().unwrap_or_else(|_| usage()),
            "--conns" => a.conns = val().parse().unwrap_or_else(|_| usage()),
            "--hold" => a.hold = val().parse().unwrap_or_else(|_| usage()),
            "--tls12" => a.tls12 = true,
            "--full" => a.full = true,
            "--request" => a.request = true,
            "--aes128" => a.aes128 = true,
            _ => usage(),
        }
    }
    a.addr = addr.unwrap_or_else(|| usage());
    a.threads = a.threads.max(1);
    a
}

/// Accepts any certificate chain but checks the handshake signature with the provider.
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn config(args: &Args) -> Arc<ClientConfig> {
    let mut provider = CryptoProvider {
        kx_groups: vec![aws_lc_rs::kx_group::X25519, aws_lc_rs::kx_group::SECP256R1],
        ..aws_lc_rs::default_provider()
    };
    if args.aes128 {
        // Only the AES-128-GCM suites, whose hash is SHA-256 (the default prefers AES-256-GCM
        // with SHA-384 for TLS 1.3, as wrk and Python's OpenSSL do).
        provider.cipher_suites.retain(|s| {
            matches!(
                s.suite(),
                rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                    | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                    | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            )
        });
    }
    let provider = Arc::new(provider);
    let versions: &[&rustls::SupportedProtocolVersion] = if args.tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let mut cfg = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .expect("TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    if args.full {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(cfg)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// TCP connect and TLS handshake; returns the stream and whether the handshake resumed.
fn connect(args: &Args, cfg: &Arc<ClientConfig>) -> Result<(Tls, bool), String> {
    connect_timed(args, cfg, &mut Instant::now())
}

/// [`connect`], setting `tcp_done` to when the TCP connection was established.
fn connect_timed(
    args: &Args,
    cfg: &Arc<ClientConfig>,
    tcp_done: &mut Instant,
) -> Result<(Tls, bool), String> {
    let tcp = TcpStream::connect_timeout(&args.addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    *tcp_done = Instant::now();
    tcp.set_nodelay(true).ok();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok();
    tcp.set_write_timeout(Some(Duration::from_secs(5))).ok();
    let name = ServerName::try_from("localhost").expect("server name");
    let conn = ClientConnection::new(cfg.clone(), name).map_err(|e| format!("tls: {e}"))?;
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .map_err(|e| format!("handshake: {e}"))?;
    }
    let resumed = s.conn.handshake_kind() == Some(HandshakeKind::Resumed);
    Ok((s, resumed))
}

/// Sends `GET PATH` and reads the response: until EOF with `close`, else until it ends with
/// the expected body. Checks the status line and the body.
fn request(s: &mut Tls, args: &Args, close: bool) -> Result<(), String> {
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: localhost\r\n{}\r\n",
        args.path,
        if close { "Connection: close\r\n" } else { "" }
    );
    s.write_all(req.as_bytes())
        .and_then(|_| s.flush())
        .map_err(|e| format!("write: {e}"))?;
    let mut resp = Vec::with_capacity(1024);
    let mut buf = [0u8; 16384];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                resp.extend_from_slice(&buf[..n]);
                if !close && resp.ends_with(args.expect.as_bytes()) {
                    break;
                }
            }
            // The server closed without a close_notify after the response: its end.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    if resp.starts_with(b"HTTP/1.1 200") && resp.ends_with(args.expect.as_bytes()) {
        Ok(())
    } else {
        let head = String::from_utf8_lossy(&resp[..resp.len().min(60)]).into_owned();
        Err(format!("bad response: {head:?}"))
    }
}

/// This process's utime + stime in seconds (/proc/self/stat, USER_HZ = 100 on Linux).
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After "(comm) ": state is field 0, utime 11, stime 12.
    (tick(11) + tick(12)) / 100.0
}

fn run_loop(args: Arc<Args>) {
    let cfg = config(&args);
    let cpu0 = own_cpu();
    let start = Instant::now();
    let measure = start + Duration::from_secs_f64(args.warmup);
    let end = measure + Duration::from_secs_f64(args.duration);
    let total = Arc::new(AtomicU64::new(0));
    let resumed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Vec::<f64>::new()));
    let first_error = Arc::new(Mutex::new(String::new()));
    // Seconds spent in TCP connect, in the TLS handshake, and in request + response.
    let phases = Arc::new(Mutex::new([0f64; 3]));
    let mut handles = Vec::new();
    for _ in 0..args.threads {
        let (args, cfg) = (args.clone(), cfg.clone());
        let (total, resumed, errors) = (total.clone(), resumed.clone(), errors.clone());
        let (lat, first_error, phases) = (lat.clone(), first_error.clone(), phases.clone());
        handles.push(std::thread::spawn(move || {
            let mut mine = Vec::new();
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let (mut t1, mut t2) = (t0, t0);
                let r = connect_timed(&args, &cfg, &mut t1).and_then(|(mut s, re)| {
                    t2 = Instant::now();
                    request(&mut s, &args, true)?;
                    Ok(re)
                });
                if t0 < measure {
                    continue;
                }
                match r {
                    Ok(re) => {
                        total.fetch_add(1, Ordering::Relaxed);
                        resumed.fetch_add(re as u64, Ordering::Relaxed);
                        mine.push(t0.elapsed().as_secs_f64() * 1e6);
                        let mut p = phases.lock().unwrap();
                        p[0] += (t1 - t0).as_secs_f64();
                        p[1] += (t2 - t1).as_secs_f64();
                        p[2] += t2.elapsed().as_secs_f64();
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        let mut f = first_error.lock().unwrap();
                        if f.is_empty() {
                            *f = e;
                        }
                    }
                }
            }
            lat.lock().unwrap().extend(mine);
        }));
    }
    for h in handles {
        h.join().ok();
    }
    let mut lat = lat.lock().unwrap().clone();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |q: f64| {
        if lat.is_empty() {
            f64::NAN
        } else {
            lat[((q * lat.len() as f64) as usize).min(lat.len() - 1)]
        }
    };
    let total = total.load(Ordering::Relaxed);
    let client_cpu = (own_cpu() - cpu0) * 1e6 / total.max(1) as f64;
    let f = first_error.lock().unwrap().replace('\n', " ");
    let ph = phases
        .lock()
        .unwrap()
        .map(|x| x * 1e6 / total.max(1) as f64);
    println!(
        "total {total} resumed {} errors {} seconds {:.3} rate {:.1} p50_us {:.1} p99_us {:.1} \
         mean_us connect {:.1} handshake {:.1} response {:.1} client_cpu_us {:.1} first_error {}",
        resumed.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        args.duration,
        total as f64 / args.duration,
        pct(0.5),
        pct(0.99),
        ph[0],
        ph[1],
        ph[2],
        client_cpu,
        if f.is_empty() { "-" } else { &f }
    );
    std::process::exit(if total > 0 { 0 } else { 1 });
}

fn run_hold(args: Arc<Args>) {
    let cfg = config(&args);
    let per = args.conns.div_ceil(args.threads);
    let mut handles = Vec::new();
    for t in 0..args.threads {
        let (args, cfg) = (args.clone(), cfg.clone());
        let n = per.min(args.conns.saturating_sub(t * per));
        handles.push(std::thread::spawn(move || {
            let mut held = Vec::with_capacity(n);
            for _ in 0..n {
                let (mut s, _) = connect(&args, &cfg)?;
                if args.request {
                    request(&mut s, &args, false)?;
                }
                held.push(s);
            }
            Ok::<_, String>(held)
        }));
    }
    let mut held = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(v)) => held.extend(v),
            Ok(Err(e)) => {
                println!("failed after {} connections: {e}", held.len());
                std::process::exit(1);
            }
            Err(_) => std::process::exit(1),
        }
    }
    println!("open {}", held.len());
    std::io::stdout().flush().ok();
    std::thread::sleep(Duration::from_secs_f64(args.hold));
    drop(held);
}

fn main() {
    let args = Arc::new(parse_args());
    if args.mode == "loop" {
        run_loop(args)
    } else {
        run_hold(args)
    }
}
