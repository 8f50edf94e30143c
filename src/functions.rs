//! Stateless row math: softmax, cross-entropy, sigmoid, argmax, and class labels.

use crate::error::{Error, Result, mul};
use crate::math::Float;

/// A class label: an index below the number of classes. Implemented for the unsigned integer
/// types, so labels can stay in the width they were stored in (MNIST's are `u8`).
pub trait Label: Copy + Send + Sync {
    /// The class index.
    fn class(self) -> usize;
}

macro_rules! label_impl {
    ($($t:ty),*) => {$(
        impl Label for $t {
            #[inline]
            fn class(self) -> usize {
                self as usize
            }
        }
    )*};
}
label_impl!(u8, u16, u32, usize);

/// Checks that every label is below `classes`.
pub fn check_labels<L: Label>(t: &[L], classes: usize) -> Result<()> {
    match t.iter().position(|l| l.class() >= classes) {
        None => Ok(()),
        Some(index) => Err(Error::LabelOutOfRange {
            index,
            label: t[index].class(),
            classes,
        }),
    }
}

/// Index of the largest element (the first one on ties; 0 for an empty row).
pub fn argmax<T: Float>(row: &[T]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best
}

/// Softmax of one row in place, shifted by the row maximum so `exp` never overflows.
/// Returns `ln Σ exp(x - max)`, from which the cross-entropy follows without a `ln(0)`.
pub fn softmax_inplace<T: Float>(row: &mut [T]) -> T {
    let max = row.iter().fold(T::NEG_INFINITY, |m, &x| m.max(x));
    for x in row.iter_mut() {
        *x -= max;
    }
    T::exp_slice(row);
    let mut sum = T::ZERO;
    for &x in row.iter() {
        sum += x;
    }
    let inv = T::ONE / sum;
    for x in row.iter_mut() {
        *x *= inv;
    }
    sum.ln()
}

/// `1 / (1 + e^(-x))`.
#[inline]
pub fn sigmoid<T: Float>(x: T) -> T {
    T::ONE / (T::ONE + (-x).exp())
}

/// Writes one-hot rows (`batch × classes`) for labels `t`.
pub fn one_hot<T: Float, L: Label>(t: &[L], classes: usize, out: &mut [T]) -> Result<()> {
    if classes == 0 {
        return Err(Error::ZeroSize { what: "classes" });
    }
    crate::error::check_len("one_hot out", mul(t.len(), classes)?, out.len())?;
    check_labels(t, classes)?;
    for (row, l) in out.chunks_exact_mut(classes).zip(t) {
        row.fill(T::ZERO);
        row[l.class()] = T::ONE;
    }
    Ok(())
}

/// Class labels from one-hot (or any score) rows: the argmax of each row.
pub fn labels_from_one_hot<T: Float>(rows: &[T], classes: usize, out: &mut [usize]) -> Result<()> {
    if classes == 0 {
        return Err(Error::ZeroSize { what: "classes" });
    }
    crate::error::check_len("one-hot rows", mul(out.len(), classes)?, rows.len())?;
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(classes)) {
        *o = argmax(row);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_of_large_scores_does_not_overflow() {
        let mut r = [1000.0f32, 1001.0, 1002.0];
        let lse = softmax_inplace(&mut r);
        let s: f32 = r.iter().sum();
        assert!((s - 1.0).abs() < 1e-6);
        assert!(r[2] > r[1] && r[1] > r[0]);
        assert!(lse.is_finite());
    }

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1.0f32, 3.0, 3.0]), 1);
        assert_eq!(argmax::<f32>(&[]), 0);
    }

    #[test]
    fn one_hot_round_trips_and_rejects_bad_labels() {
        let mut oh = [0f32; 6];
        one_hot(&[2u8, 0], 3, &mut oh).unwrap();
        assert_eq!(oh, [0.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
        let mut back = [9usize; 2];
        labels_from_one_hot(&oh, 3, &mut back).unwrap();
        assert_eq!(back, [2, 0]);
        assert!(matches!(
            one_hot(&[3u8, 0], 3, &mut oh),
            Err(Error::LabelOutOfRange {
                index: 0,
                label: 3,
                classes: 3
            })
        ));
    }
}
