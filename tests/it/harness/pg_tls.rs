//! A dedicated Postgres that speaks TLS with a `TestCa`-issued certificate,
//! optionally refusing unencrypted connections (`hostssl`-only `pg_hba.conf`).

use std::path::{Path, PathBuf};

use super::pg::PgServer;
use super::procs::ScratchDir;
use super::tls::{Issued, TestCa, TlsFiles, write_pem};
use super::users;

/// Postgres with `ssl=on`. Fields drop in order: the server, then its files.
pub struct PgTls {
    pub server: PgServer,
    pub files: TlsFiles,
    dir: ScratchDir,
}

/// Only TLS connections from loopback, trusted; everything else refused.
const HBA_TLS_ONLY: &str = "\
hostssl   all all 127.0.0.1/32 trust
hostssl   all all ::1/128      trust
hostnossl all all 0.0.0.0/0    reject
hostnossl all all ::/0         reject
";

/// TLS and plain connections from loopback, trusted.
const HBA_ANY: &str = "\
host all all 127.0.0.1/32 trust
host all all ::1/128      trust
";

impl PgTls {
    /// A TLS server whose `pg_hba.conf` refuses non-TLS connections.
    pub fn start(ca: &TestCa) -> PgTls {
        Self::start_with(ca, true)
    }

    /// A TLS server; `tls_only` makes `sslmode=disable` connections fail.
    pub fn start_with(ca: &TestCa, tls_only: bool) -> PgTls {
        Self::start_issued(ca, ca.issue(&["localhost", "127.0.0.1"]), tls_only)
    }

    /// A TLS-only server whose certificate names only `names` (for host
    /// mismatch tests: connect by another name or address).
    pub fn start_for(ca: &TestCa, names: &[&str]) -> PgTls {
        Self::start_issued(ca, ca.issue(names), true)
    }

    fn start_issued(ca: &TestCa, issued: Issued, tls_only: bool) -> PgTls {
        let dir = ScratchDir::new("pg-tls");
        let owner = users::postgres_ids();
        let files = issued.write(&dir, owner, ca);
        let hba = if tls_only { HBA_TLS_ONLY } else { HBA_ANY };
        let hba_path = write_pem(dir.path(), "pg_hba.conf", hba, 0o644, owner);
        let settings = [
            "ssl=on".to_string(),
            format!("ssl_cert_file={}", files.cert.display()),
            format!("ssl_key_file={}", files.key.display()),
            format!("ssl_ca_file={}", files.ca.display()),
            format!("hba_file={}", hba_path.display()),
        ];
        let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
        // start_with's readiness probe uses sqlx's default `sslmode=prefer`,
        // which takes TLS without verifying, so a hostssl-only server passes.
        let server = PgServer::start_with(&settings);
        PgTls { server, files, dir }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// The CA certificate clients should trust.
    pub fn ca_path(&self) -> &Path {
        &self.files.ca
    }

    /// `postgres://postgres@localhost:{port}/{db}?sslmode=verify-full&sslrootcert={ca}`.
    pub fn url(&self, db: &str) -> String {
        self.url_with(db, "localhost", "verify-full", &self.files.ca)
    }

    /// A URL with a given host (`localhost` or `127.0.0.1`), `sslmode` and root CA file.
    pub fn url_with(&self, db: &str, host: &str, sslmode: &str, root: &Path) -> String {
        format!(
            "postgres://postgres@{host}:{}/{db}?sslmode={sslmode}&sslrootcert={}",
            self.port(),
            root.display()
        )
    }

    /// A URL with a given `sslmode` and no root CA (e.g. `disable`, `require`).
    pub fn url_mode(&self, db: &str, sslmode: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode={sslmode}",
            self.port()
        )
    }

    /// Writes another CA's certificate next to ours, for "wrong CA" tests.
    pub fn write_other_ca(&self, other: &TestCa) -> PathBuf {
        other.write_ca(
            &self.dir,
            &format!("other-{}.crt", uuid::Uuid::new_v4().simple()),
        )
    }
}
