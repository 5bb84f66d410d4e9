//! Turns a [`FileConfig`] into a [`Config`], collecting every problem with its
//! path. One module per section, each with that section's defaults; the
//! shared checks (durations, addresses, counts, CIDRs, sizes) are in [`checker`].

mod admin;
mod checker;
mod cost;
mod gateway;
mod keys;
mod log;
mod ratelimit;
mod redis;
mod route;
mod secret_scanning;
mod store;
mod tls;
mod upstream;
mod usage;
mod webhooks;

use super::file::FileConfig;
use super::{Config, Problem};
use checker::Checker;
#[cfg(test)]
pub use checker::parse_size;
pub use checker::validate_cidr;
pub use gateway::is_metadata_field;
pub use webhooks::{WebhookEndpoint, WebhooksConfig};

/// Looks up `KEYGATE_*` override variables.
type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Parses TOML text into a file; keys it does not know are problems. A file
/// that is not TOML, or has a value of the wrong type, is an error.
pub fn parse(text: &str) -> Result<(FileConfig, Vec<Problem>), String> {
    let mut unknown = Vec::new();
    let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
    let file: FileConfig = serde_ignored::deserialize(de, |path| {
        unknown.push(Problem {
            path: render_path(&path),
            message: "unknown key".into(),
        })
    })
    .map_err(|e| e.to_string())?;
    Ok((file, unknown))
}

/// Validates a file, after the `problems` already found in it.
pub fn validate(
    file: FileConfig,
    problems: Vec<Problem>,
    env: Env<'_>,
) -> Result<Config, Vec<Problem>> {
    let mut c = Checker { problems };
    let config = c.config(file, env);
    if c.problems.is_empty() {
        Ok(config)
    } else {
        Err(c.problems)
    }
}

/// `route[2].upstream` rather than serde_ignored's `route.2.upstream`.
fn render_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", render_path(parent)),
        P::Map { parent, key } => {
            let p = render_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            render_path(parent)
        }
    }
}

impl Checker {
    fn config(&mut self, f: FileConfig, env: Env<'_>) -> Config {
        let gateway = self.gateway(f.gateway);
        let keys = self.keys(f.keys);
        let store = self.store(f.store, env);
        let ratelimit = self.ratelimit(f.ratelimit, env);
        let usage = self.usage(f.usage);
        let admin = self.admin(f.admin, env, gateway.listen);
        let log = self.log(f.log, env);
        let secret_scanning = self.secret_scanning(f.secret_scanning);
        let upstreams = self.upstreams(f.upstream);
        let routes = self.routes(f.route, &upstreams);
        let webhooks = self.webhooks(f.webhooks, f.webhook, env);
        Config {
            gateway,
            keys,
            store,
            ratelimit,
            usage,
            admin,
            log,
            secret_scanning,
            upstreams,
            routes,
            webhooks,
        }
    }
}
