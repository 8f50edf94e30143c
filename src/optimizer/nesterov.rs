//! Nesterov's accelerated gradient, in the book's form (`Nesterov`):
//! `p += μ²·v`, `p −= (1 + μ)·lr·g`, `v *= μ`, `v −= lr·g`.

use super::{Optimizer, check_apply};
use crate::error::Result;
use crate::math::Float;

/// Nesterov's accelerated gradient; state: the velocity `v`, one plane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Nesterov<T> {
    /// The learning rate (the book's default 0.01).
    pub lr: T,
    /// The momentum μ (the book's 0.9).
    pub momentum: T,
}

impl<T: Float> Nesterov<T> {
    /// Nesterov with learning rate `lr` and the book's momentum 0.9.
    pub fn new(lr: T) -> Self {
        Nesterov {
            lr,
            momentum: T::from_f64(0.9),
        }
    }

    /// Elements of state for `params` parameters: `v`.
    pub const fn state_len(params: usize) -> usize {
        params
    }
}

impl<T: Float> Optimizer<T> for Nesterov<T> {
    fn planes(&self) -> usize {
        1
    }
    fn apply(&self, params: &mut [T], grads: &[T], v: &mut [T], s1: &mut [T]) -> Result<()> {
        check_apply(1, params, grads, v, s1)?;
        let mu = self.momentum;
        let (mu2, step) = (mu * mu, (T::ONE + mu) * self.lr);
        for ((p, &g), v) in params.iter_mut().zip(grads).zip(v) {
            *p += mu2 * *v;
            *p -= step * g;
            *v *= mu;
            *v -= self.lr * g;
        }
        Ok(())
    }
}
