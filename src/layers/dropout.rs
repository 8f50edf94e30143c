//! Dropout (the book's `Dropout`): in training each value is kept where a uniform draw in
//! `[0, 1)` exceeds `ratio` and zeroed otherwise (`out = x · mask`, not rescaled); in inference
//! every value is scaled by `1 − ratio`.
//!
//! Shapes: `io`, `mask` and `d` all of one length (any batch × features). The mask is stored as
//! 0 and 1 of the element type, so the step that made it can be repeated exactly
//! ([`Dropout::forward_masked_inplace`], for a gradient check with the mask held fixed).

use crate::error::{Error, Result, check_len};
use crate::math::Float;
use crate::random::{Rng, uniform01};

/// Dropout of a fraction `ratio` of the values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    /// The fraction dropped in training, in `[0, 1)`.
    pub ratio: f32,
}

impl Dropout {
    /// The layer; `ratio` is checked where it is used.
    pub const fn new(ratio: f32) -> Self {
        Dropout { ratio }
    }

    fn check(&self) -> Result<()> {
        if (0.0..1.0).contains(&self.ratio) {
            Ok(())
        } else {
            Err(Error::InvalidValue {
                what: "Dropout ratio (must be in [0, 1))",
            })
        }
    }

    /// Training forward, in place: draws `mask` from `rng` (one `f64` draw per value, kept
    /// where it exceeds `ratio`, as the book's `np.random.rand(...) > ratio`), then
    /// `io *= mask`.
    pub fn forward_train_inplace<T: Float, R: Rng + ?Sized>(
        &self,
        io: &mut [T],
        mask: &mut [T],
        rng: &mut R,
    ) -> Result<()> {
        self.check()?;
        check_len("mask", io.len(), mask.len())?;
        let ratio = self.ratio as f64;
        for (m, v) in mask.iter_mut().zip(io.iter_mut()) {
            *m = if uniform01(rng) > ratio {
                T::ONE
            } else {
                T::ZERO
            };
            *v *= *m;
        }
        Ok(())
    }

    /// Training forward with a mask already drawn: `io *= mask`.
    pub fn forward_masked_inplace<T: Float>(&self, io: &mut [T], mask: &[T]) -> Result<()> {
        self.check()?;
        Self::backward_inplace(io, mask)
    }

    /// Inference forward, in place: `io *= 1 − ratio`.
    pub fn forward_infer_inplace<T: Float>(&self, io: &mut [T]) -> Result<()> {
        self.check()?;
        let keep = T::from_f64(1.0 - self.ratio as f64);
        for v in io {
            *v *= keep;
        }
        Ok(())
    }

    /// Differentiates `out = x · mask`, in place: `d` holds `dout` and becomes `dx = dout · mask`.
    pub fn backward_inplace<T: Float>(d: &mut [T], mask: &[T]) -> Result<()> {
        check_len("mask", d.len(), mask.len())?;
        for (v, &m) in d.iter_mut().zip(mask) {
            *v *= m;
        }
        Ok(())
    }
}
