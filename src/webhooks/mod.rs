//! Webhooks: key and owner events, written to an outbox in the same
//! transaction as the change and delivered at least once, signed per the
//! Standard Webhooks specification.

pub mod signature;
