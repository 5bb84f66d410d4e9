//! `keygate keys ...`: each command in its own file, all through the same
//! [`KeyService`](crate::service::KeyService) the admin API uses.

mod create;
mod lifecycle;
mod options;
mod update;
mod view;

use clap::Subcommand;
use uuid::Uuid;

use super::{CliError, Ctx, print_json};
use crate::config::Config;

pub use create::CreateArgs;
pub use update::UpdateArgs;
pub use view::ListArgs;

/// Who the audit log names for CLI changes.
const ACTOR: &str = "cli";

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
    /// Top up (`--add N`) or set (`--set N`) the key's credits.
    Credits(crate::cli::credits::CreditArgs),
    /// Delete a key and its data for good (erasure).
    Delete {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn key_id(s: &str) -> Result<Uuid, CliError> {
    Uuid::parse_str(s).map_err(|_| CliError::Usage(format!("{s:?} is not a key id (UUID)")))
}

pub async fn run(config: &Config, cmd: KeysCommand) -> Result<(), CliError> {
    let ctx = Ctx::open(config).await?;
    let keys = &ctx.services.keys;
    let actor = ACTOR.to_owned();
    match cmd {
        KeysCommand::Create(a) => create::run(keys, a, &actor).await,
        KeysCommand::List(a) => view::list(keys, a).await,
        KeysCommand::Show { id, json } => view::show(keys, key_id(&id)?, json).await,
        KeysCommand::Update(a) => update::run(keys, a, &actor).await,
        KeysCommand::Revoke { id, reason, json } => {
            lifecycle::revoke(keys, key_id(&id)?, reason, json, &actor).await
        }
        KeysCommand::Rotate { id, grace, json } => {
            lifecycle::rotate(keys, key_id(&id)?, &grace, json, &actor).await
        }
        KeysCommand::Credits(a) => {
            let k = keys.credits(key_id(&a.id)?, &a.change(), &actor).await?;
            if a.json {
                print_json(&k);
            } else {
                let c = crate::cli::credits::describe(k.credits.as_ref());
                println!("key {}: credits {c}", k.id);
            }
            Ok(())
        }
        KeysCommand::Delete { id, json } => {
            let id = key_id(&id)?;
            keys.delete(id, &actor).await?;
            if json {
                print_json(&serde_json::json!({ "deleted": id }));
            } else {
                println!("deleted key {id}");
            }
            Ok(())
        }
    }
}
