//! AdaGrad (the book's `AdaGrad`): `h += g²`, `p −= lr·g / (√h + 1e-7)`.

use super::{BLOCK, DENOMINATOR_EPS, Optimizer, check_apply};
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
        let eps = T::from_f64(DENOMINATOR_EPS);
        // In blocks: h, its roots in one vector call, then the step.
        let mut root = [T::ZERO; BLOCK];
        for ((p, g), h) in params
            .chunks_mut(BLOCK)
            .zip(grads.chunks(BLOCK))
            .zip(h.chunks_mut(BLOCK))
        {
            let root = &mut root[..p.len()];
            for ((&g, h), r) in g.iter().zip(h.iter_mut()).zip(&mut *root) {
                *h += g * g;
                *r = *h;
            }
            T::sqrt_slice(root);
            for ((p, &g), &r) in p.iter_mut().zip(g).zip(root.iter()) {
                *p -= self.lr * g / (r + eps);
            }
        }
        Ok(())
    }
}
