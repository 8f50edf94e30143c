//! Adam (the book's `Adam`): with `iter` counting the steps from 1,
//! `lr_t = lr·√(1 − β2^iter) / (1 − β1^iter)`, `m += (1 − β1)·(g − m)`,
//! `v += (1 − β2)·(g² − v)`, `p −= lr_t·m / (√v + 1e-7)`.

use super::{DENOMINATOR_EPS, Optimizer, check_apply, check_lr};
use crate::error::{Error, Result};
use crate::math::{Float, pow_f64, sqrt_f64};

/// Adam; state: `m` and `v`, two planes; the step count is `iter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam<T> {
    /// The learning rate (the book's default 0.001), in `f64` as the book computes `lr_t`.
    pub lr: f64,
    /// β1 (the book's 0.9).
    pub beta1: f64,
    /// β2 (the book's 0.999).
    pub beta2: f64,
    /// Steps begun so far (the book's `self.iter`).
    pub iter: u64,
    _t: core::marker::PhantomData<T>,
}

impl<T: Float> Adam<T> {
    /// Adam with learning rate `lr` and the book's β1 0.9, β2 0.999, at step 0.
    pub const fn new(lr: f64) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            iter: 0,
            _t: core::marker::PhantomData,
        }
    }

    /// Elements of state for `params` parameters: `m` and `v`.
    pub const fn state_len(params: usize) -> usize {
        params.saturating_mul(2)
    }

    /// The book's bias-corrected learning rate of the current step,
    /// `lr·√(1 − β2^iter) / (1 − β1^iter)` (in `f64`).
    pub fn lr_t(&self) -> f64 {
        let i = self.iter as f64;
        self.lr * sqrt_f64(1.0 - pow_f64(self.beta2, i)) / (1.0 - pow_f64(self.beta1, i))
    }
}

impl<T: Float> Optimizer<T> for Adam<T> {
    fn planes(&self) -> usize {
        2
    }
    fn begin_step(&mut self) {
        self.iter += 1;
    }
    fn apply(&self, params: &mut [T], grads: &[T], m: &mut [T], v: &mut [T]) -> Result<()> {
        check_apply(2, params, grads, m, v)?;
        check_lr(self.lr)?;
        if self.iter == 0 {
            return Err(Error::InvalidValue {
                what: "Adam step count 0 (begin_step comes first)",
            });
        }
        let lr_t = T::from_f64(self.lr_t());
        let (b1, b2) = (T::from_f64(1.0 - self.beta1), T::from_f64(1.0 - self.beta2));
        let eps = T::from_f64(DENOMINATOR_EPS);
        for (((p, &g), m), v) in params.iter_mut().zip(grads).zip(m).zip(v) {
            *m += b1 * (g - *m);
            *v += b2 * (g * g - *v);
            *p -= lr_t * *m / (v.sqrt() + eps);
        }
        Ok(())
    }
}
