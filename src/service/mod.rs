//! The service layer the CLI and the admin API share: keys, the audit log and
//! usage reports, each validating its input and calling one store concern.
//! Limits that both front ends apply (page sizes, the rotation grace) are
//! defined here once.

mod audit;
mod keys;
mod owners;
mod usage;
mod webhooks;

use crate::auth::hash::KeyHasher;
use crate::clock::Clock;
use crate::config::Config;
use crate::keys::validate::FieldError;
use crate::store::{StoreError, Stores};
pub use audit::{AuditService, ChainHead};
pub use keys::{CreatedKey, KeyService, MAX_GRACE, RotatedKey};
pub use owners::OwnerService;
pub use usage::{OwnerUsageReport, UsageReport, UsageService};
pub use webhooks::WebhookService;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid input: {}", describe(.0))]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    AuditBroken(#[from] crate::audit::Broken),
}

fn describe(fields: &[FieldError]) -> String {
    fields
        .iter()
        .map(|f| {
            if f.field.is_empty() {
                f.message.clone()
            } else {
                format!("{}: {}", f.field, f.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl ServiceError {
    pub fn field(field: &str, message: impl Into<String>) -> ServiceError {
        ServiceError::Invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }
}

/// Page sizes for every listing (keys, audit records, usage records).
pub mod page {
    use super::ServiceError;

    pub const DEFAULT: u32 = 100;
    pub const MAX: u32 = 1000;

    /// A requested page size, checked against [`MAX`].
    pub fn size(field: &str, requested: Option<u32>) -> Result<u32, ServiceError> {
        match requested.unwrap_or(DEFAULT) {
            n @ 1..=MAX => Ok(n),
            _ => Err(ServiceError::field(field, format!("must be 1-{MAX}"))),
        }
    }
}

/// The services over one store.
pub struct Services {
    pub keys: KeyService,
    pub owners: OwnerService,
    pub audit: AuditService,
    pub usage: UsageService,
    pub webhooks: WebhookService,
}

impl Services {
    pub fn new(stores: &Stores, hasher: KeyHasher, config: &Config, clock: Clock) -> Services {
        let sealer = crate::audit::AuditSealer::new(&hasher);
        Services {
            keys: KeyService::new(
                stores.keys.clone(),
                hasher,
                sealer.clone(),
                config,
                clock.clone(),
            ),
            owners: OwnerService::new(stores.owners.clone(), sealer.clone(), config, clock.clone()),
            audit: AuditService::new(stores.audit.clone(), sealer),
            usage: UsageService::new(
                stores.usage.clone(),
                stores.keys.clone(),
                stores.owners.clone(),
                clock.clone(),
            ),
            webhooks: WebhookService::new(stores.webhooks.clone(), clock),
        }
    }
}
