//! The bundled web page served by an HTTP listener without a `root`: a small dashboard about
//! the running server (pids, workers, uptime, counters) that polls [`STATUS_PATH`], which
//! answers with the worker's [`Status`](crate::status::Status) as JSON.
//!
//! The page is embedded in the binary at build time from `crates/herd-server/site/`. This
//! module only holds the bytes and paths; the HTTP wiring lives in [`crate::protocols`].

/// The dashboard page (`GET /`).
pub const INDEX_HTML: &str = include_str!("../site/index.html");

/// The JSON status endpoint the page polls.
pub const STATUS_PATH: &str = "/api/status";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_polls_the_status_endpoint() {
        assert!(INDEX_HTML.starts_with("<!doctype html>"));
        assert!(INDEX_HTML.contains(STATUS_PATH));
    }
}
