//! The `herd` server (stub).
#![forbid(unsafe_code)]

/// Run the server binary.
pub fn main() {}
