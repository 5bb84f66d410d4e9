//! `keygate audit verify`: checks the chain, names the first broken record.

use clap::Subcommand;
use serde_json::json;

use super::{CliError, Ctx, print_json};
use crate::audit::chain::to_hex;
use crate::config::Config;
use crate::service::ServiceError;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit chain; names the first broken sequence number.
    Verify {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &Config, cmd: AuditCommand) -> Result<(), CliError> {
    let AuditCommand::Verify { json } = cmd;
    let ctx = Ctx::open(config).await?;
    match ctx.services.audit.verify().await {
        Ok(head) => {
            let hash = head.hash.as_deref().map(to_hex).unwrap_or_default();
            if json {
                print_json(
                    &json!({"ok": true, "records": head.records, "head_seq": head.records, "head_hash": hash}),
                );
            } else {
                println!(
                    "audit chain OK: {} record(s); head {} {hash}",
                    head.records, head.records
                );
            }
            Ok(())
        }
        Err(ServiceError::AuditBroken(b)) => {
            if json {
                print_json(&json!({"ok": false, "broken_seq": b.seq, "reason": b.reason}));
            }
            Err(ServiceError::AuditBroken(b).into())
        }
        Err(e) => Err(e.into()),
    }
}
