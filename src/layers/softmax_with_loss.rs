//! Softmax followed by the cross-entropy loss, as one layer (the book's `SoftmaxWithLoss`).
//!
//! Shapes:
//! - `x`:  batch × classes, scores
//! - `y`:  batch × classes, probabilities (`softmax(x)` row by row)
//! - `t`:  batch, class labels (indices)
//! - `dx`: batch × classes
//!
//! The loss is the batch mean `-(1/batch) Σ_b ln y[b, t_b]`, computed as
//! `ln Σ e^(x - max) - (x_t - max)` per row: max-shifted, and exact where the book adds 1e-7
//! inside the logarithm to avoid `ln 0`. Backward is `(y - onehot(t)) / batch`.

use crate::error::{Error, Result, check_len, mul};
use crate::functions::{Label, check_labels};
use crate::math::Float;

/// Softmax + cross-entropy over `classes` classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftmaxWithLoss {
    /// Number of classes (scores per row).
    pub classes: usize,
}

impl SoftmaxWithLoss {
    /// The layer for `classes` classes.
    pub const fn new(classes: usize) -> Self {
        SoftmaxWithLoss { classes }
    }

    fn check<L: Label>(&self, x_len: usize, t: &[L]) -> Result<usize> {
        if self.classes == 0 {
            return Err(Error::ZeroSize { what: "classes" });
        }
        if t.is_empty() {
            return Err(Error::EmptyBatch);
        }
        check_len("x", mul(t.len(), self.classes)?, x_len)?;
        check_labels(t, self.classes)?;
        Ok(t.len())
    }

    /// `y = softmax(x)`; returns the mean cross-entropy loss against `t`.
    pub fn forward<T: Float, L: Label>(&self, y: &mut [T], x: &[T], t: &[L]) -> Result<T> {
        self.check(x.len(), t)?;
        check_len("y", x.len(), y.len())?;
        y.copy_from_slice(x);
        self.forward_inplace(y, t)
    }

    /// [`SoftmaxWithLoss::forward`] in place: the scores `x` become the probabilities `y`.
    pub fn forward_inplace<T: Float, L: Label>(&self, x: &mut [T], t: &[L]) -> Result<T> {
        let batch = self.check(x.len(), t)?;
        Ok(self.rows(x, t, None) / T::from_usize(batch))
    }

    /// Softmax of each row in place; returns the summed loss. With `dx_scale`, each row then
    /// becomes `(y - onehot(t))·dx_scale` (the backward pass) in the same sweep.
    fn rows<T: Float, L: Label>(&self, x: &mut [T], t: &[L], dx_scale: Option<T>) -> T {
        // Rows go in groups, so that the exponentials of a whole group are one call (which
        // vectorizes); per element the arithmetic is that of `softmax_inplace`.
        const GROUP: usize = 16;
        let mut loss = T::ZERO;
        for (rows, labels) in x.chunks_mut(GROUP * self.classes).zip(t.chunks(GROUP)) {
            let mut shifted_t = [T::ZERO; GROUP];
            for ((row, l), st) in rows
                .chunks_exact_mut(self.classes)
                .zip(labels)
                .zip(&mut shifted_t)
            {
                let max = row.iter().fold(T::NEG_INFINITY, |m, &v| m.max(v));
                for v in row.iter_mut() {
                    *v -= max;
                }
                *st = row[l.class()];
            }
            T::exp_slice(rows);
            // The row sums, then their logarithms in one call (which vectorizes too).
            let mut ln_sum = [T::ZERO; GROUP];
            for (row, s) in rows.chunks_exact_mut(self.classes).zip(&mut ln_sum) {
                let mut sum = T::ZERO;
                for &v in row.iter() {
                    sum += v;
                }
                let inv = T::ONE / sum;
                for v in row.iter_mut() {
                    *v *= inv;
                }
                *s = sum;
            }
            let group = labels.len();
            T::ln_slice(&mut ln_sum[..group]);
            for (((row, l), &st), &ls) in rows
                .chunks_exact_mut(self.classes)
                .zip(labels)
                .zip(&shifted_t)
                .zip(&ln_sum)
            {
                loss += ls - st;
                if let Some(inv) = dx_scale {
                    row[l.class()] -= T::ONE;
                    for v in row.iter_mut() {
                        *v *= inv;
                    }
                }
            }
        }
        loss
    }

    /// Forward and backward in one sweep over the scores: `x` becomes `dx`, the mean loss is
    /// returned. Bit for bit the same as [`SoftmaxWithLoss::forward_inplace`] followed by
    /// [`SoftmaxWithLoss::backward_inplace`].
    pub fn forward_backward_inplace<T: Float, L: Label>(&self, x: &mut [T], t: &[L]) -> Result<T> {
        let batch = self.check(x.len(), t)?;
        self.forward_backward_part_inplace(x, t, batch)
    }

    /// [`SoftmaxWithLoss::forward_backward_inplace`] for rows that are part of a batch of
    /// `full_batch` rows split across workers: the mean is over `full_batch`, so the losses
    /// and gradients of the parts add up to those of the whole batch.
    pub fn forward_backward_part_inplace<T: Float, L: Label>(
        &self,
        x: &mut [T],
        t: &[L],
        full_batch: usize,
    ) -> Result<T> {
        self.check(x.len(), t)?;
        if full_batch < t.len() {
            return Err(Error::ShapeMismatch {
                what: "full batch must hold the part",
                expected: t.len(),
                actual: full_batch,
            });
        }
        let n = T::from_usize(full_batch);
        let loss = self.rows(x, t, Some(T::ONE / n));
        Ok(loss / n)
    }

    /// Differentiates `loss = -(1/batch) Σ ln softmax(x)[t]`: `dx = (y - onehot(t)) / batch`.
    pub fn backward<T: Float, L: Label>(&self, dx: &mut [T], y: &[T], t: &[L]) -> Result<()> {
        self.check(y.len(), t)?;
        check_len("dx", y.len(), dx.len())?;
        dx.copy_from_slice(y);
        self.backward_inplace(dx, t)
    }

    /// [`SoftmaxWithLoss::backward`] in place: the probabilities `y` become `dx`.
    pub fn backward_inplace<T: Float, L: Label>(&self, y: &mut [T], t: &[L]) -> Result<()> {
        let batch = self.check(y.len(), t)?;
        let inv = T::ONE / T::from_usize(batch);
        for (row, l) in y.chunks_exact_mut(self.classes).zip(t) {
            row[l.class()] -= T::ONE;
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions::softmax_inplace;
    use crate::random::{index, seeded, uniform01};

    /// Forward and backward in one sweep (rows in groups, the exponentials and logarithms of
    /// a group in one call each) against the book's formula row by row through
    /// `softmax_inplace`: the same bits, for a batch of 100 (six full groups and a part) and
    /// scores with ties and large spreads.
    #[test]
    fn forward_backward_is_softmax_row_by_row() {
        let (batch, classes) = (100, 10);
        let mut g = seeded(7);
        let x: std::vec::Vec<f32> = (0..batch * classes)
            .map(|_| {
                let u = uniform01(&mut g) as f32 - 0.5;
                match index(&mut g, 11) {
                    0 | 1 => 1.0,
                    2 => u * 200.0,
                    _ => u * 12.0,
                }
            })
            .collect();
        let t: std::vec::Vec<u8> = (0..batch).map(|r| (r * 3 % classes) as u8).collect();
        let mut got = x.clone();
        let loss = SoftmaxWithLoss::new(classes)
            .forward_backward_inplace(&mut got, &t)
            .unwrap();
        let mut want = x.clone();
        let mut sum = 0.0f32;
        let scale = 1.0 / batch as f32;
        for (row, &l) in want.chunks_exact_mut(classes).zip(&t) {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| Float::max(m, v));
            let shifted = row[l as usize] - max;
            sum += softmax_inplace(row) - shifted;
            row[l as usize] -= 1.0;
            for v in row.iter_mut() {
                *v *= scale;
            }
        }
        assert_eq!(loss.to_bits(), (sum / batch as f32).to_bits());
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "element {i}: {a:e} vs {b:e}");
        }
    }
}
