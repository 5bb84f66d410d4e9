//! API keys at run time: the in-memory table, its sync with the store, and the
//! management service used by the CLI and the admin API.

pub mod entry;
pub mod intern;
pub mod service;
pub mod sync;
pub mod table;
pub mod validate;

pub use entry::KeyEntry;
pub use intern::{EntryContext, Interner};
pub use service::KeyService;
pub use table::KeyTable;
