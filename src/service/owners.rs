//! Owner management for the CLI and the admin API: validates input and calls
//! the owner store; every change reaches running gateways through the same
//! change log as key changes.

use std::collections::HashSet;
use std::sync::Arc;

use super::{ServiceError, page};
use crate::audit::{Actor, Audit, AuditSealer};
use crate::clock::Clock;
use crate::config::Config;
use crate::credits::CreditChange;
use crate::keys::validate::{self as v, Errors};
use crate::owners::{OwnerPatch, OwnerRecord};
use crate::store::{OwnerChange, OwnerQuery, OwnerStore, StoreError};

pub struct OwnerService {
    store: Arc<dyn OwnerStore>,
    sealer: AuditSealer,
    routes: HashSet<String>,
    clock: Clock,
    hooks: crate::webhooks::Subscriptions,
}

impl OwnerService {
    pub fn new(
        store: Arc<dyn OwnerStore>,
        sealer: AuditSealer,
        config: &Config,
        clock: Clock,
    ) -> OwnerService {
        OwnerService {
            store,
            sealer,
            routes: config.routes.iter().map(|r| r.name.clone()).collect(),
            clock,
            hooks: crate::webhooks::Subscriptions::new(&config.webhooks),
        }
    }

    fn audit<'a>(&'a self, actor: &'a Actor, action: &'static str) -> Audit<'a> {
        Audit {
            sealer: &self.sealer,
            actor,
            action,
            hooks: Some(&self.hooks),
        }
    }

    /// Every field a patch carries.
    fn check(&self, p: &OwnerPatch) -> Result<(), ServiceError> {
        let mut e = Errors::default();
        if let Some(n) = &p.name {
            v::name(&mut e, n);
        }
        if let Some(m) = &p.metadata {
            v::metadata(&mut e, m);
        }
        if let Some(l) = &p.rate_limits {
            v::limits(&mut e, l);
        }
        if let Some(r) = &p.route_limits {
            v::route_limits(&mut e, r, &self.routes);
        }
        if let Some(Some(c)) = &p.credits {
            v::credits(&mut e, c);
        }
        e.into_result(()).map_err(ServiceError::Invalid)
    }

    pub async fn create(&self, p: OwnerPatch, actor: &Actor) -> Result<OwnerRecord, ServiceError> {
        let mut e = Errors::default();
        match p.id.as_deref() {
            None => e.add("id", "required"),
            Some(id) => v::owner_id(&mut e, id),
        }
        // The owner's id is `id` here; `owner_id` names it in key fields.
        for f in &mut e.0 {
            if f.field == "owner_id" {
                f.field = "id".into();
            }
        }
        e.into_result(()).map_err(ServiceError::Invalid)?;
        self.check(&p)?;
        let audit = self.audit(actor, "owner.create");
        Ok(self.store.insert_owner(&p, self.clock.now(), audit).await?)
    }

    pub async fn get(&self, id: &str) -> Result<OwnerRecord, ServiceError> {
        self.store
            .get_owner(id, self.clock.now())
            .await?
            .ok_or_else(|| StoreError::OwnerNotFound(id.to_owned()).into())
    }

    /// A page of owners (in id order) and the cursor for the next one.
    pub async fn list(
        &self,
        after: Option<String>,
        limit: u32,
    ) -> Result<(Vec<OwnerRecord>, Option<String>), ServiceError> {
        let want = limit.clamp(1, page::MAX);
        let q = OwnerQuery {
            after,
            limit: want + 1,
        };
        let mut owners = self.store.list_owners(&q, self.clock.now()).await?;
        let next = if owners.len() > want as usize {
            owners.truncate(want as usize);
            owners.last().map(|o| o.id.clone())
        } else {
            None
        };
        Ok((owners, next))
    }

    pub async fn update(
        &self,
        id: &str,
        p: OwnerPatch,
        actor: &Actor,
    ) -> Result<OwnerRecord, ServiceError> {
        let mut e = Errors::default();
        if p.id.as_deref().is_some_and(|i| i != id) {
            e.add("id", "cannot be changed");
        }
        if p.is_empty() {
            e.add("", "nothing to update");
        }
        e.into_result(()).map_err(ServiceError::Invalid)?;
        self.check(&p)?;
        let change = OwnerChange::Patch(Box::new(p));
        let audit = self.audit(actor, "owner.update");
        Ok(self
            .store
            .change_owner(id, &change, self.clock.now(), audit)
            .await?)
    }

    /// Tops up or sets the owner's credits.
    pub async fn credits(
        &self,
        id: &str,
        change: &CreditChange,
        actor: &Actor,
    ) -> Result<OwnerRecord, ServiceError> {
        let mut e = Errors::default();
        let op = v::credit_change(&mut e, change);
        let op = e.into_result(op).map_err(ServiceError::Invalid)?;
        let Some(op) = op else {
            return Err(ServiceError::field("", "give add or set"));
        };
        let audit = self.audit(actor, "owner.credits");
        let change = OwnerChange::Credits(op);
        Ok(self
            .store
            .change_owner(id, &change, self.clock.now(), audit)
            .await?)
    }

    /// Deletes an owner without keys.
    pub async fn delete(&self, id: &str, actor: &Actor) -> Result<(), ServiceError> {
        let audit = self.audit(actor, "owner.delete");
        Ok(self.store.delete_owner(id, self.clock.now(), audit).await?)
    }
}
