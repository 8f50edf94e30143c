//! Rectified linear unit: `out = max(x, 0)`.
//!
//! Shapes: `x`, `out`, `dout`, `dx` all of one length (any batch × features).
//! Backward takes the forward output as its mask (`out > 0` exactly where `x > 0`), so the
//! forward may run in place and need not keep `x`. At `x == 0` the gradient is 0, as in the
//! book's `layers.Relu`. NaN passes through the forward pass (as with the book's mask), so a
//! diverged run shows in the loss.

use crate::error::{Result, check_len};
use crate::math::Float;

/// The ReLU layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Relu;

impl Relu {
    /// `out = max(x, 0)`.
    pub fn forward<T: Float>(out: &mut [T], x: &[T]) -> Result<()> {
        check_len("out", x.len(), out.len())?;
        for (o, &v) in out.iter_mut().zip(x) {
            *o = if v <= T::ZERO { T::ZERO } else { v };
        }
        Ok(())
    }

    /// `x = max(x, 0)` in place.
    pub fn forward_inplace<T: Float>(x: &mut [T]) {
        for v in x {
            *v = if *v <= T::ZERO { T::ZERO } else { *v };
        }
    }

    /// Differentiates `out = max(x, 0)`: `dx = dout` where `out > 0`, else 0.
    pub fn backward<T: Float>(dx: &mut [T], dout: &[T], out: &[T]) -> Result<()> {
        check_len("dx", out.len(), dx.len())?;
        check_len("dout", out.len(), dout.len())?;
        for ((d, &g), &o) in dx.iter_mut().zip(dout).zip(out) {
            *d = if o > T::ZERO { g } else { T::ZERO };
        }
        Ok(())
    }

    /// [`Relu::backward`] in place: `dout` becomes `dx`.
    pub fn backward_inplace<T: Float>(dout: &mut [T], out: &[T]) -> Result<()> {
        check_len("dout", out.len(), dout.len())?;
        apply_mask(dout, out);
        Ok(())
    }
}

/// `dout = dout where out > 0, else 0` (the mask of [`Relu::backward_inplace`]).
#[inline(always)]
fn mask<T: Float>(dout: &mut [T], out: &[T]) {
    for (g, &o) in dout.iter_mut().zip(out) {
        *g = if o > T::ZERO { *g } else { T::ZERO };
    }
}

avx512_build!(
    /// [`mask`], compiled for AVX-512 where the CPU has it.
    fn apply_mask<T: Float>(dout: &mut [T], out: &[T]) => mask
);
