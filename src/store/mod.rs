//! Persistent storage: keys, usage records, audit log.

pub mod model;
