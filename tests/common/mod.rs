//! Helpers shared by the integration tests.
#![allow(dead_code)]

use zeronn::random::{self, Rng, XorShiftRng};

/// A seeded generator.
pub fn rng(seed: u64) -> XorShiftRng {
    random::seeded(seed)
}

/// Small integers in -3..=3, exactly representable, so every sum is exact.
pub fn small_ints(rng: &mut XorShiftRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| random::index(rng, 7) as f32 - 3.0).collect()
}

/// Uniform floats in [-1, 1).
pub fn uniform(rng: &mut XorShiftRng, n: usize) -> Vec<f64> {
    (0..n).map(|_| 2.0 * random::uniform01(rng) - 1.0).collect()
}

/// Uniform f32 in [-1, 1).
pub fn uniform_f32(rng: &mut XorShiftRng, n: usize) -> Vec<f32> {
    uniform(rng, n).into_iter().map(|x| x as f32).collect()
}

/// Random labels below `classes`.
pub fn labels(rng: &mut XorShiftRng, n: usize, classes: usize) -> Vec<u8> {
    (0..n).map(|_| random::index(rng, classes) as u8).collect()
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Discard a draw so callers can decorrelate streams.
pub fn skip(rng: &mut XorShiftRng) {
    rng.next_u32();
}
