//! The audit log: pages of records, and the chain check `keygate audit verify` runs.

use std::sync::Arc;

use super::{ServiceError, page};
use crate::audit::chain::ChainVerifier;
use crate::audit::{AuditEntry, AuditSealer};
use crate::store::AuditLog;

pub struct AuditService {
    log: Arc<dyn AuditLog>,
    sealer: AuditSealer,
}

/// The newest record of a verified chain: compare it with an outside copy to
/// notice truncation, which the chain alone cannot show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub records: u64,
    pub hash: Option<Vec<u8>>,
}

impl AuditService {
    pub fn new(log: Arc<dyn AuditLog>, sealer: AuditSealer) -> AuditService {
        AuditService { log, sealer }
    }

    /// Records after sequence number `after`, oldest first, and the `after`
    /// of the next page (`None` on the last one).
    pub async fn page(
        &self,
        after: i64,
        limit: Option<u32>,
    ) -> Result<(Vec<AuditEntry>, Option<i64>), ServiceError> {
        if after < 0 {
            return Err(ServiceError::field("after", "must be at least 0"));
        }
        let limit = page::size("limit", limit)?;
        let entries = self.log.audit_page(after, limit).await?;
        let next = (entries.len() == limit as usize)
            .then(|| entries.last().map(|e| e.seq))
            .flatten();
        Ok((entries, next))
    }

    /// Checks the whole chain; names the first broken sequence number.
    pub async fn verify(&self) -> Result<ChainHead, ServiceError> {
        let mut v = ChainVerifier::new(&self.sealer);
        let mut after = 0;
        loop {
            let page = self.log.audit_page(after, page::MAX).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            for e in page {
                v.push(e)?;
            }
        }
        Ok(ChainHead {
            records: v.count(),
            hash: v.head().map(<[u8]>::to_vec),
        })
    }
}
