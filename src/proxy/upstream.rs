//! Upstream server choice: round-robin, skipping servers that recently failed
//! to connect (passive health) for the upstream's `fail_timeout`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pingora_core::upstreams::peer::HttpPeer;

use pingora_core::protocols::ALPN;

use crate::config::{UpstreamConfig, UpstreamProtocol};

/// Concurrent streams per upstream h2 connection (Pingora's default is 1).
const H2_STREAMS: usize = 100;

pub struct Server {
    pub addr: SocketAddr,
    peer: HttpPeer,
    /// Milliseconds since the pool's epoch until which the server is skipped.
    down_until_ms: AtomicU64,
}

pub struct UpstreamPool {
    pub name: String,
    servers: Vec<Server>,
    next: AtomicUsize,
    fail_timeout: Duration,
    epoch: Instant,
}

/// Servers already tried for one request (bit `i` = server `i`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Tried(u64);

impl Tried {
    fn has(self, i: usize) -> bool {
        i < 64 && self.0 & (1 << i) != 0
    }
    pub fn add(&mut self, i: usize) {
        if i < 64 {
            self.0 |= 1 << i;
        }
    }
    pub fn count(self) -> usize {
        self.0.count_ones() as usize
    }
}

#[derive(Debug, thiserror::Error)]
#[error("upstream {upstream:?}: cannot resolve server {server:?}: {reason}")]
pub struct ResolveError {
    upstream: String,
    server: String,
    reason: String,
}

impl UpstreamPool {
    /// Resolves every server (DNS happens here, once, at start).
    pub fn new(cfg: &UpstreamConfig) -> Result<UpstreamPool, ResolveError> {
        let servers = cfg
            .servers
            .iter()
            .map(|s| {
                let addr = s
                    .to_socket_addrs()
                    .map_err(|e| e.to_string())
                    .and_then(|mut a| a.next().ok_or_else(|| "no address".to_string()))
                    .map_err(|reason| ResolveError {
                        upstream: cfg.name.clone(),
                        server: s.clone(),
                        reason,
                    })?;
                let mut peer = HttpPeer::new(addr, cfg.tls, cfg.sni.clone());
                peer.options.connection_timeout = Some(cfg.connect_timeout);
                peer.options.read_timeout = Some(cfg.read_timeout);
                peer.options.write_timeout = Some(cfg.read_timeout);
                peer.options.idle_timeout = Some(cfg.idle_timeout);
                if cfg.protocol == UpstreamProtocol::H2 {
                    // h2 over TLS by ALPN, or cleartext with prior knowledge (h2c);
                    // gRPC needs h2 end to end for its trailers.
                    peer.options.alpn = ALPN::H2;
                    peer.options.max_h2_streams = H2_STREAMS;
                }
                Ok(Server {
                    addr,
                    peer,
                    down_until_ms: AtomicU64::new(0),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(UpstreamPool {
            name: cfg.name.clone(),
            servers,
            next: AtomicUsize::new(0),
            fail_timeout: cfg.fail_timeout,
            epoch: Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }

    /// The next server to try: healthy and untried first; if every untried server
    /// is marked down, the next untried one anyway (a guess beats a certain 502).
    pub fn pick(&self, tried: Tried) -> Option<usize> {
        let n = self.servers.len();
        if n == 0 || tried.count() >= n.min(64) {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let now = self.now_ms();
        let mut fallback = None;
        for k in 0..n {
            let i = (start + k) % n;
            if tried.has(i) {
                continue;
            }
            if self.servers[i].down_until_ms.load(Ordering::Relaxed) <= now {
                return Some(i);
            }
            fallback.get_or_insert(i);
        }
        fallback
    }

    pub fn peer(&self, i: usize) -> Box<HttpPeer> {
        Box::new(self.servers[i].peer.clone())
    }

    pub fn server(&self, i: usize) -> &Server {
        &self.servers[i]
    }

    /// Records a failed connection: the server is skipped for `fail_timeout`.
    pub fn mark_down(&self, i: usize) {
        let until = self.now_ms() + self.fail_timeout.as_millis() as u64;
        if let Some(s) = self.servers.get(i) {
            s.down_until_ms.store(until, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> UpstreamPool {
        UpstreamPool::new(&UpstreamConfig {
            protocol: UpstreamProtocol::H1,
            name: "u".into(),
            servers: (0..n).map(|i| format!("127.0.0.1:{}", 9000 + i)).collect(),
            tls: false,
            sni: String::new(),
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            fail_timeout: Duration::from_secs(60),
        })
        .expect("resolves")
    }

    #[test]
    fn round_robin() {
        let p = pool(3);
        let picks: Vec<_> = (0..6).filter_map(|_| p.pick(Tried::default())).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn down_servers_are_skipped_and_retries_move_on() {
        let p = pool(3);
        p.mark_down(1);
        let picks: Vec<_> = (0..4).filter_map(|_| p.pick(Tried::default())).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        let mut tried = Tried::default();
        for _ in 0..3 {
            let i = p.pick(tried).expect("a server left");
            tried.add(i);
        }
        assert_eq!(tried.count(), 3);
        assert_eq!(p.pick(tried), None, "every server tried");
    }

    #[test]
    fn all_down_still_tries() {
        let p = pool(2);
        p.mark_down(0);
        p.mark_down(1);
        assert!(p.pick(Tried::default()).is_some());
    }
}
