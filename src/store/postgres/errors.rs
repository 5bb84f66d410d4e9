//! Postgres errors, classified: down, schema missing, TLS refused (and why),
//! or anything else.

use crate::store::StoreError;

/// Why a TLS connection to Postgres was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The server's certificate is not signed by a trusted CA (`sslrootcert`).
    UnknownCa,
    /// The certificate does not name the host in the URL (`verify-full`).
    HostMismatch,
    /// The server does not speak TLS, and `sslmode` requires it.
    ServerWithoutTls,
    /// Another certificate problem (expired, not yet valid, ...).
    BadCertificate,
}

impl TlsFailure {
    pub fn explain(self) -> &'static str {
        match self {
            TlsFailure::UnknownCa => {
                "the server's certificate is not signed by a trusted CA (check sslrootcert)"
            }
            TlsFailure::HostMismatch => {
                "the server's certificate does not name the host in store.url (verify-full)"
            }
            TlsFailure::ServerWithoutTls => {
                "the server does not accept TLS, but sslmode requires it"
            }
            TlsFailure::BadCertificate => "the server's certificate is not valid",
        }
    }
}

/// The rustls verdict inside an I/O error, if that is what it is.
fn tls_failure(e: &sqlx::Error) -> Option<TlsFailure> {
    use rustls::CertificateError as C;
    match e {
        sqlx::Error::Io(io) => {
            let inner = io.get_ref()?.downcast_ref::<rustls::Error>()?;
            match inner {
                rustls::Error::InvalidCertificate(C::UnknownIssuer) => Some(TlsFailure::UnknownCa),
                rustls::Error::InvalidCertificate(
                    C::NotValidForName | C::NotValidForNameContext { .. },
                ) => Some(TlsFailure::HostMismatch),
                rustls::Error::InvalidCertificate(_) => Some(TlsFailure::BadCertificate),
                _ => None,
            }
        }
        // sqlx's own message when the server answers "no TLS" to the request.
        sqlx::Error::Tls(t) if t.to_string().contains("does not support TLS") => {
            Some(TlsFailure::ServerWithoutTls)
        }
        _ => None,
    }
}

/// Classifies a driver error.
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    if let Some(failure) = tls_failure(&e) {
        return StoreError::Tls { failure, source: e };
    }
    // SQLSTATE classes: 42P01 undefined table, 42703 undefined column, 42883
    // undefined function; 57P0x shutdown/crash, 53300 too many connections.
    let code = match &e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    };
    match (&e, code.as_deref()) {
        (
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_),
            _,
        ) => StoreError::Unavailable(e),
        (_, Some("42P01" | "42703" | "42883")) => StoreError::Schema(e),
        (_, Some("57P01" | "57P02" | "57P03" | "53300")) => StoreError::Unavailable(e),
        _ => StoreError::Database(e),
    }
}
