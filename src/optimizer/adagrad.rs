//! AdaGrad (the book's `AdaGrad`): `h += g²`, `p −= lr·g / (√h + 1e-7)`.

use super::{Optimizer, check_apply, rooted_step};
use crate::error::Result;
use crate::math::Float;

/// AdaGrad; state: the sum of squared gradients `h`, one plane.
#[doc(alias = "Adagrad")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaGrad<T> {
    /// The learning rate (the book's default 0.01).
    pub lr: T,
}

impl<T: Float> AdaGrad<T> {
    /// AdaGrad with learning rate `lr`.
    pub const fn new(lr: T) -> Self {
        AdaGrad { lr }
    }

    /// Elements of state for `params` parameters: `h`.
    pub const fn state_len(params: usize) -> usize {
        params
    }
}

impl<T: Float> Optimizer<T> for AdaGrad<T> {
    fn planes(&self) -> usize {
        1
    }
    fn apply(&self, params: &mut [T], grads: &[T], h: &mut [T], s1: &mut [T]) -> Result<()> {
        check_apply(1, params, grads, h, s1)?;
        // h += g², then the step.
        rooted_step(params, grads, h, self.lr, |h, g| *h += g * g);
        Ok(())
    }
}
