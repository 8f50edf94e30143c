//! Momentum SGD (the book's `Momentum`): `v = momentum·v − lr·g`, `p += v`.

use super::{Optimizer, check_apply};
use crate::error::Result;
use crate::math::Float;

/// SGD with momentum; state: the velocity `v`, one plane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Momentum<T> {
    /// The learning rate (the book's default 0.01).
    pub lr: T,
    /// The momentum (the book's 0.9).
    pub momentum: T,
}

impl<T: Float> Momentum<T> {
    /// Momentum SGD with learning rate `lr` and the book's momentum 0.9.
    pub fn new(lr: T) -> Self {
        Momentum {
            lr,
            momentum: T::from_f64(0.9),
        }
    }

    /// Elements of state for `params` parameters: `v`.
    pub const fn state_len(params: usize) -> usize {
        params
    }
}

impl<T: Float> Optimizer<T> for Momentum<T> {
    fn planes(&self) -> usize {
        1
    }
    fn apply(&self, params: &mut [T], grads: &[T], v: &mut [T], s1: &mut [T]) -> Result<()> {
        check_apply(1, params, grads, v, s1)?;
        for ((p, &g), v) in params.iter_mut().zip(grads).zip(v) {
            *v = self.momentum * *v - self.lr * g;
            *p += *v;
        }
        Ok(())
    }
}
