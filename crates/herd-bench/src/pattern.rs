//! The deterministic byte stream each connection sends, and the check of what comes back.
//!
//! Every connection owns an endless byte stream whose byte at offset `o` depends only on the
//! connection's seed and `o` (8-byte words `mix(seed, o / 8)`, where `mix` is a bijection of
//! the word index). An echo server must return the same stream, so checking each received
//! chunk against the bytes expected at its offset catches corruption, lost or duplicated bytes
//! and reordered messages, not just a wrong length. Two connections with different seeds send
//! different streams, so crossed wires between connections are caught too.
//!
//! This module does no I/O; it costs about one multiply per 8 bytes, so the load generator can
//! check every byte at 16 KiB messages without becoming the bottleneck. Callers: the modes
//! (`echo`, `hold`) and their tests.

/// Odd multiplier (from the SplitMix/PCG family): multiplication by it is a bijection on u64.
const MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// The stream of one connection.
///
/// ```
/// use herd_bench::pattern::Pattern;
/// let p = Pattern::new(7);
/// let mut msg = [0u8; 100];
/// p.fill(300, &mut msg); // bytes 300..400 of connection 7's stream
/// assert!(p.verify(300, &msg).is_ok());
/// assert!(p.verify(301, &msg).is_err()); // shifted by one byte: detected
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pattern {
    seed: u64,
}

/// The first byte that differed from the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Stream offset of the differing byte.
    pub offset: u64,
    /// The byte the stream has there.
    pub expected: u8,
    /// The byte that was received.
    pub got: u8,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "byte {} of the stream: expected {:#04x}, got {:#04x}",
            self.offset, self.expected, self.got
        )
    }
}

impl Pattern {
    /// The stream for connection `seed` (use the connection index).
    pub fn new(seed: u64) -> Self {
        Pattern {
            seed: seed.wrapping_mul(0xD6E8_FEB8_6659_FD93).rotate_left(17),
        }
    }

    /// The 8-byte word at word index `i` (stream bytes `8*i .. 8*i+8`, little-endian).
    #[inline]
    fn word(&self, i: u64) -> u64 {
        let w = (i ^ self.seed).wrapping_mul(MUL);
        w ^ (w >> 29)
    }

    /// The stream byte at `offset`.
    pub fn byte_at(&self, offset: u64) -> u8 {
        self.word(offset / 8).to_le_bytes()[(offset % 8) as usize]
    }

    /// Writes stream bytes `offset .. offset + buf.len()` into `buf`.
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        let len = buf.len();
        let head = (((8 - offset % 8) % 8) as usize).min(len);
        let (first, rest) = buf.split_at_mut(head);
        for (k, b) in first.iter_mut().enumerate() {
            *b = self.byte_at(offset + k as u64);
        }
        let base = (offset + head as u64) / 8;
        let mut words = rest.chunks_exact_mut(8);
        for (k, chunk) in (&mut words).enumerate() {
            chunk.copy_from_slice(&self.word(base + k as u64).to_le_bytes());
        }
        let tail = words.into_remainder();
        let tail_off = offset + (len - tail.len()) as u64;
        for (k, b) in tail.iter_mut().enumerate() {
            *b = self.byte_at(tail_off + k as u64);
        }
    }

    /// Checks that `buf` equals stream bytes `offset .. offset + buf.len()`; on a difference
    /// returns the first differing byte.
    pub fn verify(&self, offset: u64, buf: &[u8]) -> Result<(), Mismatch> {
        let head = (((8 - offset % 8) % 8) as usize).min(buf.len());
        let base = (offset + head as u64) / 8;
        let body = &buf[head..];
        let whole = body.len() / 8 * 8;
        let aligned_ok = body[..whole]
            .chunks_exact(8)
            .enumerate()
            .all(|(k, c)| c == self.word(base + k as u64).to_le_bytes());
        let edges_ok = buf[..head]
            .iter()
            .chain(&body[whole..])
            .zip((0..head).chain(head + whole..buf.len()))
            .all(|(&b, k)| b == self.byte_at(offset + k as u64));
        if aligned_ok && edges_ok {
            return Ok(());
        }
        // Slow path, only on failure: find the exact byte.
        for (k, &got) in buf.iter().enumerate() {
            let o = offset + k as u64;
            let expected = self.byte_at(o);
            if got != expected {
                return Err(Mismatch {
                    offset: o,
                    expected,
                    got,
                });
            }
        }
        unreachable!("a fast-path mismatch always has a differing byte")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(p: &Pattern, offset: u64, len: usize) -> Vec<u8> {
        (0..len as u64).map(|k| p.byte_at(offset + k)).collect()
    }

    #[test]
    fn fill_matches_byte_at_for_every_alignment() {
        let p = Pattern::new(3);
        for offset in 0..20u64 {
            for len in 0..40usize {
                let mut buf = vec![0u8; len];
                p.fill(offset, &mut buf);
                assert_eq!(buf, reference(&p, offset, len), "offset {offset} len {len}");
                assert!(p.verify(offset, &buf).is_ok());
            }
        }
    }

    #[test]
    fn corruption_is_reported_at_the_exact_byte() {
        let p = Pattern::new(11);
        let mut buf = vec![0u8; 64];
        p.fill(5, &mut buf);
        buf[37] ^= 0x40;
        let m = p.verify(5, &buf).unwrap_err();
        assert_eq!(m.offset, 5 + 37);
        assert_eq!(m.got, m.expected ^ 0x40);
        assert!(m.to_string().contains("byte 42"));
    }

    #[test]
    fn swapped_messages_are_detected() {
        let p = Pattern::new(1);
        let size = 64;
        let mut stream = vec![0u8; 4 * size];
        p.fill(0, &mut stream);
        // the server echoes message 2 before message 1
        let mut swapped = stream.clone();
        swapped[size..2 * size].copy_from_slice(&stream[2 * size..3 * size]);
        swapped[2 * size..3 * size].copy_from_slice(&stream[size..2 * size]);
        let m = p.verify(0, &swapped).unwrap_err();
        assert_eq!(m.offset, size as u64);
    }

    #[test]
    fn other_connections_stream_is_detected() {
        let a = Pattern::new(0);
        let b = Pattern::new(1);
        let mut buf = vec![0u8; 16];
        b.fill(0, &mut buf);
        assert!(a.verify(0, &buf).is_err());
    }

    #[test]
    fn long_streams_do_not_repeat_within_a_message() {
        // message k and message k + n of a 64-byte stream must differ for small n: a server
        // replaying an old message is caught.
        let p = Pattern::new(9);
        let mut first = vec![0u8; 64];
        p.fill(0, &mut first);
        for k in 1..10_000u64 {
            assert!(
                p.verify(k * 64, &first).is_err(),
                "message {k} equals message 0"
            );
        }
    }

    proptest! {
        #[test]
        fn fill_then_verify_round_trips(seed: u64, offset in 0u64..1 << 40, len in 0usize..300) {
            let p = Pattern::new(seed);
            let mut buf = vec![0u8; len];
            p.fill(offset, &mut buf);
            prop_assert_eq!(&buf, &reference(&p, offset, len));
            prop_assert!(p.verify(offset, &buf).is_ok());
        }

        #[test]
        fn any_single_flip_is_found(seed: u64, offset in 0u64..1 << 40, len in 1usize..300,
                                     at in any::<prop::sample::Index>(), bit in 0u8..8) {
            let p = Pattern::new(seed);
            let mut buf = vec![0u8; len];
            p.fill(offset, &mut buf);
            let i = at.index(len);
            buf[i] ^= 1 << bit;
            let m = p.verify(offset, &buf).unwrap_err();
            prop_assert_eq!(m.offset, offset + i as u64);
        }

        #[test]
        fn arbitrary_bytes_never_panic(seed: u64, offset: u64, buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            let p = Pattern::new(seed);
            if let Err(m) = p.verify(offset.min(u64::MAX - 256), &buf) {
                prop_assert_ne!(m.expected, m.got);
            }
        }
    }
}
