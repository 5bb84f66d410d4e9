//! `keygate keys revoke` and `keys rotate`.

use uuid::Uuid;

use super::{CliError, print_json};
use crate::audit::Actor;
use crate::service::KeyService;

pub async fn revoke(
    keys: &KeyService,
    id: Uuid,
    reason: Option<String>,
    json: bool,
    actor: &Actor,
) -> Result<(), CliError> {
    let k = keys.revoke(id, reason, actor).await?;
    if json {
        print_json(&k)
    } else {
        println!("revoked key {}", k.id)
    }
    Ok(())
}

pub async fn rotate(
    keys: &KeyService,
    id: Uuid,
    grace: &str,
    json: bool,
    actor: &Actor,
) -> Result<(), CliError> {
    let grace = humantime::parse_duration(grace).map_err(|_| {
        CliError::Usage(format!(
            "--grace {grace:?} is not a duration such as \"24h\""
        ))
    })?;
    let r = keys.rotate(id, grace, actor).await?;
    if json {
        print_json(&r);
        return Ok(());
    }
    println!("rotated key {} -> new key {}", r.previous.id, r.key.id);
    println!("secret: {}", r.secret.expose());
    match r.previous.spec.expires_at {
        Some(t) => println!("the old secret works until {}", t.to_rfc3339()),
        None => println!("the old secret keeps working"),
    }
    println!("(the secret is shown only now; store it safely)");
    Ok(())
}
