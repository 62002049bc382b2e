//! Operating-system specifics: the only place in herd where `unsafe` and `cfg(target_os)` live.
//!
//! Contract every backend meets: `listen` returns a bound, listening, non-blocking std
//! listener (with `SO_REUSEPORT` when asked); `is_fd_exhausted` recognises EMFILE/ENFILE;
//! `is_transient_accept_error` recognises errors after which accepting should simply go on
//! (the peer gave up before we accepted); the rlimit helpers read and set RLIMIT_NOFILE.
//! Every `unsafe` block carries a `// SAFETY:` line.

mod process;
mod unix;

pub use process::*;
pub use unix::*;
