//! `[gateway.tls]`: the TLS listener, its certificates (loaded here, so an
//! unreadable or bad file is a configuration problem naming the file) and
//! protocol options.

use std::path::Path;

use super::checker::Checker;
use crate::config::TlsConfig;
use crate::config::file::{TlsSection, TlsVersion};

impl Checker {
    pub(super) fn tls(&mut self, t: TlsSection) -> TlsConfig {
        let listen = self.addr(
            "gateway.tls.listen",
            t.listen.as_deref(),
            std::net::SocketAddr::from(([0, 0, 0, 0], 8443)),
        );
        if t.certs.is_empty() {
            self.problem("gateway.tls.certs", "needs at least one { cert, key }");
        }
        let certs = t
            .certs
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let path = format!("gateway.tls.certs[{i}]");
                if c.cert.is_empty() || c.key.is_empty() {
                    self.problem(path, "needs both cert and key (PEM files)");
                    return None;
                }
                match crate::tls::load(Path::new(&c.cert), Path::new(&c.key)) {
                    Ok(cert) => Some(cert),
                    Err(e) => {
                        self.problem(path, e);
                        None
                    }
                }
            })
            .collect();
        let min = self.parsed("gateway.tls.min_version", t.min_version);
        TlsConfig {
            listen,
            certs,
            min_tls13: min == Some(TlsVersion::Tls13),
            http2: t.http2.unwrap_or(true),
        }
    }
}
