//! The tamper-evident audit log of key changes.

pub mod chain;

pub use chain::{Actor, AuditDraft, AuditEntry, AuditSealer, Broken};
