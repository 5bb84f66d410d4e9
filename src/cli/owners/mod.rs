//! `keygate owners ...`: owners through the same
//! [`OwnerService`](crate::service::OwnerService) the admin API uses.

mod view;

use std::collections::BTreeMap;

use clap::{Args, Subcommand, ValueEnum};

use super::credits::{AccountOptions, CreditArgs};
use super::{CliError, Ctx, print_json};
use crate::config::Config;
use crate::owners::OwnerPatch;
use crate::ratelimit::window::{Limits, Window};
use crate::service::OwnerService;

/// Who the audit log names for CLI changes.
const ACTOR: &str = "cli";

#[derive(Debug, Subcommand)]
pub enum OwnersCommand {
    /// Create an owner (the first key of an owner also creates it).
    Create(CreateArgs),
    /// List owners.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one owner.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Change an owner's fields; options replace the field's whole value.
    Update(UpdateArgs),
    /// Top up (`--add N`) or set (`--set N`) the owner's credits.
    Credits(CreditArgs),
    /// Delete an owner that has no keys.
    Delete {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

/// The options `create` and `update` share.
#[derive(Debug, Args)]
pub struct OwnerOptions {
    #[arg(long)]
    name: Option<String>,
    /// A limit shared by all the owner's keys, e.g. `minute=1000` (repeatable).
    #[arg(long = "limit", value_name = "WINDOW=N")]
    limits: Vec<String>,
    /// Metadata `key=value` (repeatable).
    #[arg(long = "meta", value_name = "K=V")]
    meta: Vec<String>,
    #[command(flatten)]
    account: AccountOptions,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    id: String,
    /// Create the owner disabled.
    #[arg(long)]
    disabled: bool,
    #[command(flatten)]
    opts: OwnerOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Clearable {
    Limits,
    RouteLimits,
    Meta,
    Credits,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    id: String,
    #[arg(long, conflicts_with = "disable")]
    enable: bool,
    #[arg(long)]
    disable: bool,
    /// Empty a field (repeatable).
    #[arg(long, value_enum)]
    clear: Vec<Clearable>,
    #[command(flatten)]
    opts: OwnerOptions,
}

fn pairs(flag: &str, specs: &[String]) -> Result<Vec<(String, String)>, CliError> {
    specs
        .iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| CliError::Usage(format!("{flag} {s:?}: use KEY=VALUE")))
        })
        .collect()
}

impl OwnerOptions {
    fn patch(&self) -> Result<OwnerPatch, CliError> {
        let limits = if self.limits.is_empty() {
            None
        } else {
            let mut l = Limits::default();
            for (w, n) in pairs("--limit", &self.limits)? {
                let bad =
                    || CliError::Usage(format!("--limit {w}={n}: use WINDOW=N, e.g. minute=100"));
                l.set(
                    Window::parse(&w).ok_or_else(bad)?,
                    Some(n.parse().map_err(|_| bad())?),
                );
            }
            Some(l)
        };
        let metadata = (!self.meta.is_empty())
            .then(|| pairs("--meta", &self.meta).map(BTreeMap::from_iter))
            .transpose()?;
        Ok(OwnerPatch {
            name: self.name.clone(),
            rate_limits: limits,
            metadata,
            route_limits: self.account.route_limits()?,
            credits: self.account.credits()?.map(Some),
            ..OwnerPatch::default()
        })
    }
}

fn show(owner: &crate::owners::OwnerRecord, json: bool) {
    if json {
        print_json(owner)
    } else {
        print!("{}", view::details(owner))
    }
}

pub async fn run(config: &Config, cmd: OwnersCommand) -> Result<(), CliError> {
    let ctx = Ctx::open(config).await?;
    let owners = &ctx.services.owners;
    let actor = ACTOR.to_owned();
    match cmd {
        OwnersCommand::Create(a) => {
            let patch = OwnerPatch {
                id: Some(a.id),
                enabled: Some(!a.disabled),
                ..a.opts.patch()?
            };
            show(&owners.create(patch, &actor).await?, a.opts.json);
        }
        OwnersCommand::List { json } => view::list(owners, json).await?,
        OwnersCommand::Show { id, json } => show(&owners.get(&id).await?, json),
        OwnersCommand::Update(a) => update(owners, a, &actor).await?,
        OwnersCommand::Credits(a) => {
            show(&owners.credits(&a.id, &a.change(), &actor).await?, a.json)
        }
        OwnersCommand::Delete { id, json } => {
            owners.delete(&id, &actor).await?;
            if json {
                print_json(&serde_json::json!({ "deleted": id }));
            } else {
                println!("deleted owner {id}");
            }
        }
    }
    Ok(())
}

async fn update(owners: &OwnerService, a: UpdateArgs, actor: &String) -> Result<(), CliError> {
    let mut p = a.opts.patch()?;
    p.enabled = match (a.enable, a.disable) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    for c in &a.clear {
        match c {
            Clearable::Limits => p.rate_limits = Some(p.rate_limits.unwrap_or_default()),
            Clearable::RouteLimits => {
                p.route_limits = Some(p.route_limits.take().unwrap_or_default())
            }
            Clearable::Meta => p.metadata = Some(p.metadata.take().unwrap_or_default()),
            Clearable::Credits => p.credits = Some(p.credits.take().flatten()),
        }
    }
    show(&owners.update(&a.id, p, actor).await?, a.opts.json);
    Ok(())
}
