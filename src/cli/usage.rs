//! `keygate usage export` and `usage prune`.

use std::io::Write;

use clap::Subcommand;

use super::{CliError, Ctx};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum UsageCommand {
    /// Print raw usage records as JSON lines, oldest first.
    Export {
        /// Only this key's records.
        #[arg(long, value_name = "ID")]
        key: Option<String>,
        /// At most this many records.
        #[arg(long, default_value = "10000")]
        limit: usize,
    },
    /// Delete raw usage records older than a duration (hourly rollups stay).
    Prune {
        #[arg(long, value_name = "DURATION", default_value = "90d")]
        older_than: String,
    },
}

pub async fn run(config: &Config, cmd: UsageCommand) -> Result<(), CliError> {
    match cmd {
        UsageCommand::Export { key, limit } => {
            let key_id = key.as_deref().map(super::keys::key_id).transpose()?;
            let ctx = Ctx::open(config).await?;
            let mut out = std::io::stdout().lock();
            let mut failed = None;
            ctx.services
                .usage
                .export(key_id, limit, &mut |r| {
                    let line = serde_json::to_string(r).map_err(std::io::Error::from);
                    if let Err(e) = line.and_then(|l| writeln!(out, "{l}")) {
                        failed.get_or_insert(e);
                    }
                })
                .await?;
            failed.map_or(Ok(()), |e| Err(CliError::Output(e)))
        }
        UsageCommand::Prune { older_than } => {
            let age = humantime::parse_duration(&older_than)
                .ok()
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .ok_or_else(|| {
                    CliError::Usage(format!(
                        "--older-than {older_than:?} is not a duration such as \"90d\""
                    ))
                })?;
            let ctx = Ctx::open(config).await?;
            let (n, before) = ctx.services.usage.prune(age).await?;
            println!(
                "deleted {n} usage record(s) older than {}",
                before.to_rfc3339()
            );
            Ok(())
        }
    }
}
