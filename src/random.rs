//! Seeded, reproducible randomness: the generator, uniform indices and normal samples.
//!
//! Everything random in zeronn comes from an [`XorShiftRng`] seeded by a `u64`, so the same
//! seed gives the same run, bit for bit, on every target.

use crate::math::{cos_f64, ln_f64, sin_f64, sqrt_f64};
pub use rand_core::{Rng, SeedableRng};
pub use rand_xorshift::XorShiftRng;

/// A generator seeded from a `u64` (expanded by rand_core's `seed_from_u64`).
pub fn seeded(seed: u64) -> XorShiftRng {
    XorShiftRng::seed_from_u64(seed)
}

/// A uniform index in `0..n` (`n > 0`), by the widening multiply of a 64-bit draw (bias below
/// `n / 2^64`, far below anything a training run could see). Returns 0 when `n == 0`.
pub fn index<R: Rng + ?Sized>(rng: &mut R, n: usize) -> usize {
    ((rng.next_u64() as u128 * n as u128) >> 64) as usize
}

/// Fills `out` with indices drawn uniformly from `0..n` with replacement, like NumPy's
/// `np.random.choice(n, batch)` in the book's training loop.
pub fn choice<R: Rng + ?Sized>(rng: &mut R, n: usize, out: &mut [usize]) {
    for o in out {
        *o = index(rng, n);
    }
}

/// A uniform `f64` in `[0, 1)` with 53 random bits.
pub fn uniform01<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A pair of independent standard normal samples (Box–Muller).
pub fn standard_normal_pair<R: Rng + ?Sized>(rng: &mut R) -> (f64, f64) {
    let u1 = 1.0 - uniform01(rng); // (0, 1]: ln is finite
    let u2 = uniform01(rng);
    let r = sqrt_f64(-2.0 * ln_f64(u1));
    let theta = core::f64::consts::TAU * u2;
    (r * cos_f64(theta), r * sin_f64(theta))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let (mut a, mut b) = (seeded(7), seeded(7));
        for _ in 0..10 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(seeded(7).next_u64(), seeded(8).next_u64());
    }

    #[test]
    fn index_stays_in_range_and_covers_it() {
        let mut r = seeded(1);
        let mut seen = [false; 7];
        for _ in 0..1000 {
            let i = index(&mut r, 7);
            assert!(i < 7);
            seen[i] = true;
        }
        assert!(seen.iter().all(|&s| s));
        assert_eq!(index(&mut r, 0), 0);
    }

    #[test]
    fn normal_samples_have_unit_moments() {
        let mut r = seeded(3);
        let n = 20000;
        let (mut s, mut s2) = (0.0, 0.0);
        for _ in 0..n / 2 {
            let (a, b) = standard_normal_pair(&mut r);
            s += a + b;
            s2 += a * a + b * b;
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "var {var}");
    }
}
