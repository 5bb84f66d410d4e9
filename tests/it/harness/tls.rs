//! A test certificate authority (rcgen): a self-signed CA that issues server
//! certificates with DNS and IP SANs, and PEM files written with the mode and
//! owner servers insist on. Make a second `TestCa` for "wrong CA" tests.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use super::procs::ScratchDir;
use super::users;

/// A self-signed CA that can issue server certificates.
pub struct TestCa {
    pub name: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Where an issued certificate, its key and the CA were written.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

impl TestCa {
    /// A fresh CA with common name `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        dn.push(DnType::OrganizationName, "keygate tests");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-signed CA");
        TestCa {
            name: name.to_string(),
            issuer,
        }
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server (and client) certificate for `names`: each is an IP SAN if it
    /// parses as an IP address, else a DNS SAN. The first is the common name.
    pub fn issue(&self, names: &[&str]) -> Issued {
        let sans: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).expect("SANs");
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("server"),
        );
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("server key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// Writes the CA certificate as `<dir>/<name>` (mode 0644); returns its path.
    pub fn write_ca(&self, dir: &ScratchDir, name: &str) -> PathBuf {
        write_pem(dir.path(), name, &self.cert_pem(), 0o644, None)
    }

    /// Issues a certificate for `localhost` and `127.0.0.1` and writes it as
    /// `server.crt`, `server.key` (0600) and `ca.crt` into `dir`, owned by `owner`.
    pub fn write_server_files(&self, dir: &ScratchDir, owner: Option<(u32, u32)>) -> TlsFiles {
        let issued = self.issue(&["localhost", "127.0.0.1"]);
        issued.write(dir, owner, self)
    }
}

impl Issued {
    /// Writes `server.crt` (0644), `server.key` (0600) and `ca.crt` (0644) into
    /// `dir`, all owned by `owner` (when root).
    pub fn write(&self, dir: &ScratchDir, owner: Option<(u32, u32)>, ca: &TestCa) -> TlsFiles {
        TlsFiles {
            cert: write_pem(dir.path(), "server.crt", &self.cert_pem, 0o644, owner),
            key: write_pem(dir.path(), "server.key", &self.key_pem, 0o600, owner),
            ca: write_pem(dir.path(), "ca.crt", &ca.cert_pem(), 0o644, owner),
        }
    }
}

/// Writes `contents` to `dir/name` with `mode`, owned by `owner` if given.
pub fn write_pem(
    dir: &Path,
    name: &str,
    contents: &str,
    mode: u32,
    owner: Option<(u32, u32)>,
) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {path:?}: {e}"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {path:?}: {e}"));
    users::chown(&path, owner);
    path
}

/// Installs ring as rustls's process-wide crypto provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
