//! API keys at run time: the in-memory table and how it stays in sync.

pub mod entry;
pub mod table;

pub use entry::{EntryContext, KeyEntry};
pub use table::KeyTable;
