//! Injectable monotonic time in whole milliseconds.
//!
//! An event loop reads the time only through a [`Clock`]: production code gets the
//! [`SystemClock`] (via [`system_clock`]), and tests get a [`FakeClock`] that they move by
//! hand, so idle, heartbeat and header timeouts are tested without sleeping. This module only
//! reads time; it never sleeps, never schedules anything and never talks to the timer wheel
//! (the loop passes `now_ms()` to [`TimerWheel::advance`](crate::timer::TimerWheel::advance)).
//! Callers: the event loop (once per iteration), the server's guards, and tests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Milliseconds on a monotonic clock. Loops read time only through this.
///
/// Implementations must never go backwards: two calls in sequence on one thread return
/// nondecreasing values. The origin is arbitrary (each clock picks its own), so only
/// differences and values from the same clock are meaningful.
pub trait Clock: Send + Sync + 'static {
    /// The current time in milliseconds since this clock's origin.
    fn now_ms(&self) -> u64;
}

/// A clock shared between the loops and whoever built them.
pub type SharedClock = Arc<dyn Clock>;

/// A fresh [`SystemClock`] behind a [`SharedClock`], the default for a running server.
///
/// ```
/// let clock = herd_core::clock::system_clock();
/// let a = clock.now_ms();
/// assert!(clock.now_ms() >= a);
/// ```
pub fn system_clock() -> SharedClock {
    Arc::new(SystemClock::new())
}

/// Real monotonic clock based on [`Instant`]: milliseconds since the clock was created.
///
/// It starts at 0 and saturates at `u64::MAX` (after some 584 million years).
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin (time 0) is now.
    pub fn new() -> Self {
        SystemClock {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock that tests move by hand; clones share the same time.
///
/// Give one clone to the code under test (usually as a [`SharedClock`]) and keep another to
/// move time forward:
///
/// ```
/// use herd_core::clock::{Clock, FakeClock, SharedClock};
///
/// let clock = FakeClock::new(1_000);
/// let shared: SharedClock = std::sync::Arc::new(clock.clone());
/// clock.advance(250);
/// assert_eq!(shared.now_ms(), 1_250);
/// clock.set(5_000);
/// assert_eq!(shared.now_ms(), 5_000);
/// ```
#[derive(Clone, Debug, Default)]
pub struct FakeClock {
    now: Arc<AtomicU64>,
}

impl FakeClock {
    /// A clock that reads `start_ms` until it is moved.
    pub fn new(start_ms: u64) -> Self {
        FakeClock {
            now: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// Move time forward by `ms` (saturating at `u64::MAX`); every clone sees the change.
    pub fn advance(&self, ms: u64) {
        // The closure always returns Some, so fetch_update cannot fail.
        let _ = self
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| {
                Some(t.saturating_add(ms))
            });
    }

    /// Set the time to `ms`; every clone sees the change.
    ///
    /// Setting an earlier time breaks the [`Clock`] contract on purpose: do it only to test
    /// that a consumer tolerates a clock that steps back (the timer wheel ignores it).
    pub fn set(&self, ms: u64) {
        self.now.store(ms, Ordering::Release);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::Acquire)
    }
}

/// Whole milliseconds in `d` for a deadline on a loop's clock: rounded up, so a 0.5 ms timer
/// does not fire early, and saturating, so `Duration::MAX` means "never" rather than
/// wrapping. The one conversion every timeout in the crate uses.
#[inline]
pub(crate) fn millis(d: std::time::Duration) -> u64 {
    // Whole seconds and the sub-second part rounded up: no 128-bit arithmetic, since protocol
    // layers convert their timeouts on the per-request path.
    d.as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(d.subsec_nanos().div_ceil(1_000_000)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_starts_where_told() {
        assert_eq!(FakeClock::new(0).now_ms(), 0);
        assert_eq!(FakeClock::new(42).now_ms(), 42);
        assert_eq!(FakeClock::default().now_ms(), 0);
    }

    #[test]
    fn fake_clock_advance_and_set() {
        let clock = FakeClock::new(10);
        clock.advance(5);
        assert_eq!(clock.now_ms(), 15);
        clock.advance(0);
        assert_eq!(clock.now_ms(), 15);
        clock.set(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.set(3);
        assert_eq!(clock.now_ms(), 3);
    }

    #[test]
    fn fake_clock_advance_saturates() {
        let clock = FakeClock::new(u64::MAX - 1);
        clock.advance(10);
        assert_eq!(clock.now_ms(), u64::MAX);
    }

    #[test]
    fn fake_clock_clones_share_time() {
        let a = FakeClock::new(100);
        let b = a.clone();
        let shared: SharedClock = Arc::new(b.clone());
        a.advance(7);
        assert_eq!(b.now_ms(), 107);
        assert_eq!(shared.now_ms(), 107);
        b.set(500);
        assert_eq!(a.now_ms(), 500);
        assert_eq!(shared.now_ms(), 500);
    }

    #[test]
    fn fake_clock_shared_across_threads() {
        let clock = FakeClock::new(0);
        let mover = clock.clone();
        std::thread::spawn(move || mover.advance(30))
            .join()
            .expect("mover thread");
        assert_eq!(clock.now_ms(), 30);
    }

    #[test]
    fn system_clock_is_monotonic() {
        let clock = system_clock();
        let mut last = clock.now_ms();
        for _ in 0..1_000 {
            let now = clock.now_ms();
            assert!(now >= last, "clock went back from {last} to {now}");
            last = now;
        }
    }

    #[test]
    fn independent_fake_clocks_do_not_share() {
        let a = FakeClock::new(1);
        let b = FakeClock::new(1);
        a.advance(9);
        assert_eq!(a.now_ms(), 10);
        assert_eq!(b.now_ms(), 1);
    }

    #[test]
    fn millis_rounds_up_and_saturates() {
        use std::time::Duration;
        assert_eq!(super::millis(Duration::ZERO), 0);
        assert_eq!(super::millis(Duration::from_micros(500)), 1);
        assert_eq!(super::millis(Duration::from_millis(1500)), 1500);
        assert_eq!(super::millis(Duration::from_nanos(1_500_000_001)), 1501);
        assert_eq!(super::millis(Duration::MAX), u64::MAX);
    }
}
