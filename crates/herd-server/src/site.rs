//! The bundled web page served by an HTTP listener without a `root` (and by admin listeners):
//! a small dashboard about the running server (pids, workers, uptime, counters) that polls
//! [`STATUS_PATH`], which answers with the worker's [`Status`](crate::status::Status) as JSON,
//! and draws charts of the last 15 minutes from [`HISTORY_PATH`] (SVG drawn by the page's own
//! script, no external library).
//!
//! The page is embedded in the binary at build time from `crates/herd-server/site/`. This
//! module only holds the bytes and paths; the HTTP wiring lives in [`crate::protocols`].

/// The dashboard page (`GET /`).
pub const INDEX_HTML: &str = include_str!("../site/index.html");

/// The JSON status endpoint the page polls.
pub const STATUS_PATH: &str = "/api/status";
/// The health check: `200 ok` while the worker serves, `503 draining` once its graceful stop
/// began (for a load balancer's HTTP check).
pub const HEALTH_PATH: &str = "/healthz";

/// The JSON history endpoint the page's charts read (`?since=<ms>` for newer points only).
pub const HISTORY_PATH: &str = "/api/history";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_polls_the_status_endpoint() {
        assert!(INDEX_HTML.starts_with("<!doctype html>"));
        assert!(INDEX_HTML.contains(STATUS_PATH));
        assert!(INDEX_HTML.contains(HISTORY_PATH));
        // Self-contained: no script, style or font from elsewhere.
        assert!(!INDEX_HTML.contains("src=\"http"));
        assert!(!INDEX_HTML.contains("href=\"http"));
    }
}
