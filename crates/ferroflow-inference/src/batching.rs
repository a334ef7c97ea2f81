//! Adaptive batch sizing: model calls sized toward a latency target.
//!
//! Like Beam's `BatchElements`, the batcher fits call time ≈ fixed + per_row × rows over the
//! last calls and picks the row count whose predicted time meets the target, moving at most a
//! factor of two per call and staying within `[min_rows, max_rows]`.

use std::collections::VecDeque;
use std::time::Duration;

/// Batching settings of a model node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    /// Largest model call, in rows.
    pub max_rows: usize,
    /// Smallest model call the batcher aims for (smaller calls still happen when input runs
    /// dry or a row has waited `max_latency`).
    pub min_rows: usize,
    /// Aim for model calls of about this long.
    pub target_latency: Duration,
    /// A row waits at most this long for others to join its call while input keeps coming;
    /// when input runs dry, waiting rows are run at once.
    pub max_latency: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_rows: 4096,
            min_rows: 1,
            target_latency: Duration::from_millis(10),
            max_latency: Duration::from_millis(50),
        }
    }
}

impl BatchConfig {
    /// Fixed-size calls of `rows` rows (no adaptation).
    pub fn fixed(rows: usize) -> Self {
        BatchConfig {
            max_rows: rows.max(1),
            min_rows: rows.max(1),
            ..BatchConfig::default()
        }
    }
}

const WINDOW: usize = 16;

/// Chooses the size of the next model call.
#[derive(Debug, Clone)]
pub struct AdaptiveBatcher {
    config: BatchConfig,
    size: usize,
    samples: VecDeque<(f64, f64)>,
}

impl AdaptiveBatcher {
    /// Start at 64 rows (within the configured bounds).
    pub fn new(config: BatchConfig) -> Self {
        let size = 64.clamp(config.min_rows.max(1), config.max_rows.max(1));
        AdaptiveBatcher {
            config,
            size,
            samples: VecDeque::with_capacity(WINDOW),
        }
    }

    /// Rows for the next call.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The settings.
    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// A call of `rows` rows took `elapsed`; adjust the size.
    pub fn record(&mut self, rows: usize, elapsed: Duration) {
        if rows == 0 {
            return;
        }
        if self.samples.len() == WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back((rows as f64, elapsed.as_secs_f64()));
        let (fixed, per_row) = self.fit();
        let target = self.config.target_latency.as_secs_f64();
        let ideal = if per_row <= 0.0 {
            f64::INFINITY
        } else {
            ((target - fixed) / per_row).max(1.0)
        };
        let lo = (self.size / 2).max(1) as f64;
        let hi = (self.size * 2) as f64;
        let next = ideal.clamp(lo, hi) as usize;
        self.size = next.clamp(self.config.min_rows.max(1), self.config.max_rows.max(1));
    }

    /// Least squares of time on rows over the window: (fixed seconds, seconds per row).
    fn fit(&self) -> (f64, f64) {
        let n = self.samples.len() as f64;
        let (sx, sy) = self
            .samples
            .iter()
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        let (mx, my) = (sx / n, sy / n);
        let (sxx, sxy) = self.samples.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
            (a + (x - mx) * (x - mx), b + (x - mx) * (y - my))
        });
        if sxx > 0.0 && sxy > 0.0 {
            let per_row = sxy / sxx;
            ((my - per_row * mx).max(0.0), per_row)
        } else {
            // One size seen so far (or noise): treat the time as proportional to rows.
            (0.0, my / mx)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model whose call costs 1 ms plus 10 µs a row reaches the rows that take 10 ms.
    #[test]
    fn converges_to_the_latency_target() {
        let mut b = AdaptiveBatcher::new(BatchConfig::default());
        for _ in 0..40 {
            let rows = b.size();
            let t = Duration::from_micros(1000 + 10 * rows as u64);
            b.record(rows, t);
        }
        assert!((850..=950).contains(&b.size()), "size {}", b.size());
    }

    #[test]
    fn stays_within_bounds_and_moves_at_most_double() {
        let config = BatchConfig {
            max_rows: 500,
            min_rows: 10,
            ..BatchConfig::default()
        };
        let mut b = AdaptiveBatcher::new(config);
        b.record(64, Duration::from_nanos(1));
        assert_eq!(b.size(), 128);
        for _ in 0..10 {
            let rows = b.size();
            b.record(rows, Duration::from_nanos(rows as u64));
        }
        assert_eq!(b.size(), 500);
        for _ in 0..10 {
            let rows = b.size();
            b.record(rows, Duration::from_secs(1));
        }
        assert_eq!(b.size(), 10);
    }

    #[test]
    fn fixed_size_does_not_adapt() {
        let mut b = AdaptiveBatcher::new(BatchConfig::fixed(32));
        b.record(32, Duration::from_secs(5));
        assert_eq!(b.size(), 32);
    }
}
