//! Leak response: GitHub's secret-scanning partner protocol. GitHub posts
//! the tokens it found in public places; keygate checks the signature, finds
//! its keys among them (by format, checksum and HMAC), revokes or flags them,
//! and answers with GitHub's feedback list. The proxy side (reading the body,
//! answering) is [`crate::proxy::scan`].

pub mod keyring;
pub mod scanner;
pub mod signature;

pub use keyring::Keyring;
pub use scanner::{Feedback, Label, ScanError, Scanner, ScannerParts};
