//! permessage-deflate (RFC 7692), sans-IO: the extension negotiation and the per-message
//! compressor and decompressor.
//!
//! [`negotiate`] reads the client's offers (the items of `Sec-WebSocket-Extensions`, as
//! [`Upgrade::extensions`](super::Upgrade) lists them) against the server's [`DeflateConfig`]
//! and picks the first offer it can honour, declining the others rather than failing the
//! handshake; [`DeflateParams::response_value`] is what goes back in the `101`. After the
//! handshake the decoder accepts RSV1 on the first frame of a data message (see
//! [`Decoder::set_permessage_deflate`](super::Decoder::set_permessage_deflate)) and hands such
//! a message out as [`Message::Compressed`](super::Message::Compressed);
//! [`Inflater::inflate`] turns it back into the message, checking its size against the
//! message limit *while* inflating, so a compression bomb costs at most that limit of memory.
//! [`Deflater::deflate`] compresses an outgoing message's payload (the caller sets RSV1 on its
//! frame, see [`encode_frame_rsv`](super::encode_frame_rsv)).
//!
//! Memory: a compressor with a window of 2^w bytes holds about 2^(w+2) + 128 KiB (256 KiB at
//! w = 15), a decompressor about 2^w + 7 KiB (39 KiB at w = 15). With
//! `server_no_context_takeover` (the default here) the compressor is reset after each message,
//! so one per loop can serve every connection; with `client_no_context_takeover` likewise the
//! decompressor. Contexts kept across messages ("context takeover") compress repetitive
//! streams better but must live as long as the connection: the caller decides where they live.
//!
//! This module does no I/O and keeps no clock; its callers are herd-core's WebSocket codec and
//! server, tests and fuzzers. It must not learn about connections.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::WsError;

/// The four bytes a sync flush ends with, which the sender strips (RFC 7692 §7.2.1) and the
/// receiver appends before inflating (§7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The extension's token in `Sec-WebSocket-Extensions`.
pub const EXTENSION: &str = "permessage-deflate";

/// What the server is willing to do; the client's offer narrows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Reset the server's compressor after every message (answered as
    /// `server_no_context_takeover` whether or not the client asked). Default true: no
    /// compressor memory per idle connection.
    pub server_no_context_takeover: bool,
    /// Ask the client to reset its compressor after every message
    /// (`client_no_context_takeover`, which a server may always include). Default true: the
    /// server's decompressor is then reset per message too, and shared.
    pub client_no_context_takeover: bool,
    /// The largest LZ77 window the server compresses with, as a power of two: 9 to 15 (the
    /// zlib-compatible backends cannot compress with 8). Default 15.
    pub server_max_window_bits: u8,
    /// The window the server asks the client to stay within, when the client says it can
    /// (`client_max_window_bits` in its offer): 8 to 15. Default 15 (no limit).
    pub client_max_window_bits: u8,
    /// zlib compression level, 0 (store) to 9. Default 1, the fastest that still compresses:
    /// WebSocket messages are small, and the CPU is the server's.
    pub level: u32,
    /// Messages shorter than this are sent uncompressed (RSV1 clear), which the extension
    /// allows per message. Default 256 bytes.
    pub threshold: usize,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            level: 1,
            threshold: 256,
        }
    }
}

/// The parameters both ends agreed on for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message, so the server may reset its
    /// decompressor too.
    pub client_no_context_takeover: bool,
    /// The server's window bits (9 to 15).
    pub server_max_window_bits: u8,
    /// The client's window bits, if the response limits it (8 to 15).
    pub client_max_window_bits: Option<u8>,
    /// Whether the response must name `server_max_window_bits` (the client offered it).
    announce_server_bits: bool,
}

impl DeflateParams {
    /// The value of the `Sec-WebSocket-Extensions` response header that accepts this offer.
    pub fn response_value(&self) -> String {
        let mut v = String::from(EXTENSION);
        if self.server_no_context_takeover {
            v.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            v.push_str("; client_no_context_takeover");
        }
        if self.announce_server_bits {
            v.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        if let Some(bits) = self.client_max_window_bits {
            v.push_str(&format!("; client_max_window_bits={bits}"));
        }
        v
    }
}

/// Picks the first of `offers` (extension items such as
/// `permessage-deflate; client_max_window_bits`) that `cfg` can honour, by RFC 7692 §7.1.
///
/// An offer with an unknown or repeated parameter, or a bad value, is declined (skipped), as
/// is one asking for `server_max_window_bits=8`, which the compressor cannot honour; `None`
/// means no offer was acceptable and the `101` must not name the extension.
///
/// ```
/// use herd_proto::ws::deflate::{negotiate, DeflateConfig};
///
/// let offers = ["permessage-deflate; server_max_window_bits=8", "permessage-deflate; client_max_window_bits"];
/// let params = negotiate(offers, &DeflateConfig::default()).unwrap();
/// assert_eq!(
///     params.response_value(),
///     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
/// );
/// ```
pub fn negotiate<'a>(
    offers: impl IntoIterator<Item = &'a str>,
    cfg: &DeflateConfig,
) -> Option<DeflateParams> {
    offers
        .into_iter()
        .find_map(|offer| accept_offer(offer, cfg))
}

/// One offer's parameters, each at most once.
#[derive(Default)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: named without a value.
    client_max_window_bits: Option<Option<u8>>,
}

fn accept_offer(offer: &str, cfg: &DeflateConfig) -> Option<DeflateParams> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut o = Offer::default();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim())?)),
            None => (param, None),
        };
        match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() && !o.server_no_context_takeover => {
                o.server_no_context_takeover = true
            }
            "client_no_context_takeover" if value.is_none() && !o.client_no_context_takeover => {
                o.client_no_context_takeover = true
            }
            "server_max_window_bits" if o.server_max_window_bits.is_none() => {
                o.server_max_window_bits = Some(window_bits(value?)?)
            }
            "client_max_window_bits" if o.client_max_window_bits.is_none() => {
                o.client_max_window_bits = Some(match value {
                    Some(v) => Some(window_bits(v)?),
                    None => None,
                })
            }
            _ => return None,
        }
    }
    let server_bits = cfg.server_max_window_bits.clamp(9, 15);
    let (server_max_window_bits, announce_server_bits) = match o.server_max_window_bits {
        // zlib cannot compress within a 256-byte window: decline rather than break the limit.
        Some(asked) if asked < 9 => return None,
        Some(asked) => (asked.min(server_bits), true),
        // Unannounced, a smaller window is always fine for the client's decompressor.
        None => (server_bits, false),
    };
    let client_max_window_bits = match o.client_max_window_bits {
        // The client may be limited only if it said it can be (§7.1.2.2).
        Some(asked) => {
            let ours = cfg.client_max_window_bits.clamp(8, 15);
            let bits = asked.map_or(ours, |a| a.min(ours));
            (bits < 15 || asked.is_some()).then_some(bits)
        }
        None => None,
    };
    Some(DeflateParams {
        server_no_context_takeover: o.server_no_context_takeover || cfg.server_no_context_takeover,
        client_no_context_takeover: o.client_no_context_takeover || cfg.client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
        announce_server_bits,
    })
}

/// A parameter value, without the quotes of a quoted-string (RFC 7692 §7.1 allows both).
fn unquote(v: &str) -> Option<&str> {
    match v.strip_prefix('"') {
        Some(rest) => rest.strip_suffix('"'),
        None => Some(v),
    }
}

/// A window-bits value: 8 to 15, digits only, no leading zero.
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

/// Compresses outgoing messages (raw deflate, sync-flushed, the 4-byte tail stripped).
pub struct Deflater {
    z: Compress,
    reset_each: bool,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("reset_each", &self.reset_each)
            .finish_non_exhaustive()
    }
}

impl Deflater {
    /// A compressor at `level` (0 to 9) with a window of 2^`window_bits` (clamped to 9..=15);
    /// with `no_context_takeover` each message is compressed on its own.
    pub fn new(level: u32, window_bits: u8, no_context_takeover: bool) -> Self {
        Deflater {
            z: Compress::new_with_window_bits(
                Compression::new(level.min(9)),
                false,
                window_bits.clamp(9, 15),
            ),
            reset_each: no_context_takeover,
        }
    }

    /// Appends the compressed form of one message's `payload` to `out` (what goes in the
    /// frame, RSV1 set).
    pub fn deflate(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        let mut input = payload;
        loop {
            out.reserve(input.len() / 2 + 64);
            let before = self.z.total_in();
            let status = self.z.compress_vec(input, out, FlushCompress::Sync);
            let used = (self.z.total_in() - before) as usize;
            input = &input[used..];
            // With spare room left after the flush, all of it has been written.
            if status.is_err() || (input.is_empty() && out.len() < out.capacity()) {
                break;
            }
        }
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if out.len() == start {
            // zlib writes nothing for a second flush with no new input (an empty message with
            // context takeover); the empty stored block the receiver completes is one 0x00
            // byte (RFC 7692 §7.2.3.6).
            out.push(0x00);
        }
        if self.reset_each {
            self.z.reset();
        }
    }
}

/// Decompresses incoming messages, within a size limit.
pub struct Inflater {
    z: Decompress,
    reset_each: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("reset_each", &self.reset_each)
            .finish_non_exhaustive()
    }
}

/// Output grows by at most this much at a time, so a bomb is stopped near the limit.
const INFLATE_STEP: usize = 64 * 1024;

impl Inflater {
    /// A decompressor with the largest window (any window the client uses fits in it); with
    /// `no_context_takeover` each message is decompressed on its own.
    pub fn new(no_context_takeover: bool) -> Self {
        Inflater {
            z: Decompress::new_with_window_bits(false, 15),
            reset_each: no_context_takeover,
        }
    }

    /// Appends the decompressed message of `payload` (a whole compressed message, the RSV1
    /// frames' payloads together) to `out`. Fails with 1009 as soon as the output would pass
    /// `max` bytes, and with 1007 on data that is not deflate; after an error the inflater
    /// must not be used for this connection again.
    pub fn inflate(&mut self, payload: &[u8], max: u64, out: &mut Vec<u8>) -> Result<(), WsError> {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        let start = out.len();
        let mut ended = false;
        for mut input in [payload, &TAIL[..]] {
            loop {
                if out.len() == out.capacity() {
                    // Room for one byte past the limit, to tell "exactly max" from "more".
                    let produced = out.len() - start;
                    out.reserve_exact((max.saturating_add(1) - produced).clamp(1, INFLATE_STEP));
                }
                let (before_in, before_out) = (self.z.total_in(), self.z.total_out());
                let status = self
                    .z
                    .decompress_vec(input, out, FlushDecompress::Sync)
                    .map_err(|_| WsError::invalid_payload("bad deflate data"))?;
                if out.len() - start > max {
                    return Err(WsError::too_big("inflated message over max_message"));
                }
                let used = (self.z.total_in() - before_in) as usize;
                input = &input[used..];
                if status == Status::StreamEnd {
                    // A final block (BFINAL): the message ends here, the tail is not needed.
                    ended = true;
                    break;
                }
                let room = out.len() < out.capacity();
                let progress = used > 0 || self.z.total_out() > before_out;
                if room && (input.is_empty() || !progress) {
                    break;
                }
            }
            if ended {
                break;
            }
        }
        if self.reset_each || ended {
            self.z.reset(false);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DeflateConfig {
        DeflateConfig::default()
    }

    fn resp(offers: &[&str], cfg: &DeflateConfig) -> Option<String> {
        negotiate(offers.iter().copied(), cfg).map(|p| p.response_value())
    }

    #[test]
    fn plain_offer_is_accepted_with_the_servers_policy() {
        assert_eq!(
            resp(&["permessage-deflate"], &cfg()).unwrap(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        let takeover = DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            ..cfg()
        };
        assert_eq!(
            resp(&["permessage-deflate"], &takeover).unwrap(),
            "permessage-deflate"
        );
        // What the client asks for is granted even if the server would take over.
        assert_eq!(
            resp(
                &["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
                &takeover
            )
            .unwrap(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
    }

    #[test]
    fn window_bits_are_answered_by_the_rules() {
        let small = DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 12,
            client_max_window_bits: 10,
            ..cfg()
        };
        // Offered server bits: answered with the same or smaller value.
        assert_eq!(
            resp(&["permessage-deflate; server_max_window_bits=14"], &small).unwrap(),
            "permessage-deflate; server_max_window_bits=12"
        );
        assert_eq!(
            resp(&["permessage-deflate; server_max_window_bits=10"], &small).unwrap(),
            "permessage-deflate; server_max_window_bits=10"
        );
        // Not offered: never named (a smaller window is silently fine for the client).
        let p = negotiate(["permessage-deflate"], &small).unwrap();
        assert_eq!(p.server_max_window_bits, 12);
        assert_eq!(p.response_value(), "permessage-deflate");
        // client_max_window_bits without a value: the server may set one.
        assert_eq!(
            resp(&["permessage-deflate; client_max_window_bits"], &small).unwrap(),
            "permessage-deflate; client_max_window_bits=10"
        );
        assert_eq!(
            resp(&["permessage-deflate; client_max_window_bits=9"], &small).unwrap(),
            "permessage-deflate; client_max_window_bits=9"
        );
        // With no limit of ours, a bare client_max_window_bits needs no answer.
        assert_eq!(
            resp(&["permessage-deflate; client_max_window_bits"], &cfg()).unwrap(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        );
        // Quoted values are values too.
        assert_eq!(
            resp(
                &["permessage-deflate; server_max_window_bits=\"11\""],
                &small
            )
            .unwrap(),
            "permessage-deflate; server_max_window_bits=11"
        );
    }

    #[test]
    fn offers_that_cannot_be_honoured_are_declined_and_the_next_taken() {
        for bad in [
            "permessage-deflate; server_max_window_bits=8",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown_param",
            "x-webkit-deflate-frame",
        ] {
            assert_eq!(resp(&[bad], &cfg()), None, "{bad}");
            assert!(
                resp(&[bad, "permessage-deflate"], &cfg()).is_some(),
                "{bad}"
            );
        }
        assert_eq!(resp(&[], &cfg()), None);
        // The first acceptable one wins.
        let takeover = DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            ..cfg()
        };
        assert_eq!(
            resp(
                &[
                    "permessage-deflate; server_max_window_bits=10",
                    "permessage-deflate"
                ],
                &takeover
            )
            .unwrap(),
            "permessage-deflate; server_max_window_bits=10"
        );
    }

    fn roundtrip(d: &mut Deflater, i: &mut Inflater, msg: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        d.deflate(msg, &mut wire);
        let mut back = Vec::new();
        i.inflate(&wire, 1 << 24, &mut back).unwrap();
        back
    }

    #[test]
    fn messages_survive_with_and_without_context_takeover() {
        let msgs: Vec<Vec<u8>> = vec![
            b"hello hello hello hello".to_vec(),
            Vec::new(),
            (0..100_000u32).map(|x| (x % 251) as u8).collect(),
            b"hello hello hello hello".to_vec(),
        ];
        for takeover in [false, true] {
            let mut d = Deflater::new(1, 15, !takeover);
            let mut i = Inflater::new(!takeover);
            for m in &msgs {
                assert_eq!(&roundtrip(&mut d, &mut i, m), m);
            }
        }
        // Context takeover makes a repeated message shorter the second time.
        let mut d = Deflater::new(6, 15, false);
        let msg = b"a fairly long message that repeats exactly, a fairly long message";
        let (mut a, mut b) = (Vec::new(), Vec::new());
        d.deflate(msg, &mut a);
        d.deflate(msg, &mut b);
        assert!(b.len() < a.len(), "{} vs {}", b.len(), a.len());
        // Small windows still round-trip.
        let mut d = Deflater::new(9, 9, true);
        let mut i = Inflater::new(true);
        assert_eq!(roundtrip(&mut d, &mut i, &msgs[2]), msgs[2]);
    }

    #[test]
    fn rfc_7692_example_hello_inflates() {
        // §7.2.3.1: "Hello" compressed, and the same with no compression (§7.2.3.3).
        let mut i = Inflater::new(true);
        let mut out = Vec::new();
        i.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100, &mut out)
            .unwrap();
        assert_eq!(out, b"Hello");
        out.clear();
        i.inflate(
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
            100,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.2: two messages sharing the window ("Hello" twice, the second a back-reference).
        let mut i = Inflater::new(false);
        let mut out = Vec::new();
        i.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100, &mut out)
            .unwrap();
        out.clear();
        i.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], 100, &mut out)
            .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn a_bomb_stops_at_the_limit_and_garbage_is_1007() {
        let zeros = vec![0u8; 10 << 20];
        let mut wire = Vec::new();
        Deflater::new(9, 15, true).deflate(&zeros, &mut wire);
        assert!(wire.len() < 20_000, "{}", wire.len());
        let mut out = Vec::new();
        let err = Inflater::new(true)
            .inflate(&wire, 1 << 20, &mut out)
            .unwrap_err();
        assert_eq!(err.close_code, 1009);
        assert!(
            out.capacity() <= (1 << 20) + INFLATE_STEP,
            "{}",
            out.capacity()
        );
        // Exactly at the limit is fine.
        let mut out = Vec::new();
        Inflater::new(true)
            .inflate(&wire, 10 << 20, &mut out)
            .unwrap();
        assert_eq!(out.len(), 10 << 20);

        let mut out = Vec::new();
        let err = Inflater::new(true)
            .inflate(&[0xff, 0xff, 0xff, 0x01, 0x02], 1 << 20, &mut out)
            .unwrap_err();
        assert_eq!(err.close_code, 1007);
    }
}
