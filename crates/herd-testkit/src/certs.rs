//! Test certificates made at test time (rcgen): a test CA, leaf certificates it signs for
//! given DNS names (ECDSA P-256), and
//! PEM files of each in a temporary directory, so TLS tests need nothing checked in.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A test certificate authority and the directory its files are written to (removed on drop).
pub struct TestCa {
    dir: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    ca_pem: String,
}

/// A leaf certificate's files.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// PEM certificate chain (leaf, then the CA).
    pub cert: PathBuf,
    /// PEM private key (PKCS#8).
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA whose files go under the system temporary directory, named after `tag`.
    pub fn new(tag: &str) -> TestCa {
        let dir = std::env::temp_dir().join(format!("herd-certs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("cert dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(DnType::CommonName, "herd test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("ca key");
        let cert = params.self_signed(&key).expect("ca cert");
        let ca_pem = cert.pem();
        std::fs::write(dir.join("ca.pem"), &ca_pem).expect("write ca");
        TestCa {
            issuer: Issuer::new(params, key),
            dir,
            ca_pem,
        }
    }

    /// The CA certificate's PEM file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A server certificate for `names`, written as `<file>.pem` and `<file>.key`.
    pub fn server(&self, file: &str, names: &[&str]) -> Leaf {
        self.leaf(file, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A server certificate for `names` that expired in 2021 (valid 2020-01-01 to 2021-01-01).
    pub fn expired_server(&self, file: &str, names: &[&str]) -> Leaf {
        self.make(file, names, ExtendedKeyUsagePurpose::ServerAuth, true)
    }

    /// A client certificate (for mTLS), written as `<file>.pem` and `<file>.key`.
    pub fn client(&self, file: &str, name: &str) -> Leaf {
        self.leaf(file, &[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, file: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        self.make(file, names, usage, false)
    }

    fn make(
        &self,
        file: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
    ) -> Leaf {
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("names");
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("herd"));
        params.extended_key_usages = vec![usage];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let leaf = Leaf {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        };
        std::fs::write(&leaf.cert, format!("{}{}", cert.pem(), self.ca_pem)).expect("write");
        std::fs::write(&leaf.key, key.serialize_pem()).expect("write");
        leaf
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
