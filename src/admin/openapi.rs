//! The OpenAPI 3.1 document, generated from the handlers and types, served at
//! `GET /openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{error, keys, owners, reports, verify, webhooks};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "keygate admin API", description = "Manage API keys, owners and credits, verify keys, read usage, the audit log and the webhook delivery log. Tokens have a role: `read` (GET endpoints and /v1/verify), `write` (also every change), `admin` (everything)."),
    paths(keys::create, keys::list, keys::get, keys::update, keys::revoke, keys::rotate, keys::delete,
          owners::key_credits, owners::create, owners::list, owners::get, owners::update, owners::delete,
          owners::owner_credits, owners::usage, verify::verify, reports::key_usage, reports::audit,
          webhooks::deliveries, webhooks::retry),
    components(schemas(error::ErrorBody, error::ErrorDetail, crate::keys::validate::FieldError,
                       crate::keys::model::KeyRecord, crate::keys::model::KeySpec, crate::keys::model::KeyState, crate::keys::model::KeyPatch, crate::keys::model::KeyStatus, crate::ratelimit::window::Limits, keys::StatusFilter,
                       crate::owners::OwnerRecord, crate::owners::OwnerSpec, crate::owners::OwnerPatch,
                       crate::credits::CreditsView, crate::credits::CreditsInput, crate::credits::CreditChange, crate::credits::Refill, crate::credits::Interval,
                       crate::keys::hours::AllowedHours, crate::keys::hours::Day,
                       crate::webhooks::model::Delivery, crate::webhooks::model::DeliveryStatus, webhooks::DeliveryPage)),
    modifiers(&BearerAuth),
    tags((name = "keys"), (name = "owners"), (name = "verify"), (name = "usage"), (name = "audit"), (name = "webhooks"))
)]
pub struct ApiDoc;

pub fn json() -> String {
    ApiDoc::openapi().to_json().unwrap_or_else(|_| "{}".into())
}
