//! A hierarchical hashed timer wheel at 1 ms resolution, owned by one event-loop thread.
//!
//! Each loop owns one [`TimerWheel`] and drives it with the loop's clock: before blocking it
//! asks [`TimerWheel::next_deadline`] for the poll timeout, and after waking it calls
//! [`TimerWheel::advance`] with the current time and runs what fired. `run_after`,
//! `run_every`, idle and heartbeat timeouts are built on it by the loop. The wheel never reads
//! a clock, never sleeps, takes no locks and touches no atomics; it is not meant to be shared
//! between threads.
//!
//! # How it works
//!
//! Time is a `u64` of milliseconds. The wheel has [`LEVELS`] levels of 64 slots; level `l`
//! slot `s` holds timers whose deadline agrees with the wheel's current time in every bit
//! above `6(l+1)` and has `s` in bits `6l..6l+6`. So level 0 holds the timers of the current
//! 64 ms window (one exact millisecond per slot), level 1 those of the current 4 s window,
//! level 2 of the current 4.4 min window, and so on; eleven levels of six bits cover every
//! `u64` deadline, so there is no overflow list. Every timer always sits exactly where an
//! insert at the current time would put it, which gives three facts the code relies on:
//! every timer in a lower level is due before every timer in a higher level; within a level
//! no occupied slot lies before the current time's slot; and the earliest timer is in the
//! first occupied slot of the lowest occupied level.
//!
//! Advancing repeatedly takes that first slot: if its start is past the target time, stop;
//! otherwise move the wheel time to the slot's start, then fire its timers (level 0, where the
//! slot is one millisecond) or re-insert them one level or more lower (cascade). Empty slots
//! are skipped with a per-level occupancy bitmap, so a jump of days costs nothing per
//! millisecond, and each timer is touched at most once per level: amortized O(1) per expiry.
//! Each slot also remembers the smallest deadline it received since it was last empty, so
//! the poll timeout from `next_deadline` is exact unless a timer was cancelled.
//!
//! Timers live in a slab (`Vec` plus free list, reused, so steady-state inserts do not
//! allocate) and each slot is an intrusive doubly linked list through the slab, so insert and
//! cancel are O(1). A [`TimerId`] carries the slab index and a generation, so an id whose
//! timer fired or was cancelled is harmless even after its slab entry holds a new timer.
//!
//! A deadline earlier than the wheel time cannot go in a slot (its slot is behind); such
//! timers wait on a separate overdue list and fire first on the next advance, sorted by
//! deadline.

use std::fmt;

/// Bits of the deadline consumed by each level.
const SLOT_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << SLOT_BITS;
/// Number of levels: ceil(64 / 6), so every `u64` deadline has a level.
pub const LEVELS: usize = 11;
/// Bucket index of the overdue list (deadline before the wheel time at insert).
const OVERDUE: usize = LEVELS * SLOTS;
/// All slot lists plus the overdue list.
const BUCKETS: usize = OVERDUE + 1;
/// "No entry" in links and list ends.
const NIL: u32 = u32::MAX;

/// Stale-safe timer id: slab index + generation. Cancelling a fired or cancelled id is a no-op.
///
/// Ids are only meaningful for the wheel that issued them. A slab entry's generation is 32
/// bits, so an id could in theory alias a new timer after its entry was reused 2^32 times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

/// One slab entry: a pending timer when `value` is `Some`, a free-list link otherwise.
struct Entry<T> {
    value: Option<T>,
    deadline: u64,
    /// Previous entry in the bucket list (unused when vacant).
    prev: u32,
    /// Next entry in the bucket list, or the next free entry when vacant.
    next: u32,
    /// Bumped whenever the entry is freed, so old ids stop matching.
    generation: u32,
    /// Which bucket list holds the entry (level * SLOTS + slot, or OVERDUE).
    bucket: u16,
}

/// Ends of one bucket's intrusive list, and a lower bound on its deadlines.
#[derive(Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    /// The smallest deadline linked since the list was last empty: exact unless that timer
    /// was cancelled, never above the true minimum. `u64::MAX` when empty.
    min: u64,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
    min: u64::MAX,
};

/// A hierarchical timer wheel holding values of type `T` until their deadline.
///
/// Create it with the loop's current time, [`insert`](Self::insert) and
/// [`cancel`](Self::cancel) from callbacks, sleep at most until
/// [`next_deadline`](Self::next_deadline), and call [`advance`](Self::advance) with the
/// clock's time after every wake-up.
///
/// ```
/// use herd_core::timer::TimerWheel;
///
/// let mut wheel = TimerWheel::new(1_000);
/// let ping = wheel.insert(1_030, "ping");
/// let idle = wheel.insert(61_000, "idle");
/// assert_eq!(wheel.next_deadline(), Some(1_030));
///
/// let mut fired = Vec::new();
/// wheel.advance(1_029, &mut fired);
/// assert!(fired.is_empty());
/// wheel.advance(1_030, &mut fired);
/// assert_eq!(fired, vec![(ping, 1_030, "ping")]);
///
/// assert_eq!(wheel.cancel(idle), Some("idle"));
/// assert_eq!(wheel.cancel(idle), None);
/// assert!(wheel.is_empty());
/// ```
pub struct TimerWheel<T> {
    entries: Vec<Entry<T>>,
    /// Head of the free list threaded through vacant entries' `next`.
    free: u32,
    /// One list per bucket, indexed by `level * SLOTS + slot`, then the overdue list.
    lists: Box<[List]>,
    /// Per level, bit `s` set when slot `s` is non-empty.
    occupied: [u64; LEVELS],
    /// Bit `l` set when `occupied[l] != 0`.
    levels: u16,
    /// The wheel's time: every timer due at or before it has fired, except overdue ones.
    elapsed: u64,
    len: usize,
}

impl<T> TimerWheel<T> {
    /// An empty wheel whose time is `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self::with_capacity(now_ms, 0)
    }

    /// An empty wheel whose time is `now_ms`, with room for `capacity` pending timers
    /// before its storage grows.
    pub fn with_capacity(now_ms: u64, capacity: usize) -> Self {
        TimerWheel {
            entries: Vec::with_capacity(capacity),
            free: NIL,
            lists: vec![EMPTY; BUCKETS].into_boxed_slice(),
            occupied: [0; LEVELS],
            levels: 0,
            elapsed: now_ms,
            len: 0,
        }
    }

    /// The wheel's time: the largest `now_ms` it was created with or advanced to.
    pub fn now_ms(&self) -> u64 {
        self.elapsed
    }

    /// Schedule `value` to fire at absolute time `deadline_ms` (a deadline <= now fires at
    /// the next advance).
    ///
    /// O(1); does not allocate unless more timers are pending than ever before.
    ///
    /// # Panics
    ///
    /// If `u32::MAX` timers are already pending.
    pub fn insert(&mut self, deadline_ms: u64, value: T) -> TimerId {
        let index = self.alloc(deadline_ms, value);
        if deadline_ms < self.elapsed {
            self.push_back(OVERDUE, index);
        } else {
            self.place(index);
        }
        TimerId {
            index,
            generation: self.entries[index as usize].generation,
        }
    }

    /// Cancel; returns the value if it was still pending.
    ///
    /// O(1). An id that already fired, was cancelled, or came from another wheel's slot that
    /// is now reused returns `None` and changes nothing.
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        if !self.contains(id) {
            return None;
        }
        self.unlink(id.index);
        self.release(id.index)
    }

    /// Is this id still pending?
    pub fn contains(&self, id: TimerId) -> bool {
        self.entries
            .get(id.index as usize)
            .is_some_and(|e| e.generation == id.generation && e.value.is_some())
    }

    /// The earliest pending deadline, or `None` when nothing is pending.
    ///
    /// Never later than the true earliest deadline. It is exact unless timers were cancelled:
    /// each slot remembers the smallest deadline it received since it was last empty, so
    /// after a cancel this may be earlier (the cancelled deadline, never before the slot's
    /// start). Advancing to such an early answer moves that slot's timers at least one level
    /// down and refreshes the bound, so an idle loop that sleeps until `next_deadline()` wakes
    /// at most [`LEVELS`] times before the next timer fires, and exactly once when nothing was
    /// cancelled. O(1).
    pub fn next_deadline(&self) -> Option<u64> {
        if self.lists[OVERDUE].head != NIL {
            return Some(self.lists[OVERDUE].min);
        }
        let (level, slot, start) = self.first_slot()?;
        let min = self.lists[level * SLOTS + slot].min;
        debug_assert!(min >= start);
        Some(min)
    }

    /// Move time to `now_ms` (never backwards; a smaller value is ignored) and push every
    /// timer whose deadline <= `now_ms` into `fired` as (id, deadline, value), in nondecreasing
    /// deadline order.
    ///
    /// Fired timers are appended; `fired` is not cleared. Timers with the same deadline fire
    /// in insertion order. Overdue timers (inserted with a deadline before the wheel time)
    /// fire even when `now_ms` is ignored. Cost: O(levels) plus O(1) amortized per timer
    /// fired or moved down a level, however far time jumps.
    pub fn advance(&mut self, now_ms: u64, fired: &mut Vec<(TimerId, u64, T)>) {
        self.fire_overdue(fired);
        let now = now_ms.max(self.elapsed);
        while let Some((level, slot, start)) = self.first_slot() {
            if start > now {
                break;
            }
            // Moving the wheel time to the slot's start keeps every other timer where an
            // insert would put it: they are all due at or after `start`.
            self.elapsed = start;
            let mut index = self.take_bucket(level * SLOTS + slot);
            while index != NIL {
                let next = self.entries[index as usize].next;
                if level == 0 {
                    debug_assert_eq!(self.entries[index as usize].deadline, start);
                    self.fire(index, fired);
                } else {
                    self.place(index);
                }
                index = next;
            }
        }
        self.elapsed = now;
    }

    /// Number of pending timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no timer is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Take a vacant entry (or grow the slab) and fill it.
    fn alloc(&mut self, deadline: u64, value: T) -> u32 {
        self.len += 1;
        if self.free != NIL {
            let index = self.free;
            let entry = &mut self.entries[index as usize];
            self.free = entry.next;
            entry.value = Some(value);
            entry.deadline = deadline;
            return index;
        }
        let index = u32::try_from(self.entries.len())
            .ok()
            .filter(|&i| i != NIL)
            .expect("timer wheel: more than u32::MAX - 1 pending timers");
        self.entries.push(Entry {
            value: Some(value),
            deadline,
            prev: NIL,
            next: NIL,
            generation: 0,
            bucket: 0,
        });
        index
    }

    /// Free an unlinked entry: bump its generation, put it on the free list, return its value.
    fn release(&mut self, index: u32) -> Option<T> {
        let entry = &mut self.entries[index as usize];
        let value = entry.value.take();
        entry.generation = entry.generation.wrapping_add(1);
        entry.next = self.free;
        self.free = index;
        self.len -= 1;
        value
    }

    /// Free an unlinked entry and report it as fired.
    fn fire(&mut self, index: u32, fired: &mut Vec<(TimerId, u64, T)>) {
        let entry = &self.entries[index as usize];
        let id = TimerId {
            index,
            generation: entry.generation,
        };
        let deadline = entry.deadline;
        if let Some(value) = self.release(index) {
            fired.push((id, deadline, value));
        }
    }

    /// Fire the whole overdue list, sorted by deadline (stable, so FIFO among equals).
    fn fire_overdue(&mut self, fired: &mut Vec<(TimerId, u64, T)>) {
        let mut index = self.take_bucket(OVERDUE);
        let start = fired.len();
        while index != NIL {
            let next = self.entries[index as usize].next;
            self.fire(index, fired);
            index = next;
        }
        let batch = &mut fired[start..];
        if !batch.windows(2).all(|w| w[0].1 <= w[1].1) {
            batch.sort_by_key(|&(_, deadline, _)| deadline);
        }
    }

    /// Link an unlinked entry into the slot an insert at the wheel time would choose.
    /// Its deadline must not be before the wheel time.
    fn place(&mut self, index: u32) {
        let deadline = self.entries[index as usize].deadline;
        debug_assert!(deadline >= self.elapsed);
        // The highest bit where deadline and wheel time differ picks the level; bits below
        // 6 always count as differing so that level 0 is the floor.
        let differing = (self.elapsed ^ deadline) | (SLOTS as u64 - 1);
        let level = ((63 - differing.leading_zeros()) / SLOT_BITS) as usize;
        let slot = ((deadline >> (SLOT_BITS as usize * level)) as usize) & (SLOTS - 1);
        self.push_back(level * SLOTS + slot, index);
        self.occupied[level] |= 1 << slot;
        self.levels |= 1 << level;
    }

    /// The first occupied slot of the lowest occupied level, as (level, slot, slot start).
    fn first_slot(&self) -> Option<(usize, usize, u64)> {
        if self.levels == 0 {
            return None;
        }
        let level = self.levels.trailing_zeros() as usize;
        let slot = self.occupied[level].trailing_zeros() as usize;
        let shift = SLOT_BITS as usize * level;
        let window_bits = shift + SLOT_BITS as usize;
        let window_base = if window_bits >= 64 {
            0
        } else {
            self.elapsed >> window_bits << window_bits
        };
        debug_assert!(slot as u64 >= (self.elapsed >> shift) & (SLOTS as u64 - 1));
        Some((level, slot, window_base | ((slot as u64) << shift)))
    }

    /// Append an unlinked entry to a bucket's list.
    fn push_back(&mut self, bucket: usize, index: u32) {
        let list = &mut self.lists[bucket];
        let tail = list.tail;
        let entry = &mut self.entries[index as usize];
        list.min = list.min.min(entry.deadline);
        // BUCKETS is 705, so every bucket index fits in u16.
        entry.bucket = bucket as u16;
        entry.prev = tail;
        entry.next = NIL;
        if tail == NIL {
            self.lists[bucket].head = index;
        } else {
            self.entries[tail as usize].next = index;
        }
        self.lists[bucket].tail = index;
    }

    /// Remove a linked entry from its bucket's list, clearing occupancy bits as lists empty.
    fn unlink(&mut self, index: u32) {
        let entry = &self.entries[index as usize];
        let (bucket, prev, next) = (usize::from(entry.bucket), entry.prev, entry.next);
        if prev == NIL {
            self.lists[bucket].head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[bucket].tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
        if self.lists[bucket].head == NIL {
            self.lists[bucket] = EMPTY;
            self.clear_bit(bucket);
        }
    }

    /// Detach a bucket's whole list and return its head; the entries keep their `next` links.
    fn take_bucket(&mut self, bucket: usize) -> u32 {
        let head = self.lists[bucket].head;
        self.lists[bucket] = EMPTY;
        self.clear_bit(bucket);
        head
    }

    /// Mark a bucket empty in the occupancy bitmaps (no-op for the overdue list).
    fn clear_bit(&mut self, bucket: usize) {
        if bucket >= OVERDUE {
            return;
        }
        let (level, slot) = (bucket / SLOTS, bucket % SLOTS);
        self.occupied[level] &= !(1 << slot);
        if self.occupied[level] == 0 {
            self.levels &= !(1 << level);
        }
    }
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("now_ms", &self.elapsed)
            .field("len", &self.len)
            .field("next_deadline", &self.next_deadline())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    const HOUR: u64 = 3_600_000;
    const DAY: u64 = 24 * HOUR;

    fn run<T>(wheel: &mut TimerWheel<T>, now: u64) -> Vec<(TimerId, u64, T)> {
        let mut fired = Vec::new();
        wheel.advance(now, &mut fired);
        fired
    }

    fn values<T: Copy>(fired: &[(TimerId, u64, T)]) -> Vec<T> {
        fired.iter().map(|&(_, _, v)| v).collect()
    }

    fn deadlines<T>(fired: &[(TimerId, u64, T)]) -> Vec<u64> {
        fired.iter().map(|&(_, d, _)| d).collect()
    }

    #[test]
    fn fires_in_deadline_order_with_ids() {
        let mut wheel = TimerWheel::new(0);
        let input = [50, 3, 700, 64, 63, 4_095, 4_096, 1, 262_144, 70_000];
        let ids: Vec<TimerId> = input.iter().map(|&d| wheel.insert(d, d)).collect();
        assert_eq!(wheel.len(), input.len());
        let fired = run(&mut wheel, 1_000_000);
        let mut sorted = input.to_vec();
        sorted.sort_unstable();
        assert_eq!(deadlines(&fired), sorted);
        assert_eq!(values(&fired), sorted);
        for (id, deadline, _) in &fired {
            let at = input.iter().position(|d| d == deadline).unwrap();
            assert_eq!(*id, ids[at]);
        }
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn fires_at_the_first_advance_reaching_the_deadline() {
        let mut wheel = TimerWheel::new(0);
        let input = [0, 1, 2, 63, 64, 65, 127, 128, 4_095, 4_096, 4_097, 5_000];
        for &d in &input {
            wheel.insert(d, d);
        }
        let mut seen = Vec::new();
        for now in 0..=5_100 {
            for (_, deadline, value) in run(&mut wheel, now) {
                assert_eq!(deadline, now, "fired early or late");
                assert_eq!(value, deadline);
                seen.push(deadline);
            }
        }
        assert_eq!(seen, input);
    }

    #[test]
    fn same_ms_timers_fire_together_in_insertion_order() {
        let mut wheel = TimerWheel::new(0);
        for i in 0..50 {
            wheel.insert(10_000, i);
        }
        wheel.insert(9_999, 1_000);
        assert!(run(&mut wheel, 9_000).is_empty());
        // Inserted after the first ones were cascaded to a lower level: still after them.
        for i in 50..100 {
            wheel.insert(10_000, i);
        }
        wheel.insert(10_001, 2_000);
        let fired = run(&mut wheel, 10_000);
        assert_eq!(fired[0].2, 1_000);
        assert_eq!(values(&fired[1..]), (0..100).collect::<Vec<_>>());
        assert!(fired[1..].iter().all(|&(_, d, _)| d == 10_000));
        assert_eq!(wheel.len(), 1);
        assert_eq!(wheel.next_deadline(), Some(10_001));
    }

    #[test]
    fn deadline_at_or_before_now_fires_at_next_advance_sorted() {
        let mut wheel = TimerWheel::new(1_000);
        wheel.insert(990, "b");
        wheel.insert(1_000, "now");
        wheel.insert(500, "a");
        wheel.insert(999, "c");
        wheel.insert(0, "zero");
        wheel.insert(990, "b2");
        assert_eq!(wheel.next_deadline(), Some(0));
        // Same time as the wheel's: no time passes, but everything due fires.
        let fired = run(&mut wheel, 1_000);
        assert_eq!(values(&fired), ["zero", "a", "b", "b2", "c", "now"]);
        assert_eq!(deadlines(&fired), [0, 500, 990, 990, 999, 1_000]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn overdue_timers_fire_even_when_time_goes_back() {
        let mut wheel = TimerWheel::new(1_000);
        wheel.insert(10, 1);
        wheel.insert(1_001, 2);
        let fired = run(&mut wheel, 5);
        assert_eq!(values(&fired), [1]);
        assert_eq!(wheel.now_ms(), 1_000);
        assert_eq!(values(&run(&mut wheel, 1_001)), [2]);
    }

    #[test]
    fn advance_never_goes_backwards() {
        let mut wheel = TimerWheel::new(100);
        wheel.insert(120, ());
        assert!(run(&mut wheel, 50).is_empty());
        assert_eq!(wheel.now_ms(), 100);
        assert!(run(&mut wheel, 110).is_empty());
        assert!(run(&mut wheel, 60).is_empty());
        assert_eq!(wheel.now_ms(), 110);
        assert_eq!(run(&mut wheel, 120).len(), 1);
    }

    #[test]
    fn cancel_before_and_after_fire() {
        let mut wheel = TimerWheel::new(0);
        let a = wheel.insert(100, "a");
        let b = wheel.insert(200, "b");
        let past = wheel.insert(0, "past");
        assert!(wheel.contains(a));
        assert_eq!(wheel.cancel(a), Some("a"));
        assert!(!wheel.contains(a));
        assert_eq!(wheel.cancel(a), None);
        assert_eq!(wheel.cancel(past), Some("past"));
        assert_eq!(wheel.len(), 1);
        assert_eq!(wheel.next_deadline(), Some(200));
        let fired = run(&mut wheel, 1_000);
        assert_eq!(fired, vec![(b, 200, "b")]);
        assert!(!wheel.contains(b));
        assert_eq!(wheel.cancel(b), None);
        assert!(wheel.is_empty());
    }

    #[test]
    fn cancel_keeps_the_rest_of_a_slot() {
        let mut wheel = TimerWheel::new(0);
        let ids: Vec<_> = (0..5).map(|i| wheel.insert(5_000, i)).collect();
        assert_eq!(wheel.cancel(ids[0]), Some(0)); // head
        assert_eq!(wheel.cancel(ids[4]), Some(4)); // tail
        assert_eq!(wheel.cancel(ids[2]), Some(2)); // middle
        assert_eq!(values(&run(&mut wheel, 5_000)), [1, 3]);
        // A slot emptied by cancels is skipped.
        let lone = wheel.insert(6_000, 9);
        wheel.cancel(lone);
        assert_eq!(wheel.next_deadline(), None);
        assert!(run(&mut wheel, 10_000).is_empty());
    }

    #[test]
    fn stale_id_does_not_touch_the_slot_s_new_tenant() {
        let mut wheel = TimerWheel::new(0);
        let a = wheel.insert(10, "a");
        assert_eq!(wheel.cancel(a), Some("a"));
        let b = wheel.insert(20, "b");
        assert_eq!(a.index, b.index, "slab entry reused");
        assert_ne!(a, b);
        assert!(!wheel.contains(a));
        assert_eq!(wheel.cancel(a), None);
        assert!(wheel.contains(b));

        let fired = run(&mut wheel, 20);
        assert_eq!(fired, vec![(b, 20, "b")]);
        let c = wheel.insert(30, "c");
        assert_eq!(c.index, b.index, "slab entry reused after fire");
        assert_eq!(wheel.cancel(b), None);
        assert_eq!(values(&run(&mut wheel, 30)), ["c"]);
    }

    #[test]
    fn long_jumps_fire_everything_due() {
        let mut wheel = TimerWheel::new(0);
        let input = [
            5,
            HOUR,
            DAY,
            3 * DAY,
            30 * DAY,
            365 * DAY,
            HOUR + 1,
            4 * HOUR,
        ];
        for &d in &input {
            wheel.insert(d, d);
        }
        let fired = run(&mut wheel, 2 * DAY);
        assert_eq!(deadlines(&fired), [5, HOUR, HOUR + 1, 4 * HOUR, DAY]);
        assert_eq!(wheel.len(), 3);
        assert!(wheel.next_deadline().unwrap() <= 3 * DAY);
        let fired = run(&mut wheel, u64::MAX);
        assert_eq!(deadlines(&fired), [3 * DAY, 30 * DAY, 365 * DAY]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn extreme_deadlines_and_start_times() {
        let mut wheel = TimerWheel::new(0);
        wheel.insert(u64::MAX, "max");
        wheel.insert(1 << 63, "half");
        wheel.insert(u64::MAX - 1, "max-1");
        assert!(run(&mut wheel, (1 << 63) - 1).is_empty());
        assert_eq!(values(&run(&mut wheel, 1 << 63)), ["half"]);
        assert!(run(&mut wheel, u64::MAX - 2).is_empty());
        assert_eq!(wheel.next_deadline(), Some(u64::MAX - 1));
        assert_eq!(values(&run(&mut wheel, u64::MAX)), ["max-1", "max"]);

        let mut wheel = TimerWheel::new(u64::MAX - 10);
        wheel.insert(u64::MAX, 1);
        wheel.insert(u64::MAX - 5, 2);
        wheel.insert(u64::MAX - 20, 3);
        assert_eq!(values(&run(&mut wheel, u64::MAX)), [3, 2, 1]);
        wheel.insert(u64::MAX, 4);
        assert_eq!(values(&run(&mut wheel, u64::MAX)), [4]);
    }

    /// Sleep until `next_deadline()` and advance, as an idle loop does, until something
    /// fires; returns the number of wake-ups and what fired. Checks that no answer is late.
    fn idle_loop(wheel: &mut TimerWheel<u64>, deadline: u64) -> (usize, Vec<(TimerId, u64, u64)>) {
        let mut last = wheel.now_ms();
        for wakeups in 1..=2 * LEVELS {
            let t = wheel.next_deadline().expect("timer pending");
            assert!(t <= deadline, "next_deadline {t} after deadline {deadline}");
            assert!(t >= last, "next_deadline went back from {last} to {t}");
            last = t;
            let fired = run(wheel, t);
            if !fired.is_empty() {
                return (wakeups, fired);
            }
        }
        panic!("nothing fired after {} wake-ups", 2 * LEVELS);
    }

    const STARTS: [u64; 7] = [0, 1, 63, 4_095, 123_456_789, 1 << 40, u64::MAX - (1 << 30)];
    const DELAYS: [u64; 11] = [
        0,
        1,
        64,
        100,
        4_096,
        70_000,
        HOUR,
        3 * HOUR,
        DAY,
        400 * DAY,
        1 << 50,
    ];

    #[test]
    fn next_deadline_is_exact_without_cancels() {
        for start in STARTS {
            for delay in DELAYS {
                let deadline = start.saturating_add(delay);
                let mut wheel = TimerWheel::new(start);
                let id = wheel.insert(deadline, 7);
                assert_eq!(wheel.next_deadline(), Some(deadline));
                let (wakeups, fired) = idle_loop(&mut wheel, deadline);
                assert_eq!(fired, vec![(id, deadline, 7)]);
                assert_eq!(wakeups, 1, "start {start} delay {delay}");
            }
        }
    }

    #[test]
    fn next_deadline_after_cancels_is_early_never_late_and_wakeups_are_few() {
        let mut most = 0;
        for start in STARTS {
            for delay in DELAYS {
                let deadline = start.saturating_add(delay);
                let mut wheel = TimerWheel::new(start);
                let id = wheel.insert(deadline, 7);
                // Cancelled decoys just before the deadline leave stale slot minimums.
                for back in [1, 2, 100, 5_000, 300_000, HOUR, DAY] {
                    if let Some(d) = deadline.checked_sub(back).filter(|&d| d > start) {
                        let decoy = wheel.insert(d, 0);
                        assert!(wheel.next_deadline().unwrap() <= d);
                        assert_eq!(wheel.cancel(decoy), Some(0));
                    }
                }
                let (wakeups, fired) = idle_loop(&mut wheel, deadline);
                assert_eq!(fired, vec![(id, deadline, 7)]);
                assert!(
                    wakeups <= LEVELS,
                    "{wakeups} wakeups for start {start} delay {delay}"
                );
                most = most.max(wakeups);
            }
        }
        assert!(most > 1, "the decoys never left a stale bound");
    }

    #[test]
    fn storage_is_reused_without_growth() {
        let mut wheel = TimerWheel::with_capacity(0, 64);
        let cap = wheel.entries.capacity();
        for round in 0..20u64 {
            let now = wheel.now_ms();
            let ids: Vec<_> = (0..64).map(|i| wheel.insert(now + 1 + i * 97, i)).collect();
            if round % 2 == 0 {
                for id in ids {
                    assert!(wheel.cancel(id).is_some());
                }
            } else {
                assert_eq!(run(&mut wheel, now + 64 * 97).len(), 64);
            }
            assert!(wheel.is_empty());
        }
        assert_eq!(wheel.entries.len(), 64);
        assert_eq!(wheel.entries.capacity(), cap);
    }

    #[test]
    fn fired_is_appended_not_cleared() {
        let mut wheel = TimerWheel::new(0);
        wheel.insert(5, 5);
        let mut fired = Vec::new();
        wheel.advance(10, &mut fired);
        wheel.insert(3, 3);
        wheel.insert(1, 1);
        wheel.insert(12, 12);
        wheel.advance(12, &mut fired);
        assert_eq!(values(&fired), [5, 1, 3, 12]);
    }

    #[test]
    fn debug_shows_time_and_size() {
        let mut wheel = TimerWheel::new(7);
        wheel.insert(9, ());
        let text = format!("{wheel:?}");
        assert!(text.contains("now_ms: 7"), "{text}");
        assert!(text.contains("len: 1"), "{text}");
        assert!(text.contains("next_deadline: Some(9)"), "{text}");
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64),
        InsertPast(u64),
        Cancel(usize),
        Advance(u64),
        AdvanceBack(u64),
    }

    fn delay() -> impl Strategy<Value = u64> {
        prop_oneof![
            4 => 0u64..64,
            3 => 0u64..4_096,
            2 => 0u64..262_144,
            1 => 0u64..(1 << 24),
        ]
    }

    fn step() -> impl Strategy<Value = u64> {
        prop_oneof![
            4 => 0u64..64,
            2 => 0u64..5_000,
            1 => 0u64..(1 << 24),
            1 => (1u64 << 24)..(1 << 40),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => delay().prop_map(Op::Insert),
            1 => (1u64..100_000).prop_map(Op::InsertPast),
            2 => any::<usize>().prop_map(Op::Cancel),
            4 => step().prop_map(Op::Advance),
            1 => (1u64..1_000).prop_map(Op::AdvanceBack),
        ]
    }

    fn start() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(0u64),
            0u64..(1 << 40),
            any::<u64>(),
            (u64::MAX - (1 << 28))..=u64::MAX,
        ]
    }

    /// The reference: a min-heap of (deadline, insertion seq) with lazy deletion.
    struct Model {
        now: u64,
        heap: BinaryHeap<Reverse<(u64, usize)>>,
        /// Per insertion seq: the wheel's id, the deadline, still pending?
        issued: Vec<(TimerId, u64, bool)>,
        live: usize,
    }

    impl Model {
        fn min(&mut self) -> Option<u64> {
            while let Some(&Reverse((deadline, seq))) = self.heap.peek() {
                if self.issued[seq].2 {
                    return Some(deadline);
                }
                self.heap.pop();
            }
            None
        }

        fn advance(&mut self, to: u64) -> Vec<(TimerId, u64, usize)> {
            self.now = self.now.max(to);
            let mut due = Vec::new();
            while let Some(&Reverse((deadline, seq))) = self.heap.peek() {
                if deadline > self.now {
                    break;
                }
                self.heap.pop();
                if self.issued[seq].2 {
                    self.issued[seq].2 = false;
                    self.live -= 1;
                    due.push((self.issued[seq].0, deadline, seq));
                }
            }
            due
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn matches_binary_heap_model(
            start in start(),
            ops in proptest::collection::vec(op(), 1..300),
        ) {
            let mut wheel = TimerWheel::new(start);
            let mut model = Model { now: start, heap: BinaryHeap::new(), issued: Vec::new(), live: 0 };
            let mut fired = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(_) | Op::InsertPast(_) => {
                        let deadline = match op {
                            Op::Insert(d) => model.now.saturating_add(d),
                            Op::InsertPast(b) => model.now.saturating_sub(b),
                            _ => unreachable!(),
                        };
                        let seq = model.issued.len();
                        let id = wheel.insert(deadline, seq);
                        prop_assert!(wheel.contains(id));
                        model.issued.push((id, deadline, true));
                        model.heap.push(Reverse((deadline, seq)));
                        model.live += 1;
                    }
                    Op::Cancel(pick) => {
                        if model.issued.is_empty() {
                            continue;
                        }
                        let seq = pick % model.issued.len();
                        let (id, _, live) = model.issued[seq];
                        prop_assert_eq!(wheel.contains(id), live);
                        let expected = if live { Some(seq) } else { None };
                        prop_assert_eq!(wheel.cancel(id), expected);
                        prop_assert!(!wheel.contains(id));
                        if live {
                            model.issued[seq].2 = false;
                            model.live -= 1;
                        }
                    }
                    Op::Advance(_) | Op::AdvanceBack(_) => {
                        let to = match op {
                            Op::Advance(s) => model.now.saturating_add(s),
                            Op::AdvanceBack(b) => model.now.saturating_sub(b),
                            _ => unreachable!(),
                        };
                        fired.clear();
                        wheel.advance(to, &mut fired);
                        let expected = model.advance(to);
                        prop_assert_eq!(&fired, &expected);
                        prop_assert_eq!(wheel.now_ms(), model.now);
                    }
                }
                prop_assert_eq!(wheel.len(), model.live);
                prop_assert_eq!(wheel.is_empty(), model.live == 0);
                match (wheel.next_deadline(), model.min()) {
                    (None, None) => {}
                    (Some(got), Some(min)) => prop_assert!(got <= min, "next_deadline {} > min {}", got, min),
                    (got, min) => prop_assert!(false, "next_deadline {:?} but model min {:?}", got, min),
                }
            }
            fired.clear();
            wheel.advance(u64::MAX, &mut fired);
            prop_assert_eq!(&fired, &model.advance(u64::MAX));
            prop_assert!(wheel.is_empty());
        }
    }
}
