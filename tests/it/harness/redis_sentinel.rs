//! Redis Sentinel: one master, one replica (`replicaof`), and one or more
//! `redis-server <conf> --sentinel` watching them, with quick failover.

use std::collections::HashMap;
use std::time::Duration;

use super::procs;
use super::redis_node::{RedisNode, info_field, poll, query, text};

const MASTER_NAME: &str = "mymaster";

pub struct RedisSentinel {
    master: RedisNode,
    replica: RedisNode,
    sentinels: Vec<RedisNode>,
    quorum: usize,
}

impl RedisSentinel {
    /// A master, a replica and one sentinel (quorum 1).
    pub fn start() -> RedisSentinel {
        Self::start_with(1)
    }

    /// `sentinels` sentinels with a majority quorum (1 → 1, 3 → 2).
    pub fn start_with(sentinels: usize) -> RedisSentinel {
        assert!(sentinels >= 1);
        let quorum = sentinels / 2 + 1;
        // No 5 s wait for more replicas before a (diskless) full sync.
        let quick = "repl-diskless-sync-delay 0";
        let mport = procs::free_port();
        let master_conf = format!("port {mport}\n{quick}");
        let master = RedisNode::start("redis-master", mport, &master_conf, &[]);
        let rport = procs::free_port();
        let replica_conf = format!("port {rport}\n{quick}\nreplicaof 127.0.0.1 {mport}");
        let replica = RedisNode::start("redis-replica", rport, &replica_conf, &[]);
        wait_replica_online(mport, rport);
        // Started after the replica is online, so each sentinel's first INFO
        // of the master already lists it (the next refresh is 10 s away).
        let sentinels = (0..sentinels)
            .map(|_| {
                let port = procs::free_port();
                let config = format!(
                    "port {port}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {mport} {quorum}\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 5000\n"
                );
                RedisNode::start_until("redis-sentinel", port, &config, &["--sentinel"], "+monitor")
            })
            .collect();
        let s = RedisSentinel {
            master,
            replica,
            sentinels,
            quorum,
        };
        s.wait_watching(Duration::from_secs(30));
        s
    }

    /// Waits until every sentinel sees the master, the replica connected, and
    /// the other sentinels.
    fn wait_watching(&self, timeout: Duration) {
        let others = (self.sentinels.len() - 1).to_string();
        let ok = poll(timeout, || {
            self.sentinels()
                .iter()
                .all(|addr| {
                    let url = format!("redis://{addr}");
                    let master =
                        query(&url, &["SENTINEL", "MASTER", MASTER_NAME]).map(|v| pairs(&v));
                    let replicas = query(&url, &["SENTINEL", "REPLICAS", MASTER_NAME]);
                    let (Ok(master), Ok(redis::Value::Array(replicas))) = (master, replicas) else {
                        return false;
                    };
                    let replica_ok = replicas.iter().map(pairs).any(|r| {
                        r.get("port").map(String::as_str) == Some(&self.replica.port.to_string())
                            && r.get("flags").map(String::as_str) == Some("slave")
                            && r.get("master-link-status").map(String::as_str) == Some("ok")
                    });
                    master.get("flags").map(String::as_str) == Some("master")
                        && master.get("num-other-sentinels") == Some(&others)
                        && replica_ok
                })
                .then_some(())
        });
        if ok.is_none() {
            let logs: Vec<String> = self.sentinels.iter().map(RedisNode::log).collect();
            panic!(
                "sentinels not watching after {timeout:?}:\n{}",
                logs.join("\n---\n")
            );
        }
    }

    /// `127.0.0.1:{port}` of each sentinel.
    pub fn sentinels(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .filter(|s| s.is_running())
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect()
    }

    /// `redis://127.0.0.1:{port}` of each sentinel (for `SentinelClient::build`).
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels()
            .iter()
            .map(|a| format!("redis://{a}"))
            .collect()
    }

    pub fn master_name(&self) -> &'static str {
        MASTER_NAME
    }

    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// The port of the master at start.
    pub fn master_port(&self) -> u16 {
        self.master.port
    }

    /// The port of the replica at start (the new master after a failover).
    /// The replica's log (for failure messages).
    pub fn replica_log(&self) -> String {
        self.replica.log()
    }

    pub fn replica_port(&self) -> u16 {
        self.replica.port
    }

    /// The master's port as a sentinel reports it now.
    pub fn current_master_port(&self) -> Option<u16> {
        self.sentinels().iter().find_map(|addr| {
            let url = format!("redis://{addr}");
            let v = query(&url, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME]).ok()?;
            match v {
                redis::Value::Array(parts) if parts.len() == 2 => text(&parts[1]).parse().ok(),
                _ => None,
            }
        })
    }

    /// SIGKILLs the master at start.
    pub fn fail_master(&mut self) {
        self.master.kill();
    }

    /// SIGSTOPs the master at start (it stops answering but keeps its sockets).
    pub fn pause_master(&self) {
        self.master.pause();
    }

    pub fn resume_master(&self) {
        self.master.resume();
    }

    /// Whether every sentinel sees the master as plainly `master` (right after
    /// a switch it is briefly `s_down,master,disconnected`, and clients such
    /// as the redis crate's `SentinelClient` skip it).
    pub fn master_healthy(&self) -> bool {
        self.sentinels().iter().all(|addr| {
            let url = format!("redis://{addr}");
            query(&url, &["SENTINEL", "MASTER", MASTER_NAME])
                .map(|v| pairs(&v).get("flags").map(String::as_str) == Some("master"))
                .unwrap_or(false)
        })
    }

    /// Polls the sentinels until they report a master other than the one at
    /// start, seen healthy by all of them; returns its port. Panics with the
    /// sentinels' logs on timeout.
    pub fn wait_for_failover(&self, timeout: Duration) -> u16 {
        let old = self.master.port;
        let moved = || {
            let port = self.current_master_port().filter(|&p| p != old)?;
            self.master_healthy().then_some(port)
        };
        match poll(timeout, moved) {
            Some(port) => port,
            None => {
                let logs: Vec<String> = self.sentinels.iter().map(RedisNode::log).collect();
                panic!("no failover after {timeout:?}:\n{}", logs.join("\n---\n"));
            }
        }
    }
}

fn wait_replica_online(master: u16, replica: u16) {
    let url = format!("redis://127.0.0.1:{master}");
    let needle = format!("port={replica},state=online");
    let ok = poll(Duration::from_secs(20), || {
        let info = text(&query(&url, &["INFO", "replication"]).ok()?);
        let slave0 = info_field(&info, "slave0")?;
        slave0.contains(&needle).then_some(())
    });
    assert!(
        ok.is_some(),
        "replica {replica} not online at master {master}"
    );
}

/// A flat `[k1, v1, k2, v2, ...]` (RESP2) or map (RESP3) reply as a map.
fn pairs(v: &redis::Value) -> HashMap<String, String> {
    match v {
        redis::Value::Array(items) => items
            .chunks(2)
            .filter(|c| c.len() == 2)
            .map(|c| (text(&c[0]), text(&c[1])))
            .collect(),
        redis::Value::Map(items) => items.iter().map(|(k, v)| (text(k), text(v))).collect(),
        _ => HashMap::new(),
    }
}
