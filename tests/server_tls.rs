//! The herd server with `tls` listeners, as an operator runs it: echo and HTTP over TLS,
//! HSTS, the `https_redirect` listener, `herd -t` on a broken certificate, and a reload (HUP)
//! that swaps the certificate for new connections while a broken one keeps the old.

mod server_support;
mod tls_support;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use herd_testkit::certs::{Leaf, TestCa};
use server_support::{free_port, herd_bin, Herd, Signal, TempDir};
use tls_support::{connect, get};

/// A client trusting both CAs (so either certificate verifies) for `localhost`, with
/// resumption off: the ticket key outlives a reload, and a resumed session reports the
/// certificate of the session it resumed, not the one the server holds now.
fn client(cas: &[&TestCa]) -> Arc<herd::tls::rustls::ClientConfig> {
    let mut roots = herd::tls::rustls::RootCertStore::empty();
    for ca in cas {
        for c in tls_support::roots(&ca.ca_file()).roots {
            roots.roots.push(c);
        }
    }
    let mut cfg = herd::tls::rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = herd::tls::rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

/// One line echoed over TLS; returns the leaf certificate the server presented.
fn echo_tls(addr: SocketAddr, cfg: &Arc<herd::tls::rustls::ClientConfig>, line: &str) -> Vec<u8> {
    let mut s = connect(addr, cfg, "localhost");
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut got = String::new();
    BufReader::new(&mut s).read_line(&mut got).unwrap();
    assert_eq!(got, format!("{line}\n"));
    s.conn.peer_certificates().unwrap()[0].to_vec()
}

fn install(leaf: &Leaf, dir: &Path) {
    std::fs::copy(&leaf.cert, dir.join("site.pem")).unwrap();
    std::fs::copy(&leaf.key, dir.join("site.key")).unwrap();
}

fn tls_table(dir: &Path) -> String {
    format!(
        "tls = {{ cert = {:?}, key = {:?} }}\n",
        dir.join("site.pem"),
        dir.join("site.key")
    )
}

#[test]
fn echo_over_tls_and_a_reload_swaps_the_certificate() {
    let (ca1, ca2) = (TestCa::new("srv-tls-1"), TestCa::new("srv-tls-2"));
    let first = ca1.server("first", &["localhost"]);
    let second = ca2.server("second", &["localhost"]);
    let dir = TempDir::new("srv-tls");
    install(&first, &dir.0);
    let table = tls_table(&dir.0);
    let h = Herd::launch(dir, 2, "", |t| t.push_str(&table));
    let master = h.pid();
    let old = h.wait_ready_workers(master, 2);
    let cfg = client(&[&ca1, &ca2]);
    let der_first = std::fs::read_to_string(&first.cert).unwrap();
    let seen = echo_tls(h.addr(), &cfg, "hello over tls");
    let cert1 = seen.clone();
    assert!(!der_first.is_empty());

    // A new certificate, then HUP: new connections get it.
    install(&second, &h.dir.0);
    h.signal(Signal::Hup);
    h.wait_log("configuration reloaded: generation 2", |l| l.pid == master);
    // Only the new generation is left: the retired workers have exited.
    server_support::wait_until("the first generation has exited", || {
        let kids = server_support::children(master);
        kids.len() == 2 && kids.iter().all(|k| !old.contains(k))
    });
    h.wait_ready_workers(master, 2);
    let cert2 = echo_tls(h.addr(), &cfg, "after reload");
    assert_ne!(cert2, cert1);
    for _ in 0..4 {
        assert_eq!(echo_tls(h.addr(), &cfg, "again"), cert2);
    }

    // A broken certificate file: the reload fails, the running one keeps serving.
    std::fs::write(
        h.dir.path("site.pem"),
        "-----BEGIN CERTIFICATE-----\ngarbage\n",
    )
    .unwrap();
    h.signal(Signal::Hup);
    let e = h.wait_log("reload failed", |l| l.pid == master);
    assert!(e.msg.contains("site.pem"), "{}", e.msg);
    assert_eq!(echo_tls(h.addr(), &cfg, "still"), cert2);

    // `herd -t` says the same.
    let out = Command::new(herd_bin())
        .arg("-t")
        .arg("-c")
        .arg(&h.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("tls") && text.contains("site.pem"), "{text}");
}

#[test]
fn https_with_hsts_and_a_redirecting_http_listener() {
    let ca = TestCa::new("srv-https");
    let leaf = ca.server("site", &["localhost"]);
    let dir = TempDir::new("srv-https");
    install(&leaf, &dir.0);
    let (https, http) = (free_port(), free_port());
    let extra = format!(
        "\n[[listener]]\nname = \"https\"\nbind = \"127.0.0.1:{https}\"\nprotocol = \"http\"\n\
         [listener.tls]\ncert = {:?}\nkey = {:?}\nhsts = \"8760h\"\n\n\
         [[listener]]\nname = \"redirect\"\nbind = \"127.0.0.1:{http}\"\nprotocol = \"http\"\n\
         https_redirect = {https}\n",
        dir.0.join("site.pem"),
        dir.0.join("site.key")
    );
    let h = Herd::launch(dir, 1, "", |t| t.push_str(&extra));
    h.wait_ready_workers(h.pid(), 1);

    let cfg = Arc::new(tls_support::client_config(&ca.ca_file(), true));
    let addr = SocketAddr::from(([127, 0, 0, 1], https));
    let mut s = connect(addr, &cfg, "localhost");
    let mut buf = Vec::new();
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let (status, head, body) = tls_support::read_response_head(&mut s, &mut buf);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        head.to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{head}"
    );
    assert!(String::from_utf8_lossy(&body).contains("<html"));
    let (status, _) = get(&mut s, "/api/status", &mut buf);
    assert_eq!(status, "HTTP/1.1 200 OK");

    let mut plain = herd_testkit::connect(SocketAddr::from(([127, 0, 0, 1], http)));
    plain
        .write_all(b"GET /a/b?c=d HTTP/1.1\r\nHost: localhost:1234\r\nConnection: close\r\n\r\n")
        .unwrap();
    let reply = String::from_utf8_lossy(&herd_testkit::read_to_close(&mut plain)).to_string();
    assert!(reply.starts_with("HTTP/1.1 301"), "{reply}");
    assert!(
        reply.contains(&format!("location: https://localhost:{https}/a/b?c=d"))
            || reply.contains(&format!("Location: https://localhost:{https}/a/b?c=d")),
        "{reply}"
    );
}

/// Session tickets survive a binary upgrade: the old master hands its ticket secret to the
/// new binary, so a client that got a ticket before USR2 + QUIT resumes after it (a full
/// handshake otherwise, on every connection to an upgraded fleet).
#[test]
fn tickets_issued_before_a_binary_upgrade_resume_after_it() {
    use herd::tls::rustls::HandshakeKind;
    let ca = TestCa::new("srv-tls-upgrade");
    let leaf = ca.server("leaf", &["localhost"]);
    let dir = TempDir::new("srv-tls-upgrade");
    install(&leaf, &dir.0);
    let table = tls_table(&dir.0);
    let mut h = Herd::launch(dir, 1, "", |t| t.push_str(&table));
    let old_master = h.pid();
    h.wait_ready_workers(old_master, 1);
    let mut roots = herd::tls::rustls::RootCertStore::empty();
    for c in tls_support::roots(&ca.ca_file()).roots {
        roots.roots.push(c);
    }
    // The default client keeps tickets in memory and offers them.
    let cfg = Arc::new(
        herd::tls::rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let addr = h.addr();
    let echo = |line: &str| -> Option<HandshakeKind> {
        let mut s = connect(addr, &cfg, "localhost");
        s.write_all(format!("{line}\n").as_bytes()).unwrap();
        let mut got = String::new();
        // Reading the echo also takes in the tickets the server sent after its handshake.
        BufReader::new(&mut s).read_line(&mut got).unwrap();
        assert_eq!(got, format!("{line}\n"));
        s.conn.handshake_kind()
    };
    assert_eq!(echo("first"), Some(HandshakeKind::Full));
    assert_eq!(echo("resumed before"), Some(HandshakeKind::Resumed));

    h.signal(Signal::Usr2);
    let mut new_master = 0;
    server_support::wait_until("the new master's pid file", || {
        new_master = h.pid_in_file(&h.pid_file).unwrap_or(0);
        new_master != 0 && new_master != old_master
    });
    h.also_kill.push(new_master);
    h.wait_ready_workers(new_master, 1);
    h.signal(Signal::Quit);
    assert!(h.wait_exit().success());
    // Only the new binary's worker is left to answer.
    assert_eq!(echo("resumed after"), Some(HandshakeKind::Resumed));
    server_support::kill(new_master, Signal::Term).unwrap();
    server_support::wait_until("the new master exits", || {
        !server_support::alive(new_master)
    });
}
