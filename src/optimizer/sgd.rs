//! Stochastic gradient descent (the book's `SGD`): `params -= lr · grads`.

use super::{Optimizer, check_apply};
use crate::error::{Result, check_len};
use crate::math::Float;

/// Plain SGD (the book's `SGD`).
#[doc(alias = "SGD")]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd<T> {
    /// The learning rate.
    pub lr: T,
}

impl<T: Float> Sgd<T> {
    /// SGD with learning rate `lr` (the book's default is 0.01; its chapter 5 run uses 0.1).
    pub const fn new(lr: T) -> Self {
        Sgd { lr }
    }

    /// Elements of state for `params` parameters: none.
    pub const fn state_len(params: usize) -> usize {
        let _ = params;
        0
    }

    /// `params[i] -= lr · grads[i]` for every parameter (SGD keeps no state).
    pub fn update(&self, params: &mut [T], grads: &[T]) -> Result<()> {
        check_len("grads", params.len(), grads.len())?;
        for (p, &g) in params.iter_mut().zip(grads) {
            *p -= self.lr * g;
        }
        Ok(())
    }
}

impl<T: Float> Optimizer<T> for Sgd<T> {
    fn planes(&self) -> usize {
        0
    }
    fn apply(&self, params: &mut [T], grads: &[T], s0: &mut [T], s1: &mut [T]) -> Result<()> {
        check_apply(0, params, grads, s0, s1)?;
        Sgd::update(self, params, grads)
    }
    fn sgd_lr(&self) -> Option<T> {
        Some(self.lr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_steps_against_the_gradient() {
        let mut p = [1.0f32, 2.0];
        Sgd::new(0.5).update(&mut p, &[2.0, -2.0]).unwrap();
        assert_eq!(p, [0.0, 3.0]);
        assert!(Sgd::new(0.5f32).update(&mut p, &[1.0]).is_err());
        assert_eq!(p, [0.0, 3.0]);
    }
}
