//! RMSprop (the book's `RMSprop`): `h *= decay`, `h += (1 − decay)·g²`,
//! `p −= lr·g / (√h + 1e-7)`.

use super::{Optimizer, check_apply, rooted_step};
use crate::error::Result;
use crate::math::Float;

/// RMSprop; state: the decaying mean of squared gradients `h`, one plane.
#[doc(alias = "RMSprop")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RmsProp<T> {
    /// The learning rate (the book's default 0.01).
    pub lr: T,
    /// The decay rate (the book's 0.99).
    pub decay_rate: T,
}

impl<T: Float> RmsProp<T> {
    /// RMSprop with learning rate `lr` and the book's decay rate 0.99.
    pub fn new(lr: T) -> Self {
        RmsProp {
            lr,
            decay_rate: T::from_f64(0.99),
        }
    }

    /// Elements of state for `params` parameters: `h`.
    pub const fn state_len(params: usize) -> usize {
        params
    }
}

impl<T: Float> Optimizer<T> for RmsProp<T> {
    fn planes(&self) -> usize {
        1
    }
    fn apply(&self, params: &mut [T], grads: &[T], h: &mut [T], s1: &mut [T]) -> Result<()> {
        check_apply(1, params, grads, h, s1)?;
        // h = decay·h + (1 − decay)·g², then the step.
        let (decay, rest) = (self.decay_rate, T::ONE - self.decay_rate);
        rooted_step(params, grads, h, self.lr, |h, g| {
            *h *= decay;
            *h += rest * g * g;
        });
        Ok(())
    }
}
