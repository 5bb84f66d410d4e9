//! A load loop for the reload and restart tests: clients sending back to
//! back, counting every response and every failed request.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What a load loop saw: every response by status, every failed request.
#[derive(Debug, Default)]
pub struct Tally {
    pub statuses: std::collections::BTreeMap<u16, usize>,
    pub errors: Vec<String>,
    /// The request ids of every response.
    pub ids: Vec<String>,
    /// Distinct response bodies and `ratelimit-policy` values.
    pub bodies: std::collections::BTreeSet<String>,
    pub policies: std::collections::BTreeSet<String>,
}

impl Tally {
    pub fn responses(&self) -> usize {
        self.statuses.values().sum()
    }

    /// Prints the tally under `what`, then asserts that no request failed
    /// and every response was a 200.
    pub fn assert_all_ok(&self, what: &str) {
        eprintln!(
            "{what}: {} responses, {} failed",
            self.responses(),
            self.errors.len()
        );
        assert!(self.errors.is_empty(), "failed requests: {:?}", self.errors);
        assert_eq!(
            self.statuses.keys().collect::<Vec<_>>(),
            vec![&200],
            "{:?}",
            self.statuses
        );
    }

    fn merge(&mut self, other: Tally) {
        for (s, n) in other.statuses {
            *self.statuses.entry(s).or_default() += n;
        }
        self.errors.extend(other.errors);
        self.ids.extend(other.ids);
        self.bodies.extend(other.bodies);
        self.policies.extend(other.policies);
    }
}

/// Clients sending `GET url` back to back (each on its own keep-alive
/// connection) until [`Load::finish`], or 60 s at most.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Tally>>,
}

impl Load {
    pub fn start(url: String, key: Option<String>, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..workers)
            .map(|w| {
                let (url, key, stop) = (url.clone(), key.clone(), stop.clone());
                tokio::spawn(async move { worker(w, url, key, stop).await })
            })
            .collect();
        Load { stop, tasks }
    }

    /// Responses so far are not visible; this stops the clients and adds up.
    pub async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Tally::default();
        for t in self.tasks {
            all.merge(t.await.expect("load worker"));
        }
        all
    }
}

async fn worker(w: usize, url: String, key: Option<String>, stop: Arc<AtomicBool>) -> Tally {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut t = Tally::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        n += 1;
        let id = format!("load-{w}-{n}");
        let mut req = client.get(&url).header("x-request-id", &id);
        if let Some(k) = &key {
            req = req.header("x-api-key", k);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                t.errors.push(format!("{id}: {e:?}"));
                continue;
            }
        };
        let status = resp.status().as_u16();
        if let Some(p) = resp.headers().get("ratelimit-policy") {
            t.policies
                .insert(String::from_utf8_lossy(p.as_bytes()).into_owned());
        }
        match resp.text().await {
            Ok(body) => {
                *t.statuses.entry(status).or_default() += 1;
                t.ids.push(id);
                t.bodies.insert(body);
            }
            Err(e) => t.errors.push(format!("{id}: body: {e:?}")),
        }
    }
    t
}
