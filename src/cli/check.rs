//! `keygate check-config`: the validated route table.

use super::table::{limits, or_dash};
use crate::config::{AuthMode, Config};

pub fn route_table(c: &Config) -> String {
    let mut rows = vec![
        [
            "ROUTE", "HOST", "PATH", "METHODS", "AUTH", "SCOPES", "LIMITS", "UPSTREAM",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in &c.routes {
        let up = &c.upstreams[r.upstream];
        rows.push(vec![
            r.name.clone(),
            r.host.clone().unwrap_or_else(|| "*".into()),
            r.path_prefix.clone(),
            if r.methods.is_empty() {
                "*".into()
            } else {
                r.methods
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            },
            match r.auth {
                AuthMode::Required => "required".into(),
                AuthMode::Public => "public".into(),
            },
            or_dash(&r.scopes, ","),
            or_dash(limits(&r.rate_limits), ","),
            format!("{} ({})", up.name, up.servers.join(" ")),
        ]);
    }
    let mut out = super::table::render(&rows);
    out.push_str(&format!(
        "{} route(s), {} upstream(s); proxy on {}, admin on {}\n",
        c.routes.len(),
        c.upstreams.len(),
        c.gateway.listen,
        c.admin.listen
    ));
    out
}
