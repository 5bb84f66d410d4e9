//! Pure authentication and authorization policy: key format, hashing, scopes,
//! client IP and CIDR checks. No I/O.

pub mod client_ip;
pub mod decide;
pub mod hash;
pub mod key;
pub mod scope;
