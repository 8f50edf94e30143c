//! Requantization in integers, as TensorFlow Lite and CMSIS-NN do it, so that an int8 result is
//! defined to the bit: a real multiplier `M` (e.g. `s_in · s_w / s_out`) becomes a Q31
//! fixed-point `m` and a power-of-two `shift` with `M ≈ m · 2^(shift − 31)`
//! ([`quantize_multiplier`]), and `x · M` becomes a saturating rounding doubling high
//! multiply by `m` then a rounding division by a power of two
//! ([`multiply_by_quantized_multiplier`]).

use crate::math::{frexp_f64, round_f64};

/// `real ≈ m · 2^(shift − 31)` with `m` in `[2^30, 2^31)` (or 0): TensorFlow Lite's
/// `QuantizeMultiplier`. `real` must be finite and ≥ 0; multipliers below `2^-32` become 0.
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    if real <= 0.0 || !real.is_finite() {
        return (0, 0);
    }
    let (q, mut shift) = frexp_f64(real);
    let mut fixed = round_f64(q * (1u64 << 31) as f64) as i64;
    if fixed == 1 << 31 {
        fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        return (0, 0);
    }
    (fixed as i32, shift)
}

/// The high 32 bits of `2 · a · b`, rounded to nearest (halves up), saturating the one
/// overflow (`i32::MIN · i32::MIN`): gemmlowp's `SaturatingRoundingDoublingHighMul`.
///
/// gemmlowp adds a nudge of `2^30` (or `1 − 2^30` for a negative product) and divides by
/// `2^31` truncating toward zero; adding `2^30` and shifting right (flooring) is the same
/// number for every product (for `ab = −y < 0`, both are `−⌊(y + 2^30 − 1) / 2^31⌋`), and
/// is a multiply-accumulate and a shift on a 32-bit core, as CMSIS-NN computes it.
#[inline]
pub const fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    ((a as i64 * b as i64 + (1 << 30)) >> 31) as i32
}

/// `x / 2^exponent` rounded to nearest, halves away from zero: gemmlowp's
/// `RoundingDivideByPOT`. `exponent` in `0..=31`.
#[inline]
pub const fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let mask = ((1u32 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + if x < 0 { 1 } else { 0 };
    (x >> exponent) + if remainder > threshold { 1 } else { 0 }
}

/// `x · m · 2^(shift − 31)` in integers, rounded: TensorFlow Lite's
/// `MultiplyByQuantizedMultiplier` (a left shift first for `shift > 0`, wrapping as two's
/// complement does; then the high multiply; then a rounding right shift for `shift < 0`).
#[inline]
pub const fn multiply_by_quantized_multiplier(x: i32, m: i32, shift: i32) -> i32 {
    // The two cases apart (TensorFlow Lite shifts left by 0, or divides by 2^0, in the other;
    // either changes nothing): fewer instructions on a Cortex-M.
    if shift > 0 {
        saturating_rounding_doubling_high_mul(x.wrapping_shl(shift as u32), m)
    } else {
        rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x, m), -shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Rng;

    #[test]
    fn the_fixed_point_operations_round_as_gemmlowp_does() {
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        // 2^30 is 0.5 in Q31: halving, with halves rounded up (gemmlowp's nudge of
        // 1 − 2^30 for a negative product, then C's truncating division).
        assert_eq!(saturating_rounding_doubling_high_mul(5, 1 << 30), 3);
        assert_eq!(saturating_rounding_doubling_high_mul(-5, 1 << 30), -2);
        assert_eq!(saturating_rounding_doubling_high_mul(-7, 1 << 30), -3);
        assert_eq!(saturating_rounding_doubling_high_mul(4, 1 << 30), 2);
        assert_eq!(rounding_divide_by_pot(3, 1), 2);
        assert_eq!(rounding_divide_by_pot(-3, 1), -2);
        assert_eq!(rounding_divide_by_pot(-2, 1), -1);
        assert_eq!(rounding_divide_by_pot(5, 2), 1);
        assert_eq!(rounding_divide_by_pot(6, 2), 2);
        assert_eq!(rounding_divide_by_pot(-6, 2), -2);
        assert_eq!(rounding_divide_by_pot(7, 0), 7);
        assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
        assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
        assert_eq!(quantize_multiplier(0.25), (1 << 30, -1));
        assert_eq!(quantize_multiplier(0.0), (0, 0));
        assert_eq!(quantize_multiplier(1e-12), (0, 0));
    }

    /// The high multiply equals gemmlowp's formulation (a sign-dependent nudge, then C's
    /// truncating division) on every kind of operand: edges, halves, random.
    #[test]
    fn the_high_multiply_is_gemmlowps() {
        fn gemmlowp(a: i32, b: i32) -> i32 {
            if a == i32::MIN && b == i32::MIN {
                return i32::MAX;
            }
            let ab = a as i64 * b as i64;
            let nudge = if ab >= 0 {
                1i64 << 30
            } else {
                1 - (1i64 << 30)
            };
            ((ab + nudge) / (1i64 << 31)) as i32
        }
        let edges = [
            i32::MIN,
            i32::MIN + 1,
            -(1 << 30) - 1,
            -(1 << 30),
            -3,
            -2,
            -1,
            0,
            1,
            2,
            3,
            1 << 30,
            (1 << 30) + 1,
            i32::MAX - 1,
            i32::MAX,
        ];
        for &a in &edges {
            for &b in &edges {
                assert_eq!(
                    saturating_rounding_doubling_high_mul(a, b),
                    gemmlowp(a, b),
                    "{a}·{b}"
                );
            }
        }
        let mut rng = crate::random::seeded(0x0bad_cafe_f00d_0001);
        for _ in 0..1_000_000 {
            let (a, b) = (rng.next_u64() as i32, rng.next_u64() as i32);
            // Small values too, where the halves (products at odd multiples of 2^30) live.
            let (c, d) = (a >> (rng.next_u64() % 31), b);
            assert_eq!(
                saturating_rounding_doubling_high_mul(a, b),
                gemmlowp(a, b),
                "{a}·{b}"
            );
            assert_eq!(
                saturating_rounding_doubling_high_mul(c, d),
                gemmlowp(c, d),
                "{c}·{d}"
            );
        }
        for k in -1000..1000 {
            // Exactly halfway: k · 2^30 with k odd, times 1.
            let a = k * (1 << 20);
            assert_eq!(
                saturating_rounding_doubling_high_mul(a, 1 << 10),
                gemmlowp(a, 1 << 10)
            );
        }
    }

    /// `x · M` in integers is `x · M` in f64, rounded, within one unit (the Q31 multiplier
    /// carries 31 bits), over multipliers and values of every magnitude the layers see.
    #[test]
    fn multiplying_by_a_quantized_multiplier_is_the_real_product_rounded() {
        let mut rng = crate::random::seeded(0x2545_f491_4f6c_dd1d);
        let mut next = || rng.next_u64();
        for _ in 0..100_000 {
            let real = (next() % 1_000_000 + 1) as f64 * 1e-9 * (1u64 << (next() % 12)) as f64;
            let x = (next() % 2_000_001) as i64 as i32 - 1_000_000;
            let (m, shift) = quantize_multiplier(real);
            let got = multiply_by_quantized_multiplier(x, m, shift);
            let want = (x as f64 * real).round();
            assert!(
                (got as f64 - want).abs() <= 1.0,
                "{x} · {real}: {got}, not {want}"
            );
        }
    }
}
