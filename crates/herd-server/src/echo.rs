//! The built-in line echo service: every `\n`-terminated line comes back, `\n`-terminated.
//!
//! It is the simplest listener protocol (`protocol = "echo"`), handy as a health probe and as
//! the protocol of the server's process-level tests. Started by [`crate::protocols::start`];
//! it knows nothing about processes or configuration.

use std::time::{Duration, Instant};

use herd_core::codec::LinesCodec;
use herd_core::{Conn, Handler};

/// Largest echo line unless `max_frame` says otherwise.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// A fresh connection that has not been answered yet counts as in flight for this long during
/// a graceful stop (its first line is probably on the way).
const FRESH_GRACE: Duration = Duration::from_secs(2);

/// The line echo service: every `\n`-terminated line comes back, `\n`-terminated.
///
/// During a graceful stop a connection is in flight while it holds part of a line, while its
/// reply is unsent, and for a short while after it was accepted if it has sent nothing yet, so
/// a client that connected just before the stop still gets its answer.
pub struct Echo {
    max_line: usize,
}

/// Per-connection state of [`Echo`].
pub struct EchoState {
    opened: Instant,
    answered: bool,
}

impl Echo {
    /// Echo lines of at most `max_line` bytes (longer ones close the connection).
    pub fn new(max_line: usize) -> Echo {
        Echo { max_line }
    }
}

impl Handler for Echo {
    type State = EchoState;
    type Codec = LinesCodec;

    fn new_codec(&mut self) -> LinesCodec {
        LinesCodec::new(self.max_line)
    }

    fn on_open(&mut self, _cx: &mut Conn<'_, Self>) -> Option<EchoState> {
        Some(EchoState {
            opened: Instant::now(),
            answered: false,
        })
    }

    fn on_message(&mut self, cx: &mut Conn<'_, Self>, st: &mut EchoState, line: &[u8]) {
        cx.send(line);
        st.answered = true;
    }

    fn is_busy(&self, st: &EchoState) -> bool {
        !st.answered && st.opened.elapsed() < FRESH_GRACE
    }
}
