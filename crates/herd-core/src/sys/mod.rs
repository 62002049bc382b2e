//! Operating-system specifics of the event-loop layer: the only place in herd-core where
//! `unsafe` and `cfg(target_os)` live (process control is herd-server's, in its own `sys`).
//!
//! Contract every backend meets: `listen` returns a bound, listening, non-blocking std
//! listener (with `SO_REUSEPORT` when asked); `is_fd_exhausted` recognises EMFILE/ENFILE;
//! `is_transient_accept_error` recognises errors after which accepting should simply go on
//! (the peer gave up before we accepted); the rlimit helpers read and set RLIMIT_NOFILE;
//! `recv`, `send` and `sendfile` move bytes between a connected socket and memory or a file;
//! `open_beneath` opens a file without leaving its directory; `monotonic_us` reads the
//! system-wide monotonic clock; `memory_file` makes an anonymous memory file and `SharedWords`
//! maps one as atomic words shared between processes (the rate-limit table). Every `unsafe`
//! block carries a `// SAFETY:` line.

mod unix;

pub use unix::*;
