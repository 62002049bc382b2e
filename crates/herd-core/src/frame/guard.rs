//! Flood guard: per-connection token buckets on messages per second and bytes per second.
//!
//! A [`TokenBucket`] holds up to `burst` tokens, refills at `rate` tokens per second and is
//! refilled lazily from the loop's clock (`now_ms`) each time it is asked, so it needs no timer
//! and no thread. A [`FloodGuard`] pairs a message bucket and a byte bucket as configured by
//! [`FloodLimits`]. Both are plain per-connection data owned by one loop: no lock, no atomic,
//! no allocation per message. This module only decides; closing the connection, logging and
//! counting are done by the frame protocol ([`FrameProtocol`](super::FrameProtocol)), which
//! calls [`FloodGuard::admit`] for every frame it receives.

use std::fmt;

/// Tokens are kept in thousandths so a refill of a few milliseconds at a low rate is not lost.
const MILLI: u64 = 1000;

/// A token bucket refilled from a millisecond clock.
///
/// Starts full. [`try_take`](Self::try_take) refills by `rate × elapsed` (capped at the
/// burst), then takes `n` tokens if that many are there. Time going backwards is treated as no
/// time passing.
///
/// ```
/// use herd_core::frame::TokenBucket;
///
/// // 10 tokens per second, at most 3 saved up.
/// let mut b = TokenBucket::new(10, 3, 0);
/// assert!(b.try_take(3, 0));
/// assert!(!b.try_take(1, 0)); // empty
/// assert!(b.try_take(1, 100)); // 100 ms at 10/s refilled one
/// assert!(!b.try_take(1, 150));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    /// Tokens per second (also thousandths of a token per millisecond).
    rate: u64,
    /// Capacity in thousandths of a token.
    capacity: u64,
    /// Current fill in thousandths of a token.
    level: u64,
    /// Clock reading of the last refill.
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `rate` tokens per second, as of `now_ms`.
    pub fn new(rate: u64, burst: u64, now_ms: u64) -> TokenBucket {
        let capacity = burst.saturating_mul(MILLI);
        TokenBucket {
            rate,
            capacity,
            level: capacity,
            last_ms: now_ms,
        }
    }

    /// Refill for the time since the last call, then take `n` tokens if there are that many.
    /// Returns whether they were taken (on `false` the bucket keeps its level).
    pub fn try_take(&mut self, n: u64, now_ms: u64) -> bool {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        if elapsed > 0 {
            self.last_ms = now_ms;
            let refill = self.rate.saturating_mul(elapsed);
            self.level = self.level.saturating_add(refill).min(self.capacity);
        }
        let cost = n.saturating_mul(MILLI);
        if cost <= self.level {
            self.level -= cost;
            true
        } else {
            false
        }
    }

    /// Whole tokens available right now (without refilling).
    pub fn available(&self) -> u64 {
        self.level / MILLI
    }
}

/// Flood limits for one connection; `None` in a field means that dimension is unlimited.
///
/// The burst of each bucket is one second's worth of its rate: a peer may send `msgs_per_sec`
/// frames at once after a quiet second, and then keep up that rate. A frame is counted with its
/// 12-byte header in the byte bucket, so `bytes_per_sec` must exceed the largest frame a
/// well-behaved peer sends, or that frame always counts as a flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FloodLimits {
    /// Frames per second allowed (and the burst).
    pub msgs_per_sec: Option<u64>,
    /// Bytes per second allowed, headers included (and the burst).
    pub bytes_per_sec: Option<u64>,
}

impl FloodLimits {
    /// True when neither dimension is limited (the guard is then not created at all).
    pub fn is_off(&self) -> bool {
        self.msgs_per_sec.is_none() && self.bytes_per_sec.is_none()
    }
}

/// Which limit a peer went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    /// More frames per second than allowed.
    Messages,
    /// More bytes per second than allowed.
    Bytes,
}

impl fmt::Display for Flood {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flood::Messages => "messages per second",
            Flood::Bytes => "bytes per second",
        })
    }
}

/// The buckets of one connection.
///
/// ```
/// use herd_core::frame::{Flood, FloodGuard, FloodLimits};
///
/// let limits = FloodLimits { msgs_per_sec: Some(2), bytes_per_sec: Some(1000) };
/// let mut g = FloodGuard::new(&limits, 0);
/// assert_eq!(g.admit(100, 0), Ok(()));
/// assert_eq!(g.admit(100, 0), Ok(()));
/// assert_eq!(g.admit(100, 0), Err(Flood::Messages));
/// // A second later both buckets are full again: 2 frames, 1000 bytes.
/// assert_eq!(g.admit(900, 1000), Ok(()));
/// assert_eq!(g.admit(200, 1000), Err(Flood::Bytes));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FloodGuard {
    msgs: Option<TokenBucket>,
    bytes: Option<TokenBucket>,
}

impl FloodGuard {
    /// Full buckets for `limits` as of `now_ms`.
    pub fn new(limits: &FloodLimits, now_ms: u64) -> FloodGuard {
        FloodGuard {
            msgs: limits.msgs_per_sec.map(|r| TokenBucket::new(r, r, now_ms)),
            bytes: limits.bytes_per_sec.map(|r| TokenBucket::new(r, r, now_ms)),
        }
    }

    /// Account for one frame of `frame_len` bytes (header included) at `now_ms`: `Ok` if it is
    /// within the limits, else which limit it broke. The message bucket is charged first; a
    /// frame refused by the byte bucket has still used its message token (the connection is
    /// closed anyway).
    pub fn admit(&mut self, frame_len: u64, now_ms: u64) -> Result<(), Flood> {
        if let Some(b) = self.msgs.as_mut() {
            if !b.try_take(1, now_ms) {
                return Err(Flood::Messages);
            }
        }
        if let Some(b) = self.bytes.as_mut() {
            if !b.try_take(frame_len, now_ms) {
                return Err(Flood::Bytes);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refills_at_rate_and_caps_at_burst() {
        let mut b = TokenBucket::new(1000, 10, 5_000);
        assert!(b.try_take(10, 5_000));
        assert!(!b.try_take(1, 5_000));
        // 1000/s is one per millisecond.
        assert!(b.try_take(4, 5_004));
        assert!(!b.try_take(1, 5_004));
        // A long silence refills only up to the burst.
        assert!(!b.try_take(11, 1_000_000));
        assert_eq!(b.available(), 10);
        assert!(b.try_take(10, 1_000_000));
    }

    #[test]
    fn low_rates_accumulate_fractions() {
        // One token every 500 ms: after 250 ms half a token is saved, after 500 ms one.
        let mut b = TokenBucket::new(2, 1, 0);
        assert!(b.try_take(1, 0));
        assert!(!b.try_take(1, 250));
        assert!(b.try_take(1, 500));
    }

    #[test]
    fn clock_going_back_adds_nothing() {
        let mut b = TokenBucket::new(10, 1, 1_000);
        assert!(b.try_take(1, 1_000));
        assert!(!b.try_take(1, 10));
        assert!(!b.try_take(1, 1_000));
        assert!(b.try_take(1, 1_100));
    }

    #[test]
    fn guard_checks_both_dimensions() {
        let limits = FloodLimits {
            msgs_per_sec: Some(3),
            bytes_per_sec: Some(100),
        };
        let mut g = FloodGuard::new(&limits, 0);
        assert_eq!(g.admit(60, 0), Ok(()));
        assert_eq!(g.admit(60, 0), Err(Flood::Bytes));
        let mut g = FloodGuard::new(&limits, 0);
        for _ in 0..3 {
            assert_eq!(g.admit(1, 0), Ok(()));
        }
        assert_eq!(g.admit(1, 0), Err(Flood::Messages));
        assert_eq!(g.admit(1, 1_000), Ok(()));
        let mut off = FloodGuard::new(&FloodLimits::default(), 0);
        assert!(FloodLimits::default().is_off());
        for _ in 0..10_000 {
            assert_eq!(off.admit(u64::MAX, 0), Ok(()));
        }
    }

    proptest! {
        /// Over any schedule, the tokens granted never exceed burst + rate × elapsed.
        #[test]
        fn never_grants_more_than_the_rate(
            rate in 0u64..5_000, burst in 0u64..100,
            steps in proptest::collection::vec((0u64..50, 0u64..20), 0..200),
        ) {
            let mut b = TokenBucket::new(rate, burst, 0);
            let (mut now, mut granted) = (0u64, 0u64);
            for (dt, n) in steps {
                now += dt;
                if b.try_take(n, now) {
                    granted += n;
                }
                prop_assert!(granted * 1000 <= burst * 1000 + rate * now);
            }
        }

        #[test]
        fn extreme_values_do_not_overflow(rate: u64, burst: u64, n: u64, t1: u64, t2: u64) {
            let mut b = TokenBucket::new(rate, burst, t1);
            let _ = b.try_take(n, t2);
            let _ = b.try_take(n, u64::MAX);
        }
    }
}
