//! `keygate migrate`, `keygate keys ...`, `keygate audit verify`: run directly
//! against the store through the same service the admin API uses.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use uuid::Uuid;

use super::CliError;
use crate::audit::chain::{ChainVerifier, to_hex};
use crate::audit::{Actor, AuditSealer};
use crate::auth::hash::KeyHasher;
use crate::clock::Clock;
use crate::config::Config;
use crate::keys::KeyService;
use crate::keys::service::{CreateKey, UpdateKey};
use crate::ratelimit::window::{Limits, Window};
use crate::secrets;
use crate::store::model::KeyRecord;
use crate::store::{self, DynStore, KeyQuery};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; prints its secret once.
    Create(CreateArgs),
    /// List keys.
    List(ListArgs),
    /// Show one key.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a key's fields; options replace the field's whole value.
    Update(UpdateArgs),
    /// Revoke a key (permanent).
    Revoke {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Issue a new secret; the old one keeps working for the grace period.
    Rotate {
        id: String,
        #[arg(long, default_value = "24h")]
        grace: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a key and its data for good (erasure).
    Delete {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit chain; names the first broken sequence number.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// Print raw usage records as JSON lines, oldest first.
    Export {
        /// Only this key's records.
        #[arg(long, value_name = "ID")]
        key: Option<String>,
        /// At most this many records.
        #[arg(long, default_value = "10000")]
        limit: u32,
    },
    /// Delete raw usage records older than a duration (hourly rollups stay).
    Prune {
        #[arg(long, value_name = "DURATION", default_value = "90d")]
        older_than: String,
    },
}

#[derive(Debug, Args)]
pub struct KeyOptions {
    /// A scope the key holds (repeatable); `orders:*` and `*` are wildcards.
    #[arg(long = "scope", value_name = "SCOPE")]
    scopes: Vec<String>,
    /// An IPv4/IPv6 CIDR the key may be used from (repeatable; none = any).
    #[arg(long = "cidr", value_name = "CIDR")]
    cidrs: Vec<String>,
    /// A rate limit, e.g. `minute=100` (repeatable).
    #[arg(long = "limit", value_name = "WINDOW=N")]
    limits: Vec<String>,
    /// A route the key may use (repeatable; none = all).
    #[arg(long = "route", value_name = "NAME")]
    routes: Vec<String>,
    /// Expire after this long, e.g. `30d`.
    #[arg(long, value_name = "DURATION", conflicts_with = "expires_at")]
    expires_in: Option<String>,
    /// Expire at this time (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    expires_at: Option<String>,
    /// Metadata `key=value` (repeatable).
    #[arg(long = "meta", value_name = "K=V")]
    meta: Vec<String>,
    /// A tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    tags: Vec<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[arg(long, value_name = "ID")]
    owner: String,
    #[arg(long)]
    name: String,
    #[arg(long)]
    prefix: Option<String>,
    /// Create the key disabled.
    #[arg(long)]
    disabled: bool,
    #[command(flatten)]
    opts: KeyOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Clearable {
    Scopes,
    Cidrs,
    Routes,
    Limits,
    Meta,
    Tags,
    Expiry,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    id: String,
    #[arg(long)]
    name: Option<String>,
    #[arg(long, conflicts_with = "disable")]
    enable: bool,
    #[arg(long)]
    disable: bool,
    /// Empty a field (repeatable).
    #[arg(long, value_enum)]
    clear: Vec<Clearable>,
    #[command(flatten)]
    opts: KeyOptions,
}

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

const ACTOR: &str = "cli";

struct Ctx {
    service: KeyService,
    sealer: AuditSealer,
}

async fn open(config: &Config) -> Result<Ctx, CliError> {
    let secret =
        secrets::load_hash_secret(&config.store).map_err(|e| CliError::Runtime(e.to_string()))?;
    let hasher =
        KeyHasher::new(secret.expose().as_bytes()).map_err(|e| CliError::Runtime(e.to_string()))?;
    let sealer = AuditSealer::new(&hasher);
    let store = store::open(&config.store, sealer.clone()).await?;
    Ok(Ctx {
        service: KeyService::new(store, hasher, config, Clock::system()),
        sealer,
    })
}

pub async fn migrate(config: &Config) -> Result<(), CliError> {
    // Migrations need no secret; the sealer is never used here.
    let sealer =
        AuditSealer::new(&KeyHasher::new(&[0; 32]).map_err(|e| CliError::Runtime(e.to_string()))?);
    let store = store::open(&config.store, sealer).await?;
    store.migrate().await?;
    println!("migrations applied ({})", store.kind());
    Ok(())
}

fn uuid(s: &str) -> Result<Uuid, CliError> {
    Uuid::parse_str(s).map_err(|_| CliError::Usage(format!("{s:?} is not a key id (UUID)")))
}

fn limits(specs: &[String]) -> Result<Limits, CliError> {
    let mut l = Limits::default();
    for s in specs {
        let (w, n) = s.split_once('=').ok_or_else(|| {
            CliError::Usage(format!("--limit {s:?}: use WINDOW=N, e.g. minute=100"))
        })?;
        let w = Window::parse(w).ok_or_else(|| {
            CliError::Usage(format!(
                "--limit {s:?}: window must be second, minute, hour, day or month"
            ))
        })?;
        let n = n
            .parse()
            .map_err(|_| CliError::Usage(format!("--limit {s:?}: N must be a whole number")))?;
        l.set(w, Some(n));
    }
    Ok(l)
}

fn meta(specs: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    specs
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| CliError::Usage(format!("--meta {s:?}: use KEY=VALUE")))
        })
        .collect()
}

fn time(s: &Option<String>) -> Result<Option<DateTime<Utc>>, CliError> {
    s.as_deref()
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| CliError::Usage(format!("--expires-at {t:?} is not an RFC 3339 time")))
        })
        .transpose()
}

fn print_json(v: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

pub async fn run(config: &Config, cmd: KeysCommand) -> Result<(), CliError> {
    let ctx = open(config).await?;
    let svc = &ctx.service;
    let actor: Actor = ACTOR.into();
    match cmd {
        KeysCommand::Create(a) => {
            let created = svc
                .create(
                    CreateKey {
                        owner_id: a.owner,
                        name: a.name,
                        prefix: a.prefix,
                        scopes: a.opts.scopes,
                        allowed_cidrs: a.opts.cidrs,
                        allowed_routes: a.opts.routes,
                        rate_limits: limits(&a.opts.limits)?,
                        metadata: meta(&a.opts.meta)?,
                        tags: a.opts.tags,
                        enabled: !a.disabled,
                        expires_at: time(&a.opts.expires_at)?,
                        expires_in: a.opts.expires_in,
                    },
                    &actor,
                )
                .await?;
            if a.opts.json {
                print_json(&created);
            } else {
                println!(
                    "created key {} for owner {}",
                    created.key.id, created.key.owner_id
                );
                println!("secret: {}", created.secret.expose());
                println!("(the secret is shown only now; store it safely)");
            }
        }
        KeysCommand::List(a) => {
            let status = KeyService::status_filter(&a.status)?;
            let mut q = KeyQuery {
                owner_id: a.owner,
                status,
                tag: a.tag,
                after: None,
                limit: 1000,
            };
            let mut all = Vec::new();
            loop {
                let (page, next) = svc.list(q.clone()).await?;
                all.extend(page);
                match next {
                    Some(n) => q.after = Some(n),
                    None => break,
                }
            }
            if a.json {
                print_json(&json!({ "keys": all }));
            } else {
                print!("{}", key_table(&all));
            }
        }
        KeysCommand::Show { id, json } => {
            let k = svc.get(uuid(&id)?).await?;
            if json {
                print_json(&k)
            } else {
                print!("{}", key_details(&k))
            }
        }
        KeysCommand::Update(a) => {
            let o = a.opts;
            let cleared = |c| a.clear.contains(&c);
            let some_or_clear = |v: Vec<String>, c| {
                if !v.is_empty() {
                    Some(v)
                } else if cleared(c) {
                    Some(vec![])
                } else {
                    None
                }
            };
            let req = UpdateKey {
                name: a.name,
                scopes: some_or_clear(o.scopes, Clearable::Scopes),
                allowed_cidrs: some_or_clear(o.cidrs, Clearable::Cidrs),
                allowed_routes: some_or_clear(o.routes, Clearable::Routes),
                rate_limits: if !o.limits.is_empty() {
                    Some(limits(&o.limits)?)
                } else if cleared(Clearable::Limits) {
                    Some(Limits::default())
                } else {
                    None
                },
                metadata: if !o.meta.is_empty() {
                    Some(meta(&o.meta)?)
                } else if cleared(Clearable::Meta) {
                    Some(BTreeMap::new())
                } else {
                    None
                },
                tags: some_or_clear(o.tags, Clearable::Tags),
                enabled: if a.enable {
                    Some(true)
                } else if a.disable {
                    Some(false)
                } else {
                    None
                },
                expires_at: match time(&o.expires_at)? {
                    Some(t) => Some(Some(t)),
                    None if cleared(Clearable::Expiry) => Some(None),
                    None => None,
                },
                expires_in: o.expires_in,
            };
            let k = svc.update(uuid(&a.id)?, req, &actor).await?;
            if o.json {
                print_json(&k)
            } else {
                print!("{}", key_details(&k))
            }
        }
        KeysCommand::Revoke { id, reason, json } => {
            let k = svc.revoke(uuid(&id)?, reason, &actor).await?;
            if json {
                print_json(&k)
            } else {
                println!("revoked key {}", k.id)
            }
        }
        KeysCommand::Rotate { id, grace, json } => {
            let grace = humantime::parse_duration(&grace).map_err(|_| {
                CliError::Usage(format!(
                    "--grace {grace:?} is not a duration such as \"24h\""
                ))
            })?;
            let r = svc.rotate(uuid(&id)?, grace, &actor).await?;
            if json {
                print_json(&r);
            } else {
                println!("rotated key {} -> new key {}", r.previous.id, r.key.id);
                println!("secret: {}", r.secret.expose());
                match r.previous.expires_at {
                    Some(t) => println!("the old secret works until {}", t.to_rfc3339()),
                    None => println!("the old secret keeps working"),
                }
                println!("(the secret is shown only now; store it safely)");
            }
        }
        KeysCommand::Delete { id, json } => {
            let id = uuid(&id)?;
            svc.delete(id, &actor).await?;
            if json {
                print_json(&json!({ "deleted": id }))
            } else {
                println!("deleted key {id}")
            }
        }
    }
    Ok(())
}

fn when(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string())
}

fn key_table(keys: &[KeyRecord]) -> String {
    let mut rows = vec![
        [
            "ID",
            "OWNER",
            "NAME",
            "KEY",
            "STATUS",
            "SCOPES",
            "EXPIRES",
            "LAST USED",
            "USES",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for k in keys {
        rows.push(vec![
            k.id.to_string(),
            k.owner_id.clone(),
            k.name.clone(),
            format!("{}_…{}", k.prefix, k.hint),
            k.status.as_str().into(),
            if k.scopes.is_empty() {
                "-".into()
            } else {
                k.scopes.join(",")
            },
            when(k.expires_at),
            when(k.last_used_at),
            k.use_count.to_string(),
        ]);
    }
    let mut out = super::table::render(&rows);
    out.push_str(&format!("{} key(s)\n", keys.len()));
    out
}

fn key_details(k: &KeyRecord) -> String {
    let list = |v: &[String]| super::table::or_dash(v, ", ");
    let lines = [
        ("id", k.id.to_string()),
        ("owner", k.owner_id.clone()),
        ("name", k.name.clone()),
        ("key", format!("{}_…{}", k.prefix, k.hint)),
        ("status", k.status.as_str().into()),
        ("scopes", list(&k.scopes)),
        (
            "cidrs",
            list(
                &k.allowed_cidrs
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>(),
            ),
        ),
        ("routes", list(&k.allowed_routes)),
        (
            "limits",
            super::table::or_dash(super::table::limits(&k.rate_limits), ", "),
        ),
        (
            "metadata",
            list(
                &k.metadata
                    .iter()
                    .map(|(a, b)| format!("{a}={b}"))
                    .collect::<Vec<_>>(),
            ),
        ),
        ("tags", list(&k.tags)),
        ("expires", when(k.expires_at)),
        (
            "revoked",
            k.revoked_at.map_or("-".into(), |t| {
                format!(
                    "{} ({})",
                    t.to_rfc3339(),
                    k.revoked_reason.as_deref().unwrap_or("no reason")
                )
            }),
        ),
        (
            "rotated to",
            k.rotated_to.map_or("-".into(), |u| u.to_string()),
        ),
        ("created", k.created_at.to_rfc3339()),
        ("last used", when(k.last_used_at)),
        ("uses", k.use_count.to_string()),
    ];
    lines
        .iter()
        .map(|(a, b)| format!("{a:<11} {b}\n"))
        .collect()
}

pub async fn audit(config: &Config, cmd: AuditCommand) -> Result<(), CliError> {
    let AuditCommand::Verify { json } = cmd;
    let ctx = open(config).await?;
    let store: &DynStore = ctx.service.store();
    let mut v = ChainVerifier::new(&ctx.sealer);
    let mut after = 0;
    let result = loop {
        let page = store.audit_page(after, 1000).await?;
        let Some(last) = page.last() else {
            break Ok(());
        };
        after = last.seq;
        if let Err(broken) = page.into_iter().try_for_each(|e| v.push(e)) {
            break Err(broken);
        }
    };
    match result {
        Ok(()) => {
            let head = v.head().map(to_hex).unwrap_or_default();
            if json {
                print_json(
                    &json!({"ok": true, "records": v.count(), "head_seq": v.count(), "head_hash": head}),
                );
            } else {
                println!(
                    "audit chain OK: {} record(s); head {} {}",
                    v.count(),
                    v.count(),
                    head
                );
            }
            Ok(())
        }
        Err(b) => {
            if json {
                print_json(&json!({"ok": false, "broken_seq": b.seq, "reason": b.reason}));
            }
            Err(CliError::Runtime(b.to_string()))
        }
    }
}

pub async fn usage(config: &Config, cmd: UsageCommand) -> Result<(), CliError> {
    let older_than = match cmd {
        UsageCommand::Prune { older_than } => older_than,
        UsageCommand::Export { key, limit } => return export(config, key, limit).await,
    };
    let age = humantime::parse_duration(&older_than)
        .ok()
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "--older-than {older_than:?} is not a duration such as \"90d\""
            ))
        })?;
    let ctx = open(config).await?;
    let before = Utc::now() - age;
    let n = ctx.service.store().prune_usage(before).await?;
    println!(
        "deleted {n} usage record(s) older than {}",
        before.to_rfc3339()
    );
    Ok(())
}

async fn export(config: &Config, key: Option<String>, limit: u32) -> Result<(), CliError> {
    use std::io::Write;
    let ctx = open(config).await?;
    let key_id = key.as_deref().map(uuid).transpose()?;
    let mut q = crate::store::UsageQuery {
        key_id,
        after: None,
        limit: limit.clamp(1, 1000),
    };
    let mut left = limit as usize;
    let mut out = std::io::stdout().lock();
    while left > 0 {
        let page = ctx.service.store().usage_events(&q).await?;
        let Some(last) = page.last() else { break };
        q.after = Some(last.id);
        for r in page.iter().take(left) {
            let _ = writeln!(out, "{}", serde_json::to_string(r).unwrap_or_default());
        }
        left = left.saturating_sub(page.len());
    }
    Ok(())
}
