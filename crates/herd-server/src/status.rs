//! The worker's status snapshot: who is serving (master and worker pids, slot, generation),
//! since when, and the counters of each listener, as JSON for the bundled site's
//! `/api/status` endpoint.
//!
//! The worker's main thread refreshes the snapshot about once a second (asking its loops for
//! counters through herd-core); handlers only read it, under a mutex touched once per status
//! request, never per message. Counters are this worker's own: the page says which worker
//! answered. This module starts nothing.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Counters of one listener in this worker.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ListenerStatus {
    /// The listener's name.
    pub name: String,
    /// Its configured address.
    pub bind: String,
    /// Its protocol.
    pub protocol: String,
    /// Connections currently open.
    pub open: u64,
    /// Connections accepted so far.
    pub accepted: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Messages (requests, frames, lines) decoded.
    pub msgs_in: u64,
    /// Messages sent.
    pub msgs_out: u64,
}

/// A snapshot of this worker.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Status {
    /// herd's version.
    pub version: String,
    /// The master's pid.
    pub master_pid: i32,
    /// This worker's pid.
    pub worker_pid: u32,
    /// This worker's slot (0-based).
    pub worker_slot: usize,
    /// Configuration generation (bumped by every reload).
    pub generation: u64,
    /// Number of worker processes.
    pub workers: usize,
    /// When the master started (ms since the epoch).
    pub master_started_ms: u64,
    /// When this worker started (ms since the epoch).
    pub worker_started_ms: u64,
    /// When this snapshot was taken (ms since the epoch).
    pub now_ms: u64,
    /// Where the site's WebSocket echo is served (`None`: not in this build or turned off;
    /// the page then hides its WebSocket section).
    pub ws_path: Option<String>,
    /// Per-listener counters.
    pub listeners: Vec<ListenerStatus>,
}

impl Status {
    /// The snapshot as JSON.
    ///
    /// ```
    /// let s = herd_server::status::Status { worker_slot: 2, ..Default::default() };
    /// assert!(s.to_json().contains("\"worker_slot\":2"));
    /// ```
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The shared, refreshed snapshot.
#[derive(Debug, Clone, Default)]
pub struct StatusBoard(Arc<Mutex<Status>>);

impl StatusBoard {
    /// A board holding `s`.
    pub fn new(s: Status) -> StatusBoard {
        StatusBoard(Arc::new(Mutex::new(s)))
    }

    /// A copy of the current snapshot.
    pub fn get(&self) -> Status {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Change the snapshot.
    pub fn update(&self, f: impl FnOnce(&mut Status)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_updates_are_seen_by_clones() {
        let b = StatusBoard::default();
        let c = b.clone();
        b.update(|s| {
            s.listeners.push(ListenerStatus {
                name: "site".into(),
                accepted: 3,
                ..Default::default()
            })
        });
        assert_eq!(c.get().listeners[0].accepted, 3);
        let json: serde_json::Value = serde_json::from_str(&c.get().to_json()).unwrap();
        assert_eq!(json["listeners"][0]["name"], "site");
        assert!(unix_ms() > 1_600_000_000_000);
    }
}
