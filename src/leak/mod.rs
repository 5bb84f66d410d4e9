//! Leak response: GitHub's secret-scanning partner protocol. GitHub posts
//! the tokens it found in public places; keygate checks the signature, finds
//! its keys among them (by format, checksum and HMAC), revokes or flags them,
//! and answers with GitHub's feedback list.

pub mod signature;
