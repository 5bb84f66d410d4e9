//! `keygate keys list` and `keys show`: tables for people, JSON for scripts.

use chrono::{DateTime, Utc};
use clap::Args;
use uuid::Uuid;

use super::{CliError, print_json};
use crate::cli::table::{self, or_dash};
use crate::keys::model::KeyRecord;
use crate::service::KeyService;
use crate::store::KeyQuery;

#[derive(Debug, Args)]
pub struct ListArgs {
    #[arg(long, value_name = "ID")]
    owner: Option<String>,
    #[arg(
        long,
        default_value = "all",
        value_name = "active|disabled|expired|revoked|all"
    )]
    status: String,
    #[arg(long)]
    tag: Option<String>,
    #[arg(long)]
    json: bool,
}

pub async fn list(keys: &KeyService, a: ListArgs) -> Result<(), CliError> {
    let q = KeyQuery {
        owner_id: a.owner,
        status: KeyService::status_filter(&a.status)?,
        tag: a.tag,
        ..KeyQuery::default()
    };
    let all = keys.list_all(q).await?;
    if a.json {
        print_json(&serde_json::json!({ "keys": all }));
    } else {
        print!("{}", key_table(&all));
    }
    Ok(())
}

pub async fn show(keys: &KeyService, id: Uuid, json: bool) -> Result<(), CliError> {
    let k = keys.get(id).await?;
    if json {
        print_json(&k)
    } else {
        print!("{}", key_details(&k))
    }
    Ok(())
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

fn key_table(keys: &[KeyRecord]) -> String {
    let header = [
        "ID",
        "OWNER",
        "NAME",
        "KEY",
        "STATUS",
        "SCOPES",
        "EXPIRES",
        "LAST USED",
        "USES",
    ];
    let mut rows = vec![header.map(String::from).to_vec()];
    for k in keys {
        rows.push(vec![
            k.id.to_string(),
            k.spec.owner_id.clone(),
            k.spec.name.clone(),
            format!("{}_…{}", k.prefix, k.hint),
            k.status.as_str().into(),
            or_dash(&k.spec.scopes, ","),
            when(k.spec.expires_at),
            when(k.last_used_at),
            k.use_count.to_string(),
        ]);
    }
    let mut out = table::render(&rows);
    out.push_str(&format!("{} key(s)\n", keys.len()));
    out
}

pub(super) fn key_details(k: &KeyRecord) -> String {
    let s = &k.spec;
    let list = |v: &[String]| or_dash(v, ", ");
    let revoked = k.state.revoked_at.map_or("-".into(), |t| {
        let reason = k.state.revoked_reason.as_deref().unwrap_or("no reason");
        format!("{} ({reason})", t.to_rfc3339())
    });
    let flagged = k.state.flagged_at.map_or("-".into(), |t| {
        let reason = k.state.flagged_reason.as_deref().unwrap_or("");
        format!("{} ({reason})", t.to_rfc3339())
    });
    let lines = [
        ("id", k.id.to_string()),
        ("owner", s.owner_id.clone()),
        ("name", s.name.clone()),
        ("key", format!("{}_…{}", k.prefix, k.hint)),
        ("status", k.status.as_str().into()),
        ("scopes", list(&s.scopes)),
        (
            "cidrs",
            or_dash(s.allowed_cidrs.iter().map(ToString::to_string), ", "),
        ),
        ("routes", list(&s.allowed_routes)),
        ("limits", or_dash(table::limits(&s.rate_limits), ", ")),
        ("route caps", table::route_limits(&s.route_limits)),
        ("credits", crate::cli::credits::describe(k.credits.as_ref())),
        (
            "metadata",
            or_dash(s.metadata.iter().map(|(a, b)| format!("{a}={b}")), ", "),
        ),
        ("tags", list(&s.tags)),
        ("expires", when(s.expires_at)),
        (
            "hours",
            s.allowed_hours
                .as_ref()
                .map_or("-".into(), |h| h.to_string()),
        ),
        ("revoked", revoked),
        ("flagged", flagged),
        (
            "rotated to",
            k.state.rotated_to.map_or("-".into(), |u| u.to_string()),
        ),
        ("created", k.state.created_at.to_rfc3339()),
        ("last used", when(k.last_used_at)),
        ("uses", k.use_count.to_string()),
    ];
    lines
        .iter()
        .map(|(a, b)| format!("{a:<11} {b}\n"))
        .collect()
}
