//! A lock-free histogram of durations: what the runtime records `process()` times, frame ages
//! on links and command latencies into, cheaply enough for the frame path.
//!
//! Buckets are log-linear: four per power of two from 2^10 ns (about 1 µs) to 2^35 ns (about
//! 34 s), one below and one above, so any value finds its bucket with a few bit operations (no
//! search) and a quantile read from it is off by at most the bucket's width (a quarter of its
//! value above 1 µs; the first bucket holds everything below), usually much less. Prometheus sees the
//! cumulative counts at each power of two ([`HistogramSnapshot::prometheus_buckets`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// Values below 2^MIN_EXP ns share the first bucket.
const MIN_EXP: u32 = 10;
/// Values of 2^MAX_EXP ns and above share the last bucket (+Inf).
const MAX_EXP: u32 = 35;
/// Buckets per power of two (a power of two itself).
const SUB: u32 = 4;
const SUB_BITS: u32 = SUB.trailing_zeros();

/// How many buckets a histogram has.
pub(crate) const BUCKETS: usize = 1 + ((MAX_EXP - MIN_EXP) * SUB) as usize + 1;

/// The bucket a value of `ns` nanoseconds falls in.
#[inline]
pub(crate) fn bucket_of(ns: u64) -> usize {
    if ns < (1 << MIN_EXP) {
        return 0;
    }
    let exp = 63 - ns.leading_zeros();
    if exp >= MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = (ns >> (exp - SUB_BITS)) as u32 & (SUB - 1);
    (1 + (exp - MIN_EXP) * SUB + sub) as usize
}

/// The bucket a duration of `ns` is counted in: Prometheus' `le` is inclusive, so a value of
/// exactly 2^k ns must count at `le` = 2^k, the bound of the bucket ending at 2^k − 1; counting
/// `ns − 1` shifts every bucket up by a nanosecond, to (lower, upper].
#[inline]
fn bucket_for(ns: u64) -> usize {
    bucket_of(ns.saturating_sub(1))
}

/// The largest value (inclusive, in ns) of bucket `index`; `None` for the last (+Inf).
pub(crate) fn upper_bound_ns(index: usize) -> Option<u64> {
    match index {
        0 => Some((1 << MIN_EXP) - 1),
        i if i >= BUCKETS - 1 => None,
        i => {
            let i = (i - 1) as u32;
            let exp = MIN_EXP + i / SUB;
            let sub = u64::from(i % SUB);
            Some((1u64 << exp) + ((sub + 1) << (exp - SUB_BITS)) - 1)
        }
    }
}

/// The smallest value (in ns) of bucket `index`.
fn lower_bound_ns(index: usize) -> u64 {
    match index {
        0 => 0,
        i => upper_bound_ns(i - 1).map_or(u64::MAX, |u| u + 1),
    }
}

/// Counts of durations by bucket, plus their sum. Recording is two relaxed atomic additions.
pub(crate) struct DurationHistogram {
    buckets: [AtomicU64; BUCKETS],
    sum_ns: AtomicU64,
}

impl Default for DurationHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl DurationHistogram {
    /// Records one duration; any thread may call it.
    #[inline]
    pub(crate) fn record(&self, ns: u64) {
        self.buckets[bucket_for(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Records one duration without a locked instruction: for a histogram only one thread
    /// records into (a processor's own thread, a link's reader). A second recorder racing it
    /// could set a count back (a lost update), never corrupt memory; the runtime never lets two
    /// threads run one processor or read one link.
    #[inline]
    pub(crate) fn record_owned(&self, ns: u64) {
        let bucket = &self.buckets[bucket_for(ns)];
        bucket.store(bucket.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        self.sum_ns.store(
            self.sum_ns.load(Ordering::Relaxed).saturating_add(ns),
            Ordering::Relaxed,
        );
    }

    /// Counts one duration in its bucket only, without a locked instruction and without the
    /// sum (for an owner that keeps the sum itself; see [`HistogramSnapshot::with_sum`]).
    #[inline]
    pub(crate) fn count_owned(&self, ns: u64) {
        let bucket = &self.buckets[bucket_for(ns)];
        bucket.store(bucket.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }

    /// The counts as they are now.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            sum_ns: self.sum_ns.load(Ordering::Relaxed),
        }
    }
}

/// A histogram's counts at one moment; two of them give the counts in between
/// ([`HistogramSnapshot::since`]).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct HistogramSnapshot {
    buckets: [u64; BUCKETS],
    sum_ns: u64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        Self {
            buckets: [0; BUCKETS],
            sum_ns: 0,
        }
    }
}

impl std::fmt::Debug for HistogramSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistogramSnapshot")
            .field("count", &self.count())
            .field("sum_ns", &self.sum_ns)
            .finish()
    }
}

impl HistogramSnapshot {
    /// Values recorded.
    pub(crate) fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Sum of the values recorded, in ns.
    pub(crate) fn sum_ns(&self) -> u64 {
        self.sum_ns
    }

    /// The same counts with the sum kept elsewhere (see [`DurationHistogram::count_owned`]).
    pub(crate) fn with_sum(mut self, sum_ns: u64) -> Self {
        self.sum_ns = sum_ns;
        self
    }

    /// What was recorded after `earlier` (a snapshot of the same histogram).
    pub(crate) fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: std::array::from_fn(|i| self.buckets[i].saturating_sub(earlier.buckets[i])),
            sum_ns: self.sum_ns.saturating_sub(earlier.sum_ns),
        }
    }

    /// The `q`-quantile (0..=1) in ns, interpolated within its bucket (values above the last
    /// bound read as that bound); `None` when nothing was recorded.
    pub(crate) fn quantile_ns(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        // The rank of the wanted value, 1-based: the smallest value whose cumulative count
        // reaches it.
        let rank = (q.clamp(0.0, 1.0) * count as f64).ceil().max(1.0);
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (below + n) as f64 >= rank {
                let lower = lower_bound_ns(i) as f64;
                let Some(upper) = upper_bound_ns(i) else {
                    return Some(lower);
                };
                let within = (rank - below as f64) / n as f64;
                return Some(lower + within * (upper as f64 + 1.0 - lower));
            }
            below += n;
        }
        None
    }

    /// The cumulative counts at each power of two from 2^10 ns, in seconds, then +Inf last
    /// (`f64::INFINITY`): Prometheus' `le` buckets.
    pub(crate) fn prometheus_buckets(&self) -> Vec<(f64, u64)> {
        let mut out = Vec::with_capacity((MAX_EXP - MIN_EXP + 2) as usize);
        let mut cumulative = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            cumulative += n;
            match upper_bound_ns(i) {
                // A bucket ending just below a power of two closes that power's `le`.
                Some(upper) if (upper + 1).is_power_of_two() => {
                    out.push(((upper + 1) as f64 / 1e9, cumulative));
                }
                Some(_) => {}
                None => out.push((f64::INFINITY, cumulative)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_the_bucket_whose_bounds_hold_it() {
        let mut values = vec![0, 1, 1023, 1024, 1025, 1279, 1280, 1536, 2047, 2048, 3000];
        values.extend((0..64).map(|s| 1u64 << s));
        values.extend((1..64).map(|s| (1u64 << s) - 1));
        values.extend([u64::MAX, 999_999_999, 1_000_000]);
        for v in values {
            let i = bucket_of(v);
            assert!(lower_bound_ns(i) <= v, "{v} below bucket {i}");
            if let Some(upper) = upper_bound_ns(i) {
                assert!(v <= upper, "{v} above bucket {i} (ends {upper})");
            } else {
                assert!(v >= 1 << MAX_EXP);
            }
        }
        // The buckets tile the range with no gap.
        for i in 1..BUCKETS {
            assert_eq!(lower_bound_ns(i), upper_bound_ns(i - 1).unwrap() + 1);
        }
    }

    #[test]
    fn quantiles_are_within_one_bucket_of_the_truth() {
        let h = DurationHistogram::default();
        // 1..=1000 µs, once each.
        for us in 1..=1000u64 {
            h.record(us * 1000);
        }
        let s = h.snapshot();
        assert_eq!(s.count(), 1000);
        assert_eq!(s.sum_ns(), 500_500_000);
        for (q, truth) in [(0.5, 500_000.0), (0.99, 990_000.0), (0.01, 10_000.0)] {
            let got = s.quantile_ns(q).unwrap();
            assert!(
                (got - truth).abs() / truth < 0.125,
                "q{q}: {got} vs {truth}"
            );
        }
        assert_eq!(
            DurationHistogram::default().snapshot().quantile_ns(0.5),
            None
        );
    }

    #[test]
    fn since_gives_what_was_recorded_in_between() {
        let h = DurationHistogram::default();
        h.record_owned(5_000);
        let before = h.snapshot();
        h.record_owned(80_000_000);
        h.record_owned(80_000_000);
        let d = h.snapshot().since(&before);
        assert_eq!((d.count(), d.sum_ns()), (2, 160_000_000));
        let p50 = d.quantile_ns(0.5).unwrap();
        assert!((70e6..90e6).contains(&p50), "{p50}");
    }

    #[test]
    fn prometheus_buckets_are_cumulative_at_powers_of_two() {
        let h = DurationHistogram::default();
        h.record(500); // below 2^10
        h.record(3_000); // in (2^11, 2^12]
        h.record(u64::MAX); // +Inf only
        let b = h.snapshot().prometheus_buckets();
        assert_eq!(b.len(), (MAX_EXP - MIN_EXP + 2) as usize);
        assert_eq!(b[0], (1024e-9, 1));
        assert_eq!(b[1], (2048e-9, 1));
        assert_eq!(b[2], (4096e-9, 2));
        assert_eq!(b[b.len() - 2].1, 2);
        assert_eq!(*b.last().unwrap(), (f64::INFINITY, 3));
        assert!(b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
    }
}
