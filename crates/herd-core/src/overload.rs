//! The overload guard: a memory budget for the bytes connections hold, and what a server does
//! as it fills (after Envoy's overload manager).
//!
//! A [`MemoryBudget`] is shared by every loop of every server that is given it (the `herd`
//! worker gives one to all its listeners). Each loop measures what its connections hold —
//! unread input in read buffers, output queued and not yet taken by the peer, and what the
//! protocol keeps aside (a request body being assembled, see
//! [`Handler::held_bytes`](crate::Handler::held_bytes)) — every [`SCAN_MS`] and sooner once it
//! has read a sixteenth of the budget since its last look, and publishes its total here. The
//! sum decides the [`Level`]:
//!
//! - [`Level::Soft`] (at 80% of the budget): keep-alive ends (HTTP answers say
//!   `Connection: close`), and each loop stops reading from its largest holders until what they
//!   hold covers its share of the excess.
//! - [`Level::Hard`] (at the budget): new HTTP requests are answered `503`, loops stop
//!   accepting, and the largest holders are reset ([`CloseReason::Overload`](crate::CloseReason))
//!   until the rest fits under the soft mark.
//! - Back to [`Level::Normal`] once the total is under 90% of the soft mark: paused
//!   connections are read again and accepting resumes.
//!
//! Each change of level is logged once and counted. This module keeps the numbers and the
//! level; the loops act on them (`event_loop`), so it reads no sockets and takes no lock.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

/// How often a loop with a budget measures what its connections hold (ms).
pub const SCAN_MS: u64 = 50;

/// How full a [`MemoryBudget`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Under the soft mark: nothing is held back.
    Normal = 0,
    /// Past the soft mark (80%): no keep-alive, the largest holders are not read.
    Soft = 1,
    /// Past the budget: new requests get 503, no accepting, the largest holders are reset.
    Hard = 2,
}

impl Level {
    fn from_u8(v: u8) -> Level {
        match v {
            0 => Level::Normal,
            1 => Level::Soft,
            _ => Level::Hard,
        }
    }

    /// `normal`, `soft` or `hard`, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Normal => "normal",
            Level::Soft => "soft",
            Level::Hard => "hard",
        }
    }
}

/// A memory budget shared by loops (see the module docs).
///
/// ```
/// use herd_core::overload::{Level, MemoryBudget};
///
/// let budget = MemoryBudget::new(10 << 20); // 10 MiB: soft at 8 MiB
/// assert_eq!(budget.soft(), 8 << 20);
/// let mut me = budget.reporter();
/// assert_eq!(me.publish(9 << 20), Level::Soft);
/// assert_eq!(me.publish(11 << 20), Level::Hard);
/// // Under the soft mark but above 90% of it: still hard (no flapping).
/// assert_eq!(me.publish(15 << 19), Level::Hard);
/// assert_eq!(me.publish(1 << 20), Level::Normal);
/// assert_eq!(budget.entered(Level::Hard), 1);
/// ```
#[derive(Debug)]
pub struct MemoryBudget {
    hard: u64,
    soft: u64,
    held: AtomicU64,
    level: AtomicU8,
    peak: AtomicU64,
    /// Times the level rose to soft / hard.
    entered: [AtomicU64; 2],
}

impl MemoryBudget {
    /// A budget of `bytes` (the hard mark); the soft mark is 80% of it.
    pub fn new(bytes: u64) -> Arc<MemoryBudget> {
        let hard = bytes.max(1);
        Arc::new(MemoryBudget {
            hard,
            soft: hard / 5 * 4,
            held: AtomicU64::new(0),
            level: AtomicU8::new(Level::Normal as u8),
            peak: AtomicU64::new(0),
            entered: [AtomicU64::new(0), AtomicU64::new(0)],
        })
    }

    /// The budget (the hard mark).
    pub fn hard(&self) -> u64 {
        self.hard
    }

    /// The soft mark (80% of the budget).
    pub fn soft(&self) -> u64 {
        self.soft
    }

    /// Where the level goes back to normal: 90% of the soft mark.
    pub fn exit(&self) -> u64 {
        self.soft / 10 * 9
    }

    /// The bytes held, as last published by every loop.
    pub fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// The most ever held at one publication.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// The current level.
    #[inline]
    pub fn level(&self) -> Level {
        Level::from_u8(self.level.load(Ordering::Relaxed))
    }

    /// How many times the level rose to `level` (0 for [`Level::Normal`]).
    pub fn entered(&self, level: Level) -> u64 {
        match level {
            Level::Normal => 0,
            Level::Soft => self.entered[0].load(Ordering::Relaxed),
            Level::Hard => self.entered[1].load(Ordering::Relaxed),
        }
    }

    /// A handle for one loop to publish its total through.
    pub fn reporter(self: &Arc<Self>) -> BudgetReporter {
        BudgetReporter {
            budget: self.clone(),
            last: 0,
        }
    }

    /// The level for `held` coming from `cur`, with the exit mark below the soft one.
    fn next(&self, cur: Level, held: u64) -> Level {
        if held >= self.hard {
            Level::Hard
        } else if held < self.exit() {
            Level::Normal
        } else if cur == Level::Normal && held >= self.soft {
            Level::Soft
        } else {
            cur
        }
    }

    fn update(&self, held: u64) -> Level {
        self.peak.fetch_max(held, Ordering::Relaxed);
        let mut cur = self.level.load(Ordering::Relaxed);
        loop {
            let from = Level::from_u8(cur);
            let to = self.next(from, held);
            if to == from {
                return to;
            }
            match self
                .level
                .compare_exchange(cur, to as u8, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    if to > from {
                        self.entered[to as usize - 1].fetch_add(1, Ordering::Relaxed);
                    }
                    let mib = |b: u64| b as f64 / (1 << 20) as f64;
                    match to {
                        Level::Normal => tracing::info!(
                            held_mib = mib(held),
                            "overload: back under the soft mark ({:.1} MiB held); reading, \
                             keep-alive and accepting resume",
                            mib(held)
                        ),
                        _ => tracing::warn!(
                            held_mib = mib(held),
                            budget_mib = mib(self.hard),
                            level = to.as_str(),
                            "overload: {} level, {:.1} MiB held of a {:.1} MiB budget",
                            to.as_str(),
                            mib(held),
                            mib(self.hard)
                        ),
                    }
                    return to;
                }
                Err(now) => cur = now,
            }
        }
    }
}

/// One loop's share of a [`MemoryBudget`]: publishes its total as a change of the sum.
#[derive(Debug)]
pub struct BudgetReporter {
    budget: Arc<MemoryBudget>,
    last: u64,
}

impl BudgetReporter {
    /// The budget reported to.
    pub fn budget(&self) -> &Arc<MemoryBudget> {
        &self.budget
    }

    /// This loop now holds `held` bytes: update the sum and return the level.
    pub fn publish(&mut self, held: u64) -> Level {
        let b = &self.budget;
        let sum = if held >= self.last {
            b.held.fetch_add(held - self.last, Ordering::Relaxed) + (held - self.last)
        } else {
            b.held.fetch_sub(self.last - held, Ordering::Relaxed) - (self.last - held)
        };
        self.last = held;
        b.update(sum)
    }
}

impl Drop for BudgetReporter {
    fn drop(&mut self) {
        // A loop that ends holds nothing any more.
        self.budget.held.fetch_sub(self.last, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_add_up_and_the_level_follows_the_sum() {
        let b = MemoryBudget::new(1000);
        let (mut one, mut two) = (b.reporter(), b.reporter());
        assert_eq!(one.publish(500), Level::Normal);
        assert_eq!(two.publish(350), Level::Soft); // 850 >= 800
        assert_eq!(b.held(), 850);
        assert_eq!(one.publish(700), Level::Hard); // 1050
        assert_eq!(one.publish(400), Level::Hard); // 750: above the exit mark (720)
        assert_eq!(two.publish(100), Level::Normal); // 500
        assert_eq!((b.entered(Level::Soft), b.entered(Level::Hard)), (1, 1));
        assert_eq!(b.peak(), 1050);
        drop(one);
        assert_eq!(b.held(), 100);
    }

    #[test]
    fn soft_stays_soft_between_the_marks() {
        let b = MemoryBudget::new(1000);
        let mut r = b.reporter();
        assert_eq!(r.publish(790), Level::Normal);
        assert_eq!(r.publish(800), Level::Soft);
        assert_eq!(r.publish(730), Level::Soft);
        assert_eq!(r.publish(719), Level::Normal);
    }
}
