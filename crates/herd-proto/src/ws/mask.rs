//! WebSocket payload masking (RFC 6455 section 5.3).
//!
//! Every client-to-server payload byte `i` is XORed with `key[i % 4]`; the same operation
//! unmasks. [`apply_mask`] does it in place, eight bytes at a time, and takes the payload offset
//! of the first byte so that a payload arriving in several reads can be unmasked piece by piece.
//! It must not allocate or assume alignment. Called by the [`Decoder`](super::Decoder) on
//! received payloads and by [`encode_frame`](super::encode_frame) for client-role frames.

/// XORs `buf` with the masking `key`, in place, as if `buf` started at byte `offset` of the
/// payload.
///
/// Masking and unmasking are the same operation. Call it once per payload piece, passing how
/// many payload bytes came before this piece as `offset`, so unmasking can resume mid-payload.
///
/// ```
/// use herd_proto::ws::apply_mask;
///
/// let key = [0x37, 0xfa, 0x21, 0x3d];
/// let mut whole = *b"Hello, world";
/// apply_mask(&mut whole, key, 0);
///
/// // The same payload unmasked in two pieces, the second resuming at offset 5.
/// let mut pieces = whole;
/// let (head, tail) = pieces.split_at_mut(5);
/// apply_mask(head, key, 0);
/// apply_mask(tail, key, 5);
/// assert_eq!(&pieces, b"Hello, world");
/// ```
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    // Rotate the key so that buf[0] lines up with key[0].
    let mut k = key;
    k.rotate_left(offset % 4);
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);

    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        // chunks_exact_mut always yields exactly 8 bytes, so the conversion never fails.
        if let Ok(bytes) = <&mut [u8; 8]>::try_from(chunk) {
            *bytes = (u64::from_ne_bytes(*bytes) ^ word).to_ne_bytes();
        }
    }
    // The remainder starts at a multiple of 8 bytes, so the rotated key still lines up.
    for (byte, m) in chunks.into_remainder().iter_mut().zip(k.iter().cycle()) {
        *byte ^= m;
    }
}

#[cfg(test)]
mod tests {
    use super::apply_mask;
    use proptest::prelude::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 section 5.7: a masked "Hello" from a client.
        let mut payload = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&payload, b"Hello");
    }

    #[test]
    fn empty_buffer_is_untouched() {
        let mut empty: [u8; 0] = [];
        apply_mask(&mut empty, [1, 2, 3, 4], 3);
    }

    #[test]
    fn offset_wraps_modulo_four() {
        let mut a = [0u8; 19];
        let mut b = [0u8; 19];
        apply_mask(&mut a, [9, 8, 7, 6], 1);
        apply_mask(&mut b, [9, 8, 7, 6], 4_000_001);
        assert_eq!(a, b);
        assert_eq!(a[0], 8);
    }

    proptest! {
        #[test]
        fn matches_naive_loop(
            data in proptest::collection::vec(any::<u8>(), 0..300),
            key in any::<[u8; 4]>(),
            offset in 0usize..1000,
            start in 0usize..8,
        ) {
            // `start` shifts the slice so unaligned starts are covered too.
            let start = start.min(data.len());
            let mut fast = data.clone();
            let mut slow = data.clone();
            apply_mask(&mut fast[start..], key, offset);
            naive(&mut slow[start..], key, offset);
            prop_assert_eq!(fast, slow);
        }

        #[test]
        fn split_unmask_equals_whole(
            data in proptest::collection::vec(any::<u8>(), 0..200),
            key in any::<[u8; 4]>(),
            cut in 0usize..200,
        ) {
            let cut = cut.min(data.len());
            let mut whole = data.clone();
            apply_mask(&mut whole, key, 0);
            let mut split = data;
            let (a, b) = split.split_at_mut(cut);
            apply_mask(a, key, 0);
            apply_mask(b, key, cut);
            prop_assert_eq!(whole, split);
        }
    }
}
