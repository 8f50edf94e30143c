//! The element type of every buffer, and the one place that calls transcendental math.
//!
//! All of `exp`, `ln`, `sqrt`, `cos` go through [`libm`] here, so results are the same on
//! every target (libm is pure software; `sqrt` is correctly rounded everywhere).
//!
//! [`Float`] is implemented for `f32` (the default everywhere) and `f64` (the book's NumPy
//! arrays are float64, so its gradient check runs in f64; ours can too, through the same code).

use core::fmt::{Debug, Display};
use core::ops::{Add, AddAssign, Div, Mul, MulAssign, Neg, Sub, SubAssign};

use crate::gemm::Element;

#[cfg(target_arch = "x86_64")]
mod expf_avx512;
#[cfg(target_arch = "x86_64")]
mod logf_avx512;

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A floating-point element type: `f32` or `f64`.
///
/// Sealed: the gemm kernels and the model format know exactly these two types.
pub trait Float:
    sealed::Sealed
    + Element
    + Copy
    + Default
    + PartialOrd
    + Debug
    + Display
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
    + AddAssign
    + SubAssign
    + MulAssign
    + Send
    + Sync
    + 'static
{
    /// 0.
    const ZERO: Self;
    /// 1.
    const ONE: Self;
    /// Positive infinity.
    const INFINITY: Self;
    /// Negative infinity.
    const NEG_INFINITY: Self;
    /// Machine epsilon.
    const EPSILON: Self;
    /// `"f32"` or `"f64"`.
    const NAME: &'static str;

    /// Converts from `f64`, rounding to nearest.
    fn from_f64(x: f64) -> Self;
    /// Converts to `f64` (exact).
    fn to_f64(self) -> f64;
    /// Converts a count, rounding to nearest.
    fn from_usize(n: usize) -> Self;
    /// `e^self`.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// Whether this is NaN.
    fn is_nan(self) -> bool;
    /// Whether this is neither infinite nor NaN.
    fn is_finite(self) -> bool;
    /// `x = x.exp()` for every element (vectorized where the result is bit for bit the same).
    #[doc(hidden)]
    fn exp_slice(xs: &mut [Self]) {
        for x in xs {
            *x = x.exp();
        }
    }

    /// `x = x.ln()` for every element (vectorized where the result is bit for bit the same).
    #[doc(hidden)]
    fn ln_slice(xs: &mut [Self]) {
        for x in xs {
            *x = x.ln();
        }
    }

    /// `x = x.sqrt()` for every element (vectorized where the result is bit for bit the same:
    /// a square root is correctly rounded however it is computed).
    #[doc(hidden)]
    fn sqrt_slice(xs: &mut [Self]) {
        for x in xs {
            *x = x.sqrt();
        }
    }

    /// One output row of a 2 × 2 Pooling's backward (see [`crate::Pooling::backward`]) by a
    /// vector kernel, if this type has one here; returns whether it ran (then the same bits as
    /// the loop it replaces). Lengths are the caller's to check: `r0`, `r1` twice as long as
    /// `a`, `d` and the Pooling's `out` (given when a ReLU is below).
    #[doc(hidden)]
    fn pool_2x2_backward_row(
        r0: &mut [Self],
        r1: &mut [Self],
        a: &[Self],
        d: &[Self],
        out: Option<&[Self]>,
    ) -> bool {
        let _ = (r0, r1, a, d, out);
        false
    }

    /// Adam's update (see [`crate::optimizer::Adam`]) by a vector kernel, if this type has one
    /// here: `c` = [1 − β1, 1 − β2, lr_t, ε]; returns whether it ran (then the same bits as
    /// the loop it replaces). Lengths are the caller's to check.
    #[doc(hidden)]
    fn adam_kernel(
        p: &mut [Self],
        g: &[Self],
        m: &mut [Self],
        v: &mut [Self],
        c: [Self; 4],
    ) -> bool {
        let _ = (p, g, m, v, c);
        false
    }

    /// The larger of two values (`self` if either is NaN-free and equal).
    #[inline]
    fn max(self, other: Self) -> Self {
        if other > self { other } else { self }
    }
}

impl Float for f32 {
    #[inline]
    fn pool_2x2_backward_row(
        r0: &mut [f32],
        r1: &mut [f32],
        a: &[f32],
        d: &[f32],
        out: Option<&[f32]>,
    ) -> bool {
        let n = a.len();
        let fits = d.len() == n
            && r0.len() == 2 * n
            && r1.len() == 2 * n
            && out.is_none_or(|o| o.len() == n);
        #[cfg(target_arch = "x86_64")]
        if crate::gemm::detect::avx512() && fits {
            // SAFETY: AVX-512F is present and the lengths agree (both checked just above).
            unsafe { crate::layers::pooling::avx512::back_row(r0, r1, a, d, out) };
            return true;
        }
        let _ = (r0, r1, a, d, out, fits);
        false
    }
    #[inline]
    fn adam_kernel(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: [f32; 4]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if crate::gemm::detect::avx512()
            && g.len() == p.len()
            && m.len() == p.len()
            && v.len() == p.len()
        {
            // SAFETY: AVX-512F is present and the lengths agree (both checked just above).
            unsafe { crate::optimizer::adam::avx512::update(p, g, m, v, c) };
            return true;
        }
        let _ = (p, g, m, v, c);
        false
    }
    #[inline]
    fn sqrt_slice(xs: &mut [Self]) {
        #[cfg(target_arch = "x86_64")]
        {
            use core::arch::x86_64::*;
            if crate::gemm::detect::avx512() {
                // SAFETY: AVX-512F is present (checked just above).
                unsafe { sqrt_avx512(xs) };
                return;
            }
            let mut chunks = xs.chunks_exact_mut(4);
            for c in &mut chunks {
                // SAFETY: SSE is part of every x86-64 CPU; `c` holds 4 f32.
                unsafe { _mm_storeu_ps(c.as_mut_ptr(), _mm_sqrt_ps(_mm_loadu_ps(c.as_ptr()))) };
            }
            for x in chunks.into_remainder() {
                *x = libm::sqrtf(*x);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        for x in xs {
            *x = libm::sqrtf(*x);
        }
    }
    #[inline]
    fn exp_slice(xs: &mut [Self]) {
        #[cfg(target_arch = "x86_64")]
        if crate::gemm::detect::avx512() {
            // SAFETY: AVX-512F is present (checked just above).
            unsafe { expf_avx512::expf_slice(xs) };
            return;
        }
        for x in xs {
            *x = libm::expf(*x);
        }
    }
    #[inline]
    fn ln_slice(xs: &mut [Self]) {
        #[cfg(target_arch = "x86_64")]
        if crate::gemm::detect::avx512() {
            // SAFETY: AVX-512F is present (checked just above).
            unsafe { logf_avx512::logf_slice(xs) };
            return;
        }
        for x in xs {
            *x = libm::logf(*x);
        }
    }
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const INFINITY: Self = f32::INFINITY;
    const NEG_INFINITY: Self = f32::NEG_INFINITY;
    const EPSILON: Self = f32::EPSILON;
    const NAME: &'static str = "f32";

    #[inline]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn from_usize(n: usize) -> Self {
        n as f32
    }
    #[inline]
    fn exp(self) -> Self {
        libm::expf(self)
    }
    #[inline]
    fn ln(self) -> Self {
        libm::logf(self)
    }
    #[inline]
    fn sqrt(self) -> Self {
        libm::sqrtf(self)
    }
    #[inline]
    fn abs(self) -> Self {
        libm::fabsf(self)
    }
    #[inline]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
    }
    #[inline]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
}

impl Float for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    const INFINITY: Self = f64::INFINITY;
    const NEG_INFINITY: Self = f64::NEG_INFINITY;
    const EPSILON: Self = f64::EPSILON;
    const NAME: &'static str = "f64";

    #[inline]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn from_usize(n: usize) -> Self {
        n as f64
    }
    #[inline]
    fn exp(self) -> Self {
        libm::exp(self)
    }
    #[inline]
    fn ln(self) -> Self {
        libm::log(self)
    }
    #[inline]
    fn sqrt(self) -> Self {
        libm::sqrt(self)
    }
    #[inline]
    fn abs(self) -> Self {
        libm::fabs(self)
    }
    #[inline]
    fn is_nan(self) -> bool {
        f64::is_nan(self)
    }
    #[inline]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
}

/// `sqrt` of 16 lanes at a time (the remainder lane by lane): the same bits as
/// `libm::sqrtf`, both being correctly rounded.
///
/// # Safety
/// AVX-512F must be present.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sqrt_avx512(xs: &mut [f32]) {
    use core::arch::x86_64::*;
    let mut chunks = xs.chunks_exact_mut(16);
    for c in &mut chunks {
        // SAFETY: `c` holds 16 f32.
        unsafe {
            let v = _mm512_loadu_ps(c.as_ptr());
            _mm512_storeu_ps(c.as_mut_ptr(), _mm512_sqrt_ps(v));
        }
    }
    for x in chunks.into_remainder() {
        *x = libm::sqrtf(*x);
    }
}

/// `ln(x)` in `f64`, for the weight initialisation (Box–Muller).
#[inline]
pub(crate) fn ln_f64(x: f64) -> f64 {
    libm::log(x)
}

/// `cos(x)` in `f64`, for the weight initialisation (Box–Muller).
#[inline]
pub(crate) fn cos_f64(x: f64) -> f64 {
    libm::cos(x)
}

/// `sin(x)` in `f64`, for the weight initialisation (Box–Muller).
#[inline]
pub(crate) fn sin_f64(x: f64) -> f64 {
    libm::sin(x)
}

/// `x^y` in `f64` (Adam's bias correction).
#[inline]
pub(crate) fn pow_f64(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

/// `sqrt(x)` in `f64`.
#[inline]
pub(crate) fn sqrt_f64(x: f64) -> f64 {
    libm::sqrt(x)
}

/// `x = m · 2^e` with `0.5 ≤ |m| < 1` (or `m = 0`): `(m, e)`, as C's `frexp` (the int8
/// requantization multipliers).
#[inline]
pub(crate) fn frexp_f64(x: f64) -> (f64, i32) {
    libm::frexp(x)
}

/// `x` rounded to the nearest integer, halves away from zero (C's `round`).
#[inline]
pub(crate) fn round_f64(x: f64) -> f64 {
    libm::round(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_and_ln_are_inverse_in_both_types() {
        assert!((Float::ln(Float::exp(1.5f32)) - 1.5).abs() < 1e-6);
        assert!((Float::ln(Float::exp(1.5f64)) - 1.5).abs() < 1e-15);
    }

    /// Holds a vector slice function against its scalar `libm` twin, bit for bit (any NaN for
    /// a NaN): on `specials` in slices of every length up to 40, on every 61st f32 bit pattern
    /// (all signs, exponents and a spread of mantissas), and on the patterns `extra`.
    #[cfg(target_arch = "x86_64")]
    fn sweep(
        name: &str,
        slice: fn(&mut [f32]),
        scalar: fn(f32) -> f32,
        specials: &[f32],
        extra: core::ops::Range<u32>,
    ) {
        let mut buf = std::vec::Vec::with_capacity(1 << 20);
        let check = |buf: &mut std::vec::Vec<f32>| {
            let mut out = buf.clone();
            slice(&mut out);
            for (&x, &y) in buf.iter().zip(&out) {
                let want = scalar(x);
                assert!(
                    y.to_bits() == want.to_bits() || (y.is_nan() && want.is_nan()),
                    "{name}({x:e}) = {y:e}, libm {want:e}"
                );
            }
            buf.clear();
        };
        for len in 0..=40 {
            buf.extend(specials.iter().cycle().skip(len).take(len));
            check(&mut buf);
        }
        let sweep = (0..=u32::MAX).step_by(61).chain(extra);
        for bits in sweep {
            buf.push(f32::from_bits(bits));
            if buf.len() == buf.capacity() {
                check(&mut buf);
            }
        }
        check(&mut buf);
    }

    /// The vector `expf` is `libm::expf` bit for bit (see `sweep`).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_expf_is_libm_expf_bit_for_bit() {
        if !crate::gemm::detect::avx512() {
            std::eprintln!("skipped: no AVX-512 here");
            return;
        }
        let specials = [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            88.72283,
            88.72284,
            88.0,
            87.33655,
            -87.33655,
            -103.97208,
            -103.97209,
            -100.0,
            -110.0,
            0.5 * core::f32::consts::LN_2,
            1.5 * core::f32::consts::LN_2,
            6.1035156e-5,
            -6.1035156e-5,
            1e-8,
            f32::MAX,
            f32::MIN,
        ];
        sweep("expf", f32::exp_slice, libm::expf, &specials, 0..0);
    }

    /// The vector square root (AVX-512 where present, else SSE) is `libm::sqrtf` bit for bit.
    #[test]
    fn vector_sqrt_is_libm_sqrtf_bit_for_bit() {
        // Every 61st bit pattern of the non-negative f32 (and the special values), through the
        // vector path in slices of odd lengths (full vectors and remainders).
        let mut xs: std::vec::Vec<f32> = (0..0x7f80_0001u32)
            .step_by(61)
            .map(f32::from_bits)
            .chain([0.0, -0.0, f32::INFINITY, f32::MIN_POSITIVE, 1.0, 2.0])
            .collect();
        let want: std::vec::Vec<u32> = xs.iter().map(|&x| libm::sqrtf(x).to_bits()).collect();
        for chunk in xs.chunks_mut(1003) {
            f32::sqrt_slice(chunk);
        }
        for (i, (x, w)) in xs.iter().zip(&want).enumerate() {
            assert_eq!(x.to_bits(), *w, "element {i}");
        }
    }

    /// The vector `logf` is `libm::logf` bit for bit (see `sweep`), also on every f32 in
    /// [1, 16), where softmax's sums fall.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn vector_logf_is_libm_logf_bit_for_bit() {
        if !crate::gemm::detect::avx512() {
            std::eprintln!("skipped: no AVX-512 here");
            return;
        }
        let specials = [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::MIN_POSITIVE,
            f32::MIN_POSITIVE * 0.5,
            f32::from_bits(1),
            f32::MAX,
            f32::EPSILON,
            1.0 + f32::EPSILON,
            1.0 - f32::EPSILON / 2.0,
            core::f32::consts::SQRT_2,
            core::f32::consts::FRAC_1_SQRT_2,
            f32::from_bits(0x3f35_04f3),
            f32::from_bits(0x3f35_04f2),
            10.0,
        ];
        let range = 1.0f32.to_bits()..16.0f32.to_bits();
        sweep("logf", f32::ln_slice, libm::logf, &specials, range);
    }

    #[test]
    fn max_prefers_larger() {
        assert_eq!(Float::max(1.0f32, 2.0), 2.0);
        assert_eq!(Float::max(-1.0f64, -2.0), -1.0);
    }
}
