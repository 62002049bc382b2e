//! A listener's `tls = { ... }` table: certificates (several, chosen by SNI, and the
//! `[[listener.server]]` blocks' own `tls` certificates, chosen by server name), OCSP files,
//! client-certificate verification, resumption, the handshake timeout and HSTS; and what it
//! becomes: a [`TlsAcceptor`] for the listener's server.
//!
//! Loading happens in [`Config::validate`](crate::config::Config::validate) too, so `herd -t`
//! and a reload (HUP) check every file before anything is started: a certificate that does not
//! load or does not match its key keeps the running configuration and logs why. A reload
//! starts new workers, which load the files again, so a replaced certificate is what new
//! connections get.

use std::path::PathBuf;

use herd_core::tls::{CertFiles, ClientAuth, ServerCert, TlsAcceptor, TlsError, TlsSettings};
use serde::{Deserialize, Serialize};

use crate::config::{Dur, Protocol};
use crate::vhost::ServerConfig;

/// One more certificate (`[[listener.tls.certs]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// DER OCSP response to staple.
    #[serde(default)]
    pub ocsp: Option<PathBuf>,
}

impl CertConfig {
    fn files(&self) -> CertFiles {
        CertFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            ocsp: self.ocsp.clone(),
        }
    }

    /// Its paths, to make absolute.
    pub fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        let mut v = vec![&mut self.cert, &mut self.key];
        v.extend(self.ocsp.as_mut());
        v
    }
}

/// `client_auth`: whether clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuthConfig {
    /// Not asked for.
    #[default]
    Off,
    /// Asked for and verified if given.
    Optional,
    /// Required.
    Required,
}

/// A listener's TLS settings (`[listener.tls]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// PEM certificate chain of the default certificate. May be left out when every
    /// `[[listener.server]]` of the listener has its own `tls`.
    pub cert: PathBuf,
    /// Its PEM private key.
    pub key: PathBuf,
    /// Its DER OCSP response to staple.
    pub ocsp: Option<PathBuf>,
    /// More certificates; each serves the names in its subjectAltName.
    pub certs: Vec<CertConfig>,
    /// PEM CA certificates for client-certificate verification.
    pub client_ca: Option<PathBuf>,
    /// `off`, `optional` or `required` (needs `client_ca`).
    pub client_auth: ClientAuthConfig,
    /// Sessions cached per worker for resumption (0: none).
    pub session_cache: usize,
    /// Issue session tickets.
    pub tickets: bool,
    /// Accept TLS 1.2 (TLS 1.3 always).
    pub tls12: bool,
    /// A handshake must finish within this.
    pub handshake_timeout: Dur,
    /// http: send `Strict-Transport-Security: max-age=<this>` (absent: no HSTS header).
    pub hsts: Option<Dur>,
    /// http: add `includeSubDomains` to the HSTS header.
    pub hsts_subdomains: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        let s = TlsSettings::default();
        TlsConfig {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            ocsp: None,
            certs: Vec::new(),
            client_ca: None,
            client_auth: ClientAuthConfig::Off,
            session_cache: s.session_cache,
            tickets: s.tickets,
            tls12: s.tls12,
            handshake_timeout: Dur(herd_core::tls::HANDSHAKE_TIMEOUT),
            hsts: None,
            hsts_subdomains: false,
        }
    }
}

impl TlsConfig {
    /// Every path in the table, to make absolute.
    pub fn paths_mut(&mut self) -> Vec<&mut PathBuf> {
        let mut v = vec![&mut self.cert, &mut self.key];
        v.extend(self.ocsp.as_mut());
        v.extend(self.client_ca.as_mut());
        for c in &mut self.certs {
            v.extend(c.paths_mut());
        }
        v.retain(|p| !p.as_os_str().is_empty());
        v
    }

    /// Whether the listener's own `cert` and `key` are left out.
    fn no_own_cert(&self) -> bool {
        self.cert.as_os_str().is_empty() && self.key.as_os_str().is_empty()
    }

    /// The settings herd-core builds the rustls configuration from; `servers` are the
    /// listener's virtual hosts, whose own certificates are chosen by SNI first.
    pub fn settings(&self, protocol: Protocol, servers: &[ServerConfig]) -> TlsSettings {
        let first = (!self.no_own_cert()).then(|| CertFiles {
            cert: self.cert.clone(),
            key: self.key.clone(),
            ocsp: self.ocsp.clone(),
        });
        let more = self.certs.iter().map(CertConfig::files);
        // The default server first: without the listener's own certificate, herd-core
        // answers unknown names with the first server's.
        let mut order: Vec<&ServerConfig> = servers.iter().collect();
        order.sort_by_key(|s| !s.default);
        TlsSettings {
            certs: first.into_iter().chain(more).collect(),
            servers: order
                .into_iter()
                .map(|s| ServerCert {
                    names: s.server_name.clone(),
                    cert: s.tls.as_ref().map(CertConfig::files),
                })
                .collect(),
            alpn: match protocol {
                Protocol::Http | Protocol::Ws | Protocol::Admin => vec!["http/1.1".into()],
                Protocol::Frame | Protocol::Echo => Vec::new(),
            },
            client_ca: self.client_ca.clone(),
            client_auth: match self.client_auth {
                ClientAuthConfig::Off => ClientAuth::Off,
                ClientAuthConfig::Optional => ClientAuth::Optional,
                ClientAuthConfig::Required => ClientAuth::Required,
            },
            session_cache: self.session_cache,
            tickets: self.tickets,
            tls12: self.tls12,
            ticket_secret: None,
        }
    }

    /// Check the table and load every file, the server blocks' certificates too (what `-t`
    /// and a reload run). `has_root`: the listener's own `root` is an implicit server, which
    /// has no certificate of its own.
    pub fn check(
        &self,
        protocol: Protocol,
        servers: &[ServerConfig],
        has_root: bool,
    ) -> Result<(), TlsError> {
        let every_server_has_one =
            !servers.is_empty() && !has_root && servers.iter().all(|s| s.tls.is_some());
        if self.no_own_cert() && !every_server_has_one {
            return Err(TlsError(
                "`cert` and `key` are required (unless every [[listener.server]] has its own tls)"
                    .into(),
            ));
        }
        if self.cert.as_os_str().is_empty() != self.key.as_os_str().is_empty() {
            return Err(TlsError("`cert` and `key` go together".into()));
        }
        self.settings(protocol, servers).build().map(|_| ())
    }

    /// Load the files and make the listener's acceptor.
    pub fn acceptor(
        &self,
        protocol: Protocol,
        servers: &[ServerConfig],
        ticket_secret: Option<[u8; 32]>,
    ) -> Result<TlsAcceptor, TlsError> {
        let settings = TlsSettings {
            ticket_secret,
            ..self.settings(protocol, servers)
        };
        let config = settings.build()?;
        Ok(TlsAcceptor::new(config)
            .handshake_timeout(self.handshake_timeout.0)
            .plain_http_reply(matches!(protocol, Protocol::Http | Protocol::Ws)))
    }

    /// The `Strict-Transport-Security` value, if HSTS is on.
    pub fn hsts_value(&self) -> Option<String> {
        let max_age = self.hsts?.0.as_secs();
        Some(if self.hsts_subdomains {
            format!("max-age={max_age}; includeSubDomains")
        } else {
            format!("max-age={max_age}")
        })
    }
}

/// A new random ticket secret, hex-encoded (from the kernel's random source).
pub fn new_secret() -> String {
    use std::io::Read;
    let mut b = [0u8; 32];
    if let Err(e) = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        // Without it, each worker keeps its own random ticket key (resumption then works
        // only on the worker that issued the ticket).
        tracing::warn!("no shared TLS ticket key: /dev/urandom: {e}");
        return String::new();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// How a binary upgrade passes the ticket secret to the new master (hex, as
/// [`new_secret`] writes it): tickets issued before the upgrade resume after it.
pub const TICKET_SECRET_ENV: &str = "HERD_TICKET_SECRET";

/// The secret an old master passed in [`TICKET_SECRET_ENV`], if valid (the variable is
/// removed either way, so nothing started later sees it).
pub fn inherited_secret() -> Option<String> {
    let v = std::env::var(TICKET_SECRET_ENV).ok()?;
    std::env::remove_var(TICKET_SECRET_ENV);
    if parse_secret(&v).is_some() {
        Some(v)
    } else {
        tracing::warn!("{TICKET_SECRET_ENV} is not a ticket secret; using a new one");
        None
    }
}

/// Parse a secret written by [`new_secret`] (`None` if it is not 64 hex digits).
pub fn parse_secret(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_round_trip() {
        let s = new_secret();
        assert_eq!(s.len(), 64);
        assert!(parse_secret(&s).is_some());
        assert_ne!(parse_secret(&s), parse_secret(&new_secret()));
        assert_eq!(parse_secret("zz"), None);
        assert_eq!(parse_secret(&"g".repeat(64)), None);
    }

    #[test]
    fn hsts_values() {
        let mut t = TlsConfig::default();
        assert_eq!(t.hsts_value(), None);
        t.hsts = Some(Dur(std::time::Duration::from_secs(31_536_000)));
        assert_eq!(t.hsts_value().unwrap(), "max-age=31536000");
        t.hsts_subdomains = true;
        assert_eq!(
            t.hsts_value().unwrap(),
            "max-age=31536000; includeSubDomains"
        );
    }

    #[test]
    fn missing_files_are_named() {
        let t = TlsConfig {
            cert: "/nonexistent/site.pem".into(),
            key: "/nonexistent/site.key".into(),
            ..TlsConfig::default()
        };
        let e = t.check(Protocol::Http, &[], false).unwrap_err().to_string();
        assert!(e.contains("/nonexistent/site.pem"), "{e}");
        let e = TlsConfig::default()
            .check(Protocol::Http, &[], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("required"), "{e}");
    }
}
