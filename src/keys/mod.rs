//! API keys: the model (declared once), its validation, and at run time the
//! in-memory table and its sync with the store.

pub mod entry;
pub mod hours;
pub mod intern;
pub mod model;
pub mod sync;
pub mod table;
pub mod validate;

pub use entry::KeyEntry;
pub use intern::{EntryContext, Interner};
pub use table::KeyTable;
