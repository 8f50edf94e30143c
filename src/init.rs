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

/// How a net's weights start (the book's `weight_init_std`): a number, or a scale from each
/// layer's fan-in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightInit {
    /// N(0, std²) for every layer (the book's `weight_init_std=0.01`).
    Std(f64),
    /// Xavier, `√(1/n)` for `n` inputs (the book's `'xavier'` or `'sigmoid'`).
    Xavier,
    /// He, `√(2/n)` for `n` inputs (the book's `'he'` or `'relu'`).
    He,
}

impl WeightInit {
    /// The standard deviation for a layer of `fan_in` inputs.
    pub fn std(self, fan_in: usize) -> f64 {
        match self {
            WeightInit::Std(s) => s,
            WeightInit::Xavier => xavier_std(fan_in),
            WeightInit::He => he_std(fan_in),
        }
    }

    /// The book's spellings: a number, `xavier`/`sigmoid`, `he`/`relu` (any case).
    pub fn parse(s: &str) -> Option<Self> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("xavier") || t.eq_ignore_ascii_case("sigmoid") {
            Some(WeightInit::Xavier)
        } else if t.eq_ignore_ascii_case("he") || t.eq_ignore_ascii_case("relu") {
            Some(WeightInit::He)
        } else {
            t.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(WeightInit::Std)
        }
    }
}

impl core::fmt::Display for WeightInit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WeightInit::Std(s) => write!(f, "{s}"),
            WeightInit::Xavier => f.write_str("xavier"),
            WeightInit::He => f.write_str("he"),
        }
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
    fn the_books_spellings_parse() {
        assert_eq!(WeightInit::parse("0.01"), Some(WeightInit::Std(0.01)));
        assert_eq!(WeightInit::parse("He"), Some(WeightInit::He));
        assert_eq!(WeightInit::parse("relu"), Some(WeightInit::He));
        assert_eq!(WeightInit::parse("sigmoid"), Some(WeightInit::Xavier));
        assert_eq!(WeightInit::parse("-1"), None);
        assert_eq!(WeightInit::parse("nan"), None);
        assert_eq!(WeightInit::He.std(50), (2.0f64 / 50.0).sqrt());
        assert_eq!(WeightInit::Xavier.std(100), 0.1);
    }

    #[test]
    fn he_is_sqrt2_times_xavier() {
        assert!((he_std(50) / xavier_std(50) - core::f64::consts::SQRT_2).abs() < 1e-12);
    }
}
