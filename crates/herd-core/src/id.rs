//! The address of a connection: (loop, slot, generation).
//!
//! A leaf module: the loop, the connection types, the inbox and every protocol name a
//! connection by this id without importing each other. The generation is what makes handles
//! stale-safe: a slot reused by the next connection gets a new one, so a command addressed to
//! the old id is recognised and dropped.

/// Address of one connection: (loop, slot, generation). Copy, hashable, cheap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) loop_index: u32,
    pub(crate) slot: u32,
    pub(crate) gen: u32,
}

impl ConnId {
    /// The index of the loop that owns the connection.
    pub fn loop_index(&self) -> usize {
        self.loop_index as usize
    }

    /// The slab slot the connection occupies on its loop.
    #[inline]
    pub(crate) fn slot(&self) -> usize {
        self.slot as usize
    }
}

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.loop_index, self.slot, self.gen)
    }
}
