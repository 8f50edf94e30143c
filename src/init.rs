//! Weight initialisation from a seeded generator (see [`crate::random`]).

use crate::math::Float;
use crate::random::{Rng, standard_normal_pair};

/// The book's `weight_init_std` for `TwoLayerNet`: weights ~ N(0, 0.01²).
pub const BOOK_WEIGHT_INIT_STD: f64 = 0.01;

/// Fills `out` with samples of N(0, std²).
pub fn gaussian<T: Float, R: Rng + ?Sized>(rng: &mut R, std: f64, out: &mut [T]) {
    let mut pairs = out.chunks_exact_mut(2);
    for pair in &mut pairs {
        let (a, b) = standard_normal_pair(rng);
        pair[0] = T::from_f64(std * a);
        pair[1] = T::from_f64(std * b);
    }
    if let [last] = pairs.into_remainder() {
        *last = T::from_f64(std * standard_normal_pair(rng).0);
    }
}

/// The standard deviation of Xavier (Glorot) initialisation for `fan_in` inputs: `√(1/fan_in)`.
pub fn xavier_std(fan_in: usize) -> f64 {
    crate::math::sqrt_f64(1.0 / fan_in as f64)
}

/// The standard deviation of He initialisation for `fan_in` inputs (for ReLU): `√(2/fan_in)`.
pub fn he_std(fan_in: usize) -> f64 {
    crate::math::sqrt_f64(2.0 / fan_in as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::seeded;

    #[test]
    fn gaussian_fills_odd_lengths_and_scales() {
        let mut w = [0f32; 10001];
        gaussian(&mut seeded(1), 0.01, &mut w);
        assert!(w.iter().all(|&x| x != 0.0));
        let var: f64 = w.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / w.len() as f64;
        assert!((var.sqrt() - 0.01).abs() < 0.0005, "std {}", var.sqrt());
    }

    #[test]
    fn he_is_sqrt2_times_xavier() {
        assert!((he_std(50) / xavier_std(50) - core::f64::consts::SQRT_2).abs() < 1e-12);
    }
}
