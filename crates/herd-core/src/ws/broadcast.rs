//! Broadcast to a group of WebSocket connections spread over loops: [`Room`], its [`Member`]s,
//! and the encode-once helpers [`text_frame`] and [`binary_frame`].
//!
//! A broadcast encodes the frame once into [`Bytes`] and queues a reference-counted clone to
//! each member through its [`Handle`] (with [`BROADCAST_TOKEN`], so the member's loop drops it
//! if that connection already sent its Close instead of writing data after it). With
//! permessage-deflate, [`Room::send_text`] and [`Room::send_binary`] compress a message once
//! per distinct parameter set among the members (window bits, level, threshold: in practice
//! once, since a service has one configuration) and send that one compressed frame to every
//! member whose compressor resets per message; members without the extension, or that keep
//! their compression context across messages, get the plain frame (a stream compressed
//! elsewhere would put their two windows out of step). Membership is a map behind one mutex,
//! taken once per join, leave and broadcast (compression happens outside it) — never on a
//! connection's own per-message path. A room must not hold connection state or do I/O itself;
//! handlers (typically `on_open`/`on_close`, or a chat command) call it, from any loop or
//! thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use herd_proto::ws::{encode_frame, encode_frame_rsv, Opcode};

use super::deflate::{deflate_shared, BroadcastKey};
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

/// The frame for members with `key`: compressed (RSV1) when the message reaches the key's
/// threshold, else `None` (send the plain frame).
fn compressed_frame(key: BroadcastKey, opcode: Opcode, payload: &[u8]) -> Option<Bytes> {
    if payload.len() < key.threshold {
        return None;
    }
    let mut packed = Vec::new();
    deflate_shared(key.bits, key.level, payload, &mut packed);
    let mut out = Vec::with_capacity(packed.len() + 10);
    encode_frame_rsv(&mut out, true, 0b100, opcode, &packed, None);
    Some(Bytes::from(out))
}

/// A connection as a [`Room`] holds it: its [`Handle`], and how a broadcast may reach it
/// compressed. [`WsConn::member`](super::WsConn::member) gives the full one; a bare `Handle`
/// converts into a member that always gets plain frames.
#[derive(Clone)]
pub struct Member {
    handle: Handle,
    deflate: Option<BroadcastKey>,
}

impl Member {
    pub(crate) fn new(handle: Handle, deflate: Option<BroadcastKey>) -> Member {
        Member { handle, deflate }
    }

    /// The member's connection id.
    pub fn id(&self) -> ConnId {
        self.handle.id()
    }

    /// Whether broadcasts may reach this member compressed.
    pub fn compressed(&self) -> bool {
        self.deflate.is_some()
    }
}

impl From<Handle> for Member {
    fn from(handle: Handle) -> Member {
        Member::new(handle, None)
    }
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.id())
            .field("compressed", &self.compressed())
            .finish()
    }
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
    members: Arc<Mutex<HashMap<ConnId, Member>>>,
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

    fn lock(&self) -> MutexGuard<'_, HashMap<ConnId, Member>> {
        self.members.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add a connection: `cx.member()` in `on_open` (broadcasts then reach it compressed if it
    /// negotiated permessage-deflate), or a bare `cx.handle()` (always plain). Returns false if
    /// it was in.
    pub fn join(&self, member: impl Into<Member>) -> bool {
        let member = member.into();
        self.lock().insert(member.id(), member).is_none()
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

    /// Queue an encoded frame (see [`text_frame`]) to every member but `except`, as it is (so
    /// uncompressed); returns how many it was queued to. Members that closed meanwhile drop it
    /// (counted as stale).
    pub fn broadcast_except(&self, frame: &Bytes, except: Option<ConnId>) -> usize {
        let members = self.lock();
        let mut sent = 0;
        for (id, m) in members.iter() {
            if Some(*id) != except {
                m.handle.notify(BROADCAST_TOKEN, frame.clone());
                sent += 1;
            }
        }
        sent
    }

    /// Queue an encoded frame to every member.
    pub fn broadcast(&self, frame: &Bytes) -> usize {
        self.broadcast_except(frame, None)
    }

    /// Send `text` to every member but `except`: encoded once plain, and compressed once per
    /// distinct parameter set of the members that take compressed broadcasts.
    pub fn send_text_except(&self, text: &str, except: Option<ConnId>) -> usize {
        self.send_except(Opcode::Text, text.as_bytes(), except)
    }

    /// Send `data` to every member but `except` (see [`send_text_except`](Self::send_text_except)).
    pub fn send_binary_except(&self, data: &[u8], except: Option<ConnId>) -> usize {
        self.send_except(Opcode::Binary, data, except)
    }

    /// Send `text` to every member (see [`send_text_except`](Self::send_text_except)).
    pub fn send_text(&self, text: &str) -> usize {
        self.send_text_except(text, None)
    }

    /// Send `data` to every member (see [`send_text_except`](Self::send_text_except)).
    pub fn send_binary(&self, data: &[u8]) -> usize {
        self.send_binary_except(data, None)
    }

    fn send_except(&self, opcode: Opcode, payload: &[u8], except: Option<ConnId>) -> usize {
        // The distinct keys first, then compress outside the lock, then queue. A member that
        // joined in between with a key not compressed here gets the plain frame.
        let mut keys: Vec<BroadcastKey> = Vec::new();
        for m in self.lock().values() {
            if let Some(k) = m.deflate {
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        let packed: Vec<(BroadcastKey, Option<Bytes>)> = keys
            .into_iter()
            .map(|k| (k, compressed_frame(k, opcode, payload)))
            .collect();
        let plain = frame(opcode, payload);
        let members = self.lock();
        let mut sent = 0;
        for (id, m) in members.iter() {
            if Some(*id) == except {
                continue;
            }
            let f = m
                .deflate
                .and_then(|k| packed.iter().find(|(pk, _)| *pk == k))
                .and_then(|(_, f)| f.as_ref())
                .unwrap_or(&plain);
            m.handle.notify(BROADCAST_TOKEN, f.clone());
            sent += 1;
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herd_proto::ws::deflate::Inflater;

    #[test]
    fn a_compressed_broadcast_frame_inflates_to_the_message_and_respects_the_threshold() {
        let key = BroadcastKey {
            bits: 15,
            level: 1,
            threshold: 64,
        };
        let text = "herd broadcasts this line once. ".repeat(40);
        let f = compressed_frame(key, Opcode::Text, text.as_bytes()).unwrap();
        // FIN + RSV1 + text, a 7-bit length (1280 bytes shrink below 126), the payload.
        assert_eq!(f[0], 0xC1);
        let len = f[1] as usize;
        assert!(len < 126 && f.len() == 2 + len, "{len}");
        let mut out = Vec::new();
        Inflater::new(true)
            .inflate(&f[2..], 1 << 20, &mut out)
            .unwrap();
        assert_eq!(out, text.as_bytes());
        assert!(compressed_frame(key, Opcode::Text, b"short").is_none());
    }
}
