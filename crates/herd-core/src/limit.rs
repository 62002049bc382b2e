//! Request-rate limits per client address, shared by every loop and every worker process:
//! nginx's `limit_req` (`rate`, `burst`, `nodelay`).
//!
//! A [`RateLimit`] decides for each request from a client address whether it passes now,
//! waits its turn ([`Verdict::Delay`]) or is refused ([`Verdict::Reject`]). The algorithm is
//! GCRA, the leaky bucket's exact equivalent that keeps one number per client: its
//! *theoretical arrival time* (TAT), the moment the bucket would be empty. A request at `now`
//! takes `tat' = max(tat, now) + 1/rate` if `max(tat, now) - now <= burst/rate`, else it is
//! refused; without `nodelay` it is served at `max(tat, now)`, so the bucket leaks at `rate`.
//!
//! The numbers live in a [`RateTable`]: a fixed array of 64-bit words, each holding a client's
//! 20-bit tag and its TAT (microseconds, modulo 2^44), updated with one compare-and-swap and
//! no lock. Clients hash (SipHash, keyed with the table's random seed) to a set of 8 words,
//! one cache line; a new client takes a word whose bucket has drained, or else evicts the
//! fullest-drained one (counted in [`RateTable::evictions`]). The table can sit in ordinary
//! memory (loops of one process share it by `Arc`) or in a memory file that a parent maps and
//! passes to its children ([`RateTable::create_shared`], [`RateTable::from_file`]): the `herd`
//! master makes one per limited listener, so a worker count never multiplies a limit. Time is
//! the system-wide monotonic clock, the same in every process, or an injected [`Clock`](crate::clock::Clock) in
//! tests. This module never blocks, allocates per check, or reads anything but the table.
//! Callers: the HTTP server (before routing), and whoever wants a limit of their own.

use std::fs::File;
use std::hash::{BuildHasher, Hash, Hasher};
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::SharedClock;

/// Words in a table's header (one cache line): magic, entry count, seed, evictions.
const HEADER: usize = 8;
/// Entries per set (one 64-byte cache line).
const WAYS: usize = 8;
/// `"herdrate"` as a little-endian word: marks a formatted table.
const MAGIC: u64 = u64::from_le_bytes(*b"herdrate");
/// Bits of an entry holding the TAT.
const TIME_BITS: u32 = 44;
const TIME_MASK: u64 = (1 << TIME_BITS) - 1;
/// The longest `burst / rate` a limit may have (TATs compare modulo 2^44 µs, ~203 days; a
/// day keeps every comparison far from the wrap).
pub const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// A request rate: `per` requests per second, as nginx writes `10r/s` or `30r/m`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    per_sec: f64,
}

impl Rate {
    /// `n` requests per second.
    pub fn per_second(n: f64) -> Rate {
        Rate { per_sec: n }
    }

    /// `n` requests per minute.
    pub fn per_minute(n: f64) -> Rate {
        Rate { per_sec: n / 60.0 }
    }

    /// Parse nginx's notation: `"10r/s"`, `"30r/m"` (a bare number means per second).
    ///
    /// ```
    /// use herd_core::limit::Rate;
    /// assert_eq!(Rate::parse("10r/s"), Some(Rate::per_second(10.0)));
    /// assert_eq!(Rate::parse("30r/m"), Some(Rate::per_minute(30.0)));
    /// assert_eq!(Rate::parse("5"), Some(Rate::per_second(5.0)));
    /// assert_eq!(Rate::parse("0r/s"), None);
    /// assert_eq!(Rate::parse("fast"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Rate> {
        let s = s.trim();
        let (num, per_min) = if let Some(n) = s.strip_suffix("r/s") {
            (n, false)
        } else if let Some(n) = s.strip_suffix("r/m") {
            (n, true)
        } else {
            (s, false)
        };
        let n: f64 = num.trim().parse().ok()?;
        if !n.is_finite() || n <= 0.0 {
            return None;
        }
        Some(if per_min {
            Rate::per_minute(n)
        } else {
            Rate::per_second(n)
        })
    }

    /// Requests per second.
    pub fn per_sec(self) -> f64 {
        self.per_sec
    }

    /// The time one request takes from the bucket, in microseconds (at least 1).
    fn interval_us(self) -> u64 {
        ((1e6 / self.per_sec).round() as u64).clamp(1, TIME_MASK >> 2)
    }
}

/// What a [`RateLimit`] says of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Serve it now.
    Pass,
    /// Serve it after this long (within `burst`, without `nodelay`).
    Delay(Duration),
    /// Past `burst`: refuse it.
    Reject,
}

/// Where a table's words live.
enum Words {
    Heap(Box<[AtomicU64]>),
    Mapped(crate::sys::SharedWords),
}

/// The per-client state of one or more [`RateLimit`]s (see the module docs).
pub struct RateTable {
    words: Words,
    /// Mixed into every key's hash (the header's copy, read once).
    seed: u64,
    sets: usize,
}

impl std::fmt::Debug for RateTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateTable")
            .field("entries", &self.entries())
            .field("shared", &matches!(self.words, Words::Mapped(_)))
            .finish()
    }
}

/// `entries` rounded up to whole sets (at least one).
fn sets_for(entries: usize) -> usize {
    entries.div_ceil(WAYS).max(1)
}

fn random_seed() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(0x6865_7264u64)
}

impl RateTable {
    /// A table in this process's memory for about `entries` clients (rounded up to a multiple
    /// of 8): share it between loops with an `Arc`.
    pub fn new(entries: usize) -> RateTable {
        let sets = sets_for(entries);
        let words: Box<[AtomicU64]> = (0..HEADER + sets * WAYS)
            .map(|_| AtomicU64::new(0))
            .collect();
        let seed = random_seed();
        words[0].store(MAGIC, Ordering::Relaxed);
        words[1].store((sets * WAYS) as u64, Ordering::Relaxed);
        words[2].store(seed, Ordering::Relaxed);
        RateTable {
            words: Words::Heap(words),
            seed,
            sets,
        }
    }

    /// A formatted table for about `entries` clients in a fresh memory file (never on disk),
    /// for a parent to pass to the processes that [`from_file`](Self::from_file) it. 8 bytes
    /// per entry plus 64.
    pub fn create_shared(entries: usize) -> io::Result<File> {
        let sets = sets_for(entries);
        let words = HEADER + sets * WAYS;
        let file = crate::sys::memory_file("herd-limit-req", (words * 8) as u64)?;
        let mut head = Vec::with_capacity(24);
        head.extend_from_slice(&MAGIC.to_ne_bytes());
        head.extend_from_slice(&((sets * WAYS) as u64).to_ne_bytes());
        head.extend_from_slice(&random_seed().to_ne_bytes());
        file.write_all_at(&head, 0)?;
        Ok(file)
    }

    /// Map a table made by [`create_shared`](Self::create_shared) (in this process or a
    /// parent): every process that maps it shares its clients' state.
    pub fn from_file(file: &File) -> io::Result<RateTable> {
        let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, m.to_string());
        let mut head = [0u8; 16];
        file.read_exact_at(&mut head, 0)?;
        let word = |i: usize| u64::from_ne_bytes(head[i * 8..i * 8 + 8].try_into().unwrap());
        if word(0) != MAGIC {
            return Err(bad("not a rate-limit table"));
        }
        let entries = usize::try_from(word(1)).map_err(|_| bad("bad entry count"))?;
        if entries == 0 || entries % WAYS != 0 {
            return Err(bad("bad entry count"));
        }
        let mapped = crate::sys::SharedWords::map(file, HEADER + entries)?;
        let seed = mapped.words()[2].load(Ordering::Relaxed);
        Ok(RateTable {
            words: Words::Mapped(mapped),
            seed,
            sets: entries / WAYS,
        })
    }

    fn words(&self) -> &[AtomicU64] {
        match &self.words {
            Words::Heap(w) => w,
            Words::Mapped(m) => m.words(),
        }
    }

    /// How many clients the table holds at once.
    pub fn entries(&self) -> usize {
        self.sets * WAYS
    }

    /// Clients whose bucket was not yet drained when another client took their entry (they
    /// start afresh): a table too small for its clients.
    pub fn evictions(&self) -> u64 {
        self.words()[3].load(Ordering::Relaxed)
    }

    /// The set and tag of `key`.
    fn place(&self, key: IpAddr) -> (usize, u64) {
        let key = key.to_canonical();
        let mut h = std::hash::DefaultHasher::new();
        self.seed.hash(&mut h);
        key.hash(&mut h);
        let h = h.finish();
        let set = (((h & 0xFFFF_FFFF) * self.sets as u64) >> 32) as usize;
        let tag = (h >> TIME_BITS).max(1);
        (set, tag)
    }
}

/// A per-client rate limit over a [`RateTable`] (see the module docs).
///
/// ```
/// use std::net::IpAddr;
/// use std::sync::Arc;
/// use herd_core::limit::{Rate, RateLimit, RateTable, Verdict};
///
/// let table = Arc::new(RateTable::new(1024));
/// let limit = RateLimit::new(Rate::per_second(1.0), 1, table).nodelay(true);
/// let ip: IpAddr = "192.0.2.7".parse().unwrap();
/// let t = 5_000_000; // microseconds on the limit's clock
/// assert_eq!(limit.check_at(ip, t), Verdict::Pass); // the first request
/// assert_eq!(limit.check_at(ip, t), Verdict::Pass); // the burst of one
/// assert_eq!(limit.check_at(ip, t), Verdict::Reject);
/// assert_eq!(limit.check_at(ip, t + 1_000_000), Verdict::Pass); // one second leaked
/// ```
#[derive(Clone)]
pub struct RateLimit {
    interval_us: u64,
    tolerance_us: u64,
    nodelay: bool,
    table: Arc<RateTable>,
    clock: Option<SharedClock>,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("interval_us", &self.interval_us)
            .field("burst", &(self.tolerance_us / self.interval_us))
            .field("nodelay", &self.nodelay)
            .field("table", &self.table)
            .finish()
    }
}

impl RateLimit {
    /// `rate` requests per client, `burst` more allowed at once (delayed to the rate, or
    /// served at once with [`nodelay`](Self::nodelay)); state in `table`. `burst / rate` is
    /// capped at [`MAX_WINDOW`].
    pub fn new(rate: Rate, burst: u32, table: Arc<RateTable>) -> RateLimit {
        let interval_us = rate.interval_us();
        let cap = MAX_WINDOW.as_micros() as u64;
        RateLimit {
            interval_us,
            tolerance_us: interval_us.saturating_mul(u64::from(burst)).min(cap),
            nodelay: false,
            table,
            clock: None,
        }
    }

    /// Serve requests within the burst at once instead of spacing them out at the rate
    /// (nginx's `nodelay`). Default: off, as in nginx.
    pub fn nodelay(mut self, on: bool) -> RateLimit {
        self.nodelay = on;
        self
    }

    /// Read time from `clock` (milliseconds) instead of the system's monotonic clock: for
    /// tests. Every user of one shared table must use the same clock.
    pub fn clock(mut self, clock: SharedClock) -> RateLimit {
        self.clock = Some(clock);
        self
    }

    /// The table this limit keeps its clients in.
    pub fn table(&self) -> &Arc<RateTable> {
        &self.table
    }

    /// The verdict on a request from `key` now.
    pub fn check(&self, key: IpAddr) -> Verdict {
        let now = match &self.clock {
            Some(c) => c.now_ms().saturating_mul(1000),
            None => crate::sys::monotonic_us(),
        };
        self.check_at(key, now)
    }

    /// The verdict on a request from `key` at `now_us` (microseconds on the clock every
    /// user of the table shares).
    pub fn check_at(&self, key: IpAddr, now_us: u64) -> Verdict {
        let table = &self.table;
        let (set, tag) = table.place(key);
        let words = table.words();
        let entries = &words[HEADER + set * WAYS..HEADER + (set + 1) * WAYS];
        let now = now_us & TIME_MASK;
        // An entry's TAT lies at most tolerance + interval ahead of now; anything else is in
        // the past (or so old that it wrapped): a drained bucket.
        let horizon = self.tolerance_us + self.interval_us;
        let ahead = |w: u64| -> u64 {
            let d = (w.wrapping_sub(now)) & TIME_MASK;
            if w == 0 || d > horizon {
                0
            } else {
                d
            }
        };
        // Lock-free: a failed compare-and-swap means another user moved the set on; look again.
        loop {
            let mut found = None;
            let mut victim = (0usize, u64::MAX, 0u64);
            for (i, e) in entries.iter().enumerate() {
                let w = e.load(Ordering::Relaxed);
                if w != 0 && w >> TIME_BITS == tag {
                    found = Some((i, w));
                    break;
                }
                let a = ahead(w);
                if a < victim.1 {
                    victim = (i, a, w);
                }
            }
            let (i, old, wait, evicted) = match found {
                Some((i, w)) => (i, w, ahead(w), false),
                None => (victim.0, victim.2, 0, victim.1 > 0),
            };
            if wait > self.tolerance_us {
                return Verdict::Reject;
            }
            let tat = (now + wait + self.interval_us) & TIME_MASK;
            let new = (tag << TIME_BITS) | tat;
            if entries[i]
                .compare_exchange(old, new, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                if evicted {
                    words[3].fetch_add(1, Ordering::Relaxed);
                }
                return if wait == 0 || self.nodelay {
                    Verdict::Pass
                } else {
                    Verdict::Delay(Duration::from_micros(wait))
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn burst_then_rate() {
        let limit =
            RateLimit::new(Rate::per_second(10.0), 5, Arc::new(RateTable::new(64))).nodelay(true);
        let a = ip("10.0.0.1");
        let t0 = 1_000_000_000;
        // The first request and a burst of 5 pass at once, the seventh is refused.
        for _ in 0..6 {
            assert_eq!(limit.check_at(a, t0), Verdict::Pass);
        }
        assert_eq!(limit.check_at(a, t0), Verdict::Reject);
        // A refused request takes nothing: 100 ms later exactly one more passes.
        assert_eq!(limit.check_at(a, t0 + 99_999), Verdict::Reject);
        assert_eq!(limit.check_at(a, t0 + 100_000), Verdict::Pass);
        assert_eq!(limit.check_at(a, t0 + 100_000), Verdict::Reject);
        // Another client has its own bucket.
        assert_eq!(limit.check_at(ip("10.0.0.2"), t0), Verdict::Pass);
        // After the bucket drains, the whole burst is back.
        let later = t0 + 10_000_000;
        for _ in 0..6 {
            assert_eq!(limit.check_at(a, later), Verdict::Pass);
        }
        assert_eq!(limit.check_at(a, later), Verdict::Reject);
    }

    #[test]
    fn without_nodelay_the_burst_waits_its_turn() {
        let limit = RateLimit::new(Rate::per_second(2.0), 3, Arc::new(RateTable::new(64)));
        let a = ip("2001:db8::1");
        let t0 = 50_000_000;
        assert_eq!(limit.check_at(a, t0), Verdict::Pass);
        for k in 1..=3u64 {
            assert_eq!(
                limit.check_at(a, t0),
                Verdict::Delay(Duration::from_millis(500 * k))
            );
        }
        assert_eq!(limit.check_at(a, t0), Verdict::Reject);
        // 600 ms later the queue has moved on by one slot and a bit.
        assert_eq!(
            limit.check_at(a, t0 + 600_000),
            Verdict::Delay(Duration::from_millis(1400))
        );
    }

    #[test]
    fn burst_zero_is_the_bare_rate() {
        let limit = RateLimit::new(Rate::per_minute(60.0), 0, Arc::new(RateTable::new(8)));
        let a = ip("192.0.2.1");
        assert_eq!(limit.check_at(a, 7_000_000), Verdict::Pass);
        assert_eq!(limit.check_at(a, 7_500_000), Verdict::Reject);
        assert_eq!(limit.check_at(a, 8_000_000), Verdict::Pass);
    }

    #[test]
    fn mapped_v4_and_v4_are_one_client() {
        let limit = RateLimit::new(Rate::per_second(1.0), 0, Arc::new(RateTable::new(8)));
        assert_eq!(limit.check_at(ip("192.0.2.9"), 1_000_000), Verdict::Pass);
        assert_eq!(
            limit.check_at(ip("::ffff:192.0.2.9"), 1_000_000),
            Verdict::Reject
        );
    }

    #[test]
    fn a_full_table_evicts_a_drained_bucket_first_and_counts_live_evictions() {
        // One set of 8: nine clients.
        let table = Arc::new(RateTable::new(8));
        let limit = RateLimit::new(Rate::per_second(1.0), 0, table.clone());
        let t = 3_000_000;
        for i in 0..8 {
            assert_eq!(limit.check_at(ip(&format!("10.1.0.{i}")), t), Verdict::Pass);
        }
        assert_eq!(table.evictions(), 0);
        // All eight are live: the ninth evicts one.
        assert_eq!(limit.check_at(ip("10.1.0.8"), t), Verdict::Pass);
        assert_eq!(table.evictions(), 1);
        // Two seconds on, every bucket drained: a newcomer evicts nothing live.
        assert_eq!(limit.check_at(ip("10.1.0.9"), t + 2_000_000), Verdict::Pass);
        assert_eq!(table.evictions(), 1);
    }

    #[test]
    fn time_wraps_without_limiting_anyone() {
        let limit = RateLimit::new(Rate::per_second(1.0), 0, Arc::new(RateTable::new(8)));
        let a = ip("10.9.9.9");
        let edge = TIME_MASK - 300_000; // 0.3 s before the 44-bit wrap
        assert_eq!(limit.check_at(a, edge), Verdict::Pass);
        assert_eq!(limit.check_at(a, edge + 500_000), Verdict::Reject);
        assert_eq!(limit.check_at(a, edge + 1_000_000), Verdict::Pass);
        // A stale entry from long ago (more than the horizon behind) reads as drained.
        assert_eq!(limit.check_at(a, edge + 3_600_000_000), Verdict::Pass);
    }

    #[test]
    fn a_shared_table_is_one_limit_for_every_mapping() {
        let file = RateTable::create_shared(100).unwrap();
        let one = Arc::new(RateTable::from_file(&file).unwrap());
        let two = Arc::new(RateTable::from_file(&file.try_clone().unwrap()).unwrap());
        assert_eq!(one.entries(), 104);
        let a = RateLimit::new(Rate::per_second(1.0), 1, one).nodelay(true);
        let b = RateLimit::new(Rate::per_second(1.0), 1, two).nodelay(true);
        let c = ip("198.51.100.4");
        assert_eq!(a.check_at(c, 9_000_000), Verdict::Pass);
        assert_eq!(b.check_at(c, 9_000_000), Verdict::Pass);
        assert_eq!(a.check_at(c, 9_000_000), Verdict::Reject);
        assert_eq!(b.check_at(c, 9_000_000), Verdict::Reject);
    }

    #[test]
    fn a_file_that_is_not_a_table_is_refused() {
        let file = crate::sys::memory_file("not-a-table", 4096).unwrap();
        assert!(RateTable::from_file(&file).is_err());
    }

    #[test]
    fn threads_never_let_more_through_than_the_burst() {
        let limit =
            RateLimit::new(Rate::per_minute(1.0), 99, Arc::new(RateTable::new(64))).nodelay(true);
        let passed = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        if limit.check_at(ip("10.2.2.2"), 5_000_000) == Verdict::Pass {
                            passed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(passed.load(Ordering::Relaxed), 100);
    }
}
