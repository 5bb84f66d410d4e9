//! Redis that only speaks TLS (`--port 0 --tls-port P`) with a `TestCa`-issued
//! certificate, and optionally an ACL user with the default user switched off.

use std::path::Path;
use std::time::Duration;

use super::procs::{self, ScratchDir};
use super::redis_node::{RedisNode, path_str};
use super::tls::{TestCa, TlsFiles};

/// The ACL user `RedisTls::start` creates.
pub const USER: &str = "kg";
pub const PASSWORD: &str = "secretpw";

pub struct RedisTls {
    pub port: u16,
    pub files: TlsFiles,
    /// Whether the ACL user `kg`/`secretpw` exists and `default` is off.
    pub acl: bool,
    node: RedisNode,
    /// Dropped after the node.
    _certs: ScratchDir,
}

impl RedisTls {
    /// TLS only, user `kg` with password `secretpw`, default user off.
    pub fn start(ca: &TestCa) -> RedisTls {
        Self::start_with(ca, true)
    }

    /// TLS only; without `acl` the default user needs no password.
    pub fn start_with(ca: &TestCa, acl: bool) -> RedisTls {
        let port = procs::free_port();
        let certs = ScratchDir::new("redis-tls-certs");
        let files = ca.write_server_files(&certs, None);
        let users = if acl {
            format!("user default off\nuser {USER} on >{PASSWORD} ~* &* +@all\n")
        } else {
            String::new()
        };
        let config = format!(
            "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
             tls-ca-cert-file {}\ntls-auth-clients no\n{users}",
            path_str(&files.cert),
            path_str(&files.key),
            path_str(&files.ca),
        );
        let node = RedisNode::start("redis-tls", port, &config, &[]);
        RedisTls {
            port,
            files,
            acl,
            node,
            _certs: certs,
        }
    }

    /// `rediss://kg:secretpw@localhost:{port}/0` (no credentials without ACL).
    pub fn url(&self) -> String {
        self.url_for_host("localhost")
    }

    /// The URL with another host name, e.g. `127.0.0.1` (an IP SAN).
    pub fn url_for_host(&self, host: &str) -> String {
        let auth = if self.acl {
            format!("{USER}:{PASSWORD}@")
        } else {
            String::new()
        };
        format!("rediss://{auth}{host}:{}/0", self.port)
    }

    /// The CA certificate clients should trust.
    pub fn ca_path(&self) -> &Path {
        &self.files.ca
    }

    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(&self.files.ca).expect("read CA")
    }

    /// A client trusting only our CA (`TlsCertificates { root_cert: Some(ca) }`).
    pub fn client(&self) -> redis::Client {
        super::tls::install_crypto_provider();
        let certs = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(self.ca_pem()),
        };
        redis::Client::build_with_tls(self.url(), certs).expect("TLS redis client")
    }

    /// Runs a command over TLS with a fresh connection.
    pub fn cmd(&self, args: &[&str]) -> redis::RedisResult<redis::Value> {
        let mut conn = self
            .client()
            .get_connection_with_timeout(Duration::from_secs(5))?;
        let mut c = redis::cmd(args[0]);
        for a in &args[1..] {
            c.arg(*a);
        }
        c.query(&mut conn)
    }

    pub fn log(&self) -> String {
        self.node.log()
    }

    pub fn kill(&mut self) {
        self.node.kill();
    }
}
