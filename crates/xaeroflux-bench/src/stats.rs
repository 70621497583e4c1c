//! Summaries of timing samples.

use std::time::Instant;

/// The median of `samples` (the mean of the two middle values for an even count). Reorders
/// `samples`.
///
/// # Panics
///
/// If `samples` is empty.
pub fn median_ns(samples: &mut [u64]) -> u64 {
    assert!(!samples.is_empty(), "median of no samples");
    let len = samples.len();
    let (below, &mut upper, _) = samples.select_nth_unstable(len / 2);
    if len % 2 == 1 {
        return upper;
    }
    let lower = *below
        .iter()
        .max()
        .expect("an even, non-empty count has a lower half");
    lower + (upper - lower) / 2
}

/// The nearest-rank `pct`-th percentile of `samples` (`pct` in 0..=100; 0 gives the minimum,
/// 100 the maximum). Reorders `samples`.
///
/// # Panics
///
/// If `samples` is empty or `pct` is outside 0..=100.
pub fn percentile(samples: &mut [u64], pct: f64) -> u64 {
    assert!(!samples.is_empty(), "percentile of no samples");
    assert!(
        (0.0..=100.0).contains(&pct),
        "percentile {pct} outside 0..=100"
    );
    let rank = (pct / 100.0 * samples.len() as f64).ceil() as usize;
    let index = rank.clamp(1, samples.len()) - 1;
    *samples.select_nth_unstable(index).1
}

/// Operations per second for `count` operations in `ns` nanoseconds.
pub fn per_second(count: u64, ns: u64) -> f64 {
    count as f64 * 1e9 / ns.max(1) as f64
}

/// Bytes this process has handed to `write`-like system calls so far (`wchar` of
/// `/proc/self/io`), or `None` where that file is missing. LMDB writes every dirty page of a
/// commit with `pwrite`, so the difference over a transaction is its pages times their size.
pub fn written_bytes() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
}

/// A monotonic stopwatch in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Timer {
    start: Instant,
}

impl Timer {
    /// Starts timing now.
    pub fn start() -> Timer {
        Timer {
            start: Instant::now(),
        }
    }

    /// Nanoseconds since the start.
    pub fn elapsed_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Nanoseconds since the start, then starts again: one sample per call.
    pub fn lap_ns(&mut self) -> u64 {
        let now = Instant::now();
        let ns = u64::try_from(now.duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        self.start = now;
        ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles() {
        assert_eq!(median_ns(&mut [5]), 5);
        assert_eq!(median_ns(&mut [9, 1, 5]), 5);
        assert_eq!(median_ns(&mut [10, 1, 4, 7]), 5);
        let mut samples: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut samples, 50.0), 50);
        assert_eq!(percentile(&mut samples, 99.0), 99);
        assert_eq!(percentile(&mut samples, 100.0), 100);
        assert_eq!(percentile(&mut samples, 0.0), 1);
        assert_eq!(per_second(1000, 1_000_000_000), 1000.0);
    }

    #[test]
    fn timer_laps_add_up() {
        // The outer timer starts first, so it spans both laps.
        let whole = Timer::start();
        let mut timer = Timer::start();
        let a = timer.lap_ns();
        let b = timer.lap_ns();
        assert!(a + b <= whole.elapsed_ns());
    }
}
