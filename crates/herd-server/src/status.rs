//! The worker's status snapshot: who is serving (master and worker pids, slot, generation),
//! since when, and the counters of each listener, as JSON for the bundled site's
//! `/api/status` endpoint.
//!
//! The worker's main thread refreshes the snapshot about once a second (asking its loops for
//! counters through herd-core); handlers only read it, under a mutex touched once per status
//! request, never per message. Each refresh is also published to [`SharedStatus`], a file the
//! master creates (unlinked at once) and every worker inherits, one fixed-size record per
//! slot; the status endpoint reads the other workers' records from it and adds the totals over
//! all workers of the current generation, so the page no longer depends on which worker
//! answered. This module starts nothing.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Counters of one listener in this worker (or, in [`Totals`], in all workers).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
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
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
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
    /// The counters summed over every worker of this generation that published a snapshot in
    /// the last [`FRESH_MS`] (filled in by [`StatusBoard::json`] where workers share status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totals: Option<Totals>,
}

/// Counters over all workers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Totals {
    /// Workers whose snapshot went into the sums (the answering one included).
    pub workers_reporting: usize,
    /// Per-listener sums, by listener name, in the answering worker's order.
    pub listeners: Vec<ListenerStatus>,
}

/// A worker's published snapshot counts in the totals while it is younger than this.
pub const FRESH_MS: u64 = 5_000;

/// Bytes reserved per slot in the [`SharedStatus`] file (an 8-byte length, then JSON).
const RECORD: u64 = 16 * 1024;
/// Slots beyond this are not published (the configuration allows at most 1,024 workers).
const MAX_SLOTS: usize = 1024;

/// Worker snapshots shared between processes through one file: record `slot` at offset
/// `slot * 16 KiB` holds that worker's latest snapshot as length-prefixed JSON. Writers use one
/// positioned write per snapshot; a reader that catches a write half-done gets JSON that does
/// not parse and skips that worker for that one request.
#[derive(Debug)]
pub struct SharedStatus {
    file: File,
}

impl SharedStatus {
    /// A fresh shared file: created in the temporary directory and unlinked at once, so it
    /// lives exactly as long as some process holds its descriptor.
    pub fn create() -> io::Result<SharedStatus> {
        let path =
            std::env::temp_dir().join(format!("herd-status-{}-{}", std::process::id(), unix_ms()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(SharedStatus { file })
    }

    /// Wrap a descriptor inherited from the master.
    pub fn from_file(file: File) -> SharedStatus {
        SharedStatus { file }
    }

    /// The file, to pass its descriptor to workers.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Publish `s` as the record of its slot. A snapshot too large for a record (hundreds of
    /// listeners) is not published; the totals then lack that worker.
    pub fn publish(&self, s: &Status) -> io::Result<()> {
        let json = s.to_json();
        if s.worker_slot >= MAX_SLOTS || json.len() as u64 + 8 > RECORD {
            return Ok(());
        }
        let mut rec = Vec::with_capacity(json.len() + 8);
        rec.extend_from_slice(&(json.len() as u64).to_le_bytes());
        rec.extend_from_slice(json.as_bytes());
        self.file.write_all_at(&rec, s.worker_slot as u64 * RECORD)
    }

    /// The records of slots `0..slots` that hold a readable snapshot.
    pub fn read(&self, slots: usize) -> Vec<Status> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; RECORD as usize];
        for slot in 0..slots.min(MAX_SLOTS) {
            let Ok(n) = self.file.read_at(&mut buf, slot as u64 * RECORD) else {
                continue;
            };
            if n < 8 {
                continue;
            }
            let len = u64::from_le_bytes(buf[..8].try_into().unwrap_or([0; 8])) as usize;
            if len == 0 || 8 + len > n {
                continue;
            }
            if let Ok(s) = serde_json::from_slice::<Status>(&buf[8..8 + len]) {
                if s.worker_slot == slot {
                    out.push(s);
                }
            }
        }
        out
    }
}

/// The totals over `mine` and the fresh snapshots of other workers of the same generation.
fn totals(mine: &Status, others: &[Status]) -> Totals {
    let mut sums: Vec<ListenerStatus> = mine.listeners.clone();
    let mut reporting = 1;
    for o in others {
        let fresh = mine.now_ms.saturating_sub(o.now_ms) < FRESH_MS;
        if o.worker_slot == mine.worker_slot || o.generation != mine.generation || !fresh {
            continue;
        }
        reporting += 1;
        for l in &o.listeners {
            match sums.iter_mut().find(|s| s.name == l.name) {
                Some(s) => {
                    s.open += l.open;
                    s.accepted += l.accepted;
                    s.bytes_in += l.bytes_in;
                    s.bytes_out += l.bytes_out;
                    s.msgs_in += l.msgs_in;
                    s.msgs_out += l.msgs_out;
                }
                None => sums.push(l.clone()),
            }
        }
    }
    Totals {
        workers_reporting: reporting,
        listeners: sums,
    }
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

/// The shared, refreshed snapshot (and, where workers share status, the file it is published
/// to).
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    snapshot: Arc<Mutex<Status>>,
    shared: Option<Arc<SharedStatus>>,
}

impl StatusBoard {
    /// A board holding `s`.
    pub fn new(s: Status) -> StatusBoard {
        StatusBoard {
            snapshot: Arc::new(Mutex::new(s)),
            shared: None,
        }
    }

    /// This board also publishes every update to `shared` and reads the others' from it.
    pub fn with_shared(mut self, shared: SharedStatus) -> StatusBoard {
        self.shared = Some(Arc::new(shared));
        self
    }

    /// A copy of the current snapshot.
    pub fn get(&self) -> Status {
        self.snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Change the snapshot (and publish it).
    pub fn update(&self, f: impl FnOnce(&mut Status)) {
        let mut s = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s);
        if let Some(shared) = &self.shared {
            if let Err(e) = shared.publish(&s) {
                tracing::debug!("cannot publish the status snapshot: {e}");
            }
        }
    }

    /// The snapshot as JSON for the status endpoint, with the totals over all workers when
    /// workers share status.
    pub fn json(&self) -> String {
        let mut s = self.get();
        if let Some(shared) = &self.shared {
            let others = shared.read(s.workers.max(s.worker_slot + 1));
            s.totals = Some(totals(&s, &others));
        }
        s.to_json()
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

    fn snapshot(slot: usize, generation: u64, now_ms: u64, accepted: u64) -> Status {
        Status {
            worker_slot: slot,
            generation,
            workers: 3,
            now_ms,
            listeners: vec![ListenerStatus {
                name: "site".into(),
                accepted,
                msgs_in: accepted * 10,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    /// Records round-trip through the shared file by slot; an empty slot and a record
    /// overwritten with garbage are skipped.
    #[test]
    fn shared_file_round_trips_records_by_slot() {
        let shared = SharedStatus::create().unwrap();
        shared.publish(&snapshot(0, 1, 1_000, 5)).unwrap();
        shared.publish(&snapshot(2, 1, 1_000, 7)).unwrap();
        let got = shared.read(3);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].worker_slot, got[1].worker_slot), (0, 2));
        assert_eq!(got[1].listeners[0].accepted, 7);
        // A later, shorter snapshot replaces the record whole.
        shared.publish(&snapshot(2, 1, 2_000, 1)).unwrap();
        assert_eq!(shared.read(3)[1].listeners[0].accepted, 1);
        // A torn record (valid length, broken JSON) does not parse and is skipped.
        shared
            .file()
            .write_all_at(b"\x05\0\0\0\0\0\0\0{\"wo", 0)
            .unwrap();
        let got = shared.read(3);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].worker_slot, 2);
    }

    /// Totals add the fresh snapshots of the same generation and nothing else.
    #[test]
    fn totals_sum_fresh_workers_of_this_generation() {
        let mine = snapshot(0, 2, 10_000, 5);
        let others = [
            snapshot(0, 2, 10_000, 100),          // my own record: not counted twice
            snapshot(1, 2, 9_000, 7),             // fresh, same generation
            snapshot(2, 1, 10_000, 50),           // an old generation's worker, draining
            snapshot(3, 2, 10_000 - FRESH_MS, 9), // stale: a worker that died
        ];
        let t = totals(&mine, &others);
        assert_eq!(t.workers_reporting, 2);
        assert_eq!(t.listeners.len(), 1);
        assert_eq!(t.listeners[0].accepted, 12);
        assert_eq!(t.listeners[0].msgs_in, 120);

        let board = StatusBoard::new(mine).with_shared(SharedStatus::create().unwrap());
        board.update(|_| {});
        let json: serde_json::Value = serde_json::from_str(&board.json()).unwrap();
        assert_eq!(json["totals"]["workers_reporting"], 1);
        assert_eq!(json["totals"]["listeners"][0]["accepted"], 5);
    }
}
