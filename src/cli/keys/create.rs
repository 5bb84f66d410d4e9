//! `keygate keys create`.

use clap::Args;

use super::options::KeyOptions;
use super::{CliError, print_json};
use crate::audit::Actor;
use crate::keys::model::KeyPatch;
use crate::service::KeyService;

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

pub async fn run(keys: &KeyService, a: CreateArgs, actor: &Actor) -> Result<(), CliError> {
    let req = KeyPatch {
        owner_id: Some(a.owner),
        name: Some(a.name),
        prefix: a.prefix,
        enabled: Some(!a.disabled),
        ..a.opts.patch()?
    };
    let created = keys.create(req, actor).await?;
    if a.opts.json {
        print_json(&created);
    } else {
        println!(
            "created key {} for owner {}",
            created.key.id, created.key.spec.owner_id
        );
        println!("secret: {}", created.secret.expose());
        println!("(the secret is shown only now; store it safely)");
    }
    Ok(())
}
