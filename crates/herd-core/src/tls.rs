//! TLS on listeners (rustls): what a [`Server`](crate::Server) needs to terminate TLS, and a
//! builder that makes the rustls configuration from certificate files.
//!
//! A [`TlsAcceptor`] given to [`Server::tls`](crate::Server::tls) turns every accepted
//! connection of that server into a TLS session in the connection's transport (see
//! `conn/transport.rs`): the codecs and handlers above it see plaintext and do not know. The
//! handshake has its own timeout; a handshake that fails is closed with
//! [`CloseReason::Tls`](crate::CloseReason::Tls), counted by [`TlsFailure`] in
//! [`Stats::tls_failed`](crate::Stats::tls_failed) and logged once per peer address and
//! reason (per loop).
//!
//! [`TlsSettings::build`] loads PEM certificate chains and keys, picks a certificate per
//! connection by SNI (virtual hosts' server names first, through the same [`NameTable`] that
//! picks a server by `Host`; then the certificates' exact names, then their `*.` wildcards,
//! then the first certificate as the default), staples OCSP responses given as files, keeps a per-process session cache and
//! issues session tickets, and can verify client certificates against a CA file (mTLS). The
//! crypto provider is rustls' default, aws-lc-rs.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use rustls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use crate::names::NameTable;

/// Default time a client has to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a server needs to terminate TLS: the rustls configuration and the handshake policy.
#[derive(Clone)]
pub struct TlsAcceptor {
    config: Arc<ServerConfig>,
    handshake_timeout: Duration,
    plain_http_reply: bool,
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsAcceptor")
            .field("alpn", &self.config.alpn_protocols)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("plain_http_reply", &self.plain_http_reply)
            .finish()
    }
}

impl TlsAcceptor {
    /// Terminate TLS with `config`, handshake timeout [`HANDSHAKE_TIMEOUT`].
    pub fn new(config: Arc<ServerConfig>) -> Self {
        TlsAcceptor {
            config,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            plain_http_reply: false,
        }
    }

    /// Close a connection whose handshake has not finished after `d`.
    pub fn handshake_timeout(mut self, d: Duration) -> Self {
        self.handshake_timeout = d;
        self
    }

    /// Answer a plain HTTP request sent to this TLS port with a plain-text `400` that says so
    /// (as nginx does), instead of only closing. For HTTP listeners.
    pub fn plain_http_reply(mut self, on: bool) -> Self {
        self.plain_http_reply = on;
        self
    }

    /// The rustls configuration.
    pub fn config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    pub(crate) fn timeout_ms(&self) -> u64 {
        crate::clock::millis(self.handshake_timeout)
    }

    pub(crate) fn replies_to_plain_http(&self) -> bool {
        self.plain_http_reply
    }
}

/// Why a TLS connection failed; counted in [`Stats::tls_failed`](crate::Stats::tls_failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsFailure {
    /// The first bytes were not a TLS record (plain HTTP to a TLS port, random bytes).
    NotTls,
    /// A malformed or unexpected handshake message.
    BadHandshake,
    /// No protocol version, cipher suite, key-exchange group or ALPN protocol in common.
    Incompatible,
    /// The client rejected the server's certificate (it sent an alert).
    CertRejected,
    /// The client's certificate was missing or did not verify (mTLS).
    ClientCert,
    /// The handshake did not finish within the handshake timeout.
    Timeout,
    /// The peer closed the connection in the middle of the handshake.
    Eof,
    /// Any other TLS error (bad record MAC, an alert after the handshake, ...).
    Other,
}

impl TlsFailure {
    /// Number of reasons (size of [`Stats::tls_failed`](crate::Stats::tls_failed)).
    pub const COUNT: usize = 8;
    /// Every reason, in index order.
    pub const ALL: [TlsFailure; Self::COUNT] = [
        TlsFailure::NotTls,
        TlsFailure::BadHandshake,
        TlsFailure::Incompatible,
        TlsFailure::CertRejected,
        TlsFailure::ClientCert,
        TlsFailure::Timeout,
        TlsFailure::Eof,
        TlsFailure::Other,
    ];

    /// Position in [`TlsFailure::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// A short snake_case label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsFailure::NotTls => "not_tls",
            TlsFailure::BadHandshake => "bad_handshake",
            TlsFailure::Incompatible => "incompatible",
            TlsFailure::CertRejected => "cert_rejected",
            TlsFailure::ClientCert => "client_cert",
            TlsFailure::Timeout => "timeout",
            TlsFailure::Eof => "eof",
            TlsFailure::Other => "other",
        }
    }

    /// Classify a rustls error.
    pub fn of(e: &rustls::Error) -> TlsFailure {
        use rustls::{AlertDescription as A, Error as E, InvalidMessage as M};
        match e {
            E::InvalidMessage(M::InvalidContentType | M::UnknownProtocolVersion) => {
                TlsFailure::NotTls
            }
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::PeerMisbehaved(_) => TlsFailure::BadHandshake,
            E::PeerIncompatible(_) | E::NoApplicationProtocol => TlsFailure::Incompatible,
            E::AlertReceived(
                A::BadCertificate
                | A::UnknownCA
                | A::CertificateUnknown
                | A::CertificateExpired
                | A::CertificateRevoked
                | A::UnsupportedCertificate
                | A::AccessDenied,
            ) => TlsFailure::CertRejected,
            E::AlertReceived(
                A::ProtocolVersion | A::HandshakeFailure | A::InsufficientSecurity,
            ) => TlsFailure::Incompatible,
            E::NoCertificatesPresented | E::InvalidCertificate(_) => TlsFailure::ClientCert,
            _ => TlsFailure::Other,
        }
    }
}

const _: () = assert!(TlsFailure::COUNT == crate::stats::TLS_FAILURES);

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A problem with a TLS setting: which file, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// One certificate of a listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    /// PEM file with the certificate chain (leaf first).
    pub cert: PathBuf,
    /// PEM file with its private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// DER OCSP response to staple (optional).
    pub ocsp: Option<PathBuf>,
}

/// The certificate of a virtual host: its server names (`example.com`, `*.example.com`,
/// `www.example.*`) and, if it has one of its own, the certificate files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCert {
    /// The names, as in a `server_name`.
    pub names: Vec<String>,
    /// The certificate; `None`: the listener's certificates answer for these names.
    pub cert: Option<CertFiles>,
}

/// Whether clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificates are asked for.
    #[default]
    Off,
    /// Asked for, verified if given, not required.
    Optional,
    /// Required and verified.
    Required,
}

/// A listener's TLS settings, turned into a rustls configuration by [`TlsSettings::build`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificates; each serves the DNS names in its subjectAltName (exact and `*.`
    /// wildcard), and the first also serves clients that send no or an unknown name.
    pub certs: Vec<CertFiles>,
    /// Certificates by server name (virtual hosts), looked up before `certs`: the SNI name
    /// is matched against every entry's names as a `Host` is ([`NameTable`]); an entry
    /// without a certificate sends the client on to `certs`. With `certs` empty, the first
    /// entry with a certificate also serves clients that send no or an unknown name.
    pub servers: Vec<ServerCert>,
    /// ALPN protocols offered, in preference order (e.g. `http/1.1`); empty: no ALPN.
    pub alpn: Vec<String>,
    /// CA certificates (PEM) that client certificates must chain to.
    pub client_ca: Option<PathBuf>,
    /// Whether client certificates are asked for (needs `client_ca`).
    pub client_auth: ClientAuth,
    /// Sessions kept for stateful resumption, per process (0: none).
    pub session_cache: usize,
    /// Issue session tickets (stateless resumption).
    pub tickets: bool,
    /// Accept TLS 1.2 as well as 1.3.
    pub tls12: bool,
    /// The secret session-ticket keys derive from ([`SharedTicketer`]): processes given the
    /// same secret accept each other's tickets (a master gives its workers one). `None`: a
    /// random key of this process only.
    pub ticket_secret: Option<[u8; 32]>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            certs: Vec::new(),
            servers: Vec::new(),
            alpn: Vec::new(),
            client_ca: None,
            client_auth: ClientAuth::Off,
            session_cache: 20_480,
            tickets: true,
            tls12: true,
            ticket_secret: None,
        }
    }
}

/// Certificates by the name a client asks for (SNI).
#[derive(Debug)]
struct SniResolver {
    /// Virtual hosts' names; `None`: go on to the certificates' own names.
    by_server: NameTable<Option<Arc<CertifiedKey>>>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name else {
            return self.default.clone();
        };
        if let Some(Some(k)) = self.by_server.get(name) {
            return k.clone();
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return k.clone();
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(k) = self.wildcard.get(parent) {
                return k.clone();
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{}: no certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

/// Load one certificate with its key (and OCSP response), checking that they belong together.
/// Returns it with the DNS names it serves.
fn load_cert(files: &CertFiles) -> Result<(Arc<CertifiedKey>, Vec<String>), TlsError> {
    let chain = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| TlsError(format!("{}: {e}", files.key.display())))?;
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError(format!("{}: {e}", files.key.display())))?;
    let mut ck = CertifiedKey::new(chain, signer);
    ck.keys_match().map_err(|e| {
        TlsError(format!(
            "{} does not match {}: {e}",
            files.key.display(),
            files.cert.display()
        ))
    })?;
    if let Some(ocsp) = &files.ocsp {
        let bytes =
            std::fs::read(ocsp).map_err(|e| TlsError(format!("{}: {e}", ocsp.display())))?;
        ck.ocsp = Some(bytes);
    }
    let leaf = webpki::EndEntityCert::try_from(&ck.cert[0])
        .map_err(|e| TlsError(format!("{}: {e:?}", files.cert.display())))?;
    let names = leaf
        .valid_dns_names()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    Ok((Arc::new(ck), names))
}

impl TlsSettings {
    /// Load every file and build the rustls server configuration (also what `herd -t` runs).
    pub fn build(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let mut by_server = NameTable::new();
        let mut first_server = None;
        for s in &self.servers {
            let key = match &s.cert {
                Some(files) => Some(load_cert(files)?.0),
                None => None,
            };
            if first_server.is_none() {
                first_server.clone_from(&key);
            }
            for n in &s.names {
                by_server.insert(n, key.clone());
            }
        }
        let default = match (self.certs.first(), first_server) {
            (Some(first), _) => load_cert(first)?.0,
            (None, Some(key)) => key,
            (None, None) => return Err(TlsError("tls: no certificate given".into())),
        };
        let mut resolver = SniResolver {
            by_server,
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default,
        };
        for files in &self.certs {
            let (key, names) = load_cert(files)?;
            for name in names {
                match name.strip_prefix("*.") {
                    Some(parent) => resolver
                        .wildcard
                        .entry(parent.to_string())
                        .or_insert(key.clone()),
                    None => resolver.exact.entry(name).or_insert(key.clone()),
                };
            }
        }
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12 {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let builder = ServerConfig::builder_with_provider(Arc::new(server_provider()))
            .with_protocol_versions(versions)
            .map_err(|e| TlsError(format!("tls: {e}")))?;
        let builder = match (&self.client_ca, self.client_auth) {
            (_, ClientAuth::Off) => builder.with_no_client_auth(),
            (None, _) => {
                return Err(TlsError(
                    "tls: client certificates are asked for but no client_ca is given".into(),
                ))
            }
            (Some(ca), auth) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in read_certs(ca)? {
                    roots
                        .add(c)
                        .map_err(|e| TlsError(format!("{}: {e}", ca.display())))?;
                }
                let v = WebPkiClientVerifier::builder(Arc::new(roots));
                let v = if auth == ClientAuth::Optional {
                    v.allow_unauthenticated()
                } else {
                    v
                };
                let v = v
                    .build()
                    .map_err(|e| TlsError(format!("{}: {e}", ca.display())))?;
                builder.with_client_cert_verifier(v)
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(resolver));
        // The server's suite order decides (see `server_provider`).
        config.ignore_client_order = true;
        config.alpn_protocols = self.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        config.session_storage = if self.session_cache > 0 {
            rustls::server::ServerSessionMemoryCache::new(self.session_cache)
        } else {
            Arc::new(rustls::server::NoServerSessionStorage {})
        };
        if self.tickets {
            config.ticketer = match self.ticket_secret {
                Some(secret) => Arc::new(SharedTicketer::new(secret, TICKET_PERIOD_SECS)),
                None => rustls::crypto::aws_lc_rs::Ticketer::new()
                    .map_err(|e| TlsError(format!("tls: session tickets: {e}")))?,
            };
        }
        Ok(Arc::new(config))
    }
}

/// The crypto provider listeners use: the process default (aws-lc-rs unless the application
/// installed another), its cipher suites reordered so AES-128-GCM comes first in each
/// version. Clients (OpenSSL, rustls, browsers) mostly list AES-256-GCM-SHA384 first, whose
/// SHA-384 key schedule aws-lc runs without SHA-512 acceleration on some CPUs: `bench/tls.sh`
/// measured 17% less server CPU per resumed TLS 1.3 handshake with AES-128-GCM-SHA256, which
/// is as strong as a TLS key exchange with X25519 or P-256 needs (Mozilla's recommended
/// configurations list it first too).
fn server_provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::CryptoProvider::get_default()
        .map(|p| (**p).clone())
        .unwrap_or_else(rustls::crypto::aws_lc_rs::default_provider);
    provider.cipher_suites.sort_by_key(|s| {
        use rustls::CipherSuite as C;
        match s.suite() {
            C::TLS13_AES_128_GCM_SHA256
            | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
            C::TLS13_AES_256_GCM_SHA384
            | C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
            | C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
            _ => 2,
        }
    });
    provider
}

/// How long one ticket key is used for new tickets; tickets of the previous period are still
/// accepted, so a ticket lives between one and two periods.
pub const TICKET_PERIOD_SECS: u64 = 6 * 3600;

/// Session tickets sealed with AES-256-GCM under a key derived from a shared secret and the
/// current time period (HMAC-SHA256(secret, period)), so every process given the same secret
/// (the workers of one master) accepts every other's tickets, and keys rotate by themselves.
/// A ticket is `period (8 bytes) | nonce (12) | ciphertext | tag (16)`.
pub struct SharedTicketer {
    secret: aws_lc_rs::hmac::Key,
    period_secs: u64,
    now: fn() -> u64,
}

impl fmt::Debug for SharedTicketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedTicketer")
            .field("period_secs", &self.period_secs)
            .finish_non_exhaustive()
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SharedTicketer {
    /// Tickets under keys derived from `secret`, a new key every `period_secs`.
    pub fn new(secret: [u8; 32], period_secs: u64) -> Self {
        SharedTicketer {
            secret: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret),
            period_secs: period_secs.max(1),
            now: unix_secs,
        }
    }

    fn key(&self, period: u64) -> aws_lc_rs::aead::LessSafeKey {
        let tag = aws_lc_rs::hmac::sign(&self.secret, &period.to_be_bytes());
        let unbound = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, tag.as_ref())
            .expect("a 32-byte key");
        aws_lc_rs::aead::LessSafeKey::new(unbound)
    }

    fn period(&self) -> u64 {
        (self.now)() / self.period_secs
    }
}

impl rustls::server::ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        u32::try_from(self.period_secs).unwrap_or(u32::MAX)
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        use aws_lc_rs::rand::SecureRandom;
        let period = self.period();
        let mut nonce = [0u8; 12];
        aws_lc_rs::rand::SystemRandom::new().fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(8 + 12 + plain.len() + 16);
        out.extend_from_slice(&period.to_be_bytes());
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        self.key(period)
            .seal_in_place_append_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::from(&out[..8]),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < 8 + 12 + 16 {
            return None;
        }
        let period = u64::from_be_bytes(cipher[..8].try_into().ok()?);
        let now = self.period();
        if period != now && period.checked_add(1) != Some(now) {
            return None;
        }
        let nonce: [u8; 12] = cipher[8..20].try_into().ok()?;
        let mut body = cipher[20..].to_vec();
        let plain = self
            .key(period)
            .open_in_place(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::from(&cipher[..8]),
                &mut body,
            )
            .ok()?;
        let n = plain.len();
        body.truncate(n);
        Some(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_for(names: &[&str]) -> Arc<CertifiedKey> {
        let ck = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let der = PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
        let signer = provider.key_provider.load_private_key(der).unwrap();
        Arc::new(CertifiedKey::new(vec![ck.cert.der().clone()], signer))
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let (a, b, d) = (
            key_for(&["a.test"]),
            key_for(&["*.b.test"]),
            key_for(&["d"]),
        );
        let r = SniResolver {
            by_server: NameTable::new(),
            exact: HashMap::from([("a.test".to_string(), a.clone())]),
            wildcard: HashMap::from([("b.test".to_string(), b.clone())]),
            default: d.clone(),
        };
        assert!(Arc::ptr_eq(&r.pick(Some("A.test.")), &a));
        assert!(Arc::ptr_eq(&r.pick(Some("x.b.test")), &b));
        assert!(
            Arc::ptr_eq(&r.pick(Some("b.test")), &d),
            "a wildcard is one label"
        );
        assert!(Arc::ptr_eq(&r.pick(Some("x.y.b.test")), &d));
        assert!(Arc::ptr_eq(&r.pick(None), &d));
    }

    #[test]
    fn server_names_come_before_the_certificates_names() {
        let (a, v, d) = (key_for(&["a.test"]), key_for(&["v"]), key_for(&["d"]));
        let mut by_server = NameTable::new();
        by_server.insert("*.v.test", Some(v.clone()));
        by_server.insert("www.v.*", Some(v.clone()));
        by_server.insert("a.v.test", None);
        let r = SniResolver {
            by_server,
            exact: HashMap::from([("a.v.test".to_string(), a.clone())]),
            wildcard: HashMap::new(),
            default: d.clone(),
        };
        assert!(Arc::ptr_eq(&r.pick(Some("x.y.v.test")), &v), "any depth");
        assert!(Arc::ptr_eq(&r.pick(Some("WWW.v.org")), &v));
        assert!(
            Arc::ptr_eq(&r.pick(Some("a.v.test")), &a),
            "a server without a certificate falls back to the listener's"
        );
        assert!(Arc::ptr_eq(&r.pick(Some("v.test")), &d));
    }

    #[test]
    fn shared_tickets_open_in_another_process_and_expire_after_two_periods() {
        use rustls::server::ProducesTickets;
        let mut a = SharedTicketer::new([7; 32], 100);
        let mut b = SharedTicketer::new([7; 32], 100);
        a.now = || 1_000;
        b.now = || 1_050;
        let t = a.encrypt(b"session state").unwrap();
        assert_eq!(
            b.decrypt(&t).unwrap(),
            b"session state",
            "same secret, same period"
        );
        b.now = || 1_150;
        assert_eq!(
            b.decrypt(&t).unwrap(),
            b"session state",
            "the previous period"
        );
        b.now = || 1_250;
        assert!(b.decrypt(&t).is_none(), "two periods later");
        let other = SharedTicketer::new([8; 32], 100);
        assert!(other.decrypt(&t).is_none(), "another secret");
        let mut bad = t.clone();
        bad[30] ^= 1;
        a.now = || 1_000;
        assert!(a.decrypt(&bad).is_none(), "tampered");
        assert!(a.decrypt(&t[..10]).is_none(), "short");
    }

    #[test]
    fn failures_are_classified() {
        use rustls::{Error as E, InvalidMessage as M};
        assert_eq!(
            TlsFailure::of(&E::InvalidMessage(M::InvalidContentType)),
            TlsFailure::NotTls
        );
        assert_eq!(
            TlsFailure::of(&E::AlertReceived(rustls::AlertDescription::UnknownCA)),
            TlsFailure::CertRejected
        );
        assert_eq!(
            TlsFailure::of(&E::NoCertificatesPresented),
            TlsFailure::ClientCert
        );
        for (i, f) in TlsFailure::ALL.iter().enumerate() {
            assert_eq!(f.index(), i);
        }
    }
}
