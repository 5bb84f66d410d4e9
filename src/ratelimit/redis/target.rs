//! Where the Redis backend connects, per topology, and the connection it gets.
//!
//! - **standalone**: one server. A server that is a Redis Cluster node is
//!   refused ([`TargetError::ClusterNode`]): counters would be split across
//!   slots and silently over-admit.
//! - **cluster**: a `ClusterConnection` routes each script call by its first
//!   key (MOVED/ASK and resharding handled by the client); every key of one
//!   call shares a hash tag, so it stays in one slot and atomic.
//! - **sentinel**: the sentinels name the master; a new connection asks them
//!   again, so after a failover the next connection reaches the new master.

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, IntoConnectionInfo, RedisError, RedisFuture,
    TlsCertificates, TlsMode,
};

use crate::config::{RedisConfig, RedisTopology};

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Redis(#[from] RedisError),
    #[error(
        "ratelimit.url is a Redis Cluster node, but ratelimit.topology is \"standalone\": set topology = \"cluster\" (counting through one node would split counters across slots)"
    )]
    ClusterNode,
    #[error("ratelimit.tls_ca_file {path}: {source}")]
    CaFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The TLS handshake was refused; `cause` says why in the operator's terms.
    #[error("TLS to Redis failed: {cause}: {source}")]
    Tls {
        cause: &'static str,
        source: RedisError,
    },
}

/// A driver error, with a refused TLS handshake told apart (by the rustls
/// verdict inside it) so that the log says what to fix.
fn classify(e: RedisError) -> TargetError {
    match tls_cause(&e) {
        Some(cause) => TargetError::Tls { cause, source: e },
        None => TargetError::Redis(e),
    }
}

fn tls_cause(e: &RedisError) -> Option<&'static str> {
    use rustls::CertificateError as C;
    use std::error::Error;
    type Shared = std::sync::Arc<dyn Error + Send + Sync>;
    let mut next: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(err) = next {
        // The driver keeps an I/O error behind an `Arc`; tokio-rustls puts
        // the rustls error inside the I/O error.
        let err: &(dyn Error + 'static) = match err.downcast_ref::<Shared>() {
            Some(shared) => &**shared,
            None => err,
        };
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>());
        if let Some(tls) = inner.or_else(|| err.downcast_ref::<rustls::Error>()) {
            return Some(match tls {
                rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
                    "the server's certificate is not signed by a trusted CA (check ratelimit.tls_ca_file)"
                }
                rustls::Error::InvalidCertificate(
                    C::NotValidForName | C::NotValidForNameContext { .. },
                ) => "the server's certificate does not name the host in the Redis URL",
                rustls::Error::InvalidCertificate(_) => "the server's certificate is not valid",
                rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                    "the server does not speak TLS (a redis:// port behind a rediss:// URL?)"
                }
                _ => "the TLS handshake was refused",
            });
        }
        next = err.source();
    }
    None
}

/// A connection of any topology; scripts run on it alike.
#[derive(Clone)]
pub enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

pub enum Target {
    Standalone(Client),
    Cluster(ClusterClient),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// What a new connection reached: for the sentinel topology, which master.
pub struct Opened {
    pub conn: Conn,
    pub master: Option<String>,
}

fn certificates(cfg: &RedisConfig) -> Result<Option<TlsCertificates>, TargetError> {
    let Some(path) = &cfg.tls_ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(path).map_err(|source| TargetError::CaFile {
        path: path.clone(),
        source,
    })?;
    Ok(Some(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

/// `host:port`, `redis://host:port` or `rediss://host:port` as a sentinel address.
fn sentinel_addr(s: &str) -> ConnectionAddr {
    let (tls, rest) = match s.strip_prefix("rediss://") {
        Some(r) => (true, r),
        None => (false, s.strip_prefix("redis://").unwrap_or(s)),
    };
    let (host, port) = rest
        .trim_end_matches('/')
        .rsplit_once(':')
        .map_or((rest, 26379), |(h, p)| (h, p.parse().unwrap_or(26379)));
    if tls {
        ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host.to_owned(), port)
    }
}

fn sentinel_client(
    sentinels: &[String],
    master_name: &str,
    url: Option<&str>,
    certs: Option<TlsCertificates>,
) -> Result<SentinelClient, TargetError> {
    let addrs: Vec<ConnectionAddr> = sentinels.iter().map(|s| sentinel_addr(s)).collect();
    let sentinel_tls = addrs
        .iter()
        .any(|a| matches!(a, ConnectionAddr::TcpTls { .. }));
    let mut b = SentinelClientBuilder::new(addrs, master_name, SentinelServerType::Master)?;
    if let Some(url) = url {
        let info = url.into_connection_info()?;
        let r = info.redis_settings();
        b = b.set_client_to_redis_db(r.db());
        if let Some(user) = r.username() {
            b = b.set_client_to_redis_username(user);
        }
        if let Some(password) = r.password() {
            b = b.set_client_to_redis_password(password);
        }
        if matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
            b = b.set_client_to_redis_tls_mode(TlsMode::Secure);
        }
    }
    if let Some(certs) = certs {
        if sentinel_tls {
            b = b.set_client_to_sentinel_certificates(certs.clone());
        }
        b = b.set_client_to_redis_certificates(certs);
    }
    Ok(b.build()?)
}

impl Target {
    /// Parses the configuration; connects to nothing.
    pub fn new(cfg: &RedisConfig) -> Result<Target, TargetError> {
        let certs = certificates(cfg)?;
        Ok(match &cfg.topology {
            RedisTopology::Standalone(url) => Target::Standalone(match certs {
                Some(c) => Client::build_with_tls(url.expose(), c)?,
                None => Client::open(url.expose())?,
            }),
            RedisTopology::Cluster(nodes) => {
                let mut b = ClusterClient::builder(nodes.iter().map(|n| n.expose().to_owned()));
                if let Some(c) = certs {
                    b = b.certs(c);
                }
                Target::Cluster(b.build()?)
            }
            RedisTopology::Sentinel {
                sentinels,
                master_name,
                url,
            } => Target::Sentinel(tokio::sync::Mutex::new(sentinel_client(
                sentinels,
                master_name,
                url.as_ref().map(|u| u.expose()),
                certs,
            )?)),
        })
    }

    pub fn topology(&self) -> &'static str {
        match self {
            Target::Standalone(_) => "standalone",
            Target::Cluster(_) => "cluster",
            Target::Sentinel(_) => "sentinel",
        }
    }

    /// A new connection, each call bounded by `timeout`.
    pub async fn open(&self, timeout: Duration) -> Result<Opened, TargetError> {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        match self {
            Target::Standalone(client) => {
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await
                    .map_err(classify)?;
                refuse_cluster_node(&mut conn).await?;
                Ok(Opened {
                    conn: Conn::Single(conn),
                    master: None,
                })
            }
            Target::Cluster(client) => Ok(Opened {
                conn: Conn::Cluster(client.get_async_connection().await.map_err(classify)?),
                master: None,
            }),
            Target::Sentinel(sentinel) => {
                let client = sentinel
                    .lock()
                    .await
                    .async_get_client()
                    .await
                    .map_err(classify)?;
                let master = client.get_connection_info().addr().to_string();
                let conn = client
                    .get_multiplexed_async_connection_with_config(&cfg)
                    .await
                    .map_err(classify)?;
                Ok(Opened {
                    conn: Conn::Single(conn),
                    master: Some(master),
                })
            }
        }
    }
}

/// A standalone URL that reaches a cluster node is a misconfiguration.
async fn refuse_cluster_node(conn: &mut MultiplexedConnection) -> Result<(), TargetError> {
    let info: String = redis::cmd("INFO").arg("cluster").query_async(conn).await?;
    if info.lines().any(|l| l.trim() == "cluster_enabled:1") {
        return Err(TargetError::ClusterNode);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_error(e: rustls::Error) -> RedisError {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e).into()
    }

    #[test]
    fn tls_refusals_name_their_cause() {
        let unknown = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let e = classify(tls_error(unknown));
        assert!(matches!(e, TargetError::Tls { .. }), "{e}");
        assert!(e.to_string().contains("ratelimit.tls_ca_file"), "{e}");
        let name = rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName);
        assert!(
            classify(tls_error(name))
                .to_string()
                .contains("does not name the host")
        );
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(classify(refused.into()), TargetError::Redis(_)));
    }

    #[test]
    fn sentinel_addresses() {
        assert_eq!(
            sentinel_addr("10.0.0.1:26380").to_string(),
            "10.0.0.1:26380"
        );
        assert!(matches!(
            sentinel_addr("rediss://s1:26379"),
            ConnectionAddr::TcpTls { port: 26379, .. }
        ));
        assert!(matches!(
            sentinel_addr("redis://s2:1"),
            ConnectionAddr::Tcp(_, 1)
        ));
    }
}
