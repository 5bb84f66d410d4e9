//! `[[webhook]]` endpoints and `[webhooks]` delivery tuning.

use std::path::PathBuf;
use std::time::Duration;

use super::Env;
use super::checker::Checker;
use crate::config::file::{WebhookSection, WebhooksSection};
use crate::webhooks::events::EventPattern;
use crate::webhooks::signature::SigningSecret;

/// One `[[webhook]]`: where events go, which ones, signed with which secret.
#[derive(Debug, Clone)]
pub struct WebhookEndpoint {
    /// Names the endpoint in the delivery log (unique).
    pub name: String,
    pub url: String,
    pub events: Vec<EventPattern>,
    /// Read from the environment variable `secret_env`; `Debug` redacts it.
    pub secret: SigningSecret,
    /// A CA (PEM) to trust for this endpoint besides the public roots.
    pub ca_file: Option<PathBuf>,
}

impl WebhookEndpoint {
    pub fn wants(&self, e: crate::webhooks::events::EventType) -> bool {
        self.events.iter().any(|p| p.matches(e))
    }
}

/// The endpoints and how they are delivered to.
#[derive(Debug, Clone)]
pub struct WebhooksConfig {
    pub endpoints: Vec<WebhookEndpoint>,
    /// After this long undelivered, a delivery is dead-lettered.
    pub max_age: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// One attempt, connect to end of the response.
    pub timeout: Duration,
    /// How often a worker looks for due deliveries.
    pub poll_interval: Duration,
    pub batch_size: usize,
    /// `key.expiring` this many days before a key expires.
    pub key_expiring_days: u32,
    /// `credits.low` when a balance falls below this; `None`: off.
    pub credits_low_threshold: Option<i64>,
    /// Delivered and dead-lettered rows are deleted this long after their
    /// last attempt.
    pub retention: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            endpoints: Vec::new(),
            max_age: Duration::from_secs(24 * 3600),
            initial_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            batch_size: 50,
            key_expiring_days: 7,
            credits_low_threshold: None,
            retention: Duration::from_secs(30 * 86_400),
        }
    }
}

impl Checker {
    pub(super) fn webhooks(
        &mut self,
        tuning: WebhooksSection,
        hooks: Vec<WebhookSection>,
        env: Env<'_>,
    ) -> WebhooksConfig {
        let d = WebhooksConfig::default();
        let t = tuning;
        let mut c = WebhooksConfig {
            endpoints: Vec::new(),
            max_age: self.duration("webhooks.max_age", t.max_age, d.max_age),
            initial_backoff: self.duration(
                "webhooks.initial_backoff",
                t.initial_backoff,
                d.initial_backoff,
            ),
            max_backoff: self.duration("webhooks.max_backoff", t.max_backoff, d.max_backoff),
            timeout: self.duration("webhooks.timeout", t.timeout, d.timeout),
            poll_interval: self.duration(
                "webhooks.poll_interval",
                t.poll_interval,
                d.poll_interval,
            ),
            batch_size: self.at_least_one("webhooks.batch_size", t.batch_size, d.batch_size),
            key_expiring_days: t.key_expiring_days.unwrap_or(d.key_expiring_days),
            credits_low_threshold: t.credits_low_threshold,
            retention: self.duration("webhooks.retention", t.retention, d.retention),
        };
        if c.max_backoff < c.initial_backoff {
            self.problem(
                "webhooks.max_backoff",
                "must be at least webhooks.initial_backoff",
            );
        }
        for (i, h) in hooks.into_iter().enumerate() {
            if let Some(e) = self.endpoint(&format!("webhook[{i}]"), h, env) {
                if c.endpoints.iter().any(|o| o.name == e.name) {
                    self.problem(format!("webhook[{i}].name"), "duplicate endpoint name");
                }
                c.endpoints.push(e);
            }
        }
        c
    }

    fn endpoint(&mut self, at: &str, h: WebhookSection, env: Env<'_>) -> Option<WebhookEndpoint> {
        let before = self.problems.len();
        let name = h.name.unwrap_or_default();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            self.problem(format!("{at}.name"), "required, 1-64 characters");
        }
        let url = h.url.unwrap_or_default();
        if let Err(e) = crate::outbound::parse_url(&url) {
            self.problem(format!("{at}.url"), e.to_string());
        }
        if h.events.is_empty() {
            self.problem(
                format!("{at}.events"),
                "name at least one event (\"*\": all)",
            );
        }
        let mut events = Vec::new();
        for (j, text) in h.events.iter().enumerate() {
            match EventPattern::parse(text) {
                Ok(p) => events.push(p),
                Err(e) => self.problem(format!("{at}.events[{j}]"), e.to_string()),
            }
        }
        let secret = self.webhook_secret(at, h.secret_env.as_deref(), env);
        let ca_file = h.ca_file.map(PathBuf::from);
        if let Some(p) = &ca_file {
            if !p.is_file() {
                self.problem(
                    format!("{at}.ca_file"),
                    format!("{} is not a file", p.display()),
                );
            }
        }
        let secret = secret?;
        (self.problems.len() == before).then_some(WebhookEndpoint {
            name,
            url,
            events,
            secret,
            ca_file,
        })
    }

    /// The signing secret from the variable `secret_env` names (never echoed).
    fn webhook_secret(
        &mut self,
        at: &str,
        var: Option<&str>,
        env: Env<'_>,
    ) -> Option<SigningSecret> {
        let path = format!("{at}.secret_env");
        let Some(var) = var.filter(|v| !v.is_empty()) else {
            self.problem(
                path,
                "required: the environment variable holding the secret",
            );
            return None;
        };
        let Some(text) = env(var) else {
            self.problem(path, format!("environment variable {var} is not set"));
            return None;
        };
        match SigningSecret::parse(&text) {
            Ok(s) => Some(s),
            Err(e) => {
                self.problem(path, format!("environment variable {var}: {e}"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    const HOOKS: &str = r#"
[webhooks]
max_age = "1h"
initial_backoff = "2s"
max_backoff = "1s"

[[webhook]]
name = "billing"
url = "https://billing.example.com/hook"
events = ["key.*", "credits.low"]
secret_env = "HOOK_SECRET"

[[webhook]]
name = "billing"
url = "mailto:x"
events = ["key.made"]
secret_env = "HOOK_BAD"
"#;

    fn env(k: &str) -> Option<String> {
        match k {
            "HOOK_SECRET" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            "HOOK_BAD" => Some("not-a-secret".into()),
            _ => None,
        }
    }

    #[test]
    fn every_problem_with_its_path_and_no_secret() {
        let Err(ConfigError::Invalid { problems, .. }) =
            Config::from_toml(HOOKS, Path::new("t.toml"), &env)
        else {
            panic!("invalid config accepted");
        };
        let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        for want in [
            "webhooks.max_backoff",
            "webhook[1].url",
            "webhook[1].events[0]",
            "webhook[1].secret_env: environment variable HOOK_BAD",
        ] {
            assert!(text.iter().any(|t| t.starts_with(want)), "{want}: {text:?}");
        }
        assert!(!text.iter().any(|t| t.contains("not-a-secret")), "{text:?}");
    }

    #[test]
    fn a_valid_endpoint_prints_redacted() {
        let ok = HOOKS
            .split("[[webhook]]")
            .take(2)
            .collect::<Vec<_>>()
            .join("[[webhook]]");
        let ok = ok.replace("max_backoff = \"1s\"", "max_backoff = \"10s\"");
        let c = Config::from_toml(&ok, Path::new("t.toml"), &env).expect("valid");
        let e = &c.webhooks.endpoints[0];
        assert!(e.wants(crate::webhooks::events::EventType::KeyLeaked));
        assert!(!e.wants(crate::webhooks::events::EventType::RatelimitExceeded));
        assert!(!format!("{c:?}").contains("MfKQ9r8"));
    }
}
