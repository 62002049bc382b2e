//! Operating-system specifics of the `herd` server: the only place in herd-server where
//! `unsafe` lives.
//!
//! Contract: every libc call the multi-process server makes beyond std is wrapped here as a
//! small safe function, and each `unsafe` block carries a `// SAFETY:` line. `fork` refuses to
//! run in a process with more than one thread; `spawn_inheriting` starts a child that inherits
//! exactly the listed descriptors, with chosen signals blocked and an optional parent-death
//! signal; `take_inherited_fd` hands each inherited descriptor out at most once; `kill` and
//! `process_exists` address exactly one process (a pid `<= 0`, which would mean a process
//! group, is refused); the user and group look-ups are the reentrant `get*nam_r`. Policy (when
//! to fork, what a signal means) belongs to the modules that call these, never to this one.
//! The module is private; the few items other crates need are re-exported where they belong
//! ([`crate::signals`], the crate root).

mod process;

pub use process::*;
