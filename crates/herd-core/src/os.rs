//! The operating-system helpers herd-core shares with other crates: a curated, minimal window
//! onto its private `sys` module, whose other functions serve herd-core alone.
//!
//! Each item is here for one caller:
//! - [`listen`]: the `herd` server's master binds every listening socket itself, before its
//!   workers exist (they inherit the sockets), and gives them the options a [`Server`] gives
//!   its own: `SO_REUSEADDR`, `SO_REUSEPORT` when asked, IPv6-only for IPv6 addresses,
//!   non-blocking, close-on-exec.
//! - [`set_nofile_limit`]: the accept loop's back-off on EMFILE can only be reached from a test
//!   by lowering the process's descriptor limit (tests/limits.rs at the repository root).
//!
//! [`Server`]: crate::Server

pub use crate::sys::{listen, set_nofile_limit};
