//! Broadcast to a group of WebSocket connections spread over loops: [`Room`], and the
//! encode-once helpers [`text_frame`] and [`binary_frame`].
//!
//! A broadcast encodes the frame once into [`Bytes`] and queues a reference-counted clone to
//! each member through its [`Handle`] (with [`BROADCAST_TOKEN`], so the member's loop drops it
//! if that connection already sent its Close instead of writing data after it). Membership is a
//! map behind one mutex, taken once per join, leave and broadcast — never on a connection's
//! own per-message path. A room must not hold connection state or do I/O itself; handlers
//! (typically `on_open`/`on_close`, or a chat command) call it, from any loop or thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use herd_proto::ws::{encode_frame, Opcode};

use super::BROADCAST_TOKEN;
use crate::{ConnId, Handle};

/// A server (unmasked) text frame, encoded once for any number of connections.
///
/// ```
/// assert_eq!(&herd_core::ws::text_frame("hi")[..], &[0x81, 2, b'h', b'i']);
/// ```
pub fn text_frame(text: &str) -> Bytes {
    frame(Opcode::Text, text.as_bytes())
}

/// A server (unmasked) binary frame, encoded once for any number of connections.
pub fn binary_frame(data: &[u8]) -> Bytes {
    frame(Opcode::Binary, data)
}

fn frame(opcode: Opcode, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(payload.len() + 10);
    encode_frame(&mut out, true, opcode, payload, None);
    Bytes::from(out)
}

/// A group of connections, possibly on different loops. `Clone` shares the same room.
///
/// ```
/// use herd_core::ws::Room;
///
/// let room = Room::new();
/// assert!(room.is_empty());
/// assert_eq!(room.send_text("nobody hears this"), 0);
/// ```
#[derive(Clone, Default)]
pub struct Room {
    members: Arc<Mutex<HashMap<ConnId, Handle>>>,
}

impl std::fmt::Debug for Room {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Room")
            .field("members", &self.len())
            .finish()
    }
}

impl Room {
    /// An empty room.
    pub fn new() -> Room {
        Room::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ConnId, Handle>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add a connection (usually `cx.handle()` in `on_open`). Returns false if it was in.
    pub fn join(&self, handle: Handle) -> bool {
        self.lock().insert(handle.id(), handle).is_none()
    }

    /// Remove a connection (usually in `on_close`). Returns false if it was not in.
    pub fn leave(&self, id: ConnId) -> bool {
        self.lock().remove(&id).is_some()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the room has no members.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queue an encoded frame (see [`text_frame`]) to every member but `except`; returns how
    /// many it was queued to. Members that closed meanwhile drop it (counted as stale).
    pub fn broadcast_except(&self, frame: &Bytes, except: Option<ConnId>) -> usize {
        let members = self.lock();
        let mut sent = 0;
        for (id, handle) in members.iter() {
            if Some(*id) != except {
                handle.notify(BROADCAST_TOKEN, frame.clone());
                sent += 1;
            }
        }
        sent
    }

    /// Queue an encoded frame to every member.
    pub fn broadcast(&self, frame: &Bytes) -> usize {
        self.broadcast_except(frame, None)
    }

    /// Encode `text` once and send it to every member.
    pub fn send_text(&self, text: &str) -> usize {
        self.broadcast(&text_frame(text))
    }

    /// Encode `data` once and send it to every member.
    pub fn send_binary(&self, data: &[u8]) -> usize {
        self.broadcast(&binary_frame(data))
    }
}
