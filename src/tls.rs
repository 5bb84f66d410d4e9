//! Downstream TLS: certificates loaded from PEM files (a problem names the
//! file), and the SNI resolver that picks one per handshake. The resolver
//! reads its certificates through an `ArcSwap`, so a reload replaces them
//! without touching the listener; the next handshake sees the new set.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::CipherSuite;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A certificate ready to serve: its chain, key, and the names it covers.
#[derive(Clone)]
pub struct ServerCert {
    pub cert_file: PathBuf,
    pub key: Arc<CertifiedKey>,
    /// DNS names from the certificate (`*.example.com` for wildcards).
    pub names: Vec<String>,
}

impl std::fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCert")
            .field("cert_file", &self.cert_file)
            .field("names", &self.names)
            .finish()
    }
}

impl PartialEq for ServerCert {
    fn eq(&self, other: &Self) -> bool {
        self.cert_file == other.cert_file && self.key.cert == other.key.cert
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// Loads a certificate chain and its private key; the error names the file.
pub fn load(cert_file: &Path, key_file: &Path) -> Result<ServerCert, String> {
    let cert_pem = read(cert_file)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert_file.display()))?;
    let Some(leaf) = chain.first() else {
        return Err(format!("{}: contains no certificate", cert_file.display()));
    };
    let names = dns_names(leaf).map_err(|e| format!("{}: {e}", cert_file.display()))?;
    let key_pem = read(key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{}: not a PEM private key: {e}", key_file.display()))?;
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
        format!(
            "{} and {} do not make a certificate: {e}",
            cert_file.display(),
            key_file.display()
        )
    })?;
    Ok(ServerCert {
        cert_file: cert_file.to_owned(),
        key: Arc::new(certified),
        names,
    })
}

/// The DNS names a leaf certificate covers (subject alternative names, else
/// the common name), lowercase.
fn dns_names(leaf: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) =
        X509Certificate::from_der(leaf).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    Ok(names)
}

/// The certificates of a listener: by exact name, by wildcard parent, and a
/// default (the first configured) for clients that send no or an unknown name.
pub struct CertSet {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl CertSet {
    /// `None` when there is no certificate at all.
    pub fn new(certs: &[ServerCert]) -> Option<CertSet> {
        let default = certs.first()?.key.clone();
        let mut set = CertSet {
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            default,
        };
        // Earlier certificates win a name they share with later ones.
        for c in certs.iter().rev() {
            for name in &c.names {
                match name.strip_prefix("*.") {
                    Some(parent) => set.wildcard.insert(parent.to_owned(), c.key.clone()),
                    None => set.exact.insert(name.clone(), c.key.clone()),
                };
            }
        }
        Some(set)
    }

    fn pick(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = server_name.map(str::to_ascii_lowercase) else {
            return self.default.clone();
        };
        self.exact
            .get(&name)
            .or_else(|| {
                name.split_once('.')
                    .and_then(|(_, parent)| self.wildcard.get(parent))
            })
            .unwrap_or(&self.default)
            .clone()
    }
}

/// Picks a certificate by SNI; `min_tls13` refuses clients that cannot do
/// TLS 1.3 (rustls in Pingora always offers 1.2 and 1.3).
pub struct SniResolver {
    certs: ArcSwap<CertSet>,
    min_tls13: bool,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SniResolver")
    }
}

impl SniResolver {
    pub fn new(certs: CertSet, min_tls13: bool) -> SniResolver {
        SniResolver {
            certs: ArcSwap::from_pointee(certs),
            min_tls13,
        }
    }

    /// New certificates for the next handshakes.
    pub fn replace(&self, certs: CertSet) {
        self.certs.store(Arc::new(certs));
    }
}

const TLS13_SUITES: [CipherSuite; 3] = [
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_AES_256_GCM_SHA384,
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
];

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if self.min_tls13
            && !hello
                .cipher_suites()
                .iter()
                .any(|s| TLS13_SUITES.contains(s))
        {
            return None; // the handshake fails with an alert
        }
        Some(self.certs.load().pick(hello.server_name()))
    }
}
