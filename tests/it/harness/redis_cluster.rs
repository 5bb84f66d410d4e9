//! A real Redis Cluster: N masters (3 by default), no replicas, each node in
//! its own directory, created with `redis-cli --cluster create`.

use std::process::Command;
use std::time::Duration;

use super::redis_node::{self, RedisNode, info_field, poll, query, text};

pub struct RedisCluster {
    nodes: Vec<RedisNode>,
}

impl RedisCluster {
    /// Three masters, all 16384 slots assigned, `cluster_state:ok` everywhere.
    pub fn start() -> RedisCluster {
        Self::start_with(3)
    }

    pub fn start_with(masters: usize) -> RedisCluster {
        assert!(masters >= 3, "redis-cli --cluster create needs 3 masters");
        let nodes: Vec<RedisNode> = (0..masters)
            .map(|_| {
                let port = redis_node::port_with_bus();
                let config = format!(
                    "port {port}\ncluster-enabled yes\ncluster-config-file nodes.conf\n\
                     cluster-node-timeout 2000\n"
                );
                RedisNode::start("redis-cluster", port, &config, &[])
            })
            .collect();
        let cluster = RedisCluster { nodes };
        cluster.create();
        cluster.wait_ok(Duration::from_secs(30));
        cluster
    }

    fn create(&self) {
        let mut cmd = Command::new(redis_node::binary("redis-cli"));
        cmd.arg("--cluster").arg("create");
        for n in &self.nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port));
        }
        let out = cmd
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("All 16384 slots covered"),
            "redis-cli --cluster create failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits until every live node says `cluster_state:ok` and knows all nodes.
    pub fn wait_ok(&self, timeout: Duration) {
        let want = self.nodes.len().to_string();
        let ok = poll(timeout, || {
            let all = self.live().all(|(_, url)| {
                let Ok(v) = query(&url, &["CLUSTER", "INFO"]) else {
                    return false;
                };
                let info = text(&v);
                info_field(&info, "cluster_state").as_deref() == Some("ok")
                    && info_field(&info, "cluster_known_nodes").as_deref() == Some(want.as_str())
            });
            all.then_some(())
        });
        assert!(ok.is_some(), "redis cluster not ok after {timeout:?}");
    }

    /// `redis://127.0.0.1:{port}` for each node, in start order.
    pub fn nodes(&self) -> Vec<String> {
        self.nodes.iter().map(|n| url(n.port)).collect()
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// A `ClusterClient` seeded with every node.
    pub fn client(&self) -> redis::cluster::ClusterClient {
        redis::cluster::ClusterClient::new(self.nodes()).expect("cluster client")
    }

    fn live(&self) -> impl Iterator<Item = (usize, String)> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_running())
            .map(|(i, n)| (i, url(n.port)))
    }

    /// Runs a command on node `i`.
    pub fn cmd(&self, i: usize, args: &[&str]) -> redis::RedisResult<redis::Value> {
        query(&url(self.nodes[i].port), args)
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT` on a live node).
    pub fn slot_of(&self, key: &str) -> u16 {
        let (_, url) = self.live().next().expect("a live node");
        let v = query(&url, &["CLUSTER", "KEYSLOT", key]).expect("CLUSTER KEYSLOT");
        text(&v).parse().expect("slot number")
    }

    /// The index (into `nodes()`) of the master serving `slot`.
    pub fn slot_owner(&self, slot: u16) -> usize {
        let port = self
            .slot_ranges()
            .into_iter()
            .find(|&(start, end, _)| (start..=end).contains(&slot))
            .map(|(_, _, port)| port)
            .unwrap_or_else(|| panic!("slot {slot} not assigned"));
        self.nodes
            .iter()
            .position(|n| n.port == port)
            .expect("slot owner is one of our nodes")
    }

    /// The index of the master holding `key`.
    pub fn node_for_key(&self, key: &str) -> usize {
        self.slot_owner(self.slot_of(key))
    }

    /// One key per node: element `i` is `{prefix}-<n>` stored on node `i`.
    pub fn key_per_node(&self, prefix: &str) -> Vec<String> {
        let mut keys: Vec<Option<String>> = vec![None; self.nodes.len()];
        for n in 0.. {
            if keys.iter().all(Option::is_some) {
                break;
            }
            let key = format!("{prefix}-{n}");
            let owner = self.node_for_key(&key);
            keys[owner].get_or_insert(key);
        }
        keys.into_iter().map(Option::unwrap).collect()
    }

    /// `(first slot, last slot, master port)` from `CLUSTER SLOTS`.
    pub fn slot_ranges(&self) -> Vec<(u16, u16, u16)> {
        let (_, url) = self.live().next().expect("a live node");
        let reply = query(&url, &["CLUSTER", "SLOTS"]).expect("CLUSTER SLOTS");
        let redis::Value::Array(ranges) = reply else {
            panic!("CLUSTER SLOTS: {reply:?}");
        };
        ranges
            .iter()
            .map(|r| match r {
                redis::Value::Array(parts) if parts.len() >= 3 => {
                    let num = |v: &redis::Value| text(v).parse::<u16>().expect("number");
                    let redis::Value::Array(master) = &parts[2] else {
                        panic!("CLUSTER SLOTS master: {:?}", parts[2]);
                    };
                    (num(&parts[0]), num(&parts[1]), num(&master[1]))
                }
                other => panic!("CLUSTER SLOTS range: {other:?}"),
            })
            .collect()
    }

    /// SIGKILLs node `i` (its slots become unreachable).
    pub fn kill_node(&mut self, i: usize) {
        self.nodes[i].kill();
    }

    /// SIGSTOPs / SIGCONTs node `i`.
    pub fn pause_node(&self, i: usize) {
        self.nodes[i].pause();
    }

    pub fn resume_node(&self, i: usize) {
        self.nodes[i].resume();
    }

    /// Node `i`'s log so far.
    pub fn log(&self, i: usize) -> String {
        self.nodes[i].log()
    }
}

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}
