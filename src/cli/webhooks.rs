//! `keygate webhooks deliveries` (the delivery log) and `keygate webhooks
//! retry <id>` (redelivery), over the same service as the admin API.

use clap::Subcommand;
use uuid::Uuid;

use super::{CliError, Ctx, print_json, table};
use crate::config::Config;
use crate::service::{ServiceError, page};
use crate::webhooks::model::{Delivery, DeliveryQuery, DeliveryStatus};

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// The delivery log, newest first.
    Deliveries {
        /// pending, delivered or dead.
        #[arg(long)]
        status: Option<String>,
        /// One event type, e.g. key.revoked.
        #[arg(long)]
        event_type: Option<String>,
        /// One endpoint, by name.
        #[arg(long)]
        endpoint: Option<String>,
        #[arg(long, default_value_t = page::DEFAULT)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// Deliver again now (a dead, failing or delivered delivery), with the same event id.
    Retry {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &Config, cmd: WebhooksCommand) -> Result<(), CliError> {
    let ctx = Ctx::open(config).await?;
    let svc = &ctx.services.webhooks;
    match cmd {
        WebhooksCommand::Deliveries {
            status,
            event_type,
            endpoint,
            limit,
            json,
        } => {
            let status = match status.as_deref() {
                Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
                    ServiceError::field("status", "one of pending, delivered, dead")
                })?),
                None => None,
            };
            let limit = page::size("limit", Some(limit))?;
            let q = DeliveryQuery {
                status,
                event_type,
                endpoint,
                before: None,
                limit,
            };
            let (rows, _) = svc.list(q).await?;
            if json {
                print_json(&rows);
            } else {
                print!("{}", render(&rows));
            }
        }
        WebhooksCommand::Retry { id, json } => {
            let id =
                Uuid::parse_str(&id).map_err(|_| ServiceError::field("id", "not a delivery id"))?;
            let d = svc.retry(id).await?;
            if json {
                print_json(&d);
            } else {
                println!("delivery {} ({}) due now", d.id, d.event_id);
            }
        }
    }
    Ok(())
}

fn render(rows: &[Delivery]) -> String {
    let mut t = vec![
        [
            "ID", "EVENT", "TYPE", "ENDPOINT", "STATUS", "ATTEMPTS", "LAST",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for d in rows {
        t.push(vec![
            d.id.to_string(),
            d.event_id.clone(),
            d.event_type.clone(),
            d.endpoint.clone(),
            d.status.as_str().to_owned(),
            d.attempts.to_string(),
            d.last_error.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    table::render(&t)
}
