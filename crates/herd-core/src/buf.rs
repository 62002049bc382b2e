//! Connection buffers and the per-loop pool they come from.
//!
//! Idle connections must cost almost nothing, so a connection holds no buffer memory while it
//! has nothing pending: reads land in the loop's scratch buffer, and only an unconsumed partial
//! message is copied into a [`ReadBuf`]; replies go into a [`WriteBuf`] only for as long as the
//! socket has not taken them. Both take their storage from the loop's [`BufPool`] and give it
//! back once empty. Everything here is owned by one loop thread: no locks, no atomics.

/// Bytes read but not yet consumed by the decoder: `data[start..end]`.
///
/// The storage is kept initialized up to its length, so reading into the spare room needs no
/// `unsafe` and no re-zeroing on every read; it is zeroed only when it grows.
#[derive(Debug, Default)]
pub struct ReadBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl ReadBuf {
    /// The unconsumed bytes.
    #[inline]
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.start..self.end]
    }

    /// Number of unconsumed bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// True when nothing is held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Bytes of storage held (0 for a buffer that owns no memory).
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Mark `n` bytes at the front as consumed.
    #[inline]
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Spare room of at least `min` bytes after the held bytes, to read into; follow with
    /// [`commit`](Self::commit). Moves held bytes to the front or grows (doubling) as needed.
    pub fn spare(&mut self, min: usize, pool: &mut BufPool) -> &mut [u8] {
        if self.data.is_empty() {
            self.data = pool.take_read(min);
        }
        if self.data.len() - self.end < min {
            if self.start > 0 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.data.len() - self.end < min {
                let want = (self.end + min).max(self.data.len() * 2);
                self.data.resize(want, 0);
            }
        }
        &mut self.data[self.end..]
    }

    /// Record that `n` bytes were written into the slice [`spare`](Self::spare) returned.
    #[inline]
    pub fn commit(&mut self, n: usize) {
        debug_assert!(self.end + n <= self.data.len());
        self.end += n;
    }

    /// Append bytes (used to keep a partial message read into the scratch buffer).
    pub fn extend_from_slice(&mut self, bytes: &[u8], pool: &mut BufPool) {
        let room = self.spare(bytes.len(), pool);
        room[..bytes.len()].copy_from_slice(bytes);
        self.commit(bytes.len());
    }

    /// Give the storage back to the pool if nothing is held.
    pub fn release_if_empty(&mut self, pool: &mut BufPool) {
        if self.is_empty() && !self.data.is_empty() {
            pool.give_read(std::mem::take(&mut self.data));
            self.start = 0;
            self.end = 0;
        }
    }
}

/// Encoded bytes the socket has not taken yet: `data[start..]`.
///
/// Encoders append to the underlying `Vec` ([`vec_mut`](Self::vec_mut)); a partial write
/// advances `start`; the buffer compacts lazily.
#[derive(Debug, Default)]
pub struct WriteBuf {
    data: Vec<u8>,
    start: usize,
}

impl WriteBuf {
    /// The bytes waiting to be written.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.data[self.start..]
    }

    /// Number of bytes waiting.
    #[inline]
    pub fn len(&self) -> usize {
        self.data.len() - self.start
    }

    /// True when nothing is waiting.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.data.len() == self.start
    }

    /// Bytes of storage held.
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    /// The vector to append encoded bytes to (taking storage from the pool if there is none).
    #[inline]
    pub fn vec_mut(&mut self, pool: &mut BufPool) -> &mut Vec<u8> {
        if self.data.capacity() == 0 {
            self.data = pool.take_write();
        } else if self.start > 0 && self.start >= self.data.len() / 2 {
            self.data.drain(..self.start);
            self.start = 0;
        }
        &mut self.data
    }

    /// Mark `n` bytes as written.
    #[inline]
    pub fn advance(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n;
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
        }
    }

    /// Make `v` the pending bytes (the buffer must be empty); its old storage goes to the pool.
    pub fn replace_vec(&mut self, v: Vec<u8>, pool: &mut BufPool) {
        debug_assert!(self.is_empty());
        let old = std::mem::replace(&mut self.data, v);
        self.start = 0;
        if old.capacity() != 0 {
            pool.give_write(old);
        }
    }

    /// Drop everything waiting.
    pub fn clear(&mut self) {
        self.data.clear();
        self.start = 0;
    }

    /// Give the storage back to the pool if nothing is waiting.
    #[inline]
    pub fn release_if_empty(&mut self, pool: &mut BufPool) {
        if self.is_empty() && self.data.capacity() != 0 {
            pool.give_write(std::mem::take(&mut self.data));
            self.start = 0;
        }
    }
}

/// A per-loop free list of buffer storage.
///
/// Buffers larger than `max_pooled` are freed rather than kept, so one 16 MiB message does not
/// pin 16 MiB for the life of the loop; at most `max_count` of each kind are kept.
#[derive(Debug)]
pub struct BufPool {
    read: Vec<Vec<u8>>,
    write: Vec<Vec<u8>>,
    /// The write buffer given back last, held inline (capacity 0: none). A connection that
    /// replies and drains its output on every message takes and returns this one without
    /// touching the free list's heap storage.
    spare_write: Vec<u8>,
    chunk: usize,
    max_pooled: usize,
    max_count: usize,
}

impl BufPool {
    /// A pool handing out buffers of `chunk` bytes, keeping at most `max_count` of each kind.
    pub fn new(chunk: usize, max_count: usize) -> Self {
        BufPool {
            read: Vec::new(),
            write: Vec::new(),
            spare_write: Vec::new(),
            chunk,
            max_pooled: chunk * 16,
            max_count,
        }
    }

    fn take_read(&mut self, min: usize) -> Vec<u8> {
        match self.read.pop() {
            Some(v) if v.len() >= min => v,
            _ => vec![0; min.max(self.chunk)],
        }
    }

    fn give_read(&mut self, v: Vec<u8>) {
        if v.len() <= self.max_pooled && self.read.len() < self.max_count {
            self.read.push(v);
        }
    }

    #[inline]
    fn take_write(&mut self) -> Vec<u8> {
        if self.spare_write.capacity() != 0 {
            return std::mem::take(&mut self.spare_write);
        }
        self.write
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.chunk))
    }

    #[inline]
    fn give_write(&mut self, mut v: Vec<u8>) {
        if v.capacity() > self.max_pooled || self.max_count == 0 {
            return;
        }
        v.clear();
        if self.spare_write.capacity() == 0 {
            self.spare_write = v;
        } else if self.write.len() + 1 < self.max_count {
            self.write.push(v);
        }
    }

    /// Buffers currently kept (read, write).
    pub fn pooled(&self) -> (usize, usize) {
        let spare = usize::from(self.spare_write.capacity() != 0);
        (self.read.len(), self.write.len() + spare)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn read_buf_roundtrip_and_release() {
        let mut pool = BufPool::new(16, 4);
        let mut rb = ReadBuf::default();
        rb.extend_from_slice(b"hello", &mut pool);
        let room = rb.spare(100, &mut pool);
        room[..6].copy_from_slice(b" world");
        rb.commit(6);
        assert_eq!(rb.bytes_mut(), b"hello world");
        rb.consume(6);
        assert_eq!(rb.bytes_mut(), b"world");
        rb.consume(5);
        assert!(rb.is_empty());
        rb.release_if_empty(&mut pool);
        assert_eq!(rb.capacity(), 0);
        assert_eq!(pool.pooled().0, 1);
    }

    #[test]
    fn write_buf_partial_writes() {
        let mut pool = BufPool::new(16, 4);
        let mut wb = WriteBuf::default();
        wb.vec_mut(&mut pool).extend_from_slice(b"abcdef");
        wb.advance(2);
        assert_eq!(wb.bytes(), b"cdef");
        wb.vec_mut(&mut pool).extend_from_slice(b"gh");
        assert_eq!(wb.bytes(), b"cdefgh");
        wb.advance(6);
        assert!(wb.is_empty());
        wb.release_if_empty(&mut pool);
        assert_eq!(wb.capacity(), 0);
        assert_eq!(pool.pooled().1, 1);
    }

    /// The inline spare counts toward `max_count`, and the buffer given back last is the
    /// one taken next (the one still in cache).
    #[test]
    fn write_pool_keeps_at_most_max_count_and_reuses_the_latest() {
        let mut pool = BufPool::new(16, 3);
        let bufs: Vec<Vec<u8>> = (0..5).map(|_| pool.take_write()).collect();
        for v in bufs {
            pool.give_write(v);
        }
        assert_eq!(pool.pooled().1, 3);
        let mut none = BufPool::new(16, 0);
        none.give_write(Vec::with_capacity(16));
        assert_eq!(none.pooled().1, 0);
        // Give one back and take it again: the same storage, from the inline slot.
        let mut pool = BufPool::new(16, 3);
        let mut v = pool.take_write();
        v.extend_from_slice(b"x");
        let p = v.as_ptr();
        pool.give_write(v);
        let again = pool.take_write();
        assert_eq!(again.as_ptr(), p);
        assert!(again.is_empty());
    }

    #[test]
    fn oversized_buffers_are_not_pooled() {
        let mut pool = BufPool::new(16, 4);
        let mut rb = ReadBuf::default();
        rb.spare(10_000, &mut pool);
        rb.release_if_empty(&mut pool);
        assert_eq!(pool.pooled().0, 0);
    }

    proptest! {
        /// The read buffer behaves like a simple VecDeque of bytes under any op sequence.
        #[test]
        fn read_buf_matches_model(ops in proptest::collection::vec((0u8..3, 0usize..200), 0..60)) {
            let mut pool = BufPool::new(32, 2);
            let mut rb = ReadBuf::default();
            let mut model: Vec<u8> = Vec::new();
            let mut counter = 0u8;
            for (op, n) in ops {
                match op {
                    0 => {
                        let room = rb.spare(n, &mut pool);
                        prop_assert!(room.len() >= n);
                        for b in room[..n].iter_mut() { counter = counter.wrapping_add(1); *b = counter; model.push(counter); }
                        rb.commit(n);
                    }
                    1 => { let k = n.min(model.len()); rb.consume(k); model.drain(..k); }
                    _ => rb.release_if_empty(&mut pool),
                }
                prop_assert_eq!(rb.bytes_mut(), &model[..]);
            }
        }
    }
}
