//! Sigmoid: `out = 1 / (1 + e^(-x))`.
//!
//! Shapes: `x`, `out`, `dout`, `dx` all of one length. Backward uses the forward output only
//! (`dx = dout·(1 - out)·out`, the book's `layers.Sigmoid`), so the forward may run in place.

use crate::error::{Result, check_len};
use crate::functions::sigmoid;
use crate::math::Float;

/// The sigmoid layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sigmoid;

impl Sigmoid {
    /// `out = 1 / (1 + e^(-x))`.
    pub fn forward<T: Float>(out: &mut [T], x: &[T]) -> Result<()> {
        check_len("out", x.len(), out.len())?;
        for (o, &v) in out.iter_mut().zip(x) {
            *o = sigmoid(v);
        }
        Ok(())
    }

    /// `x = 1 / (1 + e^(-x))` in place.
    pub fn forward_inplace<T: Float>(x: &mut [T]) {
        for v in x {
            *v = sigmoid(*v);
        }
    }

    /// Differentiates `out = 1 / (1 + e^(-x))`: `dx = dout·(1 - out)·out`.
    pub fn backward<T: Float>(dx: &mut [T], dout: &[T], out: &[T]) -> Result<()> {
        check_len("dx", out.len(), dx.len())?;
        check_len("dout", out.len(), dout.len())?;
        for ((d, &g), &y) in dx.iter_mut().zip(dout).zip(out) {
            *d = g * (T::ONE - y) * y;
        }
        Ok(())
    }

    /// [`Sigmoid::backward`] in place: `dout` becomes `dx`.
    pub fn backward_inplace<T: Float>(dout: &mut [T], out: &[T]) -> Result<()> {
        check_len("dout", out.len(), dout.len())?;
        for (g, &y) in dout.iter_mut().zip(out) {
            *g = *g * (T::ONE - y) * y;
        }
        Ok(())
    }
}
