//! `keygate keys update`: options replace a field; `--clear` empties one.

use std::collections::BTreeMap;

use clap::{Args, ValueEnum};

use super::options::KeyOptions;
use super::view::key_details;
use super::{CliError, key_id, print_json};
use crate::audit::Actor;
use crate::keys::model::KeyPatch;
use crate::ratelimit::window::Limits;
use crate::service::KeyService;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Clearable {
    Scopes,
    Cidrs,
    Routes,
    Limits,
    Meta,
    Tags,
    Expiry,
    RouteLimits,
    /// The key's own credits (its owner's apply again).
    Credits,
    /// The allowed hours (usable at any time again).
    Hours,
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

/// Adds `--clear`ed fields (as empty) to a patch, where no option set them.
fn clear(mut p: KeyPatch, fields: &[Clearable]) -> KeyPatch {
    for f in fields {
        match f {
            Clearable::Scopes => {
                p.scopes.get_or_insert_with(Vec::new);
            }
            Clearable::Cidrs => {
                p.allowed_cidrs.get_or_insert_with(Vec::new);
            }
            Clearable::Routes => {
                p.allowed_routes.get_or_insert_with(Vec::new);
            }
            Clearable::Limits => {
                p.rate_limits.get_or_insert_with(Limits::default);
            }
            Clearable::Meta => {
                p.metadata.get_or_insert_with(BTreeMap::new);
            }
            Clearable::Tags => {
                p.tags.get_or_insert_with(Vec::new);
            }
            Clearable::Expiry => {
                p.expires_at.get_or_insert(None);
            }
            Clearable::RouteLimits => {
                p.route_limits.get_or_insert_with(BTreeMap::new);
            }
            Clearable::Credits => {
                p.credits.get_or_insert(None);
            }
            Clearable::Hours => {
                p.allowed_hours.get_or_insert(None);
            }
        }
    }
    p
}

pub async fn run(keys: &KeyService, a: UpdateArgs, actor: &Actor) -> Result<(), CliError> {
    let enabled = match (a.enable, a.disable) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    };
    let patch = KeyPatch {
        name: a.name,
        enabled,
        ..clear(a.opts.patch()?, &a.clear)
    };
    let k = keys.update(key_id(&a.id)?, patch, actor).await?;
    if a.opts.json {
        print_json(&k)
    } else {
        print!("{}", key_details(&k))
    }
    Ok(())
}
