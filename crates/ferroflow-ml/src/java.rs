//! The two pieces of the JVM that Flink ML's results depend on: `java.util.Random` (random
//! initial models, hash functions, sampling) and `String.hashCode` (the default seeds, a
//! stage's class name hashed).

/// `java.util.Random`, the 48-bit linear congruential generator.
pub(crate) struct JavaRandom(u64);

impl JavaRandom {
    const MULTIPLIER: u64 = 0x5_DEEC_E66D;
    const MASK: u64 = (1 << 48) - 1;

    pub(crate) fn new(seed: i64) -> Self {
        JavaRandom((seed as u64 ^ Self::MULTIPLIER) & Self::MASK)
    }

    fn next(&mut self, bits: u32) -> i32 {
        self.0 = (self.0.wrapping_mul(Self::MULTIPLIER).wrapping_add(0xB)) & Self::MASK;
        (self.0 >> (48 - bits)) as i64 as i32
    }

    /// `nextInt(bound)` for a positive bound.
    pub(crate) fn next_int(&mut self, bound: i32) -> i32 {
        debug_assert!(bound > 0);
        if bound & (bound - 1) == 0 {
            return ((bound as i64 * self.next(31) as i64) >> 31) as i32;
        }
        loop {
            let bits = self.next(31);
            let val = bits % bound;
            // Java's overflow test: retry the draws of the top partial range.
            if bits.wrapping_sub(val).wrapping_add(bound - 1) >= 0 {
                return val;
            }
        }
    }

    /// `nextDouble()`.
    pub(crate) fn next_double(&mut self) -> f64 {
        let hi = self.next(26) as u64 & ((1 << 26) - 1);
        let lo = self.next(27) as u64 & ((1 << 27) - 1);
        ((hi << 27) + lo) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// `java.lang.String.hashCode` (over UTF-16 code units).
pub(crate) fn string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// Flink ML's `DataStreamUtils.sample` on one partition: reservoir sampling (Algorithm R)
/// with `java.util.Random(seed)`, in the order the reservoir holds its samples. (With one
/// input partition the second round keeps the first round's sample as it is.)
pub(crate) fn sample<T: Clone>(items: &[T], n: usize, seed: i64) -> Vec<T> {
    if items.len() <= n {
        return items.to_vec();
    }
    let mut random = JavaRandom::new(seed);
    let mut samples: Vec<T> = items[..n].to_vec();
    for (i, item) in items.iter().enumerate().skip(n) {
        // Java's count is an int: the (i + 1)-th element.
        let index = random.next_int((i + 1) as i32) as usize;
        if index < n {
            samples[index] = item.clone();
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_matches_java() {
        // new java.util.Random(0).nextDouble(), twice; seed 42; nextInt with both branches.
        let mut r = JavaRandom::new(0);
        assert_eq!(r.next_double(), 0.730967787376657);
        assert_eq!(r.next_double(), 0.24053641567148587);
        assert_eq!(JavaRandom::new(42).next_double(), 0.7275636800328681);
        assert_eq!(JavaRandom::new(42).next_int(16), 11);
        // new Random(42).nextInt(10) == 0, new Random(0).nextInt(100) == 60.
        assert_eq!(JavaRandom::new(42).next_int(10), 0);
        assert_eq!(JavaRandom::new(0).next_int(100), 60);
    }

    #[test]
    fn string_hash_matches_java() {
        assert_eq!(string_hash("hello"), 99_162_322);
        assert_eq!(
            string_hash("org.apache.flink.ml.feature.lsh.MinHashLSH"),
            -1_229_568_175
        );
    }

    #[test]
    fn sampling_keeps_small_inputs_and_draws_n_distinct_items() {
        let small: Vec<u32> = (0..5).collect();
        assert_eq!(sample(&small, 10, 1), small);
        let big: Vec<u32> = (0..10_000).collect();
        let s = sample(&big, 100, 7);
        assert_eq!(s.len(), 100);
        let distinct: std::collections::BTreeSet<_> = s.iter().collect();
        assert_eq!(distinct.len(), 100);
        assert_eq!(s, sample(&big, 100, 7), "the seed decides");
        assert_ne!(s, sample(&big, 100, 8));
        // As Flink ML's SamplingOperator on the JVM (java.util.Random(7)).
        assert_eq!(
            s[..10],
            [5306, 5805, 5107, 4285, 8583, 3686, 7702, 9410, 4718, 400]
        );
    }
}
