//! The tamper-evident audit log of key changes.

pub mod chain;

pub use chain::{Actor, Audit, AuditDraft, AuditEntry, AuditSealer, Broken};
