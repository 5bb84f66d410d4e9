//! `[admin]`: the admin API listener; its tokens come from the environment.

use std::net::SocketAddr;

use super::Env;
use super::checker::Checker;
use crate::config::file::AdminSection;
use crate::config::{AdminConfig, Secret, env};

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            tokens: Vec::new(),
        }
    }
}

impl Checker {
    pub(super) fn admin(
        &mut self,
        a: AdminSection,
        env: Env<'_>,
        gateway: SocketAddr,
    ) -> AdminConfig {
        let d = AdminConfig::default();
        let listen = self.addr("admin.listen", a.listen.as_deref(), d.listen);
        if listen == gateway && listen.port() != 0 {
            self.problem("admin.listen", "must differ from gateway.listen");
        }
        let tokens = env(env::ADMIN_TOKEN).map_or(d.tokens, |v| {
            v.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(Secret::new)
                .collect()
        });
        AdminConfig { listen, tokens }
    }
}
