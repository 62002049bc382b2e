//! One connection's record on its loop: the transport, the codec, the lifecycle, the receive
//! and send sides, and its idle bookkeeping.
//!
//! Its fields are private: the loop (`event_loop`) and the handler context
//! ([`Conn`](crate::Conn)) go through these methods, which keep the parts consistent (output
//! is refused once closing; a close drops what was queued). The parts themselves
//! ([`Lifecycle`], [`Rx`], [`Tx`], [`Transport`]) own their data and their rules.

use std::io;
use std::net::SocketAddr;

use super::lifecycle::Lifecycle;
use super::rx::Rx;
use super::services::Marks;
use super::transport::Transport;
use super::tx::Tx;
use crate::buf::BufPool;
use crate::id::ConnId;
use crate::reason::CloseReason;
use crate::stats::Stats;
use crate::timer::TimerId;

/// Minimum spare room when reading into a connection's own buffer.
const READ_CHUNK: usize = 16 * 1024;

/// A connection's record (everything but the handler's state).
pub(crate) struct Connection<C> {
    transport: Transport,
    id: ConnId,
    peer: SocketAddr,
    codec: C,
    life: Lifecycle,
    rx: Rx,
    tx: Tx,
    /// Loop time when the connection was accepted.
    opened_at: u64,
    /// Loop time of the last read that returned data.
    last_active: u64,
    idle_timer: Option<TimerId>,
    /// Output waiting for the peer: since when no byte was taken ([`Options::send_timeout`]).
    ///
    /// [`Options::send_timeout`]: crate::Options::send_timeout
    send_wait: SendWait,
    /// The loop's list membership (dirty, read-more): its bookkeeping, kept here for O(1).
    marks: Marks,
    /// The PROXY protocol stage, on listeners that expect a header (boxed: one pointer on
    /// connections without it).
    proxy: Option<Box<ProxyState>>,
}

/// The send timeout's bookkeeping: whether output is left waiting for the peer, the loop time
/// the peer last took a byte (or the output started waiting), and whether a timer is armed.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SendWait {
    pub(crate) waiting: bool,
    pub(crate) since: u64,
    pub(crate) armed: bool,
    /// When the output started waiting (for `send_min_rate`), and bytes taken since.
    pub(crate) start: u64,
    pub(crate) taken: u64,
}

/// What the PROXY protocol stage knows about a connection.
pub(crate) struct ProxyState {
    /// The socket's peer (the balancer).
    socket_peer: SocketAddr,
    /// The header, once read.
    header: Option<herd_proto::proxy::ProxyHeader>,
    /// The header's client address was counted against `max_connections_per_ip`.
    ip_admitted: bool,
}

/// The outcome of one read from the transport.
pub(crate) struct Recv {
    /// The read's result: bytes read (0 at end of stream) or the error.
    pub(crate) result: io::Result<usize>,
    /// How much room the read had: a read that filled it may have left data behind.
    pub(crate) room: usize,
    /// The bytes went into the caller's scratch buffer (not the connection's own).
    pub(crate) into_scratch: bool,
}

impl<C> Connection<C> {
    /// A newly accepted connection, open, with nothing read or queued.
    pub(crate) fn new(
        transport: Transport,
        id: ConnId,
        peer: SocketAddr,
        codec: C,
        now: u64,
    ) -> Self {
        Connection {
            transport,
            id,
            peer,
            codec,
            life: Lifecycle::Open,
            rx: Rx::default(),
            tx: Tx::default(),
            opened_at: now,
            last_active: now,
            idle_timer: None,
            send_wait: SendWait::default(),
            marks: Marks::default(),
            proxy: None,
        }
    }

    /// Wait for a PROXY protocol header before anything else is read.
    #[cold]
    pub(crate) fn expect_proxy(&mut self) {
        self.proxy = Some(Box::new(ProxyState {
            socket_peer: self.peer,
            header: None,
            ip_admitted: false,
        }));
    }

    /// The PROXY header is expected and has not been read yet.
    #[inline(always)]
    pub(crate) fn awaiting_proxy(&self) -> bool {
        matches!(&self.proxy, Some(p) if p.header.is_none())
    }

    /// The PROXY header was read: its client address becomes the peer (a `LOCAL` or
    /// `UNKNOWN` header keeps the socket's); `ip_admitted` says whether that address was
    /// counted against the per-IP limit (and must be released at close).
    #[cold]
    pub(crate) fn set_proxy_header(
        &mut self,
        header: herd_proto::proxy::ProxyHeader,
        ip_admitted: bool,
    ) {
        if let Some(src) = header.source() {
            self.peer = src;
        }
        if let Some(p) = self.proxy.as_mut() {
            p.header = Some(header);
            p.ip_admitted = ip_admitted;
        }
    }

    /// The PROXY header, once read.
    pub(crate) fn proxy_header(&self) -> Option<&herd_proto::proxy::ProxyHeader> {
        self.proxy.as_ref().and_then(|p| p.header.as_ref())
    }

    /// The socket's own peer address (the balancer's, behind the PROXY protocol).
    pub(crate) fn socket_peer(&self) -> SocketAddr {
        self.proxy.as_ref().map_or(self.peer, |p| p.socket_peer)
    }

    /// The address counted against `max_connections_per_ip` for this connection, if any.
    #[inline]
    pub(crate) fn admitted_ip(&self) -> Option<std::net::IpAddr> {
        match &self.proxy {
            None => Some(self.peer.ip()),
            Some(p) if p.ip_admitted => Some(self.peer.ip()),
            Some(_) => None,
        }
    }

    /// This connection's id.
    #[inline]
    pub(crate) fn id(&self) -> ConnId {
        self.id
    }

    /// The peer's address.
    #[inline]
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Its slot on the loop.
    #[inline]
    pub(crate) fn slot(&self) -> usize {
        self.id.slot()
    }

    /// Where the connection is in its life.
    #[inline]
    pub(crate) fn life(&self) -> Lifecycle {
        self.life
    }

    /// Output is still taken (not closing).
    #[inline]
    pub(crate) fn accepts_output(&self) -> bool {
        self.life.accepts_output()
    }

    /// Open with nothing queued and no half-close pending: output written to the transport
    /// now goes out in order.
    #[inline]
    pub(crate) fn idle_output(&self) -> bool {
        self.life.is_open() && self.tx.is_idle()
    }

    /// Start closing; queued output is dropped. Returns true if this started the close.
    pub(crate) fn close(&mut self, reason: CloseReason) -> bool {
        if self.life.close(reason) {
            self.tx.discard();
            return true;
        }
        false
    }

    /// Close once the output is written. Returns true if this started the drain.
    pub(crate) fn drain(&mut self, reason: CloseReason) -> bool {
        self.life.drain(reason)
    }

    /// A drain's output is written: shut down the write side and linger (see
    /// [`Lifecycle::Lingering`]). False if the connection was not draining.
    pub(crate) fn linger(&mut self) -> bool {
        if !self.life.linger() {
            return false;
        }
        self.transport.shutdown_write();
        true
    }

    /// The codec.
    #[inline]
    pub(crate) fn codec(&self) -> &C {
        &self.codec
    }

    /// The codec, to decode with or to switch its mode (e.g. an HTTP upgrade).
    #[inline]
    pub(crate) fn codec_mut(&mut self) -> &mut C {
        &mut self.codec
    }

    /// The receive side.
    #[inline]
    pub(crate) fn rx(&self) -> &Rx {
        &self.rx
    }

    /// The receive side, to change its pause reasons or buffer.
    #[inline]
    pub(crate) fn rx_mut(&mut self) -> &mut Rx {
        &mut self.rx
    }

    /// The send side.
    #[inline]
    pub(crate) fn tx(&self) -> &Tx {
        &self.tx
    }

    /// The send side, to queue output.
    #[inline]
    pub(crate) fn tx_mut(&mut self) -> &mut Tx {
        &mut self.tx
    }

    /// The send side with the codec beside it (an encoder writes into the output buffer).
    #[inline]
    pub(crate) fn tx_and_codec(&mut self) -> (&mut Tx, &mut C) {
        (&mut self.tx, &mut self.codec)
    }

    /// The send side with the transport under it, to flush.
    #[inline]
    pub(crate) fn tx_and_transport(&mut self) -> (&mut Tx, &mut Transport) {
        (&mut self.tx, &mut self.transport)
    }

    /// Output is waiting: queued here, or sealed in the transport and not yet written.
    #[inline]
    pub(crate) fn has_output(&self) -> bool {
        self.tx.has_output() || self.transport.has_pending()
    }

    /// The transport, shared (its TLS session's state).
    #[inline]
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The transport (registration with the poller, local address).
    #[inline]
    pub(crate) fn transport_mut(&mut self) -> &mut Transport {
        &mut self.transport
    }

    /// The local address the connection was accepted on.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.transport.local_addr()
    }

    /// One read: into `scratch` when no partial item is buffered (the common case: nothing
    /// is copied unless a partial item is left over), else into the connection's own buffer.
    #[inline]
    pub(crate) fn recv(
        &mut self,
        scratch: &mut [u8],
        pool: &mut BufPool,
        stats: &mut Stats,
    ) -> Recv {
        if self.rx.buf().is_empty() {
            return Recv {
                result: self.transport.recv(scratch, stats),
                room: scratch.len(),
                into_scratch: true,
            };
        }
        let room = self.rx.buf_mut().spare(READ_CHUNK, pool);
        let len = room.len();
        let result = self.transport.recv(room, stats);
        if let Ok(n) = result {
            self.rx.buf_mut().commit(n);
        }
        Recv {
            result,
            room: len,
            into_scratch: false,
        }
    }

    /// Data arrived at loop time `now`.
    #[inline]
    pub(crate) fn note_read(&mut self, now: u64) {
        self.last_active = now;
        self.rx.note_data();
    }

    /// Loop time when the connection was accepted.
    pub(crate) fn opened_at(&self) -> u64 {
        self.opened_at
    }

    /// Loop time of the last read that returned data.
    pub(crate) fn last_active(&self) -> u64 {
        self.last_active
    }

    /// Replace the idle timer's id (the loop re-arms it), returning the old one.
    /// The send timeout's bookkeeping.
    #[inline]
    pub(crate) fn send_wait_mut(&mut self) -> &mut SendWait {
        &mut self.send_wait
    }

    pub(crate) fn set_idle_timer(&mut self, timer: Option<TimerId>) -> Option<TimerId> {
        std::mem::replace(&mut self.idle_timer, timer)
    }

    /// The loop's list marks.
    #[inline]
    pub(crate) fn marks(&self) -> &Marks {
        &self.marks
    }

    /// The loop's list marks, to change.
    #[inline]
    pub(crate) fn marks_mut(&mut self) -> &mut Marks {
        &mut self.marks
    }

    /// The connection is being freed: drop its input and output, give buffers back.
    pub(crate) fn release(&mut self, pool: &mut BufPool) {
        if !matches!(self.life.closing(), Some(CloseReason::Error)) {
            self.transport.goodbye();
        }
        self.tx.release(pool);
        self.rx.discard(pool);
    }
}

#[cfg(test)]
mod tests {
    use super::super::transport::memory::Memory;
    use super::*;

    fn conn() -> Connection<()> {
        let id = ConnId {
            loop_index: 0,
            slot: 3,
            gen: 1,
        };
        let t = Transport::Memory(Box::default());
        Connection::new(t, id, "127.0.0.1:9".parse().unwrap(), (), 5)
    }

    #[test]
    fn a_close_drops_queued_output_and_refuses_more() {
        let mut c = conn();
        let mut pool = BufPool::new(4096, 4);
        c.tx_mut().out(&mut pool).extend_from_slice(b"queued");
        assert!(!c.idle_output());
        assert!(c.close(CloseReason::Error));
        assert!(!c.accepts_output());
        assert!(!c.tx().has_output(), "closing drops what was queued");
        assert!(!c.close(CloseReason::Local));
        assert_eq!(c.life().closing(), Some(CloseReason::Error));
    }

    #[test]
    fn a_drain_keeps_output_until_written() {
        let mut c = conn();
        let mut pool = BufPool::new(4096, 4);
        c.tx_mut().out(&mut pool).extend_from_slice(b"bye");
        assert!(c.drain(CloseReason::PeerClosed));
        assert!(c.accepts_output() && c.tx().has_output());
        assert!(
            !c.idle_output(),
            "a draining connection does not take direct writes"
        );
        assert_eq!(c.life().draining(), Some(CloseReason::PeerClosed));
        assert!(c.close(CloseReason::PeerClosed));
        assert!(!c.accepts_output());
    }

    #[test]
    fn reads_go_to_scratch_unless_a_partial_item_is_buffered() {
        let mut c = conn();
        let mut pool = BufPool::new(4096, 4);
        let mut scratch = [0u8; 8];
        let m: &mut Memory = c.transport_mut().memory();
        m.input.extend(b"hello");
        let r = c.recv(&mut scratch, &mut pool, &mut Stats::default());
        assert_eq!((r.result.unwrap(), r.room, r.into_scratch), (5, 8, true));
        c.rx_mut().buf_mut().extend_from_slice(b"he", &mut pool);
        c.transport_mut().memory().input.extend(b"llo");
        let r = c.recv(&mut scratch, &mut pool, &mut Stats::default());
        assert_eq!(r.result.unwrap(), 3);
        assert!(!r.into_scratch);
        assert_eq!(c.rx().buf().len(), 5, "appended behind the partial item");
        c.transport_mut().memory().input_closed = true;
        c.release(&mut pool);
        let r = c.recv(&mut scratch, &mut pool, &mut Stats::default());
        assert_eq!(r.result.unwrap(), 0, "end of stream");
        assert_eq!(c.opened_at(), 5);
    }
}
