//! permessage-deflate on the loop: where the compression contexts of a connection live.
//!
//! herd-proto's [`deflate`](herd_proto::ws::deflate) negotiates and (de)compresses; this module
//! decides who owns the contexts. A connection whose parameters reset a context after every
//! message (`server_no_context_takeover` for sending, `client_no_context_takeover` for
//! receiving: both are the default of [`DeflateConfig`]) borrows one shared by every
//! connection of its loop thread, so an idle connection holds no compression memory at all. A
//! connection that keeps its window across messages ("context takeover") owns its context,
//! created on its first compressed message and dropped with the connection: about 256 KiB
//! for a compressor at 15 window bits and 39 KiB for a decompressor.
//!
//! Called by the WebSocket codec ([`RxDeflate`], receiving) and server ([`TxDeflate`],
//! sending) of the same loop; it never does I/O.

use std::cell::RefCell;

use herd_proto::ws::deflate::{DeflateConfig, DeflateParams, Deflater, Inflater};
use herd_proto::ws::WsError;

thread_local! {
    /// The loop's shared decompressor (reset after every message).
    static SHARED_INFLATER: RefCell<Option<Inflater>> = const { RefCell::new(None) };
    /// The loop's shared compressors, one per (window bits, level) in use (reset after every
    /// message).
    static SHARED_DEFLATERS: RefCell<Vec<((u8, u32), Deflater)>> = const { RefCell::new(Vec::new()) };
    /// Scratch for one outgoing compressed payload, reused.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The scratch buffer keeps at most this much capacity between messages.
const SCRATCH_RETAINED: usize = 64 * 1024;

/// The receive side of a connection that negotiated permessage-deflate.
#[derive(Debug)]
pub(crate) struct RxDeflate {
    /// The connection's own decompressor (context takeover), once it is needed.
    own: Option<Inflater>,
    /// The client resets its window per message: use the loop's shared decompressor.
    shared: bool,
}

impl RxDeflate {
    pub(crate) fn new(params: &DeflateParams) -> Self {
        RxDeflate {
            own: None,
            shared: params.client_no_context_takeover,
        }
    }

    /// Inflates one compressed message into a new buffer, within `max` bytes.
    pub(crate) fn inflate(&mut self, data: &[u8], max: u64) -> Result<Vec<u8>, WsError> {
        let mut out = Vec::new();
        if self.shared {
            SHARED_INFLATER.with(|cell| {
                let mut slot = cell.borrow_mut();
                let inflater = slot.get_or_insert_with(|| Inflater::new(true));
                let res = inflater.inflate(data, max, &mut out);
                if res.is_err() {
                    // A failed stream may leave the context mid-block: start the next clean.
                    *slot = None;
                }
                res
            })?;
        } else {
            self.own
                .get_or_insert_with(|| Inflater::new(false))
                .inflate(data, max, &mut out)?;
        }
        Ok(out)
    }
}

/// Compresses `payload` as one whole message from an empty window with this thread's shared
/// compressor for (`bits`, `level`), appending to `out`.
pub(crate) fn deflate_shared(bits: u8, level: u32, payload: &[u8], out: &mut Vec<u8>) {
    let key = (bits, level);
    SHARED_DEFLATERS.with(|cell| {
        let mut all = cell.borrow_mut();
        let at = match all.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                all.push((key, Deflater::new(level, bits, true)));
                all.len() - 1
            }
        };
        all[at].1.deflate(payload, out);
    });
}

/// The parameters under which one compressed broadcast frame suits a connection: members of a
/// [`Room`](super::Room) with the same key share one compression of each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct BroadcastKey {
    pub(crate) bits: u8,
    pub(crate) level: u32,
    pub(crate) threshold: usize,
}

/// The send side of a connection that negotiated permessage-deflate.
#[derive(Debug)]
pub(crate) struct TxDeflate {
    /// The connection's own compressor (context takeover), once it is needed.
    own: Option<Deflater>,
    bits: u8,
    level: u32,
    threshold: usize,
    shared: bool,
}

impl TxDeflate {
    pub(crate) fn new(params: &DeflateParams, cfg: &DeflateConfig) -> Self {
        TxDeflate {
            own: None,
            bits: params.server_max_window_bits,
            level: cfg.level.min(9),
            threshold: cfg.threshold,
            shared: params.server_no_context_takeover,
        }
    }

    /// How a broadcast reaches this connection compressed: its parameters when its compressor
    /// resets per message (any such stream decodes on its side), `None` with context
    /// takeover (a message compressed elsewhere would desynchronise the windows: send plain).
    pub(crate) fn broadcast_key(&self) -> Option<BroadcastKey> {
        self.shared.then_some(BroadcastKey {
            bits: self.bits,
            level: self.level,
            threshold: self.threshold,
        })
    }

    /// Whether a message of `len` bytes is sent compressed.
    pub(crate) fn wants(&self, len: usize) -> bool {
        len >= self.threshold
    }

    /// Compresses `payload` and hands the compressed bytes to `f` (which frames them).
    pub(crate) fn with_compressed<R>(&mut self, payload: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
        SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            buf.clear();
            if self.shared {
                deflate_shared(self.bits, self.level, payload, &mut buf);
            } else {
                let (level, bits) = (self.level, self.bits);
                self.own
                    .get_or_insert_with(|| Deflater::new(level, bits, false))
                    .deflate(payload, &mut buf);
            }
            let r = f(&buf);
            if buf.capacity() > SCRATCH_RETAINED {
                *buf = Vec::new();
            }
            r
        })
    }
}
